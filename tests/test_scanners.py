"""The C scanners (projections/_native.c) against their Python references.

Whole-ledger behaviour is pinned by tests/test_tamper.py, which runs every case through both
scanners and requires the same verdict. Here: the canonical envelope the C chain scanner
builds equals ``envelope_text`` on arbitrary rows read back from PostgreSQL; any split of
the COPY stream gives the same result; the C Merkle tree equals ``Frontier`` and
``RangeHasher``; and a malformed stream is an error, never a verdict.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peoplelog.ledger import cid_bytes, cid_of, envelope_text
from peoplelog.projections._merkle import Frontier, RangeHasher, consistency_ranges, leaf_hash
from peoplelog.projections._native import ChainScanner, LogScanner
from peoplelog.projections._speedups import native_chain_scanner, native_log_scanner
from peoplelog.projections._verify import _raw_query, feed
from peoplelog.schema import DatabaseError

Conn = psycopg.Connection[Any]
FORGED = "bafkrei" + "a" * 52
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture()
def scratch(conn: Conn) -> Iterator[Conn]:
    """A session whose ``people`` is an empty temporary copy (no checks, no triggers)."""
    conn.execute("CREATE TEMP TABLE people (LIKE public.people INCLUDING IDENTITY)")
    yield conn
    conn.execute("DROP TABLE pg_temp.people")


def copy_bytes(conn: Conn, query: Any) -> bytes:
    with conn.cursor() as cur, cur.copy(query) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def b64(value: bytes | None) -> str | None:
    return None if value is None else base64.urlsafe_b64encode(value).decode().rstrip("=")


def test_the_c_scanners_serve_the_test_databases(conn: Conn) -> None:
    assert native_chain_scanner(conn) is not None
    assert native_log_scanner(conn, [], []) is not None


def test_pure_python_can_be_forced(conn: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEOPLELOG_PURE_PYTHON", "1")
    assert native_chain_scanner(conn) is None


text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
               max_size=40)
micros = st.integers(-(2**53) + 1, 2**53 - 1).filter(
    lambda m: datetime(1, 1, 2, tzinfo=UTC) < EPOCH + timedelta(microseconds=m)
    < datetime(9999, 12, 30, tzinfo=UTC))
row = st.fixed_dictionaries({
    "person_id": st.uuids(), "version": st.integers(0, 2**31 - 1),
    "prev": st.none() | st.just(FORGED), "format": st.integers(-(2**15), 2**15 - 1),
    "op": text, "recorded_at": micros, "actor": st.none() | text, "reason": st.none() | text,
    "email": st.none() | st.binary(max_size=80), "name": st.none() | st.binary(max_size=80),
    "password": st.none() | st.binary(max_size=80), "verified_at": st.none() | micros,
})


def insert(conn: Conn, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        conn.execute(
            "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at, actor,"
            " reason, email, name, password, verified_at) VALUES (%s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s)",
            (r["person_id"], r["version"], FORGED, r["prev"], r["format"], r["op"],
             EPOCH + timedelta(microseconds=r["recorded_at"]), r["actor"], r["reason"],
             r["email"], r["name"], r["password"],
             None if r["verified_at"] is None else EPOCH + timedelta(
                 microseconds=r["verified_at"])))


def expected_cid(r: dict[str, Any]) -> str:
    return cid_of(envelope_text(
        person_id=str(r["person_id"]), version=r["version"], prev=r["prev"], op=r["op"],
        recorded_at=r["recorded_at"], actor=r["actor"], reason=r["reason"],
        email=b64(r["email"]), name=b64(r["name"]), password=b64(r["password"]),
        verified_at=r["verified_at"], format=r["format"]).encode())


def scanner() -> ChainScanner:
    return ChainScanner(1, (b"created", b"updated", b"erased"), b"created", b"erased")


@SETTINGS
@given(rows=st.lists(row, min_size=1, max_size=4, unique_by=lambda r: r["person_id"]))
def test_the_c_envelope_is_the_rfc8785_envelope(scratch: Conn,
                                                rows: list[dict[str, Any]]) -> None:
    scratch.execute("TRUNCATE pg_temp.people")
    insert(scratch, rows)
    chain = scanner()
    events = chain.feed(copy_bytes(scratch, _raw_query(None))) or []
    assert chain.finished and chain.rows == len(rows) == chain.persons
    by_person = {uuid.UUID(e[0]): e for e in events}
    for r in rows:
        event = by_person[r["person_id"]]
        assert event[2] == FORGED
        assert event[6] == expected_cid(r)


def test_out_of_range_timestamps_have_no_canonical_form(scratch: Conn) -> None:
    scratch.execute(
        "INSERT INTO people (person_id, version, cid, format, op, recorded_at)"
        " VALUES (gen_random_uuid(), 0, %s, 1, 'created', 'infinity')", (FORGED,))
    events = scanner().feed(copy_bytes(scratch, _raw_query(None)))
    assert events is not None and events[0][6] is None


@pytest.fixture(scope="module")
def ledger_stream(ledger: Any, database_url: str) -> bytes:
    for i in range(6):
        person = ledger.create_person(email=f"split{i}@example.org", name=f"Split {i}")
        ledger.update_person(person.person_id, name=f"Split {i}b", actor="ops \u00e9",
                             reason="ticket\n\"7\"")
    with psycopg.connect(database_url) as conn:
        return copy_bytes(conn, _raw_query(None))


@SETTINGS
@given(cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_the_stream_gives_the_same_result(ledger_stream: bytes,
                                                       cuts: list[int]) -> None:
    whole = scanner()
    assert whole.feed(ledger_stream) is None
    points = sorted({c % (len(ledger_stream) + 1) for c in cuts})
    pieces = [ledger_stream[a:b] for a, b in zip([0, *points], [*points, len(ledger_stream)],
                                                 strict=True)]
    split = scanner()
    for piece in pieces:
        assert split.feed(piece) is None
    assert (split.rows, split.persons, split.finished) == (whole.rows, whole.persons, True)


def test_a_truncated_stream_is_not_finished(ledger_stream: bytes) -> None:
    chain = scanner()
    chain.feed(ledger_stream[:-3])
    assert not chain.finished


@pytest.mark.parametrize("data", [b"PGCOPY\n\xff\r\n\x01" + bytes(8), b"not a copy stream....",
                                  b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00\x02" + bytes(8)])
def test_a_malformed_stream_is_an_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="COPY"):
        scanner().feed(data)


def test_data_after_the_end_is_an_error(ledger_stream: bytes) -> None:
    with pytest.raises(ValueError, match="after the end"):
        scanner().feed(ledger_stream + b"\x00")


# --- the log scanner -------------------------------------------------------------------------


def log_stream(cids: list[str], stored: list[str | None], positions: list[int]) -> bytes:
    """A binary COPY stream of (position, person_id, version, cid, stored cid)."""
    out = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]
    for position, cid, other in zip(positions, cids, stored, strict=True):
        out.append(struct.pack(">hiq i16s ii", 5, 8, position, 16, uuid.uuid4().bytes, 4, 7))
        out.append(struct.pack(">i", len(cid)) + cid.encode())
        out.append(struct.pack(">i", -1) if other is None
                   else struct.pack(">i", len(other)) + other.encode())
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def cid_number(i: int) -> str:
    return cid_of(i.to_bytes(8, "big"))


@SETTINGS
@given(data=st.data(), n=st.integers(1, 300))
def test_the_c_tree_is_the_rfc9162_tree(data: st.DataObject, n: int) -> None:
    held = data.draw(st.integers(1, n))
    stops = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=5))) | {held, n})
    ranges = consistency_ranges(held, n) if held < n else []
    cids = [cid_number(i) for i in range(n)]
    log = LogScanner(stops, ranges)
    events = log.feed(log_stream(cids, list(cids), list(range(n)))) or []
    frontier, hasher, seen = Frontier(), RangeHasher(ranges), []
    for cid in cids:
        digest = leaf_hash(bytes.fromhex("01551220") + _digest(cid))
        hasher.feed(frontier.size, digest)
        frontier.append(digest)
        if frontier.size in stops:
            seen.append(("size", frontier.size, frontier.root(), frontier.to_bytes()))
    assert events == seen
    assert (log.size, log.root(), log.frontier()) == (n, frontier.root(), frontier.to_bytes())
    assert log.range_roots() == hasher.hashes()


def _digest(cid: str) -> bytes:
    return cid_bytes(cid)[4:]


def test_log_entries_that_need_a_finding_are_handed_back() -> None:
    cids = [cid_number(i) for i in range(4)]
    stored: list[str | None] = [cids[0], None, cids[0], cids[3]]
    bad = "bafkrei" + "a" * 51 + "b"  # padding bits set: not canonical
    log = LogScanner([], [])
    events = log.feed(log_stream([*cids[:3], bad], stored, [0, 1, 5, 6])) or []
    assert [(e[1], e[2], e[6], e[7]) for e in events] == [
        (1, 1, None, True), (5, 2, cids[0], True), (6, 6, cids[3], False)]
    assert log.size == 4 and log.finished


def test_ranges_must_not_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        LogScanner([], [(0, 4), (2, 6)])


def test_a_scanner_is_initialised_once() -> None:
    log = LogScanner([1, 2, 3], [])
    with pytest.raises(RuntimeError, match="once"):
        log.__init__([1], [(5, 1)])  # type: ignore[misc]
    chain = scanner()
    with pytest.raises(RuntimeError, match="once"):
        chain.__init__(1, (), b"created", b"erased")  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="not initialised"):
        LogScanner.__new__(LogScanner).feed(b"")


def test_a_malformed_stream_is_a_database_error_for_callers() -> None:
    with pytest.raises(DatabaseError, match="COPY stream of people is malformed"):
        feed(scanner(), b"not a copy stream....", "people")
