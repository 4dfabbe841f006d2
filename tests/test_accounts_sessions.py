"""Accounts: sign-up, password login, sessions and personal access tokens, scopes, and the
credential epoch that ends them all with a password or email change or an erasure, on real
PostgreSQL."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import psycopg
import pytest
from conftest import Cli

from peoplelog.accounts import (
    Accounts,
    AccountSettings,
    Client,
    Scope,
    TokenKind,
    parse_duration,
    token_digests,
)
from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import (
    ConfigurationError,
    EmailTaken,
    InvalidInput,
    InvalidToken,
    LoginFailed,
    NotPermitted,
)

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another horse battery staple"


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with Accounts(Ledger(Database(database_url, pool_size=3), keyring),
                  AccountSettings()) as opened:
        yield opened


def _email(tag: str = "acct") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.org"


def _member(accounts: Accounts, tag: str = "acct") -> tuple[uuid.UUID, str]:
    email = _email(tag)
    return accounts.register(email, password=PASSWORD, name="Member"), email


def test_register_log_in_and_check_a_session(accounts: Accounts) -> None:
    person, email = _member(accounts)
    issued = accounts.login(email.upper(), PASSWORD, client=Client(label="laptop"))
    assert issued.person_id == person and issued.kind == "session"
    assert issued.token.startswith("pls1_") and issued.token not in repr(issued)
    scope = accounts.check(issued.token)
    assert (scope.kind, scope.person_id, scope.session_id) == ("session", person,
                                                              issued.session_id)
    assert scope.actor == f"person:{person}" and scope.sudo()
    assert not scope.sudo(datetime.now(UTC) + timedelta(minutes=21))
    assert accounts.check(issued.token, kind=TokenKind.SESSION) == scope
    with pytest.raises(EmailTaken):
        accounts.register(email, password=PASSWORD)


def test_every_failed_login_is_the_same_error(accounts: Accounts) -> None:
    person, email = _member(accounts)
    gone, gone_email = _member(accounts, "gone")
    accounts.ledger.erase_person(gone, actor="dpo", reason="request")
    messages = set()
    for address, password in ((email, "wrong horse battery staple"),
                              (_email("nobody"), PASSWORD), ("not an email", PASSWORD),
                              (gone_email, PASSWORD)):
        with pytest.raises(LoginFailed) as caught:
            accounts.login(address, password)
        messages.add(str(caught.value))
    assert messages == {"invalid email or password"}
    assert accounts.login(email, PASSWORD).person_id == person


def test_a_bad_token_is_one_opaque_error(accounts: Accounts) -> None:
    person, email = _member(accounts)
    session = accounts.login(email, PASSWORD)
    pat = accounts.create_access_token(accounts.check(session.token), "ci")
    forged = "pls1_" + "A" * 43
    for bad in ("", "pls1_", forged, session.token[:-1] + "x", session.token + "=",
                "plp1_" + session.token[5:], "pls1_" + "é" * 43):
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            accounts.check(bad)
    with pytest.raises(InvalidToken):
        accounts.check(pat.token, kind=TokenKind.SESSION)
    with pytest.raises(InvalidToken):
        accounts.check(session.token, kind=TokenKind.ACCESS_TOKEN)
    assert accounts.check(pat.token).kind == "access_token"
    assert accounts.check(pat.token).person_id == person


def test_a_password_change_an_email_change_and_an_erasure_end_everything(
        accounts: Accounts) -> None:
    person, email = _member(accounts)
    bystander, other_email = _member(accounts, "bystander")
    kept = accounts.login(other_email, PASSWORD)

    def issue() -> list[str]:
        session = accounts.login(email, PASSWORD)
        pat = accounts.create_access_token(accounts.check(session.token), "script")
        return [session.token, pat.token]

    tokens = issue()
    accounts.ledger.update_person(person, password=NEW_PASSWORD)  # any write path
    for token in tokens:
        with pytest.raises(InvalidToken):
            accounts.check(token)
    with pytest.raises(LoginFailed):
        accounts.login(email, PASSWORD)
    session = accounts.login(email, NEW_PASSWORD)
    accounts.ledger.update_person(person, name="Renamed")  # not a credential change
    assert accounts.check(session.token).person_id == person
    accounts.ledger.update_person(person, email=_email("moved"))
    with pytest.raises(InvalidToken):
        accounts.check(session.token)
    accounts.ledger.update_person(person, email=email)
    session = accounts.login(email, NEW_PASSWORD)
    accounts.ledger.erase_person(person, actor="dpo", reason="request")
    with pytest.raises(InvalidToken):
        accounts.check(session.token)
    assert accounts.check(kept.token).person_id == bystander


def test_no_session_logged_in_with_the_old_password_survives_a_racing_change(
        accounts: Accounts) -> None:
    person, email = _member(accounts)
    issued: list[str] = []
    errors: list[BaseException] = []
    changed = threading.Event()

    def log_in() -> None:
        try:
            while not changed.is_set():
                with contextlib.suppress(LoginFailed):
                    issued.append(accounts.login(email, PASSWORD).token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    accounts.ledger.update_person(person, password=NEW_PASSWORD)
    changed.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert issued, "no login got through before the change"
    survivors = 0
    for token in issued:
        try:
            accounts.check(token)
            survivors += 1
        except InvalidToken:
            pass
    assert survivors == 0


def test_sessions_expire_absolutely_and_when_idle(database_url: str,
                                                  keyring: Keyring) -> None:
    short = AccountSettings(session_lifetime=timedelta(seconds=2),
                            session_idle=timedelta(seconds=1),
                            touch_interval=timedelta(milliseconds=100))
    with Accounts(Ledger(Database(database_url, pool_size=1), keyring), short) as accounts:
        _, email = _member(accounts, "short")
        idle = accounts.login(email, PASSWORD)
        busy = accounts.login(email, PASSWORD)
        for _ in range(6):
            time.sleep(0.3)
            accounts.check(busy.token)  # each use resets its idle clock
        with pytest.raises(InvalidToken):
            accounts.check(idle.token)
        time.sleep(0.5)
        with pytest.raises(InvalidToken):
            accounts.check(busy.token)  # past its absolute lifetime


def test_listing_and_revoking_sessions(accounts: Accounts, conn: psycopg.Connection[Any]
                                       ) -> None:
    person, email = _member(accounts)
    first = accounts.login(email, PASSWORD, client=Client(
        label="work laptop", ip="2001:db8::7", user_agent="Firefox/140"))
    second = accounts.login(email, PASSWORD, client=Client(label="phone", ip="192.0.2.9"))
    third = accounts.login(email, PASSWORD)
    scope = accounts.check(first.token)
    listed = accounts.sessions(scope)
    assert [s.session_id for s in listed] == [first.session_id, second.session_id,
                                              third.session_id]
    assert (listed[0].label, listed[0].ip, listed[0].user_agent) == (
        "work laptop", "2001:db8::7", "Firefox/140")
    stored = b"".join(bytes(row[0]) for row in conn.execute(
        "SELECT details FROM account_sessions WHERE person_id = %s", (person,)))
    for plain in (b"work laptop", b"2001:db8::7", b"Firefox", b"192.0.2.9", b"phone"):
        assert plain not in stored
    assert accounts.revoke(scope, second.session_id)
    assert not accounts.revoke(scope, second.session_id)
    with pytest.raises(InvalidToken):
        accounts.check(second.token)
    assert accounts.revoke_others(scope) == 1
    with pytest.raises(InvalidToken):
        accounts.check(third.token)
    other, other_email = _member(accounts, "other")
    with pytest.raises(NotPermitted):
        accounts.sessions(scope, other)
    theirs = accounts.login(other_email, PASSWORD)
    assert not accounts.revoke(scope, theirs.session_id)  # not this person's to end
    assert accounts.check(theirs.token).person_id == other
    accounts.logout(first.token)
    with pytest.raises(InvalidToken):
        accounts.check(first.token)
    service = Scope.for_service("helpdesk")
    accounts.login(email, PASSWORD)
    assert accounts.revoke_all(service, person) >= 1
    assert accounts.sessions(service, person) == []
    with pytest.raises(InvalidInput):
        accounts.sessions(service)


def test_personal_access_tokens(accounts: Accounts) -> None:
    person, email = _member(accounts)
    scope = accounts.check(accounts.login(email, PASSWORD).token)
    pat = accounts.create_access_token(scope, "deploy script",
                                       expires_in=parse_duration("30d"))
    assert pat.token.startswith("plp1_")
    assert timedelta(days=29) < pat.expires_at - datetime.now(UTC) <= timedelta(days=30)
    [listed] = accounts.access_tokens(scope)
    assert (listed.session_id, listed.label) == (pat.session_id, "deploy script")
    with pytest.raises(InvalidInput):
        accounts.create_access_token(scope, "forever", expires_in=timedelta(days=4000))
    with pytest.raises(InvalidInput):
        accounts.create_access_token(scope, "\x00bad")
    assert accounts.revoke_all(scope) >= 1  # sessions only: the token stays
    assert accounts.check(pat.token).person_id == person
    with pytest.raises(NotPermitted):  # its session ended: no new token from that scope
        accounts.create_access_token(scope, "late")
    assert accounts.revoke(Scope.for_service("admin"), pat.session_id)
    with pytest.raises(InvalidToken):
        accounts.check(pat.token)


def test_an_outdated_hash_is_upgraded_at_login(accounts: Accounts) -> None:
    weak = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    email = _email("weak")
    person = accounts.ledger.create_person(email=email, name="Weak",
                                           password_hash=weak.hash(PASSWORD)).person_id
    issued = accounts.login(email, PASSWORD)
    assert accounts.check(issued.token).person_id == person
    ops = [entry.op for entry in accounts.ledger.history(person)]
    assert ops == ["created", "password_changed"]
    assert accounts.login(email, PASSWORD).person_id == person
    assert [e.op for e in accounts.ledger.history(person)] == ops


def test_settings_come_from_the_environment() -> None:
    settings = AccountSettings.from_environment({"PEOPLELOG_SESSION_LIFETIME": "7d",
                                                 "PEOPLELOG_SUDO_WINDOW": "5m"})
    assert settings.session_lifetime == timedelta(days=7)
    assert settings.sudo_window == timedelta(minutes=5)
    assert settings.session_idle == AccountSettings().session_idle
    with pytest.raises(ConfigurationError, match="PEOPLELOG_SESSION_IDLE"):
        AccountSettings.from_environment({"PEOPLELOG_SESSION_IDLE": "soon"})
    with pytest.raises(ValueError):
        parse_duration("0d")


def test_token_digests_never_show_the_token() -> None:
    digests = token_digests("pls1_" + "B" * 42 + "A")
    assert "B" not in repr(digests) and len(digests.lookup) == 16


def test_the_cli_registers_logs_in_checks_lists_and_revokes(cli: Cli) -> None:
    email = _email("cli")
    registered = cli("account", "register", "--email", email, "--name", "Cli Person",
                     "--password-stdin", "--json", stdin=PASSWORD + "\n")
    assert registered.code == 0, registered.stderr
    person = registered.json["person_id"]
    login = cli("account", "login", "--email", email, "--password-stdin", "--label", "tty",
                "--json", stdin=PASSWORD + "\n")
    assert login.code == 0, login.stderr
    token = login.json["token"]
    assert set(login.json) >= {"token", "session_id", "person_id", "expires_at"}
    assert token not in login.stderr
    checked = cli("session", "check", "--json", stdin=token + "\n")
    assert checked.code == 0, checked.stderr
    assert (checked.json["person_id"], checked.json["session_id"]) == (
        person, login.json["session_id"])
    for bad in ({"email": email, "password": "wrong horse battery staple"},
                {"email": _email("nobody"), "password": PASSWORD}):
        refused = cli("account", "login", "--email", bad["email"], "--password-stdin",
                      stdin=bad["password"] + "\n")
        assert refused.code == 6 and "invalid email or password" in refused.stderr
    assert cli("session", "check", stdin="pls1_nonsense\n").code == 6
    listed = cli("session", "list", person, "--json")
    assert listed.code == 0 and [s["label"] for s in listed.json] == ["tty"]
    made = cli("token", "create", person, "--name", "deploy", "--expires-in", "30d", "--json")
    assert made.code == 0, made.stderr
    tokens = cli("token", "list", person, "--json")
    assert [t["label"] for t in tokens.json] == ["deploy"]
    assert cli("token", "create", person, "--name", "x", "--expires-in", "soon").code == 2
    changed = cli("person", "update", person, "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert changed.code == 0, changed.stderr
    for ended in (token, made.json["token"]):
        assert cli("session", "check", stdin=ended + "\n").code == 6
    again = cli("account", "login", "--email", email, "--password-stdin", "--json",
                stdin=NEW_PASSWORD + "\n")
    assert again.code == 0
    revoked = cli("session", "revoke-all", person, "--json")
    assert revoked.code == 0 and revoked.json["revoked"] == 1
    assert cli("session", "check", stdin=again.json["token"] + "\n").code == 6
    assert cli("session", "revoke", str(uuid.uuid4())).code == 3


def test_new_passwords_must_be_long_and_strong_enough(accounts: Accounts,
                                                      conn: psycopg.Connection[Any]) -> None:
    before = conn.execute("SELECT count(*) FROM people").fetchone()
    email = _email("policy")
    for password, problem in (("password1234", "too weak: This is a very common password"),
                              ("Tr0ub4dor&3", "too short (at least 12"),
                              ("correct horse\x00battery", "NUL"),
                              ("correct horse \ud800 battery", "not valid UTF-8"),
                              (email.split("@")[0] * 2, "too weak")):
        with pytest.raises(InvalidInput, match=re.escape(problem)) as caught:
            accounts.register(email, password=password)
        assert password not in str(caught.value)
    assert conn.execute("SELECT count(*) FROM people").fetchone() == before
    person, address = _member(accounts, "policy")
    scope = accounts.check(accounts.login(address, PASSWORD).token)
    with pytest.raises(InvalidInput, match="too weak"):
        accounts.change_password(scope, PASSWORD, "qwertyuiop123")
    lenient = AccountSettings.from_environment({"PEOPLELOG_MIN_PASSWORD_LENGTH": "16",
                                                "PEOPLELOG_MIN_PASSWORD_SCORE": "0"})
    assert (lenient.min_password_length, lenient.min_password_score) == (16, 0)
    with pytest.raises(ConfigurationError, match="PEOPLELOG_MIN_PASSWORD_SCORE"):
        AccountSettings.from_environment({"PEOPLELOG_MIN_PASSWORD_SCORE": "high"})
    assert accounts.check(accounts.login(address, PASSWORD).token).person_id == person


def test_stored_hashes_outside_argon2id_bounds_are_refused(accounts: Accounts) -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    heavy = "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHRzYWx0$" + "A" * 43
    with pytest.raises(InvalidInput, match="weaker than OWASP"):
        accounts.ledger.create_person(email=_email("weak"), name="W", password_hash=weak)
    with pytest.raises(InvalidInput, match="too heavy"):
        accounts.ledger.create_person(email=_email("heavy"), name="H", password_hash=heavy)
