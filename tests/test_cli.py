"""The ``peoplelog`` command line, end to end: every command through ``python -m ledger``
(and the ``peoplelog`` console script), with ``--json`` and with human output, against a
real PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT, Cli, CliResult, create_database, drop_database
from psycopg import sql

from peoplelog.fields import Keyring
from peoplelog.ledger import Ledger
from peoplelog.schema import migrations

CID_TEXT = re.compile(r"^bafkrei[a-z2-7]{52}$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PASSWORD = "correct horse battery staple"

COMMANDS = [
    ("init",),
    ("cid",),
    ("person", "create"),
    ("person", "update"),
    ("person", "show"),
    ("person", "history"),
    ("person", "erase"),
    ("person", "find"),
    ("verify",),
]


# --- helpers ------------------------------------------------------------------------------


def independent_cid(data: bytes) -> str:
    """CIDv1, raw (0x55), sha2-256, base32 lower-case: written here, not the project's."""
    multihash = bytes([0x12, 0x20]) + hashlib.sha256(data).digest()
    binary = bytes([0x01, 0x55]) + multihash
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


def unique_email(tag: str, domain: str = "example.org") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@{domain}"


def human_fields(text: str) -> dict[str, str]:
    """The top-level ``key: value`` lines of the human output."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "-")) and ": " in line:
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def ok_json(result: CliResult) -> Any:
    assert result.code == 0, (result.code, result.stderr)
    assert result.stderr == "", result.stderr
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    return result.json


def ok_human(result: CliResult) -> str:
    assert result.code == 0, (result.code, result.stderr)
    assert result.stderr == "", result.stderr
    assert result.stdout.strip(), "human output is empty"
    with pytest.raises(ValueError):
        json.loads(result.stdout)
    return result.stdout


def one_line_error(result: CliResult, code: int, *, as_json: bool) -> dict[str, str] | str:
    """The error contract: exit code, nothing on stdout, exactly one line on stderr."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.rstrip("\n")
    assert "Traceback" not in line
    if as_json:
        document = json.loads(line)
        assert set(document) >= {"error", "message"}, document
        assert document["error"] and document["message"]
        return dict(document)
    assert line.startswith("peoplelog: error: "), line
    assert len(line) > len("peoplelog: error: ")
    return line


def create(cli: Cli, email: str, name: str = "Test Person", *extra: str,
           stdin: str | bytes | None = None) -> str:
    data = ok_json(cli("person", "create", "--email", email, "--name", name, *extra, "--json",
                       stdin=stdin))
    return str(data["person_id"])


def count_rows(url: str, person_id: str | None = None) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if person_id is None:
            row = conn.execute("SELECT count(*) FROM people").fetchone()
        else:
            row = conn.execute(
                "SELECT count(*) FROM people WHERE person_id = %s", (person_id,)
            ).fetchone()
    assert row is not None
    return int(row[0])


def base_env(cli_env: dict[str, str], **changes: str | None) -> dict[str, str]:
    """A copy of the module's CLI environment with some variables set or removed."""
    env = dict(cli_env)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(argv: list[str | bytes], env: dict[str, str], stdin: bytes | None = None,
        timeout: float = 120) -> CliResult:
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=timeout,
                          check=False, cwd=ROOT)
    return CliResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                     proc.stderr.decode("utf-8", "replace"))


@pytest.fixture()
def fresh_url(server_url: str) -> Iterator[str]:
    """An empty database (no migrations): for init and for damage that must not leak."""
    url = create_database(server_url, "cli_fresh")
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def person(cli: Cli) -> dict[str, str]:
    """A person with versions 0 (created) and 1 (name changed), used read-only."""
    email = unique_email("Reader", "Example.ORG")
    pid = create(cli, email, "Reader One", "--actor", "signup", "--reason", "registered")
    ok_json(cli("person", "update", pid, "--name", "Reader Two", "--actor", "support",
                "--reason", "typo in name", "--json"))
    return {"person_id": pid, "email": email}


# --- create -------------------------------------------------------------------------------


def test_create_json_reads_password_from_first_stdin_line(cli: Cli, ledger: Ledger) -> None:
    email = unique_email("pw")
    result = cli("person", "create", "--email", email, "--name", "Pass Word",
                 "--password-stdin", "--json", stdin=f"{PASSWORD}\nsecond line ignored\n")
    data = ok_json(result)
    assert set(data) >= {"person_id", "version", "cid"}
    assert UUID_TEXT.match(data["person_id"])
    assert data["version"] == 0
    assert CID_TEXT.match(data["cid"])
    assert PASSWORD not in result.stdout + result.stderr
    pid = uuid.UUID(data["person_id"])
    assert ledger.authenticate(email, PASSWORD) == pid
    assert ledger.authenticate(email, "second line ignored") is None
    assert ledger.authenticate(email, f"{PASSWORD}\nsecond line ignored") is None
    assert ledger.get_person(pid).has_password


