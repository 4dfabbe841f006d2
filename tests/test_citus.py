"""The product contract on a real Citus cluster (PEOPLELOG_TEST_CITUS_URL: a coordinator).

A fresh database is made on every node; ``peoplelog init`` distributes the tables by its
plan and grants a least-privilege application role, and everything below runs as that
role (the owner only signs checkpoints and tampers on purpose): people written, changed,
raced and erased, imports racing each other, checkpoints and verification against a held
one, the projections with the keyring, the export, and the accounts flows. Skipped, with
the reason, when no cluster is given (docs/SCALING.md tells how to make one).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from citus_support import create_cluster_database, drop_cluster_database, skip_reason
from conftest import ROOT, Cli
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from smtp_inbox import Inbox, smtp_server

from peoplelog.accounts import Accounts, AccountSettings, Client
from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger, check_keyring, init_store
from peoplelog.ledger import Settings as LedgerSettings
from peoplelog.schema import DISTRIBUTION_PLAN, InvalidToken, LoginFailed, PersonNotFound

_SKIP = skip_reason()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another horse battery staple"
_SHARD_NAME = re.compile(r"[a-z_]+_[0-9]{4,}")


@pytest.fixture(scope="module")
def owner_url(keyring_file: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[str]:
    """A fresh database on the cluster, initialised by ``init_store`` (as ``peoplelog
    init`` does) with an application role."""
    url = create_cluster_database("contract")
    tag = uuid.uuid4().hex[:8]
    roles = {"app": f"plc_app_{tag}", "auditor": f"plc_audit_{tag}"}
    password = secrets.token_hex(16)
    with psycopg.connect(url, autocommit=True) as conn:
        for role in roles.values():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
    settings = LedgerSettings(database_url=url, keyring_path=keyring_file,
                              home=tmp_path_factory.mktemp("home"))
    done = init_store(settings, app_role=roles["app"], auditor_role=roles["auditor"])
    assert sorted(done.distributed) == sorted(
        f"{p.table}: {'reference table' if p.column is None else 'distributed by ' + p.column}"
        for p in DISTRIBUTION_PLAN)
    _ROLE_URLS[url] = {kind: make_conninfo(url, user=role, password=password)
                       for kind, role in roles.items()}
    yield url
    drop_cluster_database(url)
    with psycopg.connect(make_conninfo(url, dbname=str(
            conninfo_to_dict(_citus_url())["dbname"])), autocommit=True) as conn:
        for role in roles.values():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


_ROLE_URLS: dict[str, dict[str, str]] = {}


def _citus_url() -> str:
    from citus_support import CITUS_URL  # noqa: PLC0415

    return CITUS_URL


@pytest.fixture(scope="module")
def database_url(owner_url: str) -> str:
    """What the conftest fixtures (``ledger``, ``cli``) connect with: the app role."""
    return _ROLE_URLS[owner_url]["app"]


@pytest.fixture(scope="module")
def owner(owner_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with Accounts(Ledger(Database(database_url, pool_size=4), keyring),
                  AccountSettings()) as opened:
        yield opened


def _email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.org"


def _as_owner(cli: Cli, owner_url: str, *args: str) -> Any:
    result = cli(*args, "--json", env={"PEOPLELOG_DATABASE_URL": owner_url})
    assert result.code == 0, result.stderr
    return result.json


# --- the cluster itself ----------------------------------------------------------------------


def test_init_places_every_table_by_the_plan_and_again_changes_nothing(
        owner: psycopg.Connection[Any], cli: Cli, owner_url: str) -> None:
    placed = {str(t): (m, c) for t, m, c in owner.execute(
        "SELECT logicalrelid::regclass::text, partmethod,"
        " column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition")}
    for placement in DISTRIBUTION_PLAN:
        method, column = placed[placement.table]
        if placement.column is None:
            assert method == "n", placement.table
        else:
            assert (method, column) == ("h", placement.column), placement.table
    colocated = dict(owner.execute(
        "SELECT logicalrelid::regclass::text, colocationid FROM pg_dist_partition"))
    assert colocated["people_latest"] == colocated["person_keys"] == colocated["people"] \
        == colocated["account_credentials"]
    assert colocated["external_ids"] == colocated["email_lookup"]
    again = _as_owner(cli, owner_url, "init")
    assert again["migrations_applied"] == [] and again["distributed"] == []


def test_no_distribute_leaves_the_tables_on_the_coordinator(keyring_file: Path,
                                                             tmp_path: Path) -> None:
    url = create_cluster_database("local")
    try:
        settings = LedgerSettings(database_url=url, keyring_path=keyring_file, home=tmp_path)
        done = init_store(settings, distribute=False)
        assert done.distributed == [] and done.migrations_applied
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_dist_partition").fetchone() == (0,)
    finally:
        drop_cluster_database(url)


# --- people ----------------------------------------------------------------------------------


def test_create_update_change_email_and_find(ledger: Ledger, cli: Cli) -> None:
    old, new = _email("old"), _email("new")
    made = cli("person", "create", "--email", old, "--name", "Ada", "--json")
    assert made.code == 0, made.stderr
    person = made.json["person_id"]
    assert cli("person", "update", person, "--name", "Ada L.", "--json").code == 0
    changed = cli("person", "update", person, "--email", new, "--json")
    assert changed.code == 0, changed.stderr
    assert changed.json["version"] == 2
    assert str(ledger.find_person(new.upper())) == person
    with pytest.raises(PersonNotFound):
        ledger.find_person(old)
    shown = cli("person", "show", person, "--json").json
    assert (shown["email"], shown["name"], shown["version"]) == (new, "Ada L.", 2)
    other = cli("person", "create", "--email", _email("other"), "--name", "B", "--json")
    taken = cli("person", "update", other.json["person_id"], "--email", new, "--json")
    assert taken.code != 0 and "already registered" in taken.stderr


def test_concurrent_updates_of_one_person_all_land_in_one_chain(ledger: Ledger) -> None:
    person = ledger.create_person(email=_email("race"), name="Race").person_id
    errors: list[BaseException] = []

    def update(i: int) -> None:
        try:
            ledger.update_person(person, name=f"Race {i}", reason=f"writer {i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = ledger.history(person)
    assert [entry.version for entry in history] == list(range(9))
    assert ledger.get_person(person).version == 8


def test_erase_leaves_a_verifiable_chain_and_nothing_to_find(ledger: Ledger, cli: Cli,
                                                             owner: psycopg.Connection[Any]
                                                             ) -> None:
    address = _email("erase")
    person = ledger.create_person(email=address, name="Gone", password=PASSWORD).person_id
    ledger.update_person(person, name="Gone Soon")
    erased = cli("person", "erase", str(person), "--reason", "request", "--json")
    assert erased.code == 0, erased.stderr
    with pytest.raises(PersonNotFound):
        ledger.find_person(address)
    shown = ledger.get_person(person)
    assert shown.erased and shown.email is None and shown.name is None
    assert owner.execute("SELECT count(*) FROM person_keys WHERE person_id = %s",
                         (person,)).fetchone() == (0,)
    checked = cli("verify", "--person", str(person), "--json")
    assert checked.code == 0 and checked.json["ok"], checked.stdout


# --- imports ---------------------------------------------------------------------------------


def _people_file(path: Path, rows: int, prefix: str) -> Path:
    path.write_text("".join(json.dumps({"email": f"{prefix}-{i}@example.org",
                                        "name": f"Imported {i}",
                                        "external_id": f"{prefix}-{i}"}) + "\n"
                            for i in range(rows)))
    return path


def test_two_imports_of_one_file_at_once_write_each_row_once(cli: Cli, tmp_path: Path,
                                                             owner: psycopg.Connection[Any]
                                                             ) -> None:
    rows, prefix = 600, uuid.uuid4().hex[:8]
    path = _people_file(tmp_path / "twice.jsonl", rows, prefix)
    command = [sys.executable, "-m", "peoplelog", "import", str(path), "--json",
               "--batch-size", "50"]
    procs = [subprocess.Popen(command, env=cli.env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    summaries = [json.loads(out) for out, _ in results]
    assert sum(s["imported"] for s in summaries) == rows
    assert all(s["imported"] + s["skipped"] == rows for s in summaries)
    ledger_rows = owner.execute(
        "SELECT count(*), count(DISTINCT person_id) FROM people WHERE person_id IN"
        " (SELECT person_id FROM external_ids)").fetchone()
    assert ledger_rows[0] == ledger_rows[1]  # one version each: nothing written twice


def test_a_duplicate_key_in_a_copy_on_the_cluster_is_a_conflict(
        owner: psycopg.Connection[Any], ledger: Ledger) -> None:
    # Citus reports a COPY's duplicate key as XX000 and names the shard's constraint;
    # the import's retry depends on seeing it as the conflict it is.
    from peoplelog.ledger._driver import translated  # noqa: PLC0415
    from peoplelog.schema import EmailTaken  # noqa: PLC0415

    person = ledger.create_person(email=_email("dup"), name="Dup").person_id
    row = owner.execute("SELECT blind_index, person_id, key_id, norm FROM email_lookup"
                        " WHERE person_id = %s", (person,)).fetchone()
    assert row is not None
    with pytest.raises(psycopg.Error) as caught, owner.cursor() as cur, cur.copy(
            "COPY email_lookup (blind_index, person_id, key_id, norm) FROM STDIN") as copy:
        copy.write_row(row)
    assert caught.value.sqlstate in ("XX000", "23505")
    assert isinstance(translated(caught.value), EmailTaken)


def test_import_update_changes_emails_and_ends_sessions(cli: Cli, tmp_path: Path,
                                                        accounts: Accounts) -> None:
    prefix = uuid.uuid4().hex[:8]
    path = _people_file(tmp_path / "first.jsonl", 5, prefix)
    assert cli("import", str(path), "--json").json["imported"] == 5
    person = accounts.ledger.find_person(f"{prefix}-0@example.org")
    accounts.ledger.update_person(person, password=PASSWORD)
    session = accounts.login(f"{prefix}-0@example.org", PASSWORD)
    moved = tmp_path / "moved.jsonl"
    moved.write_text(json.dumps({"email": f"{prefix}-moved@example.org", "name": "Moved",
                                 "external_id": f"{prefix}-0"}) + "\n")
    updated = cli("import", str(moved), "--update", "--json")
    assert updated.code == 0 and updated.json["updated"] == 1, updated.stderr
    assert accounts.ledger.find_person(f"{prefix}-moved@example.org") == person
    with pytest.raises(InvalidToken):
        accounts.check(session.token)


# --- the log, verification, projections, export -----------------------------------------------


def test_checkpoint_and_verify_against_a_held_checkpoint(cli: Cli, owner_url: str,
                                                         ledger: Ledger,
                                                         tmp_path: Path) -> None:
    ledger.create_person(email=_email("log"), name="Logged")
    first = _as_owner(cli, owner_url, "checkpoint")
    held = tmp_path / "held.checkpoint"
    held.write_text(first["checkpoint"])
    ledger.create_person(email=_email("later"), name="Later")
    second = _as_owner(cli, owner_url, "checkpoint")
    assert second["size"] > first["size"]
    verified = cli("verify", "--checkpoint", str(held), "--json")
    assert verified.code == 0, verified.stdout + verified.stderr
    report = verified.json
    assert report["ok"] and report["log"]["held_size"] == first["size"]
    assert report["log"]["consistent_with_held"] is True


def test_projections_check_with_the_keyring_finds_a_missing_claim_and_rebuild_fixes_it(
        cli: Cli, owner_url: str, owner: psycopg.Connection[Any], ledger: Ledger) -> None:
    assert _as_owner(cli, owner_url, "projections", "check")["ok"]
    person = ledger.create_person(email=_email("claim"), name="Claim").person_id
    owner.execute("DELETE FROM email_lookup WHERE person_id = %s", (person,))
    damaged = cli("projections", "check", "--json",
                  env={"PEOPLELOG_DATABASE_URL": owner_url})
    assert damaged.code != 0
    assert [(f["kind"], f["person_id"]) for f in damaged.json["findings"]] == [
        ("claim_missing", str(person))]
    _as_owner(cli, owner_url, "projections", "rebuild")
    assert _as_owner(cli, owner_url, "projections", "check")["ok"]


def test_export_holds_every_version_and_verifies(cli: Cli, owner_url: str,
                                                 tmp_path: Path) -> None:
    _as_owner(cli, owner_url, "checkpoint")
    exported = cli("export", "--json")
    assert exported.code == 0, exported.stderr
    path = tmp_path / "export.jsonl"
    path.write_text(exported.stdout)
    kinds = [json.loads(line)["type"] for line in exported.stdout.splitlines()]
    assert kinds[0] == "header" and "version" in kinds and "checkpoint" in kinds
    offline = cli("verify", "--from-export", str(path), "--json")
    assert offline.code == 0 and offline.json["ok"], offline.stdout + offline.stderr


# --- accounts ------------------------------------------------------------------------------


def test_sign_up_log_in_check_and_end_sessions(accounts: Accounts) -> None:
    address = _email("acct")
    person = accounts.register(address, password=PASSWORD, name="Member")
    first = accounts.login(address.upper(), PASSWORD, client=Client(label="laptop"))
    second = accounts.login(address, PASSWORD, client=Client(label="phone"))
    scope = accounts.check(first.token)
    assert scope.person_id == person
    assert asyncio.run(accounts.check_async(second.token)).person_id == person
    assert [s.label for s in accounts.sessions(scope)] == ["laptop", "phone"]
    token = accounts.create_access_token(scope, name="deploy")
    assert accounts.check(token.token).kind == "access_token"
    with pytest.raises(LoginFailed):
        accounts.login(address, "wrong horse battery staple")
    accounts.change_password(scope, PASSWORD, NEW_PASSWORD)
    for ended in (second.token, token.token):
        with pytest.raises(InvalidToken):
            accounts.check(ended)
    again = accounts.login(address, NEW_PASSWORD)
    assert accounts.revoke_all(accounts.check(again.token)) >= 1
    with pytest.raises(InvalidToken):
        accounts.check(again.token)


def test_reset_by_link_through_a_real_smtp_server(accounts: Accounts) -> None:
    address = _email("link")
    person = accounts.register(address, password=PASSWORD, name="Member")
    session = accounts.login(address, PASSWORD)
    with smtp_server() as (inbox, mailer):
        accounts.request_password_reset(address)
        assert accounts.send_pending(mailer).sent >= 1
        token = _token(inbox, address)
    assert accounts.reset_password(token, NEW_PASSWORD) == person
    with pytest.raises(InvalidToken):
        accounts.check(session.token)
    with pytest.raises(InvalidToken):
        accounts.reset_password(token, "third horse battery staple")
    assert accounts.login(address, NEW_PASSWORD).person_id == person


def _token(inbox: Inbox, address: str) -> str:
    return inbox.token_for(address)


def test_sign_in_code_and_erasure_take_what_they_should(
        accounts: Accounts, owner: psycopg.Connection[Any]) -> None:
    address = _email("code")
    person = accounts.register(address, password=PASSWORD, name="Member")
    with smtp_server() as (inbox, mailer):
        accounts.request_login_code(address)
        accounts.send_pending(mailer)
        code = inbox.code_for(address)
    with pytest.raises(LoginFailed):
        accounts.login_with_code(address, "000000" if code != "000000" else "111111")
    session = accounts.login_with_code(address, code)
    scope = accounts.check(session.token)
    accounts.request_password_reset(address)
    accounts.erase_account(scope, PASSWORD)
    for table in ("account_sessions", "account_one_time", "account_outbox"):
        assert owner.execute(f"SELECT count(*) FROM {table} WHERE person_id = %s",
                             (person,)).fetchone() == (0,), table


def test_api_keys_and_the_security_log_verify(accounts: Accounts, cli: Cli,
                                              owner_url: str) -> None:
    key = accounts.create_api_key("billing", ["people:read"])
    assert accounts.check_bearer(key.token).permissions == frozenset({"people:read"})
    accounts.revoke_api_key("billing")
    with pytest.raises(InvalidToken):
        accounts.check_bearer(key.token)
    _as_owner(cli, owner_url, "checkpoint")
    auditor = _ROLE_URLS[owner_url]["auditor"]
    verified = cli("verify", "--json", env={"PEOPLELOG_DATABASE_URL": auditor})
    assert verified.code == 0 and verified.json["ok"], verified.stdout + verified.stderr
    assert verified.json["log"]["events"] > 0 and verified.json["log"]["live_sessions"] >= 1
    with psycopg.connect(auditor, autocommit=True) as as_auditor, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        as_auditor.execute("SELECT lookup FROM account_sessions LIMIT 1")
    cleaned = accounts.clean_up()
    assert set(cleaned.as_dict()) == {"sessions", "links", "mail", "attempts"}


# --- what the database itself refuses --------------------------------------------------------


def test_the_app_role_cannot_rewrite_history_and_messages_name_tables(
        database_url: str, owner: psycopg.Connection[Any], accounts: Accounts, cli: Cli,
        owner_url: str) -> None:
    ledger = accounts.ledger
    person = accounts.register(_email("guard"), password=PASSWORD, name="Guarded")
    accounts.login(ledger.get_person(person).email or "", PASSWORD)  # a security event
    _as_owner(cli, owner_url, "checkpoint")
    with psycopg.connect(database_url, autocommit=True) as app:
        check_keyring(app, ledger.keyring)  # the keyring's fingerprints are recorded
        for statement, expected in (
            ("UPDATE people SET actor = 'x' WHERE person_id = %s", "permission denied"),
            ("UPDATE people_latest SET name = '\\x00' WHERE person_id = %s",
             "people_latest may only hold each person's chain head"),
            ("DELETE FROM person_keys WHERE person_id = %s",
             "a data key may only be removed with the erasure of its person"),
            ("UPDATE security_events SET kind = 'x' WHERE %s::uuid IS NOT NULL",
             "security_events is append-only"),
            ("UPDATE peoplelog_key_checks SET purpose = purpose WHERE %s::uuid IS NOT NULL",
             "peoplelog_key_checks rows are only added: UPDATE is not allowed"),
        ):
            with pytest.raises(psycopg.Error) as caught:
                app.execute(statement, (person,))
            message = caught.value.diag.message_primary or ""
            assert expected in message, (statement, message)
            assert not _SHARD_NAME.search(message), message
    for statement, table in (("UPDATE people SET actor = 'x' WHERE person_id = %s", "people"),
                             ("DELETE FROM log_entries WHERE person_id = %s",
                              "log_entries")):
        with pytest.raises(psycopg.Error) as caught:
            owner.execute(statement, (person,))
        message = caught.value.diag.message_primary or ""
        assert message.startswith(f"{table} is append-only"), message


# --- key rotations (last: they change the module's keyring file) ----------------------------


def test_key_encryption_and_blind_index_keys_rotate_online(cli: Cli, owner_url: str,
                                                           ledger: Ledger) -> None:
    address = _email("rotate")
    person = ledger.create_person(email=address, name="Rotated").person_id
    assert _as_owner(cli, owner_url, "keys", "add-kek")["added"]
    rewrapped = _as_owner(cli, owner_url, "keys", "rotate-kek")
    assert rewrapped["rewrapped"] >= 1 and rewrapped["remaining"] == 0
    epochs = _as_owner(cli, owner_url, "keys", "epochs")
    drained = [e for e in epochs if e["drained_at"] is not None]
    assert [e["live_keys"] for e in drained] == [0]
    retired = cli("keys", "retire-kek", drained[0]["kek_id"], "--retention", "0", "--json",
                  env={"PEOPLELOG_DATABASE_URL": owner_url})
    assert retired.code == 0, retired.stderr
    assert [e["retired_at"] is not None for e in _as_owner(
        cli, owner_url, "keys", "epochs") if e["kek_id"] == drained[0]["kek_id"]] == [True]
    assert _as_owner(cli, owner_url, "keys", "add-blind-key")["added"]
    moved = _as_owner(cli, owner_url, "keys", "rotate-blind-index")
    assert moved["reindexed"] >= 1 and moved["remaining"] == 0 and moved["unconfirmed"] == []
    found = cli("person", "find", "--email", address, "--json")
    assert found.code == 0 and found.json["person_id"] == str(person), found.stderr
    assert _as_owner(cli, owner_url, "projections", "check")["ok"]
