"""The one sequencer: gives pending versions their log positions and signs a checkpoint.

Only versions the application attested (a seal of the keyring's writer key over the CID)
get a position. A version without a valid seal, written with the database login alone, is
refused: it never reaches a signed checkpoint, and its refusal is recorded in
``log_refused``, where key-free ``verify`` reports it as ``unattested``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from peoplelog.fields import Attestations
from peoplelog.ledger import stored_event
from peoplelog.schema import ChainBroken, InvalidInput

from ._checkpoint import Checkpoint, CheckpointSigner, parse_checkpoint
from ._log import log_origin
from ._merkle import Frontier, cid_leaf, leaf_hash

__all__ = ["REFUSED_CONTENT", "REFUSED_UNATTESTED", "CheckpointResult", "make_checkpoint"]

Conn = psycopg.Connection[Any]
_SEQUENCER_LOCK = 0x706C2D736571  # "pl-seq"
_NIL = uuid.UUID(int=0)
_CHUNK = 10_000
REFUSED_UNATTESTED = "no valid seal of the application's writer key"
REFUSED_CONTENT = "its content does not give its CID"

_PENDING = """
SELECT p.person_id, p.version, p.cid, p.writer_key, p.attestation
FROM people p
WHERE NOT EXISTS (SELECT 1 FROM log_entries l
                  WHERE l.person_id = p.person_id AND l.version = p.version)
  AND NOT EXISTS (SELECT 1 FROM log_refused r
                  WHERE r.person_id = p.person_id AND r.version = p.version
                    AND r.cid = p.cid)
ORDER BY p.seq, p.person_id, p.version
"""
_PENDING_EVENTS = """
SELECT e.seq, e.cid, e.writer_key, e.seal, e.id, e.kind, e.at, e.person_id, e.session_id,
       e.actor, e.facts, e.detail
FROM security_events e
WHERE NOT EXISTS (SELECT 1 FROM log_entries l WHERE l.event = e.seq)
  AND NOT EXISTS (SELECT 1 FROM security_events_refused r WHERE r.seq = e.seq)
