"""The CLI as a new user meets it: ``--json`` wherever the help shows it, usage errors that
name the valid choices and the unknown option (never a value typed), input refused before
any database is started, a true actor by default, one verdict for both verify paths."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT, Cli, CliResult, create_database, drop_database

from peoplelog.fields import Keyring

SECRET = "hunter2-Sekret-value"


def run_bare(*args: str, home: Path, stdin: str = "") -> CliResult:
    """``python -m peoplelog`` with nothing configured but an empty home: any database
    would be the embedded one, started under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEOPLELOG_", "PG"))}
    env.pop("DATABASE_URL", None)
    env["PEOPLELOG_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "peoplelog", *args], input=stdin.encode(),
                          capture_output=True, env=env, cwd=ROOT, timeout=120, check=False)
    return CliResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def error_of(result: CliResult) -> dict[str, str]:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    error: dict[str, str] = json.loads(lines[0])
    return error


@pytest.mark.parametrize("position", ["before", "after-group", "after-command"])
def test_json_works_in_every_position_the_help_shows(cli: Cli, position: str) -> None:
    made = cli("person", "create", "--email", f"j-{uuid.uuid4().hex[:8]}@example.org",
               "--name", "Jay", "--json")
    pid = made.json["person_id"]
    args = {"before": ["--json", "person", "show", pid],
            "after-group": ["person", "--json", "show", pid],
            "after-command": ["person", "show", pid, "--json"]}[position]
    shown = cli(*args)
    assert shown.code == 0, shown.stderr
    assert shown.json["person_id"] == pid
    missing = cli(*[a if a != pid else str(uuid.uuid4()) for a in args])
    assert missing.code == 3
    assert error_of(missing)["error"] == "person_not_found"


@pytest.mark.parametrize("args", [["--json", "keys", "public"], ["keys", "--json", "public"],
                                  ["keys", "public", "--json"]])
def test_every_group_takes_json(cli: Cli, args: list[str]) -> None:
    done = cli(*args)
    assert done.code == 0, done.stderr
    assert set(done.json) == {"name", "verifier_key"}


def test_projections_group_takes_json(cli: Cli) -> None:
    done = cli("projections", "--json", "check")
    assert done.code == 0, done.stderr
    assert done.json["ok"] is True


def test_an_unknown_command_names_the_valid_ones_not_what_was_typed(tmp_path: Path) -> None:
    done = run_bare("person", SECRET, home=tmp_path)
    assert done.code == 2
    assert SECRET not in done.stderr
    for name in ("create", "update", "show", "history", "erase", "find", "diff"):
        assert name in done.stderr
    assert "see peoplelog person --help" in done.stderr


def test_an_unknown_option_is_named_its_value_never(tmp_path: Path) -> None:
    pid = str(uuid.uuid4())
    for args in (["person", "show", pid, "--colour", SECRET],
                 ["person", "show", pid, f"--colour={SECRET}"]):
        done = run_bare(*args, home=tmp_path)
        assert done.code == 2
        assert "--colour" in done.stderr and SECRET not in done.stderr
        assert "see peoplelog person show --help" in done.stderr
    json_done = run_bare("person", "show", pid, "--colour", SECRET, "--json", home=tmp_path)
    error = error_of(json_done)
    assert error["error"] == "usage" and "--colour" in error["message"]
    assert SECRET not in json_done.stderr


@pytest.mark.parametrize("flag", [["--password", SECRET], [f"--password={SECRET}"],
                                  ["--pass", SECRET], ["--passwd", SECRET]])
def test_a_password_argument_points_to_password_stdin(tmp_path: Path, flag: list[str]) -> None:
    done = run_bare("person", "create", "--email", "p@example.org", "--name", "P", *flag,
                    home=tmp_path)
    assert done.code == 2
    assert "--password-stdin" in done.stderr
    assert "peoplelog person create" in done.stderr
    assert SECRET not in done.stderr and SECRET not in done.stdout
    assert not (tmp_path / "pgdata").exists()


@pytest.mark.parametrize("args", [
    ["person", "show", "not-a-uuid"],
    ["person", "show", str(uuid.uuid4()), "--version", "-1"],
    ["person", "show", str(uuid.uuid4()), "--as-of", "2024-05-01T12:00:00"],
    ["person", "update", "not-a-uuid", "--name", "X"],
    ["person", "update", str(uuid.uuid4())],
    ["person", "create", "--email", "not-an-email", "--name", "X"],
    ["person", "create", "--email", "ok@example.org", "--name", "   "],
    ["person", "create", "--email", "ok@example.org", "--name", "x" * 300],
    ["person", "create", "--email", "ok@example.org", "--name", "X", "--actor", " "],
    ["person", "erase", "xyz"],
    ["person", "find", "--email", "nope"],
    ["person", "diff", "xyz", "0", "1"],
    ["person", "history", "xyz"],
    ["changes", "--since", "yesterday"],
    ["verify", "--person", "xyz"],
    ["prove", "xyz", "--version", "0"],
    ["import", "/nonexistent/people.jsonl"],
])
def test_input_checkable_without_a_database_is_refused_before_one_starts(
        tmp_path: Path, args: list[str]) -> None:
    done = run_bare(*args, "--json", home=tmp_path)
    assert done.code == 2, (done.stdout, done.stderr)
    assert error_of(done)["error"] == "invalid_input"
    assert not (tmp_path / "pgdata").exists(), "the embedded server was started"


