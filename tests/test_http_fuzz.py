"""Property-based fuzzing of every API operation from the app's own OpenAPI document
(schemathesis, on a real database): no 5xx, and every response conforms to the document
(status, content type, body schema)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from http_support import open_accounts
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from peoplelog.fields import Keyring
from peoplelog.http import HttpSettings, create_app, use_accounts

_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
           response_schema_conformance]


_HTTP = HttpSettings(secure_cookies=False)
APP = create_app(settings=_HTTP)
"""The app whose document is fuzzed; its accounts (on the module's database) are given by
the fixture below, before any request."""
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP  # called in process (ASGI), as from_asgi does, without starting the app


@pytest.fixture(scope="module")
def fuzzed(database_url: str, keyring: Keyring) -> Iterator[tuple[Any, str]]:
    """One in-process client (one event loop, the app started once) and an API key."""
    with open_accounts(database_url, keyring, request_floor=timedelta(0)) as accounts:
        key = accounts.create_api_key("fuzz", ["people:read", "people:write", "people:erase",
                                               "audit:read", "audit:write"])
        use_accounts(APP, accounts, _HTTP)
        with asgi.get_client(APP) as client:
            yield client, key.token


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_documented_contract(
        case: Any, fuzzed: tuple[Any, str]) -> None:
    client, token = fuzzed
    case.call_and_validate(session=client, headers={"Authorization": f"Bearer {token}"},
                           checks=_CHECKS)
