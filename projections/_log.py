"""Whole-log verification and inclusion proofs (the sequencer is ``_sequencer``).

The log is what the sequencer wrote: under an advisory lock it gave every committed,
attested version the next positions, extended the Merkle tree from the previous
checkpoint's frontier and stored a signed checkpoint, all in one transaction. Versions it
refused are listed in ``log_refused`` and reported here as ``unattested``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from pydantic import BaseModel

from peoplelog.ledger import envelope, record_of_envelope, version_cid
from peoplelog.schema import (
    ChainBroken,
    DatabaseError,
    InvalidInput,
    NotFound,
    PersonNotFound,
    VersionNotFound,
    VersionRecord,
)

from ._checkpoint import (
    Checkpoint,
    TrustedKey,
    VerifierKey,
    parse_checkpoint,
)
from ._merkle import (
    EMPTY_ROOT,
    Frontier,
    RangeHasher,
    cid_leaf,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ._speedups import native_log_scanner
from ._verify import Finding, feed

__all__ = [
    "InclusionProof",
    "LogReport",
    "iter_log_findings",
    "log_origin",
    "prove_inclusion",
    "stored_verifier_key",
]

Conn = psycopg.Connection[Any]
_NIL = uuid.UUID(int=0)


def log_origin(conn: Conn) -> str:
    row = conn.execute("SELECT origin FROM log_meta").fetchone()
    if row is None:
        raise ChainBroken("log_meta has no origin row")
    return str(row[0])


def stored_verifier_key(conn: Conn) -> VerifierKey | None:
    row = conn.execute("SELECT verifier_key FROM log_meta").fetchone()
    return None if row is None or row[0] is None else VerifierKey.parse(row[0])



class LogReport(BaseModel):
    """What the whole-log pass saw."""

    size: int = 0
    root: str | None = None
    checkpoints: int = 0
    pending: int = 0
    held_size: int | None = None
    consistent_with_held: bool | None = None
    latest_checkpoint: str | None = None
    key_source: str | None = None
    events: int = 0
    """Security events in the log (retired ones included)."""
    events_pending: int = 0
    events_retired: int = 0
    live_sessions: int = 0


def iter_log_findings(conn: Conn, *, held: Checkpoint | None = None,
                      key: TrustedKey | None = None, report: LogReport | None = None,
                      progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Check the log against the stored and held checkpoints; yield findings.

    Streams ``log_entries`` joined with ``people`` in position order, recomputing the tree
    root at every checkpoint size and the consistency proof from ``held`` to the newest.
    """
    report = report if report is not None else LogReport()
    stored = [(int(s), bytes(r), n) for s, r, n in conn.execute(
        "SELECT size, root, note FROM checkpoints ORDER BY size")]
    report.checkpoints = len(stored)
    origin = log_origin(conn)
    if key is None:
        key = stored_verifier_key(conn)
        report.key_source = None if key is None else "database"
    else:
        report.key_source = "given"
    latest_size = stored[-1][0] if stored else 0
    latest_root = stored[-1][1] if stored else None
    latest_frontier = conn.execute(
        "SELECT frontier FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    yield from _stored_findings(stored, origin, key)
    ranges: list[tuple[int, int]] = []
    if held is not None:
        report.held_size = held.size
        yield from _held_findings(held, origin, key, latest_size)
        if 0 < held.size < latest_size:
            ranges = consistency_ranges(held.size, latest_size)
    roots = {size: root for size, root, _ in stored}
    stored_frontier = None if latest_frontier is None else bytes(latest_frontier[0])

    def at_size(size: int, root: bytes, frontier: bytes) -> Iterator[Finding]:
        if size == latest_size and stored_frontier is not None and stored_frontier != frontier:
            yield _log_finding("bad_checkpoint",
                               f"the stored frontier of checkpoint {latest_size} is not "
                               "the log's: the next checkpoint would extend a wrong tree")
        if size in roots and root != roots[size]:
            yield _log_finding("checkpoint_mismatch",
                               f"the log's first {size} entries do not give the "
                               "root of the stored checkpoint of that size")
        if held is not None and size == held.size and root != held.root:
            yield _log_finding("checkpoint_mismatch",
                               f"the log's first {held.size} entries do not give the root "
                               "of the held checkpoint (history was rewritten)")

    stops = sorted({s for s in (*roots, latest_size, held.size if held else 0) if s > 0})
    tree = _Tree()
    yield from _scan_log(conn, stops, ranges, at_size=at_size, tree=tree, progress=progress)
    report.size = tree.size
    report.root = base64.b64encode(tree.root).decode()
    yield from _size_findings(tree.size, latest_size, held)
    if held is not None and latest_root is not None and latest_size >= held.size:
        proof = tree.range_roots or []
        consistent = verify_consistency(held.size, latest_size, held.root, latest_root, proof)
        report.consistent_with_held = consistent
        if not consistent:
            yield _log_finding("inconsistent_checkpoint",
                               f"no consistency proof from the held checkpoint ({held.size}) "
                               f"to the newest ({latest_size}): the log was rewritten")
    people = conn.execute("SELECT (SELECT count(*) FROM people)"
                          " - (SELECT count(*) FROM log_refused)"
                          " + (SELECT count(*) FROM log_entries WHERE event IS NOT NULL)"
                          ).fetchone()
    report.pending = max((int(people[0]) if people else 0) - tree.matched, 0)
    yield from _refused_findings(conn)
    report.latest_checkpoint = stored[-1][2] if stored else None


_LOG_QUERY = """COPY (SELECT DISTINCT ON (l.position) l.position, l.person_id,
                        coalesce(l.version, -1), l.cid,
                        CASE WHEN l.event IS NULL THEN p.cid ELSE l.cid END
                 FROM log_entries l
                 LEFT JOIN people p ON p.person_id = l.person_id AND p.version = l.version
                 ORDER BY l.position, p.cid = l.cid DESC) TO STDOUT (FORMAT binary)"""
"""Each log entry once, with the stored CID of its version: where a forged second row
(a fork) shares the version, the row the log names is the one compared, so a fork is
reported as a fork by the chain pass and not also as damage to the log. A security event's
entry (version -1 here) is only hashed: the events pass checks it against its event."""
_PROGRESS_EVERY = 10_000
AtSize = Callable[[int, bytes, bytes], Iterator[Finding]]


@dataclass
class _Tree:
    """What a log scan leaves: the tree's size and root, the consistency-range roots."""

    size: int = 0
    root: bytes = EMPTY_ROOT
    range_roots: list[bytes] | None = None
    matched: int = 0
    """Entries whose version is in people (each at most once: log_entries is unique on
    person and version), so ``count(people) - matched`` versions await a log position. The
    count is taken after the scan: versions sequenced while verify runs count as pending."""


def _scan_log(conn: Conn, stops: list[int], ranges: list[tuple[int, int]], *,
              at_size: AtSize, tree: _Tree,
              progress: Callable[[int], None] | None) -> Iterator[Finding]:
    """Stream the log in position order into the tree; check each entry against people,
    and call ``at_size`` when the tree reaches each size in ``stops``."""
    scanner = native_log_scanner(conn, stops, ranges)
    if scanner is None:
        yield from _python_scan_log(conn, stops, ranges, at_size=at_size, tree=tree,
                                    progress=progress)
        return
    mark = _PROGRESS_EVERY
    missing = 0
    with conn.cursor() as cur, cur.copy(_LOG_QUERY) as copy:
        while data := copy.read():
            events = feed(scanner, data, "the log")
            if events is not None:
                for event in events:
                    if event[0] == "entry":
                        _, position, expected, pid, version, cid, stored_cid, valid = event
                        missing += stored_cid is None
                        yield from _entry_findings(position, expected,
                                                   person_id=uuid.UUID(str(pid)),
                                                   version=int(version), cid=str(cid),
                                                   stored_cid=stored_cid)
                        if not valid:
                            yield _not_a_cid(position, uuid.UUID(str(pid)), int(version),
                                             str(cid))
                    else:
                        _, size, root, frontier = event
                        yield from at_size(int(size), bytes(root), bytes(frontier))
            if progress is not None and scanner.rows >= mark:
                mark += _PROGRESS_EVERY
                progress(scanner.rows)
    if not scanner.finished:
        raise DatabaseError("the COPY stream of the log ended before its end marker")
    tree.size, tree.root = scanner.size, scanner.root()
    tree.matched = scanner.size - missing
    try:
        tree.range_roots = scanner.range_roots()
    except ValueError:
        tree.range_roots = None


def _python_scan_log(conn: Conn, stops: list[int], ranges: list[tuple[int, int]], *,
                     at_size: AtSize, tree: _Tree,
                     progress: Callable[[int], None] | None) -> Iterator[Finding]:
    hasher = RangeHasher(ranges)
    frontier = Frontier()
    wanted = set(stops)
    expected = 0
    with conn.cursor() as cur, cur.copy(_LOG_QUERY) as copy:
        copy.set_types(["int8", "uuid", "int4", "text", "text"])
        for position, person_id, version, cid, stored_cid in copy.rows():
            yield from _entry_findings(position, expected, person_id=person_id,
                                       version=version, cid=cid, stored_cid=stored_cid)
            expected = position + 1
            tree.matched += stored_cid is not None
            try:
                digest = leaf_hash(cid_leaf(cid))
            except InvalidInput:
                yield _not_a_cid(position, person_id, version, cid)
                digest = leaf_hash(cid.encode())
            hasher.feed(frontier.size, digest)
            frontier.append(digest)
            if progress is not None and frontier.size % _PROGRESS_EVERY == 0:
                progress(frontier.size)
            if frontier.size in wanted:
                yield from at_size(frontier.size, frontier.root(), frontier.to_bytes())
    tree.size, tree.root = frontier.size, frontier.root()
    try:
        tree.range_roots = hasher.hashes()
    except ValueError:
        tree.range_roots = None


def _stored_findings(stored: list[tuple[int, bytes, str]], origin: str,
                     key: TrustedKey | None) -> Iterator[Finding]:
    for size, root, note in stored:
        try:
            cp = parse_checkpoint(note)
        except InvalidInput as exc:
            yield _log_finding("bad_checkpoint", f"stored checkpoint {size}: {exc}")
            continue
        if cp.size != size or cp.root != root or cp.origin != origin:
            yield _log_finding("bad_checkpoint",
                               f"stored checkpoint {size} does not match its own note")
        if key is not None and not cp.signed_by(key):
            yield _log_finding("bad_signature",
                               f"stored checkpoint {size} is not signed by {key.name}")


def _held_findings(held: Checkpoint, origin: str, key: TrustedKey | None,
                   latest_size: int) -> Iterator[Finding]:
    if held.origin != origin:
        yield _log_finding("origin_mismatch",
                           f"held checkpoint is for log {held.origin!r}, not {origin!r}")
    if key is not None and not held.signed_by(key):
        yield _log_finding("bad_signature", f"held checkpoint is not signed by {key.name}")
    if latest_size < held.size:
        yield _log_finding(
            "checkpoint_rollback",
            f"the newest stored checkpoint ({latest_size}) is smaller than the held one "
            f"({held.size})")


def _entry_findings(position: int, expected: int, *, person_id: uuid.UUID, version: int,
                    cid: str, stored_cid: str | None) -> Iterator[Finding]:
    if position != expected:
        yield Finding(kind="log_gap", person_id=person_id, version=version,
                      detail=f"log position {expected} is missing (next is {position})")
    if stored_cid is None:
        yield Finding(kind="missing_version", person_id=person_id, version=version,
                      detail=f"log position {position} names a version that is not in "
                             "people (deleted)", stored=cid)
    elif stored_cid != cid:
        yield Finding(kind="log_cid_mismatch", person_id=person_id, version=version,
                      detail=f"the version's CID differs from the one logged at position "
                             f"{position}", stored=stored_cid, computed=cid)


def _not_a_cid(position: int, person_id: uuid.UUID, version: int, cid: str) -> Finding:
    """A log entry whose CID is not one: its text stands in as the leaf, and the scan goes
    on (the roots then differ from the checkpoints')."""
    return Finding(kind="bad_log_entry", person_id=person_id, version=version,
                   detail=f"log position {position} does not hold a peoplelog CID",
                   stored=cid[:100])


def _size_findings(size: int, latest_size: int, held: Checkpoint | None) -> Iterator[Finding]:
    if size < latest_size:
        yield _log_finding("log_truncated", f"the log has {size} entries; the newest "
                                            f"checkpoint covers {latest_size}")
    elif size > latest_size:
        yield _log_finding("unsigned_log_entries",
                           f"log entries {latest_size}..{size - 1} are in no checkpoint")
    if held is not None and size < held.size:
        yield _log_finding("log_truncated", f"the log has {size} entries; the held "
                                            f"checkpoint covers {held.size}")


def _refused_findings(conn: Conn) -> Iterator[Finding]:
    """The versions the sequencer refused: they carry no valid seal of the application's
    writer key, so someone wrote them with the database login alone."""
    with conn.cursor() as cur:
        cur.execute("SELECT person_id, version, cid, reason FROM log_refused"
                    " ORDER BY refused_at, person_id, version")
        for person_id, version, cid, reason in cur:
            yield Finding(kind="unattested", person_id=person_id, version=version,
                          detail=f"the sequencer refused this version ({reason}): it was "
                                 "not written by the application, which holds the keyring",
                          stored=cid)


def _log_finding(kind: str, detail: str) -> Finding:
    return Finding(kind=kind, person_id=_NIL, version=None, detail=detail)


PROOF_FORMAT = "peoplelog-inclusion-proof/2"


class InclusionProof(BaseModel):
    """Evidence that one version is in the log at a signed checkpoint.

    The version's envelope (ciphertexts, never plaintext) is carried so that ``person_id``
    and ``version`` are bound: the envelope must hash to ``cid`` and name them.
    """

    format: str = PROOF_FORMAT
    person_id: uuid.UUID
    version: int
    cid: str
    index: int
    tree_size: int
    proof: list[str]
    checkpoint: str
    envelope: dict[str, Any] | None = None

    def verify(self, key: TrustedKey) -> list[str]:
        """Problems with this proof (empty when it holds), checked offline."""
        format_problems = [] if self.format == PROOF_FORMAT else [
            f"format is not {PROOF_FORMAT}"]
        return [*format_problems, *self.envelope_problems(), *self.tree_problems(key)]

    def tree_problems(self, key: TrustedKey) -> list[str]:
        """Problems with the CID's path to the signed checkpoint's root."""
        problems: list[str] = []
        try:
            cp = parse_checkpoint(self.checkpoint)
        except InvalidInput as exc:
            return [f"checkpoint: {exc}"]
        if not cp.signed_by(key):
            problems.append(f"checkpoint is not signed by {key.name}")
        if cp.size != self.tree_size:
            problems.append("tree size differs from the checkpoint's")
        try:
            path = [base64.b64decode(p, validate=True) for p in self.proof]
            leaf = leaf_hash(cid_leaf(self.cid))
        except ValueError:
            return [*problems, "proof or CID is not well formed"]
        if not verify_inclusion(leaf, self.index, self.tree_size, path, cp.root):
            problems.append("the inclusion proof does not lead to the checkpoint's root")
        return problems

    def envelope_problems(self) -> list[str]:
        """Problems binding person_id and version to the CID through the envelope."""
        if self.envelope is None:
            return ["the proof carries no envelope: person_id and version are not bound"]
        try:
            record = record_of_envelope(self.envelope)
        except InvalidInput as exc:
            return [f"envelope: {exc}"]
        problems = []
        try:
            computed = version_cid(record)
        except InvalidInput as exc:
            return [f"envelope: {exc}"]
        if computed != self.cid:
            problems.append("the envelope does not hash to the proof's CID")
        if record.person_id != self.person_id or record.version != self.version:
            problems.append("the envelope names another person or version")
        return problems


def prove_inclusion(conn: Conn, person_id: uuid.UUID, version: int) -> InclusionProof:
    """Inclusion proof of a version against the newest checkpoint (streams the log once)."""
    row = conn.execute(
        "SELECT position, cid FROM log_entries WHERE person_id = %s AND version = %s",
        (person_id, version)).fetchone()
    if row is None:
        exists = conn.execute("SELECT 1 FROM people WHERE person_id = %s AND version = %s",
                              (person_id, version)).fetchone()
        if exists is None:
            if conn.execute("SELECT 1 FROM people WHERE person_id = %s",
                            (person_id,)).fetchone() is None:
                raise PersonNotFound(f"person {person_id} not found")
            raise VersionNotFound(f"person {person_id} has no version {version}")
        raise NotFound(f"version {version} of person {person_id} is not in a checkpoint yet "
                       "(run `peoplelog checkpoint`)")
    position, cid = int(row[0]), str(row[1])
    latest = conn.execute(
        "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    if latest is None or position >= latest[0]:
        raise NotFound(f"version {version} of person {person_id} is not in a checkpoint yet")
    size = int(latest[0])
    hasher = RangeHasher(inclusion_ranges(position, size))
    with conn.transaction(), conn.cursor(name="peoplelog_prove") as cur:
        cur.itersize = 10_000
        cur.execute("SELECT position, cid FROM log_entries WHERE position < %s ORDER BY position",
                    (size,))
        for pos, leaf_cid in cur:
            hasher.feed(pos, leaf_hash(cid_leaf(leaf_cid)))
    return InclusionProof(
        person_id=person_id, version=version, cid=cid, index=position, tree_size=size,
        proof=[base64.b64encode(h).decode() for h in hasher.hashes()], checkpoint=latest[1],
        envelope=_stored_envelope(conn, person_id, version),
    )


def _stored_envelope(conn: Conn, person_id: uuid.UUID, version: int) -> dict[str, Any]:
    row = conn.execute(
        """SELECT prev, format, op, extract(epoch FROM recorded_at) * 1000000,
                  actor, reason, email, name, password,
                  extract(epoch FROM verified_at) * 1000000
           FROM people WHERE person_id = %s AND version = %s""",
        (person_id, version)).fetchone()
    if row is None:
        raise VersionNotFound(f"person {person_id} has no version {version}")
    prev, fmt, op, recorded, actor, reason, email, name, password, verified = row
    if not _exact_micros(recorded) or (verified is not None and not _exact_micros(verified)):
        raise ChainBroken(f"version {version} of person {person_id} has a timestamp with no "
                          "canonical form: the version is damaged (run `peoplelog verify`)")
    recorded_at = int(recorded)
    verified_at = None if verified is None else int(verified)
    return envelope(VersionRecord(
        person_id=person_id, version=version, prev=prev, op=op, recorded_at=recorded_at,
        actor=actor, reason=reason, email=_bytes_or_none(email), name=_bytes_or_none(name),
        password=_bytes_or_none(password), verified_at=verified_at, format=fmt))


def _exact_micros(value: Any) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and -(2**63) <= value < 2**63


def _bytes_or_none(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