ORDER BY e.seq
"""


@dataclass
class CheckpointResult:
    checkpoint: Checkpoint
    sequenced: int
    new: bool
    refused: int = 0
    """Pending versions refused (no valid writer seal); recorded in ``log_refused``."""
    events: int = 0
    """Security events sequenced (they are among ``sequenced``)."""
    refused_events: int = 0
    """Security events refused (no valid seal, or content that does not give the CID)."""


def make_checkpoint(conn: Conn, signer: CheckpointSigner, *,
                    writers: Attestations) -> CheckpointResult:
    """Sequence every pending version the application attested (``writers``: the
    keyring's writer keys), refuse the others, and sign a checkpoint over the whole log."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SEQUENCER_LOCK,))
        # Needs the right to write the log even when nothing is pending: a role without it
        # (the application's) is told so at once, not only once there is work.
        conn.execute("LOCK TABLE log_entries IN SHARE ROW EXCLUSIVE MODE")
        origin = log_origin(conn)
        latest = conn.execute(
            "SELECT size, frontier, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        size = 0 if latest is None else int(latest[0])
        frontier = Frontier() if latest is None else _stored_frontier(latest, origin)
        logged = conn.execute("SELECT count(*) FROM log_entries").fetchone()
        if logged is None or logged[0] != size:
            raise ChainBroken(
                f"the log holds {logged[0] if logged else '?'} entries but the newest "
                f"checkpoint covers {size}: run `peoplelog verify`"
            )
        inserted, refused = _sequence(conn, writers, frontier)
        events, refused_events = _sequence_events(conn, writers, frontier)
        inserted += events
        if inserted == 0 and latest is not None:
            return CheckpointResult(parse_checkpoint(latest[2]), 0, new=False, refused=refused,
                                    refused_events=refused_events)
        checkpoint = signer.sign(origin, frontier.size, frontier.root())
        conn.execute(
            "INSERT INTO checkpoints (size, root, frontier, note) VALUES (%s, %s, %s, %s)",
            (frontier.size, frontier.root(), frontier.to_bytes(), checkpoint.text),
        )
        conn.execute("UPDATE log_meta SET verifier_key = %s WHERE verifier_key IS DISTINCT"
                     " FROM %s", (str(signer.verifier), str(signer.verifier)))
        return CheckpointResult(checkpoint, inserted, new=True, refused=refused,
                                events=events, refused_events=refused_events)


def _sequence(conn: Conn, writers: Attestations, frontier: Frontier) -> tuple[int, int]:
    """Read the pending versions in order; log the attested ones at the next positions
    (extending ``frontier``), record the others as refused. Both written in chunks."""
    inserted = refused = 0
    logged: list[tuple[Any, ...]] = []
    rejected: list[tuple[Any, ...]] = []

    def flush() -> None:
        if logged:
            conn.cursor().executemany(
                "INSERT INTO log_entries (position, person_id, version, cid)"
                " VALUES (%s, %s, %s, %s)", logged)
            logged.clear()
        if rejected:
            conn.cursor().executemany(
                "INSERT INTO log_refused (person_id, version, cid, reason)"
                " VALUES (%s, %s, %s, %s)", rejected)
            rejected.clear()

    with conn.cursor(name="peoplelog_pending") as pending:
        pending.itersize = _CHUNK
        pending.execute(_PENDING)
        for person_id, version, cid, writer_key, seal in pending:
            if writers.holds(cid, writer_key, None if seal is None else bytes(seal)):
                logged.append((frontier.size, person_id, version, cid))
                frontier.append(leaf_hash(cid_leaf(cid)))
                inserted += 1
            else:
                rejected.append((person_id, version, cid, REFUSED_UNATTESTED))
                refused += 1
            if len(logged) + len(rejected) >= _CHUNK:
                flush()
    flush()
    return inserted, refused


def _sequence_events(conn: Conn, writers: Attestations,
                     frontier: Frontier) -> tuple[int, int]:
    """Then the pending security events, in the order they were numbered: an event gets a
    position only when its content gives its CID and the CID carries the writer's seal."""
    inserted = refused = 0
    logged: list[tuple[Any, ...]] = []
    rejected: list[tuple[Any, ...]] = []

    def flush() -> None:
        if logged:
            conn.cursor().executemany(
                "INSERT INTO log_entries (position, person_id, event, cid)"
                " VALUES (%s, %s, %s, %s)", logged)
            logged.clear()
        if rejected:
            conn.cursor().executemany(
                "INSERT INTO security_events_refused (seq, cid, reason) VALUES (%s, %s, %s)",
                rejected)
            rejected.clear()

    with conn.cursor(name="peoplelog_pending_events") as pending:
        pending.itersize = _CHUNK
        pending.execute(_PENDING_EVENTS)
        for seq, cid, writer_key, seal, *content in pending:
            reason = None
            if not writers.holds(cid, writer_key, None if seal is None else bytes(seal)):
                reason = REFUSED_UNATTESTED
            elif not _gives_cid(content, cid):
                reason = REFUSED_CONTENT
            if reason is None:
                logged.append((frontier.size, _NIL, seq, cid))
                frontier.append(leaf_hash(cid_leaf(cid)))
                inserted += 1
            else:
                rejected.append((seq, cid, reason))
                refused += 1
            if len(logged) + len(rejected) >= _CHUNK:
                flush()
    flush()
    return inserted, refused


def _gives_cid(content: list[Any], cid: str) -> bool:
    try:
        return stored_event(tuple(content)).cid() == cid
    except (InvalidInput, ValueError, TypeError, OverflowError):
        return False


def _stored_frontier(latest: tuple[Any, ...], origin: str) -> Frontier:
    """The newest checkpoint's frontier, only if it gives the root its note signs: never
    extend (and sign) a tree whose stored right edge was tampered with."""
    try:
        frontier = Frontier.from_bytes(int(latest[0]), bytes(latest[1]))
        note = parse_checkpoint(latest[2])
        matches = (note.origin, note.size, note.root) == (origin, frontier.size, frontier.root())
    except (ValueError, InvalidInput):
        matches = False
    if not matches:
        raise ChainBroken(f"the newest checkpoint ({latest[0]}) does not match its stored "
                          "frontier: run `peoplelog verify`")
    return frontier
