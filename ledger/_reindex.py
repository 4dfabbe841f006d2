"""Blind-index key rotation, online: every email claim still under an older blind-index key
of the keyring is made again under the active one, in batches, while lookups go on (they
try every key of the keyring) and applications keep writing (new claims already use the
active key). Then the older key is retired: removed from the keyring, and with it the
last means to test a guessed address against what it hashed.

A claim is moved only after it is confirmed: the person's chain head is the application's,
not erased, and its email, decrypted, has this claim's digest under the claim's key. A claim
that does not check (damage, or tampering) is left where it is and reported, never made
afresh under the new key. Both steps need the owner's login: the database lets the
application's role add a claim only with a new version of its person."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from peoplelog.fields import (
    NORMALISATION_VERSION,
    BlindIndex,
    BlindIndexes,
    DataKey,
    KeyPurpose,
    Keyring,
    NormalisedEmail,
    normalise_email,
)
from peoplelog.schema import Conflict, DecryptionFailed, InvalidInput, Op, PeoplelogError

from ._heads import head_with_key, load_data_key, unwrap
from ._read import check_keyring
from ._store import Database
from ._write import claim_seal

__all__ = ["REINDEX_BATCH", "ReindexSummary", "reindex_claims", "retire_blind_key"]

Conn = psycopg.Connection[Any]

REINDEX_BATCH = 500
"""Persons whose claims are moved per transaction: short transactions, so a write to one
of them waits at most one batch."""


@dataclass
class ReindexSummary:
    """What a run did: the active key, claims moved to it, claims left under older keys
    at the end, and the persons whose claim did not check (left alone, with why)."""

    key_id: str
    reindexed: int = 0
    remaining: int = 0
    unconfirmed: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "reindexed": self.reindexed,
                "remaining": self.remaining, "unconfirmed": self.unconfirmed}


_NEXT = ("SELECT DISTINCT person_id FROM email_lookup WHERE key_id <> %s AND person_id > %s"
         " ORDER BY person_id LIMIT %s")
_LOCK_HEADS = ("SELECT person_id FROM people_latest WHERE person_id = ANY(%s)"
               " ORDER BY person_id FOR UPDATE")
"""The heads are locked in person order before their claims, as every writer locks a head
before its claim (and each locks one): an email change waits for the batch, or the batch
for it, and neither sees the other's claim half made."""
_CLAIMS = ("SELECT person_id, blind_index, key_id, norm FROM email_lookup"
           " WHERE person_id = ANY(%s) AND key_id <> %s ORDER BY person_id FOR UPDATE")
_LOCK_HEAD = "SELECT 1 FROM people_latest WHERE person_id = %s FOR UPDATE"
_CLAIMS_UNDER_HEADS = ("SELECT person_id, blind_index, key_id, norm FROM email_lookup"
                       " WHERE person_id = ANY(%s) AND key_id <> %s ORDER BY person_id")
"""``_LOCK_HEADS`` and ``_CLAIMS`` on a Citus cluster, which locks rows of one shard per
statement only: the heads are locked one by one, in the same order, and the claims read
under them (a writer changes a claim only under its person's head lock)."""
_CLAIM = ("INSERT INTO email_lookup (blind_index, person_id, key_id, norm, claim_key, claim)"
          " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (blind_index) DO NOTHING")


class _Unconfirmed(Exception):
    """A claim that does not check against its person's chain head."""


class _Batch:
    def __init__(self, keyring: Keyring, *, distributed: bool = False) -> None:
        self.keyring = keyring
        self.distributed = distributed
        self.active = BlindIndexes.of(keyring).active
        self._older: dict[str, BlindIndex] = {}

    def older(self, key_id: str) -> BlindIndex:
        blind = self._older.get(key_id)
        if blind is None:
            key = self.keyring.find(key_id)
            if key is None or key.purpose is not KeyPurpose.BLIND_INDEX:
                raise _Unconfirmed(f"the claim is under blind-index key {key_id!r}, which "
                                   "the keyring does not hold")
            blind = self._older[key_id] = BlindIndex(key)
        return blind

    def run(self, conn: Conn, after: uuid.UUID, size: int
            ) -> tuple[uuid.UUID | None, int, list[dict[str, str]]]:
        pids = [row[0] for row in conn.execute(_NEXT, (self.active.key.id, after, size))]
        if not pids:
            return None, 0, []
        if self.distributed:
            for pid in pids:
                conn.execute(_LOCK_HEAD, (pid,))
        else:
            conn.execute(_LOCK_HEADS, (pids,))
        moved, unconfirmed = 0, []
        for pid, digest, key_id, norm in conn.execute(
                _CLAIMS_UNDER_HEADS if self.distributed else _CLAIMS,
                (pids, self.active.key.id)).fetchall():
            try:
                email, ciphertext = self._confirm(conn, pid, bytes(digest), key_id, norm)
            except _Unconfirmed as exc:
                unconfirmed.append({"person_id": str(pid), "why": str(exc)})
                continue
            new = self.active.digest(email)
            seal = claim_seal(self.keyring, new, pid, ciphertext)
            assert seal is not None  # a confirmed claim's head has an email
            if conn.execute(_CLAIM, (new, pid, self.active.key.id, NORMALISATION_VERSION,
                                     *seal)).rowcount != 1:
                unconfirmed.append({"person_id": str(pid), "why": "another person's claim "
                                    "already holds this email under the active key"})
                continue
            conn.execute("DELETE FROM email_lookup WHERE blind_index = %s", (digest,))
            moved += 1
        return pids[-1], moved, unconfirmed

    def _confirm(self, conn: Conn, pid: uuid.UUID, digest: bytes, key_id: str,
                 norm: int) -> tuple[NormalisedEmail, bytes]:
        """The claimed email (normalised) and the head's email ciphertext, once the claim
        checks: the head is the chain's and the application's, not erased, and its email
        has this digest under the claim's key."""
        try:
            head, wrapped = head_with_key(conn, self.keyring, pid, lock=False)
        except PeoplelogError as exc:  # ProjectionDamaged, Unattested
            raise _Unconfirmed(exc.message) from None
        if head is None or head.op == Op.ERASED or head.email is None:
            raise _Unconfirmed("the person has no current email (erased, or no head)")
        if norm != NORMALISATION_VERSION:
            raise _Unconfirmed(f"the claim uses normalisation {norm}, not "
                               f"{NORMALISATION_VERSION}: rebuild the projections")
        blob = bytes(head.email)
        try:
            data_key = unwrap(self.keyring, pid, wrapped)
            version = DataKey.key_version_of(blob)
            if version != data_key.version:
                data_key = load_data_key(conn, self.keyring, pid, version)
            plain = data_key.decrypt("email", blob)
            email = normalise_email(plain.decode("utf-8"))
        except (DecryptionFailed, InvalidInput, UnicodeDecodeError):
            raise _Unconfirmed("the current email cannot be read") from None
        if self.older(key_id).digest(email) != digest:
            raise _Unconfirmed("the claim is not the digest of the person's current email")
        return email, blob


