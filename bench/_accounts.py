"""The accounts layer's comparisons: session check, password login, issuing a token and
cleanup, each against the raw PostgreSQL work it stands on, in the same run."""

from __future__ import annotations

import itertools
import time
import uuid

from peoplelog.accounts import Accounts, AccountSettings, Scope, token_digests
from peoplelog.fields import PasswordHasher

from ._cases import Bench, Conn
from ._fastapi_users import fastapi_users_check_latencies
from ._measure import Result, interleave_chunks, median, percentile, say, seconds

__all__ = ["bench_accounts"]

_PASSWORD = "correct horse battery staple"  # noqa: S105 - the bench persons'
_CHECK_RAW = ("SELECT seal, seal_key, session_id, person_id, kind, epoch, authenticated_at,"
              " last_used_at, expires_at, idle_seconds FROM account_sessions WHERE lookup = %s")
_RAW_INSERT = ("INSERT INTO raw_sessions (lookup, seal, seal_key, session_id, person_id, kind,"
               " epoch, details, authenticated_at, last_used_at, expires_at) VALUES"
               " (%s, %s, 'writer-1', %s, %s, 'access_token', 0, %s, now(), now(),"
               " now() + interval '1d')")


def bench_accounts(b: Bench) -> None:
    assert b.app_url is not None
    persons = 20
    say(f"accounts: {persons} persons signed up; checks, logins, tokens, cleanup")
    conn = b.connect(b.app_url)
    accounts = Accounts(b.ledger(b.app_url),
                        AccountSettings(login_attempts_per_account=1_000_000,
                                        login_attempts_per_client=1_000_000))
    emails = [f"bench-{i}-{uuid.uuid4().hex[:6]}@example.org" for i in range(persons)]
    people = [accounts.register(email, password=_PASSWORD) for email in emails]
    tokens = [accounts.login(email, _PASSWORD).token for email in emails]
    _session_check(b, accounts, conn, tokens)
    _login(b, accounts, conn, emails)
    _issue(b, accounts, conn, [accounts.check(t) for t in tokens], people)
    _cleanup(b, accounts, conn, people)


def _session_check(b: Bench, accounts: Accounts, conn: Conn, tokens: list[str]) -> None:
    count = b.sizes.lookups
    digests = [token_digests(t).lookup for t in tokens]
    raw_us: list[float] = []
    ours_us: list[float] = []
    for i in range(200):  # warm up (and touch every session once)
        conn.execute(_CHECK_RAW, (digests[i % len(digests)],)).fetchone()
        accounts.check(tokens[i % len(tokens)])
    for i in range(count):
        t0 = time.perf_counter_ns()
        conn.execute(_CHECK_RAW, (digests[i % len(digests)],)).fetchone()
        raw_us.append((time.perf_counter_ns() - t0) / 1000)
        t0 = time.perf_counter_ns()
        accounts.check(tokens[i % len(tokens)])
        ours_us.append((time.perf_counter_ns() - t0) / 1000)
    note = ("Accounts.check(token): parse, the SHA-256 lookup digest, one indexed lookup"
            " joined with the credential epoch, the seal (HMAC-SHA256) checked in constant"
            " time, the Scope; baseline: the same row by its lookup digest on a plain"
            " connection")
    for pct in (50, 99):
        b.add(Result(f"session check p{pct} latency vs raw indexed SELECT",
                     percentile(ours_us, pct), percentile(raw_us, pct), 1.2, False, "us",
                     note=note))
    assert b.app_url is not None
    peer_us = fastapi_users_check_latencies(b.app_url, count)
    if peer_us is None:
        say("  fastapi-users is not installed (pip install -e '.[bench]'): no peer ratio")
        return
    b.add(Result("session check p50 latency vs fastapi-users' database strategy",
                 percentile(ours_us, 50), percentile(peer_us, 50), 0.2, False, "us",
                 note="fastapi-users 15 (DatabaseStrategy.read_token with its SQLAlchemy"
                      " access-token and user databases on asyncpg, a pooled session per"
                      " check, as a request does); target: at least 5x faster"))


