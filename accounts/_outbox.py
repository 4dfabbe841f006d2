"""Delivering the outbox: due messages, decrypted with their person's data key, handed to a
mailer; each marked sent (its text then dropped) or retried later with a growing delay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from peoplelog.ledger import Ledger
from peoplelog.schema import PeoplelogError

from ._mail import Mailer, Message

__all__ = ["MAX_DELAY", "OutboxSummary", "send_pending"]

MAX_DELAY = timedelta(hours=1)

_DUE = """
SELECT message_id, person_id, message, attempts FROM account_outbox
WHERE sent_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at, message_id LIMIT %s
FOR UPDATE SKIP LOCKED
"""
"""Due messages, locked: two senders never deliver the same message."""
_SENT = ("UPDATE account_outbox SET sent_at = now(), message = ''::bytea, last_error = NULL"
         " WHERE message_id = %s")
_FAILED = ("UPDATE account_outbox SET attempts = attempts + 1, last_error = %s,"
           " next_attempt_at = now() + %s::interval WHERE message_id = %s")


@dataclass
class OutboxSummary:
    """What one run delivered, what failed (to be retried), and what is still queued."""

    sent: int = 0
    failed: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "pending": self.pending}


def _delay(attempts: int) -> timedelta:
    return min(MAX_DELAY, timedelta(seconds=30 * 2 ** min(attempts, 10)))


def send_pending(ledger: Ledger, mailer: Mailer, *, batch: int = 50,
                 limit: int | None = None) -> OutboxSummary:
    """Deliver due messages, ``batch`` per transaction, at most ``limit`` in all. A message
    that cannot be delivered records why (the error's type only: no address, no text) and
    waits 30 s, then twice as long each time, up to an hour."""
    summary = OutboxSummary()
    while limit is None or summary.sent + summary.failed < limit:
        size = batch if limit is None else min(batch, limit - summary.sent - summary.failed)

        def deliver(conn: Any, size: int = size) -> int:
            rows = conn.execute(_DUE, (size,)).fetchall()
            for message_id, person_id, blob, attempts in rows:
                error = _send(ledger, mailer, person_id, bytes(blob))
                if error is None:
                    conn.execute(_SENT, (message_id,))
                    summary.sent += 1
                else:
                    conn.execute(_FAILED, (error, _delay(attempts), message_id))
                    summary.failed += 1
            return len(rows)

        if ledger.database.transaction(deliver, attempts=1) < size:
            break
    row = ledger.database.fetch_one(
        "SELECT count(*) FROM account_outbox WHERE sent_at IS NULL", ())
    summary.pending = 0 if row is None else int(row[0])
    return summary


def _send(ledger: Ledger, mailer: Mailer, person_id: uuid.UUID, blob: bytes) -> str | None:
    try:
        message = Message.from_json(ledger.decrypt_field(person_id, "mail", blob))
        mailer.send(message)
    except PeoplelogError as exc:
        return exc.kind
    except Exception as exc:
        return type(exc).__name__
    return None
