"""The ledger as stored, as JSON lines, and its verification with no database.

Line 1 is a header; then every stored checkpoint; then every version and security event in
log order (those not yet sequenced last, with ``"position": null``). A version or event
line carries the envelope exactly as hashed, so any RFC 8785 tool plus SHA-256 recomputes
its CID. A retired event's line keeps its position, number and CID, with a null envelope:
the tree still verifies, and the retirement event (in the export too) accounts for it.
"""

from __future__ import annotations

import base64
import heapq
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg

from peoplelog.ledger import (
    EventKind,
    cid_of,
    envelope,
    envelope_bytes,
    event_of_envelope,
    stored_event,
)
from peoplelog.schema import (
    FORMAT_VERSION,
    PEOPLE_COLUMNS,
    InvalidInput,
    Op,
    VersionRecord,
    column_list,
)

from ._audit import AuditReport
from ._checkpoint import Checkpoint, TrustedKey, VerifierKey, parse_checkpoint
from ._log import LogReport, log_origin, stored_verifier_key
from ._merkle import Frontier, cid_leaf, leaf_hash
from ._verify import Finding, second_copy

__all__ = ["EXPORT_FORMAT", "export_ledger", "verify_export"]

Conn = psycopg.Connection[Any]
EXPORT_FORMAT = "peoplelog-export/2"
_READABLE = frozenset({"peoplelog-export/1", EXPORT_FORMAT})
"""/1 is /2 without security events: both are verified."""
_NIL = uuid.UUID(int=0)
_OPS = frozenset(op.value for op in Op)
_MICROS = "(extract(epoch FROM p.{0}) * 1000000)::bigint"
_QUERY = (
    "SELECT position, " + column_list(PEOPLE_COLUMNS) + " FROM ("  # noqa: S608 - constants
    " SELECT CASE WHEN row_number() OVER (PARTITION BY l.position"
    "  ORDER BY p.cid = l.cid DESC, p.seq) = 1 THEN l.position END AS position, p.seq, "
    + ", ".join(_MICROS.format(column) + f" AS {column}"
                if column in ("recorded_at", "verified_at") else f"p.{column}"
                for column in PEOPLE_COLUMNS)
    + " FROM people p"
    " LEFT JOIN log_entries l ON l.person_id = p.person_id AND l.version = p.version"
    ") AS v ORDER BY position NULLS LAST, seq"
)
"""Every version with its log position, in log order; timestamps as the envelope's
integer microseconds. A log entry gives its position to one version only: where a forged
second row shares the version (a fork, or the same row twice), the row the log names keeps
the position and the other is exported as never sequenced."""


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def export_ledger(conn: Conn, out: TextIO, *,
                  progress: Callable[[int], None] | None = None) -> int:
    """Write the export; return the number of versions written (security events are
    written too, in their log positions)."""
    key = stored_verifier_key(conn)
    header = {
        "type": "header", "format": EXPORT_FORMAT, "origin": log_origin(conn),
        "verifier_key": None if key is None else str(key),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.write(json.dumps(header) + "\n")
    for size, note in conn.execute("SELECT size, note FROM checkpoints ORDER BY size"):
        out.write(json.dumps({"type": "checkpoint", "size": int(size), "note": note}) + "\n")
    count = 0
    with (conn.transaction(), conn.cursor(name="peoplelog_export") as cur,
          conn.cursor(name="peoplelog_export_events") as events):
        cur.itersize = events.itersize = 10_000
        cur.execute(_QUERY)
        events.execute(_EVENTS)
        for _, line in heapq.merge(((row[0], _version_line(row)) for row in cur),
                                   ((row[0], _event_line(row)) for row in events),
                                   key=_log_order):
            out.write(line)
            if line.startswith('{"type": "version"'):
                count += 1
                if progress is not None and count % 10_000 == 0:
                    progress(count)
    return count


_EVENTS = """
SELECT position, seq, cid, id, kind, at, person_id, session_id, actor, facts, detail FROM (
    SELECT l.position, l.event AS seq, l.cid, e.id, e.kind, e.at, e.person_id,
           e.session_id, e.actor, e.facts, e.detail
    FROM log_entries l LEFT JOIN security_events e ON e.seq = l.event
    WHERE l.event IS NOT NULL
    UNION ALL
    SELECT NULL, e.seq, e.cid, e.id, e.kind, e.at, e.person_id, e.session_id, e.actor,
           e.facts, e.detail
    FROM security_events e
    WHERE NOT EXISTS (SELECT 1 FROM log_entries l WHERE l.event = e.seq)) AS v
ORDER BY position NULLS LAST, seq
"""
"""Every security event in log order, those not sequenced last; a retired one (its row
gone) with its log entry's CID and no content."""


def _log_order(item: tuple[int | None, str]) -> tuple[bool, int]:
    return (item[0] is None, item[0] or 0)


def _version_line(row: tuple[Any, ...]) -> str:
    (position, pid, version, cid, prev, fmt, op, recorded_at, actor, reason, email, name,
     password, verified_at) = row
    record = VersionRecord(
        person_id=pid, version=version, prev=prev, op=op, recorded_at=recorded_at,
        actor=actor, reason=reason, email=_bytes(email), name=_bytes(name),
        password=_bytes(password), verified_at=verified_at, format=fmt)
    return json.dumps({"type": "version", "position": position, "cid": cid,
                       "envelope": envelope(record)}, ensure_ascii=False) + "\n"


def _event_line(row: tuple[Any, ...]) -> str:
    position, seq, cid, *content = row
    document = None if content[0] is None else stored_event(tuple(content)).envelope()
    return json.dumps({"type": "event", "position": position, "seq": int(seq), "cid": cid,
                       "envelope": document}, ensure_ascii=False) + "\n"


def _unb64(value: str | None) -> bytes | None:
    if value is None:
        return None
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _record(env: dict[str, Any]) -> VersionRecord:
    return VersionRecord(
        person_id=uuid.UUID(env["person_id"]), version=int(env["version"]),
        prev=env["prev"], op=env["op"], recorded_at=int(env["recorded_at"]),
        actor=env["actor"], reason=env["reason"], email=_unb64(env["email"]),
        name=_unb64(env["name"]), password=_unb64(env["password"]),
        verified_at=None if env["verified_at"] is None else int(env["verified_at"]),
        format=int(env["format"]),
    )


def verify_export(lines: Iterable[str], *, held: Checkpoint | None = None,
                  key: TrustedKey | None = None) -> AuditReport:
    """Verify an export: CIDs, chains, log order, checkpoint roots and signatures, and
    ``held`` (a checkpoint kept outside) against the exported log. The report has the
    shape ``verify`` gives for a database, its ``log`` part included."""
    log = LogReport()
    stats = {"rows": 0, "persons": 0}
    findings = list(_export_findings(iter(lines), held, key, stats, log))
    return AuditReport(ok=not findings, checked=stats["rows"], persons=stats["persons"],
                       findings=findings, log=log)


def _export_findings(lines: Iterator[str], held: Checkpoint | None, key: TrustedKey | None,
                     stats: dict[str, int], log: LogReport) -> Iterator[Finding]:
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError):
        raise InvalidInput("export is empty or its first line is not JSON") from None
    if not isinstance(header, dict) or header.get("type") != "header" or (
        header.get("format") not in _READABLE
    ):
        raise InvalidInput(f"not a {EXPORT_FORMAT} file")
    origin = header.get("origin")
    log.key_source = None if key is None else "given"
    if key is None and header.get("verifier_key"):
        key = VerifierKey.parse(header["verifier_key"])
        log.key_source = "export"
    checkpoints: dict[int, tuple[bytes, str]] = {}
    """The exported checkpoints by size: (root, note)."""
    held_matched = held is not None and held.size == 0 and held.root == Frontier().root()
    chains: dict[uuid.UUID, tuple[int, str, bool]] = {}
    frontier = Frontier()
    sequenced = True
    events = _ExportedEvents()
    for number, line in enumerate(lines, start=2):
        try:
            item = json.loads(line)
            kind = item["type"]
        except (ValueError, KeyError, TypeError):
            yield Finding(kind="malformed_line", person_id=_NIL, version=None,
                          detail=f"line {number} is not an export record")
            continue
        if kind == "checkpoint":
            yield from _checkpoint_line(item, number, origin, key, checkpoints)
            continue
        if kind == "event":
            entry = events.line(item, number, log)
        elif kind == "version":
            entry = _version_line_findings(item, number, chains, stats, log)
        else:
            continue
        yield from entry.findings
        if entry.leaf is None:
            continue
        position, leaf, owner = entry.position, entry.leaf, entry.owner
        if position is None:
            sequenced = False
            continue
        if not sequenced or position != frontier.size:
            yield Finding(kind="log_gap", person_id=owner[0], version=owner[1],
                          detail=f"log position {frontier.size} expected, found {position}")
        frontier.append(leaf_hash(leaf))
        exported = checkpoints.get(frontier.size)
        if exported is not None and exported[0] != frontier.root():
            yield Finding(kind="checkpoint_mismatch", person_id=_NIL, version=None,
                          detail=f"the first {frontier.size} versions do not give the root of "
                                 "the exported checkpoint of that size")
        if held is not None and frontier.size == held.size:
            held_matched = held.root == frontier.root()
            if not held_matched:
                yield Finding(kind="checkpoint_mismatch", person_id=_NIL, version=None,
                              detail="the export does not give the root of the held checkpoint")
    yield from events.findings(log)
    newest = max(checkpoints, default=0)
    _describe_log(log, frontier, checkpoints, held, held_matched)
    yield from _end_findings(frontier.size, newest, origin, held, key)


