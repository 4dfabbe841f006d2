"""Writing a person's last trusted state back, over versions the application did not write.

A version without a valid seal of the writer key (written with the database login alone)
stays in the ledger, which is append-only, but nothing trusts it: logins and writes refuse
a person whose newest version is one. ``Ledger.restore_person`` appends, on top of it, a
``restored`` version that carries the fields of the newest trusted version, sealed."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import psycopg

from peoplelog.fields import (
    Attestations,
    DataKey,
    Keyring,
    normalise_email,
)
from peoplelog.schema import (
    Op,
    PersonErased,
    PersonNotFound,
    Unattested,
    VersionRecord,
    VersionRef,
)

from ._cid import version_cid
from ._heads import load_data_key
from ._time import now_micros, to_micros
from ._write import insert_version, move_claim, seal_of, upsert_latest

__all__ = ["restore_locked"]

Conn = psycopg.Connection[Any]

_CHAIN = (
    "SELECT version, cid, op, recorded_at, email, name, password, verified_at, writer_key,"
    " attestation, CASE WHEN attestation IS NULL THEN EXISTS (SELECT 1 FROM log_entries e"
    "  WHERE e.person_id = p.person_id AND e.version = p.version AND e.cid = p.cid) END"
    " FROM people p WHERE p.person_id = %s ORDER BY version DESC"
)


class _Row(NamedTuple):
    version: int
    cid: str
    op: str
    recorded_at: Any
    email: bytes | None
    name: bytes | None
    password: bytes | None
    verified_at: Any
    writer_key: str | None
    attestation: bytes | None
    logged: bool | None


def restore_locked(conn: Conn, keyring: Keyring, person_id: uuid.UUID, actor: str | None,
                   reason: str | None) -> VersionRef:
    """Lock the person's head; when the newest version is not trusted, append a
    ``restored`` version with the fields of the newest trusted one (and move the email
    claim back to its address). Nothing is written when the head is trusted."""
    locked = conn.execute("SELECT 1 FROM people_latest WHERE person_id = %s FOR UPDATE",
                          (person_id,)).fetchone()
    chain = [_Row(*row) for row in conn.execute(_CHAIN, (person_id,)).fetchall()]
    if locked is None or not chain:
        raise PersonNotFound(f"person {person_id} not found")
    checks = Attestations.of(keyring)

    def trusted(row: _Row) -> bool:
        return bool(row.logged) or checks.holds(row.cid, row.writer_key, row.attestation)

    head = chain[0]
    if trusted(head):
        return VersionRef(person_id=person_id, version=head.version, cid=head.cid,
                          written=False)
    good = next((row for row in chain if trusted(row)), None)
    if good is None:
        raise Unattested(f"no version of person {person_id} carries a seal of the "
                         "application's writer key: there is no trusted state to restore")
    if good.op == Op.ERASED:
        raise PersonErased(f"person {person_id} was erased; versions written after the "
                           "erasure are not the application's and nothing is restored")
    newest = load_data_key(conn, keyring, person_id)

    def current(field: str, blob: bytes | None) -> tuple[bytes | None, bytes | None]:
        """The field's plaintext and its ciphertext under the newest data key (the stored
        one when it is already: a version from before a data-key rotation is re-sealed)."""
        if blob is None:
            return None, None
        blob = bytes(blob)
        version = DataKey.key_version_of(blob)
        if version == newest.version:
            return newest.decrypt(field, blob), blob
        value = load_data_key(conn, keyring, person_id, version).decrypt(field, blob)
        return value, newest.encrypt(field, value)

    email, email_ct = current("email", good.email)
    record = VersionRecord(
        person_id=person_id, version=head.version + 1, prev=head.cid, op=Op.RESTORED.value,
        recorded_at=max(now_micros(), to_micros(head.recorded_at)), actor=actor,
        reason=reason, email=email_ct, name=current("name", good.name)[1],
        password=current("password", good.password)[1],
        verified_at=None if good.verified_at is None else to_micros(good.verified_at))
    cid = version_cid(record)
    insert_version(conn, record, cid, seal_of(keyring, cid))
    upsert_latest(conn, record, cid, chain[-1].recorded_at)
    move_claim(conn, keyring, person_id,
               None if email is None else normalise_email(email.decode("utf-8")), record.email)
    return VersionRef(person_id=person_id, version=record.version, cid=cid)
