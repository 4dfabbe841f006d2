"""The security log, checked without keys, and its retention.

``iter_event_findings`` runs in ``verify`` after the log pass (which hashed every event's
log entry into the tree). It checks that every stored event gives its CID and is the one
its log entry names, that no logged event is missing but inside a recorded retirement
whose own event is in the log and whose count matches, and two invariants over the
sessions: every live session and access token has the event that issued it, and none was
issued before a later version of its person that changed the password or the email or
erased them (the version ended it; a session still live would be a revocation not made).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from peoplelog.fields import Attestations, Attestor
from peoplelog.ledger import (
    INSERT_EVENT,
    EventKind,
    SecurityEvent,
    event_params,
    stored_event,
    tables_distributed,
)
from peoplelog.schema import InvalidInput, NotPermitted

from ._checkpoint import CheckpointSigner
from ._log import LogReport
from ._sequencer import make_checkpoint
from ._verify import Finding

__all__ = ["ISSUED_KINDS", "RetirementSummary", "iter_event_findings", "retire_events"]

Conn = psycopg.Connection[Any]
_NIL = uuid.UUID(int=0)
_SEQUENCER_LOCK = 0x706C2D736571  # the sequencer's: no event is logged meanwhile
ISSUED_KINDS = ("session", "access_token")
"""The ``issued`` fact of an event that issued a session or token (with ``head``)."""

_EVENTS = """
SELECT e.seq, e.cid, e.id, e.kind, e.at, e.person_id, e.session_id, e.actor, e.facts,
       e.detail, l.position, l.cid, r.reason
FROM security_events e
LEFT JOIN log_entries l ON l.event = e.seq
LEFT JOIN security_events_refused r ON r.seq = e.seq
ORDER BY e.seq
"""
_MISSING = """
SELECT l.position, l.event, l.cid FROM log_entries l
WHERE l.event IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM security_events e WHERE e.seq = l.event)
ORDER BY l.event
"""
_RETIREMENTS = """
SELECT r.after_seq, r.through_seq, r.events, r.event_seq, e.kind, e.facts,
       l.cid = e.cid
FROM security_event_retirements r
LEFT JOIN security_events e ON e.seq = r.event_seq
LEFT JOIN log_entries l ON l.event = r.event_seq
ORDER BY r.through_seq
"""
_LIVE = """
SELECT s.session_id, s.person_id, s.kind FROM account_sessions s
LEFT JOIN account_credentials c ON c.person_id = s.person_id
WHERE s.epoch = coalesce(c.epoch, 0) AND s.expires_at > now()
  AND (s.idle_seconds IS NULL OR s.last_used_at + s.idle_seconds * interval '1 second' > now())
"""
_SESSIONS = "WITH live AS (" + _LIVE + """),
issued AS (
    SELECT v.session_id, v.person_id, v.kind, e.seq,
           CASE WHEN e.facts->>'head' ~ '^[0-9]{1,9}$' THEN (e.facts->>'head')::integer END
               AS head
    FROM live v
    LEFT JOIN LATERAL (
        SELECT x.seq, x.facts FROM security_events x
        WHERE x.session_id = v.session_id AND x.person_id = v.person_id
          AND x.facts->>'issued' = v.kind AND x.facts ? 'head'
        ORDER BY x.seq LIMIT 1) e ON true)
SELECT i.session_id, i.person_id, i.kind, i.seq, i.head,
       (SELECT min(c.version) FROM (
            SELECT p.version, p.op,
                   p.password IS DISTINCT FROM lag(p.password) OVER w
                   OR p.email IS DISTINCT FROM lag(p.email) OVER w AS changed
            FROM people p
            WHERE p.person_id = i.person_id AND p.version >= i.head
            WINDOW w AS (ORDER BY p.version, p.seq)) c
        WHERE c.version > i.head AND (c.changed OR c.op = 'erased')) AS ended_by
