"""Bulk import (`peoplelog import`, `ledger._import.import_people`): JSON lines and CSV,
every column, --update, resuming after a crash, bad rows, --strict, output, and concurrent
writers. Real PostgreSQL, real argon2id (few passwords: each costs a fraction of a second).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT, Cli, CliResult, create_database, drop_database
from psycopg import sql

from peoplelog.fields import BlindIndex, KeyPurpose, Keyring, PasswordHasher, normalise_email
from peoplelog.ledger import Database, ImportSummary, Ledger, _read, _write
from peoplelog.ledger._import._importer import import_people
from peoplelog.ledger._import._reading import read_rows
from peoplelog.projections import check_projections, verify_ledger
from peoplelog.schema import InvalidInput, PersonNotFound, apply_migrations

Conn = psycopg.Connection[Any]
TABLES = ("people", "people_latest", "email_lookup", "external_ids", "person_keys")
PASSWORD = "correct horse battery staple"


# --- helpers ------------------------------------------------------------------------------


def tag() -> str:
    return uuid.uuid4().hex[:10]


def write_jsonl(path: Path, rows: list[dict[str, Any] | str | bytes]) -> Path:
    """One line per row: a dict as JSON, a str or bytes as given (raw)."""
    with path.open("wb") as out:
        for row in rows:
            if isinstance(row, dict):
                out.write(json.dumps(row).encode() + b"\n")
            else:
                out.write((row.encode() if isinstance(row, str) else row) + b"\n")
    return path


def run_import(cli: Cli, path: Path, *args: str) -> CliResult:
    return cli("import", str(path), "--json", *args)


def summary_of(result: CliResult, code: int = 0) -> dict[str, Any]:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    data: dict[str, Any] = result.json
    return data


def counts(conn: Conn) -> dict[str, int]:
    out = {}
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        out[table] = row.fetchone()[0]  # type: ignore[index]
    return out


def versions(conn: Conn, person_id: uuid.UUID) -> int:
    row = conn.execute("SELECT count(*) FROM people WHERE person_id = %s", (person_id,))
    return int(row.fetchone()[0])  # type: ignore[index]


def external_id_owner(conn: Conn, keyring: Keyring, external_id: str) -> uuid.UUID | None:
    digest = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX)).external_id_digest(external_id)
    row = conn.execute("SELECT person_id FROM external_ids WHERE id_hash = %s",
                       (digest,)).fetchone()
    return None if row is None else row[0]


def assert_consistent(conn: Conn, keyring: Keyring) -> None:
    projection = check_projections(conn, keyring)
    assert projection.ok, projection.findings[:5]
    chains = verify_ledger(conn)
    assert chains.ok, chains.findings[:5]


def assert_no_duplicates(conn: Conn) -> None:
    """One person per email claim and per external id; each person exactly once in every
    table the import writes."""
    assert conn.execute(
        "SELECT count(*) FROM (SELECT person_id FROM email_lookup GROUP BY person_id"
        " HAVING count(*) > 1) d").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM people_latest l FULL JOIN email_lookup e USING (person_id)"
        " WHERE l.person_id IS NULL OR e.person_id IS NULL").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM people_latest l FULL JOIN person_keys k USING (person_id)"
        " WHERE l.person_id IS NULL OR k.person_id IS NULL").fetchone() == (0,)


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture()
def fresh(server_url: str, cli_env: dict[str, str]) -> Iterator[tuple[str, Cli]]:
    """An empty, migrated database of its own (for whole-table counts), and a CLI on it."""
    url = create_database(server_url, "import_fresh")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    yield url, Cli({**cli_env, "PEOPLELOG_DATABASE_URL": url})
    drop_database(server_url, url)


# --- JSON lines ---------------------------------------------------------------------------


class TestJsonLines:
    def test_each_row_becomes_a_person_at_version_0_written_by_import(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        t = tag()
        rows = [
            {"email": f"{t}-a@example.org", "name": "Ada Lovelace"},
            {"email": f"{t}-b@Example.ORG", "name": "  Bob Builder ",
             "verified_at": "2021-03-04T05:06:07.123456+02:00", "external_id": f"{t}-ext"},
            {"email": f"{t}-c@example.org", "name": "Cy", "external_id": 990000 + 1,
             "password": None, "password_hash": None, "verified_at": None},
        ]
        before = counts(conn)
        summary = summary_of(run_import(cli, write_jsonl(tmp_path / "p.jsonl", rows)))
        assert summary["imported"] == 3
        assert (summary["updated"], summary["skipped"], summary["rejected"]) == (0, 0, 0)
        after = counts(conn)
        assert {k: after[k] - before[k] for k in TABLES} == {
            "people": 3, "people_latest": 3, "email_lookup": 3, "external_ids": 2,
            "person_keys": 3}

        a = ledger.get_person(ledger.find_person(f"{t}-a@example.org"))
        assert (a.version, a.prev, a.op, a.name, a.verified_at, a.has_password) == (
            0, None, "created", "Ada Lovelace", None, False)
        b = ledger.get_person(ledger.find_person(f"{t}-b@example.org"))
        assert b.email == f"{t}-b@example.org"  # domain lower-cased, local part kept
        assert b.name == "Bob Builder"
        assert b.verified_at == datetime(2021, 3, 4, 3, 6, 7, 123456, tzinfo=UTC)
        for person in (a, b):
            history = ledger.history(person.person_id)
            assert [(h.version, h.op, h.actor, h.reason) for h in history] == [
                (0, "created", "import", None)]
        c = ledger.find_person(f"{t}-c@example.org")
        assert external_id_owner(conn, keyring, f"{t}-ext") == b.person_id
        assert external_id_owner(conn, keyring, "990001") == c
        assert_consistent(conn, keyring)

    def test_actor_and_reason_are_recorded(self, cli: Cli, ledger: Ledger,
                                           tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "p.jsonl", [{"email": f"{t}@example.org", "name": "A"}])
        summary_of(run_import(cli, path, "--actor", "crm-migration", "--reason",
                              "move from the old CRM"))
        history = ledger.history(ledger.find_person(f"{t}@example.org"))
        assert [(h.actor, h.reason) for h in history] == [
            ("crm-migration", "move from the old CRM")]

    def test_plaintext_password_is_hashed_with_argon2id(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        email = f"{tag()}@example.org"
        path = write_jsonl(tmp_path / "p.jsonl",
                           [{"email": email, "name": "P", "password": PASSWORD}])
        summary_of(run_import(cli, path, "--workers", "2"))
        pid = ledger.find_person(email)
        phc = _read.read_password_hash(conn, keyring, pid)
        assert phc is not None and phc.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert ledger.authenticate(email, PASSWORD) == pid
        assert ledger.authenticate(email, PASSWORD + "!") is None

    def test_existing_phc_hash_is_stored_as_is(self, cli: Cli, ledger: Ledger, conn: Conn,
                                               keyring: Keyring, tmp_path: Path) -> None:
        email = f"{tag()}@example.org"
        phc = PasswordHasher().hash(PASSWORD)
        path = write_jsonl(tmp_path / "p.jsonl",
                           [{"email": email, "name": "H", "password_hash": phc}])
        summary_of(run_import(cli, path))
        pid = ledger.find_person(email)
        assert _read.read_password_hash(conn, keyring, pid) == phc
        assert ledger.authenticate(email, PASSWORD) == pid
        assert versions(conn, pid) == 1  # current parameters: no rehash on login

    def test_blank_lines_bom_and_crlf(self, cli: Cli, ledger: Ledger, tmp_path: Path) -> None:
        t = tag()
        path = tmp_path / "p.jsonl"
        path.write_bytes(
            b"\xef\xbb\xbf" + json.dumps({"email": f"{t}-1@example.org", "name": "One"}).encode()
            + b"\r\n\r\n   \n"
            + json.dumps({"email": f"{t}-2@example.org", "name": "Two"}).encode())
        summary = summary_of(run_import(cli, path))
        assert (summary["rows"], summary["imported"]) == (2, 2)
        assert ledger.get_person(ledger.find_person(f"{t}-2@example.org")).name == "Two"

    def test_library_call(self, database_url: str, keyring: Keyring, ledger: Ledger,
                          tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "p.jsonl",
                           [{"email": f"{t}-{i}@example.org", "name": f"N{i}"}
                            for i in range(7)])
        database = Database(database_url, pool_size=2)
        try:
            seen: list[int] = []
            summary = import_people(database, keyring, lambda: read_rows(path),
                                    batch_size=3, progress=seen.append)
        finally:
            database.close()
        assert isinstance(summary, ImportSummary)
        assert (summary.imported, summary.rejected, summary.written) == (7, 0, True)
        assert seen == [3, 6, 7]
        ledger.find_person(f"{t}-6@example.org")
        with pytest.raises(InvalidInput, match="batch size"):
            import_people(database, keyring, lambda: read_rows(path), batch_size=0)


# --- CSV ----------------------------------------------------------------------------------


class TestCsv:
    def test_header_bom_quoting_and_empty_cells(self, cli: Cli, ledger: Ledger, conn: Conn,
                                                keyring: Keyring, tmp_path: Path) -> None:
        t = tag()
        password = 'pass, "word"\nwith a newline'
        text = (
            "\ufeffemail,name,verified_at,external_id,password,password_hash\r\n"
            f"{t}-1@example.org,\"Lovelace, Ada\",2020-01-02T03:04:05Z,{t}-x1,,\r\n"
            f"{t}-2@example.org,\"The \"\"Quoted\"\" One\",,,\"pass, \"\"word\"\"\r\n"
            "with a newline\",\r\n"
            "\r\n"
            f"{t}-3@example.org,Plain,,,,\r\n"
        )
        path = tmp_path / "p.csv"
        path.write_bytes(text.encode("utf-8"))
        summary = summary_of(run_import(cli, path))
        assert (summary["rows"], summary["imported"], summary["rejected"]) == (3, 3, 0)
        one = ledger.get_person(ledger.find_person(f"{t}-1@example.org"))
        assert one.name == "Lovelace, Ada"
        assert one.verified_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert external_id_owner(conn, keyring, f"{t}-x1") == one.person_id
        two = ledger.find_person(f"{t}-2@example.org")
        assert ledger.get_person(two).name == 'The "Quoted" One'
        assert ledger.authenticate(f"{t}-2@example.org", password.replace("\n", "\r\n")) == two
        three = ledger.get_person(ledger.find_person(f"{t}-3@example.org"))
        assert (three.verified_at, three.has_password) == (None, False)  # empty cells: null
        assert external_id_owner(conn, keyring, "") is None

    def test_multiline_name_is_rejected_but_later_line_numbers_stay_right(
            self, cli: Cli, ledger: Ledger, tmp_path: Path) -> None:
        # Names may not hold control characters (a newline is one): the record spanning
        # lines 2-3 is rejected as line 2, and the bad row after it is line 4.
        t = tag()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["email", "name"])
        writer.writerow([f"{t}-1@example.org", "two\nlines"])
        writer.writerow(["not-an-email", "X"])
        writer.writerow([f"{t}-3@example.org", "Fine, with a comma"])
        path = tmp_path / "p.csv"
        path.write_text(buffer.getvalue())
        summary = summary_of(run_import(cli, path), code=2)
        assert [(e["line"], e["reason"][:22]) for e in summary["errors"]] == [
            (2, "name contains control "), (4, "invalid email address:")]
        assert ledger.get_person(ledger.find_person(f"{t}-3@example.org")).name == (
            "Fine, with a comma")

    def test_bad_records(self, cli: Cli, ledger: Ledger, tmp_path: Path) -> None:
        t = tag()
        path = tmp_path / "p.csv"
        path.write_bytes(
            b"email,name\n"
            + f"{t}-1@example.org,One\n".encode()
            + f"{t}-2@example.org,Two,extra\n".encode()          # 3: too many fields
            + f"{t}-3@example.org\n".encode()                      # 4: too few
            + f"{t}-4@example.org,Bad\xff\xfeName\n".encode("latin-1")  # 5: not UTF-8
            + f"{t}-5@example.org,Nul\x00Name\n".encode()          # 6: NUL
            + f"{t}-6@example.org,\"x\"y\n".encode()               # 7: bad quoting
            + f"{t}-7@example.org,Seven\n".encode()
        )
        result = run_import(cli, path)
        summary = summary_of(result, code=2)
        assert (summary["imported"], summary["rejected"]) == (2, 5)
        reasons = {e["line"]: e["reason"] for e in summary["errors"]}
        assert reasons[3] == "3 fields; the header has 2"
        assert reasons[4] == "1 fields; the header has 2"
        assert reasons[5] == "name is not valid UTF-8"
        assert reasons[6] == "name contains a NUL byte"
        assert reasons[7].startswith("bad CSV: ")
        assert "Bad" not in result.stdout + result.stderr
        assert "Nul" not in result.stdout + result.stderr
        ledger.find_person(f"{t}-7@example.org")

    @pytest.mark.parametrize(("header", "message"), [
        ("email,name,nickname", "unknown or repeated columns"),
        ("email,name,name", "unknown or repeated columns"),
        ("email,password", "no name column"),
        ("", "empty"),
    ])
    def test_a_bad_header_fails_the_file_before_anything_is_written(
            self, cli: Cli, conn: Conn, tmp_path: Path, header: str, message: str) -> None:
        path = tmp_path / "p.csv"
        path.write_text(f"{header}\n{tag()}@example.org,A,B\n" if header else "")
        before = counts(conn)
        result = run_import(cli, path)
        assert result.code == 2
        assert result.stdout == ""
        assert message in json.loads(result.stderr)["message"]
        assert counts(conn) == before

    def test_header_names_are_trimmed_and_format_can_be_forced(
            self, cli: Cli, ledger: Ledger, tmp_path: Path) -> None:
        email = f"{tag()}@example.org"
        path = tmp_path / "people.txt"
        path.write_text(f" email , name \n{email},Trim\n")
        summary_of(run_import(cli, path, "--format", "csv"))
        assert ledger.get_person(ledger.find_person(email)).name == "Trim"


# --- --update -----------------------------------------------------------------------------


class TestUpdate:
    def test_existing_rows_are_skipped_without_update(self, cli: Cli, ledger: Ledger,
                                                      conn: Conn, tmp_path: Path) -> None:
        email = f"{tag()}@example.org"
        path = write_jsonl(tmp_path / "a.jsonl", [{"email": email, "name": "First"}])
        summary_of(run_import(cli, path))
        write_jsonl(path, [{"email": email, "name": "Second"}])
        summary = summary_of(run_import(cli, path))
        assert (summary["imported"], summary["updated"], summary["skipped"]) == (0, 0, 1)
        pid = ledger.find_person(email)
        assert versions(conn, pid) == 1
        assert ledger.get_person(pid).name == "First"

    def test_rerun_changes_nothing_and_one_changed_name_gives_one_version(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        t = tag()
        phc = PasswordHasher().hash(PASSWORD)
        rows: list[dict[str, Any]] = [
            {"email": f"{t}-1@example.org", "name": "One", "external_id": f"{t}-1",
             "verified_at": "2022-02-02T02:02:02Z"},
            {"email": f"{t}-2@example.org", "name": "Two", "password": PASSWORD},
            {"email": f"{t}-3@example.org", "name": "Three", "password_hash": phc,
             "external_id": int(uuid.uuid4().int % 10**12)},
            {"email": f"{t}-4@example.org", "name": "Four"},
        ]
        path = write_jsonl(tmp_path / "u.jsonl", rows)
        summary_of(run_import(cli, path, "--update"))
        before = counts(conn)
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["imported"], summary["updated"], summary["skipped"]) == (0, 0, 4)
        assert counts(conn) == before

        rows[3]["name"] = "Four, renamed"
        write_jsonl(path, rows)
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["imported"], summary["updated"], summary["skipped"]) == (0, 1, 3)
        after = counts(conn)
        assert after["people"] == before["people"] + 1
        assert {k: v for k, v in after.items() if k != "people"} == {
            k: v for k, v in before.items() if k != "people"}
        pid = ledger.find_person(f"{t}-4@example.org")
        history = ledger.history(pid)
        assert [(h.version, h.op, h.actor, h.changed) for h in history] == [
            (0, "created", "import", ["email", "name"]), (1, "updated", "import", ["name"])]
        assert history[1].prev == history[0].cid
        assert ledger.get_person(pid).name == "Four, renamed"
        assert ledger.authenticate(f"{t}-2@example.org", PASSWORD) is not None
        assert_consistent(conn, keyring)

    def test_password_equal_to_the_current_one_is_not_a_change(
            self, cli: Cli, ledger: Ledger, conn: Conn, tmp_path: Path) -> None:
        email = f"{tag()}@example.org"
        path = write_jsonl(tmp_path / "p.jsonl",
                           [{"email": email, "name": "P", "password": PASSWORD}])
        summary_of(run_import(cli, path))
        pid = ledger.find_person(email)
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["updated"], summary["skipped"]) == (0, 1)
        assert versions(conn, pid) == 1

        new_password = PASSWORD + " two"
        write_jsonl(path, [{"email": email, "name": "P", "password": new_password}])
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["updated"], summary["skipped"]) == (1, 0)
        assert [h.op for h in ledger.history(pid)] == ["created", "password_changed"]
        assert ledger.authenticate(email, new_password) == pid
        assert ledger.authenticate(email, PASSWORD) is None

    def test_external_id_finds_the_person_when_the_email_changed(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        t = tag()
        number = int(uuid.uuid4().int % 10**12)
        path = write_jsonl(tmp_path / "a.jsonl", [
            {"email": f"{t}-old@example.org", "name": "Mover", "external_id": number}])
        summary_of(run_import(cli, path))
        pid = ledger.find_person(f"{t}-old@example.org")
        write_jsonl(path, [  # the same id as text: the same person
            {"email": f"{t}-new@example.org", "name": "Mover", "external_id": str(number),
             "verified_at": "2023-01-01T00:00:00Z"}])
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["imported"], summary["updated"]) == (0, 1)
        assert ledger.find_person(f"{t}-new@example.org") == pid
        with pytest.raises(PersonNotFound):
            ledger.find_person(f"{t}-old@example.org")
        view = ledger.get_person(pid)
        assert (view.version, view.email) == (1, f"{t}-new@example.org")
        assert view.verified_at is not None
        assert_consistent(conn, keyring)

    def test_matched_by_email_the_external_id_is_attached(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        t = tag()
        pid = ledger.create_person(email=f"{t}@example.org", name="App user").person_id
        path = write_jsonl(tmp_path / "a.jsonl", [
            {"email": f"{t}@example.org", "name": "App user", "external_id": f"{t}-id"}])
        summary = summary_of(run_import(cli, path, "--update"))
        assert (summary["updated"], summary["skipped"]) == (0, 1)
        assert external_id_owner(conn, keyring, f"{t}-id") == pid
        assert versions(conn, pid) == 1

    def test_email_of_another_person_than_the_external_id_is_rejected(
            self, cli: Cli, ledger: Ledger, conn: Conn, tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "a.jsonl", [
            {"email": f"{t}-a@example.org", "name": "A", "external_id": f"{t}-a"},
            {"email": f"{t}-b@example.org", "name": "B", "external_id": f"{t}-b"}])
        summary_of(run_import(cli, path))
        before = counts(conn)
        write_jsonl(path, [
            {"email": f"{t}-b@example.org", "name": "A?", "external_id": f"{t}-a"},
            {"email": f"{t}-c@example.org", "name": "C"}])
        for flags in ((), ("--update",)):
            summary = summary_of(run_import(cli, path, *flags), code=2)
            assert summary["errors"] == [{
                "line": 1,
                "reason": "the email belongs to another person than the external id"}]
        assert counts(conn)["people"] == before["people"] + 1  # C, once
        assert ledger.get_person(ledger.find_person(f"{t}-b@example.org")).name == "B"
        assert ledger.get_person(ledger.find_person(f"{t}-a@example.org")).name == "A"


# --- resuming after a crash ---------------------------------------------------------------


def _big_file(path: Path, rows: int, prefix: str) -> Path:
    with path.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"email": f"{prefix}-{i}@example.org", "name": f"Person {i}",
                                  "external_id": f"{prefix}-{i}"}) + "\n")
    return path


def _interrupt_midway(url: str, cli: Cli, path: Path, sig: int, rows: int,
                      batch: int) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """Start the import, send ``sig`` once a few batches are in, wait until the database
    has no session of it left; return the rows committed and the process outcome."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "peoplelog", "import", str(path), "--batch-size", str(batch),
         "--json"], env=cli.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with psycopg.connect(url, autocommit=True) as conn:
        def people() -> int:
            return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])  # type: ignore[index]

        try:
            wait_for(lambda: people() >= 3 * batch or proc.poll() is not None, 120,
                     "the import to write a few batches")
            assert proc.poll() is None, "the import finished before it could be interrupted"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_for(lambda: conn.execute(  # the killed session's transaction is gone
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()").fetchone() == (0,), 30, "the session to end")
        committed = people()
        table_counts = counts(conn)
    assert 0 < committed < rows
    assert committed % batch == 0, "a batch was written in part"
    assert set(table_counts.values()) == {committed}, table_counts
    return committed, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class TestResume:
    @pytest.mark.parametrize(("sig", "rows"), [
        pytest.param(signal.SIGKILL, 20_000, id="sigkill"),
        pytest.param(signal.SIGINT, 10_000, id="sigint"),
    ])
    def test_rerun_after_interruption_writes_every_row_exactly_once(
            self, fresh: tuple[str, Cli], keyring: Keyring, tmp_path: Path, sig: int,
            rows: int) -> None:
        url, cli = fresh
        path = _big_file(tmp_path / "big.jsonl", rows, tag())
        committed, outcome = _interrupt_midway(url, cli, path, sig, rows, batch=500)
        if sig == signal.SIGKILL:
            assert outcome.returncode == -signal.SIGKILL
        else:
            assert outcome.returncode == 130, outcome.stderr
            assert outcome.stdout == b""
            assert json.loads(outcome.stderr)["error"] == "interrupted"

        summary = summary_of(run_import(cli, path, "--batch-size", "500"))
        assert (summary["rows"], summary["imported"], summary["skipped"],
                summary["rejected"]) == (rows, rows - committed, committed, 0)
        summary = summary_of(run_import(cli, path, "--batch-size", "700"))  # and again
        assert (summary["imported"], summary["skipped"]) == (0, rows)
        with psycopg.connect(url, autocommit=True) as conn:
            assert counts(conn) == dict.fromkeys(TABLES, rows)
            assert conn.execute("SELECT count(DISTINCT person_id), max(version)"
                                " FROM people").fetchone() == (rows, 0)
            assert_no_duplicates(conn)
            assert_consistent(conn, keyring)


# --- bad rows -----------------------------------------------------------------------------


class TestBadRows:
    def test_bad_rows_are_reported_by_line_and_do_not_stop_the_others(
            self, cli: Cli, ledger: Ledger, conn: Conn, keyring: Keyring,
            tmp_path: Path) -> None:
        t = tag()
        secret = f"S3CRET{t}"

        def good(n: int) -> dict[str, Any]:
            return {"email": f"{t}-good{n}@example.org", "name": f"Good {n}",
                    "external_id": f"{t}-g{n}"}

        lines: list[tuple[dict[str, Any] | str | bytes, str | None]] = [
            (good(1), None),
            ({"email": f"{secret}-at-example.org", "name": "X"}, "invalid email address"),
            ({"email": f"{t}-nn@example.org"}, "name is missing"),
            ({"email": f"{t}-nul@example.org", "name": f"a\u0000{secret}"},
             "name contains a NUL byte"),
            (f'{{"email": "{t}-raw@example.org", "name": "a\x00{secret}"}}',
             "not a JSON document"),
            (b'{"email": "x@example.org", "name": "\xff\xfe' + secret.encode() + b'"}',
             "not valid UTF-8"),
            (good(2), None),
            ("[1, 2, 3]", "not a JSON object"),
            (json.dumps(secret), "not a JSON object"),
            ("null", "not a JSON object"),
            ('{"email": "truncated', "not a JSON document"),
            ("[" * 50_000, "not a JSON object (nested too deeply)"),
            ({**good(3), "email": f"{t}-uf@example.org", "nickname": secret},
             "unknown fields: nickname"),
            ({"email": f"{t}-both@example.org", "name": "B", "password": secret + "pw",
              "password_hash": secret}, "give password or password_hash, not both"),
            ({"email": f"{t}-phc@example.org", "name": "B",
              "password_hash": f"$argon2id$v=19$m=65536,t=3,p=4${secret}!!$abc"},
             "password_hash is not an argon2id PHC string"),
            ({"email": f"{t}-weak@example.org", "name": "B",
              "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$"
                               "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"},
             "password_hash is weaker than OWASP's argon2id minimum"),
            ({"email": f"{t}-heavy@example.org", "name": "B",
              "password_hash": "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHRzYWx0$"
                               "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"},
             "password_hash parameters are too heavy"),
            ({"email": f"{t}-phc2@example.org", "name": "B",
              "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$\ud800AAAAAAAAAAAA$"
                               "AAAAAAAAAAAAAAAAAAAAAA"},
             "password_hash is not valid UTF-8"),
            ({"email": f"{t}-short@example.org", "name": "B", "password": "short"},
             "password is too short"),
            ({"email": f"{t}-naive@example.org", "name": "B",
              "verified_at": "2024-01-01T10:00:00"}, "verified_at needs a time zone"),
            ({"email": f"{t}-far@example.org", "name": "B",
              "verified_at": "9999-01-01T00:00:00Z"}, "verified_at is out of range"),
            ({"email": f"{t}-long@example.org", "name": "B", "external_id": "x" * 257},
             "external_id is longer than 256 characters"),
            ({"email": f"{t}-float@example.org", "name": "B", "external_id": 1.5},
             "external_id must be a non-empty string or integer"),
            ({"email": f"{t}-sur@example.org", "name": "B\ud800"},
             "name is not valid UTF-8"),
            ({"email": 12345, "name": "B"}, "email must be text"),
            ('{"email": "' + f"{t}-big@example.org" + '", "name": "' + "n" * (1 << 20) + '"}',
             "the line is longer than 1048576 bytes"),
            (good(4), None),
            ({**good(5), "email": f"{t}-GOOD1@example.org"},
             "duplicate: the same email as line 1"),     # same batch (local part case)
            ({**good(6), "external_id": f"{t}-g2"},
             "duplicate: the same external id as line 7"),  # across batches
            ({**good(7), "email": f"{t}-good2@example.org", "external_id": f"{t}-g7"},
             "duplicate: the same email as line 7"),
            (good(8), None),
        ]
        path = write_jsonl(tmp_path / "bad.jsonl", [row for row, _ in lines])
        expected = [(n, reason) for n, (_, reason) in enumerate(lines, start=1) if reason]
        good_lines = [row for row, reason in lines if reason is None]

        for batch_size in ("4", "1000"):
            result = run_import(cli, path, "--batch-size", batch_size)
            summary = summary_of(result, code=2)
            assert summary["rows"] == len(lines)
            assert summary["rejected"] == len(expected)
            got = [(e["line"], e["reason"]) for e in summary["errors"]]
            assert [line for line, _ in got] == [line for line, _ in expected]
            for (line, reason), (_, want) in zip(got, expected, strict=True):
                assert reason.startswith(want), (line, reason, want)
            assert secret not in result.stdout + result.stderr
            assert result.stderr == ""

        assert summary["skipped"] == len(good_lines)  # the second run found them all
        for row in good_lines:
            assert isinstance(row, dict)
            pid = ledger.find_person(row["email"])
            assert versions(conn, pid) == 1
            assert ledger.get_person(pid).name == row["name"]
        for email in (f"{t}-good5@example.org", f"{t}-good6@example.org",
                      f"{t}-good7@example.org", f"{t}-uf@example.org",
                      f"{t}-both@example.org"):
            with pytest.raises(PersonNotFound):
                ledger.find_person(email)
        assert_consistent(conn, keyring)

    def test_duplicates_across_batches_are_rejected_the_same_way_on_every_run(
            self, cli: Cli, ledger: Ledger, conn: Conn, tmp_path: Path) -> None:
        t = tag()
        rows = [{"email": f"{t}-{i}@example.org", "name": f"N{i}"} for i in range(6)]
        rows.append({"email": f"{t}-0@example.org", "name": "Again"})   # line 7 = line 1
        rows.append({"email": f"{t}-7@example.org", "name": "Last"})
        path = write_jsonl(tmp_path / "d.jsonl", rows)
        for update in ((), ("--update",), ()):
            summary = summary_of(run_import(cli, path, "--batch-size", "2", *update), code=2)
            assert summary["errors"] == [
                {"line": 7, "reason": "duplicate: the same email as line 1"}]
        assert ledger.get_person(ledger.find_person(f"{t}-0@example.org")).name == "N0"
        assert versions(conn, ledger.find_person(f"{t}-0@example.org")) == 1

    def test_two_rows_resolving_to_one_person_are_a_duplicate(
            self, cli: Cli, ledger: Ledger, conn: Conn, tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "a.jsonl", [
            {"email": f"{t}-a@example.org", "name": "A", "external_id": f"{t}-a"}])
        summary_of(run_import(cli, path))
        pid = ledger.find_person(f"{t}-a@example.org")
        write_jsonl(path, [
            {"email": f"{t}-a2@example.org", "name": "By id", "external_id": f"{t}-a"},
            {"email": f"{t}-x@example.org", "name": "X"},
            {"email": f"{t}-a@example.org", "name": "By email"}])
        # One batch: both rows resolve, against the database as the batch found it, to
        # the same person. (Had line 3 been in a later batch, line 1 would already have
        # moved the person to another email, and line 3 would be a new person.)
        summary = summary_of(run_import(cli, path, "--update"), code=2)
        assert summary["errors"] == [
            {"line": 3, "reason": "duplicate: the same person as line 1"}]
        assert ledger.get_person(pid).name == "By id"
        assert versions(conn, pid) == 2


# --- --strict -----------------------------------------------------------------------------


class TestStrict:
    def test_one_bad_row_writes_nothing(self, cli: Cli, conn: Conn, tmp_path: Path) -> None:
        t = tag()
        rows: list[dict[str, Any] | str] = [
            {"email": f"{t}-{i}@example.org", "name": f"N{i}"} for i in range(5)]
        rows.insert(3, {"email": f"{t}-bad@example.org", "name": ""})
        rows.append({"email": f"{t}-1@example.org", "name": "dup"})
        path = write_jsonl(tmp_path / "s.jsonl", rows)
        before = counts(conn)
        summary = summary_of(run_import(cli, path, "--strict", "--batch-size", "2"), code=2)
        assert summary["written"] is False
        assert (summary["imported"], summary["rejected"]) == (0, 2)
        assert summary["errors"] == [
            {"line": 4, "reason": "name is empty"},
            {"line": 7, "reason": "duplicate: the same email as line 2"}]
        assert counts(conn) == before

    def test_a_row_failing_against_the_database_rolls_back_earlier_batches(
            self, cli: Cli, ledger: Ledger, conn: Conn, tmp_path: Path) -> None:
        t = tag()
        setup = write_jsonl(tmp_path / "a.jsonl", [
            {"email": f"{t}-a@example.org", "name": "A", "external_id": f"{t}-a"},
            {"email": f"{t}-b@example.org", "name": "B"}])
        summary_of(run_import(cli, setup))
        before = counts(conn)
        rows = [{"email": f"{t}-new{i}@example.org", "name": f"New {i}"} for i in range(4)]
        rows.append({"email": f"{t}-b@example.org", "name": "A?", "external_id": f"{t}-a"})
        path = write_jsonl(tmp_path / "s.jsonl", rows)
        for flags in ((), ("--update",)):
            summary = summary_of(
                run_import(cli, path, "--strict", "--batch-size", "2", *flags), code=2)
            assert summary["written"] is False
            assert summary["errors"] == [{
                "line": 5,
                "reason": "the email belongs to another person than the external id"}]
            assert counts(conn) == before
        with pytest.raises(PersonNotFound):
            ledger.find_person(f"{t}-new0@example.org")

    def test_clean_file_is_written_in_full(self, cli: Cli, ledger: Ledger, conn: Conn,
                                           keyring: Keyring, tmp_path: Path) -> None:
        t = tag()
        rows = [{"email": f"{t}-{i}@example.org", "name": f"N{i}", "external_id": f"{t}{i}"}
                for i in range(9)]
        path = write_jsonl(tmp_path / "s.jsonl", rows)
        before = counts(conn)
        summary = summary_of(run_import(cli, path, "--strict", "--batch-size", "4"))
        assert (summary["imported"], summary["rejected"], summary["written"]) == (9, 0, True)
        assert counts(conn)["people"] == before["people"] + 9
        assert counts(conn)["external_ids"] == before["external_ids"] + 9
        rows[8]["name"] = "Changed"
        write_jsonl(path, rows)
        summary = summary_of(run_import(cli, path, "--strict", "--update"))
        assert (summary["updated"], summary["skipped"]) == (1, 8)
        assert ledger.get_person(ledger.find_person(f"{t}-8@example.org")).name == "Changed"
        assert_consistent(conn, keyring)


# --- output -------------------------------------------------------------------------------


class TestOutput:
    def test_json_summary(self, cli: Cli, tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "o.jsonl", [
            {"email": f"{t}-1@example.org", "name": "A"}, {"email": "bad", "name": "B"}])
        result = run_import(cli, path)
        summary = summary_of(result, code=2)
        assert result.stdout.count("\n") == 1
        assert {"imported", "updated", "skipped", "rejected", "seconds"} <= set(summary)
        assert (summary["imported"], summary["updated"], summary["skipped"],
                summary["rejected"]) == (1, 0, 0, 1)
        assert isinstance(summary["seconds"], float) and summary["seconds"] >= 0
        human = cli("import", str(path))
        assert human.code == 2
        assert "rejected: 1" in human.stdout and "skipped: 1" in human.stdout

    def test_progress_goes_to_a_terminal_stderr_and_never_to_stdout(
            self, cli: Cli, tmp_path: Path) -> None:
        t = tag()
        path = write_jsonl(tmp_path / "p.jsonl", [
            {"email": f"{t}-{i}@example.org", "name": f"N{i}"} for i in range(3000)])
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "peoplelog", "import", str(path), "--json",
             "--batch-size", "100"],
            env=cli.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        chunks: list[bytes] = []

        def drain() -> None:
            with contextlib.suppress(OSError):  # EIO once the child closed the terminal
                while data := os.read(leader, 4096):
                    chunks.append(data)

        reader = threading.Thread(target=drain)
        reader.start()
        out, _ = proc.communicate(timeout=120)
        reader.join(timeout=10)
        os.close(leader)
        assert proc.returncode == 0
        assert json.loads(out)["imported"] == 3000
        assert out.count(b"\n") == 1
        terminal = b"".join(chunks).decode("utf-8", "replace")
        assert "importing" in terminal and "rows" in terminal

    def test_file_problems_fail_fast(self, cli: Cli, tmp_path: Path) -> None:
        result = run_import(cli, tmp_path / "missing.jsonl")
        assert (result.code, result.stdout) == (2, "")
        assert "does not exist" in json.loads(result.stderr)["message"]
        result = run_import(cli, tmp_path)
        assert result.code == 2 and "directory" in result.stderr
        result = cli("import", str(tmp_path / "x.jsonl"), "--format", "xml")
        assert result.code == 2
        result = run_import(cli, write_jsonl(tmp_path / "e.jsonl", []))
        assert summary_of(result)["rows"] == 0

    def test_read_rows_checks_before_the_first_row(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match="does not exist"):
            read_rows(tmp_path / "nope.csv")
        (tmp_path / "bad.csv").write_text("email,colour\n")
        with pytest.raises(InvalidInput, match="unknown or repeated columns"):
            read_rows(tmp_path / "bad.csv")
        with pytest.raises(InvalidInput, match="unknown import format"):
            read_rows(tmp_path / "bad.csv", "xml")


# --- concurrent writers -------------------------------------------------------------------


def _blocked_by(conn: Conn, pid: int) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                       " WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone()
    return bool(row and row[0])


class TestConcurrentWriters:
    @pytest.mark.parametrize("update", [False, True], ids=["plain", "update"])
    def test_an_app_claiming_an_email_mid_batch_makes_the_batch_retry(
            self, database_url: str, keyring: Keyring, ledger: Ledger, conn: Conn,
            tmp_path: Path, update: bool) -> None:
        t = tag()
        emails = [f"{t}-{i}@example.org" for i in range(10)]
        path = write_jsonl(tmp_path / "c.jsonl",
                           [{"email": e, "name": f"Imported {i}"} for i, e in enumerate(emails)])
        app_person = _write.prepare_new_person(
            keyring, email=normalise_email(emails[5]), name="App user", password_hash=None,
            verified_at=None, actor="app", reason=None)
        outcome: list[ImportSummary | BaseException] = []

        def run() -> None:
            database = Database(database_url, pool_size=1)
            try:
                outcome.append(import_people(database, keyring, lambda: read_rows(path),
                                             update=update, batch_size=100))
            except BaseException as exc:  # reported by the assertions below
                outcome.append(exc)
            finally:
                database.close()

        with psycopg.connect(database_url, autocommit=True) as app:
            with app.transaction():  # the app's write: claimed, not yet committed
                _write.insert_new_person(app, app_person)
                worker = threading.Thread(target=run)
                worker.start()
                wait_for(lambda: _blocked_by(conn, app.info.backend_pid), 60,
                         "the import to wait on the app's claim")
            worker.join(timeout=120)
        assert len(outcome) == 1 and isinstance(outcome[0], ImportSummary), outcome
        summary = outcome[0]
        assert summary.imported == 9 and summary.rejected == 0
        assert (summary.updated, summary.skipped) == ((1, 0) if update else (0, 1))
        owner = ledger.find_person(emails[5])
        assert owner == app_person.record.person_id
        assert ledger.get_person(owner).name == ("Imported 5" if update else "App user")
        for email in emails:
            assert versions(conn, ledger.find_person(email)) in (1, 2)
        assert_no_duplicates(conn)
        assert_consistent(conn, keyring)

    def test_two_imports_of_one_file_at_once_write_each_row_once(
            self, fresh: tuple[str, Cli], keyring: Keyring, tmp_path: Path) -> None:
        url, cli = fresh
        rows = 3000
        path = _big_file(tmp_path / "twice.jsonl", rows, tag())
        command = [sys.executable, "-m", "peoplelog", "import", str(path), "--json",
                   "--batch-size", "100"]
        procs = [subprocess.Popen(command, env=cli.env, cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        results = [proc.communicate(timeout=300) for proc in procs]
        for proc, (_out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
        summaries = [json.loads(out) for out, _ in results]
        assert sum(s["imported"] for s in summaries) == rows
        assert all(s["imported"] + s["skipped"] == rows for s in summaries)
        with psycopg.connect(url, autocommit=True) as conn:
            assert counts(conn) == dict.fromkeys(TABLES, rows)
            assert_no_duplicates(conn)
            assert_consistent(conn, keyring)

    def test_imports_claiming_the_same_emails_in_opposite_orders_do_not_crash(
            self, fresh: tuple[str, Cli], keyring: Keyring, tmp_path: Path) -> None:
        # Two processes claim the same emails, each in its own order, in one batch. A lock
        # held here stops both just before they claim (COPY into email_lookup), so they
        # claim at the same time and wait on each other: PostgreSQL breaks the deadlock,
        # and the loser plans its batch again and finds every email taken.
        url, cli = fresh
        rows, prefix = 4000, tag()
        forward = _big_file(tmp_path / "forward.jsonl", rows, prefix)
        lines = forward.read_text().splitlines(keepends=True)
        backward = tmp_path / "backward.jsonl"
        backward.write_text("".join(reversed(lines)))
        with psycopg.connect(url, autocommit=True) as gate, \
                psycopg.connect(url, autocommit=True) as watcher:
            with gate.transaction():
                gate.execute("LOCK TABLE email_lookup IN SHARE MODE")
                procs = [subprocess.Popen(
                    [sys.executable, "-m", "peoplelog", "import", str(path), "--json",
                     "--batch-size", str(rows)], env=cli.env, cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for path in (forward, backward)]
                try:
                    wait_for(lambda: watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE %s = ANY(pg_blocking_pids(pid))",
                        (gate.info.backend_pid,)).fetchone() == (2,), 120,
                        "both imports to reach their claims")
                except AssertionError:
                    for proc in procs:
                        proc.kill()
                    raise
            results = [proc.communicate(timeout=300) for proc in procs]
        for proc, (_out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
        summaries = [json.loads(out) for out, _ in results]
        assert sorted((s["imported"], s["skipped"]) for s in summaries) == [
            (0, rows), (rows, 0)]
        with psycopg.connect(url, autocommit=True) as conn:
            assert counts(conn) == dict.fromkeys(TABLES, rows)
            assert_no_duplicates(conn)
            assert_consistent(conn, keyring)
