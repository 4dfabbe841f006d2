"""What the write paths do on a Citus cluster that one server's triggers do for them.

On one server the credential trigger on ``people_latest`` moves the person's credential
epoch and, in the same statement, deletes their sessions and one-time tokens (and, on an
erasure, their queued mail). On a cluster the trigger fires on the person's shard, where
it can move the epoch (``account_credentials`` is co-located) but cannot reach the
reference tables those rows are in. The epoch alone already ends them: every check,
listing, link and ``verify`` compares it. ``clear_ended`` then deletes the rows, right
after the write, from the coordinator; ``account cleanup`` deletes any a crash left.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

__all__ = ["clear_ended"]

_STATE = ("SELECT coalesce((SELECT epoch FROM account_credentials WHERE person_id = %(p)s), 0),"
          " coalesce((SELECT erased_at IS NOT NULL FROM people_latest"
          " WHERE person_id = %(p)s), false)")
_ANY_ENDED = """
SELECT EXISTS (SELECT 1 FROM account_sessions WHERE person_id = %(p)s AND epoch <> %(e)s)
    OR EXISTS (SELECT 1 FROM account_one_time WHERE person_id = %(p)s AND epoch <> %(e)s)
    OR (%(erased)s AND EXISTS (SELECT 1 FROM account_outbox WHERE person_id = %(p)s))
"""
_DELETES = (
    "DELETE FROM account_sessions WHERE person_id = %(p)s AND epoch <> %(e)s",
    "DELETE FROM account_one_time WHERE person_id = %(p)s AND epoch <> %(e)s",
)
_DELETE_MAIL = "DELETE FROM account_outbox WHERE person_id = %(p)s"


def clear_ended(conn: psycopg.Connection[Any], person_id: uuid.UUID) -> None:
    """Delete the sessions and one-time tokens of ``person_id`` that an older credential
    epoch issued, and an erased person's queued mail: one routed read and one local read
    when there is nothing to delete (the usual case), the deletes otherwise."""
    epoch, erased = conn.execute(_STATE, {"p": person_id}).fetchone() or (0, False)
    params = {"p": person_id, "e": epoch, "erased": erased}
    row = conn.execute(_ANY_ENDED, params).fetchone()
    if row is None or not row[0]:
        return
    for statement in _DELETES:
        conn.execute(statement, params)
    if erased:
        conn.execute(_DELETE_MAIL, params)
