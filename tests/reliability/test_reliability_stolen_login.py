"""A stolen application login, used as an attacker would: with the role ``peoplelog init
--app-role`` sets up and its password, but no keyring. Each attack that used to change who
a person is or how they log in undetected is now either refused by the application's reads
(they confirm against the person's chain head and fail closed) and reported by key-free
``verify`` (run as the ``--auditor-role``) with the finding that names it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _support import ROOT, Figures
from conftest import create_database, drop_database
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.fields import Attestations, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger, version_cid
from peoplelog.projections import CheckpointResult, CheckpointSigner, make_checkpoint
from peoplelog.schema import (
    EmailTaken,
    PersonNotFound,
    Unattested,
    VersionRecord,
    VersionRef,
)

Conn = psycopg.Connection[Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)
PASSWORD_1 = "first correct horse battery"
PASSWORD_2 = "second correct horse battery"


@dataclass
class Store:
    url: str  # the owner's, on a database of its own
    app_url: str  # the stolen login
    auditor_env: dict[str, str]
    ledger: Ledger  # the real application, with the keyring


@pytest.fixture(scope="module")
def store(server_url: str, cli_env: dict[str, str], keyring: Keyring,
          keyring_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    url = create_database(server_url, "rel_stolen")
    tag = uuid.uuid4().hex[:8]
    app, auditor = f"plt_app_{tag}", f"plt_aud_{tag}"
    env = {**cli_env, "PEOPLELOG_DATABASE_URL": url, "PEOPLELOG_KEYRING": str(keyring_file)}
    with psycopg.connect(server_url, autocommit=True) as admin:
        for role in (app, auditor):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    ledger = None
    try:
        done = subprocess.run([sys.executable, "-m", "peoplelog", "init", "--app-role", app,
                               "--auditor-role", auditor, "--json"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        app_url = make_conninfo(url, user=app)
        ledger = Ledger(Database(app_url, pool_size=2), keyring)
        auditor_env = {**env, "PEOPLELOG_DATABASE_URL": make_conninfo(url, user=auditor),
                       "PEOPLELOG_KEYRING": str(tmp_path_factory.mktemp("none") / "absent")}
        yield Store(url, app_url, auditor_env, ledger)
    finally:
        if ledger is not None:
            ledger.close()
        drop_database(server_url, url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            for role in (app, auditor):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _person(store: Store, password: str | None = PASSWORD_1) -> tuple[VersionRef, str]:
    email = f"victim-{uuid.uuid4().hex[:10]}@example.org"
    return store.ledger.create_person(email=email, name="Victim", password=password), email


def _verify_as_auditor(store: Store) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "peoplelog", "verify", "--json"],
                          env=store.auditor_env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _found(report: dict[str, Any], kind: str, person: uuid.UUID) -> bool:
    return any(f["kind"] == kind and f["person_id"] == str(person) for f in report["findings"])


def _repair(store: Store, sql_text: str, params: tuple[Any, ...]) -> None:
    """Undo an attack as the owner, so each test leaves a clean store for the next."""
    with psycopg.connect(store.url, autocommit=True) as owner:
        owner.execute(sql_text, params)


def _checkpoint(store: Store, keyring: Keyring) -> CheckpointResult:
    """The operator's next checkpoint (the sequencer checks every version's seal)."""
    with Ledger(Database(store.url, pool_size=1), keyring) as owner:
        signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
        return owner.database.run(lambda conn: make_checkpoint(
            conn, signer, writers=Attestations.of(keyring)))


def _refused(store: Store, statement: str, params: tuple[Any, ...], match: str) -> None:
    """Run ``statement`` with the stolen login and expect the database to refuse it."""
    with psycopg.connect(store.app_url, autocommit=True) as stolen, \
            pytest.raises(psycopg.errors.InsufficientPrivilege, match=match):
        stolen.execute(statement, params)


def test_an_older_password_cannot_be_put_back_into_people_latest(store: Store) -> None:
    figures = Figures("stolen login", "old_password_in_latest")
    ref, email = _person(store)
    store.ledger.update_person(ref.person_id, password=PASSWORD_2)
    with psycopg.connect(store.app_url, autocommit=True) as stolen:
        old = stolen.execute("SELECT password FROM people WHERE person_id = %s"
                             " AND version = 0", (ref.person_id,)).fetchone()
    assert old is not None
    _refused(store, "UPDATE people_latest SET password = %s WHERE person_id = %s",
             (old[0], ref.person_id), "chain head")
    _refused(store, "INSERT INTO people_latest SELECT gen_random_uuid(), version, cid, op,"
                    " created_at, recorded_at, email, name, password, verified_at, erased_at"
                    " FROM people_latest WHERE person_id = %s", (ref.person_id,), "chain head")
    assert store.ledger.authenticate(email, PASSWORD_1) is None
    assert store.ledger.authenticate(email, PASSWORD_2) == ref.person_id
    figures.faults_injected = 2
    figures.write()


def test_an_email_claim_cannot_be_moved_to_another_person(store: Store) -> None:
    figures = Figures("stolen login", "claim_redirected")
    victim, email = _person(store)
    attacker, _ = _person(store, password=PASSWORD_2)
    with psycopg.connect(store.app_url, autocommit=True) as stolen:
        row = stolen.execute("SELECT blind_index, key_id, norm, claim_key, claim"
                             " FROM email_lookup WHERE person_id = %s",
                             (victim.person_id,)).fetchone()
    assert row is not None
    _refused(store, "DELETE FROM email_lookup WHERE person_id = %s", (victim.person_id,),
             "new version")
    _refused(store, "INSERT INTO email_lookup (blind_index, person_id, key_id, norm,"
                    " claim_key, claim) VALUES (%s, %s, %s, %s, %s, %s)",
             (bytes(32), attacker.person_id, *row[1:]), "new version")
    assert store.ledger.find_person(email) == victim.person_id
    assert store.ledger.authenticate(email, PASSWORD_1) == victim.person_id
    figures.faults_injected = 2
    figures.write()


def test_a_data_key_cannot_be_deleted_or_added(store: Store) -> None:
    figures = Figures("stolen login", "key_deleted")
    ref, email = _person(store)
    with psycopg.connect(store.app_url, autocommit=True) as stolen:
        saved = stolen.execute("SELECT kek_id, wrapped_key FROM person_keys"
                               " WHERE person_id = %s", (ref.person_id,)).fetchone()
    assert saved is not None
    _refused(store, "DELETE FROM person_keys WHERE person_id = %s", (ref.person_id,),
             "only be removed with the erasure")
    _refused(store, "INSERT INTO person_keys (person_id, key_version, kek_id, wrapped_key)"
                    " VALUES (%s, 2, %s, %s)", (ref.person_id, *saved), "new version")
    assert store.ledger.get_person(ref.person_id).name == "Victim"
    assert store.ledger.authenticate(email, PASSWORD_1) == ref.person_id
    figures.faults_injected = 2
    figures.write()


def test_a_claim_cannot_be_deleted_to_let_someone_else_register_the_address(
        store: Store) -> None:
    figures = Figures("stolen login", "claim_deleted")
    ref, email = _person(store)
    _refused(store, "DELETE FROM email_lookup WHERE person_id = %s", (ref.person_id,),
             "new version")
    with pytest.raises(EmailTaken):
        store.ledger.create_person(email=email, name="Second Holder")
    figures.faults_injected = 1
    figures.write()


def test_the_write_paths_work_for_the_application_role(store: Store, tmp_path: Path) -> None:
    """Everything the application does with its own role passes the database's checks:
    create, change (the email too, on the locked path), erase, import; a savepoint between
    the version and the claim changes nothing."""
    ref, email = _person(store)
    moved = f"moved-{uuid.uuid4().hex[:10]}@example.org"
    store.ledger.update_person(ref.person_id, email=moved, name="Moved")
    assert store.ledger.find_person(moved) == ref.person_id
    with pytest.raises(PersonNotFound):
        store.ledger.find_person(email)
    store.ledger.erase_person(ref.person_id, actor="test", reason="request")
    with pytest.raises(PersonNotFound):
        store.ledger.find_person(moved)
    with psycopg.connect(store.app_url, autocommit=True) as app:
        keys = app.execute("SELECT count(*) FROM person_keys WHERE person_id = %s",
                           (ref.person_id,)).fetchone()
    assert keys == (0,)
    emails = [f"import-{uuid.uuid4().hex[:10]}@example.org" for _ in range(5)]
    source = tmp_path / "people.csv"
    source.write_text("email,name\n" + "".join(f"{e},Imported\n" for e in emails))
    assert store.ledger.import_people(source, strict=True).imported == 5
    source.write_text("email,name\n" + "".join(f"{e},Renamed\n" for e in emails))
    assert store.ledger.import_people(source, update=True).updated == 5  # in savepoints
    person = store.ledger.find_person(emails[0])
    assert person is not None and store.ledger.get_person(person).name == "Renamed"


def test_a_well_formed_version_written_with_the_login_alone_is_never_trusted(
        store: Store, keyring: Keyring) -> None:
    """The attacker replays the person's first password ciphertext in a new, correctly
    chained version (any actor) and moves people_latest to it: the application refuses
    to log in on it or to build on it (no seal of its writer key), the sequencer refuses
    to put it into a signed checkpoint, and verify reports it as unattested."""
    figures = Figures("stolen login", "forged_version")
    ref, email = _person(store)
    store.ledger.update_person(ref.person_id, password=PASSWORD_2)
    with psycopg.connect(store.app_url, autocommit=True) as stolen, stolen.transaction():
        row = stolen.execute(
            "SELECT version, cid, recorded_at, email, name FROM people"
            " WHERE person_id = %s ORDER BY version DESC LIMIT 1", (ref.person_id,)).fetchone()
        first = stolen.execute("SELECT password FROM people WHERE person_id = %s"
                               " AND version = 0", (ref.person_id,)).fetchone()
        assert row is not None and first is not None
        version, prev, recorded_at, email_ct, name_ct = row
        forged = VersionRecord(person_id=ref.person_id, version=version + 1, prev=prev,
                               op="password_changed", recorded_at=to_micros(recorded_at) + 1,
                               actor="support", reason="reset", email=bytes(email_ct),
                               name=bytes(name_ct), password=bytes(first[0]),
                               verified_at=None)
        cid = version_cid(forged)
        stolen.execute(
            "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at,"
            " actor, reason, email, name, password, verified_at) VALUES"
            " (%s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, NULL)",
            (ref.person_id, forged.version, cid, prev, forged.op,
             recorded_at + timedelta(microseconds=1), forged.actor, forged.reason,
             forged.email, forged.name, forged.password))
        stolen.execute("UPDATE people_latest SET version = %s, cid = %s, op = %s,"
                       " recorded_at = %s, password = %s WHERE person_id = %s",
                       (forged.version, cid, forged.op,
                        recorded_at + timedelta(microseconds=1), forged.password,
                        ref.person_id))
    with pytest.raises(Unattested):
        store.ledger.authenticate(email, PASSWORD_1)
    with pytest.raises(Unattested):
        store.ledger.update_person(ref.person_id, name="Built on a forgery")
    assert _checkpoint(store, keyring).refused == 1
    report = _verify_as_auditor(store)
    assert any(f["kind"] == "unattested" and f["person_id"] == str(ref.person_id)
               and f["version"] == forged.version for f in report["findings"])
    # the operator writes the last trusted state back: logins and writes work again
    restored = store.ledger.restore_person(ref.person_id, actor="ops", reason="forgery")
    assert restored.written and restored.version == forged.version + 1
    assert store.ledger.authenticate(email, PASSWORD_1) is None
    assert store.ledger.authenticate(email, PASSWORD_2) == ref.person_id
    assert store.ledger.update_person(ref.person_id, name="Safe again").written
    assert not store.ledger.restore_person(ref.person_id, actor="ops").written
    figures.faults_injected = 1
    figures.write()


def test_a_forged_erasure_is_reported_and_never_read_as_an_erasure(
        store: Store, keyring: Keyring) -> None:
    """What the database cannot refuse: a chained ``erased`` version written with the login
    alone lets the same transaction take the person's data key and claim (the
    crypto-shred). It is unattested: reads fail closed with ``Unattested`` rather than
    reporting an erasure, the sequencer refuses it and verify names it; the key itself is
    gone from the live tables (backups still hold it, docs/AUDIT.md §9)."""
    figures = Figures("stolen login", "forged_erasure")
    ref, _ = _person(store)
    with psycopg.connect(store.app_url, autocommit=True) as stolen, stolen.transaction():
        row = stolen.execute("SELECT version, cid, recorded_at FROM people"
                             " WHERE person_id = %s ORDER BY version DESC LIMIT 1",
                             (ref.person_id,)).fetchone()
        assert row is not None
        version, prev, recorded_at = row
        forged = VersionRecord(person_id=ref.person_id, version=version + 1, prev=prev,
                               op="erased", recorded_at=to_micros(recorded_at) + 1,
                               actor="attacker", reason=None, email=None, name=None,
                               password=None, verified_at=None)
        cid = version_cid(forged)
        at = recorded_at + timedelta(microseconds=1)
        stolen.execute(
            "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at,"
            " actor) VALUES (%s, %s, %s, %s, 1, 'erased', %s, 'attacker')",
            (ref.person_id, forged.version, cid, prev, at))
        stolen.execute("UPDATE people_latest SET version = %s, cid = %s, op = 'erased',"
                       " recorded_at = %s, email = NULL, name = NULL, password = NULL,"
                       " erased_at = %s WHERE person_id = %s",
                       (forged.version, cid, at, at, ref.person_id))
        stolen.execute("DELETE FROM person_keys WHERE person_id = %s", (ref.person_id,))
        stolen.execute("DELETE FROM email_lookup WHERE person_id = %s", (ref.person_id,))
    with pytest.raises(Unattested):
        store.ledger.get_person(ref.person_id)
    assert _checkpoint(store, keyring).refused == 1
    report = _verify_as_auditor(store)
    assert any(f["kind"] == "unattested" and f["person_id"] == str(ref.person_id)
               and f["version"] == forged.version for f in report["findings"])
    figures.faults_injected = 1
    figures.write()


@pytest.mark.parametrize("statement", [
    "SELECT wrapped_key FROM person_keys LIMIT 1",
    "SELECT blind_index FROM email_lookup LIMIT 1",
    "DELETE FROM person_keys",
    "DELETE FROM email_lookup",
    "UPDATE people_latest SET password = NULL",
    "INSERT INTO people (person_id, version, cid, format, op, recorded_at)"
    " VALUES (gen_random_uuid(), 0, 'x', 1, 'created', now())",
    "INSERT INTO log_refused (person_id, version, cid, reason)"
    " VALUES (gen_random_uuid(), 0, 'x', 'y')",
])
def test_the_auditor_login_reads_no_key_material_and_writes_nothing(
        store: Store, statement: str) -> None:
    with psycopg.connect(store.auditor_env["PEOPLELOG_DATABASE_URL"],
                         autocommit=True) as auditor, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        auditor.execute(statement)


def test_the_store_verifies_clean_but_for_the_forgery(store: Store) -> None:
    """The repairs leave only what cannot be undone: the forged version stays in the
    ledger (append-only), refused and reported."""
    report = _verify_as_auditor(store)
    assert {f["kind"] for f in report["findings"]} == {"unattested"}, report["findings"]
