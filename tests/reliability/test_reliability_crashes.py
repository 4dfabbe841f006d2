"""Crashes: writers and imports killed with SIGKILL at random points, connections lost
before and during COMMIT, and the PostgreSQL server stopped and restarted in the middle of
a run (a dedicated embedded server started for this module: the shared one is never
touched).

Afterwards the ledger verifies, the projections check clean, no acknowledged write is
missing, an interrupted import resumes without duplicates, lost connections are retried
where that is safe and otherwise reported as one clear ``DatabaseUnavailable`` line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _support import (
    ROOT,
    Figures,
    assert_acks_present,
    assert_clean,
    cli_verify,
    counts,
    read_jsonl,
    size,
    wait_for,
)
from conftest import create_database, drop_database
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import DatabaseUnavailable, PeoplelogError, VersionRef, apply_migrations

pytestmark = pytest.mark.slow
Conn = psycopg.Connection[Any]
WORKER = Path(__file__).resolve().parent / "_worker.py"
SEED = int(os.environ.get("PEOPLELOG_RELIABILITY_SEED") or random.SystemRandom().randrange(2**32))


def _rng(salt: str) -> random.Random:
    return random.Random(f"{SEED}:{salt}")


def _sessions(conn: Conn, application: str) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                       (application,)).fetchone()
    return int(row[0]) if row else 0


def _one_error_line(stderr: str) -> dict[str, Any]:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    error: dict[str, Any] = json.loads(lines[0])
    assert set(error) == {"error", "message"}, error
    return error


# --- SIGKILL ------------------------------------------------------------------------------


def test_sigkill_during_api_appends(database_url: str, keyring: Keyring, keyring_file: Path,
                                    ledger: Ledger, cli_env: dict[str, str],
                                    tmp_path: Path) -> None:
    """A process creating and updating persons is killed at a random moment, again and
    again; each time every acknowledged write is there and at most the one write in flight
    landed without its acknowledgement."""
    figures = Figures("crashes", "sigkill_api_appends")
    rng = _rng("appends")
    application = f"plt-crash-{uuid.uuid4().hex[:6]}"
    url = make_conninfo(database_url, application_name=application)
    persons = [str(ledger.create_person(email=f"crash-{uuid.uuid4().hex}@example.org",
                                        name="Crash v0", actor="crash-test").person_id)
               for _ in range(4)]
    expected = Counter(dict.fromkeys(persons, 1))  # rows each person must have, from acks
    in_flight = committed_unacked = 0
    acked = 0
    cycles = size(4, 30)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for cycle in range(cycles):
            persons_file = tmp_path / f"persons-{cycle}.txt"
            persons_file.write_text("\n".join(expected))
            log = tmp_path / f"cycle-{cycle}.jsonl"
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), "appends", "--url", url, "--keyring",
                 str(keyring_file), "--out", str(log), "--persons", str(persons_file),
                 "--seed", str(rng.randrange(2**32)), "--seconds", "60"],
                env=cli_env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=60)
                time.sleep(rng.uniform(0.02, 0.8))
                assert proc.poll() is None, proc.communicate(timeout=60)
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == -signal.SIGKILL
            wait_for(lambda: _sessions(conn, application) == 0, 60, "the session to end")

            records = read_jsonl(log)
            acks = [r for r in records if r["kind"] == "ack"]
            intents = {r["seq"]: r for r in records if r["kind"] == "intent"}
            acked += assert_acks_present(conn, acks)
            for ack in acks:
                expected[ack["person_id"]] += 1
            pending = [intents[s] for s in intents if s not in {a["seq"] for a in acks}]
            assert len(pending) <= 1, pending
            stored: dict[str, int] = dict(conn.execute(
                "SELECT person_id::text, count(*) FROM people WHERE person_id = ANY(%s::uuid[])"
                " GROUP BY person_id", ([*expected, *(p["person_id"] for p in pending)],)
            ).fetchall())
            extra = {pid: stored.get(pid, 0) - expected.get(pid, 0)
                     for pid in {*stored, *expected}}
            landed = {pid: n for pid, n in extra.items() if n}
            if pending:
                in_flight += 1
                # the write in flight landed whole or not at all, on its own person only
                assert set(landed) <= {pending[0]["person_id"]}, (landed, pending)
                assert set(landed.values()) <= {1}, landed
                if landed:
                    committed_unacked += 1
                    expected[pending[0]["person_id"]] += 1
            else:
                assert landed == {}, landed
        assert_clean(conn, keyring)
    verdict = cli_verify(cli_env)
    assert verdict.returncode == 0, verdict.stdout[-2000:]
    figures.processes = cycles
    figures.faults_injected = cycles
    figures.operations = acked
    figures.details = {"seed": SEED, "kills": cycles, "acknowledged_writes": acked,
                       "write_in_flight_at_kill": in_flight,
                       "in_flight_write_committed_without_ack": committed_unacked}
    figures.write()


def test_sigkill_during_cli_updates(database_url: str, keyring: Keyring, ledger: Ledger,
                                   cli_env: dict[str, str]) -> None:
    """``peoplelog person update --expect-version`` killed at a random point of its run:
    the version lands whole or not at all, and the next update carries on the chain."""
    figures = Figures("crashes", "sigkill_cli_updates")
    rng = _rng("cli")
    person = ledger.create_person(email=f"cli-crash-{uuid.uuid4().hex}@example.org",
                                  name="CLI crash v0")
    pid = str(person.person_id)
    head, kills, completed, landed_unacked = 0, 0, 0, 0
    acks: list[dict[str, Any]] = []
    runs = size(5, 40)
    application = f"plt-cli-crash-{uuid.uuid4().hex[:6]}"
    env = {**cli_env, "PGAPPNAME": application}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for run in range(runs):
            proc = subprocess.Popen(
                [sys.executable, "-m", "peoplelog", "person", "update", pid, "--name",
                 f"CLI crash {run}", "--expect-version", str(head), "--json"],
                env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(rng.uniform(0.05, 1.6))
                killed = proc.poll() is None
                if killed:
                    proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            wait_for(lambda: _sessions(conn, application) == 0, 60, "the session to end")
            now = conn.execute("SELECT version FROM people_latest WHERE person_id = %s",
                               (pid,)).fetchone()
            assert now is not None and now[0] in (head, head + 1)
            if killed and proc.returncode == -signal.SIGKILL:
                kills += 1
                landed_unacked += now[0] - head
            else:
                assert proc.returncode == 0, err
                completed += 1
                ack = json.loads(out)
                assert ack["version"] == head + 1 == now[0]
                acks.append(ack)
            head = now[0]
        assert_acks_present(conn, acks)
        assert_clean(conn, keyring)
    figures.processes = runs
    figures.operations = runs
    figures.faults_injected = kills
    figures.details = {"seed": SEED, "kills": kills, "completed": completed,
                       "killed_after_commit": landed_unacked}
    figures.write()


@pytest.fixture()
def fresh_db(server_url: str) -> Iterator[str]:
    url = create_database(server_url, "rel_fresh")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    yield url
    drop_database(server_url, url)


def _progressed(proc: subprocess.Popen[str], conn: Conn, target: int) -> bool:
    return proc.poll() is not None or counts(conn, ["people"])["people"] >= target


def _ended(what: threading.Thread | subprocess.Popen[str]) -> bool:
    if isinstance(what, threading.Thread):
        return not what.is_alive()
    return what.poll() is not None


def _import_file(path: Path, rows: int) -> Path:
    tag = uuid.uuid4().hex[:8]
    with path.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"email": f"imp-{tag}-{i}@example.org", "name": f"Imp {i}",
                                  "external_id": f"{tag}-{i}"}) + "\n")
    return path


def _assert_imported_once(conn: Conn, rows: int | None) -> dict[str, int]:
    table_counts = counts(conn)
    assert len(set(table_counts.values())) == 1, table_counts  # every row whole
    if rows is not None:
        assert table_counts["people"] == rows, table_counts
    assert conn.execute("SELECT count(*) FROM people WHERE version <> 0").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM (SELECT person_id FROM email_lookup"
                        " GROUP BY person_id HAVING count(*) > 1) d").fetchone() == (0,)
    return table_counts


def _run_import(env: dict[str, str], path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "peoplelog", "import", str(path), "--batch-size", "100",
         "--json"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_sigkill_during_import_then_resume(fresh_db: str, keyring: Keyring,
                                          cli_env: dict[str, str], tmp_path: Path) -> None:
    """An import killed at random points, resumed each time: in the end every row is
    there exactly once."""
    figures = Figures("crashes", "sigkill_import_resume")
    rng = _rng("import")
    rows = size(1500, 20_000)
    path = _import_file(tmp_path / "people.jsonl", rows)
    env = {**cli_env, "PEOPLELOG_DATABASE_URL": fresh_db}
    kills, runs, at_kill = 0, 0, []
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for _ in range(size(3, 12)):
            committed = counts(conn, ["people"])["people"]
            if committed >= rows:
                break
            target = rng.randrange(committed, rows)  # kill once this many rows are in
            proc = _run_import(env, path)
            runs += 1
            try:
                wait_for(functools.partial(_progressed, proc, conn, target), 600,
                         "the import to progress")
                time.sleep(rng.uniform(0, 0.05))
                finished = proc.poll() is not None
                if not finished:
                    proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate(timeout=600)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()").fetchone() == (0,), 60, "the import to end")
            if finished:
                assert proc.returncode == 0, err
                break
            kills += 1
            at_kill.append(_assert_imported_once(conn, None)["people"])
        final = _run_import(env, path)
        out, err = final.communicate(timeout=900)
        runs += 1
        assert final.returncode == 0, err
        summary = json.loads(out)
        assert summary["imported"] + summary["skipped"] == rows
        assert summary["rejected"] == 0
        _assert_imported_once(conn, rows)
        assert_clean(conn, keyring)
    figures.processes = runs
    figures.operations = rows
    figures.faults_injected = kills
    figures.details = {"seed": SEED, "rows": rows, "kills": kills,
                       "rows_committed_at_each_kill": at_kill}
    figures.write()


# --- a dedicated PostgreSQL server that the tests may stop and start ----------------------


@dataclass
class Server:
    pgdata: Path
    url: str
    user: str | None
    bin: Path
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.pgdata / "reliability.log"

    def ctl(self, *args: str) -> None:
        with tempfile.TemporaryFile() as out:  # not a pipe: the postmaster would keep it
            done = subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60",
                 "-l", str(self.log), *args], user=self.user, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, timeout=120, check=False)
            out.seek(0)
            assert done.returncode == 0, out.read().decode(errors="replace")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")

    def start(self) -> None:
        socket_dir = str(conninfo_to_dict(self.url)["host"])
        self.ctl("-o", '-h ""', "-o", f"-k {socket_dir}", "start")

    def running(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A PostgreSQL of this module's own (embedded pgserver), so that stopping it harms no
    one else's tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - slow import, only here

        pgdata = Path(tempfile.mkdtemp(prefix="peoplelog-rel-pg-"))
        handle = pgserver.get_server(  # type: ignore[attr-defined]
            pgdata, cleanup_mode=None)
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    instance = Server(pgdata, str(handle.get_uri()), getattr(handle, "system_user", None),
                      bin_dir)
    try:
        yield instance
    finally:
        if instance.running():
            instance.stop()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture()
def server_db(server: Server) -> Iterator[str]:
    if not server.running():
        server.start()
    url = create_database(server.url, "rel_restart")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    yield url
    if not server.running():
        server.start()
    drop_database(server.url, url)


# --- connections lost at a chosen moment ------------------------------------------------------

_FAULTS = """
CREATE TABLE plt_fault (phase text NOT NULL);
INSERT INTO plt_fault VALUES ('off');
CREATE FUNCTION plt_fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT phase FROM plt_fault) = TG_ARGV[0] THEN
        PERFORM pg_sleep(60);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER plt_fault_work AFTER INSERT ON people
    FOR EACH ROW EXECUTE FUNCTION plt_fault_pause('work');
