"""The security log: every login, lockout, token issued, used or refused, session ended,
credential change and cleanup is an event, content-addressed, sealed, sequenced into the
Merkle log with the versions and checked by key-free ``verify`` (and the offline export
verifier). Deleted, edited and reordered events, a session without its issuing event and a
session a credential change should have ended are reported; retired segments are not.
Real PostgreSQL, real cipher, nothing mocked."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from conftest import Cli, create_database, drop_database

from peoplelog.accounts import Accounts, AccountSettings, Client, EventKind, Scope
from peoplelog.fields import Attestations, Attestor, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger, SecurityEvent, canonical_json, cid_of
from peoplelog.projections import (
    AuditReport,
    CheckpointSigner,
    audit_database,
    export_ledger,
    make_checkpoint,
    retire_events,
    verify_export,
)
from peoplelog.schema import InvalidInput, InvalidToken, LoginFailed, apply_migrations

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another horse battery staple"
SERVICE = Scope.for_service("test")
Conn = psycopg.Connection[Any]


@pytest.fixture()
def store(server_url: str) -> Iterator[tuple[str, Accounts]]:
    """A fresh database per test: the tamper cases damage it."""
    url = create_database(server_url, "seclog")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    with Accounts(Ledger(Database(url, pool_size=2), Keyring.generate()),
                  AccountSettings(login_attempts_per_account=3)) as accounts:
        yield url, accounts
    drop_database(server_url, url)


def _checkpoint(url: str, accounts: Accounts) -> Any:
    keyring = accounts.ledger.keyring
    signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    with psycopg.connect(url, autocommit=True) as conn:
        return make_checkpoint(conn, signer, writers=Attestations.of(keyring))


def _audit(url: str) -> AuditReport:
    with psycopg.connect(url, autocommit=True) as conn:
        return audit_database(conn)


def _kinds(report: AuditReport) -> set[str]:
    return {finding.kind for finding in report.findings}


def _walk(accounts: Accounts) -> tuple[uuid.UUID, str]:
    """A person through most of the flows."""
    email = f"ev-{uuid.uuid4().hex[:8]}@example.org"
    person = accounts.register(email, password=PASSWORD, name="Eve Example")
    client = Client(ip="203.0.113.7", user_agent="Firefox/140")
    with pytest.raises(LoginFailed):
        accounts.login(email, "wrong horse battery staple", client=client)
    with pytest.raises(LoginFailed):
        accounts.login(f"nobody-{uuid.uuid4().hex[:6]}@example.org", PASSWORD, client=client)
    first = accounts.login(email, PASSWORD, client=client)
    second = accounts.login(email, PASSWORD)
    scope = accounts.check(first.token)
    accounts.create_access_token(scope, "deploy")
    accounts.revoke(scope, second.session_id)
    with pytest.raises(InvalidToken):
        accounts.check(second.token)
    accounts.change_password(scope, PASSWORD, NEW_PASSWORD, client=client)
    accounts.request_password_reset(email)
    with pytest.raises(InvalidToken):
        accounts.reset_password("plo1_" + "A" * 43, NEW_PASSWORD + "!")
    accounts.clean_up()
    return person, email


def test_the_flows_write_their_events_and_verify_checks_them(
        store: tuple[str, Accounts]) -> None:
    url, accounts = store
    person, email = _walk(accounts)
    page = accounts.events(SERVICE, person_id=person)
    kinds = [event.kind for event in page.events]
    for kind in ("login_failed", "login", "token_issued", "session_ended", "password_changed",
                 "session_issued", "link_issued"):
        assert kind in kinds, (kind, kinds)
    nobody = accounts.events(SERVICE, kind="login_failed").events
    assert any(event.person_id is None and event.ip is None for event in nobody)
    login = next(e for e in page.events if e.kind == "login")
    assert (login.ip, login.user_agent) == ("203.0.113.7", "Firefox/140")
    assert login.facts is not None and login.facts["method"] == "password"
    assert login.facts["issued"] == "session" and isinstance(login.facts["head"], int)
    assert "203.0.113.7" not in repr(login) and login.position is None
    assert accounts.events(SERVICE, kind="cleanup").events
    assert accounts.events(SERVICE, kind="token_refused").events
    result = _checkpoint(url, accounts)
    assert result.events > 0 and result.refused_events == 0
    report = _audit(url)
    assert report.ok, report.findings
    assert report.log is not None
    assert report.log.events == result.events and report.log.events_pending == 0
    assert report.log.live_sessions == 1  # the password change ended the rest
    logged = accounts.events(SERVICE, person_id=person).events
    assert all(event.position is not None for event in logged)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT string_agg(encode(coalesce(detail, ''), 'escape')"
                              " || coalesce(facts::text, '') || coalesce(actor, ''), '')"
                              " FROM security_events").fetchone()
    assert stored is not None
    for secret in (email, "203.0.113.7", "Firefox", PASSWORD, "Eve Example"):
        assert secret not in stored[0]


def test_events_page_by_person_kind_and_time(store: tuple[str, Accounts]) -> None:
    _, accounts = store
    person, _ = _walk(accounts)
    everything = accounts.events(SERVICE, person_id=person, limit=1000).events
    first = accounts.events(SERVICE, person_id=person, limit=2)
    assert [e.seq for e in first.events] == [e.seq for e in everything[:2]]
    assert first.next_after == everything[1].seq
    rest = accounts.events(SERVICE, person_id=person, after=first.next_after, limit=1000)
    assert [e.seq for e in first.events + rest.events] == [e.seq for e in everything]
    assert rest.next_after is None
    later = accounts.events(SERVICE, since=datetime.now(UTC) + timedelta(minutes=1))
    assert later.events == []
    window = accounts.events(SERVICE, person_id=person, since=everything[0].at,
                             until=everything[-1].at)
    assert len(window.events) == len(everything) - sum(
        1 for e in everything if e.at == everything[-1].at)
    other, _ = _walk(accounts)
    issued = accounts.login(accounts.ledger.get_person(other).email or "", NEW_PASSWORD)
    own = accounts.check(issued.token)
    assert {e.person_id for e in accounts.events(own).events} == {other}
    with pytest.raises(Exception, match="acts for that person only"):
        accounts.events(own, person_id=person)
    for bad in ({"kind": "nonsense"}, {"limit": 0}, {"limit": 1001}, {"after": -1},
                {"since": datetime(2026, 1, 1)}):
        with pytest.raises(InvalidInput):
            accounts.events(SERVICE, **bad)  # type: ignore[arg-type]


def test_lockout_is_an_event_and_an_unknown_address_leaves_nothing(
        store: tuple[str, Accounts]) -> None:
    _, accounts = store
    email = f"lock-{uuid.uuid4().hex[:8]}@example.org"
    person = accounts.register(email, password=PASSWORD)
    for _ in range(5):
        with pytest.raises(LoginFailed):
            accounts.login(email, "wrong horse battery staple")
    locked = accounts.events(SERVICE, person_id=person, kind="locked").events
    assert len(locked) == 1 and locked[0].facts == {"scope": "account", "minutes": 15}
    causes = [e.facts["cause"] for e in accounts.events(  # type: ignore[index]
        SERVICE, person_id=person, kind="login_failed").events]
    assert "locked" in causes and "credentials" in causes
    unknown = f"unknown-{uuid.uuid4().hex[:8]}@example.org"
    before = accounts.events(SERVICE, limit=1000).events
    with pytest.raises(LoginFailed):
        accounts.login(unknown, PASSWORD, client=Client(ip="198.51.100.9"))
    accounts.request_login_link(unknown)
    after = accounts.events(SERVICE, after=before[-1].seq).events
    assert [e.kind for e in after] == ["login_failed"]
    assert after[0].person_id is None and after[0].ip is None
    assert unknown not in json.dumps(after[0].as_dict())


def test_erasure_leaves_events_that_verify_and_reveal_nothing(
        store: tuple[str, Accounts]) -> None:
    url, accounts = store
    person, _ = _walk(accounts)
    accounts.ledger.erase_person(person, actor="dpo", reason="request")
    events = accounts.events(SERVICE, person_id=person).events
    assert events and all(e.ip is None and e.user_agent is None for e in events)
    _checkpoint(url, accounts)
    report = _audit(url)
    assert report.ok, report.findings


def _owner_sql(url: str, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """What someone with the owner's login does behind the application's back."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE security_events DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE log_entries DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(statement, params if "%s" in statement else ())
        conn.execute("ALTER TABLE security_events ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE log_entries ENABLE TRIGGER USER")