def reindex_claims(database: Database, keyring: Keyring, *,
                   batch_size: int = REINDEX_BATCH,
                   progress: Callable[[int], None] | None = None) -> ReindexSummary:
    """Move every email claim under an older blind-index key to the keyring's active one,
    one batch of persons per transaction (an interruption keeps the finished batches: run
    it again to resume). First records the active key (``check_keyring``), after which the
    database refuses claims under older keys from every application."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    database.run(lambda conn: check_keyring(conn, keyring))
    batch = _Batch(keyring, distributed=database.distributed)
    summary = ReindexSummary(key_id=batch.active.key.id)
    after = uuid.UUID(int=0)
    while True:
        last, moved, unconfirmed = database.transaction(
            functools.partial(batch.run, after=after, size=batch_size))
        if last is None:
            break
        after = last
        summary.reindexed += moved
        summary.unconfirmed.extend(unconfirmed)
        if progress is not None:
            progress(summary.reindexed)
    row = database.fetch_one("SELECT count(*) FROM email_lookup WHERE key_id <> %s",
                             (summary.key_id,))
    summary.remaining = 0 if row is None else int(row[0])
    return summary


def retire_blind_key(database: Database, keyring: Keyring, key_id: str, *,
                     forget_external_ids: bool = False) -> tuple[Keyring, int]:
    """Forget the older blind-index key ``key_id`` in the database (its fingerprint record)
    and return the keyring without it (the caller replaces the keyring file), with the
    number of external ids forgotten.

    Refused (``Conflict``) while it is active or any claim still uses it. Imported records'
    external ids hashed under it cannot be hashed again without the ids themselves: the
    retirement is refused while any remain, unless ``forget_external_ids`` deletes them (an
    import then matches those records by email only; an import with ``--update`` of the
    same file hashes their ids anew)."""
    key = keyring.get(key_id, KeyPurpose.BLIND_INDEX)
    if keyring.active(KeyPurpose.BLIND_INDEX).id == key.id:
        raise Conflict(f"blind-index key {key_id!r} is the active one: add a new one and "
                       "move the claims first (`peoplelog keys rotate-blind-index --add-key`)")

    def retire(conn: Conn) -> int:
        conn.execute("LOCK TABLE email_lookup, external_ids IN SHARE MODE")
        claims = _count(conn, "SELECT count(*) FROM email_lookup WHERE key_id = %s", key.id)
        if claims:
            raise Conflict(f"{claims} email claim(s) still use blind-index key {key_id!r}: "
                           "run `peoplelog keys rotate-blind-index` again (once every "
                           "application has the new keyring)")
        ids = _count(conn, "SELECT count(*) FROM external_ids WHERE key_id = %s", key.id)
        if ids and not forget_external_ids:
            raise Conflict(f"{ids} imported external id(s) are hashed under {key_id!r} and "
                           "cannot be hashed again without the ids: import the records "
                           "again with --update, or pass --forget-external-ids")
        if ids:
            conn.execute("DELETE FROM external_ids WHERE key_id = %s", (key.id,))
        conn.execute("DELETE FROM peoplelog_key_checks WHERE key_id = %s", (key.id,))
        return ids

    forgotten = database.transaction(retire)
    return keyring.without(key.id), forgotten


def _count(conn: Conn, query: str, key_id: str) -> int:
    row = conn.execute(query, (key_id,)).fetchone()
    return 0 if row is None else int(row[0])
