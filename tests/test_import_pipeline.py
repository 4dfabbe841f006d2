"""The pipelined import (several batches in flight on their own connections): verdicts are
those of a batch-by-batch import, and what it writes decrypts and verifies."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fields import Keyring
from ledger import Database, Ledger
from ledger._import import LANES, import_people, read_rows
from projections import check_projections, verify_ledger

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
