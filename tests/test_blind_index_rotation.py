"""Blind-index key rotation, online: lookups and logins work before, during and after the
claims move to the new key; an email claimed under an older key stays taken; the database
refuses claims under an older key once a newer one is recorded; a claim that does not check
against its head is never moved; the older key is retired only once nothing uses it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, create_database, drop_database
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.fields import KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger, check_keyring, reindex_claims, retire_blind_key
from peoplelog.projections import check_projections
from peoplelog.schema import (
    ConfigurationError,
    Conflict,
    EmailTaken,
    KeyNotFound,
    KeyringError,
    PersonNotFound,
    apply_migrations,
    grant_app_role,
)

Conn = psycopg.Connection[Any]
PASSWORD = "correct horse battery staple"


@pytest.fixture()
def fresh(server_url: str) -> Iterator[str]:
    """A database of its own: each test rotates its own keyring's blind-index key."""
    url = create_database(server_url, "reindex")
    with psycopg.connect(url, autocommit=True) as owner:
        apply_migrations(owner)
    yield url
    drop_database(server_url, url)


@pytest.fixture()
def app_url(fresh: str, server_url: str) -> Iterator[str]:
    """The application's login (not the owner: the database's write-path rules apply)."""
    role = f"plt_reindex_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with psycopg.connect(fresh, autocommit=True) as owner:
        grant_app_role(owner, role)
    yield make_conninfo(fresh, user=role)
    with psycopg.connect(fresh, autocommit=True) as owner:
        owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _people(app: Ledger, count: int, tag: str) -> list[tuple[uuid.UUID, str]]:
    out = []
    for i in range(count):
        email = f"{tag}-{i}-{uuid.uuid4().hex[:6]}@Example.org"
        out.append((app.create_person(email=email, name=f"{tag} {i}",
                                      password=PASSWORD).person_id, email))
    return out


def _claim_keys(conn: Conn) -> dict[str, int]:
    return dict(conn.execute("SELECT key_id, count(*) FROM email_lookup GROUP BY key_id")
                .fetchall())


def _all_found(app: Ledger, people: list[tuple[uuid.UUID, str]]) -> None:
    for person_id, email in people:
        assert app.find_person(email.upper()) == person_id
        assert app.authenticate(email, PASSWORD) == person_id


def _projections_ok(url: str, keyring: Keyring) -> None:
    with psycopg.connect(url) as conn:
        report = check_projections(conn, keyring)
    assert report.ok, report.findings


def test_lookups_and_logins_work_before_during_and_after_the_rotation(fresh: str) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    old_key, new_key = old.active(KeyPurpose.BLIND_INDEX).id, new.active(KeyPurpose.BLIND_INDEX).id
    owner = psycopg.connect(fresh, autocommit=True)
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        people = _people(old_app, 5, "before")
        erased = _people(old_app, 1, "gone")[0]
        old_app.erase_person(erased[0], actor="dpo", reason="request")
    with Ledger(Database(fresh, pool_size=2), new) as app:
        _all_found(app, people)  # every claim is still under the older key
        people += _people(app, 1, "during")  # a new claim is made under the new key
        assert _claim_keys(owner) == {old_key: 5, new_key: 1}
        _projections_ok(fresh, new)
        seen: list[int] = []

        def between_batches(done: int) -> None:  # after each committed batch
            seen.append(done)
            _all_found(app, people)
            _projections_ok(fresh, new)

        with Database(fresh, pool_size=1) as database:
            summary = reindex_claims(database, new, batch_size=2, progress=between_batches)
        assert (summary.key_id, summary.reindexed, summary.remaining) == (new_key, 5, 0)
        assert summary.unconfirmed == [] and seen == [2, 4, 5]
        assert _claim_keys(owner) == {new_key: 6}
        _all_found(app, people)
        with pytest.raises(PersonNotFound):
            app.find_person(erased[1])
    _projections_ok(fresh, new)
    with Database(fresh, pool_size=1) as database:
        again = reindex_claims(database, new)
    assert (again.reindexed, again.remaining) == (0, 0)


def test_an_email_claimed_under_an_older_key_stays_taken(fresh: str, tmp_path: Path) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        (holder, email), (other, _) = _people(old_app, 2, "taken")
    with Ledger(Database(fresh, pool_size=2), new) as app:
        with pytest.raises(EmailTaken):
            app.create_person(email=email.lower(), name="Second", password=PASSWORD)
        with pytest.raises(EmailTaken):
            app.update_person(other, email=email)
        rows = tmp_path / "people.jsonl"
        rows.write_text(json.dumps({"email": email, "name": "Imported"}) + "\n")
        skipped = app.import_people(rows)
        assert (skipped.imported, skipped.skipped) == (0, 1)
        updated = app.import_people(rows, update=True)
        assert (updated.imported, updated.updated) == (0, 1)
        assert app.get_person(holder).name == "Imported"
        assert app.find_person(email) == holder
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT count(*) FROM people WHERE version = 0").fetchone() == (2,)
    _projections_ok(fresh, new)


