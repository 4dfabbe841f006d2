"""PostgreSQL's own log receives no keyed hash of an email: an address already taken is
found by ``ON CONFLICT DO NOTHING`` and a count, never by a unique violation, whose DETAIL
line (``Key (blind_index)=(\\x...)``) the server would write to its log.

The test runs its own embedded server, so it can read that server's log file."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from peoplelog.fields import BlindIndex, KeyPurpose, Keyring, normalise_email
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import EmailTaken, apply_migrations


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[str, Path]]:
    pgdata = Path(tempfile.mkdtemp(prefix="peoplelog-log-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415

        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield str(server.get_uri()), pgdata / "log"
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def test_an_email_already_taken_leaves_no_digest_in_the_server_log(
        own_server: tuple[str, Path]) -> None:
    url, log = own_server
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    keyring = Keyring.generate()
    blind = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX))
    taken, other = "taken.address@example.org", "other.address@example.org"
    digests = [blind.digest(normalise_email(email)) for email in (taken, other)]
    with Ledger(Database(url, pool_size=2), keyring) as ledger:
        first = ledger.create_person(email=taken, name="First")
        second = ledger.create_person(email=other, name="Second")
        for attempt in (
            lambda: ledger.create_person(email="TAKEN.address@example.org", name="Copy"),
            lambda: ledger.update_person(second.person_id, email=taken),
            lambda: ledger.append(ledger.prepare_update(second.person_id, email=taken)),
        ):
            with pytest.raises(EmailTaken):
                attempt()
        ledger.erase_person(first.person_id, actor="dpo")
        ledger.update_person(second.person_id, email=taken)  # free again: no conflict
    text = log.read_text(encoding="utf-8", errors="replace")
    for digest in digests:
        assert digest.hex() not in text
    assert "blind_index" not in text

    # The control: a unique violation on email_lookup does reach the log with its key, so
    # the absence above is the product's doing, not a log that records nothing.
    control = b"\x01" * 32
    with psycopg.connect(url, autocommit=True) as conn:
        statement: Any = ("INSERT INTO email_lookup (blind_index, person_id, key_id, norm)"
                          " VALUES (%s, gen_random_uuid(), 'k', 1)")
        conn.execute(statement, (control,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(statement, (control,))
    assert control.hex() in log.read_text(encoding="utf-8", errors="replace")
