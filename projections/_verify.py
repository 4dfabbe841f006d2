"""Chain verification: recompute every CID, check versions and links. No keys needed.

Rows stream from a server-side cursor ordered by (person_id, version); memory holds one
person's previous row, never the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict

from ledger import FORMAT_VERSION, Op, PersonNotFound, VersionRecord, cid_of, envelope_bytes

__all__ = ["Finding", "VerificationReport", "iter_findings", "verify_ledger"]

Conn = psycopg.Connection[Any]

_QUERY = """
SELECT person_id, version, cid, prev, format, op,
       (extract(epoch FROM recorded_at) * 1000000)::bigint,
       actor, reason, email, name, password,
       (extract(epoch FROM verified_at) * 1000000)::bigint
FROM people {where} ORDER BY person_id, version
"""
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


class _Tally:
    rows = 0
    persons = 0


def iter_findings(conn: Conn, person_id: uuid.UUID | None = None, *,
                  tally: _Tally | None = None, batch: int = 5000,
                  progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Yield every finding in the stored chains, one person after another."""
    tally = tally or _Tally()
    where, params = ("WHERE person_id = %s", (person_id,)) if person_id else ("", ())
    current: uuid.UUID | None = None
    expected = 0
    last_cid: str | None = None
    erased = False
    with conn.transaction(), conn.cursor(name="peoplelog_verify") as cur:
        cur.itersize = batch
        cur.execute(_QUERY.format(where=where), params)
        for row in cur:
            (pid, version, cid, prev, fmt, op, recorded_at, actor, reason, email, name,
             password, verified_at) = row
            tally.rows += 1
            if progress is not None and tally.rows % batch == 0:
                progress(tally.rows)
            if pid != current:
                current, expected, last_cid, erased = pid, 0, None, False
                tally.persons += 1
            record = VersionRecord(
                person_id=pid, version=version, prev=prev, op=op, recorded_at=recorded_at,
                actor=actor, reason=reason,
                email=None if email is None else bytes(email),
                name=None if name is None else bytes(name),
                password=None if password is None else bytes(password),
                verified_at=verified_at, format=fmt,
            )
            computed = cid_of(envelope_bytes(record))
            if computed != cid:
                yield Finding(kind="cid_mismatch", person_id=pid, version=version,
                              detail="stored CID does not match the version's content",
                              stored=cid, computed=computed)
            if fmt != FORMAT_VERSION:
                yield Finding(kind="unknown_format", person_id=pid, version=version,
                              detail=f"envelope format {fmt} is not {FORMAT_VERSION}")
            if op not in _OPS:
                yield Finding(kind="unknown_op", person_id=pid, version=version,
                              detail=f"op {op!r} is not a known operation")
            if version < expected:
                yield Finding(kind="fork", person_id=pid, version=version,
                              detail=f"a second version {version} (fork)", stored=cid)
                continue
            if version > expected:
                yield Finding(kind="version_gap", person_id=pid, version=version,
                              detail=f"versions {expected}..{version - 1} are missing")
            if version == 0:
                if prev is not None:
                    yield Finding(kind="prev_mismatch", person_id=pid, version=0,
                                  detail="version 0 has a prev", stored=prev)
                if op != Op.CREATED:
                    yield Finding(kind="bad_genesis", person_id=pid, version=0,
                                  detail=f"version 0 has op {op!r}, not 'created'")
            elif version == expected and prev != last_cid:
                yield Finding(kind="prev_mismatch", person_id=pid, version=version,
                              detail=f"prev is not the CID of version {version - 1}",
                              stored=prev, computed=last_cid)
            if erased:
                yield Finding(kind="after_erasure", person_id=pid, version=version,
                              detail="a version follows the erased version")
            erased = erased or op == Op.ERASED
            expected, last_cid = version + 1, cid
    if person_id is not None and tally.rows == 0:
        raise PersonNotFound(f"person {person_id} not found")


def verify_ledger(conn: Conn, person_id: uuid.UUID | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  max_findings: int = 10_000) -> VerificationReport:
    """Check every chain (or one person's) and report what is wrong."""
    tally = _Tally()
    findings: list[Finding] = []
    for finding in iter_findings(conn, person_id, tally=tally, progress=progress):
        if len(findings) < max_findings:
            findings.append(finding)
    return VerificationReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                              findings=findings)
