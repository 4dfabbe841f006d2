"""The pipelined import (several batches in flight on their own connections): verdicts are
those of a batch-by-batch import, and what it writes decrypts and verifies."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from peoplelog.fields import BlindIndex, KeyPurpose, Keyring, RunIds, normalise_email
from peoplelog.ledger import (
    BATCH_SIZE,
    FIRST_BATCH,
    LANES,
    Database,
    ImportSummary,
    Ledger,
    check_name,
)
from peoplelog.ledger import _write as _write_module
from peoplelog.ledger._import._importer import _batch_sizes, import_people
from peoplelog.ledger._import._reading import json_document, read_rows
from peoplelog.ledger._import._sealing import RANDOM, Sealer
from peoplelog.ledger._import._validation import MAX_MICROS, Row
from peoplelog.projections import check_projections, verify_ledger
from peoplelog.schema import InvalidInput

Conn = psycopg.Connection[Any]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _rows(t: str) -> list[dict[str, Any]]:
    return [
        {"email": f"{t}-a@example.org", "name": "A"},
        {"email": f"{t}-b@example.org", "name": "B"},
        {"email": f"{t}-a@example.org", "name": "A again"},
        {"email": f"{t}-c@example.org", "name": "C", "external_id": f"{t}-x"},
        {"email": f"{t}-d@example.org", "name": "D", "external_id": f"{t}-x"},
        {"email": f"{t}-e@example.org", "name": "E", "verified_at": "2026-01-02T03:04:05Z",
         "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$"
                          "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY"},
        {"email": f"{t}-f@example.org", "name": "F"},
    ]


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_duplicates_in_batches_still_in_flight_are_found_by_line(
        database_url: str, keyring: Keyring, ledger: Ledger, conn: Conn, tmp_path: Path,
        batch_size: int) -> None:
    assert LANES > 1
    t = uuid.uuid4().hex[:10]
    path = _write(tmp_path / "p.jsonl", _rows(t))
    database = Database(database_url, pool_size=1)
    try:
        for run in range(2):
            summary = import_people(database, keyring, lambda: read_rows(path),
                                    batch_size=batch_size)
            assert [(e.line, e.reason) for e in summary.errors] == [
                (3, "duplicate: the same email as line 1"),
                (5, "duplicate: the same external id as line 4")]
            assert (summary.imported, summary.skipped) == ((5, 0) if run == 0 else (0, 5))
    finally:
        database.close()
    person = ledger.get_person(ledger.find_person(f"{t}-e@example.org"))
    assert person.name == "E"
    assert person.verified_at is not None and person.has_password
    assert ledger.get_person(ledger.find_person(f"{t}-a@example.org")).name == "A"
    assert check_projections(conn, keyring).ok
    assert verify_ledger(conn).ok


def test_batches_start_small_and_double_unless_a_size_is_given(
        database_url: str, keyring: Keyring, ledger: Ledger, conn: Conn,
        tmp_path: Path) -> None:
    default = list(itertools.islice(_batch_sizes(None), 8))
    assert default[0] == FIRST_BATCH < BATCH_SIZE
    assert all(b == min(2 * a, BATCH_SIZE) for a, b in itertools.pairwise(default))
    assert default[-1] == BATCH_SIZE
    assert list(itertools.islice(_batch_sizes(7), 3)) == [7, 7, 7]
    t = uuid.uuid4().hex[:10]
    rows = 3 * FIRST_BATCH + 5
    path = _write(tmp_path / "ramp.jsonl", [{"email": f"{t}-{i}@example.org", "name": f"N{i}"}
                                            for i in range(rows)])
    database = Database(database_url, pool_size=1)
    try:
        seen: list[int] = []
        summary = import_people(database, keyring, lambda: read_rows(path),
                                progress=seen.append)
    finally:
        database.close()
    assert (summary.imported, summary.rejected) == (rows, 0)
    assert seen == [FIRST_BATCH, 3 * FIRST_BATCH, rows]
    assert ledger.get_person(ledger.find_person(f"{t}-{rows - 1}@example.org")).name == (
        f"N{rows - 1}")
    assert check_projections(conn, keyring).ok


def _blocked_by(conn: Conn, pid: int) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                       " WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone()
    return bool(row and row[0])


def test_a_batch_that_loses_a_claim_is_written_again_in_file_order(
        database_url: str, keyring: Keyring, ledger: Ledger, conn: Conn,
        tmp_path: Path) -> None:
    t = uuid.uuid4().hex[:10]
    emails = [f"{t}-{i}@example.org" for i in range(8)]
    rows: list[dict[str, Any]] = [{"email": e, "name": f"Imported {i}"}
                                  for i, e in enumerate(emails)]
    rows[2] = {"email": emails[1], "name": "Again"}  # line 3 repeats line 2 (batch 1)
    path = _write(tmp_path / "c.jsonl", rows)
    app_person = _write_module.prepare_new_person(
        keyring, email=normalise_email(emails[0]), name="App user", password_hash=None,
        verified_at=None, actor="app", reason=None)
    outcome: list[ImportSummary | BaseException] = []

    def run() -> None:
        database = Database(database_url, pool_size=1)
        try:
            outcome.append(import_people(database, keyring, lambda: read_rows(path),
                                         batch_size=2))
        except BaseException as exc:  # reported by the assertions below
            outcome.append(exc)
        finally:
            database.close()

    with psycopg.connect(database_url, autocommit=True) as app:
        with app.transaction():  # claimed, not yet committed: batch 1 waits on it
            _write_module.insert_new_person(app, app_person)
            worker = threading.Thread(target=run)
            worker.start()
            _wait_for(lambda: _blocked_by(conn, app.info.backend_pid))
        worker.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], ImportSummary), outcome
    summary = outcome[0]
    assert [(e.line, e.reason) for e in summary.errors] == [
        (3, "duplicate: the same email as line 2")]
    assert (summary.imported, summary.skipped, summary.rejected) == (6, 1, 1)
    assert ledger.get_person(ledger.find_person(emails[0])).name == "App user"
    assert ledger.get_person(ledger.find_person(emails[1])).name == "Imported 1"
    assert check_projections(conn, keyring).ok
    assert verify_ledger(conn).ok


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the import to block"
        time.sleep(0.005)


# --- the C and Python sealers ------------------------------------------------------------------

_SEALING_KEYS = Keyring.generate()
_BLIND = BlindIndex(_SEALING_KEYS.active(KeyPurpose.BLIND_INDEX))
_texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1,
                 max_size=40)


@st.composite
def _rows_to_seal(draw: st.DrawFn) -> tuple[Row, str | None]:
    local = draw(st.from_regex(r"[a-z0-9][a-z0-9+_-]{0,20}", fullmatch=True))
    email = normalise_email(f"{local}@example.org")
    try:
        name = check_name(draw(_texts))
    except InvalidInput:
        assume(False)
        raise
    external = draw(st.none() | st.binary(min_size=32, max_size=32))
    row = Row(line=draw(st.integers(1, 10**6)), email=email, name=name, password=None,
               password_hash=None, verified_at=draw(st.none() | st.integers(0, MAX_MICROS)),
               external_id=None if external is None else "x", email_digest=_BLIND.digest(email),
               id_digest=external)
    return row, draw(st.none() | st.text(st.characters(codec="ascii"), max_size=120))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_rows_to_seal(), min_size=1, max_size=5),
       actor=st.none() | _texts, reason=st.none() | _texts,
       clock=st.integers(0, MAX_MICROS), random=st.randoms(use_true_random=False))
def test_the_c_sealer_lays_out_the_same_rows_as_the_python_one(
        rows: list[tuple[Row, str | None]], actor: str | None, reason: str | None,
        clock: int, random: Any) -> None:
    """Keys, field ciphertexts, CIDs and binary COPY tuples: byte for byte."""
    native = Sealer(_SEALING_KEYS, _BLIND.key.id, actor, reason)
    python = Sealer(_SEALING_KEYS, _BLIND.key.id, actor, reason, native=False)
    assert native.native, "the C sealer was not built (setup.py)"
    assert not python.native
    entropy = random.randbytes(RANDOM * len(rows))
    ids = [random.randbytes(16) for _ in rows]
    batch, hashes = [row for row, _ in rows], [phc for _, phc in rows]

    def sealed(sealer: Sealer) -> Any:
        return sealer.seal(batch, hashes, ids, random=entropy, clock=lambda: clock)

    assert sealed(native) == sealed(python)


def test_the_sealer_seals_the_ids_it_is_given_and_checks_its_inputs(keyring: Keyring) -> None:
    sealer = Sealer(keyring, "blind", "import", None)
    row = Row(1, normalise_email("a@example.org"), "A", None, None, None, None, bytes(32),
               None)
    with pytest.raises(ValueError):
        sealer.seal([row], [None], [bytes(16)], random=bytes(RANDOM - 1))
    with pytest.raises(ValueError):
        sealer.seal([row], [None], [])
    first, second = sealer.seal([row, row], [None, None], [bytes(16), b"\x01" * 16])
    assert first[0][6:22] == bytes(16)
    assert first[0][22:] != second[0][22:]  # fresh data keys by default


# --- the persons a run creates, known by their ids ----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.integers(0, 2**63 - 1), unique=True, max_size=50),
       others=st.lists(st.uuids(version=4), max_size=20))
def test_a_run_knows_the_persons_it_created_and_from_which_line(
        lines: list[int], others: list[uuid.UUID]) -> None:
    run, other_run = RunIds(), RunIds()
    ids = [uuid.UUID(bytes=value) for value in run.of(lines)]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)
    assert run.lines(ids + others) == dict(zip(ids, lines, strict=True))
    assert other_run.lines(ids) == {}
    assert run.of(lines) == [i.bytes for i in ids]  # the same line, the same person
    assert "key" not in repr(run)


_JSON_TEXT = st.one_of(
    st.text(),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                 lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                 max_leaves=8).map(json.dumps),
).flatmap(lambda doc: st.tuples(st.sampled_from(["", " ", "\t", "\r\n", "\x0c", "\xa0"]),
                                st.just(doc),
                                st.sampled_from(["", " ", "\n", "x", "{}", "\u2028"])))


@given(_JSON_TEXT)
def test_a_line_is_read_as_json_loads_reads_it(parts: tuple[str, str, str]) -> None:
    text = "".join(parts)
    try:
        expected: tuple[str, Any] = ("document", json.loads(text))
    except ValueError:
        expected = ("error", None)
    try:
        got: tuple[str, Any] = ("document", json_document(text))
    except ValueError:
        got = ("error", None)
    assert repr(got) == repr(expected)  # repr: NaN is not equal to itself
