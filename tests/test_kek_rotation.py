"""Key-encryption-key rotation in epochs: every live data key re-wrapped under the new KEK
(online, in batches, resumable), the old KEK retired only when nothing live needs it and
its backups have aged out, and the epochs recorded for auditors."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, create_database, drop_database

from peoplelog.fields import DataKey, Key, KeyPurpose, Keyring
from peoplelog.ledger import (
    Database,
    Ledger,
    kek_epochs,
    retire_kek,
    rewrap_data_keys,
)
from peoplelog.schema import Conflict, DecryptionFailed, KeyringError, apply_migrations

Conn = psycopg.Connection[Any]


@pytest.fixture()
def fresh(server_url: str) -> Iterator[str]:
    """A database of its own: each test rotates its own keyring's KEKs."""
    url = create_database(server_url, "rotation")
    with psycopg.connect(url, autocommit=True) as owner:
        apply_migrations(owner)
    yield url
    drop_database(server_url, url)


def _people(ledger: Ledger, count: int, tag: str) -> list[tuple[uuid.UUID, str]]:
    out = []
    for i in range(count):
        email = f"{tag}-{i}-{uuid.uuid4().hex[:6]}@example.org"
        out.append((ledger.create_person(email=email, name=f"{tag} {i}",
                                         password="correct horse battery").person_id, email))
    return out


def _keks(conn: Conn) -> dict[str, int]:
    return dict(conn.execute("SELECT kek_id, count(*) FROM person_keys GROUP BY kek_id")
                .fetchall())


def test_rotation_rewraps_every_live_key_in_batches_and_reads_go_on(fresh: str) -> None:
    database_url, keyring = fresh, Keyring.generate()
    conn = psycopg.connect(database_url, autocommit=True)
    with Ledger(Database(database_url, pool_size=2), keyring) as old_app:
        people = _people(old_app, 7, "rot")
        erased = people.pop()
        old_app.erase_person(erased[0], actor="dpo", reason="request")
    rotated = keyring.with_new_key(KeyPurpose.KEK)
    new_kek = rotated.active(KeyPurpose.KEK).id
    seen: list[int] = []
    with Database(database_url, pool_size=1) as database:
        summary = rewrap_data_keys(database, rotated, batch_size=2, progress=seen.append)
        assert (summary.kek_id, summary.rewrapped, summary.remaining) == (new_kek, 6, 0)
        assert seen == [2, 4, 6, 6]  # one call per batch, the last one empty
        assert summary.drained == [keyring.active(KeyPurpose.KEK).id]
        assert _keks(conn) == {new_kek: 6}
        again = rewrap_data_keys(database, rotated)
        assert (again.rewrapped, again.remaining, again.drained) == (0, 0, [])
    retired = None
    with Database(database_url, pool_size=1) as database:
        retired = retire_kek(database, rotated, keyring.active(KeyPurpose.KEK).id,
                             retention=timedelta(0))
    assert retired.find(keyring.active(KeyPurpose.KEK).id) is None
    with Ledger(Database(database_url, pool_size=2), retired) as app:
        for person_id, email in people:
            assert app.get_person(person_id).email == email
            assert app.authenticate(email, "correct horse battery") == person_id
        assert app.get_person(erased[0]).erased
        app.update_person(people[0][0], name="After the rotation")
        assert app.get_person(people[0][0]).name == "After the rotation"
        fresh = _people(app, 1, "fresh")[0][0]
        assert _keks(conn)[new_kek] == 7 and app.get_person(fresh).name == "fresh 0"
    with Database(database_url, pool_size=1) as database:
        epochs = {epoch.kek_id: epoch for epoch in kek_epochs(database)}
    old = epochs[keyring.active(KeyPurpose.KEK).id]
    assert old.drained_at is not None and old.retired_at is not None and old.live_keys == 0
    assert epochs[new_kek].retired_at is None and epochs[new_kek].live_keys == 7
    conn.close()


