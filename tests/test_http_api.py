"""The JSON API through an ASGI client on a real database, with mail through a real SMTP
server: sign-up, login, sessions, links, API keys and their permissions, people
administration, key-free audit, problems, limits, health."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from http_support import NEW_PASSWORD, PASSWORD, address, client_for, open_accounts
from smtp_inbox import Inbox, smtp_server

from peoplelog.accounts import Accounts, SmtpMailer
from peoplelog.fields import Keyring
from peoplelog.http import STATUS_OF_KIND, status_of
from peoplelog.schema import (
    EmailTaken,
    InvalidToken,
    NotPermitted,
    PersonErased,
    RateLimited,
)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, SmtpMailer]]:
    with smtp_server() as served:
        yield served


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with open_accounts(database_url, keyring) as opened:
        yield opened


@pytest.fixture(scope="module")
def client(accounts: Accounts) -> Iterator[TestClient]:
    with client_for(accounts) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(accounts: Accounts) -> dict[str, str]:
    key = accounts.create_api_key("admin-tests", ["people:read", "people:write",
                                                  "people:erase", "audit:read",
                                                  "audit:write"])
    return {"Authorization": f"Bearer {key.token}"}


def _people(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])


def _login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/v1/sessions", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_openapi_document_has_the_paths_clients_rely_on(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert "post" in paths["/v1/accounts"]
    assert "post" in paths["/v1/sessions"]
    assert "delete" in paths["/v1/sessions/current"]
    assert "get" in paths["/v1/me"]
    assert "Problem" in document["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/v1/sessions/current" in docs.text


def test_sign_up_confirm_log_in_me_and_log_out(
        client: TestClient, accounts: Accounts, smtp: tuple[Inbox, SmtpMailer]) -> None:
    inbox, mailer = smtp
    email = address("signup")
    response = client.post("/v1/accounts", json={"email": email, "password": PASSWORD,
                                                 "name": "Ada"})
    assert response.status_code == 202
    accounts.send_pending(mailer)
    assert "/confirm?token=" in inbox.body(inbox.to(email)[-1])
    token = inbox.token_for(email)
    before = client.post("/v1/sessions", json={"email": email, "password": PASSWORD})
    assert before.status_code == 401  # the password is not the account's before confirming
    wrong = client.post("/v1/email-confirmations", json={"token": token,
                                                         "password": NEW_PASSWORD})
    assert wrong.status_code == 401 and wrong.json()["kind"] == "login_failed"
    confirmed = client.post("/v1/email-confirmations", json={"token": token,
                                                             "password": PASSWORD})
    assert confirmed.status_code == 204
    session = _login(client, email)
    assert set(session) >= {"token", "session_id", "expires_at", "person_id"}
    me = client.get("/v1/me", headers=_bearer(session["token"]))
    assert me.status_code == 200
    assert me.json()["person_id"] == session["person_id"]
    assert me.json()["kind"] == "session" and me.json()["sudo"] is True
    assert accounts.ledger.get_person(session["person_id"]).verified_at is not None
    assert client.delete("/v1/sessions/current",
                         headers=_bearer(session["token"])).status_code == 204
    gone = client.get("/v1/me", headers=_bearer(session["token"]))
    assert gone.status_code == 401
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["kind"] == "invalid_token"
    assert gone.json()["type"] == "urn:peoplelog:problem:invalid_token"
    assert gone.headers["www-authenticate"].startswith("Bearer")


def test_sign_up_never_tells_whether_an_address_is_registered(
        client: TestClient, accounts: Accounts, smtp: tuple[Inbox, SmtpMailer],
        conn: psycopg.Connection[Any]) -> None:
    inbox, mailer = smtp
    taken = address("taken")
    accounts.register(taken, password=PASSWORD)
    before = _people(conn)
    first = client.post("/v1/accounts", json={"email": taken, "password": NEW_PASSWORD})
    fresh = client.post("/v1/accounts", json={"email": address("fresh"),
                                              "password": NEW_PASSWORD})
    assert (first.status_code, first.json()) == (fresh.status_code, fresh.json())
    assert _people(conn) == before + 1
    accounts.send_pending(mailer)
    notice = inbox.body(inbox.to(taken)[-1])
    assert "already has one" in notice and "/reset-password?token=" in notice
    # the owner's password is unchanged
    _login(client, taken)


def test_a_failed_login_looks_the_same_for_unknown_and_known_addresses(
        client: TestClient, accounts: Accounts) -> None:
    known = address("known")
    accounts.register(known, password=PASSWORD)
    wrong = client.post("/v1/sessions", json={"email": known, "password": NEW_PASSWORD})
    unknown = client.post("/v1/sessions", json={"email": address("nobody"),
                                                "password": NEW_PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    for kind in ("login-links", "login-codes", "password-resets"):
        a = client.post(f"/v1/{kind}", json={"email": known})
        b = client.post(f"/v1/{kind}", json={"email": address("nobody")})
        assert (a.status_code, a.json()) == (b.status_code, b.json()) == (a.status_code,
                                                                           a.json())
        assert a.status_code == 202


def test_login_by_link_and_by_code(client: TestClient, accounts: Accounts,
                                   smtp: tuple[Inbox, SmtpMailer]) -> None:
    inbox, mailer = smtp
    email = address("links")
    accounts.register(email, password=PASSWORD)
    client.post("/v1/login-links", json={"email": email})
    accounts.send_pending(mailer)
    session = client.post("/v1/sessions/link", json={"token": inbox.token_for(email)})
    assert session.status_code == 201
    again = client.post("/v1/sessions/link", json={"token": inbox.token_for(email)})
    assert again.status_code == 401 and again.json()["kind"] == "invalid_token"
    client.post("/v1/login-codes", json={"email": email})
    accounts.send_pending(mailer)
    by_code = client.post("/v1/sessions/code", json={"email": email,
                                                     "code": inbox.code_for(email)})
    assert by_code.status_code == 201


def test_sessions_password_change_and_reset(client: TestClient, accounts: Accounts,
                                            smtp: tuple[Inbox, SmtpMailer]) -> None:
    inbox, mailer = smtp
    email = address("sessions")
    accounts.register(email, password=PASSWORD)
    first, second = _login(client, email), _login(client, email)
    listed = client.get("/v1/sessions", headers=_bearer(first["token"])).json()
    assert {s["session_id"] for s in listed} == {first["session_id"], second["session_id"]}
    assert [s["current"] for s in listed if s["session_id"] == first["session_id"]] == [True]
    changed = client.post("/v1/me/password", headers=_bearer(first["token"]),
                          json={"current": PASSWORD, "new": NEW_PASSWORD})
    assert changed.status_code == 201
    for old in (first, second):
        assert client.get("/v1/me", headers=_bearer(old["token"])).status_code == 401
    rotated = changed.json()["token"]
    assert client.get("/v1/me", headers=_bearer(rotated)).status_code == 200
    assert client.post("/v1/password-resets", json={"email": email}).status_code == 202
    accounts.send_pending(mailer)
    reset = client.post("/v1/password-resets/complete",
                        json={"token": inbox.token_for(email), "password": PASSWORD})
    assert reset.status_code == 204
    assert client.get("/v1/me", headers=_bearer(rotated)).status_code == 401
    third = _login(client, email)
    token = client.post("/v1/access-tokens", headers=_bearer(third["token"]),
                        json={"name": "script", "expires_in_days": 30})
    assert token.status_code == 201 and token.json()["token"].startswith("plp1_")
    tokens = client.get("/v1/access-tokens", headers=_bearer(third["token"])).json()
    assert [t["label"] for t in tokens] == ["script"]
    ended = client.delete(f"/v1/sessions/{token.json()['session_id']}",
                          headers=_bearer(third["token"]))
    assert ended.status_code == 204
    assert client.delete("/v1/sessions", headers=_bearer(third["token"])).json() == {"ended": 1}


def test_bad_json_extra_fields_and_oversized_bodies_write_nothing(
        client: TestClient, conn: psycopg.Connection[Any]) -> None:
    before = _people(conn)
    bad = client.post("/v1/accounts", content=b'{"email": "a@b.org", "password": ',
                      headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["kind"] == "invalid_json"
    extra = client.post("/v1/accounts", json={"email": address(), "password": PASSWORD,
                                              "admin": True})
    assert extra.status_code == 422 and extra.json()["kind"] == "invalid_input"
    assert PASSWORD not in extra.text
    weak = client.post("/v1/accounts", json={"email": address(), "password": "password"})
    assert weak.status_code == 422 and "password" in weak.json()["detail"]
    huge = client.post("/v1/accounts", content=b"{" + b" " * 70_000 + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["kind"] == "payload_too_large"
    assert _people(conn) == before


def test_a_burst_is_rate_limited_in_the_shared_counters(
        database_url: str, keyring: Keyring, conn: psycopg.Connection[Any]) -> None:
    with open_accounts(database_url, keyring, requests_per_address=3,
                       requests_per_client=5) as limited, \
            client_for(limited, ip="192.0.2.17") as client:
        target = address("burst")
        answers = [client.post("/v1/password-resets", json={"email": target}).status_code
                   for _ in range(5)]
        assert answers == [202, 202, 202, 429, 429]
        refused = client.post("/v1/password-resets", json={"email": target})
        assert refused.headers["retry-after"] == "900"
        assert refused.json()["kind"] == "rate_limited"
        others = [client.post("/v1/login-links", json={"email": address()}).status_code
                  for _ in range(3)]
        assert others == [429] * 3  # past the client's own limit, whatever the address
        before = _people(conn)
        for _ in range(7):
            client.post("/v1/accounts", json={"email": address(), "password": PASSWORD})
        assert _people(conn) == before + 5
    with open_accounts(database_url, keyring, requests_per_address=3,
                       requests_per_client=5) as again, \
            client_for(again, ip="192.0.2.18") as other:
        # another process, the same counters
        assert other.post("/v1/password-resets", json={"email": target}).status_code == 429


def test_api_keys_carry_permissions_and_become_the_actor(
        client: TestClient, accounts: Accounts, admin: dict[str, str]) -> None:
    created = client.post("/v1/people", headers=admin,
                          json={"email": address("admin"), "name": "Grace",
                                "reason": "imported"})
    assert created.status_code == 201
    person = created.json()["person_id"]
    updated = client.patch(f"/v1/people/{person}", headers=admin,
                           json={"name": "Grace Hopper", "expect_version": 0,
                                 "reason": "typo"})
    assert updated.status_code == 200 and updated.json()["version"] == 1
    stale = client.patch(f"/v1/people/{person}", headers=admin,
                         json={"name": "G", "expect_version": 0})
    assert stale.status_code == 409 and stale.json()["kind"] == "version_conflict"
    shown = client.get(f"/v1/people/{person}", headers=admin).json()
    assert shown["name"] == "Grace Hopper"
    assert client.get(f"/v1/people/{person}?version=0", headers=admin).json()["name"] == "Grace"
    history = client.get(f"/v1/people/{person}/history", headers=admin).json()
    assert [h["actor"] for h in history] == ["service:admin-tests"] * 2
    assert [h["reason"] for h in history] == ["imported", "typo"]
    diff = client.get(f"/v1/people/{person}/diff?from=0&to=1", headers=admin).json()
    assert [c["field"] for c in diff["changed"]] == ["name"]
    changes = client.get(f"/v1/changes?person={person}", headers=admin).json()
    assert len(changes["changes"]) == 2
    reader = accounts.create_api_key("reader-tests", ["people:read"])
    forbidden = client.delete(f"/v1/people/{person}", headers=_bearer(reader.token))
    assert forbidden.status_code == 403 and "people:erase" in forbidden.json()["detail"]
    erased = client.delete(f"/v1/people/{person}?reason=asked", headers=admin)
    assert erased.status_code == 200
    gone = client.patch(f"/v1/people/{person}", headers=admin, json={"name": "X"})
    assert gone.status_code == 410 and gone.json()["kind"] == "person_erased"
    missing = client.get(f"/v1/people/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404 and missing.json()["kind"] == "person_not_found"
    accounts.revoke_api_key("reader-tests")
    assert client.get("/v1/me", headers=_bearer(reader.token)).status_code == 401
    me = client.get("/v1/me", headers=admin).json()
    assert me["kind"] == "service" and "people:erase" in me["permissions"]


def test_a_person_cannot_use_the_admin_endpoints(client: TestClient,
                                                 accounts: Accounts) -> None:
    email = address("nosy")
    accounts.register(email, password=PASSWORD)
    session = _login(client, email)
    refused = client.get(f"/v1/people/{session['person_id']}",
                         headers=_bearer(session["token"]))
    assert refused.status_code == 403
    assert client.get("/v1/audit/events", headers=_bearer(session["token"])).status_code == 403


def test_the_audit_endpoints_check_without_keys(client: TestClient, accounts: Accounts,
                                                admin: dict[str, str]) -> None:
    ref = accounts.ledger.create_person(email=address("audit"), name="Audited")
    made = client.post("/v1/audit/checkpoint", headers=admin)
    assert made.status_code == 200 and made.json()["size"] >= 1
    with client.stream("GET", "/v1/audit/verify", headers=admin) as streamed:
        assert streamed.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in streamed.iter_lines() if line]
    assert lines[-1]["type"] == "report" and lines[-1]["ok"] is True
    proof = client.get(f"/v1/audit/proof/{ref.person_id}/0", headers=admin)
    assert proof.status_code == 200 and proof.json()["cid"] == ref.cid
    with client.stream("GET", "/v1/audit/export", headers=admin) as exported:
        records = [json.loads(line) for line in exported.iter_lines() if line]
    assert records[0]["type"] == "header"
    assert any(r.get("cid") == ref.cid for r in records)
    events = client.get("/v1/audit/events?kind=login&limit=5", headers=admin).json()
    assert events["events"] and all(e["kind"] == "login" for e in events["events"])


def test_health_readiness_and_security_headers(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    for path in ("/health", "/login", "/v1/me"):
        headers = client.get(path).headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
    unknown = client.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["kind"] == "not_found"


def test_the_access_log_holds_no_token_email_address_or_body(
        client: TestClient, accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    email = address("logged")
    accounts.register(email, password=PASSWORD)
    with caplog.at_level(logging.INFO, logger="peoplelog.http.access"):
        session = _login(client, email)
        client.get("/v1/me", headers=_bearer(session["token"]))
        client.get("/login/link?token=plo1_secret-looking-token-text")
        client.post("/v1/sessions", json={"email": email, "password": "wrong " + PASSWORD})
    lines = [record.getMessage() for record in caplog.records
             if record.name == "peoplelog.http.access"]
    assert len(lines) == 4
    text = "\n".join(lines)
    for secret in (session["token"], email, PASSWORD, "plo1_", "testclient", "127.0.0.1"):
        assert secret not in text
    assert json.loads(lines[1]) == {**json.loads(lines[1]), "route": "/v1/me", "status": 200}


def test_every_error_kind_has_one_status() -> None:
    assert status_of(EmailTaken("x")) == 409
    assert status_of(PersonErased("x")) == 410
    assert status_of(InvalidToken("x")) == 401
    assert status_of(RateLimited("x")) == 429
    assert STATUS_OF_KIND["invalid_input"] == 422


def test_the_awaited_check_refuses_what_the_check_refuses(
        client: TestClient, accounts: Accounts, conn: psycopg.Connection[Any]) -> None:
    """``/v1/me`` checks on the event loop (``check_bearer_async``): a moved session, an
    expired one and a malformed token are refused there as ``check`` refuses them, and a
    stored session's refusal is a security event."""
    victim, thief = address("victim"), address("thief")
    accounts.register(victim, password=PASSWORD)
    thief_id = accounts.register(thief, password=PASSWORD)
    moved, expired = _login(client, victim), _login(client, victim)
    conn.execute("UPDATE account_sessions SET person_id = %s WHERE session_id = %s",
                 (thief_id, moved["session_id"]))
    conn.execute("UPDATE account_sessions SET last_used_at = now() - interval '4 days'"
                 " WHERE session_id = %s", (expired["session_id"],))  # idle too long
    for token in (moved["token"], expired["token"], "pls1_" + "A" * 43, "garbage"):
        answer = client.get("/v1/me", headers=_bearer(token))
        assert answer.status_code == 401 and answer.json()["kind"] == "invalid_token"
    causes = {row[0] for row in conn.execute(
        "SELECT facts->>'cause' FROM security_events WHERE kind = 'token_refused'"
        " AND session_id = ANY(%s)", ([uuid.UUID(moved["session_id"]),
                                       uuid.UUID(expired["session_id"])],))}
    assert causes == {"seal", "expired"}


