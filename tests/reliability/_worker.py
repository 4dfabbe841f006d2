"""A writer process for the reliability tests (run as ``python _worker.py MODE ...``).

Every write is logged as one JSON line, flushed to the kernel as soon as the call returns,
so a SIGKILL loses at most the line being written: an ``intent`` line before each call and
an ``ack`` (version and CID) or ``fail`` line after it.

Modes:
  concurrent  a fixed number of updates through the API or through ``python -m ledger``,
              cycling over a shared person (no --expect-version), a raced person (with
              --expect-version read just before) and the worker's own person.
  appends     random creates and updates through the API until killed, a number of
              operations is reached, or a deadline passes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

if TYPE_CHECKING:
    from peoplelog.ledger import Ledger

# The peoplelog modules are imported only by the modes that call the API: a worker that
# drives the CLI starts in a fraction of the time.


class Log:
    def __init__(self, path: str, worker: int) -> None:
        self.handle: TextIO = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.worker = worker

    def write(self, kind: str, **fields: Any) -> None:
        self.handle.write(json.dumps({"kind": kind, "worker": self.worker, **fields},
                                     default=str) + "\n")

    def ack(self, ref: dict[str, Any], **fields: Any) -> None:
        self.write("ack", person_id=str(ref["person_id"]), version=ref["version"],
                   cid=ref["cid"], written=ref["written"], **fields)


def wait_for_go(go: str) -> None:
    print("ready", flush=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)


def head(conn: psycopg.Connection[Any], person_id: str) -> int:
    row = conn.execute("SELECT version FROM people_latest WHERE person_id = %s",
                       (person_id,)).fetchone()
    assert row is not None
    return int(row[0])


def cli_update(person_id: str, args: list[str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "peoplelog", "person", "update", person_id,
                           *args, "--json"], capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode == 0:
        return 0, dict(json.loads(done.stdout))
    lines = done.stderr.strip().splitlines()
    try:
        error = dict(json.loads(lines[-1])) if len(lines) == 1 else {}
    except ValueError:
        error = {}
    if not error:
        error = {"error": "unparseable", "message": done.stderr[-300:]}
    return done.returncode, error


def open_ledger(args: argparse.Namespace) -> Ledger:
    from peoplelog.fields import Keyring  # noqa: PLC0415 - see above
    from peoplelog.ledger import Database, Ledger  # noqa: PLC0415

    ledger = Ledger(Database(args.url, pool_size=1), Keyring.load(args.keyring))
    ledger.keyring  # noqa: B018 - load and check the keyring before the clock starts
    return ledger


def concurrent(args: argparse.Namespace) -> None:
    from peoplelog.cli import exit_code  # noqa: PLC0415 - see above

    log = Log(args.out, args.worker)
    ledger = open_ledger(args) if args.mode == "api" else None
    conn = psycopg.connect(args.url, autocommit=True)
    own_version = head(conn, args.own)
    wait_for_go(args.go)
    tag = uuid.uuid4().hex[:6]
    for op in range(args.ops):
        target = ("shared", "race", "own")[op % 3]
        person = {"shared": args.shared, "race": args.race, "own": args.own}[target]
        name = f"{target} w{args.worker} op{op}"
        expect: int | None = None
        change: dict[str, Any] = {"name": name}
        if target == "race":
            expect = head(conn, person)
        elif target == "own":
            expect = own_version
            if op % 2:
                change = {"email": f"own-{args.worker}-{op}-{tag}@example.org"}
        log.write("intent", op=op, target=target, person_id=person, expect=expect)
        if ledger is not None:
            try:
                ref = ledger.update_person(person, expect_version=expect,
                                           actor=f"worker-{args.worker}", **change)
            except Exception as exc:  # PeoplelogError or not: reported, the test judges
                log.write("fail", op=op, target=target,
                          error=getattr(exc, "kind", f"unexpected {type(exc).__name__}"),
                          exit=exit_code(exc), message=str(exc)[:300])
                continue
            result = ref.model_dump(mode="json")
        else:
            flags = [item for key, value in change.items() for item in (f"--{key}", value)]
            if expect is not None:
                flags += ["--expect-version", str(expect)]
            code, result = cli_update(person, [*flags, "--actor", f"worker-{args.worker}"])
            if code != 0:
                log.write("fail", op=op, target=target, error=result.get("error"), exit=code,
                          message=result.get("message"))
                continue
        log.ack(result, op=op, target=target, expect=expect, **change)
        if target == "own":
            own_version = int(result["version"])
    conn.close()
    if ledger is not None:
        ledger.close()


def appends(args: argparse.Namespace) -> None:
    log = Log(args.out, args.worker)
    rng = random.Random(args.seed)
    persons = [line for line in Path(args.persons).read_text().split() if line]
    ledger = open_ledger(args)
    print("ready", flush=True)
    deadline = time.monotonic() + args.seconds
    for seq in range(args.ops):
        if time.monotonic() > deadline:
            break
        roll = rng.random()
        if roll < 0.15:
            pid = str(uuid.uuid4())
            log.write("intent", seq=seq, op="create", person_id=pid)
            ref = ledger.create_person(email=f"crash-{pid}@example.org", name=f"Crash {seq}",
                                       person_id=pid, actor="crash-test")
            persons.append(pid)
        else:
            pid = rng.choice(persons)
            expect = None
            if roll < 0.5:
                expect = ledger.get_person(pid).version
            log.write("intent", seq=seq, op="update", person_id=pid, expect=expect)
            ref = ledger.update_person(pid, name=f"Crash {seq} {rng.random():.6f}",
                                       expect_version=expect, actor="crash-test")
        log.ack(ref.model_dump(mode="json"), seq=seq)
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("concurrent")
    p.add_argument("--mode", choices=["api", "cli"], required=True)
    for name in ("url", "keyring", "out", "go", "shared", "race", "own"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--ops", type=int, required=True)
    p = sub.add_parser("appends")
    for name in ("url", "keyring", "out", "persons"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ops", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    {"concurrent": concurrent, "appends": appends}[args.command](args)


if __name__ == "__main__":
    main()
