"""Cleanup: what has ended is deleted in bounded batches (one short transaction each, rows
taken with SKIP LOCKED), so it can run while the application serves."""

from __future__ import annotations

import functools
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


def clean_up(database: Database, *, window: timedelta, keep_sent: timedelta = timedelta(days=7),
             batch: int = CLEANUP_BATCH) -> CleanupSummary:
    """Delete what has ended, ``batch`` rows per transaction."""
    if batch < 1:
        raise ValueError("batch must be positive")
    summary = CleanupSummary()
    params: dict[str, Any] = {"batch": batch, "window": window, "keep_sent": keep_sent}
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
