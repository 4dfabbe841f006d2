"""Erasure reaches the WAL and the backups, in epochs.

An erasure deletes the person's wrapped data key, but PostgreSQL's WAL, the data files
(until VACUUM) and every base backup still hold it as it was wrapped. Scanned as an
attacker with the keyring would scan them, they give the erased person's key back, until
every key-encryption key that ever wrapped it is retired: then nothing in the WAL, the data
directory or any backup unwraps, though the bytes are all still there (the scan with the
keyring of before the retirement still finds them).

The server is a pgserver of this module's own, so its data directory and WAL can be read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _support import Figures, run_main
from conftest import create_database, drop_database

from peoplelog.fields import DataKey, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger, retire_kek, rewrap_data_keys
from peoplelog.schema import DecryptionFailed, apply_migrations

_WRAPPED_LENGTH = 62
"""A wrapped data key: version and algorithm bytes, nonce, key, tag (docs/FORMAT.md)."""
_WRAPPED_HEADER = b"\x01\x01"


@dataclass
class Server:
    url: str
    pgdata: Path
    bin: Path


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    pgdata = Path(tempfile.mkdtemp(prefix="peoplelog-wal-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - a dependency; only this module needs its own server
        from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

        running = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        url = str(running.get_uri())
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
        yield Server(url, pgdata, POSTGRES_BIN_PATH)
    finally:
        running.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _base_backup(server: Server, into: Path) -> Path:
    """A plain-format base backup with the WAL it needs (``pg_basebackup -X stream``)."""
    info = psycopg.conninfo.conninfo_to_dict(server.url)
    subprocess.run([str(server.bin / "pg_basebackup"), "-h", str(info["host"]), "-U",
                    str(info.get("user", "postgres")), "-D", str(into), "-Fp", "-X", "stream",
                    "--no-sync"], check=True, capture_output=True, timeout=300)
    return into


def _files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        yield from (path for path in sorted(root.rglob("*")) if path.is_file())


@dataclass
class Scan:
    recovered: set[uuid.UUID]
    files: int = 0
    bytes: int = 0
    candidates: int = 0


def _scan(roots: Iterable[Path], keyring: Keyring, persons: set[uuid.UUID]) -> Scan:
    """Every 62-byte window that starts like a wrapped data key, tried as each person's
    key version 1 under each KEK of ``keyring``: the persons whose key comes back."""
    keks = keyring.all_of(KeyPurpose.KEK)
    scan = Scan(recovered=set())
    for path in _files(roots):
        try:
            data = path.read_bytes()
        except OSError:  # a file the server removed meanwhile
            continue
        scan.files += 1
        scan.bytes += len(data)
        at = data.find(_WRAPPED_HEADER)
        while at != -1 and scan.recovered != persons:
            blob = data[at:at + _WRAPPED_LENGTH]
            if len(blob) == _WRAPPED_LENGTH:
                scan.candidates += 1
                for person in persons - scan.recovered:
                    for kek in keks:
                        try:
                            DataKey.unwrap(person, 1, blob, kek)
                        except DecryptionFailed:
                            continue
                        scan.recovered.add(person)
                        break
            at = data.find(_WRAPPED_HEADER, at + 1)
    return scan


def _person(ledger: Ledger, tag: str) -> uuid.UUID:
    return ledger.create_person(email=f"{tag}-{uuid.uuid4().hex[:8]}@example.org",
                                name=f"Person {tag}").person_id


def test_retiring_every_kek_of_a_persons_life_puts_the_erasure_beyond_every_backup(
        server: Server, tmp_path: Path) -> None:
    figures = Figures("erasure", "wal_and_backups")
    first = Keyring.generate()
    stored = [server.pgdata / "pg_wal", server.pgdata / "base"]
    with Database(server.url, pool_size=1) as database:
        with Ledger(Database(server.url, pool_size=1), first) as app:
            erased_early, erased_late, live = (_person(app, "a"), _person(app, "b"),
                                               _person(app, "c"))
            app.erase_person(erased_early, actor="dpo", reason="request")
        everyone = {erased_early, erased_late, live}
        backup = _base_backup(server, tmp_path / "backup-1")
        # the problem: the erased key is still in the WAL, the data files and the backup
        before = _scan([*stored, backup], first, everyone)
        assert before.recovered == everyone, before

        # epoch 2: every live key re-wrapped under kek-2; then the second person is erased,
        # whose key the WAL now holds under kek-1 and kek-2
        second_full = first.with_new_key(KeyPurpose.KEK)
        assert rewrap_data_keys(database, second_full).remaining == 0
        with Ledger(Database(server.url, pool_size=1), second_full) as app:
            app.erase_person(erased_late, actor="dpo", reason="request")
        second = retire_kek(database, second_full, first.active(KeyPurpose.KEK).id,
                            retention=timedelta(0))
        middle = _scan([*stored, backup], second, everyone)
        assert middle.recovered == {erased_late, live}, middle  # kek-2 still wrapped it
        still_there = _scan([*stored, backup], first, {erased_early})
        assert still_there.recovered == {erased_early}  # the bytes are there, the key gone

        # epoch 3: kek-2 goes as well: neither erasure is recoverable from anything
        third_full = second.with_new_key(KeyPurpose.KEK)
        assert rewrap_data_keys(database, third_full).remaining == 0
        third = retire_kek(database, third_full, second.active(KeyPurpose.KEK).id,
                           retention=timedelta(0))
        later = _base_backup(server, tmp_path / "backup-2")
        after = _scan([*stored, backup, later], third, everyone)
        assert after.recovered == {live}, after
        still_there = _scan([*stored, backup, later], second_full, {erased_early, erased_late})
        assert still_there.recovered == {erased_early, erased_late}
        with Ledger(Database(server.url, pool_size=1), third) as app:
            assert app.get_person(live).name == "Person c"
            assert app.get_person(erased_early).erased and app.get_person(erased_late).erased
    figures.operations = 3
    figures.inputs_tried = after.candidates
    figures.details = {"files_scanned": after.files, "bytes_scanned": after.bytes,
                       "erased_recovered_before": 2, "erased_recovered_after": 0}
    figures.write()


def _relation_files(server: Server, conn: psycopg.Connection[Any], table: str) -> list[Path]:
    """The data files of ``table`` and of its indexes (every segment)."""
    paths = [row[0] for row in conn.execute(
        "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = %s::regclass"
        " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
        (table, table))]
    return [file for path in paths for file in sorted(server.pgdata.glob(f"{path}*"))]


def _holds(files: list[Path], needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in files if path.exists())


def test_maintenance_rewrites_what_an_erasure_left_in_the_data_files(server: Server) -> None:
    """An erased person's blind index and wrapped key stay in the table and index pages
    until they are rewritten; ``peoplelog maintenance`` rewrites them."""
    figures = Figures("erasure", "maintenance_data_files")
    keyring = Keyring.generate()
    email = f"gone-{uuid.uuid4().hex[:8]}@example.org"
    url = create_database(server.url, "maintenance")  # its own: another keyring
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    with Ledger(Database(url, pool_size=1), keyring) as app:
        person = app.create_person(email=email, name="Soon Gone").person_id
        with psycopg.connect(url, autocommit=True) as conn:
            wrapped = bytes(conn.execute("SELECT wrapped_key FROM person_keys"
                                         " WHERE person_id = %s", (person,)).fetchone()[0])
            digest = bytes(conn.execute("SELECT blind_index FROM email_lookup"
                                        " WHERE person_id = %s", (person,)).fetchone()[0])
            conn.execute("CHECKPOINT")  # the rows reach the data files
        app.erase_person(person, actor="dpo", reason="request")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        lookup = _relation_files(server, conn, "email_lookup")
        keys = _relation_files(server, conn, "person_keys")
    assert _holds(lookup, digest) and _holds(keys, wrapped)  # deleted, still on the pages
    done = run_main({"PEOPLELOG_DATABASE_URL": url}, ["maintenance", "--json"])
    assert done.code == 0, done.stderr
    tables = {t["table"] for t in json.loads(done.stdout)["tables"]}
    assert {"email_lookup", "person_keys", "external_ids", "import_seen"} <= tables
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        lookup = _relation_files(server, conn, "email_lookup")
        keys = _relation_files(server, conn, "person_keys")
    drop_database(server.url, url)
    assert not _holds(lookup, digest) and not _holds(keys, wrapped)
    figures.operations = 1
    figures.details = {"tables": sorted(tables)}
    figures.write()