CREATE CONSTRAINT TRIGGER plt_fault_commit AFTER INSERT ON people
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION plt_fault_pause('commit');
"""


def _terminate_when_paused(url: str, phase: str, finished: Callable[[], bool]) -> None:
    """Wait until a session sleeps in the ``phase`` trigger, disarm the fault (so a retry
    runs normally), and terminate that session: its client loses the connection."""
    with psycopg.connect(url, autocommit=True) as admin:
        def paused() -> list[tuple[Any, ...]]:
            return admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event = 'PgSleep'").fetchall()

        wait_for(lambda: bool(paused()) or finished(), 120, f"a write paused in {phase}")
        sleeping = paused()
        admin.execute("UPDATE plt_fault SET phase = 'off'")
        assert len(sleeping) == 1, sleeping
        admin.execute("SELECT pg_terminate_backend(%s)", (sleeping[0][0],))


def _terminate_idle(url: str, application: str) -> int:
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE application_name = %s", (application,)).fetchall()
    return len(rows)


def _arm(url: str, phase: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("UPDATE plt_fault SET phase = %s", (phase,))


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # judged by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "peoplelog", *args, "--json"], env=env,
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_lost_connections_are_retried_where_safe(server_db: str, keyring: Keyring,
                                                 cli_env: dict[str, str]) -> None:
    """A connection killed while idle in the pool, during a write's work, or during its
    COMMIT. Before COMMIT nothing can have been stored, so every call is retried. During
    COMMIT the outcome is unknown: ``create_person`` and ``update_person`` look for the
    version they attempted (by person id and CID) and retry only if it is not there;
    ``erase_person`` reports one clear ``DatabaseUnavailable`` saying the outcome is
    unknown (exit 2 from the CLI)."""
    figures = Figures("crashes", "lost_connection_retries")
    with psycopg.connect(server_db, autocommit=True) as conn:
        conn.execute(_FAULTS)
    application = f"plt-lost-{uuid.uuid4().hex[:6]}"
    url = make_conninfo(server_db, application_name=application)
    outcomes: dict[str, str] = {}
    with Ledger(Database(url, pool_size=2), keyring) as ledger, \
            psycopg.connect(server_db, autocommit=True) as conn:
        def new_person() -> uuid.UUID:
            return ledger.create_person(email=f"lost-{uuid.uuid4().hex}@example.org",
                                        name="Lost v0").person_id

        pid = new_person()
        version = 0

        # idle: the pool hands out connections the server has dropped
        for what in ("read", "update", "create"):
            ledger.get_person(pid)
            assert _terminate_idle(server_db, application) >= 1
            if what == "read":
                assert ledger.get_person(pid).version == version
            elif what == "update":
                ref = ledger.update_person(pid, name=f"idle {what}", expect_version=version)
                assert (ref.version, ref.written) == (version + 1, True)
                version = ref.version
            else:
                made = ledger.create_person(email=f"idle-{uuid.uuid4().hex}@example.org",
                                            name="Idle create")
                assert made.version == 0
            outcomes[f"api: idle connection, {what}"] = "retried"

        # during the work and during COMMIT, through the API
        for phase in ("work", "commit"):
            for what in ("update", "create", "erase"):
                doomed = new_person() if what == "erase" else pid
                before = counts(conn)
                _arm(server_db, phase)
                email = f"{phase}-{uuid.uuid4().hex}@example.org"
                call: Callable[[], VersionRef] = {
                    "update": functools.partial(ledger.update_person, pid,
                                                name=f"{phase} update", expect_version=version),
                    "create": functools.partial(ledger.create_person, email=email,
                                                name="Create"),
                    "erase": functools.partial(ledger.erase_person, doomed),
                }[what]
                thread, result = _in_thread(call)
                _terminate_when_paused(server_db, phase, functools.partial(_ended, thread))
                thread.join(timeout=120)
                assert len(result) == 1, "the write did not return"
                outcome = result[0]
                after = counts(conn)
                key = f"api: lost during {phase}, {what}"
                if phase == "commit" and what == "erase":
                    assert isinstance(outcome, DatabaseUnavailable), repr(outcome)
                    message = str(outcome)
                    assert "\n" not in message and "unknown" in message, message
                    assert after == before, "the terminated COMMIT stored something"
                    assert ledger.erase_person(doomed).written  # and it can be done again
                    outcomes[key] = "reported: outcome unknown"
                    continue
                assert isinstance(outcome, VersionRef), repr(outcome)
                assert outcome.written
                assert after["people"] == before["people"] + 1, "not exactly one version"
                if what == "update":
                    assert outcome.version == version + 1
                    version = outcome.version
                elif what == "create":
                    assert ledger.find_person(email) == outcome.person_id
                else:
                    assert ledger.get_person(doomed).erased
                outcomes[key] = "retried"

        # the CLI: one connection, no pool
        env = {**cli_env, "PEOPLELOG_DATABASE_URL": url}
        for phase, what in (("work", "update"), ("commit", "update"), ("commit", "erase")):
            doomed = new_person()
            before = counts(conn)
            _arm(server_db, phase)
            proc = (_cli(env, "person", "update", str(pid), "--name", f"cli {phase}",
                         "--expect-version", str(version)) if what == "update"
                    else _cli(env, "person", "erase", str(doomed)))
            try:
                _terminate_when_paused(server_db, phase, functools.partial(_ended, proc))
                out, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            key = f"cli: lost during {phase}, {what}"
            if what == "erase":
                assert proc.returncode == 2, (proc.returncode, err)
                error = _one_error_line(err)
                assert error["error"] == "database_unavailable"
                assert "unknown" in error["message"]
                assert counts(conn) == before
                outcomes[key] = "exit 2: outcome unknown"
            else:
                assert proc.returncode == 0, err
                assert json.loads(out)["version"] == version + 1
                version += 1
                outcomes[key] = "retried"
        _arm(server_db, "off")
        assert ledger.get_person(pid).version == version
        assert_clean(conn, keyring)
    figures.faults_injected = len(outcomes)
    figures.operations = len(outcomes)
    figures.details = {"outcomes": outcomes}
    figures.write()


class CutAfterCommit:
    """A TCP proxy in front of the server's Unix socket that, when armed, forwards a
    transaction's COMMIT and then drops the connection before the client hears the answer:
    the write is stored, the caller does not know it. A write statement run outside a
    transaction block (the one-statement append) commits as it completes, so its answer
    is cut the same way. With ``after``, only a connection that has sent those bytes
    (e.g. ``INSERT INTO people``) is cut."""

    _COMMIT_DONE = (
        b"C\x00\x00\x00\x0bCOMMIT\x00",  # CommandComplete "COMMIT"
        # CommandComplete "INSERT 0 1", then ReadyForQuery "idle": it committed on its own
        b"C\x00\x00\x00\x0fINSERT 0 1\x00Z\x00\x00\x00\x05I",
    )

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed: bytes | None = None
        self.cuts = 0
        self.closed = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, after: bytes = b"") -> None:
        self.armed = after

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.unix_path)
            seen = threading.Event()  # this connection sent the ``after`` bytes
            threading.Thread(target=self._pump, args=(client, upstream, seen, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, seen, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, seen: threading.Event,
              answers: bool) -> None:
        try:
            while data := source.recv(65536):
                armed = self.armed
                if not answers and armed is not None and armed in data:
                    seen.set()
                if answers and armed is not None and seen.is_set() \
                        and any(done in data for done in self._COMMIT_DONE):
                    with self.lock:
                        if self.armed is not None:
                            self.armed = None
                            self.cuts += 1
                            break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def test_commit_acknowledgement_lost(server: Server, server_db: str, keyring: Keyring,
                                     cli_env: dict[str, str]) -> None:
    """The COMMIT is stored but its answer never reaches the client. ``create_person`` and
    ``update_person`` find the version they attempted and return it: no second version,
    no error. ``erase_person`` cannot tell, and says so; the erasure did happen, and
    erasing again changes nothing."""
    figures = Figures("crashes", "commit_ack_lost")
    params = conninfo_to_dict(server.url)
    proxy = CutAfterCommit(f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}")
    url = make_conninfo(server_db, host="127.0.0.1", port=str(proxy.port), sslmode="disable")
    outcomes: dict[str, str] = {}
    try:
        with Ledger(Database(url, pool_size=2), keyring) as ledger, \
                psycopg.connect(server_db, autocommit=True) as conn:
            pid = ledger.create_person(email=f"ack-{uuid.uuid4().hex}@example.org",
                                       name="Ack v0").person_id
            version = 0
            for what in ("create", "update", "erase"):
                doomed = ledger.create_person(email=f"ack-{uuid.uuid4().hex}@example.org",
                                              name="Ack erase").person_id
                before = counts(conn)
                proxy.arm()
                try:
                    if what == "create":
                        outcome: VersionRef | PeoplelogError = ledger.create_person(
                            email=f"ack-{uuid.uuid4().hex}@example.org", name="Ack create")
                    elif what == "update":
                        outcome = ledger.update_person(pid, name="Ack update",
                                                       expect_version=version)
                    else:
                        outcome = ledger.erase_person(doomed)
                except PeoplelogError as exc:
                    outcome = exc
                assert proxy.cuts == len(outcomes) + 1, "the answer to COMMIT was not cut"
                after = counts(conn)
                assert after["people"] == before["people"] + 1, "not exactly one version"
                if what == "erase":
                    assert isinstance(outcome, DatabaseUnavailable), repr(outcome)
                    assert "unknown" in str(outcome) and "\n" not in str(outcome)
                    assert ledger.get_person(doomed).erased  # it did happen
                    assert not ledger.erase_person(doomed).written
                    outcomes[what] = "reported: outcome unknown (it was stored)"
                    continue
                assert isinstance(outcome, VersionRef), repr(outcome)
                assert outcome.written
                if what == "update":
                    assert outcome.version == version + 1
                    version = outcome.version
                outcomes[what] = "resumed: found the stored version"

            env = {**cli_env, "PEOPLELOG_DATABASE_URL": url}
            before = counts(conn)
            proxy.arm(after=b"INSERT INTO people ")  # the update's COMMIT, no other
            done = subprocess.run(
                [sys.executable, "-m", "peoplelog", "person", "update", str(pid), "--name",
                 "Ack CLI", "--expect-version", str(version), "--json"], env=env, cwd=ROOT,
                capture_output=True, text=True, timeout=120, check=False)
            assert proxy.cuts == len(outcomes) + 1
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["version"] == version + 1
            assert counts(conn)["people"] == before["people"] + 1
            outcomes["cli update"] = "resumed: found the stored version"
            assert_clean(conn, keyring)
    finally:
        proxy.close()
    figures.faults_injected = proxy.cuts
    figures.operations = proxy.cuts
    figures.details = {"outcomes": outcomes}
    figures.write()


# --- the server stopped and started under load ----------------------------------------------


@dataclass
class Writers:
    """Threads writing through one pooled ``Ledger`` until told to stop."""

    ledger: Ledger
    persons: list[uuid.UUID]
    stop: threading.Event = field(default_factory=threading.Event)
    acks: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, ref: VersionRef) -> None:
        with self.lock:
            self.acks.append(ref.model_dump(mode="json"))

    def fail(self, who: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append((who, exc))

    def creator(self) -> None:
        while not self.stop.is_set():
            try:
                self.ack(self.ledger.create_person(
                    email=f"restart-{uuid.uuid4().hex}@example.org", name="Restart"))
            except PeoplelogError as exc:
                self.fail("create", exc)
                time.sleep(0.05)

    def updater(self, person: uuid.UUID, *, expect: bool) -> None:
        version = self.ledger.get_person(person).version
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                ref = self.ledger.update_person(person, name=f"Restart {n}",
                                                expect_version=version if expect else None)
                self.ack(ref)
                version = ref.version
            except PeoplelogError as exc:
                self.fail("update" if not expect else "update --expect-version", exc)
                time.sleep(0.05)
                try:
                    version = self.ledger.get_person(person).version
                except PeoplelogError as again:
                    self.fail("read", again)

    def reader(self, person: uuid.UUID) -> None:
        while not self.stop.is_set():
            try:
                self.ledger.get_person(person)
                with self.lock:
                    self.reads += 1
            except PeoplelogError as exc:
                self.fail("read", exc)
                time.sleep(0.05)
            time.sleep(0.002)


def test_server_restarted_mid_run(server: Server, server_db: str, keyring: Keyring,
                                  cli_env: dict[str, str], tmp_path: Path) -> None:
    """Creates, updates (with and without an expected version) and reads run while the
    server is stopped and started again, several times; a CLI write while it is down fails
    with one clear line; nothing acknowledged is lost and the ledger verifies."""
    figures = Figures("crashes", "server_restart")
    rng = _rng("restart")
    restarts = size(2, 10)
    env = {**cli_env, "PEOPLELOG_DATABASE_URL": server_db}
    outage: list[float] = []
    with Ledger(Database(server_db, pool_size=4), keyring) as ledger:
        persons = [ledger.create_person(email=f"restart-{uuid.uuid4().hex}@example.org",
                                        name="Restart v0").person_id for _ in range(3)]
        writers = Writers(ledger, persons)
        threads = [threading.Thread(target=writers.creator, daemon=True),
                   threading.Thread(target=writers.updater, args=(persons[0],),
                                    kwargs={"expect": True}, daemon=True),
                   threading.Thread(target=writers.updater, args=(persons[1],),
                                    kwargs={"expect": False}, daemon=True),
                   threading.Thread(target=writers.reader, args=(persons[2],), daemon=True)]
        for thread in threads:
            thread.start()
        cli_down: subprocess.CompletedProcess[str] | None = None
        try:
            for n in range(restarts):
                acked = len(writers.acks)
                wait_for(lambda: len(writers.acks) >= acked + 20, 120,  # noqa: B023
                         "writes before the restart")
                server.stop()
                down = time.monotonic()
                if n == 0:  # a CLI write while the server is down: one clear line
                    cli_down = subprocess.run(
                        [sys.executable, "-m", "peoplelog", "person", "update",
                         str(persons[0]), "--name", "while down", "--json"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
                time.sleep(rng.uniform(0.2, 1.5))
                server.start()
                outage.append(round(time.monotonic() - down, 2))
            acked = len(writers.acks)
            wait_for(lambda: len(writers.acks) >= acked + 20, 120, "writes after the restart")
        finally:
            writers.stop.set()
            for thread in threads:
                thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)

    assert cli_down is not None
    assert cli_down.returncode == 2, cli_down.stderr
    error = _one_error_line(cli_down.stderr)
    assert error["error"] == "database_unavailable"
    assert "PostgreSQL" in error["message"]
    # Creates, updates and reads ride out the restarts: retried, or (a COMMIT cut off)
    # resumed by looking for the version they attempted.
    assert [(who, str(exc)) for who, exc in writers.errors] == []
    with psycopg.connect(server_db, autocommit=True) as conn:
        assert_acks_present(conn, writers.acks)
        assert_clean(conn, keyring)
    verdict = cli_verify(env)
    assert verdict.returncode == 0, verdict.stdout[-2000:]
    figures.processes = 1
    figures.operations = len(writers.acks) + writers.reads
    figures.faults_injected = restarts
    figures.details = {"seed": SEED, "restarts": restarts, "outage_seconds": outage,
                       "acknowledged_writes": len(writers.acks), "reads": writers.reads,
                       "errors": Counter(f"{w}: {type(e).__name__}" for w, e in writers.errors)}
    figures.write()


def test_import_interrupted_by_a_restart_resumes(server: Server, server_db: str,
                                                 keyring: Keyring, cli_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    figures = Figures("crashes", "server_restart_import")
    rng = _rng("restart-import")
    rows = size(2000, 20_000)
    path = _import_file(tmp_path / "people.jsonl", rows)
    env = {**cli_env, "PEOPLELOG_DATABASE_URL": server_db}
    interrupted = 0
    with psycopg.connect(server_db, autocommit=True) as conn:
        proc = _run_import(env, path)
        try:
            wait_for(lambda: counts(conn, ["people"])["people"] > 0 or proc.poll() is not None,
                     120, "the import to start writing")
            time.sleep(rng.uniform(0.0, 0.5))
            running = proc.poll() is None
        except BaseException:
            proc.kill()
            raise
    server.ctl("-m", "fast", "restart")
    out, err = proc.communicate(timeout=600)
    if running and proc.returncode != 0:
        interrupted = 1
        assert proc.returncode == 2, err
        error = _one_error_line(err)
        assert error["error"] == "database_unavailable", error
    else:
        assert proc.returncode == 0, err
    with psycopg.connect(server_db, autocommit=True) as conn:
        _assert_imported_once(conn, None)
        again = _run_import(env, path)
        out, err = again.communicate(timeout=900)
        assert again.returncode == 0, err
        summary = json.loads(out)
        assert summary["imported"] + summary["skipped"] == rows
        _assert_imported_once(conn, rows)
        assert_clean(conn, keyring)
    figures.processes = 2
    figures.operations = rows
    figures.faults_injected = 1
    figures.details = {"seed": SEED, "rows": rows, "import_interrupted": bool(interrupted)}
    figures.write()
