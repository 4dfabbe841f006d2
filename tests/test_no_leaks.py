"""No plaintext email, name or password (nor a key) appears in the database, a log line,
an exception or a repr."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from peoplelog.accounts import Accounts, AccountSettings, Client, Message, token_digests
from peoplelog.fields import (
    BlindIndex,
    DataKey,
    KeyPurpose,
    Keyring,
    PasswordHasher,
    normalise_email,
)
from peoplelog.ledger import Database, Ledger, _read
from peoplelog.ledger._write import Change
from peoplelog.schema import PeoplelogError, VersionRef

Conn = psycopg.Connection[Any]

API_EMAIL = "lucinda.leakproof+api@example.org"
API_EMAIL_2 = "lucinda.newaddress@example.org"
API_NAME = "Lucinda Leakproof"
API_NAME_2 = "Lucinda Leakproof-Nouveau"
API_PASSWORD = "api-Passw0rd-Xq93"
CLI_EMAIL = "cornelius.clishaw@example.net"
CLI_NAME = "Cornelius Clishaw"
CLI_NAME_2 = "Cornélius Clishaw-Ærø"
CLI_PASSWORD = "cli-Passw0rd-Zr81"
DB_PASSWORD = "db-Passw0rd-Wv55"
CLIENT_IP = "198.51.100.231"
CLIENT_AGENT = "Quillfeather/7.3 (Leakless)"
CLIENT_LABEL = "Quillfeather laptop"
TOKEN_NAME = "Quillfeather deploy"

SECRETS = (API_EMAIL, API_EMAIL_2, API_NAME, API_NAME_2, API_PASSWORD, CLI_EMAIL, CLI_NAME,
           CLI_NAME_2, CLI_PASSWORD, CLIENT_IP, CLIENT_AGENT, CLIENT_LABEL, TOKEN_NAME)
# Distinctive fragments: a leak of part of a value counts too.
FRAGMENTS = ("lucinda", "leakproof", "newaddress", "Nouveau", "Xq93", "cornelius", "Cornélius",
             "clishaw", "Clishaw", "Ærø", "Zr81", "Quillfeather", "Leakless")


def needles(text: str) -> dict[str, bytes]:
    """``text`` as it could appear in bytes: UTF-8, hex (bytea), base64 at any alignment."""
    raw = text.encode()
    forms = {"utf-8": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        run = encoded[-(-8 * shift // 6):(8 * (shift + len(raw)) - 6) // 6 + 1]
        forms[f"base64+{shift}"] = run.encode()
        forms[f"base64url+{shift}"] = run.replace("+", "-").replace("/", "_").encode()
    return forms


def find_leaks(haystack: str | bytes, *, encoded: bool = False) -> list[str]:
    """Which secrets (or fragments of them) occur in ``haystack``."""
    data = haystack.encode("utf-8", "surrogateescape") if isinstance(haystack, str) else haystack
    folded = data.lower()
    leaks = [text for text in SECRETS + FRAGMENTS if text.lower().encode() in folded]
    if encoded:
        leaks += [f"{text} as {form}" for text in SECRETS
                  for form, needle in needles(text).items() if needle in data]
    return leaks


class Capture(logging.Handler):
    """Every log record, fully formatted (message, arguments, traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{self.format(record)} | args={record.args!r}")


@contextlib.contextmanager
def capture_logs() -> Iterator[Capture]:
    """Everything logged anywhere, at DEBUG, while the block runs."""
    root = logging.getLogger()
    handler = Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def pg_dump(url: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - its import warns
    exe = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run([str(exe), "--dbname", url], capture_output=True, env=env,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


# --- the people written through the API and the CLI ---------------------------------------


@dataclass
class Written:
    api: uuid.UUID
    cli: uuid.UUID
    logs: list[str]
    cli_stderr: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def written(ledger: Ledger, cli: Any) -> Written:
    debug = {"PEOPLELOG_LOG_LEVEL": "DEBUG"}
    with capture_logs() as logs:
        ref = ledger.create_person(email=API_EMAIL, name=API_NAME, password=API_PASSWORD,
                                   actor="signup-service")
        ledger.update_person(ref.person_id, name=API_NAME_2, expect_version=0)
        ledger.update_person(ref.person_id, email=API_EMAIL_2, verified=True)
        assert ledger.authenticate(API_EMAIL_2, API_PASSWORD) == ref.person_id
        assert ledger.authenticate(API_EMAIL_2, CLI_PASSWORD) is None
        stderr = []
        created = cli("person", "create", "--email", CLI_EMAIL, "--name", CLI_NAME,
                      "--password-stdin", "--json", stdin=CLI_PASSWORD + "\n", env=debug)
        assert created.code == 0, created.stderr
        stderr.append(created.stderr)
        cli_pid = created.json["person_id"]
        for args in (["person", "update", cli_pid, "--name", CLI_NAME_2, "--verified"],
                     ["person", "show", cli_pid]):
            result = cli(*args, "--json", env=debug)
            assert result.code == 0, result.stderr
            stderr.append(result.stderr)
        accounts = Accounts(ledger, AccountSettings(request_floor=timedelta(milliseconds=1)))
        session = accounts.login(API_EMAIL_2, API_PASSWORD, client=Client(
            label=CLIENT_LABEL, ip=CLIENT_IP, user_agent=CLIENT_AGENT))
        scope = accounts.check(session.token)
        pat = accounts.create_access_token(scope, TOKEN_NAME)
        accounts.request_password_reset(API_EMAIL_2)
        accounts.request_login_link(API_EMAIL_2)
        assert [s.user_agent for s in accounts.sessions(scope)] == [CLIENT_AGENT]
        for bad in (API_PASSWORD + "x", CLI_PASSWORD):
            with contextlib.suppress(PeoplelogError):
                accounts.login(API_EMAIL_2, bad, client=Client(ip=CLIENT_IP))
    assert ledger.get_person(cli_pid).name == CLI_NAME_2
    return Written(ref.person_id, uuid.UUID(cli_pid), logs.lines, stderr,
                   [session.token, pat.token])


# --- the database -------------------------------------------------------------------------


class TestDatabase:
    def test_dump_holds_none_of_the_plaintexts(self, written: Written, database_url: str,
                                               conn: Conn) -> None:
        dump = pg_dump(database_url)
        # The dump does hold the people, their ciphertexts in hex, and their actors.
        for pid in (written.api, written.cli):
            assert str(pid).encode() in dump
            blobs = conn.execute("SELECT name FROM people WHERE person_id = %s", (pid,))
            assert all(bytes(b[0]).hex().encode() in dump for b in blobs)
        assert b"signup-service" in dump
        assert find_leaks(dump, encoded=True) == []

    def test_dump_holds_no_token(self, written: Written, database_url: str) -> None:
        dump = pg_dump(database_url)
        assert b"account_sessions" in dump and b"account_outbox" in dump
        for token in written.tokens:
            body = base64.urlsafe_b64decode(token[5:] + "=")
            for needle in (token.encode(), token[5:].encode(), body, body.hex().encode()):
                assert needle not in dump
        assert b"plo1_" not in dump and b"pls1_" not in dump and b"plp1_" not in dump

    def test_dump_holds_no_password_hash_in_clear(self, written: Written, ledger: Ledger,
                                                  keyring: Keyring, database_url: str) -> None:
        phc = ledger.database.run(
            lambda conn: _read.read_password_hash(conn, keyring, written.api))
        assert phc is not None and phc.startswith("$argon2id$")
        dump = pg_dump(database_url)
        salt, digest = phc.split("$")[-2:]
        for needle in (phc, salt, digest):
            assert needle.encode() not in dump
            assert needle.encode().hex().encode() not in dump

    def test_dump_holds_no_key_material(self, written: Written, keyring: Keyring,
                                        database_url: str) -> None:
        dump = pg_dump(database_url)
        for purpose in KeyPurpose:
            secret = keyring.active(purpose).secret
            for needle in (secret.hex(), base64.b64encode(secret).decode().rstrip("="),
                           base64.urlsafe_b64encode(secret).decode().rstrip("=")):
                assert needle.encode() not in dump


# --- logs ---------------------------------------------------------------------------------


def failing_calls(ledger: Ledger, written: Written) -> list[Callable[[], object]]:
    """Calls that fail, each with secrets in its arguments."""
    fresh = f"fresh.{uuid.uuid4().hex[:8]}@example.org"
    return [
        lambda: ledger.create_person(email=API_EMAIL_2, name="Copy"),          # taken
        lambda: ledger.create_person(email=CLI_EMAIL.upper(), name=CLI_NAME),  # taken
        lambda: ledger.update_person(written.cli, email=API_EMAIL_2),           # taken
        lambda: ledger.create_person(email=API_EMAIL + " x", name=API_NAME),
        lambda: ledger.create_person(email=API_EMAIL.replace("@", "@@"), name=API_NAME),
        lambda: ledger.create_person(email=API_NAME + "@example.org", name=API_NAME),
        lambda: ledger.create_person(email="lucinda@leakproof", name=API_NAME),
        lambda: ledger.create_person(email="lucinda@leakproof-ærø.invalid", name=API_NAME),
        lambda: ledger.create_person(email="lucinda@xn--leakproof¡.org", name=API_NAME),
        lambda: ledger.create_person(email="lucinda\x00leakproof@example.org", name="N"),
        lambda: ledger.create_person(email=fresh, name=API_NAME + "\x00"),
        lambda: ledger.create_person(email=fresh, name=API_NAME * 20),
        lambda: ledger.create_person(email=fresh, name=API_NAME + "\x07"),
        lambda: ledger.create_person(email=fresh, name=API_NAME, password="Xq93"),
        lambda: ledger.create_person(email=fresh, name=API_NAME,
                                     password=API_PASSWORD + "\x00"),
        lambda: ledger.create_person(email=fresh, name=API_NAME,
                                     password=API_PASSWORD + "\ud800"),
        lambda: ledger.create_person(email=fresh, name=API_NAME, password_hash=API_PASSWORD),
        lambda: ledger.update_person(written.api, name=CLI_NAME, expect_version=0),
        lambda: ledger.update_person(written.api, name=API_NAME_2),  # no-op: not an error
        lambda: ledger.find_person(API_EMAIL),
        lambda: ledger.find_person(CLI_EMAIL + "@"),
        lambda: ledger.prepare_update(written.api, name=API_NAME, colour=API_PASSWORD),
    ]


class TestLogs:
    def test_writes_logged_nothing_secret(self, written: Written) -> None:
        assert find_leaks("\n".join(written.logs)) == []
        assert find_leaks("\n".join(written.cli_stderr)) == []

    def test_reads_and_failures_log_nothing_secret(
        self, caplog: pytest.LogCaptureFixture, ledger: Ledger, written: Written,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with capture_logs() as logs:
            assert ledger.get_person(written.api).email == API_EMAIL_2
            assert ledger.find_person(CLI_EMAIL) == written.cli
            ledger.history(written.api)
            assert ledger.authenticate(API_EMAIL, API_PASSWORD) is None  # old address
            for call in failing_calls(ledger, written):
                try:
                    call()
                except PeoplelogError as exc:  # as an application would log it
                    logging.getLogger("app").warning("write failed: %s (%r)", exc, exc)
        text = caplog.text + "\n".join(
            f"{r.getMessage()} {r.args!r}" for r in caplog.records) + "\n".join(logs.lines)
        assert "write failed: email is already registered" in text  # the capture works
        assert find_leaks(text) == []

    def test_cli_failures_log_nothing_secret(self, cli: Any, written: Written,
                                             conn: Conn) -> None:
        debug = {"PEOPLELOG_LOG_LEVEL": "DEBUG"}
        runs = [
            cli("person", "create", "--email", API_EMAIL_2, "--name", API_NAME, env=debug),
            cli("person", "create", "--email", CLI_EMAIL + " x", "--name", CLI_NAME, env=debug),
            cli("person", "create", "--email", "fresh.cli@example.org", "--name",
                CLI_NAME + "\x07", "--password-stdin", stdin=CLI_PASSWORD + "\n", env=debug),
            cli("person", "update", str(written.cli), "--email", API_EMAIL_2, "--json",
                env=debug),
        ]
        assert [r.code for r in runs] == [4, 2, 2, 4]
        for run in runs:
            assert run.stdout == ""
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr
            assert find_leaks(run.stderr) == [], run.stderr


# --- exceptions ---------------------------------------------------------------------------


def shown_chain(exc: BaseException) -> str:
    """What a traceback shows of an exception and its chain (minus the caller's source
    lines, which hold whatever the caller wrote)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += traceback.format_exception_only(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    return "".join(parts)


class TestExceptions:
    def test_messages_do_not_echo_secrets(self, ledger: Ledger, written: Written,
                                          conn: Conn) -> None:
        failures = 0
        for call in failing_calls(ledger, written):
            try:
                call()
            except PeoplelogError as exc:
                failures += 1
                leaks = find_leaks(f"{exc}\n{exc!r}\n{exc.args!r}\n{shown_chain(exc)}")
                assert leaks == [], (leaks, str(exc))
        assert failures == len(failing_calls(ledger, written)) - 1  # one no-op succeeded


# --- reprs --------------------------------------------------------------------------------


def assert_repr_clean(obj: object, *extra: bytes) -> None:
    for text in (repr(obj), str(obj)):
        assert find_leaks(text) == [], text
        for secret in extra:
            for needle in (repr(secret), secret.hex(),
                           base64.b64encode(secret).decode().rstrip("="),
                           base64.urlsafe_b64encode(secret).decode().rstrip("=")):
                assert needle not in text, text


class TestReprs:
    def test_ledger_keyring_and_keys(self, ledger: Ledger, keyring: Keyring,
                                     database_url: str) -> None:
        secrets = [keyring.active(purpose).secret for purpose in KeyPurpose]
        assert_repr_clean(keyring, *secrets)
        for purpose in KeyPurpose:
            assert_repr_clean(keyring.active(purpose), *secrets)
        assert_repr_clean(ledger, *secrets)
        assert_repr_clean(BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX)), *secrets)
        with_password = make_conninfo(database_url, password=DB_PASSWORD)
        with Ledger(Database(with_password, pool_size=1), keyring) as other:
            assert DB_PASSWORD not in repr(other)
            assert DB_PASSWORD not in other.database.where

    def test_data_key(self) -> None:
        key, secret = DataKey.generate(uuid.uuid4())
        assert_repr_clean(key, secret)

    def test_person_view_hides_what_it_holds(self, ledger: Ledger, written: Written) -> None:
        view = ledger.get_person(written.api)
        assert (view.email, view.name) == (API_EMAIL_2, API_NAME_2)  # asked for, so given
        assert_repr_clean(view)
        old = ledger.get_person(written.api, version=0)
        assert (old.email, old.name) == (API_EMAIL, API_NAME)
        assert_repr_clean(old)

    def test_records_refs_and_history(self, ledger: Ledger, written: Written) -> None:
        record = ledger.prepare_update(written.api, name=API_NAME + " Prepared",
                                       email="lucinda.prepared@example.org")
        assert_repr_clean(record)
        assert record.name is not None and record.email is not None
        assert_repr_clean(record, record.name, record.email)
        ref = ledger.update_person(written.api, name=API_NAME_2 + " Again")
        assert_repr_clean(ref)
        assert isinstance(ref, VersionRef)
        for entry in ledger.history(written.api):
            assert_repr_clean(entry)

    def test_change_and_normalised_email(self) -> None:
        email = normalise_email(API_EMAIL)
        assert email.display == API_EMAIL  # it holds the address...
        assert_repr_clean(email)            # ...but does not show it
        phc = PasswordHasher().hash(API_PASSWORD)
        change = Change(email=email, name=API_NAME, password_hash=phc, actor="ops",
                        reason="because")
        assert_repr_clean(change)
        assert phc not in repr(change) and phc.split("$")[-1] not in repr(change)

    def test_accounts_objects(self, ledger: Ledger, written: Written) -> None:
        accounts = Accounts(ledger, AccountSettings(request_floor=timedelta(milliseconds=1)))
        client = Client(label=CLIENT_LABEL, ip=CLIENT_IP, user_agent=CLIENT_AGENT)
        assert_repr_clean(client)
        issued = accounts.login(API_EMAIL_2, API_PASSWORD, client=client)
        assert issued.token not in repr(issued)
        assert_repr_clean(issued)
        scope = accounts.check(issued.token)
        assert_repr_clean(scope)
        for listed in accounts.sessions(scope):
            assert_repr_clean(listed)
        message = Message(to=API_EMAIL_2, subject=API_NAME, body=issued.token)
        assert_repr_clean(message)
        assert issued.token not in repr(message)
        digests = token_digests(issued.token)
        assert issued.token[5:12] not in repr(digests)
        assert_repr_clean(accounts)
