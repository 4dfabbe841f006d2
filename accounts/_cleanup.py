"""Cleanup: what has ended is deleted in bounded batches (one short transaction each, rows
taken with SKIP LOCKED), so it can run while the application serves."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from peoplelog.ledger import Database

__all__ = ["CLEANUP_BATCH", "CleanupSummary", "clean_up"]

CLEANUP_BATCH = 25_000

_TARGETS: dict[str, str] = {
    "sessions": """
DELETE FROM account_sessions WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM account_sessions WHERE expires_at <= now() LIMIT %(batch)s))""",
    "idle sessions": """
DELETE FROM account_sessions WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM account_sessions
    WHERE idle_seconds IS NOT NULL AND last_used_at <= now() - interval '1 second'
      AND last_used_at + idle_seconds * interval '1 second' <= now()
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED))""",
    "ended sessions": """
DELETE FROM account_sessions WHERE ctid = ANY(ARRAY(
    SELECT s.ctid FROM account_sessions AS s
    JOIN account_credentials AS c ON c.person_id = s.person_id
    WHERE s.epoch <> c.epoch
    LIMIT %(batch)s FOR UPDATE OF s SKIP LOCKED))""",
    "links": """
DELETE FROM account_one_time WHERE lookup IN (
    SELECT t.lookup FROM account_one_time AS t
    LEFT JOIN account_credentials AS c ON c.person_id = t.person_id
    WHERE t.expires_at <= now() OR t.epoch <> coalesce(c.epoch, 0)
    LIMIT %(batch)s FOR UPDATE OF t SKIP LOCKED)""",
    "mail": """
DELETE FROM account_outbox WHERE message_id IN (
    SELECT message_id FROM account_outbox
    WHERE sent_at IS NOT NULL AND sent_at <= now() - %(keep_sent)s::interval
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED)""",
    "attempts": """
DELETE FROM account_throttle WHERE key IN (
    SELECT key FROM account_throttle
    WHERE window_start + %(window)s::interval <= now()
      AND (locked_until IS NULL OR locked_until <= now())
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED)""",
}
"""Sessions and tokens expired (by their index), idle too long, or of an older credential
epoch (a person with no epoch row has only epoch-0 sessions, which are current); links
expired or of an older epoch (used ones are deleted when used); mail sent longer ago than
``keep_sent``; attempt counts whose window and lock are over."""


@dataclass
class CleanupSummary:
    """Rows deleted, per kind."""

    deleted: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("sessions", "links", "mail", "attempts"), 0))

    def as_dict(self) -> dict[str, int]:
        return dict(self.deleted)


_CLUSTER_TARGETS: dict[str, tuple[str, str]] = {
    "sessions": ("""
SELECT lookup FROM account_sessions WHERE lookup > %(after)s AND expires_at <= now()
ORDER BY lookup LIMIT %(batch)s FOR UPDATE""", "account_sessions"),
    "idle sessions": ("""
SELECT lookup FROM account_sessions
WHERE lookup > %(after)s AND idle_seconds IS NOT NULL
  AND last_used_at <= now() - interval '1 second'
  AND last_used_at + idle_seconds * interval '1 second' <= now()
ORDER BY lookup LIMIT %(batch)s FOR UPDATE""", "account_sessions"),
    "ended sessions": ("""
SELECT lookup, person_id, epoch FROM account_sessions WHERE lookup > %(after)s
ORDER BY lookup LIMIT %(batch)s FOR UPDATE""", "account_sessions"),
    "links": ("""
SELECT lookup, person_id, epoch, expires_at <= now() FROM account_one_time
WHERE lookup > %(after)s ORDER BY lookup LIMIT %(batch)s FOR UPDATE""", "account_one_time"),
    "mail": ("""
SELECT message_id FROM account_outbox
WHERE message_id > %(after)s AND sent_at IS NOT NULL
  AND sent_at <= now() - %(keep_sent)s::interval
ORDER BY message_id LIMIT %(batch)s FOR UPDATE""", "account_outbox"),
    "attempts": ("""
SELECT key FROM account_throttle
WHERE key > %(after)s AND window_start + %(window)s::interval <= now()
  AND (locked_until IS NULL OR locked_until <= now())
ORDER BY key LIMIT %(batch)s FOR UPDATE""", "account_throttle"),
}
"""``_TARGETS`` on a Citus cluster, where these tables are reference tables (a copy on every
node) and the epochs are on the people's shards: each batch's rows are chosen and locked
by one read, in key order (so every copy deletes the same rows), the epochs asked for by
person, and the rows deleted by key. A scan for ended sessions and links reads the table
a batch at a time."""
_KEYS = {"account_sessions": "lookup", "account_one_time": "lookup",
         "account_outbox": "message_id", "account_throttle": "key"}
_EPOCHS = "SELECT person_id, epoch FROM account_credentials WHERE person_id = ANY(%s)"


def _cluster_batch(target: str, params: dict[str, Any], conn: Any) -> tuple[int, Any, int]:
    """One batch of ``target`` on a cluster: (rows deleted, the last key read, rows read)."""
    select, table = _CLUSTER_TARGETS[target]
    rows = conn.execute(select, params).fetchall()
    if not rows:
        return 0, None, 0
    if target in ("ended sessions", "links"):
        people = sorted({row[1] for row in rows})
        epochs = dict(conn.execute(_EPOCHS, (people,)).fetchall())
        keys = [row[0] for row in rows
                if row[2] != epochs.get(row[1], 0) or (len(row) > 3 and row[3])]
    else:
        keys = [row[0] for row in rows]
    deleted = 0
    if keys:
        deleted = int(conn.execute(
            f"DELETE FROM {table} WHERE {_KEYS[table]} = ANY(%s)",  # noqa: S608 - constants
            (keys,)).rowcount)
    return deleted, rows[-1][0], len(rows)


def _clean_up_cluster(database: Database, summary: CleanupSummary,
                      params: dict[str, Any]) -> None:
    for target, (_, table) in _CLUSTER_TARGETS.items():
        kind = target.split()[-1]
        after: Any = b"" if table != "account_outbox" else uuid.UUID(int=0)
        while True:
            done, last, read = database.transaction(functools.partial(
                _cluster_batch, target, {**params, "after": after}))
            summary.deleted[kind] += done
            if read < params["batch"]:
                break
            after = last


def clean_up(database: Database, *, window: timedelta, keep_sent: timedelta = timedelta(days=7),
             batch: int = CLEANUP_BATCH) -> CleanupSummary:
    """Delete what has ended, ``batch`` rows per transaction."""
    if batch < 1:
        raise ValueError("batch must be positive")
    summary = CleanupSummary()
    params: dict[str, Any] = {"batch": batch, "window": window, "keep_sent": keep_sent}
    if database.distributed:
        _clean_up_cluster(database, summary, params)
        return summary
    for target, statement in _TARGETS.items():
        kind = target.split()[-1]
        while True:
            done = database.transaction(functools.partial(_delete, statement, params))
            summary.deleted[kind] += done
            if done < batch:
                break
    return summary


def _delete(statement: str, params: dict[str, Any], conn: Any) -> int:
    return int(conn.execute(statement, params).rowcount)
