"""Projections: ``people_latest`` and ``email_lookup`` checked against a fresh fold of the
ledger and rebuilt from it (``peoplelog projections check|rebuild``).

Each damaging test gets its own database, so nothing here disturbs other modules. Damage is
made the way an attacker or a buggy tool would: a superuser session changing the mutable
projection tables directly.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, CliResult, create_database, drop_database

from peoplelog.fields import BlindIndex, KeyPurpose, Keyring, normalise_email
from peoplelog.ledger import Database, Ledger, version_cid
from peoplelog.ledger._heads import load_data_key
from peoplelog.projections import (
    ProjectionReport,
    RebuildReport,
    check_projections,
    rebuild_projections,
    verify_ledger,
)
from peoplelog.schema import ChainBroken, Op, VersionRecord, apply_migrations

Conn = psycopg.Connection[Any]

NAMES = {
    "ada": "Ada Lovelace-Byron",
    "bob": "Bob Quintessence",
    "cyd": "Cyd Erasable-Person",
    "dee": "Dee Mixedcase",
}


@dataclass
class World:
    """A fresh database with a scripted history, its ledger and its CLI."""

    url: str
    ledger: Ledger
    keyring: Keyring
    cli: Cli
    ids: dict[str, uuid.UUID]
    emails: dict[str, str] = field(default_factory=dict)
    """Every plaintext email the history used (current and former)."""

    def superuser(self) -> Conn:
        return psycopg.connect(self.url, autocommit=True)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> None:
        with self.superuser() as conn:
            conn.execute(query.encode(), params)

    def check(self, keys: bool = True) -> ProjectionReport:
        keyring = self.keyring if keys else None
        return self.ledger.database.run(lambda conn: check_projections(conn, keyring))

    def rebuild(self) -> RebuildReport:
        return self.ledger.database.run(lambda conn: rebuild_projections(conn, self.keyring))

    def digest(self, email: str) -> bytes:
        return BlindIndex(self.keyring.active(KeyPurpose.BLIND_INDEX)).digest(
            normalise_email(email))

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        with self.superuser() as conn:
            latest = conn.execute("SELECT * FROM people_latest ORDER BY person_id").fetchall()
            lookup = conn.execute("SELECT * FROM email_lookup ORDER BY blind_index").fetchall()
        return latest, lookup

    def no_plaintext(self, *results: CliResult) -> None:
        secrets = [*self.emails.values(), *NAMES.values()]
        for result in results:
            for text in (result.stdout, result.stderr):
                for secret in secrets:
                    assert secret.lower() not in text.lower(), "plaintext in CLI output"


def script_history(ledger: Ledger, tag: str) -> tuple[dict[str, uuid.UUID], dict[str, str]]:
    """Creates, updates (name, email, password), a verification, an erasure."""
    emails = {
        "ada": f"ada.{tag}@example.org",
        "ada_new": f"ada.countess.{tag}@example.net",
        "bob": f"bob.{tag}@example.org",
        "cyd": f"cyd.{tag}@example.org",
        "dee": f"Dee.{tag}@Example.org",
        "dee_case": f"DEE.{tag}@example.org",
    }
    ids: dict[str, uuid.UUID] = {}
    ada = ledger.create_person(email=emails["ada"], name=NAMES["ada"], actor="signup")
    ids["ada"] = ada.person_id
    ledger.update_person(ada.person_id, name=NAMES["ada"] + " King", actor="ada")
    ledger.update_person(ada.person_id, email=emails["ada_new"], actor="ada",
                         reason="new address")
    ledger.update_person(ada.person_id, verified=True, actor="mailer")
    bob = ledger.create_person(email=emails["bob"], name=NAMES["bob"],
                               password_hash="$argon2id$v=19$m=65536,t=3,p=4$"
                               "c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA")
    ids["bob"] = bob.person_id
    cyd = ledger.create_person(email=emails["cyd"], name=NAMES["cyd"])
    ids["cyd"] = cyd.person_id
    ledger.update_person(cyd.person_id, name=NAMES["cyd"] + " II")
    ledger.erase_person(cyd.person_id, actor="dpo", reason="art. 17")
    dee = ledger.create_person(email=emails["dee"], name=NAMES["dee"], verified=True)
    ids["dee"] = dee.person_id
    ledger.update_person(dee.person_id, email=emails["dee_case"], actor="dee")
    return ids, emails


@pytest.fixture()
def world(server_url: str, keyring: Keyring, keyring_file: Path,
          tmp_path: Path) -> Iterator[World]:
    url = create_database(server_url, "projections")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    ledger = Ledger(Database(url, pool_size=3), keyring)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEOPLELOG_", "PG"))}
    env.pop("DATABASE_URL", None)
    env.update(PEOPLELOG_DATABASE_URL=url, PEOPLELOG_KEYRING=str(keyring_file),
               PEOPLELOG_HOME=str(tmp_path / "home"))
    try:
        ids, emails = script_history(ledger, uuid.uuid4().hex[:8])
        yield World(url, ledger, keyring, Cli(env), ids, emails)
    finally:
        ledger.close()
        drop_database(server_url, url)


NO_KEYS = {"PEOPLELOG_KEYRING": "/nonexistent/peoplelog-keyring.json"}


def kinds(report: ProjectionReport) -> set[str]:
    return {finding.kind for finding in report.findings}


def assert_all_ok(world: World) -> None:
    """API with and without keys, and the CLI, all say the projections are right."""
    keyed = world.check()
    assert keyed.ok, keyed.findings
    assert keyed.checked_lookup
    assert keyed.persons == 4
    assert keyed.claims == 3  # the erased person has none
    keyless = world.check(keys=False)
    assert keyless.ok, keyless.findings
    assert not keyless.checked_lookup
    assert (keyless.persons, keyless.claims) == (4, 3)
    result = world.cli("projections", "check", "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    document = result.json
    assert document["ok"] is True and document["findings"] == []
    assert document["checked_lookup"] is True and document["keyring"] == "used"
    world.no_plaintext(result)


# --- a clean history ---------------------------------------------------------------------


def test_check_passes_after_a_scripted_history(world: World) -> None:
    with world.superuser() as conn:
        assert verify_ledger(conn).ok
    assert_all_ok(world)
    # the erased person is in people_latest with erased_at, and claims nothing
    with world.superuser() as conn:
        row = conn.execute(
            "SELECT l.erased_at = p.recorded_at, l.created_at = p0.recorded_at"
            " FROM people_latest l JOIN people p ON p.person_id = l.person_id"
            " AND p.version = l.version JOIN people p0 ON p0.person_id = l.person_id"
            " AND p0.version = 0 WHERE l.person_id = %s", (world.ids["cyd"],)).fetchone()
    assert row == (True, True)


def test_cli_check_without_keys_checks_less_and_says_so(world: World) -> None:
    result = world.cli("projections", "check", "--json", env=NO_KEYS)
    assert result.code == 0, result.stderr
    document = result.json
    assert document["ok"] is True
    assert document["checked_lookup"] is False
    assert document["keyring"].startswith("not used: ")
    human = world.cli("projections", "check", env=NO_KEYS)
    assert human.code == 0
    assert "checked_lookup: no" in human.stdout
    world.no_plaintext(result, human)


def test_cli_help_and_examples(world: World) -> None:
    for command in ("check", "rebuild"):
        result = world.cli("projections", command, "--help")
        assert result.code == 0
        assert f"peoplelog projections {command} --json" in result.stdout
    assert world.cli("projections").code == 2


# --- damage, detection, repair -----------------------------------------------------------

Damage = Callable[[World], None]


def stale_latest(w: World) -> None:  # an old name back in the projection
    w.execute("UPDATE people_latest SET name = (SELECT name FROM people WHERE person_id = %s"
              " AND version = 0) WHERE person_id = %s", (w.ids["ada"], w.ids["ada"]))


def stale_version(w: World) -> None:  # a head that lags behind the ledger
    w.execute("UPDATE people_latest l SET version = p.version, cid = p.cid, op = p.op"
              " FROM people p WHERE p.person_id = l.person_id AND p.version = 0"
              " AND l.person_id = %s", (w.ids["dee"],))


def deleted_latest(w: World) -> None:
    w.execute("DELETE FROM people_latest WHERE person_id = %s", (w.ids["bob"],))


def extra_latest(w: World) -> None:
    w.execute("INSERT INTO people_latest SELECT gen_random_uuid(), version, cid, op,"
              " created_at, recorded_at, email, name, password, verified_at, erased_at"
              " FROM people_latest WHERE person_id = %s", (w.ids["bob"],))


def unerased_latest(w: World) -> None:
    w.execute("UPDATE people_latest SET erased_at = NULL WHERE person_id = %s",
              (w.ids["cyd"],))


def wrong_person(w: World) -> None:  # ada's email now logs in as bob
    w.execute("UPDATE email_lookup SET person_id = %s WHERE person_id = %s",
              (w.ids["bob"], w.ids["ada"]))


def missing_claim(w: World) -> None:
    w.execute("DELETE FROM email_lookup WHERE person_id = %s", (w.ids["bob"],))


def erased_claim(w: World) -> None:  # the erased person's email is findable again
    w.execute("INSERT INTO email_lookup VALUES (%s, %s, %s, 1)",
              (w.digest(w.emails["cyd"]), w.ids["cyd"],
               w.keyring.active(KeyPurpose.BLIND_INDEX).id))


def old_claim(w: World) -> None:  # ada's former address still points at her
    w.execute("INSERT INTO email_lookup VALUES (%s, %s, %s, 1)",
              (w.digest(w.emails["ada"]), w.ids["ada"],
               w.keyring.active(KeyPurpose.BLIND_INDEX).id))


def unknown_claim(w: World) -> None:
    w.execute("INSERT INTO email_lookup VALUES (%s, %s, 'blind-index-1', 1)",
              (os.urandom(32), uuid.uuid4()))


def outdated_claim(w: World) -> None:
    w.execute("UPDATE email_lookup SET norm = 0 WHERE person_id = %s", (w.ids["dee"],))


def shredded_key(w: World) -> None:  # a living person's data key is gone
    w.execute("DELETE FROM person_keys WHERE person_id = %s", (w.ids["bob"],))


# (damage, kinds with keys, kinds without keys, the person the first finding names)
DAMAGES: list[tuple[Damage, set[str], set[str], str]] = [
    (stale_latest, {"latest_stale"}, {"latest_stale"}, "ada"),
    (stale_version, {"latest_stale"}, {"latest_stale"}, "dee"),
    (deleted_latest, {"latest_missing"}, {"latest_missing"}, "bob"),
    (extra_latest, {"latest_extra"}, {"latest_extra"}, ""),
    (unerased_latest, {"latest_stale"}, {"latest_stale"}, "cyd"),
    (wrong_person, {"claim_wrong_person"}, {"claim_duplicate", "claim_missing"}, "ada"),
    (missing_claim, {"claim_missing"}, {"claim_missing"}, "bob"),
    (erased_claim, {"claim_erased_person"}, {"claim_erased_person"}, "cyd"),
    (old_claim, {"claim_extra"}, {"claim_duplicate"}, "ada"),
    (unknown_claim, {"claim_unknown_person"}, {"claim_unknown_person"}, ""),
    (outdated_claim, {"claim_outdated"}, set(), "dee"),
]


@pytest.mark.parametrize(("damage", "keyed", "keyless", "who"), DAMAGES,
                         ids=[d[0].__name__ for d in DAMAGES])
def test_damage_is_detected_and_rebuild_repairs_it(
    world: World, damage: Damage, keyed: set[str], keyless: set[str], who: str
) -> None:
    damage(world)
    report = world.check()
    assert not report.ok
    assert kinds(report) == keyed, report.findings
    if who:
        assert {f.person_id for f in report.findings} == {world.ids[who]}, report.findings
    without = world.check(keys=False)
    assert kinds(without) == keyless, without.findings
    assert without.ok is (not keyless)

    result = world.cli("projections", "check", "--json")
    assert result.code == 1, (result.stdout, result.stderr)
    assert result.stdout, result.stderr
    assert {f["kind"] for f in result.json["findings"]} == keyed
    human = world.cli("projections", "check")
    assert human.code == 1
    for kind in keyed:
        assert kind in human.stdout

    rebuilt = world.cli("projections", "rebuild", "--json")
    assert rebuilt.code == 0, (rebuilt.stdout, rebuilt.stderr)
    assert rebuilt.json["persons"] == 4 and rebuilt.json["claims"] == 3
    world.no_plaintext(result, human, rebuilt)
    assert_all_ok(world)
    # and the rebuilt lookup works for logins again
    assert world.ledger.find_person(world.emails["ada_new"]) == world.ids["ada"]
    assert world.ledger.find_person(world.emails["bob"]) == world.ids["bob"]


def test_stale_finding_names_the_columns_and_versions(world: World) -> None:
    stale_version(world)
    (finding,) = world.check().findings
    assert finding.kind == "latest_stale"
    assert finding.person_id == world.ids["dee"] and finding.version == 1
    assert {"version", "cid", "op"} <= set(finding.detail.split(": ", 1)[1].split(", "))
    assert finding.stored != finding.computed


def test_wrong_person_finding_names_both_persons(world: World) -> None:
    wrong_person(world)
    (finding,) = world.check().findings
    assert finding.person_id == world.ids["ada"]
    assert finding.stored == str(world.ids["bob"])
    assert finding.computed == str(world.ids["ada"])


def test_many_kinds_at_once(world: World) -> None:
    for damage in (stale_latest, extra_latest, deleted_latest, missing_claim, erased_claim):
        damage(world)
    assert kinds(world.check()) == {"latest_stale", "latest_missing", "latest_extra",
                                    "claim_missing", "claim_erased_person"}
    report = world.rebuild()
    assert (report.persons, report.claims) == (4, 3)
    assert report.seconds >= 0
    assert_all_ok(world)


def test_rebuild_of_intact_projections_changes_nothing(world: World) -> None:
    before = world.snapshot()
    world.rebuild()
    assert world.snapshot() == before
    assert_all_ok(world)


# --- a living person whose email cannot be read ------------------------------------------


def test_unreadable_email_is_a_finding_and_blocks_rebuild(world: World) -> None:
    shredded_key(world)
    report = world.check()
    assert kinds(report) == {"email_undecryptable"}
    assert {f.person_id for f in report.findings} == {world.ids["bob"]}
    assert world.check(keys=False).ok  # the lookup's shape is intact
    before = world.snapshot()
    with pytest.raises(ChainBroken, match=str(world.ids["bob"])):
        world.rebuild()
    assert world.snapshot() == before
    result = world.cli("projections", "rebuild", "--json")
    assert result.code == 1, result.stderr
    world.no_plaintext(result)


# --- rebuild is atomic ---------------------------------------------------------------------


def forge_duplicate_email(world: World) -> None:
    """Append (outside the append path) a version of bob that carries ada's current email,
    properly encrypted under bob's data key and with a correct CID: the chain verifies, but
    two persons now have the same current email."""
    with world.superuser() as conn:
        head = conn.execute(
            "SELECT version, cid, name, password, verified_at,"
            " (extract(epoch FROM recorded_at) * 1000000)::bigint FROM people"
            " WHERE person_id = %s ORDER BY version DESC LIMIT 1", (world.ids["bob"],)
        ).fetchone()
        assert head is not None
        version, cid, name, password, verified_at, recorded_at = head
        data_key = load_data_key(conn, world.keyring, world.ids["bob"])
        email = data_key.encrypt("email", normalise_email(world.emails["ada_new"])
                                 .display.encode())
        record = VersionRecord(
            person_id=world.ids["bob"], version=version + 1, prev=cid, op=Op.UPDATED.value,
            recorded_at=recorded_at + 1, actor="mallory", reason=None, email=email,
            name=None if name is None else bytes(name),
            password=None if password is None else bytes(password),
            verified_at=verified_at,
        )
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at,"
            " actor, reason, email, name, password, verified_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000000.0), %s, %s, %s, %s,"
            " %s, %s)",
            (record.person_id, record.version, version_cid(record), record.prev,
             record.format, record.op, record.recorded_at, record.actor, record.reason,
             record.email, record.name, record.password, record.verified_at),
        )


def test_duplicate_claim_aborts_rebuild_and_changes_nothing(world: World) -> None:
    forge_duplicate_email(world)
    with psycopg.connect(world.url, autocommit=True) as conn:
        assert verify_ledger(conn).ok  # the forgery is chain-valid
    report = world.check()
    # bob's head is not in people_latest, two persons have ada's email, bob's former
    # address still points at him
    assert kinds(report) == {"latest_stale", "claim_conflict", "claim_extra"}
    conflict = {f.person_id for f in report.findings if f.kind == "claim_conflict"}
    assert conflict == {world.ids["ada"], world.ids["bob"]}
    # damage the projections too, so that an aborted rebuild would show if it half-ran
    missing_claim(world)
    deleted_latest(world)
    before = world.snapshot()

    with pytest.raises(ChainBroken) as raised:
        world.rebuild()
    assert str(world.ids["ada"]) in raised.value.message
    assert str(world.ids["bob"]) in raised.value.message
    assert world.snapshot() == before

    result = world.cli("projections", "rebuild", "--json")
    assert result.code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "chain_broken"
    assert "same current email" in error["message"]
    world.no_plaintext(result)
    assert world.snapshot() == before
    check = world.cli("projections", "check", "--json")
    assert check.code == 1
    assert "claim_conflict" in {f["kind"] for f in check.json["findings"]}


# --- keys ------------------------------------------------------------------------------------


def test_rebuild_without_keys_is_refused(world: World) -> None:
    missing_claim(world)
    before = world.snapshot()
    for extra in ((), ("--json",)):
        result = world.cli("projections", "rebuild", *extra, env=NO_KEYS)
        assert result.code == 2, (result.stdout, result.stderr)
        assert result.stdout == ""
        assert "keyring" in result.stderr
    assert world.snapshot() == before


def test_a_wrong_keyring_is_refused(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other-keyring.json"
    Keyring.generate().save(other)
    before = world.snapshot()
    for command in ("check", "rebuild"):
        result = world.cli("projections", command, "--json",
                           env={"PEOPLELOG_KEYRING": str(other)})
        assert result.code == 2, (command, result.stdout, result.stderr)
        assert "does not match this database" in result.stderr
    assert world.snapshot() == before


# --- concurrency -----------------------------------------------------------------------------


def test_appends_wait_for_a_rebuild(world: World) -> None:
    """While a rebuild holds its locks, an append waits; it lands after the rebuild, and the
    projections are right afterwards."""
    missing_claim(world)
    conn = psycopg.connect(world.url)  # not autocommit: the rebuild runs in our transaction
    try:
        conn.execute("SELECT 1")
        rebuild_projections(conn, world.keyring)
        done = threading.Event()
        errors: list[BaseException] = []

        def append() -> None:
            try:
                world.ledger.update_person(world.ids["bob"], name="Robert Q.", actor="bob")
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=append)
        worker.start()
        assert not done.wait(0.8), "the append did not wait for the rebuild's lock"
        conn.commit()
        assert done.wait(30)
        worker.join()
        assert not errors, errors
    finally:
        conn.close()
    report = world.check()
    assert report.ok, report.findings
    assert world.ledger.get_person(world.ids["bob"]).version == 1


def test_check_reads_one_snapshot_while_appends_run(world: World) -> None:
    """Appends running during a check never show up as differences."""
    stop = time.monotonic() + 2.0
    errors: list[BaseException] = []

    def writer() -> None:
        n = 0
        try:
            while time.monotonic() < stop:
                n += 1
                world.ledger.update_person(world.ids["bob"], name=f"Bob {n}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while time.monotonic() < stop:
            report = world.check()
            assert report.ok, report.findings
    finally:
        thread.join()
    assert not errors, errors
