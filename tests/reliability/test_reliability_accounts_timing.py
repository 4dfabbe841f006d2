"""Enumeration by timing: a login, a sign-in link request and a reset request take the same
time for a known, an unknown, an erased and a malformed address. Samples are interleaved
(each round runs every case once, in a shuffled order), and the medians must agree: argon2id
dominates a login, the request floor a link request, and what differs between the cases
(a lookup that finds something, a token and its message written) must not show."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from _support import Figures, size

from peoplelog.accounts import Accounts, AccountSettings
from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import LoginFailed

PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple"
TOLERANCE = 1.25
"""The slowest case's median may be at most this much the fastest's."""


@pytest.fixture(scope="module")
def accounts(database_url: str, keyring: Keyring) -> Iterator[Accounts]:
    settings = AccountSettings(request_floor=timedelta(milliseconds=120),
                               login_attempts_per_account=1_000_000,
                               login_attempts_per_client=1_000_000)
    with Accounts(Ledger(Database(database_url, pool_size=2), keyring), settings) as opened:
        yield opened


def _addresses(accounts: Accounts) -> dict[str, str]:
    known = f"known-{uuid.uuid4().hex[:8]}@example.org"
    erased = f"erased-{uuid.uuid4().hex[:8]}@example.org"
    accounts.register(known, password=PASSWORD)
    gone = accounts.register(erased, password=PASSWORD)
    accounts.ledger.erase_person(gone, actor="dpo", reason="request")
    return {"known": known, "unknown": f"unknown-{uuid.uuid4().hex[:8]}@example.org",
            "erased": erased, "malformed": "not an address@@example"}


def _medians(cases: dict[str, str], attempt: Callable[[str], None],
             rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(13)
    for name in order:  # warm up every path once
        attempt(cases[name])
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            started = time.perf_counter()
            attempt(cases[name])
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def _check(figures: Figures, what: str, medians: dict[str, float]) -> None:
    figures.details[what] = {name: round(value * 1000, 2) for name, value in medians.items()}
    spread = max(medians.values()) / min(medians.values())
    figures.details[f"{what} spread"] = round(spread, 3)
    assert spread <= TOLERANCE, (what, figures.details[what])


def test_login_and_link_requests_take_the_same_time_whoever_the_address_is(
        accounts: Accounts) -> None:
    figures = Figures("accounts", "enumeration_timing")
    cases = _addresses(accounts)
    rounds = size(8, 40)

    def login(address: str) -> None:
        try:
            accounts.login(address, WRONG)
        except LoginFailed:
            return
        raise AssertionError("a wrong password logged in")

    _check(figures, "login", _medians(cases, login, rounds))
    _check(figures, "login link request", _medians(cases, accounts.request_login_link, rounds))
    _check(figures, "reset request", _medians(cases, accounts.request_password_reset, rounds))
    figures.operations = rounds * len(cases) * 3
    figures.inputs_tried = len(cases)
    figures.write()
