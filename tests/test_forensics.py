"""Forensic queries on a scripted history: a person as of a time (at exact boundaries),
diffs between versions with and without keys, the changes written in a window (filtered and
paged), the history with values, and the same through the CLI with ``--json``."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from conftest import Cli, CliResult

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.projections import (
    ChangesPage,
    Forensics,
    changes,
    diff_versions,
    history_with_values,
    parse_timestamp,
    person_as_of,
)
from peoplelog.schema import InvalidInput, PersonNotFound, VersionNotFound

Conn = psycopg.Connection[Any]
MICRO = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ADA_EMAIL = "ada.forensic@example.org"
ADA_EMAIL_NEW = "countess.forensic@example.org"
ADA_NAME = "Ada Lovelace"
ADA_NAME_NEW = "Ada King"
BOB_EMAIL = "bob.forensic@example.org"
BOB_EMAIL_NEW = "robert.forensic@example.org"
BOB_NAME = "Bob Babbage"
CID_NAME = "Cid Campeador"
CID_EMAIL = "cid.forensic@example.org"
PLAINTEXTS = ("ada.forensic", "countess.forensic", "Lovelace", "Ada King", "bob.forensic",
              "robert.forensic", "Babbage", "Campeador", "cid.forensic")
PASSWORD = "forensic-passphrase-1"


@dataclass(frozen=True)
class Version:
    person_id: uuid.UUID
    version: int
    cid: str
    op: str
    recorded_at: datetime
    actor: str | None

    @property
    def key(self) -> tuple[datetime, uuid.UUID, int]:
        return (self.recorded_at, self.person_id, self.version)


@dataclass(frozen=True)
class Story:
    ada: uuid.UUID
    bob: uuid.UUID
    cid: uuid.UUID
    versions: dict[tuple[uuid.UUID, int], Version]

    def at(self, person: uuid.UUID, version: int) -> datetime:
        return self.versions[(person, version)].recorded_at

    def newest_first(self) -> list[Version]:
        return sorted(self.versions.values(), key=lambda v: v.key, reverse=True)


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICRO


def read_versions(conn: Conn) -> dict[tuple[uuid.UUID, int], Version]:
    rows = conn.execute(
        "SELECT person_id, version, cid, op, recorded_at, actor FROM people"
    ).fetchall()
    return {(r[0], r[1]): Version(r[0], r[1], r[2], r[3], r[4].astimezone(UTC), r[5])
            for r in rows}


@pytest.fixture(scope="module")
def story(ledger: Ledger, database_url: str) -> Story:
    """The script, in order (ties are made on purpose, through prepared records):

    ada v0 created (signup) | bob v0 created (signup) | ada v1 name (support)
    | bob v1 email (support, same recorded_at as ada v1) | ada v2 verified (mailer)
    | ada v3 password (support, same recorded_at as ada v2) | cid v0 created (import)
    | bob v2 erased (dpo) | ada v4 email (selfservice)
    """
    ada = ledger.create_person(email=ADA_EMAIL, name=ADA_NAME, password=PASSWORD,
                               actor="signup", reason="registered").person_id
    bob = ledger.create_person(email=BOB_EMAIL, name=BOB_NAME, actor="signup").person_id
    ledger.update_person(ada, name=ADA_NAME_NEW, actor="support", reason="married")
    ada_v1 = ledger.history(ada)[1].recorded_at
    record = ledger.prepare_update(bob, email=BOB_EMAIL_NEW, actor="support",
                                   reason="new address")
    assert ledger.append(dataclasses.replace(record, recorded_at=micros(ada_v1))).version == 1
    ledger.update_person(ada, verified=True, actor="mailer")
    ada_v2 = ledger.history(ada)[2].recorded_at
    record = ledger.prepare_update(ada, password=PASSWORD + "!", actor="support",
                                   reason="reset")
    assert ledger.append(dataclasses.replace(record, recorded_at=micros(ada_v2))).version == 3
    cid = ledger.create_person(email=CID_EMAIL, name=CID_NAME, actor="import",
                               reason="batch").person_id
    ledger.erase_person(bob, actor="dpo", reason="art. 17")
    ledger.update_person(ada, email=ADA_EMAIL_NEW, actor="selfservice")
    with psycopg.connect(database_url, autocommit=True) as conn:
        versions = read_versions(conn)
    assert len(versions) == 9
    return Story(ada=ada, bob=bob, cid=cid, versions=versions)


@pytest.fixture(scope="module")
def keyless(database_url: str) -> Iterator[Ledger]:
    led = Ledger(Database(database_url, pool_size=1), None)
    yield led
    led.close()


@pytest.fixture(scope="module")
def fx(ledger: Ledger) -> Forensics:
    return Forensics(ledger)


@pytest.fixture(scope="module")
def fx0(keyless: Ledger) -> Forensics:
    return Forensics(keyless)


def no_plaintext(text: str) -> None:
    for secret in PLAINTEXTS:
        assert secret not in text, secret


def walk(fx: Forensics, limit: int, **filters: Any) -> list[tuple[uuid.UUID, int]]:
    seen: list[tuple[uuid.UUID, int]] = []
    cursor = None
    for _ in range(100):
        page = fx.changes(limit=limit, before=cursor, **filters)
        assert len(page.changes) <= limit
        seen.extend((c.person_id, c.version) for c in page.changes)
        if page.next is None:
            return seen
        assert len(page.changes) == limit
        cursor = page.next
    raise AssertionError("paging did not end")


# --- timestamps ---------------------------------------------------------------------------


class TestTimestamps:
    def test_z_and_offsets_are_the_same_instant(self) -> None:
        a = parse_timestamp("2024-05-01T12:00:00Z")
        b = parse_timestamp("2024-05-01T14:00:00+02:00")
        c = parse_timestamp(datetime(2024, 5, 1, 7, tzinfo=timezone(timedelta(hours=-5))))
        assert a == b == c and a.tzinfo is UTC

    @pytest.mark.parametrize("text", [
        "2024-05-01T12:00:00", "2024-05-01", "2024-05-01 12:00",
    ])
    def test_naive_times_are_refused_not_guessed(self, text: str) -> None:
        with pytest.raises(InvalidInput, match="time zone"):
            parse_timestamp(text, "--since")

    @pytest.mark.parametrize("text", [
        "", "yesterday", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", "1" * 100,
        "2024-05-01T12:00:00+25:00",
    ])
    def test_garbage_is_refused_without_echo(self, text: str) -> None:
        with pytest.raises(InvalidInput, match="--since") as err:
            parse_timestamp(text, "--since")
        if text:
            assert text not in str(err.value)

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(InvalidInput, match="time zone"):
            parse_timestamp(datetime(2024, 5, 1, 12))

    def test_out_of_range(self) -> None:
        with pytest.raises(InvalidInput, match="out of range"):
            parse_timestamp("9999-12-31T23:59:59-05:00")
        with pytest.raises(InvalidInput, match="timestamp"):
            parse_timestamp(12345)  # type: ignore[arg-type]


# --- as of --------------------------------------------------------------------------------


class TestAsOf:
    def test_exactly_at_a_version_is_that_version(self, fx: Forensics, story: Story) -> None:
        view = fx.as_of(story.ada, story.at(story.ada, 1))
        assert (view.version, view.name, view.email) == (1, ADA_NAME_NEW, ADA_EMAIL)

    def test_one_microsecond_before_is_the_previous(self, fx: Forensics, story: Story) -> None:
        view = fx.as_of(story.ada, story.at(story.ada, 1) - MICRO)
        assert (view.version, view.name) == (0, ADA_NAME)

    def test_between_versions(self, fx: Forensics, story: Story) -> None:
        t0, t1 = story.at(story.ada, 0), story.at(story.ada, 1)
        view = fx.as_of(story.ada, t0 + (t1 - t0) / 2)
        assert view.version == 0 and view.cid == story.versions[(story.ada, 0)].cid

    def test_a_tie_gives_the_newest_version(self, fx: Forensics, story: Story) -> None:
        assert story.at(story.ada, 2) == story.at(story.ada, 3)
        view = fx.as_of(story.ada, story.at(story.ada, 2))
        assert view.version == 3 and view.verified_at is not None

    def test_at_creation_and_before(self, fx: Forensics, story: Story) -> None:
        created = story.at(story.ada, 0)
        assert fx.as_of(story.ada, created).version == 0
        with pytest.raises(VersionNotFound, match="did not exist yet") as err:
            fx.as_of(story.ada, created - MICRO)
        assert (created - MICRO).isoformat() in str(err.value)

    def test_far_future_is_the_newest(self, fx: Forensics, story: Story) -> None:
        view = fx.as_of(story.ada, "9999-01-01T00:00:00Z")
        assert (view.version, view.email) == (4, ADA_EMAIL_NEW)

    def test_text_forms_agree(self, fx: Forensics, story: Story) -> None:
        moment = story.at(story.ada, 1)
        as_z = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        as_offset = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
        assert fx.as_of(story.ada, as_z).version == 1
        assert fx.as_of(str(story.ada), as_offset).version == 1

    def test_after_erasure(self, fx: Forensics, story: Story) -> None:
        view = fx.as_of(story.bob, story.at(story.bob, 2) + timedelta(days=1))
        assert (view.version, view.op, view.erased) == (2, "erased", True)
        assert view.email is None and view.name is None

    def test_before_erasure_values_are_shredded(self, fx: Forensics, story: Story) -> None:
        view = fx.as_of(story.bob, story.at(story.bob, 1))
        assert (view.version, view.erased, view.email, view.name) == (1, True, None, None)

    def test_without_keys(self, fx0: Forensics, story: Story) -> None:
        view = fx0.as_of(story.ada, story.at(story.ada, 1))
        assert (view.version, view.email, view.name, view.erased) == (1, None, None, False)

    def test_not_found_and_bad_input(self, fx: Forensics, story: Story, conn: Conn) -> None:
        with pytest.raises(PersonNotFound):
            fx.as_of(uuid.uuid4(), "2030-01-01T00:00:00Z")
        with pytest.raises(InvalidInput, match="time zone"):
            fx.as_of(story.ada, "2030-01-01T00:00:00")
        with pytest.raises(InvalidInput, match="UUID"):
            fx.as_of("not-a-person", "2030-01-01T00:00:00Z")
        # the function on a bare connection says the same
        with pytest.raises(InvalidInput, match="time zone"):
            person_as_of(conn, None, story.ada, datetime(2030, 1, 1))


# --- diff ---------------------------------------------------------------------------------


class TestDiff:
    def test_with_keys(self, fx: Forensics, story: Story) -> None:
        diff = fx.diff(story.ada, 0, 1)
        assert (diff.from_version, diff.to_version, diff.decrypted, diff.erased) == (
            0, 1, True, False)
        assert (diff.op, diff.actor, diff.reason) == ("updated", "support", "married")
        assert diff.from_cid == story.versions[(story.ada, 0)].cid
        assert diff.to_cid == story.versions[(story.ada, 1)].cid
        assert diff.recorded_at == story.at(story.ada, 1)
        [change] = diff.changed
        assert (change.field, change.old, change.new, change.shown) == (
            "name", ADA_NAME, ADA_NAME_NEW, True)

    def test_every_field_and_the_password_is_never_shown(self, fx: Forensics,
                                                         story: Story) -> None:
        diff = fx.diff(story.ada, 0, 3)
        by_field = {c.field: c for c in diff.changed}
        assert list(by_field) == ["name", "password", "verified_at"]
        password = by_field["password"]
        assert (password.shown, password.old, password.new) == (False, None, None)
        assert (password.old_set, password.new_set) == (True, True)
        verified = by_field["verified_at"]
        assert (verified.shown, verified.old, verified.old_set, verified.new_set) == (
            True, None, False, True)
        assert verified.new is not None and verified.new.endswith("Z")
        assert (diff.op, diff.actor, diff.reason) == ("password_changed", "support", "reset")
        assert "$argon2" not in json.dumps(diff.model_dump(mode="json"))
        # a new mailbox drops the verification: verified_at goes from set to unset
        diff = fx.diff(story.ada, 3, 4)
        by_field = {c.field: c for c in diff.changed}
        assert list(by_field) == ["email", "verified_at"]
        assert (by_field["email"].old, by_field["email"].new) == (ADA_EMAIL, ADA_EMAIL_NEW)
        assert (by_field["verified_at"].new, by_field["verified_at"].new_set) == (None, False)
        assert (diff.op, diff.actor) == ("updated", "selfservice")

    def test_reverse_and_same(self, fx: Forensics, story: Story) -> None:
        back = fx.diff(story.ada, 1, 0)
        assert [(c.field, c.old, c.new) for c in back.changed] == [
            ("name", ADA_NAME_NEW, ADA_NAME)]
        assert (back.op, back.actor) == ("created", "signup")
        assert fx.diff(story.ada, 2, 2).changed == []

    def test_without_keys_names_only(self, fx0: Forensics, story: Story,
                                     keyring: Keyring, conn: Conn) -> None:
        for diff in (fx0.diff(story.ada, 0, 4), diff_versions(conn, None, story.ada, 0, 4)):
            assert diff.decrypted is False and diff.erased is False
            assert [c.field for c in diff.changed] == ["email", "name", "password"]
            for change in diff.changed:
                assert (change.shown, change.old, change.new) == (False, None, None)
                assert change.old_set and change.new_set
            no_plaintext(json.dumps(diff.model_dump(mode="json")))
        # the same diff with keys on a bare connection decrypts
        with_keys = diff_versions(conn, keyring, story.ada, 0, 1)
        assert with_keys.decrypted and with_keys.changed[0].new == ADA_NAME_NEW

    def test_erased_person(self, fx: Forensics, story: Story) -> None:
        diff = fx.diff(story.bob, 0, 2)
        assert (diff.erased, diff.decrypted, diff.op, diff.actor) == (True, False, "erased",
                                                                      "dpo")
        assert {c.field for c in diff.changed} == {"email", "name"}
        for change in diff.changed:
            assert (change.old, change.new, change.old_set, change.new_set) == (
                None, None, True, False)
        mid = fx.diff(story.bob, 0, 1)
        assert [(c.field, c.shown, c.old) for c in mid.changed] == [("email", False, None)]

    def test_not_found_and_bad_versions(self, fx: Forensics, story: Story) -> None:
        with pytest.raises(VersionNotFound, match="newest is 4"):
            fx.diff(story.ada, 0, 9)
        with pytest.raises(PersonNotFound):
            fx.diff(uuid.uuid4(), 0, 1)
        with pytest.raises(InvalidInput):
            fx.diff(story.ada, -1, 1)
        with pytest.raises(InvalidInput):
            fx.diff(story.ada, 0, True)

    def test_repr_hides_values(self, fx: Forensics, story: Story) -> None:
        diff = fx.diff(story.ada, 0, 4)
        no_plaintext(repr(diff))
        no_plaintext(str(diff))


# --- history with values ------------------------------------------------------------------


class TestHistory:
    def test_with_keys(self, fx: Forensics, ledger: Ledger, story: Story) -> None:
        entries = fx.history(story.ada)
        plain = ledger.history(story.ada)
        assert [(e.version, e.cid, e.prev, e.op, e.actor, e.reason, e.changed)
                for e in entries] == [
            (e.version, e.cid, e.prev, e.op, e.actor, e.reason, e.changed) for e in plain]
        assert [e.values for e in entries[:2]] == [
            {"email": ADA_EMAIL, "name": ADA_NAME}, {"name": ADA_NAME_NEW}]
        assert entries[2].values is not None and list(entries[2].values) == ["verified_at"]
        assert entries[3].changed == ["password"] and entries[3].values == {}
        assert entries[4].values == {"email": ADA_EMAIL_NEW, "verified_at": None}
        assert entries[4].facts == {"email": "changed", "name": "unchanged",
                                    "password": "unchanged", "verified_at": "changed"}
        assert entries[1].facts == {"email": "unchanged", "name": "changed",
                                    "password": "unchanged", "verified_at": "absent"}
        assert all(e.erased is False for e in entries)
        for entry in entries:
            no_plaintext(repr(entry))
        # the plain history is unchanged: no values, no facts
        assert all(e.values is None and e.facts is None for e in plain)

    def test_without_keys_ciphertext_facts(self, fx0: Forensics, story: Story,
                                           conn: Conn) -> None:
        for entries in (fx0.history(story.ada), history_with_values(conn, None, story.ada)):
            assert all(e.values is None for e in entries)
            assert entries[0].facts == {
                "email": "changed", "name": "changed", "password": "changed",
                "verified_at": "absent"}
            assert entries[3].facts == {"email": "unchanged", "name": "unchanged",
                                        "password": "changed", "verified_at": "unchanged"}
            no_plaintext(json.dumps([e.model_dump(mode="json") for e in entries]))

    def test_erased_person(self, fx: Forensics, story: Story) -> None:
        entries = fx.history(story.bob)
        assert [e.op for e in entries] == ["created", "updated", "erased"]
        assert all(e.erased is True and e.values is None for e in entries)
        assert entries[2].facts == {"email": "changed", "name": "changed",
                                    "password": "absent", "verified_at": "absent"}

    def test_not_found(self, fx: Forensics) -> None:
        with pytest.raises(PersonNotFound):
            fx.history(uuid.uuid4())


# --- changes ------------------------------------------------------------------------------


class TestChanges:
    def test_everything_newest_first(self, fx: Forensics, story: Story) -> None:
        page = fx.changes()
        assert page.limit == 100 and page.next is None
        assert [(c.person_id, c.version) for c in page.changes] == [
            (v.person_id, v.version) for v in story.newest_first()]
        first = {(c.person_id, c.version): c for c in page.changes}[(story.ada, 1)]
        assert (first.op, first.actor, first.reason, first.changed) == (
            "updated", "support", "married", ["name"])
        assert first.cid == story.versions[(story.ada, 1)].cid
        assert first.recorded_at == story.at(story.ada, 1)

    def test_changed_fields_match_the_history(self, fx: Forensics, ledger: Ledger,
                                              story: Story) -> None:
        listed = {(c.person_id, c.version): c.changed for c in fx.changes().changes}
        for person in (story.ada, story.bob, story.cid):
            for entry in ledger.history(person):
                assert listed[(person, entry.version)] == entry.changed

    @pytest.mark.parametrize("limit", [1, 2, 3, 4, 8, 9, 10, 1000])
    def test_paging_visits_every_version_once(self, fx: Forensics, story: Story,
                                              limit: int) -> None:
        seen = walk(fx, limit)
        assert len(seen) == len(set(seen)) == len(story.versions)
        assert seen == [(v.person_id, v.version) for v in story.newest_first()]

    def test_ties_are_ordered_by_person_then_version(self, story: Story) -> None:
        # the script made two ties; the keyset order must break them deterministically
        assert story.at(story.ada, 1) == story.at(story.bob, 1)
        assert story.at(story.ada, 2) == story.at(story.ada, 3)

    def test_by_actor(self, fx: Forensics, story: Story) -> None:
        expected = [(v.person_id, v.version) for v in story.newest_first()
                    if v.actor == "support"]
        assert expected and sorted(expected) == sorted(
            [(story.ada, 1), (story.bob, 1), (story.ada, 3)])
        assert walk(fx, 1, actor="support") == expected
        assert walk(fx, 1, actor="  support ") == expected  # normalised like when written
        assert fx.changes(actor="nobody").changes == []

    def test_by_person(self, fx: Forensics, story: Story) -> None:
        assert walk(fx, 2, person_id=story.ada) == [(story.ada, v) for v in (4, 3, 2, 1, 0)]
        assert walk(fx, 2, person_id=str(story.bob)) == [(story.bob, v) for v in (2, 1, 0)]

    def test_window_is_since_inclusive_until_exclusive(self, fx: Forensics,
                                                       story: Story) -> None:
        since, until = story.at(story.ada, 1), story.at(story.bob, 2)
        expected = [(v.person_id, v.version) for v in story.newest_first()
                    if since <= v.recorded_at < until]
        assert (story.ada, 1) in expected and (story.bob, 1) in expected
        assert (story.bob, 2) not in expected
        for limit in (1, 2, 100):
            assert walk(fx, limit, since=since, until=until) == expected
        iso = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert walk(fx, 3, since=iso, until=until) == expected
        just_after = walk(fx, 100, since=since + MICRO, until=until)
        assert (story.ada, 1) not in just_after and (story.bob, 1) not in just_after
        assert walk(fx, 100, until=story.at(story.ada, 0)) == []

    def test_filters_combine(self, fx: Forensics, story: Story) -> None:
        got = walk(fx, 1, actor="support", person_id=story.ada,
                   since=story.at(story.ada, 2))
        assert got == [(story.ada, 3)]

    def test_bare_connection(self, conn: Conn, story: Story) -> None:
        page = changes(conn, person_id=story.cid)
        assert isinstance(page, ChangesPage)
        assert [(c.person_id, c.version, c.op, c.actor, c.reason) for c in page.changes] == [
            (story.cid, 0, "created", "import", "batch")]

    def test_bad_input(self, fx: Forensics, story: Story) -> None:
        t = story.at(story.ada, 1)
        for limit in (0, -1, 1001, True, "10"):
            with pytest.raises(InvalidInput, match="limit"):
                fx.changes(limit=limit)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="earlier"):
            fx.changes(since=t, until=t)
        with pytest.raises(InvalidInput, match="earlier"):
            fx.changes(since=t, until=t - MICRO)
        with pytest.raises(InvalidInput, match="time zone"):
            fx.changes(since="2024-01-01T00:00:00")
        with pytest.raises(InvalidInput, match="UUID"):
            fx.changes(person_id="someone")
        for cursor in ("", "garbage", "c1.", "c1.!!!", "c1.WzEsMiwzXQ", "c1." + "A" * 300):
            with pytest.raises(InvalidInput, match="cursor"):
                fx.changes(before=cursor)

    def test_a_cursor_belongs_to_its_filters(self, fx: Forensics, story: Story) -> None:
        page = fx.changes(limit=1, actor="support")
        assert page.next is not None
        with pytest.raises(InvalidInput, match="other filters"):
            fx.changes(limit=1, before=page.next)
        assert fx.changes(limit=5, actor="support", before=page.next).changes  # limit may vary


def test_indexes_exist(conn: Conn) -> None:
    names = {r[0] for r in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'people'")}
    assert {"people_recorded", "people_actor_recorded"} <= names


# --- CLI ----------------------------------------------------------------------------------


def ok(result: CliResult) -> Any:
    assert result.code == 0, (result.code, result.stderr)
    assert result.stderr == "", result.stderr
    return result.json


def usage_error(result: CliResult, kind: str | None = None) -> dict[str, Any]:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    error: dict[str, Any] = json.loads(result.stderr)
    if kind is not None:
        assert error["error"] == kind
    return error


def no_keys_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"PEOPLELOG_KEYRING": str(tmp_path_factory.mktemp("nokeys") / "absent.json")}


@pytest.fixture(scope="module")
def nokeys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return no_keys_env(tmp_path_factory)


class TestCli:
    def test_show_as_of(self, cli: Cli, story: Story) -> None:
        at = story.at(story.ada, 1)
        for text in (at.isoformat(), at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     at.astimezone(timezone(timedelta(hours=-3))).isoformat()):
            view = ok(cli("person", "show", str(story.ada), "--as-of", text, "--json"))
            assert (view["version"], view["name"], view["email"]) == (1, ADA_NAME_NEW,
                                                                      ADA_EMAIL)
        before = (at - MICRO).isoformat()
        assert ok(cli("person", "show", str(story.ada), "--as-of", before, "--json"))[
            "version"] == 0
        erased = ok(cli("person", "show", str(story.bob), "--as-of",
                        "9999-01-01T00:00:00Z", "--json"))
        assert (erased["version"], erased["erased"], erased["email"]) == (2, True, None)

    def test_show_as_of_before_creation(self, cli: Cli, story: Story) -> None:
        before = (story.at(story.ada, 0) - MICRO).isoformat()
        result = cli("person", "show", str(story.ada), "--as-of", before, "--json")
        assert result.code == 3 and result.stdout == ""
        error = json.loads(result.stderr)
        assert error["error"] == "version_not_found" and before in error["message"]

    @pytest.mark.parametrize("text", ["2024-05-01T12:00:00", "2024-05-01", "yesterday", ""])
    def test_bad_timestamps_exit_2(self, cli: Cli, story: Story, text: str) -> None:
        error = usage_error(cli("person", "show", str(story.ada), "--as-of", text, "--json"),
                            "invalid_input")
        assert "--as-of" in error["message"]
        error = usage_error(cli("changes", "--since", text, "--json"), "invalid_input")
        assert "--since" in error["message"]
        usage_error(cli("changes", "--until", text, "--json"), "invalid_input")

    def test_naive_time_message(self, cli: Cli) -> None:
        error = usage_error(cli("changes", "--until", "2024-05-01T12:00:00", "--json"))
        assert "time zone" in error["message"]
        human = cli("changes", "--until", "2024-05-01T12:00:00")
        assert human.code == 2 and "time zone" in human.stderr and human.stdout == ""

    def test_version_and_as_of_exclude_each_other(self, cli: Cli, story: Story) -> None:
        usage_error(cli("person", "show", str(story.ada), "--version", "0", "--as-of",
                        "2030-01-01T00:00:00Z", "--json"), "usage")

    def test_diff(self, cli: Cli, story: Story, nokeys: dict[str, str]) -> None:
        diff = ok(cli("person", "diff", str(story.ada), "0", "1", "--json"))
        assert diff["decrypted"] is True
        assert [(c["field"], c["old"], c["new"]) for c in diff["changed"]] == [
            ("name", ADA_NAME, ADA_NAME_NEW)]
        assert (diff["op"], diff["actor"], diff["reason"]) == ("updated", "support",
                                                               "married")
        result = cli("person", "diff", str(story.ada), "0", "4", "--json", env=nokeys)
        keyless = ok(result)
        assert keyless["decrypted"] is False
        assert [c["field"] for c in keyless["changed"]] == ["email", "name", "password"]
        no_plaintext(result.stdout)
        human = cli("person", "diff", str(story.ada), "0", "1")
        assert human.code == 0 and ADA_NAME_NEW in human.stdout

    def test_diff_errors(self, cli: Cli, story: Story) -> None:
        result = cli("person", "diff", str(story.ada), "0", "99", "--json")
        assert result.code == 3 and json.loads(result.stderr)["error"] == "version_not_found"
        usage_error(cli("person", "diff", str(story.ada), "0", "x", "--json"), "usage")
        usage_error(cli("person", "diff", str(story.ada), "-1", "0", "--json"),
                    "invalid_input")
        usage_error(cli("person", "diff", "nobody", "0", "1", "--json"), "invalid_input")

    def test_history(self, cli: Cli, story: Story, nokeys: dict[str, str]) -> None:
        with_keys = ok(cli("person", "history", str(story.ada), "--json"))
        assert [e["values"] for e in with_keys[:2]] == [
            {"email": ADA_EMAIL, "name": ADA_NAME}, {"name": ADA_NAME_NEW}]
        for entry in with_keys:
            assert set(entry) >= {"version", "cid", "prev", "op", "recorded_at", "actor",
                                  "reason", "changed", "values", "facts", "erased"}
        result = cli("person", "history", str(story.ada), "--json", env=nokeys)
        keyless = ok(result)
        no_plaintext(result.stdout)
        assert [e["values"] for e in keyless] == [None] * 5
        assert keyless[1]["facts"]["name"] == "changed"
        assert [e["cid"] for e in keyless] == [e["cid"] for e in with_keys]
        erased = ok(cli("person", "history", str(story.bob), "--json"))
        assert all(e["erased"] and e["values"] is None for e in erased)
        human = cli("person", "history", str(story.ada))
        assert human.code == 0 and ADA_NAME_NEW in human.stdout and "facts:" in human.stdout

    def test_history_refuses_a_keyring_that_does_not_fit(self, cli: Cli,
                                                          story: Story) -> None:
        other = {"PEOPLELOG_KEYRING_JSON": Keyring.generate().to_json()}
        result = cli("person", "history", str(story.ada), "--json", env=other)
        assert result.code == 2 and result.stdout == ""
        no_plaintext(result.stderr)

    def test_changes_paging(self, cli: Cli, story: Story) -> None:
        seen: list[tuple[str, int]] = []
        cursor: list[str] = []
        for _ in range(20):
            page = ok(cli("changes", "--limit", "2", *cursor, "--json"))
            assert page["limit"] == 2
            seen.extend((c["person_id"], c["version"]) for c in page["changes"])
            if page["next"] is None:
                break
            cursor = ["--cursor", page["next"]]
        assert seen == [(str(v.person_id), v.version) for v in story.newest_first()]

    def test_changes_filters(self, cli: Cli, story: Story) -> None:
        since, until = story.at(story.ada, 1), story.at(story.bob, 2)
        page = ok(cli("changes", "--since", since.isoformat(), "--until", until.isoformat(),
                      "--actor", "support", "--json"))
        assert [(c["person_id"], c["version"]) for c in page["changes"]] == [
            (str(v.person_id), v.version) for v in story.newest_first()
            if v.actor == "support" and since <= v.recorded_at < until]
        assert all({"op", "actor", "reason", "cid", "recorded_at", "changed"} <= set(c)
                   for c in page["changes"])
        page = ok(cli("changes", "--person", str(story.bob), "--json"))
        assert [(c["version"], c["op"], c["actor"], c["reason"]) for c in page["changes"]] == [
            (2, "erased", "dpo", "art. 17"), (1, "updated", "support", "new address"),
            (0, "created", "signup", None)]
        no_plaintext(json.dumps(page))
        human = cli("changes", "--person", str(story.bob), "--limit", "1")
        assert human.code == 0 and "erased" in human.stdout and "next:" in human.stdout

    def test_changes_bad_input(self, cli: Cli, story: Story) -> None:
        for limit in ("0", "1001"):
            assert "limit" in usage_error(cli("changes", "--limit", limit, "--json"),
                                          "invalid_input")["message"]
        usage_error(cli("changes", "--limit", "many", "--json"), "usage")
        usage_error(cli("changes", "--cursor", "garbage", "--json"), "invalid_input")
        usage_error(cli("changes", "--person", "nobody", "--json"), "invalid_input")
        t = story.at(story.ada, 1).isoformat()
        usage_error(cli("changes", "--since", t, "--until", t, "--json"), "invalid_input")

    @pytest.mark.parametrize("command", [("person", "diff"), ("changes",), ("person", "show")])
    def test_help_shows_an_example(self, cli: Cli, command: tuple[str, ...]) -> None:
        result = cli(*command, "--help")
        assert result.code == 0 and "--json" in result.stdout
        assert f"peoplelog {' '.join(command)}" in result.stdout.lower().split("example", 1)[1]