FROM issued i
"""  # noqa: S608 - constants
"""Each live session or token with its issuing event and, when a later version of its
person changed the password or the email or erased them, the first such version."""


def _finding(kind: str, detail: str, person: uuid.UUID | None = None, *,
             stored: str | None = None, computed: str | None = None) -> Finding:
    return Finding(kind=kind, person_id=_NIL if person is None else person, version=None,
                   detail=detail, stored=stored, computed=computed)


def iter_event_findings(conn: Conn, report: LogReport) -> Iterator[Finding]:
    """The security log's findings (key-free); fills the ``events*`` and ``live_sessions``
    counts of ``report``."""
    with conn.transaction():
        yield from _stored_events(conn, report)
        missing: list[tuple[int, int, str]] = [
            (int(p), int(s), str(c)) for p, s, c in conn.execute(_MISSING)]
        yield from _missing_events(conn, missing, report)
        yield from _session_findings(conn, report)


def _stored_events(conn: Conn, report: LogReport) -> Iterator[Finding]:
    with conn.cursor(name="peoplelog_events") as cur:
        cur.itersize = 10_000
        cur.execute(_EVENTS)
        for seq, cid, *content, position, logged_cid, refused in cur:
            person = content[3]
            try:
                computed: str | None = stored_event(tuple(content)).cid()
            except (InvalidInput, ValueError, TypeError, OverflowError):
                computed = None
            if computed != cid:
                yield _finding("event_cid_mismatch",
                               f"security event {seq}'s content does not give its CID "
                               "(edited)", person, stored=cid, computed=computed)
            if position is not None:
                report.events += 1
                if logged_cid != cid:
                    yield _finding("event_log_mismatch",
                                   f"security event {seq} is not the event log position "
                                   f"{position} names", person, stored=cid,
                                   computed=logged_cid)
            elif refused is not None:
                yield _finding("unattested_event",
                               f"the sequencer refused security event {seq} ({refused}): it "
                               "was not written by the application, which holds the keyring",
                               person, stored=cid)
            else:
                report.events_pending += 1


@dataclass
class _Retirement:
    after: int
    through: int
    events: int
    missing: int = 0


def _missing_events(conn: Conn, missing: list[tuple[int, int, str]],
                    report: LogReport) -> Iterator[Finding]:
    """Logged events whose rows are gone: only inside a recorded, logged retirement."""
    retirements: list[_Retirement] = []
    for after, through, events, event_seq, kind, facts, logged in conn.execute(_RETIREMENTS):
        expected = {"after": int(after), "through": int(through), "events": int(events)}
        recorded = {k: (facts or {}).get(k) for k in expected}
        if kind != EventKind.EVENTS_RETIRED or recorded != expected or not logged:
            yield _finding("bad_retirement",
                           f"the retirement of events {after + 1}..{through} is not the one "
                           f"its event {event_seq} records in the log")
            continue
        if retirements and after < retirements[-1].through:
            yield _finding("bad_retirement",
                           f"the retirement of events {after + 1}..{through} overlaps another")
            continue
        retirements.append(_Retirement(int(after), int(through), int(events)))
    for position, seq, cid in missing:
        inside = next((r for r in retirements if r.after < seq <= r.through), None)
        if inside is None:
            report.events += 1
            yield _finding("event_missing",
                           f"log position {position} names security event {seq}, which is "
                           "not stored (deleted)", stored=cid)
        else:
            inside.missing += 1
            report.events += 1
            report.events_retired += 1
    for retirement in retirements:
        if retirement.missing != retirement.events:
            yield _finding("bad_retirement",
                           f"the retirement of events {retirement.after + 1}.."
                           f"{retirement.through} removed {retirement.events}, but "
                           f"{retirement.missing} logged events of that range are gone")


_CLUSTER_SESSIONS = """
SELECT s.session_id, s.person_id, s.kind, s.epoch, e.seq,
       CASE WHEN e.facts->>'head' ~ '^[0-9]{1,9}$' THEN (e.facts->>'head')::integer END
FROM account_sessions s
LEFT JOIN LATERAL (
    SELECT x.seq, x.facts FROM security_events x
    WHERE x.session_id = s.session_id AND x.person_id = s.person_id
      AND x.facts->>'issued' = s.kind AND x.facts ? 'head'
    ORDER BY x.seq LIMIT 1) e ON true
