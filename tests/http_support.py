"""Shared by the HTTP tests: an app on a real database with a real SMTP server."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from peoplelog.accounts import Accounts, AccountSettings, SmtpMailer
from peoplelog.fields import Keyring
from peoplelog.http import HttpSettings, create_app
from peoplelog.ledger import Database, Ledger

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another horse battery staple"
ORIGIN = "http://testserver"


def open_accounts(database_url: str, keyring: Keyring, **settings: Any) -> Accounts:
    values: dict[str, Any] = {"request_floor": timedelta(milliseconds=20),
                              "base_url": ORIGIN, "requests_per_client": 10_000,
                              "requests_per_address": 1_000}
    values.update(settings)
    return Accounts(Ledger(Database(database_url, pool_size=8), keyring),
                    AccountSettings(**values))


def client_for(accounts: Accounts, *, secure: bool = False, base_url: str = ORIGIN,
               ip: str = "198.51.100.7") -> TestClient:
    app = create_app(accounts, settings=HttpSettings(secure_cookies=secure))
    return TestClient(app, base_url=base_url, client=(ip, 50000))


def address(tag: str = "web") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.org"


def deliver(accounts: Accounts, mailer: SmtpMailer) -> None:
    accounts.send_pending(mailer)
