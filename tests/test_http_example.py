"""The documented example app: ``Depends(current_scope)`` and ``require_permission`` in an
application's own FastAPI routes."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import ModuleType

import pytest
from conftest import ROOT
from fastapi.testclient import TestClient
from http_support import PASSWORD, address, open_accounts

from peoplelog.accounts import Accounts
from peoplelog.fields import Keyring


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "notes_app", ROOT / "docs" / "examples" / "notes_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    with open_accounts(database_url, keyring) as opened:
        yield opened


def test_the_example_app_knows_who_calls(accounts: Accounts) -> None:
    with TestClient(_example().build(accounts)) as client:
        _use(client, accounts)
    with TestClient(_example().build(accounts), cookies={
            "__Host-peoplelog-session": accounts.login(ALICE, PASSWORD).token}) as cookie:
        assert cookie.get("/notes").json()["actor"].startswith("person:")


ALICE = address("notes")


def _use(client: TestClient, accounts: Accounts) -> None:
    refused = client.get("/notes")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    email = ALICE
    person = accounts.register(email, password=PASSWORD, name="Noted")
    session = accounts.login(email, PASSWORD)
    bearer = {"Authorization": f"Bearer {session.token}"}
    added = client.post("/notes?text=hello", headers=bearer)
    assert added.json() == {"actor": f"person:{person}", "notes": ["hello"]}
    assert client.get(f"/admin/people/{person}/name", headers=bearer).status_code == 403
    key = accounts.create_api_key("notes-admin", ["people:read"])
    named = client.get(f"/admin/people/{person}/name",
                       headers={"Authorization": f"Bearer {key.token}"})
    assert named.json() == {"name": "Noted", "asked_by": "service:notes-admin"}