def test_create_human_output(cli: Cli, ledger: Ledger) -> None:
    email = unique_email("human")
    out = ok_human(cli("person", "create", "--email", email, "--name", "Hu Man"))
    fields = human_fields(out)
    assert UUID_TEXT.match(fields["person_id"])
    assert fields["version"] == "0"
    assert CID_TEXT.match(fields["cid"])
    view = ledger.get_person(fields["person_id"])
    assert (view.email, view.name, view.has_password) == (email, "Hu Man", False)


def test_create_without_password_stdin_does_not_read_stdin(cli: Cli, ledger: Ledger) -> None:
    email = unique_email("nopw")
    pid = create(cli, email, "No Pass", stdin=f"{PASSWORD}\n")
    assert not ledger.get_person(pid).has_password
    assert ledger.authenticate(email, PASSWORD) is None


def test_password_is_never_taken_from_argv(cli: Cli, database_url: str) -> None:
    before = count_rows(database_url)
    result = cli("person", "create", "--email", unique_email("argv"), "--name", "Argv",
                 "--password", PASSWORD)
    assert result.code == 2
    assert result.stdout == ""
    assert count_rows(database_url) == before
    help_text = cli("person", "create", "--help").stdout
    assert "--password-stdin" in help_text
    assert re.search(r"--password(?!-stdin)", help_text) is None


