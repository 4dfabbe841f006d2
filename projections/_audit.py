"""One verdict over everything verification checks: chains, log, checkpoints.

Large ledgers are checked on several cores: each worker process recomputes the chains of
one range of person ids over its own connection, while this process checks the log.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psycopg
from pydantic import BaseModel

from ._checkpoint import Checkpoint, VerifierKey
from ._log import LogReport, iter_log_findings
from ._verify import Finding, Partition, Tally, iter_findings, partitions

__all__ = ["PARALLEL_THRESHOLD", "AuditReport", "audit_database"]

Conn = psycopg.Connection[Any]
PARALLEL_THRESHOLD = 50_000
"""Below this many versions (planner estimate) one process is faster than several."""


class AuditReport(BaseModel):
    """``ok`` is True only when there are no findings at all."""

    ok: bool
    checked: int
    persons: int
    findings: list[Finding]
    log: LogReport | None = None


def _chain_worker(conninfo: str, partition: Partition,
                  max_findings: int) -> tuple[int, int, list[Finding]]:
    tally = Tally()
    found: list[Finding] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for finding in iter_findings(conn, tally=tally, partition=partition):
            if len(found) < max_findings:
                found.append(finding)
    return tally.rows, tally.persons, found


def _estimated_rows(conn: Conn) -> int:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass('people')"
    ).fetchone()
    return 0 if row is None or row[0] is None else max(int(row[0]), 0)


def audit_database(conn: Conn, person_id: uuid.UUID | None = None, *,
                   held: Checkpoint | None = None, key: VerifierKey | None = None,
                   progress: Callable[[int], None] | None = None,
                   max_findings: int = 10_000, conninfo: str | None = None,
                   workers: int = 1) -> AuditReport:
    """Recompute every CID and check every chain; for the whole ledger also check the log
    against the stored checkpoints and, when given, the checkpoint the auditor kept.

    With ``conninfo`` and ``workers > 1`` the chains of a large ledger are checked by
    ``workers`` processes in parallel with the log pass.
    """
    findings: list[Finding] = []

    def keep(finding: Finding) -> None:
        if len(findings) < max_findings:
            findings.append(finding)

    if person_id is not None:
        tally = Tally()
        for finding in iter_findings(conn, person_id, tally=tally, progress=progress):
            keep(finding)
        return AuditReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                           findings=findings)
    log = LogReport()
    parallel = conninfo is not None and workers > 1 and (
        _estimated_rows(conn) >= PARALLEL_THRESHOLD)
    if not parallel or conninfo is None:
        tally = Tally()
        for finding in iter_findings(conn, tally=tally, progress=progress):
            keep(finding)
        for finding in iter_log_findings(conn, held=held, key=key, report=log):
            keep(finding)
        return AuditReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                           findings=findings, log=log)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_chain_worker, conninfo, part, max_findings)
                   for part in partitions(workers)]
        for finding in iter_log_findings(conn, held=held, key=key, report=log,
                                         progress=progress):
            keep(finding)
        rows = persons = 0
        for future in futures:
            part_rows, part_persons, part_findings = future.result()
            rows += part_rows
            persons += part_persons
            for finding in part_findings:
                keep(finding)
    return AuditReport(ok=not findings, checked=rows, persons=persons, findings=findings,
                       log=log)
