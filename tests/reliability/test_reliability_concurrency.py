"""Concurrency: several processes append to the same person (with and without an expected
version) and to their own persons, a fixed number of operations each, through the Python
API or through ``python -m ledger``.

Every worker logs each acknowledged write (version and CID). Afterwards: no fork, no
acknowledged write missing, versions contiguous, every failure a conflict (exit 4 /
``VersionConflict``) and nothing else, and the ledger verifies with clean projections.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from _support import (
    ROOT,
    Figures,
    assert_acks_present,
    assert_clean,
    cli_verify,
    read_jsonl,
    size,
)

from peoplelog.fields import Keyring
from peoplelog.ledger import Ledger

pytestmark = pytest.mark.slow
WORKER = Path(__file__).resolve().parent / "_worker.py"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("mode", "processes", "ops"),
    [pytest.param("api", size(8, 16), size(24, 300), id="api"),
     pytest.param("cli", 8, size(3, 24), id="cli")],
)
def test_processes_on_shared_raced_and_own_persons(
        mode: str, processes: int, ops: int, ledger: Ledger, keyring: Keyring,
        keyring_file: Path, database_url: str, cli_env: dict[str, str],
        tmp_path: Path) -> None:
    figures = Figures("concurrency", f"concurrency_{mode}", processes=processes)
    tag = uuid.uuid4().hex[:8]
    shared = ledger.create_person(email=f"shared-{tag}@example.org", name="Shared v0")
    race = ledger.create_person(email=f"race-{tag}@example.org", name="Race v0")
    own = [ledger.create_person(email=f"own-{i}-{tag}@example.org", name=f"Own {i}")
           for i in range(processes)]
    go = tmp_path / "go"
    logs = [tmp_path / f"worker-{i}.jsonl" for i in range(processes)]
    procs = [
        _spawn(["concurrent", "--mode", mode, "--url", database_url, "--keyring",
                str(keyring_file), "--out", str(logs[i]), "--go", str(go), "--worker", str(i),
                "--ops", str(ops), "--shared", str(shared.person_id), "--race",
                str(race.person_id), "--own", str(own[i].person_id)], cli_env)
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.communicate(timeout=60)
        go.touch()  # all start together
        for proc in procs:
            _out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    records = [record for path in logs for record in read_jsonl(path)]
    acks = [r for r in records if r["kind"] == "ack"]
    fails = [r for r in records if r["kind"] == "fail"]
    intents = [r for r in records if r["kind"] == "intent"]
    assert len(intents) == processes * ops
    assert len(acks) + len(fails) == len(intents), "an operation has no outcome"

    # Every failure is a conflict on the raced person, reported as one: exit 4 and
    # "version_conflict" from the CLI, VersionConflict (exit code 4) from the API.
    kinds = Counter((f["target"], f["error"], f["exit"]) for f in fails)
    assert set(kinds) <= {("race", "version_conflict", 4)}, kinds
    assert all(a["written"] for a in acks), "an update that changes a field wrote nothing"

    with psycopg.connect(database_url, autocommit=True) as conn:
        assert_acks_present(conn, acks)
        by_person = Counter(a["person_id"] for a in acks)
        for person in [shared, race, *own]:
            pid = str(person.person_id)
            versions = [a["version"] for a in acks if a["person_id"] == pid]
            assert len(versions) == len(set(versions)), f"two acks for one version of {pid}"
            stored = conn.execute("SELECT count(*), max(version) FROM people"
                                  " WHERE person_id = %s", (pid,)).fetchone()
            # Nothing lands without an acknowledgement, and nothing acknowledged is lost.
            assert stored == (1 + by_person[pid], by_person[pid]), (pid, stored)
        assert sorted(a["version"] for a in acks if a["target"] == "shared") == list(
            range(1, processes * len(range(0, ops, 3)) + 1)), "a shared write was lost"
        race_acks = [a for a in acks if a["target"] == "race"]
        assert race_acks, "no raced write succeeded"
        for ack in race_acks:
            assert ack["version"] == ack["expect"] + 1
        assert_clean(conn, keyring)
        for i, person in enumerate(own):  # the own person's newest email finds it
            emails = [a["email"] for a in acks if a["person_id"] == str(person.person_id)
                      and "email" in a]
            if emails:
                assert ledger.find_person(emails[-1]) == person.person_id, i
    verdict = cli_verify(cli_env)
    assert verdict.returncode == 0, verdict.stdout[-2000:] + verdict.stderr[-2000:]

    figures.operations = len(intents)
    figures.details = {
        "ops_per_process": ops,
        "acknowledged": len(acks),
        "conflicts": len(fails),
        "acknowledged_by_target": dict(Counter(a["target"] for a in acks)),
        "failures_other_than_conflict": 0,
        "versions_written": len(acks),
    }
    figures.write()
