"""A person's head: the newest version as ``people_latest`` holds it, confirmed against the
chain in ``people``, with the data key that protects it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from peoplelog.fields import Attestations, DataKey, KeyPurpose, Keyring
from peoplelog.schema import (
    LATEST_COLUMNS,
    DecryptionFailed,
    Op,
    PersonErased,
    ProjectionDamaged,
    Unattested,
    column_list,
)

from ._cache import TimedCache

__all__ = [
    "CHAIN_HEAD",
    "Cached",
    "Head",
    "HeadCache",
    "Wrapped",
    "check_head",
    "head_with_key",
    "load_data_key",
    "lock_head",
    "missing_key",
    "unwrap",
]

Conn = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]


@dataclass(slots=True)
class Head:
    """The newest version of a person, as ``people_latest`` holds it (never changed once
    made: the ``HeadCache`` shares it)."""

    person_id: uuid.UUID
    version: int
    cid: str
    op: str
    created_at: datetime
    recorded_at: datetime
    email: bytes | None
    name: bytes | None
    password: bytes | None
    verified_at: datetime | None
    erased_at: datetime | None


def lock_head(conn: Conn, person_id: uuid.UUID, *, lock: bool = True) -> Head | None:
    query = f"SELECT {column_list(LATEST_COLUMNS)} FROM people_latest WHERE person_id = %s"  # noqa: S608
    row = conn.execute(query + (" FOR UPDATE" if lock else ""), (person_id,)).fetchone()
    return None if row is None else Head(*row)


Wrapped = tuple[int, str, bytes]
"""A data key as ``person_keys`` stores it: (key version, KEK id, wrapped key)."""
Cached = tuple[Head, DataKey, Wrapped]

CHAIN_HEAD = (
    "SELECT p.cid, p.writer_key, p.attestation, CASE WHEN p.attestation IS NULL THEN EXISTS"
    " (SELECT 1 FROM log_entries e WHERE e.person_id = p.person_id"
    "  AND e.version = p.version AND e.cid = p.cid) END AS logged"
    " FROM people p WHERE p.person_id = {0} ORDER BY p.version DESC LIMIT 1"
)
"""A person's chain head as ``people`` has it (not a projection): its CID, its seal, and,
for a version stored before attestation existed (no seal), whether a signed checkpoint's
log covers it. ``{0}`` is the person."""

_HEAD_WITH_KEY = (
    f"SELECT {column_list(LATEST_COLUMNS, 'l')}, k.key_version, k.kek_id,"  # noqa: S608 - column constants
    " k.wrapped_key, h.cid, h.writer_key, h.attestation, h.logged FROM people_latest l"
    " LEFT JOIN LATERAL (SELECT key_version, kek_id, wrapped_key FROM person_keys"
    "  WHERE person_id = %(p)s ORDER BY key_version DESC LIMIT 1) k ON true"
    f" LEFT JOIN LATERAL ({CHAIN_HEAD.format('%(p)s')}) h ON true"
    " WHERE l.person_id = %(p)s"
)
"""Every table filtered by the person given, not by the joined row's: on a Citus cluster
that is what routes the whole query to the person's shard."""


class HeadCache(TimedCache[uuid.UUID, Cached]):
    """The heads a ``Ledger`` last wrote, with their data keys (unwrapped, and as stored),
    so that its next write on the same person needs no read first and no unwrap.

    Only a hint: ``append_change`` writes only if ``people_latest`` still holds the cached
    head and ``person_keys`` still holds that wrapped key, so a key the database no longer
    has (an erased person's, a damaged or re-wrapped one) is never used again; a miss
    drops the entry, ``Ledger.erase_person`` drops it at once, and every entry is forgotten
    ``ttl`` seconds after its write, at the cache's next use."""


def head_with_key(conn: Conn | Cursor, keyring: Keyring, person_id: uuid.UUID, *,
                   lock: bool) -> tuple[Head | None, Wrapped | None]:
    """The head and the newest wrapped data key, in one round trip (two with ``lock``: the
    row is locked first, so the read after it sees the chain as of the lock, not as of an
    older snapshot); the head ``people_latest`` holds is confirmed against the chain's
    (``check_head``)."""
    if lock:
        conn.execute("SELECT 1 FROM people_latest WHERE person_id = %s FOR UPDATE",
                     (person_id,))
    row = conn.execute(_HEAD_WITH_KEY, {"p": person_id}).fetchone()
    if row is None:
        return None, None
    head = Head(*row[:11])
    check_head(keyring, person_id, head.cid, row[14:18])
    wrapped = None if row[11] is None else (int(row[11]), str(row[12]), bytes(row[13]))
    return head, wrapped


def check_head(keyring: Keyring, person_id: uuid.UUID, latest_cid: str | None,
               chain_head: Sequence[Any]) -> None:
    """Refuse to build on, or to trust, a head that is not the chain's (``ProjectionDamaged``)
    or that the application did not write (``Unattested``): ``chain_head`` is a row of
    ``CHAIN_HEAD``. A version stored before attestation existed passes when a signed
    checkpoint's log covers it."""
    cid, writer_key, seal, logged = chain_head
    if cid is None or cid != latest_cid:
        raise ProjectionDamaged(f"people_latest does not hold the chain head of person "
                                f"{person_id} (run `peoplelog projections check`)")
    if not logged and not Attestations.of(keyring).holds(cid, writer_key, seal):
        raise Unattested(
            f"the newest version of person {person_id} carries no seal of the application's "
            "writer key (it was written with the database login alone?): it is not trusted; "
            "`peoplelog person restore` writes the last attested state back")


def unwrap(keyring: Keyring, person_id: uuid.UUID, wrapped: Wrapped | None) -> DataKey:
    """The data key of a person who is not erased (the callers checked): no key row then
    is damage to the key store, never a silent "erased"."""
    if wrapped is None:
        raise missing_key(person_id)
    key_version, kek_id, blob = wrapped
    return DataKey.unwrap(person_id, key_version, blob, keyring.get(kek_id, KeyPurpose.KEK))


def missing_key(person_id: uuid.UUID) -> DecryptionFailed:
    return DecryptionFailed(
        f"person {person_id} has no data key though they are not erased: the key store is "
        "damaged (`peoplelog verify` reports it as key_missing)")


def load_data_key(conn: Conn, keyring: Keyring, person_id: uuid.UUID,
                  key_version: int | None = None) -> DataKey:
    """The person's newest data key (or the version ``key_version``, which older versions'
    ciphertexts name after a data-key rotation); ``PersonErased`` when their chain ends in
    an erasure, ``DecryptionFailed`` when the key is missing otherwise (a damaged store)."""
    row = conn.execute(
        "SELECT key_version, kek_id, wrapped_key FROM person_keys WHERE person_id = %s"
        " AND (%s::integer IS NULL OR key_version = %s) ORDER BY key_version DESC LIMIT 1",
        (person_id, key_version, key_version),
    ).fetchone()
    if row is None:
        head = conn.execute(
            "SELECT op FROM people WHERE person_id = %s ORDER BY version DESC LIMIT 1",
            (person_id,)).fetchone()
        if head is not None and head[0] == Op.ERASED:
            raise PersonErased(f"person {person_id} was erased; nothing of it can be read")
        raise missing_key(person_id)
    return unwrap(keyring, person_id, (int(row[0]), str(row[1]), bytes(row[2])))
