"""Keys, end to end through the database, the API and the CLI: a key-encryption key id the
keyring lacks, a wrapped data key made under another key, a truncated wrapped key, a data
key version that does not match, and a truncated field ciphertext stored in ``people``.

Each gives a precise error naming the key id or the field and the person (never garbage,
never a silent null), writes nothing, and leaves key-free verification working.
``tests/test_vectors.py`` checks the cipher on its own and ``tests/test_bad_input.py`` a
keyring whose key ids are missing or whose secrets differ; this module covers damage found
in the database.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from _support import ROOT, Figures, counts
from conftest import create_database, drop_database

from peoplelog.fields import DataKey, Key, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.projections import history_with_values, verify_ledger
from peoplelog.schema import DecryptionFailed, KeyNotFound, PeoplelogError, apply_migrations

Conn = psycopg.Connection[Any]
PASSWORD = "keys-test-Passw0rd"


@dataclass
class Damaged:
    ledger: Ledger
    conn: Conn
    env: dict[str, str]
    url: str


@pytest.fixture(scope="module")
def damaged(server_url: str, keyring: Keyring, cli_env: dict[str, str]) -> Iterator[Damaged]:
    """A database of its own: its rows are damaged on purpose."""
    url = create_database(server_url, "rel_keys")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    ledger = Ledger(Database(url, pool_size=2), keyring)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            yield Damaged(ledger, conn, {**cli_env, "PEOPLELOG_DATABASE_URL": url}, url)
    finally:
        ledger.close()
        drop_database(server_url, url)


def _person(damaged: Damaged) -> tuple[uuid.UUID, str]:
    email = f"keys-{uuid.uuid4().hex}@example.org"
    ref = damaged.ledger.create_person(email=email, name="Key Holder", password=PASSWORD)
    return ref.person_id, email


def _other_kek(key_id: str) -> Key:
    return Key(key_id, KeyPurpose.KEK, secrets.token_bytes(32), "2024-01-01T00:00:00+00:00")


def _precise(exc: BaseException, *words: str) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def _check_every_reader(damaged: Damaged, pid: uuid.UUID, email: str,
                        expected: type[PeoplelogError], *words: str) -> dict[str, str]:
    """Every way to read or change the person fails the same precise way; nothing is
    written; the CLI says it on one line with exit 2."""
    ledger, conn = damaged.ledger, damaged.conn
    calls: dict[str, Callable[[], Any]] = {
        "get_person": lambda: ledger.get_person(pid),
        "get_person(version 0)": lambda: ledger.get_person(pid, 0),
        "update_person": lambda: ledger.update_person(pid, name="Changed"),
        "update_person(email)": lambda: ledger.update_person(
            pid, email=f"moved-{uuid.uuid4().hex}@example.org"),
        "prepare_update": lambda: ledger.prepare_update(pid, name="Changed"),
        "authenticate": lambda: ledger.authenticate(email, PASSWORD),
        "history_with_values": lambda: history_with_values(conn, ledger.keyring, pid),
    }
    seen = {}
    before = counts(conn)
    for name, call in calls.items():
        with pytest.raises(expected) as failure:
            call()
        seen[name] = _precise(failure.value, *words)
    assert counts(conn) == before
    assert ledger.find_person(email) == pid  # the claim's seal is checked without a data key
    for argv in (["person", "show", str(pid)], ["person", "history", str(pid)],
                 ["person", "update", str(pid), "--name", "Changed"]):
        done = subprocess.run([sys.executable, "-m", "peoplelog", *argv, "--json"],
                              env=damaged.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
        error = json.loads(done.stderr)
        assert error["error"] == expected.kind
        _precise(Exception(error["message"]), *words)
    assert counts(conn) == before
    assert verify_ledger(conn, pid).ok  # verification needs no keys
    return seen


def test_key_encryption_key_missing_from_the_keyring(damaged: Damaged) -> None:
    figures = Figures("keys", "kek_missing")
    pid, email = _person(damaged)
    damaged.conn.execute("UPDATE person_keys SET kek_id = 'kek-retired' WHERE person_id = %s",
                         (pid,))
    seen = _check_every_reader(damaged, pid, email, KeyNotFound, "'kek-retired'")
    figures.faults_injected = 1
    figures.inputs_tried = len(seen) + 3
    figures.details = {"error": "KeyNotFound naming the key id", "calls": sorted(seen)}
    figures.write()


@pytest.mark.parametrize("damage", ["another kek, same id", "truncated", "empty"])
def test_wrapped_data_key_that_does_not_unwrap(damaged: Damaged, damage: str) -> None:
    figures = Figures("keys", f"wrapped_key_{damage.replace(' ', '_').replace(',', '')}")
    pid, email = _person(damaged)
    if damage == "another kek, same id":
        _, secret = DataKey.generate(pid)
        wrapped = DataKey.wrap(pid, 1, secret, _other_kek("kek-1"))
        damaged.conn.execute("UPDATE person_keys SET wrapped_key = %s WHERE person_id = %s",
                             (wrapped, pid))
    else:
        length = 20 if damage == "truncated" else 0
        damaged.conn.execute("UPDATE person_keys SET wrapped_key = substring(wrapped_key"
                             " FROM 1 FOR %s) WHERE person_id = %s", (length, pid))
    seen = _check_every_reader(damaged, pid, email, DecryptionFailed, "'kek-1'", str(pid),
                               "could not be unwrapped")
    figures.faults_injected = 1
    figures.inputs_tried = len(seen) + 3
    figures.details = {"error": "DecryptionFailed naming the kek and the person"}
    figures.write()


def test_data_key_version_that_does_not_match(damaged: Damaged) -> None:
    figures = Figures("keys", "data_key_version")
    pid, email = _person(damaged)
    damaged.conn.execute("UPDATE person_keys SET key_version = 2 WHERE person_id = %s", (pid,))
    ledger = damaged.ledger
    before = counts(damaged.conn)
    # The key unwraps (its version is in the associated data: it does not), or the
    # ciphertexts name version 1: either way a precise error, never a value.
    for call in (lambda: ledger.get_person(pid), lambda: ledger.update_person(pid, name="X"),
                 lambda: ledger.authenticate(email, PASSWORD)):
        with pytest.raises(DecryptionFailed) as failure:
            call()
        _precise(failure.value, str(pid))
    # A missing key version is a damaged key store, not an erasure: a precise error.
    with pytest.raises(DecryptionFailed) as failure:
        history_with_values(damaged.conn, ledger.keyring, pid)
    _precise(failure.value, str(pid))
    assert "not erased" in str(failure.value)
    assert counts(damaged.conn) == before
    figures.faults_injected = 1
    figures.inputs_tried = 4
    figures.write()


def test_truncated_field_ciphertext_in_the_ledger(damaged: Damaged) -> None:
    """A version whose stored name ciphertext was cut short (by a superuser, past the
    append-only trigger): reading it fails naming the field and the person, and
    verification reports that version."""
    figures = Figures("keys", "truncated_field_ciphertext")
    pid, _email = _person(damaged)
    damaged.ledger.update_person(pid, name="Key Holder II")
    conn = damaged.conn
    with conn.transaction():
        conn.execute("ALTER TABLE people DISABLE TRIGGER USER")
        conn.execute("UPDATE people SET name = substring(name FROM 1 FOR 30)"
                     " WHERE person_id = %s AND version = 0", (pid,))
        conn.execute("ALTER TABLE people ENABLE TRIGGER USER")
    with pytest.raises(DecryptionFailed) as failure:
        damaged.ledger.get_person(pid, 0)
    _precise(failure.value, "name", str(pid))
    assert damaged.ledger.get_person(pid).name == "Key Holder II"  # other versions read
    with pytest.raises(DecryptionFailed) as failure:
        history_with_values(conn, damaged.ledger.keyring, pid)
    _precise(failure.value, "name", str(pid))
    done = subprocess.run([sys.executable, "-m", "peoplelog", "person", "show", str(pid),
                           "--version", "0", "--json"], env=damaged.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert json.loads(done.stderr)["error"] == "decryption_failed"
    report = verify_ledger(conn, pid)
    assert not report.ok
    assert {(f.kind, f.version) for f in report.findings} >= {("cid_mismatch", 0)}
    figures.faults_injected = 1
    figures.inputs_tried = 4
    figures.write()


def test_damaged_ciphertext_in_the_projection(damaged: Damaged) -> None:
    """``people_latest`` (a mutable projection) holding a cut-short name: a read of the
    newest version still comes from ``people``; an update must not copy the damage into
    a new version of the ledger."""
    figures = Figures("keys", "damaged_projection_ciphertext")
    pid, _email = _person(damaged)
    conn = damaged.conn
    conn.execute("UPDATE people_latest SET name = substring(name FROM 1 FOR 30)"
                 " WHERE person_id = %s", (pid,))
    assert damaged.ledger.get_person(pid).name == "Key Holder"
    before = counts(conn)
    try:
        ref = damaged.ledger.update_person(pid, email=f"moved-{uuid.uuid4().hex}@example.org")
    except PeoplelogError as exc:
        _precise(exc, str(pid))
        assert counts(conn) == before
        outcome = f"refused: {exc.kind}"
    else:
        try:
            damaged.ledger.get_person(pid, ref.version)
            outcome = "written, readable"
        except DecryptionFailed:
            outcome = "written with the damaged name carried forward"
            figures.findings.append(
                "an update carries the head's ciphertexts forward from people_latest without "
                "checking them: a damaged projection row is copied into a new, valid-looking "
                "version of the ledger (ledger._write._plain turns DecryptionFailed into "
                "None); `peoplelog projections check` finds the damage beforehand")
    figures.faults_injected = 1
    figures.inputs_tried = 1
    figures.details = {"outcome": outcome}
    figures.write()