def _logged(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [(int(s), str(k)) for s, k in conn.execute(
            "SELECT e.seq, e.kind FROM security_events e JOIN log_entries l ON l.event = e.seq"
            " ORDER BY e.seq")]


def test_a_deleted_event_is_reported(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _checkpoint(url, accounts)
    seq = next(s for s, kind in _logged(url) if kind == "login_failed")
    _owner_sql(url, "DELETE FROM security_events WHERE seq = %s", params=(seq,))
    assert "event_missing" in _kinds(_audit(url))


def test_an_edited_event_is_reported(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _checkpoint(url, accounts)
    seq = next(s for s, kind in _logged(url) if kind == "login_failed")
    _owner_sql(url, "UPDATE security_events SET kind = 'login' WHERE seq = %s", params=(seq,))
    assert "event_cid_mismatch" in _kinds(_audit(url))
    _owner_sql(url, "UPDATE security_events SET at = at - interval '1 day',"
                    " kind = 'login_failed' WHERE seq = %s", params=(seq,))
    assert "event_cid_mismatch" in _kinds(_audit(url))


def test_reordered_events_are_reported(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _checkpoint(url, accounts)
    (a, _), (b, _) = _logged(url)[:2]
    swap = ("UPDATE security_events AS e SET id = o.id, cid = o.cid, kind = o.kind,"
            " at = o.at, person_id = o.person_id, session_id = o.session_id, actor = o.actor,"
            " facts = o.facts, detail = o.detail, writer_key = o.writer_key, seal = o.seal"
            " FROM security_events AS o WHERE (e.seq, o.seq) IN ((%s, %s), (%s, %s))")
    _owner_sql(url, "ALTER TABLE security_events DROP CONSTRAINT security_events_cid_key",
               swap, params=(a, b, b, a))
    assert "event_log_mismatch" in _kinds(_audit(url))


def test_reordered_log_entries_break_the_checkpoints(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _checkpoint(url, accounts)
    (a, _), (b, _) = _logged(url)[:2]
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE log_entries DISABLE TRIGGER USER")
        rows = conn.execute("SELECT position, event, cid FROM log_entries WHERE event IN"
                            " (%s, %s) ORDER BY position", (a, b)).fetchall()
        (p1, e1, c1), (p2, e2, c2) = rows
        conn.execute("DELETE FROM log_entries WHERE position IN (%s, %s)", (p1, p2))
        conn.execute("INSERT INTO log_entries (position, person_id, event, cid) VALUES"
                     " (%s, %s, %s, %s), (%s, %s, %s, %s)",
                     (p1, uuid.UUID(int=0), e2, c2, p2, uuid.UUID(int=0), e1, c1))
        conn.execute("ALTER TABLE log_entries ENABLE TRIGGER USER")
    kinds = _kinds(_audit(url))
    assert "checkpoint_mismatch" in kinds


def test_a_session_without_its_event_is_reported(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    person, _ = _walk(accounts)
    _checkpoint(url, accounts)
    assert _audit(url).ok
    _owner_sql(url, "INSERT INTO account_sessions (lookup, seal, seal_key, session_id,"
                    " person_id, kind, epoch, details, authenticated_at, last_used_at,"
                    " expires_at) SELECT decode(md5(random()::text), 'hex'), seal, seal_key,"
                    " gen_random_uuid(), person_id, kind, epoch, details, authenticated_at,"
                    " last_used_at, expires_at FROM account_sessions"
                    " WHERE person_id = %s AND kind = 'session' LIMIT 1", params=(person,))
    assert "session_without_event" in _kinds(_audit(url))


def test_a_session_a_password_change_should_have_ended_is_reported(
        store: tuple[str, Accounts]) -> None:
    url, accounts = store
    email = f"rev-{uuid.uuid4().hex[:8]}@example.org"
    person = accounts.register(email, password=PASSWORD)
    issued = accounts.login(email, PASSWORD)
    with psycopg.connect(url) as conn:
        saved = conn.execute("SELECT * FROM account_sessions WHERE session_id = %s",
                             (issued.session_id,)).fetchone()
        epoch = conn.execute("SELECT coalesce((SELECT epoch FROM account_credentials"
                             " WHERE person_id = %s), 0)", (person,)).fetchone()
    assert saved is not None and epoch is not None
    accounts.ledger.update_person(person, password=NEW_PASSWORD, actor="test", reason="x")
    _checkpoint(url, accounts)
    assert _audit(url).ok
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE account_credentials DISABLE TRIGGER USER")
        conn.execute("UPDATE account_credentials SET epoch = %s WHERE person_id = %s",
                     (epoch[0] or 1, person))
        if epoch[0] == 0:
            conn.execute("DELETE FROM account_credentials WHERE person_id = %s", (person,))
        conn.execute("INSERT INTO account_sessions VALUES ("
                     + ", ".join(["%s"] * len(saved)) + ")", saved)
        conn.execute("ALTER TABLE account_credentials ENABLE TRIGGER USER")
    assert "revocation_unmatched" in _kinds(_audit(url))


def test_an_event_written_with_the_login_alone_is_refused(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    forged = SecurityEvent.new(EventKind.LOGIN, person_id=uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO security_events (id, cid, kind, at, person_id)"
                     " VALUES (%s, %s, %s, %s, %s)",
                     (forged.id, forged.cid(), forged.kind, forged.at_time, forged.person_id))
    result = _checkpoint(url, accounts)
    assert result.refused_events == 1
    report = _audit(url)
    assert _kinds(report) == {"unattested_event"}


def test_retired_segments_still_verify_and_a_deletion_inside_them_does_not(
        store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _, email = _walk(accounts)
    live = accounts.login(email, NEW_PASSWORD)
    attestor = Attestor.of(accounts.ledger.keyring)
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    keyring = accounts.ledger.keyring
    signing = {"signer": CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING)),
               "writers": Attestations.of(keyring)}
    with psycopg.connect(url, autocommit=True) as conn:
        nothing = retire_events(conn, attestor, cutoff, **signing)  # none is in the log yet
    assert nothing.retired == 0 and nothing.event is None
    _checkpoint(url, accounts)
    with psycopg.connect(url, autocommit=True) as conn:
        first_live = conn.execute(
            "SELECT min(e.seq) FROM security_events e JOIN account_sessions s"
            " ON s.session_id = e.session_id WHERE e.facts ? 'issued'").fetchone()
        summary = retire_events(conn, attestor, cutoff, **signing)
    assert first_live is not None and summary.retired > 0
    assert summary.through == first_live[0] - 1  # the live sessions' events stay
    accounts.check(live.token)
    report = _audit(url)
    assert report.ok, report.findings
    assert report.log is not None and report.log.events_retired == summary.retired
    out = io.StringIO()
    with psycopg.connect(url) as conn:
        export_ledger(conn, out)
    exported = verify_export(out.getvalue().splitlines())
    assert exported.ok, exported.findings
    assert exported.log is not None and exported.log.events_retired == summary.retired
    with psycopg.connect(url) as conn:
        kept = conn.execute("SELECT min(seq) FROM security_events WHERE seq > %s"
                            " AND kind <> 'events_retired'", (summary.through,)).fetchone()
    assert kept is not None
    _owner_sql(url, "DELETE FROM security_events WHERE seq = %s", params=(kept[0],))
    assert "event_missing" in _kinds(_audit(url))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO security_event_retirements (after_seq, through_seq, events,"
                     " event_seq) VALUES (%s, %s, 1, %s)",
                     (kept[0] - 1, kept[0], summary.event + 1000))
    assert "bad_retirement" in _kinds(_audit(url))


def test_the_app_role_cannot_delete_or_retire(store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM security_events")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE security_events SET kind = 'login'")


def test_the_export_carries_the_events_and_its_verifier_checks_them(
        store: tuple[str, Accounts]) -> None:
    url, accounts = store
    _walk(accounts)
    _checkpoint(url, accounts)
    _walk(accounts)  # some pending
    out = io.StringIO()
    with psycopg.connect(url) as conn:
        export_ledger(conn, out)
    lines = out.getvalue().splitlines()
    events = [json.loads(line) for line in lines if '"type": "event"' in line]
    assert events and any(e["position"] is None for e in events)
    report = verify_export(lines)
    assert report.ok, report.findings
    assert report.log is not None and report.log.events > 0 and report.log.events_pending > 0
    index = next(i for i, line in enumerate(lines)
                 if '"type": "event"' in line and '"position": null' not in line)
    edited = json.loads(lines[index])
    edited["envelope"]["kind"] = "login"
    if json.loads(lines[index])["envelope"]["kind"] == "login":
        edited["envelope"]["kind"] = "logout_x"
    tampered = [*lines[:index], json.dumps(edited), *lines[index + 1:]]
    assert "event_cid_mismatch" in _kinds(verify_export(tampered))
    emptied = json.loads(lines[index])
    emptied["envelope"] = None
    assert "event_missing" in _kinds(verify_export(
        [*lines[:index], json.dumps(emptied), *lines[index + 1:]]))


def test_the_cli_lists_and_retires_events(cli: Cli, ledger: Ledger) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    assert cli("account", "register", "--email", email, "--password-stdin",
               stdin=PASSWORD + "\n").code == 0
    assert cli("account", "login", "--email", email, "--password-stdin",
               stdin="wrong horse battery staple\n").code == 6
    logged = cli("account", "login", "--email", email, "--password-stdin", "--json",
                 stdin=PASSWORD + "\n")
    person = logged.json["person_id"]
    listed = cli("events", "--person", person, "--json")
    assert listed.code == 0, listed.stderr
    assert [e["kind"] for e in listed.json["events"]] == ["login_failed", "login"]
    text = cli("events", "--kind", "login")
    assert text.code == 0 and "login" in text.stdout
    assert cli("events", "--since", "yesterday").code != 0
    assert cli("checkpoint").code == 0
    retired = cli("retire-events", "--before", "2100-01-01T00:00:00Z", "--json")
    assert retired.code == 0, retired.stderr
    assert retired.json["retired"] >= 1  # the failure; the login issued a live session
    verified = cli("verify", "--json")
    assert verified.code == 0, verified.stdout


@pytest.mark.parametrize("facts", [
    None, {}, {"a": 1, "b": "x", "c": True, "d": None}, {"big": 2**53 - 1, "neg": -(2**53) + 1},
    {"text": "é\u2028\"\\\n\t\x01/"}, {"float": 1.5}, {"nested": {"z": 1, "a": [1, 2]}},
    {"huge": 2**60}, {"surrogate": "\ud800"},
])
def test_an_event_cid_is_the_rfc8785_hash_of_its_envelope(facts: dict[str, Any] | None
                                                          ) -> None:
    event = SecurityEvent(kind="login", at=1_796_000_000_123_456, id=uuid.UUID(int=7),
                          person_id=uuid.UUID(int=9), actor="person:é", facts=facts,
                          detail=b"\x00\xff")
    try:
        expected = cid_of(canonical_json(event.envelope()))
    except InvalidInput:
        with pytest.raises(InvalidInput):
            event.cid()
        return
    assert event.cid() == expected
