"""The append path: every write is one transaction that inserts version n+1 on the head
and updates the projections (``people_latest``, ``email_lookup``) with it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from peoplelog.fields import (
    Attestor,
    BlindIndexes,
    DataKey,
    KeyPurpose,
    Keyring,
    NormalisedEmail,
    normalise_email,
)
from peoplelog.schema import (
    LATEST_COLUMNS,
    WRITTEN_COLUMNS,
    Conflict,
    DecryptionFailed,
    EmailTaken,
    InvalidInput,
    Op,
    PersonErased,
    PersonNotFound,
    VersionConflict,
    VersionRecord,
    VersionRef,
    column_list,
    placeholders,
)

from ._cid import version_cid
from ._driver import translate_errors
from ._heads import Cached, Head, HeadCache, head_with_key, lock_head, unwrap
from ._time import from_micros, now_micros, to_micros

__all__ = [
    "Change",
    "NewPerson",
    "Seal",
    "append_change",
    "apply_change",
    "build_next",
    "change_locked",
    "claim_seal",
    "erase_person",
    "insert_new_person",
    "insert_version",
    "lookup_key_of",
    "move_claim",
    "new_person_head",
    "prepare_new_person",
    "require_writable",
    "seal_of",
    "set_lookup",
    "upsert_latest",
]

Conn = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]

_INSERT_VERSION = (f"INSERT INTO people ({column_list(WRITTEN_COLUMNS)})"  # noqa: S608 - column constants
                   f" VALUES ({placeholders(WRITTEN_COLUMNS)})")
_UPSERT_LATEST = (
    f"INSERT INTO people_latest AS l ({column_list(LATEST_COLUMNS)})"  # noqa: S608 - column constants
    f" VALUES ({placeholders(LATEST_COLUMNS)}) ON CONFLICT (person_id) DO UPDATE SET "
    + ", ".join(f"{column} = EXCLUDED.{column}" for column in LATEST_COLUMNS
                if column not in ("person_id", "created_at")))


_FROM_HEAD = {"prev": "%s::text", "format": "%s::smallint", "actor": "%s::text",
              "reason": "%s::text", "writer_key": "%s::text", "attestation": "%s::bytea"}
"""What the guarded append inserts that the updated head does not hold (the statement's
last six parameters, in the columns' order)."""
_GUARDED_APPEND = f"""
WITH head AS (
    UPDATE people_latest
    SET version = %s::integer, cid = %s::text, op = %s::text, recorded_at = %s::timestamptz,
        email = %s::bytea, name = %s::bytea, password = %s::bytea,
        verified_at = %s::timestamptz
    WHERE person_id = %s::uuid AND erased_at IS NULL
      AND (version, cid, recorded_at, email, name, password, verified_at)
          IS NOT DISTINCT FROM (%s::integer, %s::text, %s::timestamptz, %s::bytea,
                                %s::bytea, %s::bytea, %s::timestamptz)
      AND (SELECT (k.key_version, k.kek_id, k.wrapped_key) = (%s::integer, %s::text, %s::bytea)
           FROM person_keys k WHERE k.person_id = people_latest.person_id
           ORDER BY k.key_version DESC LIMIT 1)
    RETURNING person_id, version, cid, op, recorded_at, email, name, password, verified_at
)
INSERT INTO people ({column_list(WRITTEN_COLUMNS)})
SELECT {column_list(_FROM_HEAD.get(column, column) for column in WRITTEN_COLUMNS)}
FROM head
"""  # noqa: S608 - column constants
"""One statement, so one round trip and its own transaction: moves ``people_latest`` from
the head the version was built on to the version, and inserts the version, only if that
row (locked by the UPDATE) still is that head, column for column, and the person's newest
stored data key still is the one the version was encrypted with."""


def set_lookup(conn: Conn, person_id: uuid.UUID, digest: bytes | None, blind_key_id: str,
               claim: Seal | None, *, older: Sequence[bytes] = ()) -> None:
    """Move the person's email claim to ``digest``, with its seal (``claim_seal``); no claim
    when ``digest`` is None. ``older``: the same email's digests under older blind-index
    keys (during a rotation), which another person's claim may still use."""
    conn.execute("DELETE FROM email_lookup WHERE person_id = %s", (person_id,))
    if digest is None or claim is None:
        return
    if older and conn.execute(
        "SELECT 1 FROM email_lookup WHERE blind_index = ANY(%s) LIMIT 1", (list(older),)
    ).fetchone() is not None:
        raise EmailTaken("email is already registered to another person")
    claimed = conn.execute(
        "INSERT INTO email_lookup (blind_index, person_id, key_id, norm, claim_key, claim)"
        " VALUES (%s, %s, %s, 1, %s, %s) ON CONFLICT (blind_index) DO NOTHING",
        (digest, person_id, blind_key_id, *claim),
    ).rowcount
    if claimed != 1:  # a claim by another person: found without an error, so the server
        raise EmailTaken("email is already registered to another person")  # logs no digest


def claim_seal(keyring: Keyring, digest: bytes, person_id: uuid.UUID,
               email: bytes | None) -> Seal | None:
    """The writer's seal of the claim of ``digest`` by the person whose version holds the
    email ciphertext ``email`` (None without an email)."""
    if email is None:
        return None
    attestor = Attestor.of(keyring)
    return attestor.key_id, attestor.seal_claim(digest, person_id.bytes, email)


def move_claim(conn: Conn, keyring: Keyring, person_id: uuid.UUID,
               email: NormalisedEmail | None, ciphertext: bytes | None) -> None:
    """``set_lookup`` of ``email`` under the keyring's active blind-index key, sealed over
    ``ciphertext`` (the version's email), refused while an older key's claim holds it."""
    if email is None:
        set_lookup(conn, person_id, None, "", None)
        return
    blinds = BlindIndexes.of(keyring)
    digest = blinds.active.digest(email)
    set_lookup(conn, person_id, digest, blinds.active.key.id,
               claim_seal(keyring, digest, person_id, ciphertext),
               older=blinds.older_digests(email))


Seal = tuple[str, bytes]
"""A version's attestation as stored: (writer key id, HMAC of its CID)."""


def seal_of(keyring: Keyring, cid: str) -> Seal:
    """The keyring's active writer key's seal of ``cid``."""
    attestor = Attestor.of(keyring)
    return attestor.key_id, attestor.seal(cid)


def insert_version(conn: Conn, record: VersionRecord, cid: str, seal: Seal) -> None:
    # No savepoint: any failure here ends the whole write, so the transaction rolls back.
    # A version number taken, or a prev that is not the head: VersionConflict.
    with translate_errors(retryable=True, person_id=record.person_id, version=record.version):
        conn.execute(
            _INSERT_VERSION,
            (
                record.person_id, record.version, cid, record.prev, record.format,
                record.op, from_micros(record.recorded_at), record.actor, record.reason,
                record.email, record.name, record.password,
                None if record.verified_at is None else from_micros(record.verified_at),
                *seal,
            ),
        )


def upsert_latest(conn: Conn, record: VersionRecord, cid: str, created_at: datetime) -> None:
    recorded = from_micros(record.recorded_at)
    conn.execute(
        _UPSERT_LATEST,
        (
            record.person_id, record.version, cid, record.op, created_at, recorded,
            record.email, record.name, record.password,
            None if record.verified_at is None else from_micros(record.verified_at),
            recorded if record.op == Op.ERASED else None,
        ),
    )


# --- creating a person -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPerson:
    """Everything a create writes, built before the transaction (no plaintext inside)."""

    record: VersionRecord
    cid: str
    kek_id: str
    wrapped_key: bytes
    blind_index: bytes
    blind_key_id: str
    seal: Seal
    claim: Seal | None
    older: tuple[bytes, ...] = ()
    """The email's digests under older blind-index keys, during a rotation."""


def prepare_new_person(
    keyring: Keyring,
    *,
    email: NormalisedEmail,
    name: str,
    password_hash: str | None,
    verified_at: int | None,
    actor: str | None,
    reason: str | None,
    person_id: uuid.UUID | None = None,
    blind_index: bytes | None = None,
) -> NewPerson:
    person_id = person_id or uuid.uuid4()
    data_key, secret = DataKey.generate(person_id)
    kek = keyring.active(KeyPurpose.KEK)
    blinds = BlindIndexes.of(keyring)
    blind = blinds.active
    record = VersionRecord(
        person_id=person_id,
        version=0,
        prev=None,
        op=Op.CREATED.value,
        recorded_at=now_micros(),
        actor=actor,
        reason=reason,
        email=data_key.encrypt("email", email.display.encode()),
        name=data_key.encrypt("name", name.encode()),
        password=None if password_hash is None else data_key.encrypt(
            "password", password_hash.encode()
        ),
        verified_at=verified_at,
    )
    cid = version_cid(record)
    digest = blind.digest(email) if blind_index is None else blind_index
    return NewPerson(
        record=record,
        cid=cid,
        seal=seal_of(keyring, cid),
        kek_id=kek.id,
        wrapped_key=DataKey.wrap(person_id, data_key.version, secret, kek),
        blind_index=digest,
        blind_key_id=blind.key.id,
        claim=claim_seal(keyring, digest, person_id, record.email),
        older=blinds.older_digests(email),
    )


def new_person_head(new: NewPerson, keyring: Keyring) -> Cached:
    """The head ``insert_new_person`` writes, for the ``HeadCache``."""
    record = new.record
    recorded = from_micros(record.recorded_at)
    verified = None if record.verified_at is None else from_micros(record.verified_at)
    head = Head(record.person_id, 0, new.cid, record.op, recorded, recorded, record.email,
                record.name, record.password, verified, None)
    wrapped = (1, new.kek_id, new.wrapped_key)
    return head, unwrap(keyring, record.person_id, wrapped), wrapped


def insert_new_person(conn: Conn, new: NewPerson) -> VersionRef:
    record = new.record
    existing = conn.execute(
        "SELECT cid FROM people WHERE person_id = %s AND version = 0", (record.person_id,)
    ).fetchone()
    if existing is not None:
        if existing[0] == new.cid:
            return VersionRef(person_id=record.person_id, version=0, cid=new.cid, written=False)
        raise Conflict(f"person {record.person_id} already exists")
    insert_version(conn, record, new.cid, new.seal)  # first: the database lets a key and a
    conn.execute(  # claim be added only with their person's new chain head
        "INSERT INTO person_keys (person_id, key_version, kek_id, wrapped_key)"
        " VALUES (%s, 1, %s, %s)",
        (record.person_id, new.kek_id, new.wrapped_key),
    )
    upsert_latest(conn, record, new.cid, from_micros(record.recorded_at))
    set_lookup(conn, record.person_id, new.blind_index, new.blind_key_id, new.claim,
               older=new.older)
    return VersionRef(person_id=record.person_id, version=0, cid=new.cid)


# --- changing a person --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """What a caller asks to change. Plaintext stays in memory only; repr hides it."""

    email: NormalisedEmail | None = None
    name: str | None = None
    password_hash: str | None = None
    verified: bool | None = None
    actor: str | None = None
    reason: str | None = None

    def __repr__(self) -> str:
        asked = [f for f in ("email", "name", "password_hash", "verified")
                 if getattr(self, f) is not None]
        return f"Change(fields={asked!r})"

    def is_empty(self) -> bool:
        return (self.email is None and self.name is None and self.password_hash is None
                and self.verified is None)


def require_writable(head: Head | None, person_id: uuid.UUID) -> Head:
    if head is None:
        raise PersonNotFound(f"person {person_id} not found")
    if head.erased_at is not None:
        raise PersonErased(f"person {person_id} was erased; it cannot be changed")
    return head


def _same(data_key: DataKey, field: str, blob: bytes | None, value: bytes) -> bool:
    return _plain(data_key, field, blob) == value


def _plain(data_key: DataKey, field: str, blob: bytes | None) -> bytes | None:
    if blob is None:
        return None
    try:
        return data_key.decrypt(field, blob)
    except DecryptionFailed:
        return None


def lookup_key_of(email: bytes) -> str | None:
    """The lookup key of a stored (decrypted) email, or None when it is not a valid one.

    A stored email is the display form ``normalise_email`` made (domain lower-cased, in
    Unicode); when it is all ASCII its lookup key is simply its lower-case form (an IDNA
    domain is stored in Unicode, so it never takes this path)."""
    if email.isascii() and b"xn--" not in email:
        return email.decode("ascii").lower()
    try:
        return normalise_email(email.decode("utf-8")).lookup_key
    except (InvalidInput, UnicodeDecodeError):
        return None


_UPDATED, _EMAIL_VERIFIED, _PASSWORD_CHANGED = (
    Op.UPDATED.value, Op.EMAIL_VERIFIED.value, Op.PASSWORD_CHANGED.value)


def build_next(head: Head, data_key: DataKey, change: Change, now: int, *,
               checked: bool = False) -> tuple[VersionRecord, bool, bytes | None]:
    """The version that applies ``change`` on ``head``: (record, mailbox changed, new email).

    Unchanged fields carry their ciphertext forward byte for byte. An email that differs only
    in ways the lookup ignores (the local part's case) is the same mailbox: it is stored as
    given but keeps its verification. ``checked`` says that every ciphertext of ``head``
    is known to decrypt (it came from the ``HeadCache``).
    """
    email, name, password = head.email, head.name, head.password
    for field, blob in (("email", email), ("name", name), ("password", password)):
        if blob is not None and not checked:  # a damaged projection row must not be
            data_key.decrypt(field, bytes(blob))  # carried into the ledger
    verified_at = None if head.verified_at is None else to_micros(head.verified_at)
    changed: list[str] = []
    new_email: bytes | None = None
    mailbox_changed = False
    if change.email is not None:
        value = change.email.display.encode()
        old = _plain(data_key, "email", head.email)
        if old != value:
            email = data_key.encrypt("email", value)
            new_email = value
            changed.append("email")
            if old is None or lookup_key_of(old) != change.email.lookup_key:
                mailbox_changed = True
                verified_at = None
    if change.name is not None:
        value = change.name.encode()
        if not _same(data_key, "name", head.name, value):
            name = data_key.encrypt("name", value)
            changed.append("name")
    if change.password_hash is not None:
        password = data_key.encrypt("password", change.password_hash.encode())
        changed.append("password")
    recorded_at = max(now, to_micros(head.recorded_at))
    if change.verified is True and verified_at is None:
        verified_at = recorded_at
        changed.append("verified")
    elif change.verified is False and verified_at is not None:
        verified_at = None
        changed.append("verified")
    if not changed:
        op = ""
    elif changed == ["verified"] and verified_at is not None:
        op = _EMAIL_VERIFIED
    elif changed == ["password"]:
        op = _PASSWORD_CHANGED
    else:
        op = _UPDATED
    record = VersionRecord(
        person_id=head.person_id,
        version=head.version + 1,
        prev=head.cid,
        op=op,
        recorded_at=recorded_at,
        actor=change.actor,
        reason=change.reason,
        email=email,
        name=name,
        password=password,
        verified_at=verified_at,
    )
    return record, mailbox_changed, new_email


def _next_head(head: Head, record: VersionRecord, cid: str, recorded: datetime,
               verified: datetime | None) -> Head:
    return Head(head.person_id, record.version, cid, record.op, head.created_at, recorded,
                record.email, record.name, record.password, verified, None)


def _version_conflict(person_id: uuid.UUID, head: Head, expect_version: int) -> VersionConflict:
    return VersionConflict(
        f"person {person_id} is at version {head.version}, not {expect_version}; "
        "nothing was written"
    )


def change_locked(conn: Conn, keyring: Keyring, person_id: uuid.UUID, change: Change,
                  expect_version: int | None) -> tuple[VersionRef, Cached | None]:
    """Lock the head, build the next version on it, write it and the projections.

    Also returns the new head for the ``HeadCache`` (None when nothing was written).
    """
    head, wrapped = head_with_key(conn, keyring, person_id, lock=True)
    head = require_writable(head, person_id)
    if expect_version is not None and head.version != expect_version:
        raise _version_conflict(person_id, head, expect_version)
    data_key = unwrap(keyring, person_id, wrapped)
    record, _, new_email = build_next(head, data_key, change, now_micros())
    if not record.op:
        return VersionRef(person_id=person_id, version=head.version, cid=head.cid,
                          written=False), None
    cid = version_cid(record)
    insert_version(conn, record, cid, seal_of(keyring, cid))
    upsert_latest(conn, record, cid, head.created_at)
    if new_email is not None and change.email is not None:  # the claim is resealed over
        # the new ciphertext even when the mailbox is the same (a changed local-part case)
        move_claim(conn, keyring, person_id, change.email, record.email)
    verified = None if record.verified_at is None else from_micros(record.verified_at)
    new_head = _next_head(head, record, cid, from_micros(record.recorded_at), verified)
    assert wrapped is not None  # unwrap refused a missing key
    return (VersionRef(person_id=person_id, version=record.version, cid=cid),
            (new_head, data_key, wrapped))


def apply_change(conn: Conn, keyring: Keyring, person_id: uuid.UUID, change: Change,
                 expect_version: int | None) -> VersionRef:
    """Lock the head, build the next version on it, write it and the projections."""
    return change_locked(conn, keyring, person_id, change, expect_version)[0]


def append_change(cursor: Cursor, keyring: Keyring, person_id: uuid.UUID, change: Change, *,
                  expect_version: int | None, heads: HeadCache,
                  attempted: list[VersionRef]) -> VersionRef | None:
    """The optimistic append, on an autocommit connection's cursor: build the next version
    on the cached head (or on one read without a lock) and write it in one guarded
    statement.

    Returns None, having written nothing, when the head it built on is no longer the head
    or the change needs the locked path (a changed email reseals its claim): the
    caller then runs ``change_locked``. The ref is added to ``attempted`` before the
    statement is sent, so a commit lost with the connection can be looked up by CID.
    """
    cached = heads.get(person_id)
    if cached is None:
        found, stored = head_with_key(cursor, keyring, person_id, lock=False)
        head = require_writable(found, person_id)
        data_key = unwrap(keyring, person_id, stored)
        assert stored is not None  # unwrap refused a missing key
        wrapped = stored
    else:
        head, data_key, wrapped = cached
    if expect_version is not None and head.version != expect_version:
        if cached is not None:
            heads.drop(person_id)
            return None
        raise _version_conflict(person_id, head, expect_version)
    record, _, new_email = build_next(head, data_key, change, now_micros(),
                                            checked=cached is not None)
    if new_email is not None or (not record.op and cached is not None):
        return None
    if not record.op:
        return VersionRef(person_id=person_id, version=head.version, cid=head.cid,
                          written=False)
    cid = version_cid(record)
    ref = VersionRef(person_id=person_id, version=record.version, cid=cid)
    attempted.append(ref)
    recorded = from_micros(record.recorded_at)
    verified = None if record.verified_at is None else from_micros(record.verified_at)
    new_head = _next_head(head, record, cid, recorded, verified)
    try:
        with translate_errors(retryable=True, person_id=person_id, version=record.version):
            written = cursor.execute(_GUARDED_APPEND, (
                record.version, cid, record.op, recorded, record.email, record.name,
                record.password, verified,
                person_id, head.version, head.cid, head.recorded_at, head.email, head.name,
                head.password, head.verified_at, *wrapped,
                head.cid, record.format, record.actor, record.reason, *seal_of(keyring, cid),
            )).rowcount
    except VersionConflict:
        written = 0  # people is ahead of people_latest: the locked path reports it
    if written != 1:
        attempted.pop()
        heads.drop(person_id)
        return None
    heads.put(person_id, (new_head, data_key, wrapped))
    return ref


_FORGET_IMPORTED = (
    "DELETE FROM import_seen WHERE (run, line) IN"
    " (SELECT run, line FROM import_seen WHERE key = %s)")
"""An import notes each row it skipped or updated under all its keys (email digest,
external id digest, the person's id) with one line: the erasure takes every key of the rows
that resolved to the person, whether the run still goes on or was interrupted."""


def erase_person(conn: Conn, keyring: Keyring, person_id: uuid.UUID, actor: str | None,
                 reason: str | None) -> VersionRef:
    """Crypto-shred: drop the data key and lookup entry, append an ``erased`` version."""
    head = lock_head(conn, person_id)
    if head is None:
        raise PersonNotFound(f"person {person_id} not found")
    if head.erased_at is not None:
        return VersionRef(person_id=person_id, version=head.version, cid=head.cid,
                          written=False)
    record = VersionRecord(
        person_id=person_id,
        version=head.version + 1,
        prev=head.cid,
        op=Op.ERASED.value,
        recorded_at=max(now_micros(), to_micros(head.recorded_at)),
        actor=actor,
        reason=reason,
        email=None,
        name=None,
        password=None,
        verified_at=None,
    )
    cid = version_cid(record)
    insert_version(conn, record, cid, seal_of(keyring, cid))  # first: the database lets
    upsert_latest(conn, record, cid, head.created_at)  # the key go only with the erasure
    conn.execute("DELETE FROM person_keys WHERE person_id = %s", (person_id,))
    conn.execute("DELETE FROM email_lookup WHERE person_id = %s", (person_id,))
    conn.execute("DELETE FROM external_ids WHERE person_id = %s", (person_id,))
    conn.execute(_FORGET_IMPORTED, (person_id.bytes,))
    return VersionRef(person_id=person_id, version=record.version, cid=cid)


