"""Run the reliability suite and print its figures as a Markdown table.

    .venv/bin/python scripts/reliability_report.py            # light sizes (as `make test`)
    .venv/bin/python scripts/reliability_report.py --stress   # heavy sizes (as `make stress`)

Each test in ``tests/reliability/`` writes what it did to
``$PEOPLELOG_RELIABILITY_REPORT/<test>.json``; this script sets that variable to a fresh
directory (or ``--out``), runs pytest on the suite, and summarises the files: per test the
operations run, processes, faults injected, inputs tried and findings, then the machine.
Extra arguments after ``--`` go to pytest. Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITE = "tests/reliability"


def _machine(database: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server = "?"
    try:
        import psycopg  # noqa: PLC0415 - only for the version line

        url = os.environ.get("PEOPLELOG_DATABASE_URL")
        if url:
            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                server = f"PostgreSQL {row[0] if row else '?'}"
        else:
            server = "embedded PostgreSQL (pgserver)"
    except Exception as exc:  # the table still prints without it
        server = f"unknown ({type(exc).__name__})"
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, {server}; database mode: {database}")


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(directory: Path) -> tuple[str, list[dict[str, Any]]]:
    reports = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    reports.sort(key=lambda r: (r["area"], r["test"]))
    lines = [
        "| area | test | operations | processes | faults injected | inputs tried | findings "
        "| seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals = {"operations": 0, "faults_injected": 0, "inputs_tried": 0, "findings": 0}
    for r in reports:
        lines.append(
            f"| {_cell(r['area'])} | {_cell(r['test'])} | {r['operations']} | "
            f"{r['processes']} | {r['faults_injected']} | {r['inputs_tried']} | "
            f"{len(r['findings'])} | {r['seconds']} |")
        for key in ("operations", "faults_injected", "inputs_tried"):
            totals[key] += int(r[key])
        totals["findings"] += len(r["findings"])
    lines.append(f"| **total** | {len(reports)} tests | {totals['operations']} | | "
                 f"{totals['faults_injected']} | {totals['inputs_tried']} | "
                 f"{totals['findings']} | |")
    return "\n".join(lines), reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stress", action="store_true", help="heavy sizes (PEOPLELOG_STRESS=1)")
    parser.add_argument("--out", type=Path, help="keep the JSON files here")
    parser.add_argument("--no-run", action="store_true",
                        help="only summarise the JSON files already in --out")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="peoplelog-reliability-"))
    out.mkdir(parents=True, exist_ok=True)
    code = 0
    if not args.no_run:
        for stale in out.glob("*.json"):
            stale.unlink()
        env = {**os.environ, "PEOPLELOG_RELIABILITY_REPORT": str(out)}
        if args.stress:
            env["PEOPLELOG_STRESS"] = "1"
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", SUITE,
                               *args.pytest_args], cwd=ROOT, env=env, check=False).returncode
    text, reports = table(out)
    database = "PEOPLELOG_DATABASE_URL" if os.environ.get("PEOPLELOG_DATABASE_URL") \
        else "embedded"
    size = "stress" if args.stress or any(r.get("stress") for r in reports) else "light"
    print(f"\n## Reliability figures ({size} sizes)\n")
    print(text)
    findings = sorted({f for r in reports for f in r["findings"]})
    if findings:
        print("\nFindings:\n")
        for finding in findings:
            print(f"- {finding}")
    print(f"\nMachine: {_machine(database)}. JSON files: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
