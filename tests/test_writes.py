"""The append path: versions, optimistic concurrency, idempotent re-sends, one email per
person, ciphertext carried forward, projections in step, and authentication."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg import sql

from peoplelog.fields import Keyring, PasswordHasher
from peoplelog.ledger import Database, Ledger
from peoplelog.projections import verify_ledger
from peoplelog.schema import (
    DecryptionFailed,
    EmailTaken,
    InvalidInput,
    Op,
    PersonNotFound,
    ProjectionDamaged,
    VersionConflict,
    VersionRef,
)

Conn = psycopg.Connection[Any]
TABLES = ("people", "people_latest", "email_lookup", "person_keys")
THREADS = 8


def counts(conn: Conn) -> dict[str, int]:
    result = {}
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        result[table] = row.fetchone()[0]  # type: ignore[index]
    return result


def raw_versions(conn: Conn, pid: uuid.UUID) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT version, cid, prev, op, email, name, password, verified_at FROM people"
        " WHERE person_id = %s ORDER BY version",
        (pid,),
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur]


def assert_projection_matches_ledger(conn: Conn) -> None:
    """people_latest holds, for every person, exactly the newest people row."""
    mismatched = conn.execute(
        """
        SELECT p.person_id, p.version, l.version
        FROM (SELECT DISTINCT ON (person_id) * FROM people
              ORDER BY person_id, version DESC) p
        FULL JOIN people_latest l USING (person_id)
        WHERE l.person_id IS NULL OR p.person_id IS NULL
           OR (p.version, p.cid, p.op, p.email, p.name, p.password, p.verified_at)
              IS DISTINCT FROM
              (l.version, l.cid, l.op, l.email, l.name, l.password, l.verified_at)
        """
    ).fetchall()
    assert mismatched == []


def assert_verifies(conn: Conn) -> None:
    report = verify_ledger(conn)
    assert report.ok, report.findings
    assert report.checked > 0


_counter = iter(range(1_000_000))


def fresh_email(tag: str = "w") -> str:
    return f"{tag}.{next(_counter)}.{uuid.uuid4().hex[:6]}@example.org"


@pytest.fixture()
def person(ledger: Ledger) -> VersionRef:
    return ledger.create_person(email=fresh_email(), name="Writer Person")


@pytest.fixture(scope="module", autouse=True)
def _ledger_still_consistent(database_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert_projection_matches_ledger(conn)
        assert_verifies(conn)


# --- create and update --------------------------------------------------------------------


class TestCreateAndUpdate:
    def test_create_is_version_zero(self, ledger: Ledger, conn: Conn) -> None:
        email = fresh_email()
        ref = ledger.create_person(email=email, name="Zero", actor="tests", reason="setup")
        assert (ref.version, ref.written) == (0, True)
        assert ref.cid.startswith("bafkrei") and len(ref.cid) == 59
        [row] = raw_versions(conn, ref.person_id)
        assert (row["version"], row["cid"], row["prev"], row["op"]) == (0, ref.cid, None,
                                                                        "created")
        view = ledger.get_person(ref.person_id)
        assert (view.email, view.name, view.version) == (email, "Zero", 0)
        assert ledger.find_person(email) == ref.person_id

    def test_update_without_expect_version_appends(self, ledger: Ledger, conn: Conn,
                                                    person: VersionRef) -> None:
        ref = ledger.update_person(person.person_id, name="Second")
        assert (ref.version, ref.written) == (1, True)
        rows = raw_versions(conn, person.person_id)
        assert [r["version"] for r in rows] == [0, 1]
        assert rows[1]["prev"] == person.cid
        assert rows[1]["cid"] == ref.cid
        assert ledger.get_person(person.person_id).name == "Second"

    def test_update_with_current_expect_version_appends(self, ledger: Ledger,
                                                        person: VersionRef) -> None:
        first = ledger.update_person(person.person_id, name="One", expect_version=0)
        second = ledger.update_person(person.person_id, name="Two", expect_version=1)
        assert (first.version, second.version) == (1, 2)
        assert ledger.get_person(person.person_id, version=1).name == "One"
        assert ledger.get_person(person.person_id).name == "Two"

    def test_stale_expect_version_conflicts_and_writes_nothing(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        ledger.update_person(person.person_id, name="Moved on")
        before = counts(conn)
        with pytest.raises(VersionConflict, match="version 1, not 0"):
            ledger.update_person(person.person_id, name="Stale", expect_version=0)
        with pytest.raises(VersionConflict):
            ledger.update_person(person.person_id, name="Future", expect_version=7)
        assert counts(conn) == before
        assert ledger.get_person(person.person_id).name == "Moved on"

    def test_update_that_changes_nothing_writes_nothing(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        view = ledger.get_person(person.person_id)
        before = counts(conn)
        ref = ledger.update_person(person.person_id, name=view.name, email=view.email)
        assert (ref.written, ref.version, ref.cid) == (False, 0, person.cid)
        # Same values after normalisation (surrounding spaces, domain case).
        assert view.email is not None
        local, domain = view.email.split("@")
        ref = ledger.update_person(person.person_id, name=f"  {view.name} ",
                                   email=f" {local}@{domain.upper()} ")
        assert not ref.written
        assert counts(conn) == before

    def test_update_needs_at_least_one_field(self, ledger: Ledger, person: VersionRef) -> None:
        with pytest.raises(InvalidInput, match="nothing to update"):
            ledger.update_person(person.person_id, actor="someone")

    def test_update_of_unknown_person(self, ledger: Ledger, conn: Conn) -> None:
        before = counts(conn)
        with pytest.raises(PersonNotFound):
            ledger.update_person(uuid.uuid4(), name="Nobody")
        assert counts(conn) == before

    def test_ops_name_what_happened(self, ledger: Ledger, person: VersionRef) -> None:
        pid = person.person_id
        ledger.update_person(pid, verified=True)
        ledger.update_person(pid, name="Renamed", actor="support", reason="ticket 42")
        ledger.update_person(pid, password_hash=_phc())
        history = ledger.history(pid)
        assert [h.op for h in history] == [Op.CREATED, Op.EMAIL_VERIFIED, Op.UPDATED,
                                           Op.PASSWORD_CHANGED]
        assert [h.changed for h in history] == [["email", "name"], ["verified_at"], ["name"],
                                                ["password"]]
        assert (history[2].actor, history[2].reason) == ("support", "ticket 42")
        assert [h.prev for h in history[1:]] == [h.cid for h in history[:-1]]


_PHC: list[str] = []


def _phc() -> str:
    """One real argon2id hash, computed once for the whole module."""
    if not _PHC:
        _PHC.append(PasswordHasher().hash("correct horse battery"))
    return _PHC[0]


# --- ciphertext carried forward -----------------------------------------------------------


class TestCarryForward:
    def test_unchanged_fields_keep_their_ciphertext_byte_for_byte(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        pid = person.person_id
        ledger.update_person(pid, password_hash=_phc())
        ledger.update_person(pid, name="New Name")
        ledger.update_person(pid, verified=True)
        ledger.update_person(pid, email=fresh_email())
        v0, v1, v2, v3, v4 = raw_versions(conn, pid)
        # v1 changed the password only
        assert v0["password"] is None and v1["password"] is not None
        assert (v1["email"], v1["name"]) == (v0["email"], v0["name"])
        # v2 changed the name only
        assert v2["name"] != v1["name"]
        assert (v2["email"], v2["password"]) == (v1["email"], v1["password"])
        # v3 changed verified_at only
        assert v3["verified_at"] is not None and v2["verified_at"] is None
        assert (v3["email"], v3["name"], v3["password"]) == (v2["email"], v2["name"],
                                                              v2["password"])
        # v4 changed the email (and so cleared verified_at)
        assert v4["email"] != v3["email"]
        assert (v4["name"], v4["password"]) == (v3["name"], v3["password"])
        assert v4["verified_at"] is None

    def test_rewriting_the_same_value_is_not_a_change(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        pid = person.person_id
        ledger.update_person(pid, name="Other")
        ref = ledger.update_person(pid, name="Other", verified=False)
        assert not ref.written
        assert len(raw_versions(conn, pid)) == 2


# --- one email per person -----------------------------------------------------------------


class TestEmailClaims:
    def test_email_change_frees_the_old_address_and_clears_verification(
        self, ledger: Ledger, conn: Conn
    ) -> None:
        old, new = fresh_email("old"), fresh_email("new")
        first = ledger.create_person(email=old, name="First", verified=True)
        assert ledger.get_person(first.person_id).verified_at is not None
        ledger.update_person(first.person_id, email=new)
        view = ledger.get_person(first.person_id)
        assert (view.email, view.verified_at) == (new, None)
        assert ledger.find_person(new) == first.person_id
        with pytest.raises(PersonNotFound):
            ledger.find_person(old)
        second = ledger.create_person(email=old, name="Second")
        assert ledger.find_person(old) == second.person_id
        lookups = conn.execute(
            "SELECT person_id, count(*) FROM email_lookup WHERE person_id = ANY (%s)"
            " GROUP BY person_id",
            ([first.person_id, second.person_id],),
        ).fetchall()
        assert sorted(lookups) == sorted([(first.person_id, 1), (second.person_id, 1)])

    def test_second_person_cannot_create_with_a_claimed_email(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        email = ledger.get_person(person.person_id).email
        assert email is not None
        before = counts(conn)
        local, domain = email.split("@")
        for claim in (email, f"{local.upper()}@{domain.upper()}", f"  {email}"):
            with pytest.raises(EmailTaken):
                ledger.create_person(email=claim, name="Copycat")
        assert counts(conn) == before
        assert ledger.find_person(email) == person.person_id

    def test_second_person_cannot_update_to_a_claimed_email(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        email = ledger.get_person(person.person_id).email
        assert email is not None
        other = ledger.create_person(email=fresh_email(), name="Other")
        before = counts(conn)
        with pytest.raises(EmailTaken):
            ledger.update_person(other.person_id, email=email, name="Other renamed")
        assert counts(conn) == before
        view = ledger.get_person(other.person_id)
        assert (view.version, view.name) == (0, "Other")
        assert ledger.find_person(email) == person.person_id

    def test_a_person_may_keep_their_own_email(self, ledger: Ledger,
                                               person: VersionRef) -> None:
        email = ledger.get_person(person.person_id).email
        assert email is not None
        local, domain = email.split("@")
        ref = ledger.update_person(person.person_id, email=f"{local}@{domain.upper()}",
                                   name="Kept")
        assert ref.written
        assert ledger.find_person(email) == person.person_id

    def test_case_of_the_local_part_is_the_same_mailbox(self, ledger: Ledger) -> None:
        """The lookup lower-cases the local part, so changing only its case keeps the
        claim and the verification; the address is stored as given."""
        ref = ledger.create_person(email="Mixed.Case@example.org", name="Case", verified=True)
        update = ledger.update_person(ref.person_id, email="mixed.case@example.org")
        assert update.written
        view = ledger.get_person(ref.person_id)
        assert view.email == "mixed.case@example.org"
        assert view.verified_at is not None
        assert ledger.find_person("MIXED.CASE@example.org") == ref.person_id


# --- prepared records and idempotent re-send ----------------------------------------------


class TestIdempotentAppend:
    def test_resending_the_same_record_writes_once(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        record = ledger.prepare_update(person.person_id, name="Prepared")
        assert raw_versions(conn, person.person_id)[-1]["version"] == 0  # not yet written
        first = ledger.append(record)
        before = counts(conn)
        second = ledger.append(record)
        assert first.cid == second.cid
        assert (first.written, second.written) == (True, False)
        assert first.version == second.version == 1
        assert counts(conn) == before
        rows = raw_versions(conn, person.person_id)
        assert [r["cid"] for r in rows].count(first.cid) == 1
        assert ledger.get_person(person.person_id).name == "Prepared"

    def test_stale_prepared_record_conflicts(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        record = ledger.prepare_update(person.person_id, name="Late")
        ledger.update_person(person.person_id, name="Early")
        before = counts(conn)
        with pytest.raises(VersionConflict):
            ledger.append(record)
        assert counts(conn) == before
        assert ledger.get_person(person.person_id).name == "Early"

    def test_resend_still_succeeds_after_later_versions(
        self, ledger: Ledger, person: VersionRef
    ) -> None:
        record = ledger.prepare_update(person.person_id, name="Once")
        first = ledger.append(record)
        ledger.update_person(person.person_id, name="Twice")
        again = ledger.append(record)
        assert (again.cid, again.version, again.written) == (first.cid, 1, False)

    def test_prepared_email_change_updates_the_lookup(
        self, ledger: Ledger, person: VersionRef
    ) -> None:
        new = fresh_email("prep")
        ledger.append(ledger.prepare_update(person.person_id, email=new))
        assert ledger.find_person(new) == person.person_id

    def test_ciphertext_moved_from_another_person_is_refused(
        self, ledger: Ledger, conn: Conn, person: VersionRef
    ) -> None:
        other = ledger.create_person(email=fresh_email(), name="Other")
        foreign = raw_versions(conn, other.person_id)[0]["name"]
        record = ledger.prepare_update(person.person_id, name="Mine")
        before = counts(conn)
        with pytest.raises(DecryptionFailed, match="name of person"):
            ledger.append(replace(record, name=bytes(foreign)))
        assert counts(conn) == before

    def test_prepare_checks_the_fields(self, ledger: Ledger, person: VersionRef) -> None:
        with pytest.raises(InvalidInput, match="unknown fields"):
            ledger.prepare_update(person.person_id, name="X", colour="blue")
        with pytest.raises(InvalidInput):
            ledger.prepare_update(person.person_id, name="Writer Person")  # no change


# --- concurrency --------------------------------------------------------------------------


def run_together(database_url: str, keyring: Keyring,
                 work: Callable[[Ledger, int], VersionRef]) -> list[VersionRef | Exception]:
    """Run ``work`` in THREADS threads at once, each with its own Ledger and connection."""
    ledgers = [Ledger(Database(database_url, pool_size=1), keyring) for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    results: list[VersionRef | Exception] = [RuntimeError("did not run")] * THREADS

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(ledgers[i], i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for led in ledgers:
            led.close()
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.mark.slow
class TestConcurrentWriters:
    def test_same_head_with_expect_version_exactly_one_wins(
        self, ledger: Ledger, conn: Conn, database_url: str, keyring: Keyring,
        person: VersionRef,
    ) -> None:
        for round_ in range(3):
            results = run_together(
                database_url, keyring,
                lambda led, i, v=round_: led.update_person(
                    person.person_id, name=f"round {v} writer {i}", expect_version=v),
            )
            won = [r for r in results if isinstance(r, VersionRef)]
            lost = [r for r in results if not isinstance(r, VersionRef)]
            assert len(won) == 1, results
            assert all(isinstance(r, VersionConflict) for r in lost), lost
            assert won[0].version == round_ + 1
            rows = raw_versions(conn, person.person_id)
            assert [r["version"] for r in rows] == list(range(round_ + 2))  # no fork
            assert ledger.get_person(person.person_id).name == (
                f"round {round_} writer {results.index(won[0])}")
        assert_projection_matches_ledger(conn)
        assert verify_ledger(conn, person.person_id).ok

    def test_same_head_without_expect_version_every_write_lands(
        self, ledger: Ledger, conn: Conn, database_url: str, keyring: Keyring,
        person: VersionRef,
    ) -> None:
        results = run_together(
            database_url, keyring,
            lambda led, i: led.update_person(person.person_id, name=f"writer {i}"),
        )
        assert all(isinstance(r, VersionRef) and r.written for r in results), results
        refs = [r for r in results if isinstance(r, VersionRef)]
        assert sorted(r.version for r in refs) == list(range(1, THREADS + 1))
        rows = raw_versions(conn, person.person_id)
        assert [r["version"] for r in rows] == list(range(THREADS + 1))
        assert all(b["prev"] == a["cid"] for a, b in itertools.pairwise(rows))
        assert {r["cid"] for r in rows[1:]} == {r.cid for r in refs}
        assert_projection_matches_ledger(conn)
        assert verify_ledger(conn, person.person_id).ok

    def test_same_email_claimed_at_once_exactly_one_wins(
        self, conn: Conn, database_url: str, keyring: Keyring,
    ) -> None:
        email = fresh_email("race")
        before = counts(conn)
        results = run_together(
            database_url, keyring,
            lambda led, i: led.create_person(email=email, name=f"racer {i}"),
        )
        won = [r for r in results if isinstance(r, VersionRef)]
        assert len(won) == 1, results
        assert all(isinstance(r, EmailTaken) for r in results if r not in won), results
        after = counts(conn)
        assert {t: after[t] - before[t] for t in TABLES} == dict.fromkeys(TABLES, 1)

    def test_same_prepared_record_sent_at_once_lands_once(
        self, ledger: Ledger, conn: Conn, database_url: str, keyring: Keyring,
        person: VersionRef,
    ) -> None:
        record = ledger.prepare_update(person.person_id, name="Sent many times")
        results = run_together(database_url, keyring, lambda led, i: led.append(record))
        refs = [r for r in results if isinstance(r, VersionRef)]
        assert len(refs) == THREADS, results
        assert {r.cid for r in refs} == {refs[0].cid}
        assert sum(r.written for r in refs) == 1
        assert len(raw_versions(conn, person.person_id)) == 2


# --- the database's own chain check backs up the append path ------------------------------


def test_out_of_step_projection_cannot_fork_the_chain(
    ledger: Ledger, conn: Conn, person: VersionRef
) -> None:
    """If people_latest is wrong, a write confirms it against the chain first and fails
    closed with ``ProjectionDamaged`` (and the trigger on people would refuse the bad prev
    anyway): never a fork or a crash."""
    ledger.update_person(person.person_id, name="Real head")
    conn.execute("UPDATE people_latest SET version = 0, cid = %s WHERE person_id = %s",
                 (person.cid, person.person_id))
    try:
        before = counts(conn)
        with pytest.raises(ProjectionDamaged):
            ledger.update_person(person.person_id, name="Fork attempt")
        assert counts(conn) == before
        assert [r["version"] for r in raw_versions(conn, person.person_id)] == [0, 1]
    finally:
        conn.execute(
            "UPDATE people_latest l SET version = p.version, cid = p.cid FROM people p"
            " WHERE p.person_id = l.person_id AND l.person_id = %s AND p.version = 1",
            (person.person_id,),
        )


# --- authentication -----------------------------------------------------------------------


class TestAuthenticate:
    def test_right_wrong_and_unknown(self, ledger: Ledger) -> None:
        email = fresh_email("auth")
        ref = ledger.create_person(email=email, name="Auth", password="correct horse battery")
        assert ledger.authenticate(email, "correct horse battery") == ref.person_id
        local, domain = email.split("@")
        assert ledger.authenticate(f"{local}@{domain.upper()}",
                                   "correct horse battery") == ref.person_id
        assert ledger.authenticate(email, "wrong horse battery") is None
        # Unknown and malformed emails still run a (dummy) argon2id check and say None.
        assert ledger.authenticate(fresh_email("nobody"), "correct horse battery") is None
        assert ledger.authenticate("not an email", "correct horse battery") is None

    def test_person_without_password_cannot_log_in(self, ledger: Ledger,
                                                   person: VersionRef) -> None:
        email = ledger.get_person(person.person_id).email
        assert email is not None
        assert ledger.authenticate(email, "any password at all") is None

    def test_password_change_takes_effect(self, ledger: Ledger, person: VersionRef) -> None:
        email = ledger.get_person(person.person_id).email
        assert email is not None
        ledger.update_person(person.person_id, password_hash=_phc())
        assert ledger.authenticate(email, "correct horse battery") == person.person_id
