"""The hosted pages through an ASGI client: CSRF on every form, cookie flags, session
rotation at login, templates the application overrides, and sign-up answers that do not
tell (by content or by time) whether an address is registered."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from http_support import ORIGIN, PASSWORD, address, client_for, open_accounts

from peoplelog.accounts import Accounts
from peoplelog.fields import Keyring
from peoplelog.http import HttpSettings, create_app

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with open_accounts(database_url, keyring) as opened:
        yield opened


def _form_token(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    found = _CSRF.search(page.text)
    assert found is not None
    return found[1]


def _log_in(client: TestClient, email: str) -> None:
    csrf = _form_token(client, "/login")
    done = client.post("/login", data={"email": email, "password": PASSWORD, "csrf": csrf},
                       headers={"Origin": ORIGIN}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/settings"


def test_every_form_needs_its_csrf_token_and_this_site_as_origin(accounts: Accounts) -> None:
    email = address("csrf")
    accounts.register(email, password=PASSWORD)
    with client_for(accounts) as client:
        csrf = _form_token(client, "/login")
        form = {"email": email, "password": PASSWORD}
        wrong = client.post("/login", data={**form, "csrf": "not-the-token"},
                            headers={"Origin": ORIGIN})
        assert wrong.status_code == 403 and "another site" in wrong.text
        cross = client.post("/login", data={**form, "csrf": csrf},
                            headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        missing = client.post("/login", data=form, headers={"Origin": ORIGIN})
        assert missing.status_code == 422
        assert "peoplelog-session" not in client.cookies
        _log_in(client, email)
        session = client.cookies["peoplelog-session"]
        # a logged-in form from another site is refused too, and the API refuses the cookie
        refused = client.post("/logout", data={"csrf": csrf},
                              headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        api = client.delete("/v1/sessions/current", headers={"Origin": "https://evil.example"})
        assert api.status_code == 403 and api.json()["kind"] == "not_permitted"
        assert accounts.check(session).person_id is not None


def test_cookies_are_httponly_lax_and_secure_and_the_session_rotates(
        accounts: Accounts) -> None:
    email = address("cookie")
    accounts.register(email, password=PASSWORD)
    secure_origin = "https://accounts.test"
    with client_for(accounts, secure=True, base_url=secure_origin) as client:
        page = client.get("/login")
        csrf_cookie = page.headers["set-cookie"]
        assert csrf_cookie.startswith("__Host-peoplelog-csrf=")
        assert "HttpOnly" in csrf_cookie and "Secure" in csrf_cookie
        assert "SameSite=strict" in csrf_cookie and "Path=/" in csrf_cookie
        csrf = _CSRF.search(page.text)[1]  # type: ignore[index]
        tokens = []
        for _ in range(2):
            done = client.post("/login", data={"email": email, "password": PASSWORD,
                                               "csrf": csrf},
                               headers={"Origin": secure_origin}, follow_redirects=False)
            cookie = done.headers["set-cookie"]
            assert cookie.startswith("__Host-peoplelog-session=pls1_")
            assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie
            assert "Max-Age" not in cookie  # gone with the browser unless "remember me"
            tokens.append(cookie.split(";")[0].split("=", 1)[1])
        first, second = tokens
        assert first != second
        scope = accounts.check(second)
        assert [s.session_id for s in accounts.sessions(scope)] == [scope.session_id]


def test_pages_carry_a_strict_csp_and_render_without_script(accounts: Accounts) -> None:
    with client_for(accounts) as client:
        for path in ("/register", "/login", "/forgot-password", "/reset-password?token=x",
                     "/confirm?token=x", "/login/link?token=x", "/docs"):
            page = client.get(path)
            assert page.status_code == 200, path
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "form-action 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "<script" not in page.text
            assert page.headers["cache-control"] == "no-store"
        assert client.get("/settings", follow_redirects=False).headers["location"] == "/login"
        assert client.get("/static/peoplelog.css").status_code == 200


def test_templates_can_be_overridden(accounts: Accounts, tmp_path: Path) -> None:
    (tmp_path / "login.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Welcome to Acme</h1>'
        '<form method="post" action="/login"><input type="hidden" name="csrf" '
        'value="{{ csrf }}"></form>{% endblock %}', encoding="utf-8")
    app = create_app(accounts, settings=HttpSettings(secure_cookies=False,
                                                     templates=tmp_path))
    with TestClient(app, base_url=ORIGIN) as client:
        assert "Welcome to Acme" in client.get("/login").text
        assert "Create an account" in client.get("/register").text  # the others stay


def test_sign_up_answers_known_and_unknown_addresses_alike_in_content_and_time(
        database_url: str, keyring: Keyring) -> None:
    with open_accounts(database_url, keyring,
                       request_floor=timedelta(milliseconds=800)
                       ) as accounts, client_for(accounts) as client:
        known = address("enum")
        accounts.register(known, password=PASSWORD)
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        bodies: dict[str, set[str]] = {"known": set(), "unknown": set()}
        for _ in range(5):
            for label in ("known", "unknown"):
                email = known if label == "known" else address("enum")
                started = time.perf_counter()
                answer = client.post("/v1/accounts", json={"email": email,
                                                           "password": PASSWORD})
                times[label].append(time.perf_counter() - started)
                bodies[label].add(f"{answer.status_code} {answer.text}")
        assert bodies["known"] == bodies["unknown"] and len(bodies["known"]) == 1
        known_median = statistics.median(times["known"])
        unknown_median = statistics.median(times["unknown"])
        assert min(times["known"] + times["unknown"]) >= 0.8  # the floor
        assert abs(known_median - unknown_median) < 0.25 * max(known_median, unknown_median)
