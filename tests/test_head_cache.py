"""The optimistic append: a ``Ledger`` builds the next version on the head it last wrote
(its ``HeadCache``) and writes it in one guarded statement. When anything else moved,
changed or damaged the head in between, that statement writes nothing and the locked path
decides, as it would have without the cache."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.ledger._heads import HeadCache
from peoplelog.projections import verify_ledger
from peoplelog.schema import (
    DecryptionFailed,
    KeyNotFound,
    PersonErased,
    VersionConflict,
    VersionRef,
)

Conn = psycopg.Connection[Any]


def _email() -> str:
    return f"cache.{uuid.uuid4().hex[:10]}@example.org"


@pytest.fixture()
def other(database_url: str, keyring: Keyring) -> Iterator[Ledger]:
    """A second application process on the same database."""
    led = Ledger(Database(database_url, pool_size=2), keyring)
    yield led
    led.close()


@pytest.fixture()
def person(ledger: Ledger) -> VersionRef:
    return ledger.create_person(email=_email(), name="Cached v0")


def _chain(conn: Conn, pid: uuid.UUID) -> list[tuple[int, str, str | None]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT version, cid, prev FROM people WHERE person_id = %s ORDER BY version", (pid,))]


def _assert_consistent(conn: Conn, pid: uuid.UUID) -> None:
    chain = _chain(conn, pid)
    assert [v for v, _, _ in chain] == list(range(len(chain)))
    assert all(prev == chain[i - 1][1] for i, (_, _, prev) in enumerate(chain) if i)
    latest = conn.execute("SELECT version, cid FROM people_latest WHERE person_id = %s",
                          (pid,)).fetchone()
    assert latest == chain[-1][:2]
    report = verify_ledger(conn)
    assert report.ok, report.findings


def test_stale_cache_still_appends_on_the_real_head(ledger: Ledger, other: Ledger,
                                                    conn: Conn, person: VersionRef) -> None:
    pid = person.person_id
    assert ledger.update_person(pid, name="mine 1").version == 1  # cached at version 1
    assert other.update_person(pid, name="theirs 2").version == 2
    ref = ledger.update_person(pid, name="mine 3")
    assert (ref.version, ref.written) == (3, True)
    assert ledger.get_person(pid).name == "mine 3"
    assert ledger.get_person(pid, version=2).name == "theirs 2"
    _assert_consistent(conn, pid)


def test_stale_cache_with_expect_version(ledger: Ledger, other: Ledger, conn: Conn,
                                         person: VersionRef) -> None:
    pid = person.person_id
    ledger.update_person(pid, name="mine 1")
    other.update_person(pid, name="theirs 2")
    with pytest.raises(VersionConflict, match="version 2, not 1"):
        ledger.update_person(pid, name="stale", expect_version=1)
    assert ledger.update_person(pid, name="current", expect_version=2).version == 3
    _assert_consistent(conn, pid)


def test_no_change_on_a_stale_cache_is_judged_on_the_real_head(
        ledger: Ledger, other: Ledger, conn: Conn, person: VersionRef) -> None:
    pid = person.person_id
    ledger.update_person(pid, name="A")
    other.update_person(pid, name="B")
    ref = ledger.update_person(pid, name="A")  # unchanged for the cache, not for the ledger
    assert (ref.version, ref.written) == (3, True)
    again = ledger.update_person(pid, name="A")
    assert (again.version, again.written) == (3, False)
    _assert_consistent(conn, pid)


def test_erased_elsewhere_is_refused(ledger: Ledger, other: Ledger, conn: Conn,
                                     person: VersionRef) -> None:
    pid = person.person_id
    ledger.update_person(pid, name="cached")
    other.erase_person(pid)
    before = _chain(conn, pid)
    with pytest.raises(PersonErased):
        ledger.update_person(pid, name="after erasure")
    assert _chain(conn, pid) == before
    _assert_consistent(conn, pid)


def test_a_changed_projection_row_is_not_built_on(ledger: Ledger, conn: Conn,
                                                  person: VersionRef) -> None:
    """The guard compares the whole head, so a damaged ``people_latest`` row goes to the
    locked path, which refuses to carry an undecryptable ciphertext forward."""
    pid = person.person_id
    ledger.update_person(pid, name="cached")
    conn.execute("UPDATE people_latest SET email = set_byte(email, 30, get_byte(email, 30) # 1)"
                 " WHERE person_id = %s", (pid,))
    before = _chain(conn, pid)
    with pytest.raises(DecryptionFailed, match="email of person"):
        ledger.update_person(pid, name="on damage")
    assert _chain(conn, pid) == before
    conn.execute("UPDATE people_latest l SET email = p.email FROM people p"
                 " WHERE l.person_id = %s AND p.person_id = l.person_id"
                 " AND p.version = l.version", (pid,))
    assert ledger.update_person(pid, name="repaired").written
    _assert_consistent(conn, pid)


def test_a_head_read_without_the_cache_is_checked(database_url: str, keyring: Keyring,
                                                  conn: Conn, person: VersionRef) -> None:
    pid = person.person_id
    conn.execute("UPDATE people_latest SET name = set_byte(name, 30, get_byte(name, 30) # 1)"
                 " WHERE person_id = %s", (pid,))
    fresh = Ledger(Database(database_url, pool_size=2), keyring)
    try:
        with pytest.raises(DecryptionFailed, match="name of person"):
            fresh.update_person(pid, name="fresh")
    finally:
        fresh.close()
        conn.execute("UPDATE people_latest l SET name = p.name FROM people p"
                     " WHERE l.person_id = %s AND p.person_id = l.person_id"
                     " AND p.version = l.version", (pid,))
    _assert_consistent(conn, pid)


@pytest.mark.parametrize("damage", ["kek id", "wrapped key", "key gone"])
def test_a_changed_data_key_is_not_used_from_the_cache(ledger: Ledger, conn: Conn,
                                                       person: VersionRef, damage: str) -> None:
    """The cache holds the data key unwrapped: it is used only while ``person_keys`` still
    holds exactly the wrapped key it came from."""
    pid = person.person_id
    ledger.update_person(pid, name="cached")
    saved = conn.execute("SELECT kek_id, wrapped_key FROM person_keys WHERE person_id = %s",
                         (pid,)).fetchone()
    assert saved is not None
    if damage == "kek id":
        conn.execute("UPDATE person_keys SET kek_id = 'kek-gone' WHERE person_id = %s", (pid,))
    elif damage == "wrapped key":
        conn.execute("UPDATE person_keys SET wrapped_key = set_byte(wrapped_key, 20,"
                     " get_byte(wrapped_key, 20) # 1) WHERE person_id = %s", (pid,))
    else:
        conn.execute("DELETE FROM person_keys WHERE person_id = %s", (pid,))
    before = _chain(conn, pid)
    # a missing key of a person who is not erased is damage, never a silent "erased"
    expected = {"kek id": KeyNotFound, "wrapped key": DecryptionFailed,
                "key gone": DecryptionFailed}[damage]
    with pytest.raises(expected):
        ledger.update_person(pid, name="with a key the database no longer has")
    assert _chain(conn, pid) == before
    if damage == "key gone":
        conn.execute("INSERT INTO person_keys (person_id, key_version, kek_id, wrapped_key)"
                     " VALUES (%s, 1, %s, %s)", (pid, *saved))
    else:
        conn.execute("UPDATE person_keys SET kek_id = %s, wrapped_key = %s"
                     " WHERE person_id = %s", (*saved, pid))
    assert ledger.update_person(pid, name="key restored").written
    _assert_consistent(conn, pid)


def test_email_change_and_many_writers(ledger: Ledger, other: Ledger, conn: Conn,
                                       person: VersionRef) -> None:
    pid = person.person_id
    for i in range(6):
        (ledger if i % 2 else other).update_person(pid, name=f"turn {i}")
    email = _email()
    ref = ledger.update_person(pid, email=email)
    assert ledger.find_person(email) == pid == other.find_person(email)
    assert ref.version == 7
    _assert_consistent(conn, pid)


def test_lost_lane_connection_is_replaced(ledger: Ledger, conn: Conn,
                                          person: VersionRef) -> None:
    pid = person.person_id
    email = ledger.get_person(pid).email
    assert email is not None
    for write_first in (False, True):
        ledger.update_person(pid, name=f"before {write_first}")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        if write_first:
            assert ledger.update_person(pid, name="after").written
        assert ledger.find_person(email) == pid  # a read on a lost connection is retried
    _assert_consistent(conn, pid)


def test_lookups_from_many_threads(ledger: Ledger) -> None:
    refs = [ledger.create_person(email=_email(), name=f"T{i}") for i in range(8)]
    emails = {ref.person_id: ledger.get_person(ref.person_id).email for ref in refs}

    def look(pid: uuid.UUID) -> list[uuid.UUID]:
        return [ledger.find_person(emails[pid] or "") for _ in range(40)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(zip(emails, pool.map(look, emails), strict=True))
    assert all(set(hits) == {pid} for pid, hits in found.items())


def test_cache_is_bounded_and_shows_no_content() -> None:
    cache = HeadCache(size=2)
    ids = [uuid.uuid4() for _ in range(3)]
    for pid in ids:
        cache.put(pid, (object(), object(), object()))  # type: ignore[arg-type]
    assert cache.get(ids[0]) is None
    assert cache.get(ids[2]) is not None
    assert repr(cache) == "HeadCache(size=2, held=2)"


def test_entries_are_forgotten_after_their_time_limit() -> None:
    """An unwrapped data key is not held for long after its last write."""
    cache = HeadCache(size=10, ttl=0.05)
    old, new = uuid.uuid4(), uuid.uuid4()
    cache.put(old, (object(), object(), object()))  # type: ignore[arg-type]
    time.sleep(0.1)
    cache.put(new, (object(), object(), object()))  # type: ignore[arg-type]
    assert repr(cache) == "HeadCache(size=10, held=1)"
    assert cache.get(old) is None and cache.get(new) is not None
    time.sleep(0.1)
    assert cache.get(new) is None