@pytest.mark.parametrize(
    "stdin",
    [b"", b"\n", b"short\n", b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\n", b"passw\x00rd-with-nul\n"],
    ids=["empty", "blank-line", "too-short", "invalid-utf8", "nul"],
)
def test_create_bad_password_on_stdin(cli: Cli, database_url: str, stdin: bytes) -> None:
    before = count_rows(database_url)
    email = unique_email("badpw")
    result = cli("person", "create", "--email", email, "--name", "Bad Pw", "--password-stdin",
                 "--json", stdin=stdin)
    error = one_line_error(result, 2, as_json=True)
    assert isinstance(error, dict)
    assert error["error"] == "invalid_input"
    assert count_rows(database_url) == before
    assert cli("person", "find", "--email", email).code == 3


def test_create_same_email_twice_is_a_conflict(cli: Cli, database_url: str) -> None:
    email = unique_email("twice")
    create(cli, email, "First")
    before = count_rows(database_url)
    error = one_line_error(
        cli("person", "create", "--email", email.upper(), "--name", "Second", "--json"),
        4, as_json=True,
    )
    assert isinstance(error, dict)
    assert error["error"] == "email_taken"
    assert email not in error["message"]
    assert count_rows(database_url) == before


# --- update -------------------------------------------------------------------------------


def test_update_fields_json(cli: Cli, ledger: Ledger) -> None:
    pid = create(cli, unique_email("upd"), "Before")
    new_email = unique_email("moved")
    data = ok_json(cli("person", "update", pid, "--email", new_email, "--name", "After",
                       "--actor", "admin-7", "--reason", "user request", "--json"))
    assert data["person_id"] == pid
    assert data["version"] == 1
    assert CID_TEXT.match(data["cid"])
    view = ledger.get_person(pid)
    assert (view.version, view.cid, view.email, view.name) == (1, data["cid"], new_email, "After")
    assert ok_json(cli("person", "find", "--email", new_email, "--json")) == {"person_id": pid}
    history = ok_json(cli("person", "history", pid, "--json"))
    assert history[-1]["actor"] == "admin-7"
    assert history[-1]["reason"] == "user request"


def test_update_verified(cli: Cli) -> None:
    pid = create(cli, unique_email("verify"), "Veri Fied")
    assert ok_json(cli("person", "show", pid, "--json"))["verified_at"] is None
    data = ok_json(cli("person", "update", pid, "--verified", "--json"))
    assert data["version"] == 1
    shown = ok_json(cli("person", "show", pid, "--json"))
    assert shown["verified_at"] is not None
    assert shown["name"] == "Veri Fied"
    history = ok_json(cli("person", "history", pid, "--json"))
    assert [h["op"] for h in history] == ["created", "email_verified"]


def test_update_password_from_stdin(cli: Cli, ledger: Ledger) -> None:
    email = unique_email("newpw")
    create(cli, email, "Pw Change", "--password-stdin", stdin="old-password-1\n")
    pid = ok_json(cli("person", "find", "--email", email, "--json"))["person_id"]
    ok_json(cli("person", "update", pid, "--password-stdin", "--json",
                stdin="new-password-2\nnot-this-one\n"))
    assert ledger.authenticate(email, "new-password-2") == uuid.UUID(pid)
    assert ledger.authenticate(email, "old-password-1") is None
    assert ok_json(cli("person", "history", pid, "--json"))[-1]["op"] == "password_changed"


def test_update_human_output(cli: Cli) -> None:
    pid = create(cli, unique_email("updh"), "Plain")
    fields = human_fields(ok_human(cli("person", "update", pid, "--name", "Plainer")))
    assert fields["person_id"] == pid
    assert fields["version"] == "1"
    assert CID_TEXT.match(fields["cid"])


def test_update_expect_version(cli: Cli, database_url: str) -> None:
    pid = create(cli, unique_email("expect"), "V0")
    first = ok_json(cli("person", "update", pid, "--name", "V1", "--expect-version", "0",
                        "--json"))
    assert first["version"] == 1
    before = count_rows(database_url, pid)
    for as_json in (True, False):
        args = ["person", "update", pid, "--name", "Stale", "--expect-version", "0"]
        result = cli(*args, *(["--json"] if as_json else []))
        error = one_line_error(result, 4, as_json=as_json)
        if isinstance(error, dict):
            assert error["error"] == "version_conflict"
    assert count_rows(database_url, pid) == before
    shown = ok_json(cli("person", "show", pid, "--json"))
    assert (shown["version"], shown["name"], shown["cid"]) == (1, "V1", first["cid"])
    later = ok_json(cli("person", "update", pid, "--name", "V2", "--expect-version", "1",
                        "--json"))
    assert later["version"] == 2


def test_update_nothing_given_is_usage_error(cli: Cli, database_url: str) -> None:
    pid = create(cli, unique_email("empty"), "Empty Update")
    before = count_rows(database_url, pid)
    one_line_error(cli("person", "update", pid, "--json"), 2, as_json=True)
    one_line_error(cli("person", "update", pid, "--name", "  "), 2, as_json=False)
    assert count_rows(database_url, pid) == before


# --- show ---------------------------------------------------------------------------------


def test_show_json(cli: Cli, person: dict[str, str]) -> None:
    pid = person["person_id"]
    data = ok_json(cli("person", "show", pid, "--json"))
    assert set(data) >= {"person_id", "version", "cid", "prev", "email", "name",
                         "verified_at", "recorded_at"}
    assert data["person_id"] == pid
    assert data["version"] == 1
    assert data["name"] == "Reader Two"
    local, _, domain = person["email"].partition("@")
    assert data["email"] == f"{local}@{domain.lower()}"
    assert data["verified_at"] is None
    assert CID_TEXT.match(data["cid"]) and CID_TEXT.match(data["prev"])
    history = ok_json(cli("person", "history", pid, "--json"))
    assert data["cid"] == history[1]["cid"]
    assert data["prev"] == history[0]["cid"]
    assert data["recorded_at"] == history[1]["recorded_at"]


def test_show_version(cli: Cli, person: dict[str, str]) -> None:
    pid = person["person_id"]
    v0 = ok_json(cli("person", "show", pid, "--version", "0", "--json"))
    assert (v0["version"], v0["prev"], v0["name"]) == (0, None, "Reader One")
    assert v0["email"].lower() == person["email"].lower()
    v1 = ok_json(cli("person", "show", pid, "--version", "1", "--json"))
    assert v1 == ok_json(cli("person", "show", pid, "--json"))
    error = one_line_error(cli("person", "show", pid, "--version", "9", "--json"), 3,
                           as_json=True)
    assert isinstance(error, dict)
    assert error["error"] == "version_not_found"


def test_show_human(cli: Cli, person: dict[str, str]) -> None:
    pid = person["person_id"]
    fields = human_fields(ok_human(cli("person", "show", pid)))
    assert fields["person_id"] == pid
    assert fields["version"] == "1"
    assert fields["name"] == "Reader Two"
    assert fields["email"].lower() == person["email"].lower()
    assert fields["verified_at"] == "-"
    assert CID_TEXT.match(fields["cid"]) and CID_TEXT.match(fields["prev"])
    assert fields["recorded_at"]
    old = human_fields(ok_human(cli("person", "show", pid, "--version", "0")))
    assert (old["version"], old["prev"], old["name"]) == ("0", "-", "Reader One")


# --- history ------------------------------------------------------------------------------


def test_history_json(cli: Cli, person: dict[str, str]) -> None:
    history = ok_json(cli("person", "history", person["person_id"], "--json"))
    assert isinstance(history, list) and len(history) == 2
    for entry in history:
        assert set(entry) >= {"version", "cid", "prev", "op", "recorded_at", "actor", "reason"}
        assert CID_TEXT.match(entry["cid"])
    assert [e["version"] for e in history] == [0, 1]
    assert [e["op"] for e in history] == ["created", "updated"]
    assert history[0]["prev"] is None
    assert history[1]["prev"] == history[0]["cid"]
    assert [(e["actor"], e["reason"]) for e in history] == [
        ("signup", "registered"), ("support", "typo in name")]
    assert history[0]["recorded_at"] <= history[1]["recorded_at"]
    # without keys the history shows no personal data (with keys it shows values)
    env = {"PEOPLELOG_KEYRING": "/nonexistent/keyring.json"}
    text = json.dumps(ok_json(cli("person", "history", person["person_id"], "--json", env=env)))
    assert "Reader" not in text
    assert person["email"].split("@")[0] not in text


def test_history_human(cli: Cli, person: dict[str, str]) -> None:
    out = ok_human(cli("person", "history", person["person_id"]))
    history = ok_json(cli("person", "history", person["person_id"], "--json"))
    for entry in history:
        assert entry["cid"] in out
    assert out.index(history[0]["cid"]) < out.index(history[1]["cid"])
    assert "op: created" in out and "op: updated" in out
    assert "actor: support" in out and "reason: typo in name" in out


def test_history_needs_no_keyring(cli: Cli, person: dict[str, str], tmp_path: Path) -> None:
    env = {"PEOPLELOG_KEYRING": str(tmp_path / "absent.json")}
    history = ok_json(cli("person", "history", person["person_id"], "--json", env=env))
    assert len(history) == 2


# --- find ---------------------------------------------------------------------------------


def test_find_is_case_insensitive_on_the_domain(cli: Cli, person: dict[str, str]) -> None:
    local, _, domain = person["email"].partition("@")
    for variant in (person["email"], f"{local}@{domain.lower()}", f"{local}@{domain.upper()}",
                    f"  {local}@{domain.swapcase()}  "):
        data = ok_json(cli("person", "find", "--email", variant, "--json"))
        assert data == {"person_id": person["person_id"]}
    fields = human_fields(ok_human(cli("person", "find", "--email", person["email"])))
    assert fields == {"person_id": person["person_id"]}


def test_find_none_is_exit_3(cli: Cli) -> None:
    email = unique_email("nobody")
    for as_json in (True, False):
        result = cli("person", "find", "--email", email, *(["--json"] if as_json else []))
        error = one_line_error(result, 3, as_json=as_json)
        assert email not in str(error)


# --- erase --------------------------------------------------------------------------------


def test_erase(cli: Cli, database_url: str) -> None:
    email = unique_email("Erase", "Example.COM")
    pid = create(cli, email, "Erin Erased", "--password-stdin", stdin=f"{PASSWORD}\n")
    ok_json(cli("person", "update", pid, "--name", "Erin E.", "--json"))
    data = ok_json(cli("person", "erase", pid, "--actor", "dpo", "--reason", "art. 17",
                       "--json"))
    assert data["person_id"] == pid
    assert data["version"] == 2
    assert CID_TEXT.match(data["cid"])

    shown = ok_json(cli("person", "show", pid, "--json"))
    assert shown["erased"] is True
    assert shown["version"] == 2
    assert shown["email"] is None and shown["name"] is None
    assert human_fields(ok_human(cli("person", "show", pid)))["erased"] == "yes"
    old = ok_json(cli("person", "show", pid, "--version", "0", "--json"))
    assert old["email"] is None and old["name"] is None

    history = ok_json(cli("person", "history", pid, "--json"))
    assert [e["op"] for e in history] == ["created", "updated", "erased"]
    assert (history[-1]["actor"], history[-1]["reason"]) == ("dpo", "art. 17")
    assert history[-1]["prev"] == history[1]["cid"]

    one_line_error(cli("person", "find", "--email", email, "--json"), 3, as_json=True)
    one_line_error(cli("person", "find", "--email", email.lower()), 3, as_json=False)
    error = one_line_error(cli("person", "update", pid, "--name", "Back", "--json"), 4,
                           as_json=True)
    assert isinstance(error, dict)
    assert error["error"] == "person_erased"

    other = create(cli, email, "Someone Else")
    assert other != pid
    assert ok_json(cli("person", "find", "--email", email, "--json")) == {"person_id": other}

    report = ok_json(cli("verify", "--json"))
    assert report["ok"] is True and report["findings"] == []
    one = ok_json(cli("verify", "--person", pid, "--json"))
    assert (one["ok"], one["checked"]) == (True, 3)

    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = conn.execute("SELECT count(*) FROM person_keys WHERE person_id = %s",
                            (pid,)).fetchone()
        lookups = conn.execute("SELECT count(*) FROM email_lookup WHERE person_id = %s",
                               (pid,)).fetchone()
    assert keys == (0,) and lookups == (0,)


def test_erase_human_and_again(cli: Cli) -> None:
    pid = create(cli, unique_email("erase2"), "Twice Erased")
    fields = human_fields(ok_human(cli("person", "erase", pid)))
    assert (fields["person_id"], fields["version"]) == (pid, "1")
    again = ok_json(cli("person", "erase", pid, "--json"))
    assert again["version"] == 1
    assert len(ok_json(cli("person", "history", pid, "--json"))) == 2


# --- verify -------------------------------------------------------------------------------


def test_verify_clean(cli: Cli, person: dict[str, str], database_url: str) -> None:
    report = ok_json(cli("verify", "--json"))
    assert set(report) >= {"ok", "checked", "findings"}
    assert report["ok"] is True
    assert report["findings"] == []
    assert report["checked"] == count_rows(database_url)
    one = ok_json(cli("verify", "--person", person["person_id"], "--json"))
    assert (one["ok"], one["checked"], one["findings"]) == (True, 2, [])
    verdict = ok_human(cli("verify")).splitlines()
    assert verdict[0].startswith("OK: ")
    assert "0 findings" in verdict[0]


def test_verify_needs_no_keyring(cli: Cli, tmp_path: Path) -> None:
    env = {"PEOPLELOG_KEYRING": str(tmp_path / "absent.json")}
    assert ok_json(cli("verify", "--json", env=env))["ok"] is True


def test_verify_unknown_person_is_exit_3(cli: Cli) -> None:
    one_line_error(cli("verify", "--person", str(uuid.uuid4()), "--json"), 3, as_json=True)


def test_verify_finds_damage(cli_env: dict[str, str], fresh_url: str) -> None:
    damaged_cli = Cli(base_env(cli_env, PEOPLELOG_DATABASE_URL=fresh_url))
    init = ok_json(damaged_cli("init", "--json"))
    assert init["migrations_applied"]
    victim = create(damaged_cli, unique_email("victim"), "Victim Name")
    ok_json(damaged_cli("person", "update", victim, "--name", "Victim Renamed", "--json"))
    bystander = create(damaged_cli, unique_email("bystander"), "Bystander")
    assert ok_json(damaged_cli("verify", "--json"))["ok"] is True

    with psycopg.connect(fresh_url, autocommit=True) as conn:
        # the trigger stops an ordinary UPDATE ...
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("UPDATE people SET actor = 'x' WHERE person_id = %s", (victim,))
        # ... a superuser that disables triggers does not
        conn.execute("SET session_replication_role = replica")
        cur = conn.execute(
            "UPDATE people SET name = set_byte(name, 20, get_byte(name, 20) # 1)"
            " WHERE person_id = %s AND version = 1",
            (victim,),
        )
        assert cur.rowcount == 1

    result = damaged_cli("verify", "--json")
    assert result.code == 1, result.stderr
    assert result.stderr == ""
    report = result.json
    assert report["ok"] is False
    assert report["checked"] == 3
    assert report["findings"]
    mismatches = [f for f in report["findings"] if f["kind"] == "cid_mismatch"]
    assert len(mismatches) == 1
    assert mismatches[0]["person_id"] == victim
    assert mismatches[0]["version"] == 1
    assert all(f["person_id"] == victim for f in report["findings"])

    one = damaged_cli("verify", "--person", victim, "--json")
    assert one.code == 1
    assert [(f["kind"], f["version"]) for f in one.json["findings"]] == [("cid_mismatch", 1)]
    assert ok_json(damaged_cli("verify", "--person", bystander, "--json"))["ok"] is True

    human = damaged_cli("verify")
    assert human.code == 1
    assert human.stdout.startswith("DAMAGED: ")
    assert "cid_mismatch" in human.stdout and victim in human.stdout


# --- cid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"abc\n", b"\x00\xff\xfe binary \x00", "K\u00f6ln".encode()],
    ids=["empty", "hello", "newline", "binary", "utf8"],
)
def test_cid_of_stdin_bytes(cli: Cli, data: bytes) -> None:
    result = cli("cid", stdin=data)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == independent_cid(data) + "\n"


