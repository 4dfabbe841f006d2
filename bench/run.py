"""``python -m bench.run [SECTION ...]``: every comparison, one run, one server.

Prints a table on stdout and writes ``bench/results.json`` (``--out`` elsewhere). Sections:
import, append, lookup, accounts, http, rebuild, verify, memory (default: all, in that order). Uses
``PEOPLELOG_DATABASE_URL`` when set, else a throwaway embedded pgserver; ``BENCH_SCALE``
multiplies every size, ``BENCH_REPS`` sets the rounds per comparison (default 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger

from ._cases import SECTIONS, Bench, Sizes, bench_memory, bench_verify, person_rows, write_jsonl
from ._env import load_average, machine, server
from ._measure import Result, say
from ._peer import PeerStore

ORDER = ["import", "append", "lookup", "accounts", "http", "rebuild", "verify", "memory"]
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _setup_app_database(b: Bench) -> None:
    """Without the import section, an untimed import gives append/lookup/rebuild a ledger."""
    rows = person_rows(b.sizes.import_rows, "setup")
    b.emails = [email for email, _ in rows]
    path = write_jsonl(b.workdir / "setup.jsonl", rows)
    b.app_url = b.server.create_database("app")
    with Ledger(Database(b.app_url, pool_size=1), b.keyring) as ledger:
        ledger.import_people(path, batch_size=b.sizes.batch)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def table(results: list[Result]) -> str:
    head = f"{'comparison':<66} {'value':>11} {'baseline':>11} {'unit':<9} {'ratio':>6} " \
           f"{'target':>7}  met"
    lines = [head, "-" * len(head)]
    for r in results:
        target = "-" if r.target is None else ((">=" if r.higher_is_better else "<=")
                                               + f"{r.target:g}")
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"{r.name[:66]:<66} {_fmt(r.value):>11} {_fmt(r.baseline):>11} "
                     f"{r.unit:<9} {ratio:>6} {target:>7}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"any of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON results file (default: {DEFAULT_OUT} for a full run)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(ORDER))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    chosen = [s for s in ORDER if s in args.sections] if args.sections else ORDER
    out: Path | None = args.out or (DEFAULT_OUT if not args.sections else None)
    sizes = Sizes.from_environment()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="peoplelog-bench-") as tmp, server() as srv:
        info: dict[str, Any] = machine(srv)
        say(f"server: {srv.kind}, PostgreSQL {info['postgres']}, fsync={info['fsync']}; "
            f"{info['cores']} cores; load average {info['load_average_at_start']}")
        workdir = Path(tmp)
        keyring = Keyring.generate()
        keyring_file = workdir / "keyring.json"
        keyring.save(keyring_file)
        peer = PeerStore(srv.create_database("peer", migrate=False))
        bench = Bench(srv, keyring, keyring_file, workdir, sizes, peer)
        try:
            needs_app = {"append", "lookup", "accounts", "http", "rebuild"}
            if "import" not in chosen and needs_app & set(chosen):
                _setup_app_database(bench)
            verify_url: str | None = None
            for section in chosen:
                if section == "verify":
                    verify_url = bench_verify(bench)
                elif section == "memory":
                    bench_memory(bench, verify_url)
                else:
                    SECTIONS[section](bench)
        finally:
            bench.close()
            peer.close()
        info["load_average_at_end"] = load_average()
        info["peer"] = {"package": "eventsourcing 9.5", "recorder": peer.recorder,
                        "cipher": "eventsourcing.cryptography:AESCipher (AES-256-GCM)"
                        if peer.cipher_on else "OFF"}
    seconds = round(time.monotonic() - started, 1)
    document = {
        "machine": info,
        "sizes": {**sizes.__dict__, "seconds": seconds},
        "results": [r.to_json() for r in bench.results],
    }
    print(table(bench.results))
    print(f"\n{len(bench.results)} entries in {seconds}s on {info['server']} "
          f"(PostgreSQL {info['postgres']}, fsync={info['fsync']}, {info['cores']} cores, "
          f"load {info['load_average_at_start']} -> {info['load_average_at_end']})")
    if out is not None:
        out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
