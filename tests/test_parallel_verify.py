"""Verification on two cores reports exactly what the single-process pass reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import create_database, drop_database

from peoplelog.fields import Attestations, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.projections import CheckpointSigner, audit_database, make_checkpoint
from peoplelog.schema import apply_migrations


@pytest.fixture(scope="module")
def damaged(server_url: str) -> Any:
    url = create_database(server_url, "parallel")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    keyring = Keyring.generate()
    with Ledger(Database(url, pool_size=1), keyring) as ledger:
        refs = [ledger.create_person(email=f"par{i}@example.org", name=f"P {i}")
                for i in range(12)]
        for ref in refs[:6]:
            ledger.update_person(ref.person_id, name="Renamed")
    signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    with psycopg.connect(url, autocommit=True) as conn:
        make_checkpoint(conn, signer, writers=Attestations.of(keyring))
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("UPDATE people SET actor = 'forger' WHERE person_id = %s AND "
                         "version = 1", (refs[0].person_id,))
            conn.execute("DELETE FROM people WHERE person_id = %s", (refs[7].person_id,))
            conn.execute("DELETE FROM log_entries WHERE position = 3")
    yield url
    drop_database(server_url, url)


def _kinds(report: Any) -> list[tuple[str, str, int | None]]:
    return sorted((f.kind, str(f.person_id), f.version) for f in report.findings)


def test_two_cores_find_what_one_finds(damaged: str) -> None:
    with psycopg.connect(damaged, autocommit=True) as conn:
        single = audit_database(conn)
        double = audit_database(conn, conninfo=damaged, workers=2, parallel_threshold=0)
    assert not single.ok
    assert _kinds(single) == _kinds(double)
    assert (single.checked, single.persons) == (double.checked, double.persons)
    assert single.log is not None and double.log is not None
    assert single.log.model_dump() == double.log.model_dump()
    kinds = {kind for kind, _, _ in _kinds(single)}
    assert {"cid_mismatch", "missing_version", "log_gap"} <= kinds


def test_cli_verify_uses_workers(damaged: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "peoplelog", "verify", "--workers", "2", "--json"],
        capture_output=True, text=True, check=False, timeout=120,
        env={"PEOPLELOG_DATABASE_URL": damaged, "PEOPLELOG_HOME": str(tmp_path),
             "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert run.returncode == 1, run.stderr
    assert '"cid_mismatch"' in run.stdout
