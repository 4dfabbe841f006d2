"""Chain verification: recompute every CID, check versions and links. No keys needed.

Rows stream through binary ``COPY (SELECT ...) TO STDOUT`` ordered by (person_id, version),
so the server produces while the client hashes; memory holds one person's previous row,
never the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from hashlib import sha256
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from ledger import (
    FORMAT_VERSION,
    InvalidInput,
    Op,
    PersonNotFound,
    cid_bytes,
    cid_from_digest,
)

__all__ = [
    "Finding",
    "Tally",
    "VerificationReport",
    "iter_findings",
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
_SELECT = "SELECT people.person_id::text AS pid, version, cid, prev, format, op, {} FROM people"
_COLUMNS = sql.SQL(_SELECT.format(_CANONICAL))
"""The canonical envelope text is built by PostgreSQL (the recipe of docs/FORMAT.md,
functions schema-qualified) while this process hashes the previous rows: the two overlap
on two cores. Hashing and comparing stay here."""
_TYPES = ["text", "int4", "text", "text", "int2", "text", "text"]
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


def _query(person_id: uuid.UUID | None) -> sql.Composed:
    clause: sql.Composable = sql.SQL("")
    if person_id is not None:
        clause = sql.SQL(" WHERE people.person_id = {}").format(sql.Literal(str(person_id)))
    return sql.SQL(
        "COPY ({} {} ORDER BY people.person_id, people.version) TO STDOUT (FORMAT binary)"
    ).format(_COLUMNS, clause)


def iter_findings(conn: Conn, person_id: uuid.UUID | None = None, *,
                  tally: Tally | None = None,
                  progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Yield every finding in the stored chains, one person after another."""
    tally = tally or Tally()
    current: str | None = None
    expected = 0
    last_cid: str | None = None
    erased = False
    with conn.cursor() as cur, cur.copy(_query(person_id)) as copy:
        copy.set_types(_TYPES)
        for pid, version, cid, prev, fmt, op, canonical in copy.rows():
            tally.rows += 1
            if progress is not None and not tally.rows % 20_000:
                progress(tally.rows)
            if pid != current:
                current, expected, last_cid, erased = pid, 0, None, False
                tally.persons += 1
            digest = sha256(canonical.encode()).digest()
            matches = _digest_of(cid) == digest
            computed = cid if matches else cid_from_digest(digest)
            if not matches:
                yield Finding(kind="cid_mismatch", person_id=uuid.UUID(pid), version=version,
                              detail="stored CID does not match the version's content",
                              stored=cid, computed=computed)
            if fmt != FORMAT_VERSION or op not in _OPS:
                yield _odd_row(pid, version, fmt, op)
            if version < expected:
                yield Finding(kind="fork", person_id=uuid.UUID(pid), version=version,
                              detail=f"a second version {version} (fork)", stored=cid)
                continue
            yield from _link_findings(pid, version, expected, prev=prev, last_cid=last_cid,
                                      op=op)
            if erased:
                yield Finding(kind="after_erasure", person_id=uuid.UUID(pid), version=version,
                              detail="a version follows the erased version")
            erased = erased or op == Op.ERASED
            expected, last_cid = version + 1, cid
    if person_id is not None and tally.rows == 0:
        raise PersonNotFound(f"person {person_id} not found")


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