def test_an_email_change_and_a_new_access_token_tell_nothing_and_need_a_fresh_login(
        client: TestClient, accounts: Accounts, smtp: tuple[Inbox, SmtpMailer]) -> None:
    inbox, mailer = smtp
    email, taken = address("mover"), address("owner")
    accounts.register(email, password=PASSWORD)
    accounts.register(taken, password=PASSWORD)
    session = _login(client, email)
    answers = [client.post("/v1/me/email", headers=_bearer(session["token"]),
                           json={"email": target}) for target in (taken, address("free"))]
    assert answers[0].status_code == answers[1].status_code == 202
    assert answers[0].json() == answers[1].json()
    accounts.send_pending(mailer)
    assert not any("/settings/confirm-email" in inbox.body(m) for m in inbox.to(taken))
    old = accounts.check(session["token"])
    stale = dataclasses.replace(old, authenticated_at=old.authenticated_at
                                - timedelta(hours=1))
    with pytest.raises(NotPermitted):
        accounts.create_access_token(stale, "script")


def test_ipv6_clients_are_counted_by_their_64_network(database_url: str,
                                                     keyring: Keyring) -> None:
    with open_accounts(database_url, keyring, requests_per_client=3) as limited:
        answers = []
        for host in range(5):
            with client_for(limited, ip=f"2001:db8:1:2::{host + 1}") as client:
                answers.append(client.post("/v1/login-links",
                                           json={"email": address()}).status_code)
        assert answers == [202, 202, 202, 429, 429]