def test_an_interrupted_rotation_keeps_its_batches_and_resumes(fresh: str) -> None:
    url, keyring = fresh, Keyring.generate()
    with Ledger(Database(url, pool_size=1), keyring) as app:
        _people(app, 5, "resume")
    rotated = keyring.with_new_key(KeyPurpose.KEK)

    def stop_after_first(done: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with Database(url, pool_size=1) as database, \
            psycopg.connect(url, autocommit=True) as owner:
        with pytest.raises(KeyboardInterrupt):
            rewrap_data_keys(database, rotated, batch_size=2, progress=stop_after_first)
        assert sorted(_keks(owner).values()) == [2, 3]  # the finished batch stayed
        with pytest.raises(Conflict, match="live data key"):
            retire_kek(database, rotated, keyring.active(KeyPurpose.KEK).id,
                       retention=timedelta(0))
        summary = rewrap_data_keys(database, rotated, batch_size=2)
        assert (summary.rewrapped, summary.remaining) == (3, 0)
        assert _keks(owner) == {rotated.active(KeyPurpose.KEK).id: 5}


def test_appends_during_a_rotation_all_land_and_stay_readable(fresh: str) -> None:
    """The application already holds the new keyring (``keys add-kek``, then a reload):
    its appends and the re-wrap of the same persons' keys go on side by side."""
    database_url, current = fresh, Keyring.generate()
    with Ledger(Database(database_url, pool_size=1), current) as before:
        people = _people(before, 6, "busy")
    rotated = current.with_new_key(KeyPurpose.KEK)
    with Ledger(Database(database_url, pool_size=3), rotated) as app:
        stop = threading.Event()
        written: list[int] = []
        failures: list[BaseException] = []

        def writer() -> None:
            n = 0
            try:
                while not stop.is_set():
                    person_id = people[n % len(people)][0]
                    app.update_person(person_id, name=f"busy {n}")
                    n += 1
            except BaseException as exc:
                failures.append(exc)
            written.append(n)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            with Database(database_url, pool_size=1) as database:
                summary = rewrap_data_keys(database, rotated, batch_size=1)
        finally:
            stop.set()
            thread.join()
        assert not failures, failures
        assert summary.rewrapped >= 6 and summary.remaining == 0
    with Ledger(Database(database_url, pool_size=1), rotated) as reader:
        for person_id, _email in people:
            assert reader.get_person(person_id).name.startswith("busy")
    assert written and written[0] > 0


def test_keys_written_with_the_old_keyring_meanwhile_hold_the_retirement_back(
        fresh: str) -> None:
    database_url, keyring = fresh, Keyring.generate()
    with Ledger(Database(database_url, pool_size=1), keyring) as app:
        _people(app, 2, "early")
    rotated = keyring.with_new_key(KeyPurpose.KEK)
    old_kek = keyring.active(KeyPurpose.KEK).id
    with Database(database_url, pool_size=1) as database:
        assert rewrap_data_keys(database, rotated).drained == [old_kek]
        with Ledger(Database(database_url, pool_size=1), keyring) as late_app:
            _people(late_app, 2, "late")  # an application that still has the old file
        with pytest.raises(Conflict, match="2 live data key"):
            retire_kek(database, rotated, old_kek, retention=timedelta(0))
        first_drained = {e.kek_id: e.drained_at for e in kek_epochs(database)}[old_kek]
        summary = rewrap_data_keys(database, rotated)
        assert (summary.rewrapped, summary.remaining, summary.drained) == (2, 0, [old_kek])
        drained = {e.kek_id: e.drained_at for e in kek_epochs(database)}[old_kek]
        assert first_drained is not None and drained is not None and drained > first_drained
        with pytest.raises(Conflict, match="active one"):
            retire_kek(database, rotated, rotated.active(KeyPurpose.KEK).id,
                       retention=timedelta(0))
        with pytest.raises(Conflict, match="retention of 30 days"):
            retire_kek(database, rotated, old_kek, retention=timedelta(days=30))
        assert retire_kek(database, rotated, old_kek,
                          retention=timedelta(0)).find(old_kek) is None


def test_retirement_goes_oldest_first(fresh: str) -> None:
    first = Keyring.generate()
    with Ledger(Database(fresh, pool_size=1), first) as app:
        _people(app, 2, "order")
    second = first.with_new_key(KeyPurpose.KEK)
    third = second.with_new_key(KeyPurpose.KEK)
    with Database(fresh, pool_size=1) as database:
        rewrap_data_keys(database, second)
        rewrap_data_keys(database, third)
        with pytest.raises(Conflict, match="older key-encryption key"):
            retire_kek(database, third, second.active(KeyPurpose.KEK).id,
                       retention=timedelta(0))
        remaining = retire_kek(database, third, first.active(KeyPurpose.KEK).id,
                               retention=timedelta(0))
        remaining = retire_kek(database, remaining, second.active(KeyPurpose.KEK).id,
                               retention=timedelta(0))
        assert [k.id for k in remaining.all_of(KeyPurpose.KEK)] == [
            third.active(KeyPurpose.KEK).id]


def test_a_key_that_does_not_unwrap_stops_the_rotation_with_its_batch_untouched(
        fresh: str) -> None:
    keyring = Keyring.generate()
    with Ledger(Database(fresh, pool_size=1), keyring) as app:
        people = _people(app, 3, "damaged")
    with psycopg.connect(fresh, autocommit=True) as owner:
        owner.execute("SET session_replication_role = replica")  # bypass the triggers
        owner.execute("UPDATE person_keys SET wrapped_key = set_byte(wrapped_key, 20,"
                      " get_byte(wrapped_key, 20) # 1) WHERE person_id = %s", (people[1][0],))
        before = owner.execute("SELECT * FROM person_keys ORDER BY person_id").fetchall()
        rotated = keyring.with_new_key(KeyPurpose.KEK)
        with Database(fresh, pool_size=1) as database, \
                pytest.raises(DecryptionFailed, match=str(people[1][0])):
            rewrap_data_keys(database, rotated, batch_size=10)
        assert owner.execute("SELECT * FROM person_keys ORDER BY person_id"
                             ).fetchall() == before


def test_the_cli_rotates_lists_epochs_and_retires(cli: Cli, cli_env: dict[str, str],
                                                  keyring_file: Path) -> None:
    created = cli("person", "create", "--email", f"cli-{uuid.uuid4().hex[:6]}@example.org",
                  "--name", "Cli Rotation", "--json")
    assert created.code == 0, created.stderr
    before = Keyring.load(keyring_file).active(KeyPurpose.KEK).id
    rotated = cli("keys", "rotate-kek", "--add-kek", "--json")
    assert rotated.code == 0, rotated.stderr
    result = rotated.json
    after = Keyring.load(keyring_file).active(KeyPurpose.KEK).id
    assert result["added"] == after != before and result["remaining"] == 0
    assert before in result["drained"] and result["rewrapped"] >= 1
    epochs = cli("keys", "epochs", "--json")
    assert epochs.code == 0, epochs.stderr
    by_id = {e["kek_id"]: e for e in epochs.json}
    assert by_id[before]["drained_at"] and by_id[after]["live_keys"] >= 1
    refused = cli("keys", "retire-kek", before, "--retention", "30d", "--json")
    assert refused.code == 4 and "retention" in refused.stderr
    assert cli("keys", "retire-kek", before, "--retention", "soon").code == 2
    retired = cli("keys", "retire-kek", before, "--retention", "0", "--json")
    assert retired.code == 0, retired.stderr
    assert Keyring.load(keyring_file).find(before) is None
    shown = cli("person", "show", created.json["person_id"], "--json")
    assert shown.code == 0 and shown.json["name"] == "Cli Rotation"
    text = Keyring.load(keyring_file).to_json()
    env = {"PEOPLELOG_KEYRING": "", "PEOPLELOG_KEYRING_JSON": text}
    from_env = cli("keys", "rotate-kek", "--add-kek", env=env)
    assert from_env.code == 2 and "PEOPLELOG_KEYRING_JSON" in from_env.stderr
    again = cli("keys", "rotate-kek", "--json", env=env)
    assert again.code == 0 and again.json["rewrapped"] == 0 and again.json["added"] is None
    assert cli("keys", "rotate-kek", "--batch-size", "0").code == 2


def test_a_retired_kek_name_is_never_given_to_a_new_key(fresh: str) -> None:
    first = Keyring.generate()
    with Ledger(Database(fresh, pool_size=1), first) as app:
        _people(app, 1, "names")
    second = first.with_new_key(KeyPurpose.KEK)
    old_kek = first.active(KeyPurpose.KEK).id
    with Database(fresh, pool_size=1) as database:
        rewrap_data_keys(database, second)
        remaining = retire_kek(database, second, old_kek, retention=timedelta(0))
        assert remaining.with_new_key(KeyPurpose.KEK).active(KeyPurpose.KEK).id != old_kek
        impostor = Key(old_kek, KeyPurpose.KEK, bytes(range(32)), "2026-01-01T00:00:00+00:00")
        keys = {key.id: key for purpose in KeyPurpose for key in remaining.all_of(purpose)}
        active = {purpose: remaining.active(purpose).id for purpose in KeyPurpose}
        reused = Keyring({**keys, old_kek: impostor}, {**active, KeyPurpose.KEK: old_kek})
        with pytest.raises(KeyringError, match="never used before"):
            rewrap_data_keys(database, reused)


# --- one person's data key ------------------------------------------------------------------


def test_a_data_key_rotation_writes_the_fields_under_a_new_key_and_keeps_history_readable(
        fresh: str) -> None:
    keyring = Keyring.generate()
    with Ledger(Database(fresh, pool_size=2), keyring) as app, \
            psycopg.connect(fresh, autocommit=True) as owner:
        ref = app.create_person(email="rekey@example.org", name="Before",
                                password="correct horse battery")
        app.update_person(ref.person_id, name="Still the old key")
        rotated = app.rotate_data_key(ref.person_id, actor="security", reason="laptop lost")
        assert rotated.version == 2 and rotated.written
        head = owner.execute("SELECT op, email, name, password FROM people"
                             " WHERE person_id = %s AND version = 2",
                             (ref.person_id,)).fetchone()
        assert head is not None and head[0] == "key_rotated"
        assert {DataKey.key_version_of(bytes(blob)) for blob in head[1:]} == {2}
        assert owner.execute("SELECT key_version FROM person_keys WHERE person_id = %s"
                             " ORDER BY key_version", (ref.person_id,)).fetchall() == [
            (1,), (2,)]
        # every version reads, each under the key its ciphertexts name
        assert [app.get_person(ref.person_id, v).name for v in (0, 1, 2)] == [
            "Before", "Still the old key", "Still the old key"]
        assert app.find_person("REKEY@example.org") == ref.person_id
        assert app.authenticate("rekey@example.org", "correct horse battery") == ref.person_id
        assert app.history(ref.person_id)[2].changed == []
        later = app.update_person(ref.person_id, name="New key")
        assert app.get_person(ref.person_id).name == "New key" and later.version == 3
        stored = owner.execute("SELECT name FROM people WHERE person_id = %s AND version = 3",
                               (ref.person_id,)).fetchone()
        assert stored is not None and DataKey.key_version_of(bytes(stored[0])) == 2
        app.erase_person(ref.person_id, actor="dpo")  # both keys go
        assert owner.execute("SELECT count(*) FROM person_keys WHERE person_id = %s",
                             (ref.person_id,)).fetchone() == (0,)


def test_the_cli_rotates_a_persons_data_key(cli: Cli) -> None:
    created = cli("person", "create", "--email", f"rk-{uuid.uuid4().hex[:6]}@example.org",
                  "--name", "Cli Rekey", "--json")
    assert created.code == 0, created.stderr
    pid = created.json["person_id"]
    done = cli("person", "rotate-key", pid, "--actor", "security", "--json")
    assert done.code == 0, done.stderr
    assert done.json["version"] == 1 and done.json["written"]
    shown = cli("person", "show", pid, "--version", "0", "--json")
    assert shown.code == 0 and shown.json["name"] == "Cli Rekey"
    assert cli("person", "rotate-key", str(uuid.uuid4())).code == 3