@dataclass
class _Entry:
    """One version or event line read: its findings and, when it is well formed, its log
    position (None: not sequenced), its leaf and whom it is about."""

    findings: list[Finding]
    position: int | None = None
    leaf: bytes | None = None
    owner: tuple[uuid.UUID, int | None] = (_NIL, None)


def _malformed(number: int, what: str) -> _Entry:
    return _Entry([Finding(kind="malformed_line", person_id=_NIL, version=None,
                           detail=f"line {number} is not a well-formed {what}")])


def _version_line_findings(item: dict[str, Any], number: int,
                           chains: dict[uuid.UUID, tuple[int, str, bool]],
                           stats: dict[str, int], log: LogReport) -> _Entry:
    try:
        record = _record(item["envelope"])
        cid = str(item["cid"])
        position = _position(item)
        envelope_bytes(record)
        leaf = cid_leaf(cid)  # a cid that is no CID is a malformed line, not a crash
    except (KeyError, TypeError, ValueError, AttributeError, InvalidInput):
        return _malformed(number, "version")
    stats["rows"] += 1
    findings = list(_version_findings(record, cid, chains, stats))
    if position is None:
        log.pending += 1
    return _Entry(findings, position, leaf, (record.person_id, record.version))


def _position(item: dict[str, Any]) -> int | None:
    position = item["position"]
    if position is not None and (type(position) is not int or position < 0):
        raise TypeError("position")
    return position


