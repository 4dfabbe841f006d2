"""Least privilege: the role ``peoplelog init --app-role`` sets up can append and read
but cannot rewrite, remove or restructure the ledger (nor forge checkpoints or swap the
verifier key), and an auditor role (``init --auditor-role``) that can only SELECT
``people``, ``log_entries``, ``checkpoints``, ``log_meta``, ``people_latest`` and two views
without key material (data-key versions, claim owners) runs ``peoplelog verify`` to a clean
exit 0.

(``tests/test_schema.py`` covers a role granted through the API; the keyring file modes are
in ``test_reliability_hostile.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _support import ROOT, Figures, counts
from conftest import create_database, drop_database
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger

Conn = psycopg.Connection[Any]
LEDGER_TABLES = ("people", "people_latest", "email_lookup", "person_keys", "log_entries",
                 "checkpoints", "log_meta", "peoplelog_key_checks", "external_ids")


@dataclass
class Roles:
    url: str  # superuser, on a database of its own
    app: str
    auditor: str
    env: dict[str, str]

    def as_role(self, role: str) -> str:
        return make_conninfo(self.url, user=role)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "peoplelog", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def roles(server_url: str, cli_env: dict[str, str], keyring_file: Path) -> Iterator[Roles]:
    url = create_database(server_url, "rel_priv")
    tag = uuid.uuid4().hex[:8]
    app, auditor = f"plt_app_{tag}", f"plt_auditor_{tag}"
    env = {**cli_env, "PEOPLELOG_DATABASE_URL": url, "PEOPLELOG_KEYRING": str(keyring_file)}
    with psycopg.connect(server_url, autocommit=True) as admin:
        for role in (app, auditor):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        done = _cli(env, "init", "--app-role", app, "--auditor-role", auditor, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["app_role"] == app
        assert json.loads(done.stdout)["auditor_role"] == auditor
        yield Roles(url, app, auditor, env)
    finally:
        drop_database(server_url, url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            for role in (app, auditor):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _denied(url: str, statements: list[str], params: dict[str, Any]) -> list[str]:
    """Run each statement on its own connection; return those that were not refused."""
    allowed = []
    for statement in statements:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute(statement, params)
            except pg_errors.InsufficientPrivilege:
                continue
            allowed.append(statement)
    return allowed


def test_app_role_cannot_rewrite_the_ledger(roles: Roles, keyring: Keyring) -> None:
    figures = Figures("least privilege", "app_role")
    with Ledger(Database(roles.as_role(roles.app), pool_size=1), keyring) as ledger:
        ref = ledger.create_person(email=f"priv-{uuid.uuid4().hex}@example.org", name="P")
        ledger.update_person(ref.person_id, name="P v1", expect_version=0)
    checkpoint = _cli(roles.env, "checkpoint", "--json")  # as the owner: log and checkpoint
    assert checkpoint.returncode == 0, checkpoint.stderr
    with psycopg.connect(roles.url, autocommit=True) as conn:
        before = counts(conn, LEDGER_TABLES)
        stored = conn.execute("SELECT * FROM people ORDER BY person_id, version").fetchall()
    statements = [
        "UPDATE people SET actor = 'mallory' WHERE person_id = %(pid)s",
        "UPDATE people SET name = NULL",
        "DELETE FROM people WHERE person_id = %(pid)s",
        "DELETE FROM people",
        "TRUNCATE people",
        "TRUNCATE people CASCADE",
        "ALTER TABLE people ADD COLUMN note text",
        "ALTER TABLE people DISABLE TRIGGER ALL",
        "ALTER TABLE people DROP CONSTRAINT people_pkey",
        "ALTER TABLE people OWNER TO CURRENT_USER",
        "ALTER TABLE people RENAME TO people_old",
        "DROP TRIGGER people_no_update_delete ON people",
        "DROP TABLE people",
        "CREATE TRIGGER plt_mallory BEFORE INSERT ON people FOR EACH ROW"
        " EXECUTE FUNCTION peoplelog_reject_change()",
        "SET session_replication_role = replica",
        "UPDATE log_entries SET cid = cid",
        "DELETE FROM log_entries",
        "INSERT INTO log_entries (position, person_id, version, cid)"
        " VALUES (999999, %(pid)s, 0, 'x')",
        "DELETE FROM checkpoints",
        "INSERT INTO checkpoints (size, root, frontier, note) VALUES (0, '', '', 'forged')",
        "UPDATE log_meta SET verifier_key = 'mallory+00000000+AA=='",
        "UPDATE peoplelog_key_checks SET fingerprint = ''",
        "DELETE FROM peoplelog_key_checks",
        "DROP TABLE people_latest",
        "TRUNCATE people_latest",
    ]
    allowed = _denied(roles.as_role(roles.app), statements, {"pid": ref.person_id})
    assert allowed == [], f"the app role may: {allowed}"
    with psycopg.connect(roles.as_role(roles.app), autocommit=True) as conn:
        conn.execute("GRANT UPDATE, DELETE, TRUNCATE ON people TO PUBLIC")  # a no-op warning
    with psycopg.connect(roles.url, autocommit=True) as conn:
        assert counts(conn, LEDGER_TABLES) == before
        assert conn.execute("SELECT * FROM people ORDER BY person_id, version"
                            ).fetchall() == stored
        for grantee in ("public", roles.app):
            for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                assert conn.execute("SELECT has_table_privilege(%s, 'people', %s)",
                                    (grantee, privilege)).fetchone() == (False,)
    # what the app role may not do is reported as one clear line by the CLI
    refused = _cli({**roles.env, "PEOPLELOG_DATABASE_URL": roles.as_role(roles.app)},
                   "checkpoint", "--json")
    assert refused.returncode == 2, refused.stderr
    assert json.loads(refused.stderr)["message"].startswith("permission denied")
    assert refused.stderr.count("\n") == 1
    figures.inputs_tried = len(statements) + 2
    figures.operations = 2
    figures.details = {"statements_refused": len(statements)}
    figures.write()


def test_select_only_auditor_runs_verify(roles: Roles, tmp_path: Path) -> None:
    figures = Figures("least privilege", "auditor_role")
    auditor_url = roles.as_role(roles.auditor)
    env = {**roles.env, "PEOPLELOG_DATABASE_URL": auditor_url,
           "PEOPLELOG_KEYRING": str(tmp_path / "no-keyring-here.json"),
           "PEOPLELOG_HOME": str(tmp_path / "home")}
    owner = _cli(roles.env, "checkpoint", "--json")
    assert owner.returncode == 0, owner.stderr
    key = _cli(roles.env, "keys", "public").stdout.strip()
    held = tmp_path / "held.txt"
    held.write_text(json.loads(owner.stdout)["checkpoint"])

    runs = {
        "verify": _cli(env, "verify", "--json"),
        "verify held checkpoint": _cli(env, "verify", "--json", f"--checkpoint={held}",
                                       f"--key={key}"),
    }
    with psycopg.connect(roles.url, autocommit=True) as conn:
        person = conn.execute("SELECT person_id FROM people LIMIT 1").fetchone()
    assert person is not None
    runs["verify one person"] = _cli(env, "verify", "--json", f"--person={person[0]}")
    for what, run in runs.items():
        assert run.returncode == 0, (what, run.stdout[-1500:], run.stderr[-1500:])
        report = json.loads(run.stdout)
        assert report["ok"] is True and report["findings"] == [], what
        assert report["checked"] > 0
    assert json.loads(runs["verify held checkpoint"].stdout)["log"]["consistent_with_held"]

    # SELECT on what verify reads and nothing else: no key material, no keyed hash
    allowed = _denied(auditor_url, [
        "SELECT * FROM person_keys", "SELECT * FROM email_lookup",
        "SELECT * FROM peoplelog_key_checks", "SELECT * FROM external_ids",
        "INSERT INTO people (person_id) VALUES (gen_random_uuid())",
        "UPDATE log_meta SET origin = 'x'", "DELETE FROM checkpoints",
    ], {})
    assert allowed == [], allowed
    # a command it has no rights for says so on one line (exit 2)
    refused = _cli(env, "projections", "check", "--json")
    assert refused.returncode == 2, refused.stderr
    assert "permission denied" in json.loads(refused.stderr)["message"]
    figures.operations = len(runs)
    figures.inputs_tried = 8
    figures.details = {"verify_runs": list(runs)}
    figures.write()
