"""Key-encryption-key rotation in epochs: re-wrap every live data key under the keyring's
active KEK (online, in batches, resumable), and record each KEK's epoch in ``kek_epochs``
so an old KEK is retired (destroyed) only when no live key needs it.

Why: PostgreSQL's WAL, archives, base backups and replicas keep each data key as it was
wrapped when written. An erasure deletes the live row, not those copies; only destroying
every KEK that wrapped them makes them useless. Both steps need the owner's login (the
application role may not update ``person_keys``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from peoplelog.fields import DataKey, Key, KeyPurpose, Keyring
from peoplelog.schema import Conflict, KeyNotFound, KeyringError

from ._store import Database

__all__ = ["REWRAP_BATCH", "KekEpoch", "RewrapSummary", "kek_epochs", "retire_kek",
           "rewrap_data_keys"]

Conn = psycopg.Connection[Any]

REWRAP_BATCH = 500
"""Data keys re-wrapped per transaction: short transactions, so appends and erasures of
the same persons wait at most one batch."""


@dataclass
class RewrapSummary:
    """What a re-wrap did: under which KEK, how many keys, and how many were left under
    older KEKs at the end (written meanwhile by an application still holding the old
    keyring: run it again once every application has the new one)."""

    kek_id: str
    rewrapped: int = 0
    remaining: int = 0
    drained: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kek_id": self.kek_id, "rewrapped": self.rewrapped,
                "remaining": self.remaining, "drained": self.drained}


@dataclass(frozen=True)
class KekEpoch:
    """One KEK's epoch as ``kek_epochs`` records it, with the live data keys under it."""

    kek_id: str
    activated_at: datetime
    drained_at: datetime | None
    retired_at: datetime | None
    live_keys: int

    def as_dict(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()
        return {"kek_id": self.kek_id, "activated_at": moment(self.activated_at),
                "drained_at": moment(self.drained_at), "retired_at": moment(self.retired_at),
                "live_keys": self.live_keys}


_OLDER = ("SELECT person_id, key_version, kek_id, wrapped_key FROM person_keys"
          " WHERE kek_id <> %s ORDER BY person_id, key_version LIMIT %s FOR UPDATE")
_OLDER_ON_CLUSTER = ("SELECT person_id, key_version, kek_id, wrapped_key FROM person_keys"
                     " WHERE kek_id <> %s ORDER BY person_id, key_version LIMIT %s")
"""``_OLDER`` on a Citus cluster, which cannot lock rows across shards: the keys are read
unlocked and each is re-wrapped only if it is still the one read (``_REWRAP``'s guard)."""
_REWRAP = ("UPDATE person_keys SET kek_id = %s, wrapped_key = %s"
           " WHERE person_id = %s AND key_version = %s AND kek_id = %s")
_FIRST_USED = "SELECT min(created_at) FROM person_keys WHERE kek_id = %s"
_RECORD = ("INSERT INTO kek_epochs (kek_id, fingerprint, activated_at)"
           " VALUES (%s, %s, coalesce(%s, now())) ON CONFLICT (kek_id) DO NOTHING")
_ACTIVATE = ("INSERT INTO kek_epochs (kek_id, fingerprint, activated_at) VALUES (%s, %s, now())"
             " ON CONFLICT (kek_id) DO NOTHING")
_UNDRAIN = "UPDATE kek_epochs SET drained_at = NULL WHERE kek_id = %s AND drained_at IS NOT NULL"
"""Keys written under a drained KEK since (an application with an old keyring): its
retention counts again from when they are re-wrapped."""
_IN_USE = "SELECT DISTINCT kek_id FROM person_keys"
_DRAIN = ("UPDATE kek_epochs SET drained_at = now() WHERE kek_id <> %s"
          " AND drained_at IS NULL AND kek_id <> ALL(%s) RETURNING kek_id")
"""The KEKs no live data key is wrapped under (``_IN_USE`` read first: ``kek_epochs`` is a
reference table on a Citus cluster, which takes no subquery on a distributed table in an
UPDATE) are marked drained."""


def _record_epochs(conn: Conn, keyring: Keyring, active: Key) -> None:
    """Every KEK with live data keys gets its epoch (from its oldest key on); the active
    one starts now if it is new."""
    in_use = [row[0] for row in conn.execute(_IN_USE)]
    for kek_id in in_use:
        if kek_id == active.id:
            continue
        key = keyring.find(kek_id)
        if key is None or key.purpose is not KeyPurpose.KEK:
            raise KeyNotFound(f"live data keys are wrapped under key-encryption key "
                              f"{kek_id!r}, which the keyring {keyring.source} does not hold")
        first = conn.execute(_FIRST_USED, (key.id,)).fetchone()
        conn.execute(_RECORD, (key.id, key.fingerprint, None if first is None else first[0]))
        conn.execute(_UNDRAIN, (key.id,))
    conn.execute(_ACTIVATE, (active.id, active.fingerprint))
    for kek_id in {*in_use, active.id}:
        _same_key(conn, keyring.get(kek_id, KeyPurpose.KEK))


def _same_key(conn: Conn, key: Key) -> None:
    """Refuse a KEK whose name an epoch already records for a different secret (a
    retired key's name given to a new one)."""
    row = conn.execute("SELECT fingerprint, retired_at FROM kek_epochs WHERE kek_id = %s",
                       (key.id,)).fetchone()
    if row is not None and (bytes(row[0]) != key.fingerprint or row[1] is not None):
        raise KeyringError(f"key-encryption key {key.id!r} is not the key of that name "
                           "the database knows (retired, or another secret): give the new "
                           "key a name never used before")


def _rewrap_batch(conn: Conn, keyring: Keyring, active: Key, size: int,
                  distributed: bool) -> int:
    rows = conn.execute(_OLDER_ON_CLUSTER if distributed else _OLDER,
                        (active.id, size)).fetchall()
    updates = []
    for person_id, key_version, kek_id, wrapped in rows:
        old = keyring.get(kek_id, KeyPurpose.KEK)
        rewrapped = DataKey.rewrap(person_id, key_version, bytes(wrapped), old, active)
        updates.append((active.id, rewrapped, person_id, key_version, kek_id))
    if updates:
        with conn.cursor() as cur:
            cur.executemany(_REWRAP, updates)
    return len(rows)


def rewrap_data_keys(database: Database, keyring: Keyring, *, batch_size: int = REWRAP_BATCH,
                     progress: Callable[[int], None] | None = None) -> RewrapSummary:
    """Re-wrap every live data key that is not under the keyring's active KEK, one batch
    per transaction (an interruption keeps the finished batches: run it again to resume).
    A key that does not unwrap stops the run with ``DecryptionFailed``, its batch
    untouched. Marks each older KEK drained once no live key needs it."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    active = keyring.active(KeyPurpose.KEK)
    summary = RewrapSummary(kek_id=active.id)
    database.transaction(lambda conn: _record_epochs(conn, keyring, active))
    distributed = database.distributed
    while True:
        done = database.transaction(
            lambda conn: _rewrap_batch(conn, keyring, active, batch_size, distributed))
        summary.rewrapped += done
        if progress is not None:
            progress(summary.rewrapped)
        if done < batch_size:
            break

    def finish(conn: Conn) -> tuple[int, list[str]]:
        in_use = [row[0] for row in conn.execute(_IN_USE)]
        drained = [row[0] for row in conn.execute(_DRAIN, (active.id, in_use))]
        left = conn.execute("SELECT count(*) FROM person_keys WHERE kek_id <> %s",
                            (active.id,)).fetchone()
        return (0 if left is None else int(left[0])), drained

    summary.remaining, summary.drained = database.transaction(finish)
    return summary


def kek_epochs(database: Database) -> list[KekEpoch]:
    """Every recorded KEK epoch, oldest first, with its live data keys."""
    def read(conn: Conn) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
        live = dict(conn.execute(
            "SELECT kek_id, count(*) FROM person_keys GROUP BY kek_id").fetchall())
        return conn.execute("SELECT kek_id, activated_at, drained_at, retired_at"
                            " FROM kek_epochs ORDER BY activated_at, kek_id").fetchall(), live

    rows, live = database.run(read, retry_lost=True)
    return [KekEpoch(row[0], row[1], row[2], row[3], int(live.get(row[0], 0)))
            for row in rows]


def retire_kek(database: Database, keyring: Keyring, kek_id: str, *,
               retention: timedelta) -> Keyring:
    """Record the retirement of ``kek_id`` and return the keyring without it (the caller
    replaces the keyring file: that is the destruction).

    Refused (``Conflict``) while it is the active KEK, while any live data key is wrapped
    under it, while an older KEK is still in the keyring (a person's key may have been
    wrapped under each KEK of its life: they go oldest first), and until ``retention`` (the
    age of the oldest backup or WAL archive kept) has passed since it was drained."""
    key = keyring.get(kek_id, KeyPurpose.KEK)
    if keyring.active(KeyPurpose.KEK).id == kek_id:
        raise Conflict(f"key-encryption key {kek_id!r} is the active one: add a new one "
                       "and re-wrap first (`peoplelog keys add-kek`, `keys rotate-kek`)")

    def retire(conn: Conn) -> None:
        epochs = {row[0]: row[1:] for row in conn.execute(
            "SELECT kek_id, activated_at, drained_at, retired_at, now() FROM kek_epochs"
            " FOR UPDATE")}
        live = conn.execute("SELECT count(*) FROM person_keys WHERE kek_id = %s",
                            (kek_id,)).fetchone()
        if live is not None and live[0]:
            raise Conflict(f"{live[0]} live data key(s) are still wrapped under {kek_id!r}: "
                           "run `peoplelog keys rotate-kek` again (once every "
                           "application has the new keyring)")
        epoch = epochs.get(kek_id)
        if epoch is None or epoch[1] is None:
            raise Conflict(f"{kek_id!r} has no drained epoch: run `peoplelog keys "
                           "rotate-kek` first")
        activated, drained, _retired, now = epoch
        older = sorted(other for other, (started, *_rest) in epochs.items()
                       if other != kek_id and started < activated
                       and keyring.find(other) is not None)
        if older:
            raise Conflict(f"retire the older key-encryption key(s) {', '.join(older)} "
                           f"first: a data key may have been wrapped under each of them")
        if drained + retention > now:
            raise Conflict(f"{kek_id!r} was drained at {drained.isoformat()}; with a "
                           f"retention of {retention}, backups of its epoch may exist until "
                           f"{(drained + retention).isoformat()}")
        conn.execute("UPDATE kek_epochs SET retired_at = now()"  # a retired one stays
                     " WHERE kek_id = %s AND retired_at IS NULL", (kek_id,))

    database.transaction(retire)
    return keyring.without(key.id)