class _ExportedEvents:
    """What the export's event lines say about retirements: the retired events (logged,
    no content) and the logged retirement events' ranges, matched at the end."""

    def __init__(self) -> None:
        self.retired: list[int] = []
        self.ranges: list[tuple[int, int, int]] = []

    def line(self, item: dict[str, Any], number: int, log: LogReport) -> _Entry:
        try:
            seq = item["seq"]
            if type(seq) is not int or seq < 1:
                raise TypeError("seq")
            cid = str(item["cid"])
            position = _position(item)
            leaf = cid_leaf(cid)
        except (KeyError, TypeError, ValueError, AttributeError, InvalidInput):
            return _malformed(number, "security event")
        if position is not None:
            log.events += 1
        else:
            log.events_pending += 1
        return _Entry(list(self._content(item["envelope"], seq, cid, position)), position,
                      leaf)

    def _content(self, document: Any, seq: int, cid: str,
                 position: int | None) -> Iterator[Finding]:
        if document is None:
            if position is None:
                yield Finding(kind="event_missing", person_id=_NIL, version=None,
                              detail=f"security event {seq} has no content and no log "
                                     "position")
            else:
                self.retired.append(seq)
            return
        try:
            event = event_of_envelope(document)
            computed: str | None = event.cid()
        except InvalidInput:
            event, computed = None, None
        if computed != cid:
            yield Finding(kind="event_cid_mismatch", person_id=_NIL, version=None,
                          detail=f"security event {seq}'s envelope does not give its CID",
                          stored=cid, computed=computed)
            return
        if event is not None and event.kind == EventKind.EVENTS_RETIRED and (
                position is not None):
            facts = event.facts or {}
            after, through, count = (facts.get("after"), facts.get("through"),
                                     facts.get("events"))
            if type(after) is int and type(through) is int and type(count) is int:
                self.ranges.append((after, through, count))

    def findings(self, log: LogReport) -> Iterator[Finding]:
        ranges = sorted(self.ranges, key=lambda r: r[1])
        found = [0] * len(ranges)
        for seq in self.retired:
            inside = next((i for i, (after, through, _) in enumerate(ranges)
                           if after < seq <= through), None)
            if inside is None:
                yield Finding(kind="event_missing", person_id=_NIL, version=None,
                              detail=f"security event {seq} is logged but has no content and "
                                     "no logged retirement covers it")
            else:
                found[inside] += 1
                log.events_retired += 1
        for (after, through, count), seen in zip(ranges, found, strict=True):
            if seen != count:
                yield Finding(kind="bad_retirement", person_id=_NIL, version=None,
                              detail=f"the retirement of events {after + 1}..{through} "
                                     f"removed {count}, but {seen} logged events of that "
                                     "range are retired")


