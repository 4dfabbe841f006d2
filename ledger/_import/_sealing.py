"""Sealing new persons: version 0 of each (a random data key, field ciphertexts, the
wrapped key, the CID) laid out straight into binary COPY rows for the five tables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from peoplelog.fields import (
    NORMALISATION_VERSION,
    Attestor,
    KeyPurpose,
    Keyring,
    NewPersonSealer,
)
from peoplelog.schema import FORMAT_VERSION, Op

from .._cid import b64url, cid_of, envelope_text, native_envelope_cid
from .._store import Conn
from .._time import now_micros
from ._copying import (
    COPY_IDS,
    COPY_KEYS,
    COPY_LATEST,
    COPY_LOOKUP,
    COPY_PEOPLE,
    NULL,
    UUID_LENGTH,
    bytes_field,
    copy_rows,
    i32,
    int2_field,
    int4_field,
    micros_field,
    text_field,
)
from ._validation import Row

__all__ = ["RANDOM", "Sealed", "Sealer", "copy_new"]

Sealed = tuple[bytes, bytes, bytes, bytes, bytes | None]
"""One new person's rows for person_keys, people, people_latest, email_lookup and
external_ids (None without an external id), laid out for binary COPY."""

_CID_AT = 2 + 4 + 16 + 4 + 4 + 4
"""Where a people tuple's CID text starts: after the field count, the person id and the
version (each with its length word) and the CID's length word."""
RANDOM = NewPersonSealer.RANDOM
"""Random bytes per new person: its data key, four nonces."""
_OP = Op.CREATED.value


