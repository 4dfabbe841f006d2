"""A stolen application login against the accounts tables: without the keyring it can
neither mint a session, nor move one to another person, nor extend one, nor bring back
what a credential change ended, nor forge a reset link. Run as the application's role."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import create_database, drop_database
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.accounts import (
    Accounts,
    AccountSettings,
    FileMailer,
    TokenKind,
    new_token,
    token_digests,
)
from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import InvalidToken, apply_migrations, grant_app_role

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def app_url(server_url: str) -> Iterator[str]:
    url = create_database(server_url, "acct_tamper")
    role = f"plt_acct_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with psycopg.connect(url, autocommit=True) as owner:
        apply_migrations(owner)
        grant_app_role(owner, role)
    yield make_conninfo(url, user=role)
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    drop_database(server_url, url)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def accounts(app_url: str) -> Iterator[Accounts]:
    with Accounts(Ledger(Database(app_url, pool_size=2), Keyring.generate()),
                  AccountSettings()) as opened:
        yield opened


@pytest.fixture()
def stolen(app_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(app_url, autocommit=True) as conn:
        yield conn


def _member(accounts: Accounts) -> tuple[uuid.UUID, str]:
    email = f"t-{uuid.uuid4().hex[:10]}@example.org"
    return accounts.register(email, password=PASSWORD), email


def test_a_session_row_written_with_the_login_alone_lets_nobody_in(
        accounts: Accounts, stolen: psycopg.Connection[Any]) -> None:
    victim, _ = _member(accounts)
    token, digests = new_token(TokenKind.SESSION)
    stolen.execute(
        "INSERT INTO account_sessions (lookup, seal, seal_key, session_id, person_id, kind,"
        " epoch, authenticated_at, last_used_at, expires_at)"
        " VALUES (%s, %s, 'writer-1', %s, %s, 'session', 0, now(), now(),"
        " now() + interval '1 day')",
        (digests.lookup, os.urandom(32), uuid.uuid4(), victim))
    with pytest.raises(InvalidToken):
        accounts.check(token)


def test_a_session_moved_to_another_person_or_extended_no_longer_checks(
        accounts: Accounts, stolen: psycopg.Connection[Any]) -> None:
    victim, _ = _member(accounts)
    attacker, attacker_email = _member(accounts)
    own = accounts.login(attacker_email, PASSWORD)
    lookup = token_digests(own.token).lookup
    stolen.execute("UPDATE account_sessions SET person_id = %s WHERE lookup = %s",
                   (victim, lookup))
    with pytest.raises(InvalidToken):
        accounts.check(own.token)
    stolen.execute("UPDATE account_sessions SET person_id = %s,"
                   " expires_at = expires_at + interval '1 year' WHERE lookup = %s",
                   (attacker, lookup))
    with pytest.raises(InvalidToken):
        accounts.check(own.token)


def test_what_a_password_change_ended_cannot_be_brought_back(
        accounts: Accounts, stolen: psycopg.Connection[Any]) -> None:
    person, email = _member(accounts)
    issued = accounts.login(email, PASSWORD)
    saved = stolen.execute("SELECT * FROM account_sessions WHERE session_id = %s",
                           (issued.session_id,)).fetchone()
    accounts.ledger.update_person(person, password="another horse battery staple")
    assert saved is not None
    placeholders = ", ".join(["%s"] * len(saved))
    stolen.execute(f"INSERT INTO account_sessions VALUES ({placeholders})", saved)
    with pytest.raises(InvalidToken):  # its epoch is no longer the person's
        accounts.check(issued.token)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only moves forward"):
        stolen.execute("UPDATE account_credentials SET epoch = 0 WHERE person_id = %s",
                       (person,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        stolen.execute("DELETE FROM account_credentials WHERE person_id = %s", (person,))
    with pytest.raises(InvalidToken):
        accounts.check(issued.token)


def test_a_reset_link_written_with_the_login_alone_does_not_reset(
        accounts: Accounts, stolen: psycopg.Connection[Any], tmp_path: Path) -> None:
    victim, email = _member(accounts)
    token, digests = new_token(TokenKind.ONE_TIME)
    claim = stolen.execute("SELECT blind_index FROM email_lookup WHERE person_id = %s",
                           (victim,)).fetchone()
    assert claim is not None
    stolen.execute(
        "INSERT INTO account_one_time (lookup, seal, seal_key, person_id, purpose, sent_to,"
        " epoch, expires_at) VALUES (%s, %s, 'writer-1', %s, 'reset', %s, 0,"
        " now() + interval '1 hour')", (digests.lookup, os.urandom(32), victim, claim[0]))
    with pytest.raises(InvalidToken):
        accounts.reset_password(token, "attacker horse battery staple")
    assert accounts.login(email, PASSWORD).person_id == victim
    accounts.request_password_reset(email)  # the real flow works for the application's role
    assert accounts.send_pending(FileMailer(tmp_path)).sent == 1
    found = re.search(r"token=(plo1_[A-Za-z0-9_-]{43})",
                      next(tmp_path.glob("*.eml")).read_text())
    assert found is not None
    accounts.reset_password(found[1], "another horse battery staple")
    assert accounts.login(email, "another horse battery staple").person_id == victim
    assert accounts.clean_up().as_dict()["links"] >= 0