def test_an_import_finds_external_ids_hashed_under_an_older_key(fresh: str,
                                                                 tmp_path: Path) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    rows = tmp_path / "people.jsonl"
    rows.write_text(json.dumps({"email": "ext@example.org", "name": "Ext",
                                "external_id": "crm-17"}) + "\n")
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        assert old_app.import_people(rows).imported == 1
    moved = tmp_path / "moved.jsonl"  # the same record, its email changed elsewhere
    moved.write_text(json.dumps({"email": "ext.new@example.org", "name": "Ext",
                                 "external_id": "crm-17"}) + "\n")
    with Ledger(Database(fresh, pool_size=2), new) as app:
        summary = app.import_people(moved, update=True)
        assert (summary.imported, summary.updated) == (0, 1)
        person = app.find_person("ext.new@example.org")
        assert app.get_person(person).email == "ext.new@example.org"


def test_the_database_refuses_claims_under_an_older_key_once_a_newer_one_is_recorded(
        app_url: str) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    with Ledger(Database(app_url, pool_size=1), old) as old_app:
        (first, first_email), = _people(old_app, 1, "early")
        with Ledger(Database(app_url, pool_size=1), new) as app:
            assert app.find_person(first_email) == first  # its first use records the key
            with pytest.raises(ConfigurationError, match="newest blind-index key"):
                old_app.create_person(email="late@example.org", name="Late", password=PASSWORD)
            with pytest.raises(ConfigurationError, match="newest blind-index key"):
                old_app.update_person(first, email="moved@example.org")
            assert old_app.find_person(first_email) == first  # reads go on until reloaded
            app.create_person(email="late@example.org", name="Late", password=PASSWORD)
    with Database(app_url, pool_size=1) as database, \
            pytest.raises(ConfigurationError, match="permission denied"):
        reindex_claims(database, new)  # moving claims is the owner's
    with pytest.raises(KeyNotFound, match="blind-index key"):
        Ledger(Database(app_url, pool_size=1), old).find_person(first_email)
    backwards = Keyring.from_json(json.dumps({
        **json.loads(new.to_json()),
        "active": {**json.loads(new.to_json())["active"],
                   "blind-index": old.active(KeyPurpose.BLIND_INDEX).id}}))
    with psycopg.connect(app_url) as conn, pytest.raises(KeyringError, match="newer"):
        check_keyring(conn, backwards)


def test_a_claim_that_does_not_check_is_left_where_it_is_and_reported(fresh: str) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        (victim, _), (attacker, _) = _people(old_app, 2, "forged")
    with psycopg.connect(fresh, autocommit=True) as owner:  # the victim's claim now names
        owner.execute("DELETE FROM email_lookup WHERE person_id = %s", (attacker,))
        owner.execute("UPDATE email_lookup SET person_id = %s WHERE person_id = %s",
                      (attacker, victim))  # the attacker
        with Database(fresh, pool_size=1) as database:
            summary = reindex_claims(database, new)
        assert (summary.reindexed, summary.remaining) == (0, 1)
        assert [u["person_id"] for u in summary.unconfirmed] == [str(attacker)]
        assert "not the digest" in summary.unconfirmed[0]["why"]
        assert _claim_keys(owner) == {old.active(KeyPurpose.BLIND_INDEX).id: 1}
        with Database(fresh, pool_size=1) as database, pytest.raises(Conflict, match="1 email"):
            retire_blind_key(database, new, old.active(KeyPurpose.BLIND_INDEX).id)


def test_email_changes_during_the_rotation_keep_one_claim_each(fresh: str) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        people = _people(old_app, 12, "busy")
    current = dict(people)
    errors: list[BaseException] = []
    stop = threading.Event()

    with Ledger(Database(fresh, pool_size=2), new) as app:
        def change_emails() -> None:
            try:
                for round_ in range(200):
                    if stop.is_set() and round_ > len(people):
                        return
                    person_id = people[round_ % len(people)][0]
                    email = f"changed-{round_}-{uuid.uuid4().hex[:6]}@example.org"
                    app.update_person(person_id, email=email)
                    current[person_id] = email
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=change_emails)
        writer.start()
        with Database(fresh, pool_size=1) as database:
            summary = reindex_claims(database, new, batch_size=1)
        stop.set()
        writer.join()
        assert not errors, errors
        assert summary.unconfirmed == [] and summary.remaining == 0
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT person_id) FROM email_lookup"
                                ).fetchone() == (12, 12)
        for person_id, email in current.items():
            assert app.find_person(email) == person_id
    _projections_ok(fresh, new)