def test_signing_up_with_someone_elses_address_gets_nobody_in(
        client: TestClient, accounts: Accounts, smtp: tuple[Inbox, SmtpMailer]) -> None:
    """The attacker's password never becomes the account's: the link goes to the owner,
    who cannot confirm without it; the owner resets instead, and the account is theirs."""
    inbox, mailer = smtp
    victim = address("victim-signup")
    attacker_password = "attacker horse battery staple"
    assert client.post("/v1/accounts", json={"email": victim,
                                             "password": attacker_password}).status_code == 202
    refused = client.post("/v1/sessions", json={"email": victim,
                                                "password": attacker_password})
    assert refused.status_code == 401
    accounts.send_pending(mailer)
    link = inbox.token_for(victim)  # in the owner's mailbox, not the attacker's
    without = client.post("/v1/email-confirmations", json={"token": link})
    assert without.status_code == 401 and without.json()["kind"] == "login_failed"
    assert client.post("/v1/password-resets", json={"email": victim}).status_code == 202
    accounts.send_pending(mailer)
    reset = client.post("/v1/password-resets/complete",
                        json={"token": inbox.token_for(victim), "password": NEW_PASSWORD})
    assert reset.status_code == 204
    assert client.post("/v1/sessions", json={"email": victim,
                                              "password": attacker_password}).status_code == 401
    _login(client, victim, NEW_PASSWORD)
