"""Right to erasure by crypto-shredding: after ``erase``, the database (even read together
with the application's keyring) neither reveals nor confirms the person's email or name,
while the chain still verifies."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from peoplelog.fields import FIELDS, BlindIndex, DataKey, Key, KeyPurpose, Keyring, normalise_email
from peoplelog.ledger import Ledger
from peoplelog.projections import verify_ledger
from peoplelog.schema import (
    DecryptionFailed,
    InvalidInput,
    Op,
    PersonErased,
    PersonNotFound,
    VersionRef,
)

Conn = psycopg.Connection[Any]
TABLES = ("people", "people_latest", "email_lookup", "person_keys")

OLD_EMAIL = "zoe.erasmus-quill+old@example.org"
EMAIL = "zoe.erasmus-quill@example.org"
OLD_NAME = "Zoë Erasmus-Quill"
NAME = "Zoë Erasmus-Quill-Ångström"
PASSWORD = "erase-me-passphrase-9"


# --- helpers: an independent look at the dump ---------------------------------------------


def pg_dump(url: str) -> bytes:
    """A full plain-text dump (schema and data) made by pg_dump itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - its import warns
    exe = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run([str(exe), "--dbname", url], capture_output=True, env=env,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"CREATE TABLE public.people" in done.stdout
    return done.stdout


def copy_block(dump: bytes, table: str) -> bytes:
    """The data of one table in a plain dump (its COPY block)."""
    start = dump.index(b"COPY public.%s " % table.encode())
    return dump[start:dump.index(b"\n\\.\n", start)]


def base64_fragments(data: bytes) -> set[str]:
    """Every base64 (standard and url-safe) run that encodes ``data`` wherever it sits in a
    longer byte string: the characters that depend on ``data`` alone, at all 3 alignments."""
    found: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        first = -(-8 * shift // 6)                       # first char made of data bits only
        last = (8 * (shift + len(data)) - 6) // 6        # last such char
        run = encoded[first:last + 1]
        if len(run) >= 6:
            found |= {run, run.replace("+", "-").replace("/", "_")}
    return found


def encodings(text: str) -> dict[str, bytes]:
    """The forms in which ``text`` could sit in a dump: raw, hex (bytea), base64."""
    raw = text.encode()
    forms = {"utf-8": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for i, fragment in enumerate(sorted(base64_fragments(raw))):
        forms[f"base64#{i}"] = fragment.encode()
    return forms


def digest_forms(digest: bytes) -> dict[str, bytes]:
    forms = {"hex": digest.hex().encode(), "HEX": digest.hex().upper().encode()}
    for i, fragment in enumerate(sorted(base64_fragments(digest))):
        forms[f"base64#{i}"] = fragment.encode()
    return forms


def keyring_keys(keyring: Keyring) -> list[tuple[str, bytes]]:
    """Every (key id, secret) in the keyring, whatever its purpose."""
    document = json.loads(keyring.to_json())
    return [
        (entry["id"], base64.urlsafe_b64decode(entry["secret"] + "=" * (-len(entry["secret"]) % 4)))
        for entry in document["keys"]
    ]


def blind_digests(keyring: Keyring, email: str) -> dict[str, bytes]:
    """The blind index of ``email`` as the ledger computes it, and HMAC-SHA256 of the
    plausible inputs under every key in the keyring."""
    normalised = normalise_email(email)
    digests = {"blind index": BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX)).digest(normalised)}
    messages = {email.encode(), normalised.lookup_key.encode(), normalised.display.encode(),
                b"peoplelog/email/1\x00" + normalised.lookup_key.encode()}
    for key_id, secret in keyring_keys(keyring):
        for message in messages:
            digests[f"hmac {key_id} {message!r}"] = hmac.new(secret, message,
                                                              hashlib.sha256).digest()
    return digests


def ciphertexts_of(conn: Conn, pid: uuid.UUID) -> list[bytes]:
    rows = conn.execute(
        "SELECT email, name, password FROM people WHERE person_id = %(p)s"
        " UNION ALL SELECT email, name, password FROM people_latest WHERE person_id = %(p)s",
        {"p": pid},
    ).fetchall()
    return [bytes(value) for row in rows for value in row if value is not None]


def recoverable(conn: Conn, keyring: Keyring, pid: uuid.UUID) -> set[bytes]:
    """Everything of ``pid``'s that decrypts with anything in the database plus the keyring.

    Every wrapped key in person_keys (anyone's) is tried with every key in the keyring as
    the key-encryption key, unwrapped as its owner and as ``pid``; every keyring secret is
    also tried directly as a data key. Each candidate data key is then bound to ``pid`` and
    tried on every ciphertext of ``pid`` as every field.
    """
    blobs = ciphertexts_of(conn, pid)
    versions = {DataKey.key_version_of(blob) for blob in blobs}
    keks = [Key(key_id, KeyPurpose.KEK, secret, "") for key_id, secret in keyring_keys(keyring)]
    candidates: list[DataKey] = []
    for owner, key_version, _kek_id, wrapped in conn.execute(
        "SELECT person_id, key_version, kek_id, wrapped_key FROM person_keys"
    ):
        for kek in keks:
            for as_pid in {owner, pid}:
                with contextlib.suppress(DecryptionFailed):
                    candidates.append(DataKey.unwrap(as_pid, key_version, bytes(wrapped), kek))
    for _key_id, secret in keyring_keys(keyring):
        candidates += [DataKey(pid, version, secret) for version in versions]
    plaintexts: set[bytes] = set()
    for candidate in candidates:
        for version in versions:
            candidate.person_id, candidate.version = pid, version  # bind it to the victim
            for blob in blobs:
                for field in FIELDS:
                    with contextlib.suppress(DecryptionFailed):
                        plaintexts.add(candidate.decrypt(field, blob))
    return plaintexts


def count_rows(conn: Conn, pid: uuid.UUID | None = None) -> dict[str, int]:
    result = {}
    for table in TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        if pid is not None:
            query += sql.SQL(" WHERE person_id = {}").format(sql.Literal(pid))
        result[table] = conn.execute(query).fetchone()[0]  # type: ignore[index]
    return result


# --- the erased person --------------------------------------------------------------------


@dataclass
class Erased:
    person_id: uuid.UUID
    before: list[VersionRef]
    erased: VersionRef
    dump_before: bytes
    dump_after: bytes
    recoverable_before: set[bytes]
    recoverable_after: set[bytes]


@pytest.fixture(scope="module")
def erased(ledger: Ledger, keyring: Keyring, database_url: str) -> Erased:
    # Bystanders, so person_keys and email_lookup are not empty afterwards.
    ledger.create_person(email="bystander.one@example.org", name="Bystander One")
    ledger.create_person(email="bystander.two@example.org", name="Bystander Two")
    refs = [ledger.create_person(email=OLD_EMAIL, name=OLD_NAME, password=PASSWORD,
                                 verified=True, actor="signup")]
    pid = refs[0].person_id
    refs.append(ledger.update_person(pid, name=NAME, expect_version=0))
    refs.append(ledger.update_person(pid, email=EMAIL, expect_version=1))
    refs.append(ledger.update_person(pid, verified=True))
    with psycopg.connect(database_url, autocommit=True) as conn:
        recoverable_before = recoverable(conn, keyring, pid)
    dump_before = pg_dump(database_url)
    ref = ledger.erase_person(pid, actor="dpo", reason="GDPR art. 17 request")
    with psycopg.connect(database_url, autocommit=True) as conn:
        recoverable_after = recoverable(conn, keyring, pid)
    return Erased(pid, refs, ref, dump_before, pg_dump(database_url), recoverable_before,
                  recoverable_after)


class TestAfterErasure:
    def test_an_erased_version_is_appended(self, erased: Erased, conn: Conn) -> None:
        assert (erased.erased.version, erased.erased.written) == (4, True)
        row = conn.execute(
            "SELECT op, prev, email, name, password, verified_at, actor, reason FROM people"
            " WHERE person_id = %s AND version = 4",
            (erased.person_id,),
        ).fetchone()
        assert row == ("erased", erased.before[-1].cid, None, None, None, None, "dpo",
                       "GDPR art. 17 request")

    def test_key_and_lookup_are_gone_versions_stay(self, erased: Erased, conn: Conn) -> None:
        assert count_rows(conn, erased.person_id) == {
            "people": 5, "people_latest": 1, "email_lookup": 0, "person_keys": 0,
        }
        latest = conn.execute(
            "SELECT version, op, email, name, password, erased_at IS NOT NULL"
            " FROM people_latest WHERE person_id = %s",
            (erased.person_id,),
        ).fetchone()
        assert latest == (4, "erased", None, None, None, True)

    def test_show_reports_erased_without_email_or_name(self, erased: Erased,
                                                        ledger: Ledger) -> None:
        view = ledger.get_person(erased.person_id)
        assert (view.erased, view.op, view.version) == (True, "erased", 4)
        assert (view.email, view.name, view.has_password) == (None, None, False)
        for version in range(4):  # older versions can no longer be read either
            old = ledger.get_person(erased.person_id, version=version)
            assert old.erased and old.email is None and old.name is None

    def test_show_via_cli(self, erased: Erased, cli: Any) -> None:
        result = cli("person", "show", str(erased.person_id), "--json")
        assert result.code == 0, result.stderr
        shown = result.json
        assert (shown["erased"], shown["email"], shown["name"]) == (True, None, None)
        assert OLD_NAME not in result.stdout and EMAIL not in result.stdout

    def test_history_still_tells_what_happened(self, erased: Erased, ledger: Ledger) -> None:
        history = ledger.history(erased.person_id)
        assert [h.op for h in history] == [Op.CREATED, Op.UPDATED, Op.UPDATED,
                                           Op.EMAIL_VERIFIED, Op.ERASED]
        assert [h.cid for h in history[:4]] == [r.cid for r in erased.before]
        assert (history[-1].actor, history[-1].reason) == ("dpo", "GDPR art. 17 request")

    def test_find_no_longer_finds_the_email(self, erased: Erased, ledger: Ledger,
                                            cli: Any) -> None:
        for email in (EMAIL, OLD_EMAIL):
            with pytest.raises(PersonNotFound):
                ledger.find_person(email)
        result = cli("person", "find", "--email", EMAIL)
        assert result.code == 3
        assert len(result.stderr.strip().splitlines()) == 1
        assert EMAIL not in result.stderr

    def test_cannot_log_in(self, erased: Erased, ledger: Ledger) -> None:
        assert ledger.authenticate(EMAIL, PASSWORD) is None

    def test_chain_still_verifies(self, erased: Erased, conn: Conn, cli: Any) -> None:
        report = verify_ledger(conn, erased.person_id)
        assert (report.ok, report.checked) == (True, 5)
        assert verify_ledger(conn).ok
        result = cli("verify", "--json")
        assert result.code == 0, result.stdout + result.stderr
        assert result.json["ok"] is True

    def test_erasing_again_is_idempotent(self, erased: Erased, ledger: Ledger,
                                         conn: Conn) -> None:
        before = count_rows(conn)
        again = ledger.erase_person(erased.person_id, actor="dpo")
        assert (again.written, again.version, again.cid) == (False, 4, erased.erased.cid)
        assert count_rows(conn) == before

    def test_no_further_versions(self, erased: Erased, ledger: Ledger, conn: Conn) -> None:
        before = count_rows(conn)
        with pytest.raises(PersonErased, match="erased"):
            ledger.update_person(erased.person_id, name="Back again")
        with pytest.raises(PersonErased):
            ledger.update_person(erased.person_id, email="back@example.org",
                                 expect_version=4)
        with pytest.raises(PersonErased):
            ledger.prepare_update(erased.person_id, name="Back again")
        assert count_rows(conn) == before

    def test_erasing_an_unknown_person(self, ledger: Ledger, conn: Conn) -> None:
        before = count_rows(conn)
        with pytest.raises(PersonNotFound):
            ledger.erase_person(uuid.uuid4())
        with pytest.raises(InvalidInput):
            ledger.erase_person("not-a-uuid")
        assert count_rows(conn) == before


def test_record_prepared_before_erasure_cannot_be_appended(ledger: Ledger,
                                                           conn: Conn) -> None:
    ref = ledger.create_person(email="prepared.late@example.org", name="Prepared Late")
    record = ledger.prepare_update(ref.person_id, name="Written after erasure")
    ledger.erase_person(ref.person_id)
    before = count_rows(conn)
    with pytest.raises(PersonErased):
        ledger.append(record)
    assert count_rows(conn) == before


def test_the_email_can_be_registered_again_by_someone_else(ledger: Ledger, conn: Conn,
                                                            cli: Any) -> None:
    email = "reused.address@example.org"
    first = ledger.create_person(email=email, name="First Holder")
    result = cli("person", "erase", str(first.person_id), "--actor", "dpo", "--json")
    assert result.code == 0, result.stderr
    assert result.json["version"] == 1
    with pytest.raises(PersonNotFound):
        ledger.find_person(email)
    second = ledger.create_person(email=email, name="Second Holder")
    assert second.person_id != first.person_id
    assert ledger.find_person(email) == second.person_id
    assert ledger.get_person(second.person_id).email == email
    assert ledger.get_person(first.person_id).email is None
    assert verify_ledger(conn).ok


def test_keys_an_interrupted_import_noted_go_with_the_erasure(ledger: Ledger, conn: Conn,
                                                              keyring: Keyring) -> None:
    """An import notes the rows it skipped or updated in ``import_seen`` (the email's and
    the external id's keyed hashes, the person's id, one line); an interrupted run leaves
    them until the next import. The erasure takes them, and nobody else's."""
    blind = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX))
    erased = ledger.create_person(email="noted.by.import@example.org", name="Noted")
    other = ledger.create_person(email="also.noted@example.org", name="Other")
    run = uuid.uuid4()
    for line, ref, email in ((7, erased, "noted.by.import@example.org"),
                             (8, other, "also.noted@example.org")):
        keys = [blind.digest(normalise_email(email)), blind.external_id_digest(f"x{line}"),
                ref.person_id.bytes]
        for key in keys:
            conn.execute("INSERT INTO import_seen (run, key, line) VALUES (%s, %s, %s)",
                         (run, key, line))
    ledger.erase_person(erased.person_id, actor="dpo")
    left = conn.execute("SELECT line, count(*) FROM import_seen WHERE run = %s GROUP BY line",
                        (run,)).fetchall()
    assert left == [(8, 3)]
    conn.execute("DELETE FROM import_seen WHERE run = %s", (run,))


