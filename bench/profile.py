"""``python -m bench.profile OPERATION``: one operation alone, under pyinstrument.

Operations: append, import, lookup, rebuild, verify. Setup is not profiled. The text tree
goes to stdout (``--html FILE`` for the interactive view). pyinstrument sees the calling
thread only: for the worker processes of a parallel verify, or the threads that plan and
COPY an import's batches, use py-spy instead, e.g.::

    py-spy record --subprocesses -o verify.svg -- python -m bench.profile verify --none
    py-spy record -o import.svg -- python -m bench.profile import --none

Same server rules as ``bench.run`` (``PEOPLELOG_DATABASE_URL`` or an embedded pgserver).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.projections import audit_database, rebuild_projections

from ._cases import Bench, Sizes, make_verify_database, person_rows, write_jsonl
from ._env import server
from ._measure import say

OPERATIONS = ("append", "import", "lookup", "rebuild", "verify")


def _imported(b: Bench, count: int, tag: str) -> str:
    rows = person_rows(count, tag)
    b.emails = [email for email, _ in rows]
    path = write_jsonl(b.workdir / f"{tag}.jsonl", rows)
    url = b.server.create_database("profile")
    with Ledger(Database(url, pool_size=1), b.keyring) as ledger:
        ledger.import_people(path, batch_size=b.sizes.batch)
    return url


def prepare(b: Bench, operation: str, workers: int) -> tuple[int, Callable[[], Any]]:
    """Set up, and return (item count, the work to profile)."""
    sizes = b.sizes
    if operation == "import":
        rows = person_rows(sizes.import_rows, "profile")
        path = write_jsonl(b.workdir / "profile.jsonl", rows)
        ledger = Ledger(Database(b.server.create_database("profile"), pool_size=1), b.keyring)
        b._closers.append(ledger.close)
        return sizes.import_rows, lambda: ledger.import_people(
            path, batch_size=sizes.batch, workers=workers)
    if operation == "verify":
        url = make_verify_database(b, sizes.verify_rows, "profile")
        conn = b.connect(url)
        return sizes.verify_rows, lambda: audit_database(conn, conninfo=url, workers=workers)
    url = _imported(b, sizes.import_rows, "profile")
    if operation == "rebuild":
        conn = b.connect(url)
        return sizes.import_rows, lambda: rebuild_projections(conn, b.keyring)
    ledger: Ledger = b.ledger(url)
    if operation == "lookup":
        emails = b.emails[: sizes.lookups]
        for email in emails[:100]:
            ledger.find_person(email)

        def lookups() -> None:
            for email in emails:
                ledger.find_person(email)

        return len(emails), lookups
    conn = b.connect(url)
    pids = [r[0] for r in conn.execute(
        "SELECT person_id FROM people_latest ORDER BY person_id LIMIT %s",
        (sizes.append_persons,))]
    for i in range(100):
        ledger.update_person(pids[i % len(pids)], name=f"warm {i}")

    def appends() -> None:
        for i in range(sizes.appends):
            ledger.update_person(pids[i % len(pids)], name=f"profiled {i}")

    return sizes.appends, appends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operation", choices=OPERATIONS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="verify worker processes / import hashing threads")
    parser.add_argument("--html", type=Path, help="write pyinstrument's HTML view here")
    parser.add_argument("--none", action="store_true",
                        help="no pyinstrument (to run under py-spy instead)")
    args = parser.parse_args(argv)
    sizes = Sizes.from_environment()
    with tempfile.TemporaryDirectory(prefix="peoplelog-profile-") as tmp, server() as srv:
        bench = Bench(srv, Keyring.generate(), Path(tmp) / "keyring.json", Path(tmp), sizes,
                      peer_store=None)
        try:
            count, work = prepare(bench, args.operation, args.workers)
            say(f"profiling {args.operation}: {count:,} items")
            profiler: Any = None
            if not args.none:
                from pyinstrument import Profiler  # noqa: PLC0415 - bench extra only

                profiler = Profiler(interval=0.0005)
                profiler.start()
            started = time.perf_counter()
            work()
            seconds = time.perf_counter() - started
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
                if args.html:
                    args.html.write_text(profiler.output_html(), encoding="utf-8")
            overhead = " (with profiler overhead)" if profiler is not None else ""
            say(f"{args.operation}: {count:,} in {seconds:.2f}s = {count / seconds:,.0f}/s"
                f"{overhead}")
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