def _login(b: Bench, accounts: Accounts, conn: Conn, emails: list[str]) -> None:
    hasher = PasswordHasher()
    phc = hasher.hash(_PASSWORD)
    rounds = max(10, b.sizes.reps * 6)
    raw_ms: list[float] = []
    ours_ms: list[float] = []
    for i in range(rounds):
        t0 = time.perf_counter()
        conn.execute(_CHECK_RAW, (b"\0" * 16,)).fetchone()
        hasher.verify(phc, _PASSWORD)
        raw_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        accounts.login(emails[i % len(emails)], _PASSWORD)
        ours_ms.append((time.perf_counter() - t0) * 1000)
    b.add(Result("password login vs one argon2id verify + one SELECT", median(ours_ms),
                 median(raw_ms), 1.1, False, "ms",
                 note="Accounts.login: the claim confirmed against the chain head, the attempt"
                      " counted, argon2id, the session issued (details encrypted) and the count"
                      " cleared; baseline: argon2id verify of the same parameters and one"
                      " indexed SELECT"))


def _issue(b: Bench, accounts: Accounts, conn: Conn, scopes: list[Scope],
           people: list[uuid.UUID]) -> None:
    n, reps = b.sizes.appends, b.sizes.reps
    conn.execute("CREATE TABLE raw_sessions (LIKE account_sessions INCLUDING ALL)")
    b.server.place_like(conn, "raw_sessions", "account_sessions")
    details = accounts.ledger.encrypt_field(people[0], "client", b'{"name": "bench"}')
    counter = itertools.count()

    def raw(count: int) -> float:
        def work() -> None:
            for _ in range(count):
                conn.execute(_RAW_INSERT, (uuid.uuid4().bytes, uuid.uuid4().bytes * 2,
                                           uuid.uuid4(), people[0], details))
        return seconds(work)

    def ours(count: int) -> float:
        def work() -> None:
            for _ in range(count):
                i = next(counter)
                accounts.create_access_token(scopes[i % len(scopes)], f"bench {i}")
        return seconds(work)

    raw(50)
    ours(50)
    samples = interleave_chunks(reps, 10, n // 4, {"raw INSERT": raw, "issue": ours})
    b.add(Result("issuing a token vs raw single-row INSERT commit", median(samples["issue"]),
                 median(samples["raw INSERT"]), 0.7, True, "ops/s",
                 note="Accounts.create_access_token: a token, its digests, its name encrypted"
                      " under the person's data key, the guarded INSERT; baseline: an"
                      " autocommit INSERT of a like row into a copy of account_sessions",
                 samples=samples))


def _cleanup(b: Bench, accounts: Accounts, conn: Conn, people: list[uuid.UUID]) -> None:
    rows = max(20_000, round(200_000 * b.sizes.scale))
    say(f"  cleanup: {rows:,} expired tokens")
    fill = ("INSERT INTO {table} (lookup, seal, seal_key, session_id, person_id, kind, epoch,"
            " authenticated_at, last_used_at, expires_at)"
            " SELECT substr(sha256(int8send(g)), 1, 16), sha256(int8send(g)), 'writer-1',"
            " gen_random_uuid(), %s, 'access_token', 0, now() - interval '2d',"
            " now() - interval '2d', now() - interval '1d' FROM generate_series(1, %s) g")
    samples: dict[str, list[float]] = {"raw DELETE": [], "clean_up": []}

    def raw() -> None:
        conn.execute("DELETE FROM raw_sessions WHERE expires_at <= now()")

    for round_ in range(3):  # refilled each round; who goes first alternates
        conn.execute("TRUNCATE raw_sessions")
        conn.execute(fill.format(table="raw_sessions"), (people[0], rows))
        conn.execute(fill.format(table="account_sessions"), (people[0], rows))
        conn.execute("VACUUM ANALYZE raw_sessions")
        conn.execute("VACUUM ANALYZE account_sessions")
        conn.execute("CHECKPOINT")
        order = [("raw DELETE", raw), ("clean_up", accounts.clean_up)]
        for name, work in order if round_ % 2 == 0 else reversed(order):
            samples[name].append(rows / seconds(work))
    b.add(Result(f"cleanup of {rows:,} expired tokens vs raw DELETE",
                 median(samples["clean_up"]), median(samples["raw DELETE"]), 0.5, True,
                 "rows/s", samples=samples,
                 note="Accounts.clean_up: batches of 25,000, one transaction each (and every"
                      " other pass); baseline: one DELETE of the same rows from a copy; three"
                      " rounds, refilled, the order alternating, medians"))
