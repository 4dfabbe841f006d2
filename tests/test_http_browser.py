"""The hosted pages in a real browser: Debian's Chromium (``/usr/bin/chromium``, driven by
Playwright) against a real uvicorn on a localhost port, a real database and a real SMTP
server. One person's whole life: sign up, confirm, log in, two sessions, change the
password (the other session ends), forget it, reset it, read the history, erase.

Each page is screenshotted into ``$PEOPLELOG_ARTIFACTS/screenshots`` (default
``build/artifacts``). Without ``/usr/bin/chromium`` the test fails: ``make test`` installs it
(``apt-get install chromium``) when run as root."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from http_support import NEW_PASSWORD, PASSWORD, address, deliver, open_accounts
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, sync_playwright
from smtp_inbox import Inbox, free_port, smtp_server

from peoplelog.accounts import Accounts, SmtpMailer
from peoplelog.fields import Keyring
from peoplelog.http import HttpSettings, create_app

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SESSION_COOKIE = "peoplelog-session"
RESET_PASSWORD = "third horse battery staple"
SCREENSHOTS = ("register", "check-email", "confirm", "login", "settings",
               "settings-two-sessions", "password-changed", "forgot", "reset",
               "person-history", "erased")
TIMEOUT_MS = 15_000


@dataclass
class Served:
    base_url: str
    accounts: Accounts
    inbox: Inbox
    mailer: SmtpMailer

    def token(self, email: str, path: str) -> str:
        """The token of the newest mail to ``email`` that links to ``path`` on this site."""
        deliver(self.accounts, self.mailer)
        link = re.compile(re.escape(f"{self.base_url}{path}?token=") + r"(plo1_[A-Za-z0-9_-]{43})")
        for message in reversed(self.inbox.to(email)):
            found = link.search(self.inbox.body(message))
            if found:
                return found[1]
        raise AssertionError(f"no mail to {email} links to {self.base_url}{path}?token=")


@dataclass
class Shots:
    directory: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, name: str) -> None:
        assert name in SCREENSHOTS, name
        path = self.directory / f"{SCREENSHOTS.index(name) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


@pytest.fixture(scope="module")
def served(database_url: str, keyring: Keyring) -> Iterator[Served]:
    """The app on a real uvicorn in a background thread, mail through a real SMTP server."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with smtp_server() as (inbox, mailer), \
            open_accounts(database_url, keyring, base_url=base_url) as accounts:
        app = create_app(accounts, settings=HttpSettings(secure_cookies=False))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               access_log=False, log_level="warning"))
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
            time.sleep(0.02)
        try:
            yield Served(base_url, accounts, inbox, mailer)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture()
def shots() -> Shots:
    root = Path(os.environ.get("PEOPLELOG_ARTIFACTS", ROOT / "build" / "artifacts"))
    directory = root / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    for name in SCREENSHOTS:  # nothing stale passes for this run's screenshots
        (directory / f"{SCREENSHOTS.index(name) + 1:02d}-{name}.png").unlink(missing_ok=True)
    return Shots(directory)


def _open(context: BrowserContext, console_errors: list[str]) -> Page:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console_errors.append(f"{page.url}: {error}"))
    return page


def _path(page: Page) -> str:
    return urlsplit(page.url).path


def _session_cookie(context: BrowserContext) -> dict[str, object]:
    found = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


def _submit(page: Page, form: Locator) -> None:
    """Click the form's submit button and check that the server took the form at all
    (with ``Referrer-Policy: no-referrer`` Chromium once posted every form with
    ``Origin: null``, and the CSRF check refused them all: this keeps that from coming
    back)."""
    action = form.get_attribute("action")
    with page.expect_navigation():
        form.locator('button[type="submit"]').first.click()
    title = page.locator("h1").inner_text()
    assert title != "Not done", (
        f"POST {action} refused a same-site form from Chromium: "
        f"{page.locator('.message').inner_text()!r}")


def _log_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    form = page.locator('form[action="/login"]')
    form.locator('input[name="email"]').fill(email)
    form.locator('input[name="password"]').fill(password)
    _submit(page, form)


