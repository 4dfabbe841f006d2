"""Service API keys: issued with their permissions and shown once, checked into a service
``Scope`` against the writer seal, listed without secrets, revoked; a key is never a
session nor a session a key; a row changed behind the application's back no longer
checks; issue and revocation are security events. Real PostgreSQL, nothing mocked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from conftest import Cli, create_database, drop_database
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.accounts import (
    PERMISSIONS,
    Accounts,
    AccountSettings,
    ApiKeyInfo,
    IssuedApiKey,
    Scope,
    TokenKind,
    new_token,
    token_digests,
)
from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import (
    Conflict,
    InvalidInput,
    InvalidToken,
    apply_migrations,
    grant_app_role,
    grant_auditor_role,
)

PASSWORD = "correct horse battery staple"
SERVICE = Scope.for_service("test")
Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with Accounts(Ledger(Database(database_url, pool_size=2), keyring),
                  AccountSettings()) as opened:
        yield opened


def _name(tag: str = "svc") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def _counts(conn: Conn) -> tuple[int, int]:
    keys = conn.execute("SELECT count(*) FROM account_api_keys").fetchone()
    events = conn.execute("SELECT count(*) FROM security_events").fetchone()
    assert keys is not None and events is not None
    return int(keys[0]), int(events[0])


def _events(accounts: Accounts, kind: str, key_id: uuid.UUID) -> list[dict[str, Any]]:
    return [e.facts or {} for e in accounts.events(SERVICE, kind=kind, limit=1000).events
            if (e.facts or {}).get("key_id") == str(key_id)]


def test_create_check_list_and_revoke(accounts: Accounts) -> None:
    name = _name("billing")
    issued = accounts.create_api_key(name, ["people:write", "people:read", "people:read"],
                                     actor="ops:ada")
    assert isinstance(issued, IssuedApiKey)
    assert issued.token.startswith("plk1_") and len(issued.token) == 48
    assert issued.permissions == ("people:read", "people:write") and issued.name == name
    scope = accounts.check_api_key(issued.token)
    assert scope == Scope(kind="service", service=name, api_key_id=issued.key_id,
                          permissions=frozenset({"people:read", "people:write"}))
    assert scope.actor == f"service:{name}" and not scope.sudo()
    assert scope.allows("people:read") and scope.allows("people:write")
    assert not scope.allows("people:erase") and not scope.allows("accounts:admin")
    assert scope.as_dict()["permissions"] == ["people:read", "people:write"]
    assert scope.as_dict()["api_key_id"] == str(issued.key_id)
    listed = {key.name: key for key in accounts.api_keys()}
    mine = listed[name]
    assert isinstance(mine, ApiKeyInfo)
    assert (mine.key_id, mine.permissions, mine.created_by, mine.created_at) == (
        issued.key_id, issued.permissions, "ops:ada", issued.created_at)
    assert mine.last_used_at is not None  # the check touched it
    assert issued.token not in repr(mine) and issued.token not in str(mine.as_dict())
    later = accounts.create_api_key(_name("later"), ["audit:read"])
    names = [key.name for key in accounts.api_keys()]
    assert names.index(name) < names.index(later.name)  # oldest first
    assert accounts.revoke_api_key(name, actor="ops:ada")
    assert not accounts.revoke_api_key(name)
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        accounts.check_api_key(issued.token)
    assert name not in {key.name for key in accounts.api_keys()}
    assert accounts.revoke_api_key(str(later.key_id))  # by id too
    with pytest.raises(InvalidToken):
        accounts.check_api_key(later.token)
    assert not accounts.revoke_api_key(str(uuid.uuid4()))


def test_last_use_is_touched_at_most_once_per_interval(database_url: str,
                                                        keyring: Keyring,
                                                        conn: Conn) -> None:
    with Accounts(Ledger(Database(database_url, pool_size=1), keyring),
                  AccountSettings(touch_interval=timedelta(hours=1))) as accounts:
        issued = accounts.create_api_key(_name("touch"), ["people:read"])

        def used() -> Any:
            row = conn.execute("SELECT last_used_at FROM account_api_keys WHERE key_id = %s",
                               (issued.key_id,)).fetchone()
            assert row is not None
            return row[0]

        assert used() is None
        accounts.check_api_key(issued.token)
        first = used()
        assert first is not None
        accounts.check_api_key(issued.token)
        assert used() == first


def test_permissions_and_names_are_checked_before_anything_is_written(
        accounts: Accounts, conn: Conn) -> None:
    before = _counts(conn)
    with pytest.raises(InvalidInput, match="people:delete"):
        accounts.create_api_key(_name(), ["people:read", "people:delete"])
    with pytest.raises(InvalidInput, match="at least one permission"):
        accounts.create_api_key(_name(), [])
    for bad in ("people:read", [1], None):
        with pytest.raises(InvalidInput):
            accounts.create_api_key(_name(), bad)  # type: ignore[arg-type]
    for bad_name in ("", " padded", "padded ", "x" * 65, "tab\there", "new\nline", 7):
        with pytest.raises(InvalidInput):
            accounts.create_api_key(bad_name, ["people:read"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        accounts.create_api_key(_name(), ["people:read"], actor=" ")
    assert _counts(conn) == before


def test_a_name_is_taken_once(accounts: Accounts, conn: Conn) -> None:
    name = _name("dup")
    first = accounts.create_api_key(name, ["people:read"])
    before = _counts(conn)
    with pytest.raises(Conflict, match=f"an API key named '{name}' exists"):
        accounts.create_api_key(name, ["accounts:admin"])
    assert _counts(conn) == before
    assert accounts.check_api_key(first.token).permissions == frozenset({"people:read"})
    assert accounts.revoke_api_key(name)
    again = accounts.create_api_key(name, ["audit:read"])  # free once revoked
    assert accounts.check_api_key(again.token).allows("audit:read")


def test_a_key_is_never_a_session_and_a_session_never_a_key(accounts: Accounts) -> None:
    email = f"k-{uuid.uuid4().hex[:10]}@example.org"
    accounts.register(email, password=PASSWORD)
    session = accounts.login(email, PASSWORD)
    pat = accounts.create_access_token(accounts.check(session.token), "script")
    key = accounts.create_api_key(_name("kinds"), sorted(PERMISSIONS))
    for token in (session.token, pat.token, "plo1_" + key.token[5:], "pls1_" + key.token[5:],
                  "plk1_" + session.token[5:], key.token[:-1] + "x", key.token + "=", "",
                  "plk1_" + "A" * 43):
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            accounts.check_api_key(token)
    for kind in (None, TokenKind.SESSION, TokenKind.ACCESS_TOKEN, TokenKind.API_KEY):
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            accounts.check(key.token, kind=kind)
    with pytest.raises(InvalidToken):
        accounts.logout(key.token)
    with pytest.raises(InvalidToken):
        token_digests(key.token, TokenKind.SESSION)
    assert token_digests(key.token).kind is TokenKind.API_KEY
    assert accounts.check(session.token).kind == "session"
    assert accounts.check_api_key(key.token).allows("accounts:admin")


def test_scopes_hold_permissions_only_as_a_service() -> None:
    service = Scope.for_service("reports", ["audit:read"])
    assert service.permissions == frozenset({"audit:read"}) and service.allows("audit:read")
    assert not service.allows("audit:write") and service.api_key_id is None
    assert Scope.for_service("reports").permissions == frozenset()
    person = Scope(kind="session", person_id=uuid.uuid4())
    assert not any(person.allows(p) for p in PERMISSIONS)
    assert person.as_dict()["permissions"] == []
    with pytest.raises(InvalidInput, match="only a service"):
        Scope(kind="session", person_id=uuid.uuid4(),
              permissions=frozenset({"accounts:admin"}))
    with pytest.raises(InvalidInput, match="people:everything"):
        Scope.for_service("reports", ["people:everything"])
    with pytest.raises(InvalidInput):
        service.allows("people:reed")
    assert sorted(PERMISSIONS) == ["accounts:admin", "audit:read", "audit:write",
                                   "people:erase", "people:read", "people:write"]
    assert isinstance(PERMISSIONS, frozenset)


def test_a_key_changed_in_the_database_no_longer_checks(accounts: Accounts,
                                                         conn: Conn) -> None:
    """The owner's login (no keyring) widens a key, renames it, backdates it, or writes
    one of its own: none of them checks, and each refusal is an event."""
    edits = ("UPDATE account_api_keys SET permissions = permissions || '{accounts:admin}'"
             " WHERE key_id = %s",
             "UPDATE account_api_keys SET name = name || '-x' WHERE key_id = %s",
             "UPDATE account_api_keys SET created_at = created_at - interval '1 day'"
             " WHERE key_id = %s",
             "UPDATE account_api_keys SET permissions = '{people:read,people:read}'"
             " WHERE key_id = %s")
    for edit in edits:
        key = accounts.create_api_key(_name("tamper"), ["people:read"])
        accounts.check_api_key(key.token)
        conn.execute(edit, (key.key_id,))
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            accounts.check_api_key(key.token)
        refused = _events(accounts, "token_refused", key.key_id)
        assert refused == [{"token": "api_key", "cause": "seal", "key_id": str(key.key_id)}]
    token, digests = new_token(TokenKind.API_KEY)
    conn.execute("INSERT INTO account_api_keys (key_id, name, lookup, seal, seal_key,"
                 " permissions, created_by) VALUES (%s, %s, %s, %s, 'writer-1',"
                 " '{accounts:admin}', 'mallory')",
                 (uuid.uuid4(), _name("forged"), digests.lookup, b"\x00" * 32))
    with pytest.raises(InvalidToken):
        accounts.check_api_key(token)


def test_a_revoked_key_put_back_stays_revoked(accounts: Accounts, conn: Conn) -> None:
    issued = accounts.create_api_key(_name("back"), ["people:read"])
    saved = conn.execute("SELECT * FROM account_api_keys WHERE key_id = %s",
                         (issued.key_id,)).fetchone()
    assert saved is not None
    assert accounts.revoke_api_key(issued.name)
    conn.execute("INSERT INTO account_api_keys VALUES ("
                 + ", ".join(["%s"] * len(saved)) + ")", saved)
    with pytest.raises(InvalidToken):
        accounts.check_api_key(issued.token)
    conn.execute("SET enable_seqscan = off")  # is the index usable for the check's test?
    plan = "\n".join(str(row[0]) for row in conn.execute(
        "EXPLAIN SELECT 1 FROM security_events e WHERE e.kind = 'api_key_revoked'"
        " AND e.facts->>'key_id' = %s", (str(issued.key_id),)))
    conn.execute("RESET enable_seqscan")
    assert "security_events_api_key_revoked" in plan


def test_no_token_is_stored_or_shown(accounts: Accounts, conn: Conn) -> None:
    issued = accounts.create_api_key(_name("secret"), ["people:read", "audit:read"])
    assert issued.token not in repr(issued) and issued.token[5:] not in repr(issued)
    assert issued.as_dict()["token"] == issued.token
    assert repr(token_digests(issued.token)) == "TokenDigests(kind='api_key')"
    body = issued.token[5:]
    for table in ("account_api_keys", "security_events"):
        dump = conn.execute(sql.SQL("SELECT string_agg(t::text, '') FROM {} t").format(
            sql.Identifier(table))).fetchone()
        assert dump is not None and body not in dump[0] and issued.token not in dump[0]
    row = conn.execute("SELECT lookup, seal FROM account_api_keys WHERE key_id = %s",
                       (issued.key_id,)).fetchone()
    assert row is not None
    assert bytes(row[0]) == token_digests(issued.token).lookup and len(bytes(row[1])) == 32
    assert body.encode() not in bytes(row[0]) + bytes(row[1])


def test_issue_and_revocation_are_events_in_their_transaction(accounts: Accounts) -> None:
    name = _name("events")
    issued = accounts.create_api_key(name, ["people:write", "people:erase"], actor="ops:bo")
    assert accounts.revoke_api_key(name, actor="ops:cy")
    facts = {"key_id": str(issued.key_id), "name": name,
             "permissions": "people:erase,people:write"}
    assert _events(accounts, "api_key_issued", issued.key_id) == [facts]
    assert _events(accounts, "api_key_revoked", issued.key_id) == [facts]
    actors = {e.kind: e.actor for e in accounts.events(SERVICE, limit=1000).events
              if (e.facts or {}).get("key_id") == str(issued.key_id)}
    assert actors == {"api_key_issued": "ops:bo", "api_key_revoked": "ops:cy"}
    assert not accounts.revoke_api_key(name)
    assert len(_events(accounts, "api_key_revoked", issued.key_id)) == 1


@pytest.fixture(scope="module")
def roles(server_url: str) -> Iterator[tuple[str, str, str]]:
    """A fresh database with an application role and an auditor role granted."""
    url = create_database(server_url, "api_key_roles")
    app, auditor = (f"plt_{what}_{uuid.uuid4().hex[:8]}" for what in ("app", "aud"))
    with psycopg.connect(server_url, autocommit=True) as admin:
        for role in (app, auditor):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with psycopg.connect(url, autocommit=True) as owner:
        apply_migrations(owner)
        grant_app_role(owner, app)
        grant_auditor_role(owner, auditor)
    yield url, app, auditor
    with psycopg.connect(url, autocommit=True) as owner:
        for role in (app, auditor):
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    drop_database(server_url, url)
    with psycopg.connect(server_url, autocommit=True) as admin:
        for role in (app, auditor):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_app_role_runs_api_keys_but_cannot_widen_one(
        roles: tuple[str, str, str]) -> None:
    url, app, auditor = roles
    app_url = make_conninfo(url, user=app)
    with Accounts(Ledger(Database(app_url, pool_size=1), Keyring.generate()),
                  AccountSettings(touch_interval=timedelta(0))) as accounts:
        issued = accounts.create_api_key(_name("role"), ["people:read"])
        assert accounts.check_api_key(issued.token).allows("people:read")
        assert [k.key_id for k in accounts.api_keys()] == [issued.key_id]
        with psycopg.connect(app_url, autocommit=True) as stolen:
            for edit in ("UPDATE account_api_keys SET permissions = '{accounts:admin}'",
                         "UPDATE account_api_keys SET name = 'other'",
                         "UPDATE account_api_keys SET seal = seal",
                         "TRUNCATE account_api_keys"):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    stolen.execute(edit)
            stolen.execute("UPDATE account_api_keys SET last_used_at = now()")
            saved = stolen.execute("SELECT * FROM account_api_keys").fetchone()
            assert saved is not None
            assert accounts.revoke_api_key(issued.name)
            stolen.execute("INSERT INTO account_api_keys VALUES ("
                           + ", ".join(["%s"] * len(saved)) + ")", saved)
            for forged in ("DELETE FROM security_events",
                           "UPDATE security_events SET kind = 'login'"):
                with pytest.raises(psycopg.Error):
                    stolen.execute(forged)
        with pytest.raises(InvalidToken):
            accounts.check_api_key(issued.token)
    with psycopg.connect(make_conninfo(url, user=auditor), autocommit=True) as audit:
        audit.execute("SELECT key_id, name, permissions, created_at, created_by,"
                      " last_used_at FROM account_api_keys").fetchall()
        for column in ("lookup", "seal", "seal_key"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                audit.execute(f"SELECT {column} FROM account_api_keys")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            audit.execute("DELETE FROM account_api_keys")


def test_the_cli_creates_lists_and_revokes(cli: Cli, database_url: str,
                                           keyring: Keyring) -> None:
    name = _name("cli")
    made = cli("api-key", "create", name, "--permission", "people:read", "--permission",
               "audit:read", "--json")
    assert made.code == 0, made.stderr
    token = made.json["token"]
    assert token.startswith("plk1_") and made.json["permissions"] == ["audit:read",
                                                                      "people:read"]
    assert token not in made.stderr
    human = cli("api-key", "create", _name("cli"), "--permission", "people:write")
    assert human.code == 0, human.stderr
    first, *rest = human.stdout.splitlines()
    assert first.startswith("plk1_") and "shown once" in "\n".join(rest)
    assert first not in "\n".join(rest)
    listed = cli("api-key", "list", "--json")
    assert listed.code == 0, listed.stderr
    mine = next(k for k in listed.json if k["name"] == name)
    assert mine["key_id"] == made.json["key_id"] and mine["created_by"].startswith("cli:")
    assert token not in listed.stdout and "token" not in mine
    table = cli("api-key", "list")
    assert table.code == 0 and name in table.stdout and token not in table.stdout
    assert cli("api-key", "create", name, "--permission", "people:read").code == 4
    assert cli("api-key", "create", _name(), "--permission", "people:all").code == 2
    assert cli("api-key", "create", _name()).code == 2
    with Accounts(Ledger(Database(database_url, pool_size=1), keyring),
                  AccountSettings()) as accounts:
        assert accounts.check_api_key(token).service == name
        revoked = cli("api-key", "revoke", name, "--json")
        assert revoked.code == 0, revoked.stderr
        assert revoked.json == {"name": name, "revoked": True}
        with pytest.raises(InvalidToken):
            accounts.check_api_key(token)
    assert cli("api-key", "revoke", name).code == 3
    assert cli("checkpoint").code == 0
    verified = cli("verify", "--json")
    assert verified.code == 0, verified.stdout


def test_a_retirement_keeps_the_revocation_that_keeps_a_revoked_key_out(
        accounts: Accounts, database_url: str) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from peoplelog.fields import Attestations, Attestor, KeyPurpose  # noqa: PLC0415
    from peoplelog.projections import (  # noqa: PLC0415
        CheckpointSigner,
        make_checkpoint,
        retire_events,
    )

    name = _name("retired")
    issued = accounts.create_api_key(name, ["people:read"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        saved = conn.execute("SELECT * FROM account_api_keys WHERE name = %s",
                             (name,)).fetchone()
    assert accounts.revoke_api_key(name)
    keyring = accounts.ledger.keyring
    signing = {"signer": CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING)),
               "writers": Attestations.of(keyring)}
    with psycopg.connect(database_url, autocommit=True) as conn:
        make_checkpoint(conn, **signing)  # type: ignore[arg-type]
        retire_events(conn, Attestor.of(keyring), datetime.now(UTC) + timedelta(seconds=1),
                      **signing)  # type: ignore[arg-type]
        kept = conn.execute("SELECT count(*) FROM security_events WHERE kind ="
                            " 'api_key_revoked' AND facts->>'name' = %s", (name,)).fetchone()
        assert kept == (1,)
        assert saved is not None
        conn.execute(sql.SQL("INSERT INTO account_api_keys VALUES ({})").format(
            sql.SQL(", ").join([sql.Placeholder()] * len(saved))), saved)  # put back
    with pytest.raises(InvalidToken):
        accounts.check_api_key(issued.token)