# --- the dump, with the keyring, reveals nothing ------------------------------------------


class TestNothingLeftToReveal:
    """The person's plaintexts and their keyed fingerprints are absent from a full dump,
    and nothing in the database decrypts their ciphertexts, whatever keyring key is used.
    Each check is first shown to find the data while the person still exists."""

    PLAINTEXTS = (OLD_EMAIL, EMAIL, OLD_NAME, NAME, "zoe.erasmus-quill", "Erasmus-Quill")

    def test_plaintexts_are_not_in_the_dump(self, erased: Erased) -> None:
        leaks = [
            (text, form)
            for text in self.PLAINTEXTS
            for form, needle in encodings(text).items()
            if needle in erased.dump_after
        ]
        assert leaks == []

    def test_blind_index_of_the_email_is_not_in_the_dump(self, erased: Erased,
                                                         keyring: Keyring) -> None:
        current = blind_digests(keyring, EMAIL)["blind index"].hex().encode()
        assert current in erased.dump_before  # the check would see it
        leaks = [
            (email, what, form)
            for email in (EMAIL, OLD_EMAIL)
            for what, digest in blind_digests(keyring, email).items()
            for form, needle in digest_forms(digest).items()
            if needle in erased.dump_after
        ]
        assert leaks == []

    def test_no_key_or_lookup_row_remains_in_the_dump(self, erased: Erased) -> None:
        pid = str(erased.person_id).encode()
        for table in ("person_keys", "email_lookup"):
            assert pid in copy_block(erased.dump_before, table)
            assert pid not in copy_block(erased.dump_after, table)
        assert copy_block(erased.dump_after, "people").count(pid) == 5  # versions remain

    def test_nothing_decrypts_with_the_keyring(self, erased: Erased, conn: Conn,
                                               keyring: Keyring) -> None:
        expected = {OLD_EMAIL.encode(), EMAIL.encode(), OLD_NAME.encode(), NAME.encode()}
        assert expected <= erased.recoverable_before  # the brute force does work
        assert len(ciphertexts_of(conn, erased.person_id)) >= 8
        assert conn.execute("SELECT count(*) FROM person_keys").fetchone()[0] >= 2  # type: ignore[index]
        assert erased.recoverable_after == set()
        assert recoverable(conn, keyring, erased.person_id) == set()
