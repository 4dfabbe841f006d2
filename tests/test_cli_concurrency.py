"""Concurrent writers on one person: several ``peoplelog`` processes, and several
connections through the Python API, on the same head.

While the writers start, the test holds the person's ``people_latest`` row locked (the row
every append locks first), so they all arrive at the same head before any of them writes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from conftest import ROOT, Cli

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import VersionConflict, VersionRef

pytestmark = pytest.mark.slow

WRITERS = 8


def _create(cli: Cli, tag: str) -> str:
    result = cli("person", "create", "--email", f"{tag}-{uuid.uuid4().hex[:10]}@example.org",
                 "--name", f"{tag} v0", "--json")
    assert result.code == 0, result.stderr
    return str(result.json["person_id"])


def _history(cli: Cli, person_id: str) -> list[dict[str, Any]]:
    result = cli("person", "history", person_id, "--json")
    assert result.code == 0, result.stderr
    return list(result.json)


def _verify_clean(cli: Cli, person_id: str) -> None:
    one = cli("verify", "--person", person_id, "--json")
    assert one.code == 0, one.stdout + one.stderr
    assert one.json["findings"] == []
    everyone = cli("verify", "--json")
    assert everyone.code == 0, everyone.stdout + everyone.stderr
    assert everyone.json["ok"] is True


def _waiting_on_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def head_held(url: str, person_id: str) -> Iterator[Callable[[int, Callable[[], bool]], int]]:
    """Hold the person's head row locked; yields ``gather(n, done)``, which waits until
    ``n`` sessions queue behind the lock (or ``done()`` says the writers finished without
    queueing) and returns how many queued. The lock is released on leaving the block."""
    with psycopg.connect(url) as gate:
        locked = gate.execute(
            "SELECT version FROM people_latest WHERE person_id = %s FOR UPDATE", (person_id,)
        ).fetchone()
        assert locked is not None

        def gather(n: int, done: Callable[[], bool]) -> int:
            deadline = time.monotonic() + 120
            waiting = 0
            while time.monotonic() < deadline:
                waiting = _waiting_on_locks(url)
                if waiting >= n or done():
                    break
                time.sleep(0.05)
            return waiting

        try:
            yield gather
        finally:
            gate.rollback()


def _spawn(cli: Cli, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "peoplelog", *args], env=cli.env, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _run_writers(cli: Cli, url: str, person_id: str,
                 argvs: list[list[str]]) -> tuple[list[tuple[int, str, str]], int]:
    """Start one process per argv while the head is held; release; collect the results."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with head_held(url, person_id) as gather:
            procs = [_spawn(cli, argv) for argv in argvs]
            queued = gather(len(procs), lambda: all(p.poll() is not None for p in procs))
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            results.append((proc.returncode, out.decode(), err.decode()))
        return results, queued
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_eight_processes_update_one_person_and_all_land(cli: Cli, database_url: str,
                                                        ledger: Ledger) -> None:
    pid = _create(cli, "crowd")
    names = [f"Writer {i}" for i in range(WRITERS)]
    argvs = [["person", "update", pid, "--name", name, "--actor", f"proc-{i}", "--json"]
             for i, name in enumerate(names)]
    results, queued = _run_writers(cli, database_url, pid, argvs)
    assert queued == WRITERS, "the writers did not all wait on the same head"

    for code, _out, err in results:
        assert code == 0, err
        assert err == ""
    versions = sorted(json.loads(out)["version"] for _, out, _ in results)
    assert versions == list(range(1, WRITERS + 1))

    history = _history(cli, pid)
    assert [entry["version"] for entry in history] == list(range(WRITERS + 1))
    for before, after in itertools.pairwise(history):
        assert after["prev"] == before["cid"]
    assert sorted(entry["actor"] for entry in history[1:]) == sorted(
        f"proc-{i}" for i in range(WRITERS))
    landed = {ledger.get_person(pid, version).name for version in range(1, WRITERS + 1)}
    assert landed == set(names)
    _verify_clean(cli, pid)


def test_eight_processes_expecting_the_same_version_one_wins(cli: Cli, database_url: str,
                                                             ledger: Ledger) -> None:
    pid = _create(cli, "race")
    argvs = [["person", "update", pid, "--name", f"Racer {i}", "--expect-version", "0",
              "--json"] for i in range(WRITERS)]
    results, queued = _run_writers(cli, database_url, pid, argvs)
    assert queued == WRITERS, "the writers did not all wait on the same head"

    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [4] * (WRITERS - 1), [err for _, _, err in results]
    winners = [json.loads(out) for code, out, _ in results if code == 0]
    assert winners[0]["version"] == 1
    for code, out, err in results:
        if code == 4:
            assert out == ""
            assert err.count("\n") == 1
            assert json.loads(err)["error"] == "version_conflict"

    history = _history(cli, pid)
    assert [entry["version"] for entry in history] == [0, 1]
    assert history[1]["cid"] == winners[0]["cid"]
    winner_name = argvs[[code for code, _, _ in results].index(0)][4]
    assert ledger.get_person(pid).name == winner_name
    _verify_clean(cli, pid)


@pytest.fixture()
def two_ledgers(database_url: str, keyring: Keyring) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers, each on its own single connection."""
    first = Ledger(Database(database_url, pool_size=1), keyring)
    second = Ledger(Database(database_url, pool_size=1), keyring)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_two_connections_on_the_same_head_exactly_one_lands(
    cli: Cli, database_url: str, two_ledgers: tuple[Ledger, Ledger]
) -> None:
    pid = _create(cli, "pair")
    first, second = two_ledgers
    head = first.update_person(pid, name="pair v1").version
    assert head == 1

    barrier = threading.Barrier(2)

    def write(ledger: Ledger, name: str) -> VersionRef | VersionConflict:
        barrier.wait(timeout=30)
        try:
            return ledger.update_person(pid, name=name, expect_version=head)
        except VersionConflict as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        with head_held(database_url, pid) as gather:
            futures = [pool.submit(write, first, "from first"),
                       pool.submit(write, second, "from second")]
            queued = gather(2, lambda: all(f.done() for f in futures))
            blocked = not any(f.done() for f in futures)
        outcomes = [f.result(timeout=60) for f in futures]
    assert queued == 2 and blocked, "the two connections did not wait on the same head"
    landed = [o for o in outcomes if isinstance(o, VersionRef)]
    lost = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(landed) == 1 and len(lost) == 1, outcomes
    assert landed[0].version == head + 1
    assert [entry["version"] for entry in _history(cli, pid)] == [0, 1, 2]
    _verify_clean(cli, pid)


def test_two_prepared_versions_on_the_same_head(
    cli: Cli, two_ledgers: tuple[Ledger, Ledger]
) -> None:
    """Each connection builds version n+1 on the same head; only the first append lands,
    the second is a conflict, and re-sending the winner writes nothing new."""
    pid = _create(cli, "prepared")
    first, second = two_ledgers
    mine = first.prepare_update(pid, name="prepared by first")
    theirs = second.prepare_update(pid, name="prepared by second")
    assert mine.version == theirs.version == 1
    assert mine.prev == theirs.prev

    landed = first.append(mine)
    assert (landed.version, landed.written) == (1, True)
    with pytest.raises(VersionConflict):
        second.append(theirs)
    again = second.append(mine)
    assert (again.version, again.cid, again.written) == (1, landed.cid, False)

    history = _history(cli, pid)
    assert [entry["version"] for entry in history] == [0, 1]
    assert history[1]["cid"] == landed.cid
    assert first.get_person(pid).name == "prepared by first"
    _verify_clean(cli, pid)
