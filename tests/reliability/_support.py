"""Shared pieces of the reliability suite: sizes (light by default, heavy under
``PEOPLELOG_STRESS=1``), the figures each test reports, and the checks every test ends with.

Each test writes what it did (operations, processes, faults injected, inputs tried, findings)
to ``$PEOPLELOG_RELIABILITY_REPORT/<test>.json`` when that variable is set;
``scripts/reliability_report.py`` gathers them into a table.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from peoplelog.fields import Keyring
from peoplelog.projections import check_projections, verify_ledger

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parents[2]
STRESS = os.environ.get("PEOPLELOG_STRESS", "").strip() not in ("", "0", "false", "no")
TABLES = ("people", "people_latest", "email_lookup", "person_keys", "external_ids")


def size(light: int, stress: int) -> int:
    """How many operations, processes or examples: ``light`` in `make test`, ``stress``
    under `make stress` (``PEOPLELOG_STRESS=1``)."""
    return stress if STRESS else light


# --- the report ---------------------------------------------------------------------------


@dataclass
class Figures:
    """What one reliability test did; written as JSON when a report directory is set."""

    area: str
    test: str
    processes: int = 1
    operations: int = 0
    faults_injected: int = 0
    inputs_tried: int = 0
    findings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def write(self) -> None:
        directory = os.environ.get("PEOPLELOG_RELIABILITY_REPORT")
        if not directory:
            return
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        document = {
            "area": self.area,
            "test": self.test,
            "stress": STRESS,
            "database": "system/URL" if os.environ.get("PEOPLELOG_DATABASE_URL")
            else "embedded pgserver",
            "processes": self.processes,
            "operations": self.operations,
            "faults_injected": self.faults_injected,
            "inputs_tried": self.inputs_tried,
            "findings": self.findings,
            "details": self.details,
            "seconds": round(time.monotonic() - self.started, 2),
            "python": platform.python_version(),
        }
        (path / f"{self.test}.json").write_text(json.dumps(document, indent=2, default=str)
                                                + "\n")


# --- database checks ----------------------------------------------------------------------


def counts(conn: Conn, tables: Iterable[str] = TABLES) -> dict[str, int]:
    out = {}
    for table in tables:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        out[table] = int(row.fetchone()[0])  # type: ignore[index]
    return out


def assert_chains_whole(conn: Conn) -> None:
    """Independent of the verifier: versions 0..n with no gap, one row per version, every
    prev the CID of the version before (no fork), one head per person."""
    gaps = conn.execute(
        "SELECT person_id FROM people GROUP BY person_id"
        " HAVING min(version) <> 0 OR max(version) + 1 <> count(*)"
        " OR count(DISTINCT version) <> count(*)").fetchall()
    assert gaps == [], f"versions not contiguous for {gaps[:5]}"
    broken = conn.execute(
        "SELECT p.person_id, p.version FROM people p"
        " LEFT JOIN people q ON q.person_id = p.person_id AND q.version = p.version - 1"
        " WHERE (p.version = 0 AND p.prev IS NOT NULL)"
        " OR (p.version > 0 AND q.cid IS DISTINCT FROM p.prev)").fetchall()
    assert broken == [], f"prev links broken at {broken[:5]}"
    forks = conn.execute(
        "SELECT person_id, prev FROM people WHERE prev IS NOT NULL"
        " GROUP BY person_id, prev HAVING count(*) > 1").fetchall()
    assert forks == [], f"forks at {forks[:5]}"
    heads = conn.execute(
        "SELECT count(*) FROM people_latest l JOIN (SELECT person_id, max(version) AS v"
        " FROM people GROUP BY person_id) m USING (person_id) WHERE l.version <> m.v"
    ).fetchone()
    assert heads == (0,), "people_latest is not at the newest version"


def assert_clean(conn: Conn, keyring: Keyring) -> None:
    """The chains verify and the projections match a fresh fold of ``people``."""
    assert_chains_whole(conn)
    chains = verify_ledger(conn)
    assert chains.ok, chains.findings[:5]
    projection = check_projections(conn, keyring)
    assert projection.ok, projection.findings[:5]


def assert_acks_present(conn: Conn, acks: Iterable[dict[str, Any]]) -> int:
    """Every acknowledged write is in ``people`` at its version with its CID."""
    wanted = [(uuid.UUID(str(a["person_id"])), int(a["version"]), str(a["cid"])) for a in acks]
    if not wanted:
        return 0
    found = {
        (row[0], row[1]): row[2] for row in conn.execute(
            "SELECT person_id, version, cid FROM people"
            " WHERE person_id = ANY(%s)", (list({w[0] for w in wanted}),))
    }
    missing = [w for w in wanted if found.get((w[0], w[1])) != w[2]]
    assert missing == [], f"{len(missing)} acknowledged writes are missing: {missing[:5]}"
    return len(wanted)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a line cut short by SIGKILL is ignored)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def cli_verify(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """``peoplelog verify --json`` as an auditor runs it."""
    return subprocess.run([sys.executable, "-m", "peoplelog", "verify", "--json", *extra],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --- the CLI in this process (fast enough for property-based tests) -----------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_main(env: dict[str, str], argv: list[str], stdin: bytes = b"") -> Run:
    """``peoplelog.cli.main(argv)`` with ``env``'s PEOPLELOG_* settings, stdout and stderr
    captured and ``stdin`` as standard input. Usage errors (SystemExit) give their code."""
    from peoplelog.cli import main  # noqa: PLC0415 - keep this module light for the workers

    saved = {key: os.environ.get(key) for key in env if key.startswith("PEOPLELOG_")}
    out, err = io.StringIO(), io.StringIO()
    stdin_stream = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    old_stdin = sys.stdin
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("PEOPLELOG_")})
        sys.stdin = stdin_stream
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = old_stdin
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Run(code, out.getvalue(), err.getvalue())


def one_error_line(run: Run) -> str:
    """A failed command printed nothing on stdout and exactly one line on stderr."""
    lines = run.stderr.splitlines()
    assert run.stdout == "", run.stdout[:500]
    assert len(lines) == 1 and run.stderr.endswith("\n"), run.stderr[:2000]
    assert lines[0].startswith(("peoplelog: error: ", '{"error": ')), lines[0][:500]
    return lines[0]
