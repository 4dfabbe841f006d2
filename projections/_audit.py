"""One verdict over everything verification checks: chains, log, checkpoints.

Large ledgers are checked on two cores: a child process checks the log over its own
connection while this process recomputes the chains.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psycopg
from pydantic import BaseModel

from ._checkpoint import Checkpoint, TrustedKey
from ._events import iter_event_findings
from ._log import LogReport, iter_log_findings
from ._stores import iter_store_findings
from ._verify import Finding, Tally, iter_findings

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


def _log_worker(conninfo: str, held: Checkpoint | None, key: TrustedKey | None,
                max_findings: int) -> tuple[LogReport, list[Finding]]:
    report = LogReport()
    found: list[Finding] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for finding in _log_and_stores(conn, held, key, report):
            if len(found) < max_findings:
                found.append(finding)
    return report, found


def _log_and_stores(conn: Conn, held: Checkpoint | None, key: TrustedKey | None,
                    report: LogReport) -> Iterator[Finding]:
    """The whole-ledger passes beside the chains: the log against the checkpoints, the
    security events against the log and the live sessions, then the tables a login trusts
    against the chains (all key-free)."""
    yield from iter_log_findings(conn, held=held, key=key, report=report)
    yield from iter_event_findings(conn, report)
    with conn.transaction():
        yield from iter_store_findings(conn)


def _estimated_rows(conn: Conn) -> int:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass('people')"
    ).fetchone()
    return 0 if row is None or row[0] is None else max(int(row[0]), 0)


def audit_database(conn: Conn, person_id: uuid.UUID | None = None, *,
                   held: Checkpoint | None = None, key: TrustedKey | None = None,
                   progress: Callable[[int], None] | None = None,
                   max_findings: int = 10_000, conninfo: str | None = None,
                   workers: int = 1,
                   parallel_threshold: int = PARALLEL_THRESHOLD) -> AuditReport:
    """Recompute every CID and check every chain; for the whole ledger also check the log
    against the stored checkpoints and, when given, the checkpoint the auditor kept, and
    ``people_latest``, ``email_lookup`` and ``person_keys`` against the chains.

    With ``conninfo`` and ``workers > 1`` a large ledger's log is checked in a child
    process in parallel with the chains.
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
        _estimated_rows(conn) >= parallel_threshold)
    if not parallel or conninfo is None:
        tally = Tally()
        for finding in iter_findings(conn, tally=tally, progress=progress):
            keep(finding)
        for finding in _log_and_stores(conn, held, key, log):
            keep(finding)
        return AuditReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                           findings=findings, log=log)
    # The log pass runs in a forked child with its own connection while this process checks
    # the chains: the two passes take similar time, so two cores finish in about half.
    # (A forked child leaves with os._exit, so it never touches this process's connection.)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=1,
                             mp_context=multiprocessing.get_context(method)) as pool:
        pending = pool.submit(_log_worker, conninfo, held, key, max_findings)
        tally = Tally()
        for finding in iter_findings(conn, tally=tally, progress=progress):
            keep(finding)
        log, log_findings = pending.result()
    for finding in log_findings:
        keep(finding)
    return AuditReport(ok=not findings, checked=tally.rows, persons=tally.persons,
                       findings=findings, log=log)
