"""Login attempts counted per account and per client address (``account_throttle``).

An attempt is counted before its password is checked, in one atomic upsert per key, so
parallel guesses are counted as they start and cannot slip past the limit. A success clears
the account's count (a reset by link too: the way back in while locked). When an account's
count first passes the limit, the account is locked for a time and, in the same
transaction, its credential epoch moves and its sessions and links end."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["Throttle", "account_key", "client_key", "count_request"]

_COUNT = """
INSERT INTO account_throttle AS t (key, attempts, window_start) VALUES (%(key)s, 1, now())
ON CONFLICT (key) DO UPDATE SET
    attempts = CASE WHEN timezone('UTC', t.window_start) + %(window)s::interval
                         < timezone('UTC', excluded.window_start)
                    THEN 1 ELSE t.attempts + 1 END,
    window_start = CASE WHEN timezone('UTC', t.window_start) + %(window)s::interval
                             < timezone('UTC', excluded.window_start)
                        THEN excluded.window_start ELSE t.window_start END,
    locked_until = CASE WHEN t.locked_until > excluded.window_start THEN t.locked_until END
RETURNING attempts, locked_until IS NOT NULL
"""
"""``excluded.window_start`` is the statement's ``now()``, and the window is added in UTC:
a Citus cluster takes only immutable expressions in an upsert's SET and RETURNING (not
``now()``, nor ``timestamptz + interval``, which depends on the session's time zone). A
lock still in force is the only one the SET keeps."""
_LOCK = ("UPDATE account_throttle SET locked_until = now() + %s::interval"
         " WHERE key = %s AND (locked_until IS NULL OR locked_until <= now())")
_END_CREDENTIALS = (
    "INSERT INTO account_credentials AS c (person_id, epoch) VALUES (%(p)s, 1)"
    " ON CONFLICT (person_id) DO UPDATE SET epoch = c.epoch + 1",
    "DELETE FROM account_sessions WHERE person_id = %(p)s",
    "DELETE FROM account_one_time WHERE person_id = %(p)s",
)


def count_request(conn: Any, key: bytes, window: timedelta) -> int:
    """Count one request under ``key`` (a label and a keyed digest, never plaintext) in the
    same counters as login attempts; the number counted in the current window."""
    return int(conn.execute(_COUNT, {"key": key, "window": window}).fetchone()[0])


def account_key(person_id: uuid.UUID) -> bytes:
    return b"p" + person_id.bytes


def client_key(digest: bytes) -> bytes:
    return b"c" + digest


@dataclass(frozen=True)
class Throttle:
    """The limits: ``account_limit`` attempts per account and ``client_limit`` per client
    address within ``window``; past either, that key is locked for ``lockout``."""

    account_limit: int = 10
    client_limit: int = 100
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)

    def count(self, conn: Any, person_id: uuid.UUID | None, client: bytes | None,
              on_lock: Callable[[Any, uuid.UUID | None, str], None] | None = None) -> bool:
        """Count one attempt for the account (when known) and the client (when given);
        False when either is locked or now passes its limit (the attempt must fail).
        ``on_lock`` hears of each lock this attempt sets (the person, or None for a client
        address; ``"account"`` or ``"client"``), in the same transaction."""
        allowed = True
        keys: list[tuple[bytes, int, uuid.UUID | None]] = []
        if client is not None:
            keys.append((client_key(client), self.client_limit, None))
        if person_id is not None:
            keys.append((account_key(person_id), self.account_limit, person_id))
        for key, limit, person in sorted(keys):  # one lock order for every attempt
            attempts, locked = conn.execute(_COUNT, {"key": key,
                                                     "window": self.window}).fetchone()
            if locked:
                allowed = False
            elif attempts > limit:
                allowed = False
                if not conn.execute(_LOCK, (self.lockout, key)).rowcount:
                    continue
                if person is not None:
                    for statement in _END_CREDENTIALS:  # a lockout ends every session
                        conn.execute(statement, {"p": person})
                if on_lock is not None:
                    on_lock(conn, person, "client" if person is None else "account")
        return allowed

    @staticmethod
    def clear(conn: Any, person_id: uuid.UUID) -> None:
        """A success: the account's count starts again."""
        conn.execute("DELETE FROM account_throttle WHERE key = %s", (account_key(person_id),))
