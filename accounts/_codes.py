"""Sign-in codes: six digits mailed to the person's address, typed back with the address.

A code is guessable, so it is never a lookup key: its row is found by the person (whose
address was typed) and purpose, and the code is checked against the row's seal (the
writer key's HMAC over the code and the row's meaning, as for a link). Each wrong try is
counted on the row, which is void after ``code_attempts``; the login-attempt counts of the
account and the client apply too. Only the newest code of a person works."""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import datetime
from typing import Any

from peoplelog.fields import Attestations, Attestor

from ._tokens import link_grant

__all__ = ["CODE_DIGITS", "ISSUE_CODE", "STILL_BOUND", "TAKE_CODES", "TAKE_CODES_ALONE",
           "code_params", "new_code", "still_bound", "take_code"]

CODE_DIGITS = 6

ISSUE_CODE = """
WITH gone AS (DELETE FROM account_one_time WHERE person_id = %(person_id)s
              AND purpose = 'login_code')
INSERT INTO account_one_time (lookup, seal, seal_key, person_id, purpose, sent_to, epoch,
                              expires_at)
SELECT %(lookup)s, %(seal)s, %(seal_key)s, %(person_id)s, 'login_code', %(sent_to)s,
       %(epoch)s, %(expires_at)s
WHERE EXISTS (SELECT 1 FROM email_lookup
              WHERE blind_index = %(sent_to)s AND person_id = %(person_id)s)
  AND (SELECT coalesce(max(epoch), 0) FROM account_credentials
       WHERE person_id = %(person_id)s) = %(epoch)s
RETURNING expires_at
"""
"""A person's new code, replacing any earlier one, bound to the address it is sent to."""

TAKE_CODES = """
SELECT t.lookup, t.seal, t.seal_key, t.sent_to, t.epoch, t.expires_at, t.attempts
FROM account_one_time AS t
LEFT JOIN account_credentials AS c ON c.person_id = t.person_id
WHERE t.person_id = %s AND t.purpose = 'login_code' AND t.expires_at > now()
  AND t.epoch = coalesce(c.epoch, 0)
  AND EXISTS (SELECT 1 FROM email_lookup AS l
              WHERE l.person_id = t.person_id AND l.blind_index = t.sent_to)
FOR UPDATE OF t
"""

TAKE_CODES_ALONE = """
SELECT lookup, seal, seal_key, sent_to, epoch, expires_at, attempts FROM account_one_time
WHERE person_id = %s AND purpose = 'login_code' AND expires_at > now()
FOR UPDATE
"""
STILL_BOUND = """
SELECT (SELECT coalesce(max(epoch), 0) FROM account_credentials
        WHERE person_id = %(person)s) = %(epoch)s
   AND EXISTS (SELECT 1 FROM email_lookup
               WHERE blind_index = %(sent_to)s AND person_id = %(person)s)
"""
"""``TAKE_CODES`` (and a link's take) on a Citus cluster, where a locked one-time row (a
reference table) cannot be joined with the epoch and the claim (on other shards): the
rows are locked alone, then each is kept only while its epoch is its person's and the
address it was sent to is still theirs, each table read by its own key."""


def still_bound(conn: Any, person: uuid.UUID, epoch: int, sent_to: bytes) -> bool:
    """``STILL_BOUND`` for one one-time row."""
    return bool(conn.execute(STILL_BOUND, {"person": person, "epoch": epoch,
                                           "sent_to": sent_to}).fetchone()[0])


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_params(attestor: Attestor, code: str, *, person: uuid.UUID, sent_to: bytes,
                epoch: int, expires_at: datetime) -> dict[str, Any]:
    """What ``ISSUE_CODE`` stores: a random lookup key and the seal."""
    seal = attestor.seal_grant(link_grant(code, person_id=person, purpose="login_code",
                                          sent_to=sent_to, epoch=epoch, new_email=None,
                                          expires_at=expires_at))
    return {"lookup": os.urandom(16), "seal": seal, "seal_key": attestor.key_id,
            "person_id": person, "sent_to": sent_to, "epoch": epoch,
            "expires_at": expires_at}


def take_code(conn: Any, checks: Attestations, person: uuid.UUID, code: str,
              attempts: int, *, distributed: bool = False) -> int | None:
    """Use ``code`` of ``person`` in the caller's transaction: the epoch it was issued
    under when it checks (the row is then deleted), None otherwise (a wrong try is counted;
    the row goes at ``attempts``). ``distributed``: on a Citus cluster."""
    if distributed:
        rows = [row for row in conn.execute(TAKE_CODES_ALONE, (person,)).fetchall()
                if still_bound(conn, person, row[4], bytes(row[3]))]
    else:
        rows = conn.execute(TAKE_CODES, (person,)).fetchall()
    for lookup, seal, seal_key, sent_to, epoch, expires_at, tried in rows:
        grant = link_grant(code, person_id=person, purpose="login_code",
                           sent_to=bytes(sent_to), epoch=epoch, new_email=None,
                           expires_at=expires_at)
        if checks.holds_grant(seal_key, bytes(seal), grant):
            conn.execute("DELETE FROM account_one_time WHERE lookup = %s", (lookup,))
            return int(epoch)
        if tried + 1 >= attempts:
            conn.execute("DELETE FROM account_one_time WHERE lookup = %s", (lookup,))
        else:
            conn.execute("UPDATE account_one_time SET attempts = attempts + 1"
                         " WHERE lookup = %s", (lookup,))
    return None