WHERE s.expires_at > now()
  AND (s.idle_seconds IS NULL OR s.last_used_at + s.idle_seconds * interval '1 second' > now())
"""
_CLUSTER_EPOCHS = "SELECT person_id, epoch FROM account_credentials WHERE person_id = ANY(%s)"
_CLUSTER_ENDINGS = """
SELECT person_id, version FROM (
    SELECT p.person_id, p.version, p.op,
           p.password IS DISTINCT FROM lag(p.password) OVER w
           OR p.email IS DISTINCT FROM lag(p.email) OVER w AS changed
    FROM people p WHERE p.person_id = ANY(%s)
    WINDOW w AS (PARTITION BY p.person_id ORDER BY p.version, p.seq)) c
WHERE c.changed OR c.op = 'erased'
"""
"""``_SESSIONS`` on a Citus cluster, where sessions and events (reference tables) cannot be
joined with a person's epoch and chain (on the person's shard) in one query: the sessions
and their issuing events, then the epochs and the credential-changing versions of their
people, a batch at a time, every table read by its own key."""
_CLUSTER_BATCH = 1_000


def _cluster_sessions(conn: Conn) -> Iterator[tuple[Any, ...]]:
    """``_SESSIONS``'s rows, computed as ``_CLUSTER_SESSIONS`` says."""
    with conn.cursor(name="peoplelog_live_sessions") as cur:
        cur.execute(_CLUSTER_SESSIONS)
        while batch := cur.fetchmany(_CLUSTER_BATCH):
            yield from _cluster_batch(conn, batch)


def _cluster_batch(conn: Conn, batch: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    people = sorted({row[1] for row in batch})
    epochs = dict(conn.execute(_CLUSTER_EPOCHS, (people,)).fetchall())
    endings: dict[uuid.UUID, list[int]] = {}
    for person, version in conn.execute(_CLUSTER_ENDINGS, (people,)):
        endings.setdefault(person, []).append(int(version))
    for session_id, person, kind, epoch, seq, head in batch:
        if epoch != epochs.get(person, 0):
            continue  # ended by its person's credential epoch: not live
        ended_by = None if head is None else min(
            (v for v in endings.get(person, ()) if v > head), default=None)
        yield session_id, person, kind, seq, head, ended_by


def _session_findings(conn: Conn, report: LogReport) -> Iterator[Finding]:
    if tables_distributed(conn):
        yield from _check_sessions(_cluster_sessions(conn), report)
        return
    with conn.cursor(name="peoplelog_live_sessions") as cur:
        cur.itersize = 10_000
        cur.execute(_SESSIONS)
        yield from _check_sessions(cur, report)


def _check_sessions(rows: Iterator[tuple[Any, ...]] | Any, report: LogReport
                    ) -> Iterator[Finding]:
    for session_id, person, kind, seq, head, ended_by in rows:
        report.live_sessions += 1
        what = "session" if kind == "session" else "access token"
        if seq is None or head is None:
            yield _finding("session_without_event",
                           f"live {what} {session_id} has no event that issued it "
                           "(inserted behind the application's back?)", person)
        elif ended_by is not None:
            yield _finding("revocation_unmatched",
                           f"live {what} {session_id} was issued at version {head}, "
                           f"but version {ended_by} changed the credentials (or erased "
                           "the person) and should have ended it", person)


@dataclass(frozen=True)
class RetirementSummary:
    """What a retirement removed: events ``after + 1 .. through`` (``retired`` rows), and
    the event recording it (``event``: its sequence number), or nothing to do."""

    retired: int
    after: int
    through: int
    event: int | None

    def as_dict(self) -> dict[str, int | None]:
        return {"retired": self.retired, "after": self.after, "through": self.through,
                "event": self.event}


_BOUNDS = """
SELECT
  (SELECT coalesce(max(through_seq), 0) FROM security_event_retirements),
  (SELECT min(seq) FROM security_events WHERE at >= %(before)s AND kind <> 'events_retired'),
  (SELECT min(e.seq) FROM security_events e
   WHERE NOT EXISTS (SELECT 1 FROM log_entries l WHERE l.event = e.seq)
     AND NOT EXISTS (SELECT 1 FROM security_events_refused r WHERE r.seq = e.seq)),
  (SELECT min(e.seq) FROM (""" + _LIVE + """) v
   JOIN security_events e ON e.session_id = v.session_id AND e.facts ? 'issued'),
  (SELECT max(seq) FROM security_events)
"""  # noqa: S608 - constants


_RETIRED = (" WHERE e.seq > %s AND e.seq <= %s"
            " AND e.kind NOT IN ('events_retired', 'api_key_revoked')"
            " AND NOT EXISTS (SELECT 1 FROM security_events_refused r WHERE r.seq = e.seq)")
"""What a retirement deletes of its range: not the retirement events, not the events the
sequencer refused (the evidence of a forgery stays), and not an API key's revocation (the
key check refuses a revoked key's row put back by its event)."""


def retire_events(conn: Conn, attestor: Attestor, before: datetime, *,
                  signer: CheckpointSigner, writers: Attestations,
                  actor: str = "peoplelog") -> RetirementSummary:
    """Delete the oldest security events: every one numbered after the last retirement
    and before the first event at or after ``before``, stopping earlier at the first event
    not yet in the log and at the first issuing event of a session or token still live
    (refused events and earlier retirements' events are kept). Their log entries stay (the
    tree and every checkpoint still verify); the retirement is itself an event, sealed and
    logged with a new signed checkpoint in the same transaction, so ``verify`` tells it
    from a deletion at once.

    Needs the owner's login (only it may delete) on a connection outside a transaction.
    Holds the sequencer's lock throughout and counts and deletes in one repeatable-read
    snapshot taken under it: what is counted is what is deleted."""
    if before.tzinfo is None:
        raise InvalidInput("give the retention cut-off with a time zone")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise InvalidInput("retire_events needs a connection outside a transaction")
    conn.execute("SELECT pg_advisory_lock(%s)", (_SEQUENCER_LOCK,))
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            summary = _retire(conn, attestor, before, actor)
            if summary.event is not None:
                make_checkpoint(conn, signer, writers=writers)
            return summary
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_SEQUENCER_LOCK,))


