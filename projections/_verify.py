"""Chain verification: recompute every CID, check versions and links. No keys needed.

Rows stream through binary ``COPY (SELECT ...) TO STDOUT`` ordered by (person_id, version),
so the server produces while the client hashes; memory holds one person's previous row,
never the ledger. The C scanner (``_native.ChainScanner``) reads the stored columns and
builds each envelope itself; the pure-Python one has PostgreSQL build the canonical text.
Both hand rows that need a finding to ``_row_findings``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict
from typing_extensions import Buffer

from peoplelog.ledger import cid_bytes, cid_from_digest
from peoplelog.schema import (
    FORMAT_VERSION,
    PEOPLE_COLUMNS,
    DatabaseError,
    InvalidInput,
    Op,
    PersonNotFound,
    column_list,
)

from ._speedups import native_chain_scanner

if TYPE_CHECKING:
    from ._native import ChainScanner, LogScanner

__all__ = [
    "Finding",
    "Tally",
    "VerificationReport",
    "iter_findings",
    "second_copy",
    "verify_ledger",
]

Conn = psycopg.Connection[Any]

_B64 = ("pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode({0}, 'base64'),"
        " E'+/\\n', '-_'), '=')")
_CANONICAL = (
    "'{\"actor\":' || coalesce(pg_catalog.to_json(actor)::text, 'null')"
    " || ',\"email\":' || coalesce('\"' || " + _B64.format("email") + " || '\"', 'null')"
    " || ',\"format\":' || format"
    " || ',\"name\":' || coalesce('\"' || " + _B64.format("name") + " || '\"', 'null')"
    " || ',\"op\":' || pg_catalog.to_json(op)::text"
    " || ',\"password\":' || coalesce('\"' || " + _B64.format("password")
    + " || '\"', 'null')"
    " || ',\"person_id\":\"' || people.person_id || '\"'"
    " || ',\"prev\":' || coalesce('\"' || prev || '\"', 'null')"
    " || ',\"reason\":' || coalesce(pg_catalog.to_json(reason)::text, 'null')"
    " || ',\"recorded_at\":' || (extract(epoch FROM recorded_at) * 1000000)::bigint"
    " || ',\"verified_at\":' || coalesce((extract(epoch FROM verified_at) * 1000000)"
    "::bigint::text, 'null')"
    " || ',\"version\":' || version || '}'"
)
_IN_RANGE = ("(extract(epoch FROM {0}) * 1000000 BETWEEN -9223372036854775808"
             " AND 9223372036854775807)")
_CANONICAL_OR_NULL = (
    "CASE WHEN " + _IN_RANGE.format("recorded_at") + " AND (verified_at IS NULL OR "
    + _IN_RANGE.format("verified_at") + ") THEN " + _CANONICAL + " END")
"""NULL for a timestamp with no canonical form (infinity, or beyond 64-bit microseconds),
as the C scanner treats it: such a row is a cid_mismatch, never an error that stops verify."""
_SELECT = "SELECT people.person_id::text AS pid, version, cid, prev, format, op, {} FROM people"
_COLUMNS = sql.SQL(_SELECT.format(_CANONICAL_OR_NULL))
"""The canonical envelope text is built by PostgreSQL (the recipe of docs/FORMAT.md,
functions schema-qualified) while this process hashes the previous rows: the two overlap
on two cores. Hashing and comparing stay here."""
_TYPES = ["text", "int4", "text", "text", "int2", "text", "text"]
_RAW_COLUMNS = sql.SQL(column_list(PEOPLE_COLUMNS, "people"))
"""What the C scanner reads: the stored columns, canonicalised and hashed in C."""
_PROGRESS_EVERY = 20_000
_OPS = frozenset(op.value for op in Op)


class Finding(BaseModel):
    """One piece of damage: what kind, where, and the evidence."""

    model_config = ConfigDict(frozen=True)

    kind: str
    person_id: uuid.UUID
    version: int | None
    detail: str
    stored: str | None = None
    computed: str | None = None


class VerificationReport(BaseModel):
    ok: bool
    checked: int
    persons: int
    findings: list[Finding]


class Tally:
    """Rows and persons seen by a pass."""

    def __init__(self) -> None:
        self.rows = 0
        self.persons = 0


def _where(person_id: uuid.UUID | None) -> sql.Composable:
    if person_id is None:
        return sql.SQL("")
    return sql.SQL(" WHERE people.person_id = {}").format(sql.Literal(str(person_id)))


_CHAIN_ORDER = " ORDER BY people.person_id, people.version, people.seq"
"""Chain order; two rows of one version (a fork, a duplicate) in the order they were
written, so the later, forged one is the one reported and the chain goes on from the
first (an incremental sort on the primary key's order: no slower than the index scan)."""


def _query(person_id: uuid.UUID | None) -> sql.Composed:
    return sql.SQL("COPY ({} {}" + _CHAIN_ORDER + ") TO STDOUT (FORMAT binary)").format(
        _COLUMNS, _where(person_id))


def _raw_query(person_id: uuid.UUID | None) -> sql.Composed:
    return sql.SQL("COPY (SELECT {} FROM people {}" + _CHAIN_ORDER  # noqa: S608 - constant
                   + ") TO STDOUT (FORMAT binary)").format(_RAW_COLUMNS, _where(person_id))


def iter_findings(conn: Conn, person_id: uuid.UUID | None = None, *,
                  tally: Tally | None = None,
                  progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Yield every finding in the stored chains, one person after another."""
    tally = tally if tally is not None else Tally()
    scanner = native_chain_scanner(conn)
    if scanner is None:
        yield from _python_findings(conn, person_id, tally, progress)
    else:
        mark = _PROGRESS_EVERY
        with conn.cursor() as cur, cur.copy(_raw_query(person_id)) as copy:
            while data := copy.read():
                events = feed(scanner, data, "people")
                if events is not None:
                    for event in events:
                        yield from _row_findings(event)
                if progress is not None and scanner.rows >= mark:
                    mark += _PROGRESS_EVERY
                    progress(scanner.rows)
        if not scanner.finished:
            raise DatabaseError("the COPY stream of people ended before its end marker")
        tally.rows, tally.persons = scanner.rows, scanner.persons
    if person_id is not None and tally.rows == 0:
        raise PersonNotFound(f"person {person_id} not found")


def feed(scanner: ChainScanner | LogScanner, data: Buffer, what: str) -> list[Any] | None:
    """One chunk into a C scanner; a malformed stream is a ``DatabaseError``."""
    try:
        return scanner.feed(data)
    except (ValueError, OverflowError) as exc:
        raise DatabaseError(f"the COPY stream of {what} is malformed: {exc}") from None


def _python_findings(conn: Conn, person_id: uuid.UUID | None, tally: Tally,
                     progress: Callable[[int], None] | None) -> Iterator[Finding]:
    """The pure-Python scanner: PostgreSQL builds the canonical text, this process hashes."""
    current: str | None = None
    expected = 0
    last_cid: str | None = None
    erased = False
    with conn.cursor() as cur, cur.copy(_query(person_id)) as copy:
        copy.set_types(_TYPES)
        for pid, version, cid, prev, fmt, op, canonical in copy.rows():
            tally.rows += 1
            if progress is not None and not tally.rows % _PROGRESS_EVERY:
                progress(tally.rows)
            if pid != current:
                current, expected, last_cid, erased = pid, 0, None, False
                tally.persons += 1
            if canonical is None:
                computed = None
            else:
                digest = sha256(canonical.encode()).digest()
                computed = cid if _digest_of(cid) == digest else cid_from_digest(digest)
            if (computed != cid or fmt != FORMAT_VERSION or op not in _OPS or erased
                    or version != expected or prev != last_cid
                    or (version == 0 and op != Op.CREATED)):
                yield from _row_findings((pid, version, cid, prev, fmt, op, computed,
                                          expected, last_cid, erased))
            if version < expected:
                continue
            erased = erased or op == Op.ERASED
            expected, last_cid = version + 1, cid


RowState = tuple[str, int, str, str | None, int, str, str | None, int, str | None, bool]
"""A row and its person's chain before it: person id, version, cid, prev, format, op, the
computed CID (None when the row has no canonical form), expected version, the previous
version's CID and whether the person was erased. The C scanner hands back these tuples."""


def _row_findings(row: RowState) -> Iterator[Finding]:
    """The findings of one row, given its person's chain so far (both scanners use this)."""
    pid, version, cid, prev, fmt, op, computed, expected, last_cid, erased = row
    if computed != cid:
        yield Finding(kind="cid_mismatch", person_id=uuid.UUID(pid), version=version,
                      detail="stored CID does not match the version's content" if computed
                      else "a timestamp of the version has no canonical form (infinite or "
                      "out of range)", stored=cid, computed=computed)
    if fmt != FORMAT_VERSION or op not in _OPS:
        yield _odd_row(pid, version, fmt, op)
    if version < expected:
        yield second_copy(uuid.UUID(pid), version, cid, expected=expected, last_cid=last_cid)
        return
    yield from _link_findings(pid, version, expected, prev=prev, last_cid=last_cid, op=op)
    if erased:
        yield Finding(kind="after_erasure", person_id=uuid.UUID(pid), version=version,
                      detail="a version follows the erased version")


def second_copy(pid: uuid.UUID, version: int, cid: str, *, expected: int,
                 last_cid: str | None) -> Finding:
    """A row for a version already seen: the same row again (``duplicate``) or another
    story for that version (``fork``)."""
    if version == expected - 1 and cid == last_cid:
        return Finding(kind="duplicate", person_id=pid, version=version,
                       detail=f"version {version} is stored twice (the same content)",
                       stored=cid)
    return Finding(kind="fork", person_id=pid, version=version,
                   detail=f"a second version {version} (fork)", stored=cid)


def _digest_of(cid: str) -> bytes | None:
    try:
        return cid_bytes(cid)[4:]
    except InvalidInput:
        return None


def _odd_row(pid: str, version: int, fmt: int, op: str) -> Finding:
    if fmt != FORMAT_VERSION:
        return Finding(kind="unknown_format", person_id=uuid.UUID(pid), version=version,
                       detail=f"envelope format {fmt} is not {FORMAT_VERSION}")
    return Finding(kind="unknown_op", person_id=uuid.UUID(pid), version=version,
                   detail="op is not a known operation")


def _link_findings(pid: str, version: int, expected: int, *, prev: str | None,
                   last_cid: str | None, op: str) -> Iterator[Finding]:
    if version > expected:
        yield Finding(kind="version_gap", person_id=uuid.UUID(pid), version=version,
                      detail=f"versions {expected}..{version - 1} are missing")
    if version == 0:
        if prev is not None:
            yield Finding(kind="prev_mismatch", person_id=uuid.UUID(pid), version=0,
                          detail="version 0 has a prev", stored=prev)
        if op != Op.CREATED:
            yield Finding(kind="bad_genesis", person_id=uuid.UUID(pid), version=0,
                          detail=f"version 0 has op {op!r}, not 'created'")
    elif version == expected and prev != last_cid:
        yield Finding(kind="prev_mismatch", person_id=uuid.UUID(pid), version=version,
                      detail=f"prev is not the CID of version {version - 1}",
                      stored=prev, computed=last_cid)


def verify_ledger(conn: Conn, person_id: uuid.UUID | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  max_findings: int = 10_000) -> VerificationReport:
    """Check every chain (or one person's) and report what is wrong."""
    tally = Tally()
    findings: list[Finding] = []
    for finding in iter_findings(conn, person_id, tally=tally, progress=progress):
        if len(findings) < max_findings:
            findings.append(finding)
    return VerificationReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                              findings=findings)