def _describe_log(log: LogReport, frontier: Frontier, checkpoints: dict[int, tuple[bytes, str]],
                  held: Checkpoint | None, held_matched: bool) -> None:
    """What the export's log is, as ``verify`` reports a database's."""
    newest = max(checkpoints, default=0)
    log.size = frontier.size
    log.root = base64.b64encode(frontier.root()).decode()
    log.checkpoints = len(checkpoints)
    log.latest_checkpoint = checkpoints[newest][1] if checkpoints else None
    if held is not None:
        log.held_size = held.size
        if newest >= held.size:
            log.consistent_with_held = held_matched


def _checkpoint_line(item: dict[str, Any], number: int, origin: str | None,
                     key: TrustedKey | None,
                     checkpoints: dict[int, tuple[bytes, str]]) -> Iterator[Finding]:
    try:
        cp = parse_checkpoint(item["note"])
    except (InvalidInput, KeyError, TypeError) as exc:
        yield Finding(kind="bad_checkpoint", person_id=_NIL, version=None,
                      detail=f"line {number}: {exc}")
        return
    checkpoints[cp.size] = (cp.root, str(item["note"]))
    if cp.origin != origin:
        yield Finding(kind="origin_mismatch", person_id=_NIL, version=None,
                      detail=f"checkpoint {cp.size} is for another log")
    if key is not None and not cp.signed_by(key):
        yield Finding(kind="bad_signature", person_id=_NIL, version=None,
                      detail=f"checkpoint {cp.size} is not signed by {key.name}")
    if cp.size == 0 and cp.root != Frontier().root():
        yield Finding(kind="checkpoint_mismatch", person_id=_NIL, version=None,
                      detail="checkpoint 0 does not have the empty root")


def _end_findings(size: int, newest: int, origin: str | None, held: Checkpoint | None,
                  key: TrustedKey | None) -> Iterator[Finding]:
    if size < newest:
        yield Finding(kind="log_truncated", person_id=_NIL, version=None,
                      detail=f"{size} logged versions; a checkpoint covers {newest}")
    if held is None:
        return
    if held.origin != origin:
        yield Finding(kind="origin_mismatch", person_id=_NIL, version=None,
                      detail="the held checkpoint is for another log")
    if key is not None and not held.signed_by(key):
        yield Finding(kind="bad_signature", person_id=_NIL, version=None,
                      detail=f"held checkpoint is not signed by {key.name}")
    if size < held.size:
        yield Finding(kind="log_truncated", person_id=_NIL, version=None,
                      detail=f"{size} logged versions; the held checkpoint covers {held.size}")
    if newest < held.size:
        yield Finding(kind="checkpoint_rollback", person_id=_NIL, version=None,
                      detail=f"newest exported checkpoint ({newest}) is smaller than the held "
                             f"one ({held.size})")


def _version_findings(record: VersionRecord, cid: str,
                      chains: dict[uuid.UUID, tuple[int, str, bool]],
                      stats: dict[str, int]) -> Iterator[Finding]:
    pid, version = record.person_id, record.version
    computed = cid_of(envelope_bytes(record))
    if computed != cid:
        yield Finding(kind="cid_mismatch", person_id=pid, version=version,
                      detail="the CID does not match the envelope", stored=cid,
                      computed=computed)
    if record.format != FORMAT_VERSION:
        yield Finding(kind="unknown_format", person_id=pid, version=version,
                      detail=f"envelope format {record.format}")
    if record.op not in _OPS:
        yield Finding(kind="unknown_op", person_id=pid, version=version,
                      detail="op is not a known operation")
    state = chains.get(pid)
    if state is None:
        stats["persons"] += 1
        expected, last_cid, erased = 0, None, False
    else:
        expected, last_cid, erased = state
    if version < expected:
        yield second_copy(pid, version, cid, expected=expected, last_cid=last_cid)
        return
    if version > expected:
        yield Finding(kind="version_gap", person_id=pid, version=version,
                      detail=f"versions {expected}..{version - 1} are missing")
    if version == 0 and record.prev is not None:
        yield Finding(kind="prev_mismatch", person_id=pid, version=0,
                      detail="version 0 has a prev", stored=record.prev)
    elif version == expected and version > 0 and record.prev != last_cid:
        yield Finding(kind="prev_mismatch", person_id=pid, version=version,
                      detail=f"prev is not the CID of version {version - 1}",
                      stored=record.prev, computed=last_cid)
    if erased:
        yield Finding(kind="after_erasure", person_id=pid, version=version,
                      detail="a version follows the erased version")
    chains[pid] = (version + 1, cid, erased or record.op == Op.ERASED)