def _retire(conn: Conn, attestor: Attestor, before: datetime,
            actor: str) -> RetirementSummary:
    allowed = conn.execute("SELECT has_table_privilege('security_events', 'DELETE')"
                           ).fetchone()
    if allowed is None or not allowed[0]:
        raise NotPermitted("retiring security events needs the database owner's login")
    conn.execute("LOCK TABLE security_event_retirements IN EXCLUSIVE MODE")
    row = conn.execute(_BOUNDS, {"before": before}).fetchone()
    assert row is not None
    after, first_kept, first_unlogged, first_live, newest = (
        None if v is None else int(v) for v in row)
    assert after is not None
    through = newest if newest is not None else after
    for limit in (first_kept, first_unlogged, first_live):
        if limit is not None:
            through = min(through, limit - 1)
    if through <= after:
        return RetirementSummary(0, after, after, None)
    count = conn.execute("SELECT count(*) FROM security_events e" + _RETIRED,  # noqa: S608
                         (after, through)).fetchone()
    events = 0 if count is None else int(count[0])
    event = SecurityEvent.new(EventKind.EVENTS_RETIRED, actor=actor, facts={
        "after": after, "through": through, "events": events, "before": before.isoformat()})
    seq = conn.execute(INSERT_EVENT + " RETURNING seq", event_params(event, attestor)
                       ).fetchone()
    assert seq is not None
    conn.execute("INSERT INTO security_event_retirements (after_seq, through_seq, events,"
                 " event_seq) VALUES (%s, %s, %s, %s)", (after, through, events, seq[0]))
    deleted = conn.execute("DELETE FROM security_events e" + _RETIRED,  # noqa: S608
                           (after, through)).rowcount
    if deleted != events:  # cannot happen in one snapshot; never record a wrong count
        raise InvalidInput(f"counted {events} events to retire but deleted {deleted}")
    return RetirementSummary(events, after, through, int(seq[0]))
