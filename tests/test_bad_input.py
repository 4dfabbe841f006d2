"""Bad input of every kind: a clear one-line error naming the problem, the documented
exception class or exit code, the input never echoed, and nothing written."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from peoplelog.fields import DataKey, Key, KeyPurpose, Keyring
from peoplelog.ledger import MAX_ACTOR, MAX_NAME, MAX_REASON, Database, Ledger, Settings
from peoplelog.schema import (
    ConfigurationError,
    DatabaseUnavailable,
    DecryptionFailed,
    EmailTaken,
    InvalidInput,
    KeyNotFound,
    KeyringError,
    PeoplelogError,
    PersonNotFound,
    VersionNotFound,
    VersionRef,
)

Conn = psycopg.Connection[Any]
TABLES = ("people", "people_latest", "email_lookup", "person_keys")
EXIT_USAGE, EXIT_NOT_FOUND = 2, 3


def counts(conn: Conn) -> dict[str, int]:
    result = {}
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        result[table] = row.fetchone()[0]  # type: ignore[index]
    return result


@contextlib.contextmanager
def nothing_written(conn: Conn) -> Iterator[None]:
    before = counts(conn)
    yield
    assert counts(conn) == before


def assert_clear(exc: BaseException, *words: str, secret: str | None = None) -> None:
    """One line, naming the problem (``words``), never echoing ``secret``."""
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, message
    for word in words:
        assert word in message, (word, message)
    if secret is not None:
        for text in {secret, secret.strip()}:
            if len(text) >= 3:
                assert text not in message and text not in repr(exc), message


_n = iter(range(1_000_000))


def fresh_email() -> str:
    return f"bad.input.{next(_n)}.{uuid.uuid4().hex[:6]}@example.org"


@pytest.fixture(scope="module")
def existing(ledger: Ledger) -> VersionRef:
    return ledger.create_person(email="existing.person@example.org", name="Existing Person")


# --- the CLI, with bytes arguments where needed -------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def one_error_line(self, *words: str) -> str:
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("peoplelog: error: "), lines[0]
        for word in words:
            assert word in lines[0], (word, lines[0])
        assert self.stdout == ""
        return lines[0]


def run_cli(env: dict[str, str], *args: str | bytes, stdin: bytes | None = None,
            extra_env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "peoplelog", *args], input=stdin, capture_output=True,
        env={**env, **(extra_env or {})}, timeout=120, check=False, cwd=ROOT,
    )
    return Run(done.returncode, done.stdout.decode("utf-8", "replace"),
               done.stderr.decode("utf-8", "replace"))


# --- emails -------------------------------------------------------------------------------

INVALID_EMAILS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("   \t ", "empty", id="blank"),
    pytest.param("no-at-sign.example.org", "@-sign", id="no-at"),
    pytest.param("secretlocal@", "after the @-sign", id="no-domain"),
    pytest.param("@secretdomain.org", "before the @-sign", id="no-local"),
    pytest.param("two@@secretdomain.org", "invalid characters", id="two-ats"),
    pytest.param("has space@secretdomain.org", "invalid characters", id="space"),
    pytest.param("dots@secret..org", "two periods", id="double-dot"),
    pytest.param(".leading@secretdomain.org", "period", id="leading-dot"),
    pytest.param("user@localhost", "period", id="no-tld"),
    pytest.param("user@secretdomain.invalid", "special-use", id="reserved-tld"),
    pytest.param("user@[192.0.2.1]", "bracketed", id="ip-literal"),
    pytest.param('"quoted"@secretdomain.org', "Quoting", id="quoted"),
    pytest.param("user@-secretdomain.org", "hyphen", id="hyphen"),
    pytest.param("line\nbreak@secretdomain.org", "control", id="newline"),
    pytest.param("rtl\u202eoverride@secretdomain.org", "control", id="bidi"),
    pytest.param("zero\u200bwidth@secretdomain.org", "formatting", id="zero-width"),
    pytest.param("x" * 330 + "@secretdomain.org", "too long", id="too-long"),
    pytest.param("y" * 240 + "@secretdomain.org", "too long", id="over-254"),
]


class TestEmail:
    @pytest.mark.parametrize(("email", "problem"), INVALID_EMAILS)
    def test_invalid_email_on_create(self, ledger: Ledger, conn: Conn, email: str,
                                     problem: str) -> None:
        with nothing_written(conn), pytest.raises(InvalidInput) as info:
            ledger.create_person(email=email, name="Someone")
        assert_clear(info.value, "email", problem)
        for part in ("secretlocal", "secretdomain", "line\nbreak", "x" * 20, "y" * 20):
            assert part not in str(info.value)

    @pytest.mark.parametrize(("email", "problem"), INVALID_EMAILS[:8])
    def test_invalid_email_on_update_and_find(self, ledger: Ledger, conn: Conn,
                                              existing: VersionRef, email: str,
                                              problem: str) -> None:
        with nothing_written(conn):
            with pytest.raises(InvalidInput) as info:
                ledger.update_person(existing.person_id, email=email)
            assert_clear(info.value, "email", problem)
            with pytest.raises(InvalidInput):
                ledger.find_person(email)

    @pytest.mark.parametrize("invisible", [
        "\u034f", "\ufe0f", "\u3164", "\u2800", "\u200b", "\u00ad", "\u2060", "\u115f",
        "\uffa0", "\u180e", "\U000e0041", "\U000e0100", "\u00a0", "\u3000", "\u17b4"])
    def test_a_local_part_that_would_look_like_another_is_refused(
            self, ledger: Ledger, conn: Conn, invisible: str) -> None:
        """Default-ignorable and blank characters draw as nothing: ``ab`` and ``a<U+034F>b``
        would be two accounts that look the same."""
        emails = [f"a{invisible}b@example.org", f"ab{invisible}@example.org"]
        if not invisible.isspace():  # leading white space is trimmed: the same address
            emails.append(f"{invisible}ab@example.org")
        for email in emails:
            with nothing_written(conn), pytest.raises(InvalidInput) as info:
                ledger.create_person(email=email, name="Look Alike")
            assert_clear(info.value, "email", "invisible")

    def test_email_taken_names_no_one(self, ledger: Ledger, conn: Conn,
                                      existing: VersionRef) -> None:
        with nothing_written(conn), pytest.raises(EmailTaken) as info:
            ledger.create_person(email="Existing.Person@EXAMPLE.org", name="Copy")
        assert_clear(info.value, "already registered", secret="existing.person")
        assert str(existing.person_id) not in str(info.value)


# --- names, actors, reasons ---------------------------------------------------------------


class TestTextFields:
    @pytest.mark.parametrize(
        ("name", "problem"),
        [
            ("", "empty"),
            ("  \t  ", "empty"),
            ("n" * (MAX_NAME + 1), f"at most {MAX_NAME}"),
            (" " + "n" * (MAX_NAME + 1) + " ", "too long"),
            ("bell\x07name", "control"),
            ("two\nlines", "control"),
            ("esc\x1b[31mred", "control"),
        ],
        ids=["empty", "blank", "too-long", "too-long-padded", "bell", "newline", "escape"],
    )
    def test_invalid_name(self, ledger: Ledger, conn: Conn, existing: VersionRef, name: str,
                          problem: str) -> None:
        with nothing_written(conn):
            with pytest.raises(InvalidInput) as info:
                ledger.create_person(email=fresh_email(), name=name)
            assert_clear(info.value, "name", problem, secret=name)
            with pytest.raises(InvalidInput):
                ledger.update_person(existing.person_id, name=name)

    def test_name_limit_is_inclusive_and_counts_after_trimming(self, ledger: Ledger) -> None:
        longest = "ň" * MAX_NAME
        ref = ledger.create_person(email=fresh_email(), name=f"  {longest}  ")
        assert ledger.get_person(ref.person_id).name == longest

    @pytest.mark.parametrize(
        ("field", "value", "problem"),
        [
            ("actor", "a" * (MAX_ACTOR + 1), "too long"),
            ("actor", "", "empty"),
            ("actor", "multi\nline", "control"),
            ("reason", "r" * (MAX_REASON + 1), "too long"),
            ("reason", "  ", "empty"),
            ("reason", "bell\x07", "control"),
        ],
    )
    def test_invalid_actor_and_reason(self, ledger: Ledger, conn: Conn, existing: VersionRef,
                                      field: str, value: str, problem: str) -> None:
        with nothing_written(conn):
            with pytest.raises(InvalidInput) as info:
                ledger.create_person(email=fresh_email(), name="Someone", **{field: value})
            assert_clear(info.value, field, problem)
            with pytest.raises(InvalidInput):
                ledger.update_person(existing.person_id, name="Changed", **{field: value})
            with pytest.raises(InvalidInput):
                ledger.erase_person(existing.person_id, **{field: value})
        assert not ledger.get_person(existing.person_id).erased

    def test_reason_may_span_lines(self, ledger: Ledger) -> None:
        ref = ledger.create_person(email=fresh_email(), name="Multi", reason="line 1\nline 2")
        assert ledger.history(ref.person_id)[0].reason == "line 1\nline 2"


# --- NUL bytes and invalid UTF-8 ----------------------------------------------------------

FIELDS_TO_SPOIL = ["email", "name", "actor", "reason", "password"]


def create_args(field: str, value: str) -> dict[str, Any]:
    args: dict[str, Any] = {"email": fresh_email(), "name": "Valid Name"}
    args[field] = value
    return args


class TestNulAndUtf8:
    @pytest.mark.parametrize("field", FIELDS_TO_SPOIL)
    def test_nul_byte(self, ledger: Ledger, conn: Conn, field: str) -> None:
        value = "nul\x00secretvalue@example.org" if field == "email" else "nul\x00secretvalue"
        with nothing_written(conn), pytest.raises(InvalidInput) as info:
            ledger.create_person(**create_args(field, value))
        assert_clear(info.value, field, "NUL", secret=value)
        assert "secretvalue" not in str(info.value)

    @pytest.mark.parametrize("field", FIELDS_TO_SPOIL)
    def test_lone_surrogate(self, ledger: Ledger, conn: Conn, field: str) -> None:
        value = "bad\udcffsecretvalue" + ("@example.org" if field == "email" else "")
        with nothing_written(conn), pytest.raises(InvalidInput) as info:
            ledger.create_person(**create_args(field, value))
        assert field in str(info.value)
        assert "secretvalue" not in str(info.value)
        assert "valid UTF-8" in str(info.value) or "unsafe characters" in str(info.value)

    def test_bad_password_on_update(self, ledger: Ledger, conn: Conn,
                                    existing: VersionRef) -> None:
        with nothing_written(conn):
            for password in ("qz7!x", "pass\x00wordword", "pass\ud800wordword", "p" * 1025):
                with pytest.raises(InvalidInput) as info:
                    ledger.update_person(existing.person_id, password=password)
                assert_clear(info.value, "password", secret=password)

    def test_authenticate_with_unencodable_password_is_a_plain_no(
        self, ledger: Ledger, existing: VersionRef
    ) -> None:
        assert ledger.authenticate("existing.person@example.org", "bad\ud800password") is None
        assert ledger.authenticate("existing.person@example.org", "nul\x00password") is None


class TestCliEncoding:
    @pytest.mark.parametrize(
        ("argv", "word"),
        [
            pytest.param(["--email", b"bad\xff\xfe@example.org", "--name", "N"], "email",
                         id="email"),
            pytest.param(["--email", "utf8.name@example.org", "--name", b"Bad \xc3\x28"],
                         "name", id="name"),
            pytest.param(["--email", "utf8.actor@example.org", "--name", "N", "--actor",
                          b"\xed\xa0\x80"], "actor", id="actor"),
        ],
    )
    def test_invalid_utf8_argument(self, cli_env: dict[str, str], conn: Conn,
                                   argv: list[str | bytes], word: str) -> None:
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", *argv)
        assert run.code == EXIT_USAGE
        run.one_error_line(word)

    @pytest.mark.parametrize(
        ("stdin", "problem"),
        [
            (b"bad\xff\xfepassword\n", "not valid UTF-8"),
            (b"nul\x00password\n", "NUL"),
            (b"\n", "no password"),
            (b"", "no password"),
        ],
        ids=["invalid-utf8", "nul", "empty-line", "nothing"],
    )
    def test_bad_password_on_stdin(self, cli_env: dict[str, str], conn: Conn, stdin: bytes,
                                   problem: str) -> None:
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", "--email", fresh_email(), "--name",
                          "Piped", "--password-stdin", stdin=stdin)
        assert run.code == EXIT_USAGE
        run.one_error_line("password", problem)

    def test_json_errors_go_to_stderr_as_json(self, cli_env: dict[str, str], conn: Conn) -> None:
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", "--email", "not-an-email", "--name",
                          "N", "--json")
        assert run.code == EXIT_USAGE
        assert run.stdout == ""
        [line] = run.stderr.strip().splitlines()
        error = json.loads(line)
        assert error["error"] == "invalid_input"
        assert "email" in error["message"] and "not-an-email" not in error["message"]


# --- persons that do not exist, ids that are not ids --------------------------------------


class TestUnknownPerson:
    def test_api(self, ledger: Ledger, conn: Conn, existing: VersionRef) -> None:
        nobody = uuid.uuid4()
        with nothing_written(conn):
            for call in (
                lambda: ledger.get_person(nobody),
                lambda: ledger.history(nobody),
                lambda: ledger.update_person(nobody, name="X"),
                lambda: ledger.update_person(nobody, name="X", expect_version=0),
                lambda: ledger.prepare_update(nobody, name="X"),
                lambda: ledger.erase_person(nobody),
            ):
                with pytest.raises(PersonNotFound) as info:
                    call()
                assert_clear(info.value, str(nobody), "not found")
            with pytest.raises(VersionNotFound) as vinfo:
                ledger.get_person(existing.person_id, version=5)
            assert_clear(vinfo.value, "no version 5")
            with pytest.raises(PersonNotFound):
                ledger.find_person("nobody.at.all@example.org")

    @pytest.mark.parametrize("command", [["show"], ["history"], ["erase"],
                                         ["update", "--name", "X"]])
    def test_cli_exit_3(self, cli_env: dict[str, str], conn: Conn,
                        command: list[str]) -> None:
        nobody = str(uuid.uuid4())
        with nothing_written(conn):
            run = run_cli(cli_env, "person", command[0], nobody, *command[1:])
        assert run.code == EXIT_NOT_FOUND
        run.one_error_line(nobody, "not found")

    @pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234", "x" * 100,
                                     "0" * 31, "\x00", "gggggggg-gggg-gggg-gggg-gggggggggggg"])
    def test_malformed_person_id(self, ledger: Ledger, conn: Conn, bad: str) -> None:
        with nothing_written(conn):
            for call in (
                lambda: ledger.get_person(bad),
                lambda: ledger.history(bad),
                lambda: ledger.update_person(bad, name="X"),
                lambda: ledger.erase_person(bad),
            ):
                with pytest.raises(InvalidInput) as info:
                    call()
                assert_clear(info.value, "person id")

    def test_malformed_version(self, ledger: Ledger, existing: VersionRef) -> None:
        for version in (-1, 2**31, True, "1"):
            with pytest.raises(InvalidInput) as info:
                ledger.get_person(existing.person_id, version=version)  # type: ignore[arg-type]
            assert_clear(info.value, "version")
            with pytest.raises(InvalidInput):
                ledger.update_person(existing.person_id, name="V",
                                     expect_version=version)  # type: ignore[arg-type]

    def test_cli_malformed_id_and_version(self, cli_env: dict[str, str],
                                          existing: VersionRef) -> None:
        run = run_cli(cli_env, "person", "show", "not-a-uuid")
        assert run.code == EXIT_USAGE
        run.one_error_line("person id")
        run = run_cli(cli_env, "person", "show", str(existing.person_id), "--version", "-1")
        assert run.code == EXIT_USAGE
        run.one_error_line("version")


# --- the keyring --------------------------------------------------------------------------


def other_keyring(*, same_ids: bool) -> Keyring:
    if same_ids:
        return Keyring.generate()  # same key ids ("kek-1", ...), different secrets
    keys = {
        "kek-other": Key("kek-other", KeyPurpose.KEK, secrets.token_bytes(32), "now"),
        "bi-other": Key("bi-other", KeyPurpose.BLIND_INDEX, secrets.token_bytes(32), "now"),
    }
    return Keyring(keys, {KeyPurpose.KEK: "kek-other", KeyPurpose.BLIND_INDEX: "bi-other"})


def write_keyring(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


class TestKeyring:
    def test_missing(self, tmp_path: Path, cli_env: dict[str, str], conn: Conn) -> None:
        path = tmp_path / "absent" / "keyring.json"
        with pytest.raises(KeyringError) as info:
            Keyring.load(path)
        assert_clear(info.value, str(path), "does not exist")
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", "--email", fresh_email(), "--name", "K",
                          extra_env={"PEOPLELOG_KEYRING": str(path)})
        assert run.code == EXIT_USAGE
        run.one_error_line(str(path), "does not exist")
        assert not path.exists()  # only `init` creates a keyring

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("{not json", "malformed"),
            ("", "malformed"),
            ('{"format": "peoplelog-keyring/1", "active": {}, "keys": []}', "no active"),
            ('{"format": "other/9", "active": {}, "keys": []}', "format"),
            ("[1, 2, 3]", "malformed"),
        ],
        ids=["syntax", "empty", "no-keys", "format", "not-an-object"],
    )
    def test_corrupt(self, tmp_path: Path, cli_env: dict[str, str], conn: Conn, text: str,
                     problem: str) -> None:
        path = write_keyring(tmp_path / "keyring.json", text)
        with pytest.raises(KeyringError) as info:
            Keyring.load(path)
        assert_clear(info.value, str(path), problem)
        with pytest.raises(KeyringError):
            Settings.from_environment({"PEOPLELOG_HOME": str(tmp_path),
                                       "PEOPLELOG_KEYRING_JSON": text or " "}).keyring()

    def test_corrupt_via_cli(self, tmp_path: Path, cli_env: dict[str, str],
                             conn: Conn) -> None:
        path = write_keyring(tmp_path / "keyring.json", '{"format": ')
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", "--email", fresh_email(), "--name", "K",
                          extra_env={"PEOPLELOG_KEYRING": str(path)})
        assert run.code == EXIT_USAGE
        run.one_error_line(str(path), "malformed")

    def test_bad_secret_is_not_echoed(self, keyring: Keyring) -> None:
        document = json.loads(keyring.to_json())
        leaked = document["keys"][0]["secret"]
        document["keys"][0]["secret"] = leaked[:-4]  # 29 bytes: the wrong length
        with pytest.raises(KeyringError) as info:
            Keyring.from_json(json.dumps(document), "test")
        assert_clear(info.value, "malformed", "32 bytes", secret=leaked[:-4])

    def test_group_readable_file_is_refused(self, tmp_path: Path, keyring: Keyring,
                                            cli_env: dict[str, str], conn: Conn) -> None:
        path = write_keyring(tmp_path / "keyring.json", keyring.to_json(), mode=0o644)
        with pytest.raises(KeyringError) as info:
            Keyring.load(path)
        assert_clear(info.value, str(path), "0644", "chmod 600")
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "create", "--email", fresh_email(), "--name", "K",
                          extra_env={"PEOPLELOG_KEYRING": str(path)})
        assert run.code == EXIT_USAGE
        run.one_error_line("0644")
        path.chmod(0o600)
        assert Keyring.load(path).to_json() == keyring.to_json()

    def test_init_never_overwrites(self, tmp_path: Path, keyring: Keyring) -> None:
        path = write_keyring(tmp_path / "keyring.json", keyring.to_json())
        with pytest.raises(KeyringError, match="refusing to overwrite"):
            Keyring.generate().save(path)
        assert Keyring.load(path).to_json() == keyring.to_json()

    def test_wrong_key_with_the_same_id(self, ledger: Ledger, database_url: str, conn: Conn,
                                        existing: VersionRef) -> None:
        """A keyring whose key ids match but whose secrets differ is refused before any
        read or write: otherwise a create would write a second, unlinkable blind index and
        bypass one-email-per-person."""
        with Ledger(Database(database_url, pool_size=1),
                    other_keyring(same_ids=True)) as wrong, nothing_written(conn):
            with pytest.raises(KeyringError) as info:
                wrong.get_person(existing.person_id)
            assert_clear(info.value, "does not match this database")
            assert "'kek-1'" in str(info.value) or "'blind-index-1'" in str(info.value)
            with pytest.raises(KeyringError):
                wrong.update_person(existing.person_id, name="Overwritten")
            with pytest.raises(KeyringError):
                wrong.create_person(email="existing@example.org", name="Second Claim")
        assert ledger.get_person(existing.person_id).name == "Existing Person"

    def test_wrong_kek_fails_to_unwrap_precisely(self, keyring: Keyring) -> None:
        person_id = uuid.uuid4()
        _, secret = DataKey.generate(person_id)
        wrapped = DataKey.wrap(person_id, 1, secret, keyring.active(KeyPurpose.KEK))
        wrong_kek = other_keyring(same_ids=True).active(KeyPurpose.KEK)
        with pytest.raises(DecryptionFailed) as info:
            DataKey.unwrap(person_id, 1, wrapped, wrong_kek)
        assert_clear(info.value, "'kek-1'", str(person_id))

    def test_missing_key_id(self, database_url: str, conn: Conn,
                            existing: VersionRef) -> None:
        with Ledger(Database(database_url, pool_size=1),
                    other_keyring(same_ids=False)) as wrong, nothing_written(conn):
            with pytest.raises(KeyNotFound) as info:
                wrong.get_person(existing.person_id)
            assert_clear(info.value, "'blind-index-1'", "not in the keyring")
            with pytest.raises(KeyNotFound):
                wrong.update_person(existing.person_id, name="Overwritten")

    def test_wrong_key_via_cli(self, tmp_path: Path, cli_env: dict[str, str], conn: Conn,
                               existing: VersionRef) -> None:
        path = tmp_path / "other.json"
        other_keyring(same_ids=True).save(path)
        with nothing_written(conn):
            run = run_cli(cli_env, "person", "update", str(existing.person_id), "--name",
                          "Wrong", extra_env={"PEOPLELOG_KEYRING": str(path)})
        assert run.code == EXIT_USAGE
        run.one_error_line("'blind-index-1'", "does not match this database")

    @pytest.mark.parametrize("where", ["format", "active", "duplicate"])
    def test_values_of_the_document_are_never_echoed(self, where: str) -> None:
        value = "sk_live_" + secrets.token_hex(8)
        document = json.loads(Keyring.generate().to_json())
        if where == "format":
            document["format"] = value
        elif where == "active":
            document["active"]["kek"] = value
        else:
            document["keys"][0]["id"] = document["keys"][1]["id"] = value
        with pytest.raises(KeyringError) as info:
            Keyring.from_json(json.dumps(document), "test.json")
        assert value not in str(info.value)
        assert "test.json" in str(info.value)

    def test_active_key_must_exist_and_fit_its_purpose(self) -> None:
        key = Key("only", KeyPurpose.KEK, secrets.token_bytes(32), "now")
        with pytest.raises(KeyNotFound, match="active blind-index key is not in") as missing:
            Keyring({"only": key}, {KeyPurpose.KEK: "only", KeyPurpose.BLIND_INDEX: "missing"})
        assert "missing" not in str(missing.value)  # a value of the document: never echoed
        with pytest.raises(KeyringError, match="active for blind-index is a kek key") as wrong:
            Keyring({"only": key}, {KeyPurpose.KEK: "only", KeyPurpose.BLIND_INDEX: "only"})
        assert "only" not in str(wrong.value)


# --- the database cannot be reached -------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


class TestUnreachableDatabase:
    def test_api(self, unreachable_url: str, keyring: Keyring) -> None:
        port = unreachable_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
        for pool_size in (1, 4):
            with pytest.raises(DatabaseUnavailable) as info:
                Database(unreachable_url, pool_size=pool_size)
            assert_clear(info.value, "cannot connect", f"127.0.0.1:{port}")
        with pytest.raises(DatabaseUnavailable):
            Ledger.open(unreachable_url, keyring)

    def test_cli(self, unreachable_url: str, cli_env: dict[str, str], conn: Conn) -> None:
        with nothing_written(conn):
            for args in (["person", "create", "--email", fresh_email(), "--name", "Offline"],
                         ["verify"], ["init"]):
                run = run_cli(cli_env, *args,
                              extra_env={"PEOPLELOG_DATABASE_URL": unreachable_url})
                assert run.code == EXIT_USAGE, (args, run)
                run.one_error_line("PostgreSQL", "127.0.0.1")

    def test_malformed_url(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            Database("postgresql://[unclosed")
        assert_clear(info.value, "invalid database URL")

    def test_unparseable_url_does_not_echo_its_password(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            Database("host=localhost password=s3cr3t-pw port=notaport =broken")
        assert "s3cr3t-pw" not in str(info.value)
        assert "s3cr3t-pw" not in repr(info.value)


# --- open-ended input ---------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=80)
PART = st.one_of(
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}", fullmatch=True),
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
)
TLD = st.sampled_from(["org", "com", "de", "xn--p1ai", "ORG", "", "x"])
HYPOTHESIS = settings(max_examples=120, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_outcome(outcome: VersionRef | PeoplelogError, *inputs: str) -> None:
    """Success, or InvalidInput/EmailTaken with a one-line message echoing no input."""
    event(type(outcome).__name__)
    if isinstance(outcome, VersionRef):
        assert outcome.version == 0
        return
    assert isinstance(outcome, (InvalidInput, EmailTaken)), repr(outcome)
    message = str(outcome)
    assert "\n" not in message
    for raw in inputs:
        for text in (raw, raw.strip()):
            # (an input that spells the redaction marker is not a leak)
            if len(text) >= 8 and "redact" not in text.lower():
                assert text.casefold() not in message.casefold(), message


def attempt(ledger: Ledger, **kwargs: str) -> VersionRef | PeoplelogError:
    try:
        return ledger.create_person(**kwargs)
    except PeoplelogError as exc:
        return exc


class TestOpenEnded:
    @HYPOTHESIS
    @given(email=ANY_TEXT)
    def test_any_text_as_email(self, ledger: Ledger, email: str) -> None:
        check_outcome(attempt(ledger, email=email, name="Fuzzed Email"), email)

    @HYPOTHESIS
    @given(local=PART, domain=PART, tld=TLD)
    def test_any_email_shaped_text(self, ledger: Ledger, local: str, domain: str,
                                   tld: str) -> None:
        email = f"{local}@{domain}.{tld}"
        check_outcome(attempt(ledger, email=email, name="Fuzzed Email"), email, local, domain)

    @HYPOTHESIS
    @given(name=ANY_TEXT)
    def test_any_text_as_name(self, ledger: Ledger, name: str) -> None:
        outcome = attempt(ledger, email=fresh_email(), name=name)
        check_outcome(outcome, name)
        if isinstance(outcome, VersionRef):
            stored = ledger.get_person(outcome.person_id).name
            assert stored is not None and stored.strip() == stored and stored

    @HYPOTHESIS
    @given(actor=ANY_TEXT, reason=ANY_TEXT)
    def test_any_text_as_actor_and_reason(self, ledger: Ledger, actor: str,
                                          reason: str) -> None:
        check_outcome(attempt(ledger, email=fresh_email(), name="Fuzzed", actor=actor,
                              reason=reason), actor, reason)

    def test_rejected_fuzz_wrote_nothing_partial(self, conn: Conn) -> None:
        # Whatever the fuzzing above accepted or refused, every person is whole.
        partial = conn.execute(
            """
            SELECT l.person_id FROM people_latest l
            LEFT JOIN person_keys k USING (person_id)
            LEFT JOIN email_lookup e USING (person_id)
            WHERE l.erased_at IS NULL AND (k.person_id IS NULL OR e.person_id IS NULL)
            UNION ALL
            SELECT p.person_id FROM people p LEFT JOIN people_latest l USING (person_id)
            WHERE l.person_id IS NULL
            """
        ).fetchall()
        assert partial == []