def test_retirement_waits_for_the_claims_and_the_external_ids(fresh: str,
                                                              tmp_path: Path) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    old_key = old.active(KeyPurpose.BLIND_INDEX).id
    rows = tmp_path / "people.jsonl"
    rows.write_text(json.dumps({"email": "ret@example.org", "name": "Ret",
                                "external_id": "crm-1"}) + "\n")
    with Ledger(Database(fresh, pool_size=1), old) as old_app:
        old_app.import_people(rows)
    with Database(fresh, pool_size=1) as database:
        with pytest.raises(Conflict, match="active one"):
            retire_blind_key(database, old, old_key)
        with pytest.raises(Conflict, match="1 email claim"):
            retire_blind_key(database, new, old_key)
        assert reindex_claims(database, new).reindexed == 1
        with pytest.raises(Conflict, match="external id"):
            retire_blind_key(database, new, old_key)
        retired, forgotten = retire_blind_key(database, new, old_key, forget_external_ids=True)
    assert forgotten == 1 and retired.find(old_key) is None
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT count(*) FROM external_ids").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM peoplelog_key_checks WHERE key_id = %s",
                            (old_key,)).fetchone() == (0,)
    with Ledger(Database(fresh, pool_size=1), retired) as app:
        person = app.find_person("ret@example.org")
        assert app.get_person(person).name == "Ret"
    _projections_ok(fresh, retired)


def test_a_claim_labelled_with_the_wrong_key_is_outdated(fresh: str) -> None:
    old = Keyring.generate()
    new = old.with_new_key(KeyPurpose.BLIND_INDEX)
    with Ledger(Database(fresh, pool_size=1), new) as app:
        (person, _), = _people(app, 1, "label")
    with psycopg.connect(fresh, autocommit=True) as owner:
        owner.execute("UPDATE email_lookup SET key_id = %s",
                      (old.active(KeyPurpose.BLIND_INDEX).id,))
    with psycopg.connect(fresh) as conn:
        report = check_projections(conn, new)
    assert [(f.kind, f.person_id) for f in report.findings] == [("claim_outdated", person)]


def test_the_cli_adds_a_key_moves_the_claims_and_retires_the_old_key(
        cli: Cli, keyring_file: Path) -> None:
    email = f"cli-{uuid.uuid4().hex[:6]}@example.org"
    created = cli("person", "create", "--email", email, "--name", "Cli Reindex", "--json")
    assert created.code == 0, created.stderr
    before = Keyring.load(keyring_file).active(KeyPurpose.BLIND_INDEX).id
    added = cli("keys", "add-blind-key", "--json")
    assert added.code == 0, added.stderr
    after = Keyring.load(keyring_file).active(KeyPurpose.BLIND_INDEX).id
    assert added.json == {"key_id": after, "added": True} and after != before
    found = cli("person", "find", "--email", email, "--json")
    assert found.code == 0, found.stderr
    refused = cli("keys", "retire-blind-key", before, "--json")
    assert refused.code == 4 and "rotate-blind-index" in refused.stderr
    moved = cli("keys", "rotate-blind-index", "--batch-size", "1", "--json")
    assert moved.code == 0, moved.stderr
    assert moved.json["key_id"] == after and moved.json["remaining"] == 0
    assert moved.json["reindexed"] >= 1 and moved.json["unconfirmed"] == []
    assert cli("keys", "rotate-blind-index", "--batch-size", "0").code == 2
    retired = cli("keys", "retire-blind-key", before, "--json")
    assert retired.code == 0, retired.stderr
    assert retired.json == {"key_id": before, "retired": True, "external_ids_forgotten": 0}
    assert Keyring.load(keyring_file).find(before) is None
    again = cli("person", "find", "--email", email, "--json")
    assert again.code == 0 and again.stdout == found.stdout
    rotated = cli("keys", "rotate-blind-index", "--add-key", "--json")
    assert rotated.code == 0, rotated.stderr
    assert rotated.json["added"] == Keyring.load(keyring_file).active(
        KeyPurpose.BLIND_INDEX).id and rotated.json["remaining"] == 0