def test_cid_known_vector(cli: Cli) -> None:
    # the CID of zero bytes, as any IPFS tool prints it for raw sha2-256
    empty = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert independent_cid(b"") == empty
    assert cli("cid", stdin=b"").stdout.strip() == empty


def test_cid_json_canonicalises(cli: Cli) -> None:
    canonical = '{"a":2,"b":[1,"\u00e9",null,true,{"x":"y","y":-0.5}],"c":"\\n"}'.encode()
    expected = independent_cid(canonical)
    documents = [
        '{"c": "\\n", "b": [1.0, "\\u00e9", null, true, {"y": -5e-1, "x": "y"}], "a": 2}',
        ' {\n  "b" : [1, "\u00e9", null, true, {"x":"y", "y":-0.50}],\n "a":2.0, "c":"\\n"}\n',
        canonical.decode(),
    ]
    for document in documents:
        result = cli("cid", "--json", stdin=document.encode())
        assert result.code == 0, result.stderr
        assert result.stdout == expected + "\n"
    # without --json the bytes are hashed as they are
    assert cli("cid", stdin=documents[0].encode()).stdout.strip() == independent_cid(
        documents[0].encode())


@pytest.mark.parametrize("data", [b"", b"{not json", b"\xff\xfe"],
                         ids=["empty", "malformed", "invalid-utf8"])