class Sealer:
    """Version 0 of new persons, as ``Ledger.create_person`` builds it (for the ids it is
    given), straight into binary COPY rows: in C (``ledger._native.NewPersonRows`` on
    ``fields.NewPersonSealer``) when built, else here, with the same bytes. The envelope
    and CID come from ``ledger._cid``, their one implementation (or its C twin)."""

    def __init__(self, keyring: Keyring, blind_key_id: str, actor: str | None,
                 reason: str | None, *, native: bool = True) -> None:
        kek = keyring.active(KeyPurpose.KEK)
        self._sealer = NewPersonSealer(kek, native=native)
        self._attestor = Attestor.of(keyring)
        self._writer = text_field(self._attestor.key_id)
        self._actor, self._reason = actor, reason
        self._native_cid = native_envelope_cid() if native else None
        """The C CID of ``ledger._native`` when built: the whole envelope in one call."""
        version0 = int4_field(4, 0)
        key_field = text_field(blind_key_id)
        self._keys = (b"\x00\x04" + UUID_LENGTH, int4_field(4, 1) + text_field(kek.id))
        self._people = (b"\x00\x0f" + UUID_LENGTH, version0 + i32(59),
                        NULL + int2_field(2, FORMAT_VERSION) + text_field(_OP),
                        text_field(actor) + text_field(reason))
        self._latest = (b"\x00\x0a" + UUID_LENGTH, version0 + i32(59), text_field(_OP))
        self._lookup = (b"\x00\x06" + i32(32), UUID_LENGTH,
                        key_field + int2_field(2, NORMALISATION_VERSION))
        self._ids = (b"\x00\x03", UUID_LENGTH, key_field)
        self._rows = None if self._native_cid is None else _native_rows(
            self._keys + self._people + self._latest + self._lookup + self._ids, actor, reason,
            self._writer, keyring.active(KeyPurpose.WRITER).secret)
        """``NewPersonRows.rows`` of ``ledger._native``: a sealed person's rows, with the
        writer's seals, in one call."""

    @property
    def native(self) -> bool:
        """True when the rows are sealed and laid out in C."""
        return self._rows is not None and self._sealer.native

    def seal(self, rows: list[Row], hashes: list[str | None], ids: list[bytes], *,
             random: bytes | None = None,
             clock: Callable[[], int] = now_micros) -> list[Sealed]:
        """Seal ``rows`` as the persons ``ids`` (16 bytes each; ``hashes``: each row's
        password PHC, or None). ``random`` (``RANDOM`` bytes a row) and ``clock`` are for
        tests; by default the OS's randomness and now."""
        if random is None:
            random = os.urandom(RANDOM * len(rows))
        if len(random) != RANDOM * len(rows) or len(ids) != len(rows):
            raise ValueError("random must hold RANDOM bytes and ids one id per row")
        if self.native:
            return self._seal_native(rows, hashes, ids, random, clock)
        return self._seal_python(rows, hashes, ids, random, clock)

    def _seal_native(self, rows: list[Row], hashes: list[str | None], ids: list[bytes],
                     random: bytes, clock: Callable[[], int]) -> list[Sealed]:
        seal, lay_out = self._sealer.seal, self._rows
        assert lay_out is not None
        out: list[Sealed] = []
        for i, (row, phc, pid) in enumerate(zip(rows, hashes, ids, strict=True)):
            at = i * RANDOM
            email, name, password, wrapped = seal(
                pid, random[at:at + RANDOM], row.email.display.encode(),
                row.name.encode(), None if phc is None else phc.encode())
            out.append(lay_out(pid, clock(), email, name, password, wrapped, row.verified_at,
                               row.email_digest, row.id_digest))
        return out

    def _claimed(self, lookup: bytes, digest: bytes, pid: bytes, email: bytes) -> bytes:
        """An email_lookup tuple with the writer's seal of the claim after its columns."""
        return lookup + self._writer + bytes_field(self._attestor.seal_claim(digest, pid,
                                                                             email))

    def _attested(self, people: bytes) -> bytes:
        """A people tuple with its writer key and seal after the envelope's columns."""
        cid = people[_CID_AT:_CID_AT + 59].decode("ascii")
        return people + self._writer + bytes_field(self._attestor.seal(cid))

    def _cid(self, pid: bytes, at: int, sealed: tuple[bytes, bytes, bytes | None],
             verified_at: int | None) -> bytes:
        """The CID of a new person's version 0 (in C when built); ``sealed``: the email,
        name and password ciphertexts."""
        email, name, password = sealed
        if self._native_cid is not None:
            return self._native_cid(pid, 0, None, _OP, at, self._actor, self._reason, email,
                                     name, password, verified_at, FORMAT_VERSION).encode()
        return cid_of(envelope_text(
            person_id=str(uuid.UUID(bytes=pid)), version=0, prev=None, op=_OP,
            recorded_at=at, actor=self._actor, reason=self._reason, email=b64url(email),
            name=b64url(name), password=None if password is None else b64url(password),
            verified_at=verified_at, format=FORMAT_VERSION).encode()).encode()

    def _seal_python(self, rows: list[Row], hashes: list[str | None], ids: list[bytes],
                     random: bytes, clock: Callable[[], int]) -> list[Sealed]:
        seal = self._sealer.seal
        keys_a, keys_b = self._keys
        people_a, people_b, people_c, people_d = self._people
        latest_a, latest_b, latest_c = self._latest
        lookup_a, lookup_b, lookup_c = self._lookup
        ids_a, ids_b, ids_c = self._ids
        field, moment = bytes_field, micros_field
        out: list[Sealed] = []
        for i, (row, phc, pid) in enumerate(zip(rows, hashes, ids, strict=True)):
            email, name, password, wrapped = seal(
                pid, random[i * RANDOM:(i + 1) * RANDOM], row.email.display.encode(),
                row.name.encode(), None if phc is None else phc.encode())
            at = clock()
            cid = self._cid(pid, at, (email, name, password), row.verified_at)
            stamp = moment(at)
            fields = b"".join((field(email), field(name), field(password),
                               moment(row.verified_at)))
            out.append((
                b"".join((keys_a, pid, keys_b, field(wrapped))),
                self._attested(b"".join((people_a, pid, people_b, cid, people_c, stamp,
                                         people_d, fields))),
                b"".join((latest_a, pid, latest_b, cid, latest_c, stamp, stamp, fields)),
                self._claimed(b"".join((lookup_a, row.email_digest, lookup_b, pid, lookup_c)),
                              row.email_digest, pid, email),
                None if row.id_digest is None
                else b"".join((ids_a, field(row.id_digest), ids_b, pid, ids_c)),
            ))
        return out


def _native_rows(segments: tuple[bytes, ...], actor: str | None, reason: str | None,
                 writer_field: bytes, writer_secret: bytes) -> Callable[..., Sealed] | None:
    """``NewPersonRows.rows``, asked for only when the C CID is in use (so built and not
    switched off)."""
    try:
        from .._native import NewPersonRows  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return None
    lay_out: Callable[..., Sealed] = NewPersonRows(segments, _OP, actor, reason,
                                                   FORMAT_VERSION, writer_field,
                                                   writer_secret).rows
    return lay_out


def copy_new(conn: Conn, sealed: list[Sealed]) -> None:
    """Write sealed persons: one binary COPY per table, the versions first (the database
    lets keys and claims be added only with their person's new chain head)."""
    copy_rows(conn, COPY_PEOPLE, [s[1] for s in sealed])
    copy_rows(conn, COPY_KEYS, [s[0] for s in sealed])
    copy_rows(conn, COPY_LATEST, [s[2] for s in sealed])
    copy_rows(conn, COPY_LOOKUP, [s[3] for s in sealed])
    ids = [s[4] for s in sealed if s[4] is not None]
    if ids:
        copy_rows(conn, COPY_IDS, ids)