def test_a_person_signs_up_confirms_logs_in_resets_and_erases_in_chromium(
        served: Served, shots: Shots) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
                    "Install it with `apt-get install -y chromium` (as root; `make test` "
                    "does this when run as root).")
    base = served.base_url
    email = address("browser")
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            first = browser.new_context()
            page = _open(first, console_errors)

            # --- sign up -----------------------------------------------------------------
            page.goto(f"{base}/register")
            shots.take(page, "register")
            form = page.locator('form[action="/register"]')
            form.locator('input[name="email"]').fill(email)
            form.locator('input[name="name"]').fill("Ada Browser")
            form.locator('input[name="password"]').fill(PASSWORD)
            _submit(page, form)
            assert page.locator("h1").inner_text() == "Check your email"
            shots.take(page, "check-email")

            # --- confirm the address through the mailed link -------------------------------
            page.goto(f"{base}/confirm?token={served.token(email, '/confirm')}")
            assert page.locator("h1").inner_text() == "Confirm your email address"
            shots.take(page, "confirm")
            confirm = page.locator('form[action="/confirm"]')
            confirm.locator('input[name="password"]').fill(PASSWORD)  # the sign-up's own
            _submit(page, confirm)
            page.wait_for_url(re.compile(r"/login\?notice=confirmed$"))
            assert "Your email address is confirmed." in page.locator(".notice").inner_text()

            # --- the login page's headers ----------------------------------------------------
            response = page.goto(f"{base}/login")
            assert response is not None and response.status == 200
            assert "default-src 'none'" in response.headers["content-security-policy"]
            shots.take(page, "login")

            # --- log in; the session cookie; rotation at the next login ----------------------
            _log_in(page, base, email, PASSWORD)
            assert _path(page) == "/settings"
            cookie = _session_cookie(first)
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Lax"
            assert cookie["secure"] is False  # secure_cookies=False: plain HTTP
            _log_in(page, base, email, PASSWORD)
            assert _path(page) == "/settings"
            rotated = _session_cookie(first)
            assert rotated["value"] != cookie["value"], "the session was not rotated at login"
            assert page.locator("#email").inner_text().startswith(email)
            assert page.locator("table#sessions tr.session").count() == 1  # old one ended
            shots.take(page, "settings")

            # --- a second session in another context --------------------------------------
            second = browser.new_context()
            other = _open(second, console_errors)
            _log_in(other, base, email, PASSWORD)
            assert _path(other) == "/settings"
            page.goto(f"{base}/settings")
            assert page.locator("table#sessions tr.session").count() == 2
            assert page.locator("table#sessions tr.session.current").count() == 1
            shots.take(page, "settings-two-sessions")

            # --- change the password: the other session ends -------------------------------
            form = page.locator('form[action="/settings/password"]')
            form.locator('input[name="current"]').fill(PASSWORD)
            form.locator('input[name="new"]').fill(NEW_PASSWORD)
            _submit(page, form)
            page.wait_for_url(re.compile(r"/settings\?notice=password$"))
            assert "Your password was changed" in page.locator(".notice").first.inner_text()
            assert page.locator("table#sessions tr.session").count() == 1
            shots.take(page, "password-changed")
            other.reload()
            assert _path(other) == "/login", "the other session survived the password change"

            # --- forgot the password: reset it through the mailed link ---------------------
            other.get_by_role("link", name="Forgot your password?").click()
            other.wait_for_url(re.compile(r"/forgot-password$"))
            shots.take(other, "forgot")
            form = other.locator('form[action="/forgot-password"]')
            form.locator('input[name="email"]').fill(email)
            _submit(other, form)
            assert other.locator("h1").inner_text() == "Check your email"
            other.goto(f"{base}/reset-password?token={served.token(email, '/reset-password')}")
            assert other.locator("h1").inner_text() == "Choose a new password"
            shots.take(other, "reset")
            form = other.locator('form[action="/reset-password"]')
            form.locator('input[name="password"]').fill(RESET_PASSWORD)
            _submit(other, form)
            other.wait_for_url(re.compile(r"/login\?notice=reset$"))
            assert "Log in with the new one" in other.locator(".notice").inner_text()
            _log_in(other, base, email, NEW_PASSWORD)  # the old password no longer works
            assert _path(other) == "/login"
            assert other.locator("p.error").inner_text() == "invalid email or password"
            _log_in(other, base, email, RESET_PASSWORD)
            assert _path(other) == "/settings"

            # --- the person's history -----------------------------------------------------
            history = other.locator("header nav").get_by_role("link", name="History")
            href = history.get_attribute("href")
            assert href is not None and re.fullmatch(r"/people/[0-9a-f-]{36}", href), href
            history.click()
            other.wait_for_url(re.compile(re.escape(href) + "$"))
            assert "Chain: verifies" in other.locator("#chain").inner_text()
            ops = other.locator("table#history tbody tr td:nth-child(3)").all_inner_texts()
            # created without a password; confirmed, the sign-up's password set; changed;
            # reset
            assert ops == ["created", "updated", "password_changed", "password_changed"], ops
            shots.take(other, "person-history")

            # --- erase the account --------------------------------------------------------
            other.goto(f"{base}/settings")
            form = other.locator('form[action="/settings/erase"]')
            form.locator('input[name="password"]').fill(RESET_PASSWORD)
            assert form.get_by_role("button", name="Erase my account").is_visible()
            _submit(other, form)
            assert other.locator("h1").inner_text() == "Account erased"
            shots.take(other, "erased")
            assert not [c for c in second.cookies() if c["name"] == SESSION_COOKIE]
            _log_in(other, base, email, RESET_PASSWORD)
            assert _path(other) == "/login"
            assert other.locator("p.error").inner_text() == "invalid email or password"
            first.close()
            second.close()
        finally:
            browser.close()

    csp = [m for m in console_errors if "Content Security Policy" in m]
    assert not csp, csp
    assert [p.name for p in shots.taken] == [
        f"{i + 1:02d}-{name}.png" for i, name in enumerate(SCREENSHOTS)]
    for path in shots.taken:
        assert path.is_file() and path.stat().st_size > 0, path