def test_cid_json_rejects_non_json(cli: Cli, data: bytes) -> None:
    one_line_error(cli("cid", "--json", stdin=data), 2, as_json=True)


# --- init ---------------------------------------------------------------------------------


def _init_env(cli_env: dict[str, str], url: str, home: Path) -> dict[str, str]:
    return base_env(cli_env, PEOPLELOG_DATABASE_URL=url, PEOPLELOG_HOME=str(home),
                    PEOPLELOG_KEYRING=None, PEOPLELOG_KEYRING_JSON=None)


def test_init_fresh_home(cli_env: dict[str, str], fresh_url: str, tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    init_cli = Cli(_init_env(cli_env, fresh_url, home))
    shipped = [f"{m.number:03d}_{m.name}" for m in migrations()]
    assert shipped

    first = ok_json(init_cli("init", "--json"))
    assert first["migrations_applied"] == shipped
    assert first["keyring_created"] is True
    keyring_file = home / "keyring.json"
    assert first["keyring"] == str(keyring_file)
    assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600
    content = keyring_file.read_bytes()
    Keyring.load(keyring_file)

    second = ok_json(init_cli("init", "--json"))
    assert second["migrations_applied"] == []
    assert second["keyring_created"] is False
    assert keyring_file.read_bytes() == content
    assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600

    fields = human_fields(ok_human(init_cli("init")))
    assert fields["keyring_created"] == "no"
    assert fields["migrations_applied"] == "-"
    assert keyring_file.read_bytes() == content

    with psycopg.connect(fresh_url, autocommit=True) as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        recorded = conn.execute("SELECT count(*) FROM peoplelog_migrations").fetchone()
    assert tables >= {"people", "people_latest", "email_lookup", "person_keys",
                      "peoplelog_migrations"}
    assert recorded == (len(shipped),)

    # the keyring init made is the one the other commands use
    email = unique_email("after-init")
    pid = create(init_cli, email, "After Init")
    assert ok_json(init_cli("person", "show", pid, "--json"))["name"] == "After Init"
    assert ok_json(init_cli("verify", "--json"))["checked"] == 1
    assert keyring_file.read_bytes() == content


def test_init_keeps_an_existing_keyring(cli_env: dict[str, str], fresh_url: str,
                                        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    existing = home / "keyring.json"
    Keyring.generate().save(existing)
    content = existing.read_bytes()
    data = ok_json(Cli(_init_env(cli_env, fresh_url, home))("init", "--json"))
    assert data["keyring_created"] is False
    assert existing.read_bytes() == content


def test_init_creates_keyring_at_peoplelog_keyring(cli_env: dict[str, str], fresh_url: str,
                                                   tmp_path: Path) -> None:
    home = tmp_path / "home"
    target = tmp_path / "elsewhere" / "keys.json"
    env = _init_env(cli_env, fresh_url, home)
    env["PEOPLELOG_KEYRING"] = str(target)
    data = ok_json(Cli(env)("init", "--json"))
    assert data["keyring_created"] is True
    assert data["keyring"] == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (home / "keyring.json").exists()
    content = target.read_bytes()
    assert ok_json(Cli(env)("init", "--json"))["keyring_created"] is False
    assert target.read_bytes() == content


def test_init_refuses_an_unsafe_keyring(cli_env: dict[str, str], fresh_url: str,
                                        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    existing = home / "keyring.json"
    Keyring.generate().save(existing)
    existing.chmod(0o644)
    content = existing.read_bytes()
    result = Cli(_init_env(cli_env, fresh_url, home))("init")
    line = one_line_error(result, 2, as_json=False)
    assert "chmod 600" in str(line)
    assert existing.read_bytes() == content
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644


def test_init_app_role(cli_env: dict[str, str], server_url: str, tmp_path: Path) -> None:
    url = create_database(server_url, "cli_role")
    role = f"plt_app_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        init_cli = Cli(_init_env(cli_env, url, tmp_path / "home"))
        data = ok_json(init_cli("init", "--app-role", role, "--json"))
        assert data["app_role"] == role
        with psycopg.connect(url, autocommit=True) as conn:
            def can(table: str, privilege: str) -> bool:
                row = conn.execute("SELECT has_table_privilege(%s, %s, %s)",
                                   (role, table, privilege)).fetchone()
                assert row is not None
                return bool(row[0])

            assert can("people", "INSERT") and can("people", "SELECT")
            for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                assert not can("people", privilege), privilege
        # granting again is idempotent
        assert ok_json(init_cli("init", "--app-role", role, "--json"))["migrations_applied"] == []
        missing = init_cli("init", "--app-role", f"{role}_missing", "--json")
        one_line_error(missing, 2, as_json=True)
    finally:
        drop_database(server_url, url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# --- errors -------------------------------------------------------------------------------

_MISSING = "00000000-0000-4000-8000-000000000000"

ERROR_CASES: list[tuple[str, list[str], int, str]] = [
    ("show-unknown", ["person", "show", _MISSING], 3, "person_not_found"),
    ("show-bad-id", ["person", "show", "not-a-uuid"], 2, "invalid_input"),
    ("history-unknown", ["person", "history", _MISSING], 3, "person_not_found"),
    ("update-unknown", ["person", "update", _MISSING, "--name", "X"], 3, "person_not_found"),
    ("erase-unknown", ["person", "erase", _MISSING], 3, "person_not_found"),
    ("find-unknown", ["person", "find", "--email", "nobody@nowhere.example"], 3,
     "person_not_found"),
    ("find-bad-email", ["person", "find", "--email", "not-an-email"], 2, "invalid_input"),
    ("create-bad-email", ["person", "create", "--email", "no-at-sign", "--name", "X"], 2,
     "invalid_input"),
    ("create-empty-name", ["person", "create", "--email", "empty-name@example.org",
                           "--name", "   "], 2, "invalid_input"),
    ("create-long-name", ["person", "create", "--email", "long-name@example.org",
                          "--name", "x" * 257], 2, "invalid_input"),
    ("create-control-chars", ["person", "create", "--email", "ctl@example.org",
                              "--name", "a\x1bb"], 2, "invalid_input"),
    ("show-negative-version", ["person", "show", _MISSING, "--version", "-1"], 2,
     "invalid_input"),
    ("verify-bad-id", ["verify", "--person", "xyz"], 2, "invalid_input"),
]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
@pytest.mark.parametrize(("args", "code", "kind"),
                         [case[1:] for case in ERROR_CASES],
                         ids=[case[0] for case in ERROR_CASES])
def test_errors_are_one_line_on_stderr(cli: Cli, database_url: str, args: list[str],
                                       code: int, kind: str, as_json: bool) -> None:
    before = count_rows(database_url)
    result = cli(*args, *(["--json"] if as_json else []))
    error = one_line_error(result, code, as_json=as_json)
    if isinstance(error, dict):
        assert error["error"] == kind
    assert count_rows(database_url) == before


def test_invalid_utf8_in_argv(cli_env: dict[str, str], database_url: str) -> None:
    before = count_rows(database_url)
    argv: list[str | bytes] = [sys.executable, "-m", "peoplelog", "person", "create", "--email",
                               "bytes@example.org", "--name"]
    for as_json in (True, False):
        result = run([*argv, b"bad-\xff-name", *(["--json"] if as_json else [])], cli_env)
        one_line_error(result, 2, as_json=as_json)
    assert count_rows(database_url) == before


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_keyring_problems(cli: Cli, database_url: str, tmp_path: Path, as_json: bool) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{ not a keyring")
    corrupt.chmod(0o600)
    too_open = tmp_path / "open.json"
    Keyring.generate().save(too_open)
    too_open.chmod(0o644)
    wrong = tmp_path / "wrong.json"
    Keyring.generate().save(wrong)
    before = count_rows(database_url)
    flag = ["--json"] if as_json else []
    for path, expected in ((tmp_path / "missing.json", "keyring"), (corrupt, "keyring"),
                           (too_open, "keyring")):
        result = cli("person", "create", "--email", unique_email("kr"), "--name", "K", *flag,
                     env={"PEOPLELOG_KEYRING": str(path)})
        error = one_line_error(result, 2, as_json=as_json)
        assert str(path) in str(error)
        if isinstance(error, dict):
            assert error["error"] == expected
    result = cli("person", "create", "--email", unique_email("kr"), "--name", "K", *flag,
                 env={"PEOPLELOG_KEYRING_JSON": "[]"})
    one_line_error(result, 2, as_json=as_json)
    assert count_rows(database_url) == before


def test_wrong_keyring_cannot_read(cli: Cli, person: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    Keyring.generate().save(wrong)
    env = {"PEOPLELOG_KEYRING": str(wrong)}
    error = one_line_error(cli("person", "show", person["person_id"], "--json", env=env), 2,
                           as_json=True)
    assert isinstance(error, dict)
    assert error["error"] == "keyring"
    assert "does not match this database" in error["message"]
    # lookups are refused too, rather than silently finding nothing
    assert cli("person", "find", "--email", person["email"], env=env).code == 2


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_unreachable_database(cli: Cli, as_json: bool) -> None:
    env = {"PEOPLELOG_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    flag = ["--json"] if as_json else []
    for args in (["verify"], ["init"], ["person", "show", _MISSING]):
        result = cli(*args, *flag, env=env, timeout=60)
        error = one_line_error(result, 2, as_json=as_json)
        assert "127.0.0.1:9" in str(error)
        if isinstance(error, dict):
            assert error["error"] == "database_unavailable"


def test_usage_errors_exit_2(cli: Cli) -> None:
    for args in ([], ["person"], ["bogus"], ["person", "show"],
                 ["person", "show", _MISSING, "--version", "x"], ["verify", "--nope"]):
        result = cli(*args)
        assert result.code == 2, (args, result)
        assert result.stdout == ""
        assert "error" in result.stderr.strip().splitlines()[-1]


# --- help, entry points ------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_help_shows_an_example(cli: Cli, command: tuple[str, ...]) -> None:
    env = {"PEOPLELOG_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    result = cli(*command, "--help", env=env)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert "--json" in result.stdout
    assert "example" in result.stdout.lower()
    example = result.stdout.lower().split("example", 1)[1]
    assert f"peoplelog {' '.join(command)}" in example


def test_module_help(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0, result.stderr
    for word in ("init", "cid", "person", "verify", "exit codes", "PEOPLELOG_DATABASE_URL"):
        assert word in result.stdout, word
    person_help = cli("person", "--help")
    assert person_help.code == 0
    for word in ("create", "update", "show", "history", "erase", "find"):
        assert word in person_help.stdout


def test_console_script(cli_env: dict[str, str], person: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "peoplelog"
    assert script.is_file(), script
    assert os.access(script, os.X_OK)
    assert run([str(script), "--help"], cli_env).code == 0
    cid = run([str(script), "cid"], cli_env, stdin=b"console")
    assert (cid.code, cid.stdout) == (0, independent_cid(b"console") + "\n")
    found = run([str(script), "person", "find", "--email", person["email"], "--json"], cli_env)
    assert found.code == 0, found.stderr
    assert found.json == {"person_id": person["person_id"]}
    assert run([str(script), "verify", "--json"], cli_env).json["ok"] is True


# --- the embedded default -----------------------------------------------------------------


def test_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PEOPLELOG_", "PG")) and k != "DATABASE_URL"}
    home = tmp_path / "embedded-home"
    env["PEOPLELOG_HOME"] = str(home)
    embedded = Cli(env)
    init = ok_json(embedded("init", "--json", timeout=180))
    assert init["keyring_created"] is True
    assert init["migrations_applied"]
    assert (home / "pgdata").is_dir()
    assert stat.S_IMODE((home / "keyring.json").stat().st_mode) == 0o600
    email = unique_email("embedded")
    pid = create(embedded, email, "Em Bedded", "--password-stdin", stdin=f"{PASSWORD}\n")
    shown = ok_json(embedded("person", "show", pid, "--json"))
    assert (shown["email"], shown["name"]) == (email, "Em Bedded")
    assert ok_json(embedded("person", "find", "--email", email, "--json")) == {"person_id": pid}
    report = ok_json(embedded("verify", "--json"))
    assert (report["ok"], report["checked"]) == (True, 1)
    # nothing is left running once the commands have exited
    assert not (home / "pgdata" / "postmaster.pid").exists()