def test_help_and_usage_errors_import_only_the_parser() -> None:
    code = ("import sys\nfrom peoplelog.cli import main\n"
            "for argv in (['--help'], ['person', 'create', '--help'], ['nope'], "
            "['person', 'show', 'not-a-uuid']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'cryptography', 'argon2', "
            "'pgserver', 'tqdm', 'pydantic') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_write_without_actor_records_the_os_user(cli: Cli) -> None:
    made = cli("person", "create", "--email", f"a-{uuid.uuid4().hex[:8]}@example.org",
               "--name", "Anon", "--json")
    pid = made.json["person_id"]
    assert cli("person", "update", pid, "--name", "Anon B", "--json").code == 0
    assert cli("person", "erase", pid, "--json").code == 0
    history = cli("person", "history", pid, "--json").json
    assert {entry["actor"] for entry in history} == {f"cli:{getpass.getuser()}"}
    explicit = cli("person", "create", "--email", f"b-{uuid.uuid4().hex[:8]}@example.org",
                   "--name", "Named", "--actor", "signup", "--json")
    assert cli("person", "history", explicit.json["person_id"],
               "--json").json[0]["actor"] == "signup"


def test_verify_from_an_export_reports_as_verify_does(cli: Cli, tmp_path: Path) -> None:
    cli("person", "create", "--email", f"v-{uuid.uuid4().hex[:8]}@example.org", "--name", "V")
    held = tmp_path / "held.txt"
    assert cli("checkpoint", "--out", str(held)).code == 0
    export = tmp_path / "ledger.jsonl"
    assert cli("export", "--out", str(export)).code == 0
    key = cli("keys", "public").stdout.strip()
    database = cli("verify", "--checkpoint", str(held), "--key", key, "--workers", "1")
    exported = cli("verify", "--from-export", str(export), "--checkpoint", str(held),
                   "--key", key)
    assert database.code == exported.code == 0, (database.stderr, exported.stderr)
    assert database.stdout.splitlines()[0] == exported.stdout.splitlines()[0]
    assert database.stdout.splitlines()[0].startswith("OK: ")
    for text in (database.stdout, exported.stdout):
        assert "consistent with the held checkpoint" in text
        assert "checkpoint to keep:" in text
    as_json = [cli("verify", "--checkpoint", str(held), "--key", key, "--json").json,
               cli("verify", "--from-export", str(export), "--checkpoint", str(held), "--key",
                   key, "--json").json]
    assert set(as_json[0]) == set(as_json[1])
    assert set(as_json[0]["log"]) == set(as_json[1]["log"])
    for report in as_json:
        assert report["log"]["held_size"] is not None
        assert report["log"]["consistent_with_held"] is True
        assert report["log"]["key_source"] == "given"
    assert as_json[0]["checked"] == as_json[1]["checked"]


def test_counts_are_worded_for_one_and_many(cli: Cli, database_url: str) -> None:
    one = cli("verify", "--person", cli("person", "create", "--email",
                                        f"c-{uuid.uuid4().hex[:8]}@example.org", "--name",
                                        "C", "--json").json["person_id"])
    assert one.code == 0, one.stderr
    assert one.stdout.startswith("OK: 1 version of 1 person checked, 0 findings")


def test_an_older_keyring_gets_a_writer_key(cli: Cli, server_url: str,
                                             tmp_path: Path) -> None:
    """A keyring from before writer attestation: writes say how to add the key; after
    `keys add-writer-key` they work, and the key is kept on a second run."""
    document = json.loads(Keyring.generate().to_json())
    document["keys"] = [k for k in document["keys"] if k["purpose"] != "writer"]
    document["active"].pop("writer")
    path = tmp_path / "old-keyring.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    url = create_database(server_url, "oldkeys")
    env = {"PEOPLELOG_KEYRING": str(path), "PEOPLELOG_DATABASE_URL": url}
    try:
        assert cli("init", "--json", env=env).code == 0
        refused = cli("person", "create", "--email", f"k-{uuid.uuid4().hex[:8]}@example.org",
                      "--name", "K", "--json", env=env)
        assert refused.code == 2 and "add-writer-key" in error_of(refused)["message"]
        added = cli("keys", "add-writer-key", "--json", env=env)
        assert added.code == 0 and added.json["added"] is True, added.stderr
        again = cli("keys", "add-writer-key", "--json", env=env)
        assert again.json == {"key_id": added.json["key_id"], "added": False}
        done = cli("person", "create", "--email", f"k-{uuid.uuid4().hex[:8]}@example.org",
                   "--name", "K", "--json", env=env)
        assert done.code == 0, done.stderr
    finally:
        drop_database(server_url, url)


def test_an_export_that_fails_leaves_no_file_behind(cli: Cli, server_url: str,
                                                    tmp_path: Path) -> None:
    url = create_database(server_url, "badexport")
    env = {"PEOPLELOG_DATABASE_URL": url}
    try:
        assert cli("init", "--json", env=env).code == 0
        assert cli("person", "create", "--email", "x@example.org", "--name", "X",
                   env=env).code == 0
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM log_meta")  # the export's header cannot be written
        out = tmp_path / "ledger.jsonl"
        done = cli("export", "--out", str(out), "--json", env=env)
        assert done.code != 0
        assert list(tmp_path.iterdir()) == []
    finally:
        drop_database(server_url, url)
