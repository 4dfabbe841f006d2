"""Bulk import of an existing users table: JSON lines or CSV, batched, resumable.

Each row becomes a person at version 0, or, with ``update``, a new version of the person
it already is (matched by external id, else by email). A batch is one transaction written
with COPY; a row that was already imported is recognised on a re-run (its email claim or
external id exists), so an interrupted import resumes without duplicates. Bad rows are
reported with their line numbers and do not stop the others; ``strict`` turns any bad row
into a failure of the whole import with nothing written.

Rows are told apart by their email (as the blind index sees it) and their external id: a
row that repeats an earlier row's email or external id, or that resolves to the same person
as an earlier row, is rejected as a duplicate, wherever the earlier row is in the file. The
keys of the rows handled so far are kept in a compact table (32 to 64 bytes per key), so
this holds across batches and gives the same verdicts when a file is re-run. Rows are matched
against the database as their batch finds it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from pydantic import BaseModel

from fields import (
    BlindIndex,
    KeyPurpose,
    Keyring,
    NormalisedEmail,
    PasswordHasher,
    check_password_policy,
    normalise_email,
)
from schema import Conflict, DecryptionFailed, InvalidInput, PeoplelogError

from . import _write
from ._inputs import check_actor, check_name, check_reason
from ._read import check_keyring
from ._store import Database
from ._time import from_micros, to_micros

__all__ = ["ImportSummary", "RowError", "import_people", "read_rows"]

Conn = psycopg.Connection[Any]
COLUMNS = frozenset({"email", "name", "password", "password_hash", "verified_at",
                     "external_id"})
REQUIRED = ("email", "name")
MAX_EXTERNAL_ID = 256
MAX_REPORTED_ERRORS = 1000
MAX_LINE = 1 << 20
"""A JSON line longer than this (bytes) is rejected unread: no real row comes near it."""
MAX_MICROS = 2**53 - 1
"""verified_at must fit an exact envelope integer (1970 to 2255)."""
BATCH_ATTEMPTS = 8
"""How often a batch is planned again when concurrent writers keep claiming its emails."""

_BOM = b"\xef\xbb\xbf"
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_RETRY_ERRORS = (pg_errors.UniqueViolation, pg_errors.SerializationFailure,
                 pg_errors.DeadlockDetected)


class RowError(BaseModel):
    """A row that was not imported: its line number and why (never its values)."""

    line: int
    reason: str


class ImportSummary(BaseModel):
    rows: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = []
    seconds: float = 0.0
    written: bool = True


@dataclass(slots=True)
class _Row:
    line: int
    email: NormalisedEmail
    name: str
    password: str | None
    password_hash: str | None
    verified_at: int | None
    external_id: str | None
    email_digest: bytes
    id_digest: bytes | None

    def __repr__(self) -> str:
        return f"_Row(line={self.line})"

    def identities(self) -> list[tuple[str, bytes]]:
        keys = [("email", self.email_digest)]
        if self.id_digest is not None:
            keys.append(("external id", self.id_digest))
        return keys


# --- reading ------------------------------------------------------------------------------


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, mapping)`` per data row, or ``(line, RowError)`` when it is unreadable.

    ``fmt`` is ``"jsonl"`` or ``"csv"``; by default the file name's suffix decides. A missing
    file, an unknown format or a bad CSV header raise ``InvalidInput`` at once (before the
    first row is asked for). ``line`` is the physical line a row starts on (1-based).
    """
    path = Path(path)
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput(f"unknown import format {fmt!r} (jsonl or csv)")
    with _text(_open(path)) as text:
        if fmt == "csv":
            _csv_header(csv.reader(text, strict=True))
    return _rows(path, fmt)


def _open(path: Path) -> io.BufferedReader:
    try:
        if path.is_dir():
            raise InvalidInput(f"import file {path} is a directory")
        return path.open("rb")
    except FileNotFoundError:
        raise InvalidInput(f"import file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"import file {path} cannot be read: {exc.strerror}") from None


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "csv":
        with _text(_open(path)) as text:
            yield from _read_csv(text)
    else:
        with _open(path) as handle:
            yield from _read_jsonl(handle)


def _read_jsonl(handle: io.BufferedReader) -> Iterator[tuple[int, Any]]:
    line = 0
    while True:
        raw = handle.readline(MAX_LINE + 1)
        if not raw:
            return
        line += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drop the rest of the over-long line
                raw = handle.readline(MAX_LINE)
            yield line, RowError(line=line, reason=f"the line is longer than {MAX_LINE} bytes")
            continue
        if line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield line, RowError(line=line, reason="not valid UTF-8")
            continue
        except RecursionError:
            yield line, RowError(line=line, reason="not a JSON object (nested too deeply)")
            continue
        except ValueError:
            yield line, RowError(line=line, reason="not a JSON document")
            continue
        if not isinstance(record, dict):
            yield line, RowError(line=line, reason="not a JSON object")
            continue
        yield line, record


def _text(handle: io.BufferedReader) -> io.TextIOWrapper:
    # Undecodable bytes become lone surrogates; the row that holds them is rejected.
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape",
                            newline="")


def _csv_header(reader: Any) -> list[str]:
    try:
        header: list[str] = []
        while not header:
            header = next(reader)
    except StopIteration:
        raise InvalidInput("the CSV file is empty (it needs a header row)") from None
    except csv.Error as exc:
        raise InvalidInput(f"the CSV header cannot be read: {exc}") from None
    header = [name.strip() for name in header]
    if any(name not in COLUMNS for name in header) or len(set(header)) != len(header):
        raise InvalidInput("the CSV header has unknown or repeated columns "
                           f"(allowed: {', '.join(sorted(COLUMNS))})")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise InvalidInput(f"the CSV header has no {' or '.join(missing)} column")
    return header


def _read_csv(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(text, strict=True)
    header = _csv_header(reader)
    while True:
        line = reader.line_num + 1  # where the next record starts
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, RowError(line=line, reason=f"bad CSV: {exc}")
            continue
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            yield line, RowError(line=line, reason=f"{len(fields)} fields; the header has "
                                                   f"{len(header)}")
            continue
        yield line, {k: (v if v != "" else None) for k, v in zip(header, fields, strict=True)}


# --- validating ---------------------------------------------------------------------------


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("verified_at must be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("verified_at is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise InvalidInput("verified_at needs a time zone (e.g. Z or +00:00)")
    try:
        micros = to_micros(moment)
    except OverflowError:
        micros = -1
    if not 0 <= micros <= MAX_MICROS:
        raise InvalidInput("verified_at is out of range (1970 to 2255)")
    return micros


def _external_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("external_id must be a non-empty string or integer")
    text: str = value.strip()
    if len(text) > MAX_EXTERNAL_ID:
        raise InvalidInput(f"external_id is longer than {MAX_EXTERNAL_ID} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidInput("external_id contains control characters")
    return text


def _unknown_fields(names: list[Any]) -> str:
    shown = sorted(n for n in names if isinstance(n, str) and _FIELD_NAME.fullmatch(n))
    hidden = len(names) - len(shown)
    text = ", ".join(shown[:10]) + (" and others" if len(shown) > 10 else "")
    if hidden:  # a key that does not look like a field name may be data: not echoed
        text = (text + " and " if text else "") + f"{hidden} more not shown"
    return f"unknown fields: {text} (allowed: {', '.join(sorted(COLUMNS))})"


def _validate(line: int, record: dict[str, Any], blind: BlindIndex) -> _Row | RowError:
    try:
        unknown = [name for name in record if name not in COLUMNS]
        if unknown:
            raise InvalidInput(_unknown_fields(unknown))
        for key in REQUIRED:
            if record.get(key) is None:
                raise InvalidInput(f"{key} is missing")
        for key, value in record.items():
            if isinstance(value, str) and not _is_utf8(value):
                raise InvalidInput(f"{key} is not valid UTF-8")
        email = normalise_email(record["email"])
        name = check_name(record["name"])
        password, phc = record.get("password"), record.get("password_hash")
        if password is not None and phc is not None:
            raise InvalidInput("give password or password_hash, not both")
        if password is not None:
            check_password_policy(password)
        if phc is not None and (not isinstance(phc, str) or not PasswordHasher.is_phc(phc)):
            raise InvalidInput("password_hash is not an argon2id PHC string")
        verified_at = _timestamp(record.get("verified_at"))
        external_id = _external_id(record.get("external_id"))
        return _Row(
            line=line, email=email, name=name, password=password, password_hash=phc,
            verified_at=verified_at, external_id=external_id,
            email_digest=blind.digest(email),
            id_digest=None if external_id is None else blind.external_id_digest(external_id),
        )
    except InvalidInput as exc:
        return RowError(line=line, reason=exc.message)


# --- rows seen in this run ----------------------------------------------------------------


class _Seen:
    """Keys (email digests, external id digests, person ids) of the rows handled so far in
    this run, each with its line, kept in the ``import_seen`` table rather than in memory:
    a run of any size holds one batch at a time."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.run = uuid.uuid4()
        database.run(lambda conn: conn.execute(
            "DELETE FROM import_seen WHERE created < now() - interval '1 day'"))

    def lookup(self, conn: Conn, keys: list[bytes]) -> dict[bytes, int]:
        if not keys:
            return {}
        return {bytes(k): int(line) for k, line in conn.execute(
            "SELECT key, line FROM import_seen WHERE run = %s AND key = ANY(%s)",
            (self.run, keys))}

    def add(self, conn: Conn, pairs: list[tuple[bytes, int]]) -> None:
        if pairs:
            with conn.cursor().copy("COPY import_seen (run, key, line) FROM STDIN") as copy:
                for key, line in dict(reversed(pairs)).items():
                    copy.write_row((self.run, key, min(line, 2**31 - 1)))

    def close(self) -> None:
        """Drop this run's keys; if that fails (database gone), they expire after a day."""
        with contextlib.suppress(PeoplelogError):
            self.database.run(lambda conn: conn.execute(
                "DELETE FROM import_seen WHERE run = %s", (self.run,)))


# --- writing ------------------------------------------------------------------------------


class _Retry(Exception):
    """A concurrent writer claimed an email or id between the plan and the write."""


class _StrictFailure(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("strict import failed")
        self.errors = errors


@dataclass
class _Plan:
    new: list[_Row] = field(default_factory=list)
    updates: list[tuple[_Row, uuid.UUID]] = field(default_factory=list)
    skipped: list[_Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    marks: list[tuple[int, list[bytes]]] = field(default_factory=list)
    """Per accepted row, the keys to remember once the batch is committed."""


def _plan(conn: Conn, batch: list[_Row], update: bool, seen: _Seen) -> _Plan:
    claims = dict(conn.execute(
        "SELECT blind_index, person_id FROM email_lookup WHERE blind_index = ANY(%s)",
        ([r.email_digest for r in batch],)).fetchall())
    id_digests = [r.id_digest for r in batch if r.id_digest is not None]
    ids = dict(conn.execute(
        "SELECT id_hash, person_id FROM external_ids WHERE id_hash = ANY(%s)",
        (id_digests,)).fetchall()) if id_digests else {}
    plan = _Plan()
    local: dict[bytes, int] = {}
    prior = seen.lookup(conn, [key for row in batch for _, key in row.identities()])

    def earlier(key: bytes) -> int | None:
        return local.get(key) or prior.get(key)

    for row in batch:
        duplicate = next(((what, line) for what, key in row.identities()
                          if (line := earlier(key)) is not None), None)
        if duplicate is not None:
            plan.errors.append(RowError(
                line=row.line, reason=f"duplicate: the same {duplicate[0]} as line "
                                      f"{duplicate[1]}"))
            continue
        by_email = claims.get(row.email_digest)
        by_id = None if row.id_digest is None else ids.get(row.id_digest)
        if by_id is not None and by_email is not None and by_id != by_email:
            plan.errors.append(RowError(line=row.line, reason="the email belongs to another "
                                                             "person than the external id"))
            continue
        target = by_id or by_email
        keys = [key for _, key in row.identities()]
        if target is not None:
            same = earlier(target.bytes)
            if same is not None:
                plan.errors.append(RowError(
                    line=row.line, reason=f"duplicate: the same person as line {same}"))
                continue
            keys.append(target.bytes)
        if target is None:
            plan.new.append(row)
        elif update:
            plan.updates.append((row, target))
        else:
            plan.skipped.append(row)
        for key in keys:
            local[key] = row.line
        plan.marks.append((row.line, keys))
    return plan


def _copy_new(conn: Conn, people: list[_write.NewPerson], rows: list[_Row],
              blind_key_id: str) -> None:
    with conn.cursor() as cur:
        with cur.copy("COPY person_keys (person_id, key_version, kek_id, wrapped_key)"
                      " FROM STDIN") as copy:
            for new in people:
                copy.write_row((new.record.person_id, 1, new.kek_id, new.wrapped_key))
        with cur.copy("COPY people (person_id, version, cid, prev, format, op, recorded_at,"
                      " actor, reason, email, name, password, verified_at) FROM STDIN") as copy:
            for new in people:
                r = new.record
                copy.write_row((r.person_id, 0, new.cid, None, r.format, r.op,
                                from_micros(r.recorded_at), r.actor, r.reason, r.email, r.name,
                                r.password, _moment(r.verified_at)))
        with cur.copy("COPY people_latest (person_id, version, cid, op, created_at,"
                      " recorded_at, email, name, password, verified_at) FROM STDIN") as copy:
            for new in people:
                r = new.record
                at = from_micros(r.recorded_at)
                copy.write_row((r.person_id, 0, new.cid, r.op, at, at, r.email, r.name,
                                r.password, _moment(r.verified_at)))
        with cur.copy("COPY email_lookup (blind_index, person_id, key_id, norm)"
                      " FROM STDIN") as copy:
            for new in people:
                copy.write_row((new.blind_index, new.record.person_id, new.blind_key_id, 1))
        with cur.copy("COPY external_ids (id_hash, person_id, key_id) FROM STDIN") as copy:
            for new, row in zip(people, rows, strict=True):
                if row.id_digest is not None:
                    copy.write_row((row.id_digest, new.record.person_id, blind_key_id))


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


_UNCHANGED = "unchanged"
"""Marks a plaintext password that equals the person's current one: not a change."""


class _Importer:
    def __init__(self, database: Database, keyring: Keyring, *, update: bool,
                 actor: str | None, reason: str | None, workers: int) -> None:
        self.database = database
        self.keyring = keyring
        self.blind = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX))
        self.hasher = PasswordHasher()
        self.update = update
        self.actor = check_actor(actor)
        self.reason = check_reason(reason)
        self.pool = ThreadPoolExecutor(max_workers=max(workers, 1))
        self.seen = _Seen(database)

    def prepare(self, rows: list[_Row], done: dict[int, _write.NewPerson]
                ) -> list[_write.NewPerson]:
        """Encrypt the new rows (hashing plaintext passwords across the worker threads);
        ``done`` keeps what an earlier attempt at the batch already prepared."""
        todo = [r for r in rows if r.line not in done]
        hashes = iter(self.pool.map(self.hasher.hash,
                                    [r.password for r in todo if r.password is not None]))
        for r in todo:
            phc = r.password_hash if r.password is None else next(hashes)
            done[r.line] = _write.prepare_new_person(
                self.keyring, email=r.email, name=r.name, password_hash=phc,
                verified_at=r.verified_at, actor=self.actor, reason=self.reason,
                blind_index=r.email_digest)
        return [done[r.line] for r in rows]

    def prepare_passwords(self, conn: Conn, updates: list[tuple[_Row, uuid.UUID]],
                          done: dict[tuple[int, uuid.UUID], str | None]) -> None:
        """For updates with a plaintext password: the PHC to store, or ``_UNCHANGED`` when
        it is the person's current password (checked and hashed across the workers, before
        the batch's transaction)."""
        todo = [(row, pid) for row, pid in updates
                if row.password is not None and (row.line, pid) not in done]
        currents = [_current_password(conn, self.keyring, pid) for _, pid in todo]

        def decide(item: tuple[str | None, str]) -> str:
            current, password = item
            if current is not None and self.hasher.verify(current, password):
                return _UNCHANGED
            return self.hasher.hash(password)

        results = self.pool.map(decide, [(current, row.password or "")
                                         for current, (row, _) in zip(currents, todo,
                                                                      strict=True)])
        for (row, pid), result in zip(todo, results, strict=True):
            done[(row.line, pid)] = result

    def apply_update(self, conn: Conn, row: _Row, person_id: uuid.UUID,
                     hashed: str | None) -> bool:
        phc = row.password_hash
        if row.password is not None:
            phc = None if hashed == _UNCHANGED else hashed
        elif phc is not None and phc == _current_password(conn, self.keyring, person_id):
            phc = None  # the same hash is not a change
        change = _write.Change(
            email=row.email, name=row.name, password_hash=phc,
            verified=None if row.verified_at is None else True,
            actor=self.actor, reason=self.reason)
        ref = _write.apply_change(conn, self.keyring, person_id, change, None)
        if row.id_digest is not None:
            conn.execute(
                "INSERT INTO external_ids (id_hash, person_id, key_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (id_hash) DO NOTHING",
                (row.id_digest, person_id, self.blind.key.id))
        return ref.written

    def write_batch(self, conn: Conn, batch: list[_Row], summary: ImportSummary,
                    strict: bool) -> None:
        """Plan and write one batch; planned again when a concurrent writer wins a claim."""
        prepared: dict[int, _write.NewPerson] = {}
        passwords: dict[tuple[int, uuid.UUID], str | None] = {}
        for _ in range(BATCH_ATTEMPTS):
            plan = _plan(conn, batch, self.update, self.seen)
            if strict and plan.errors:
                raise _StrictFailure(plan.errors)
            people = self.prepare(plan.new, prepared)
            self.prepare_passwords(conn, plan.updates, passwords)
            try:
                updated, unchanged, failed = self._commit(conn, plan, people, passwords,
                                                          strict=strict)
            except _Retry:
                continue
            self.seen.add(conn, [(key, line) for line, keys in plan.marks
                                 if line not in failed for key in keys])
            summary.imported += len(people)
            summary.updated += updated
            summary.skipped += len(plan.skipped) + unchanged
            _reject(summary, plan.errors)
            return
        raise Conflict(f"the batch starting at line {batch[0].line} could not be written: "
                       "other writers kept claiming its emails or external ids; run the "
                       "import again to resume")

    def _commit(self, conn: Conn, plan: _Plan, people: list[_write.NewPerson],
                passwords: dict[tuple[int, uuid.UUID], str | None], *,
                strict: bool) -> tuple[int, int, set[int]]:
        updated = unchanged = 0
        failed: set[int] = set()
        if not people and not plan.updates:
            return updated, unchanged, failed  # e.g. a resumed batch: nothing left to write
        try:
            with conn.transaction():  # a savepoint inside the strict import's transaction
                if people:
                    _copy_new(conn, people, plan.new, self.blind.key.id)
                for row, person_id in plan.updates:
                    try:
                        with conn.transaction():
                            if self.apply_update(conn, row, person_id,
                                                 passwords.get((row.line, person_id))):
                                updated += 1
                            else:
                                unchanged += 1
                    except (Conflict, InvalidInput, DecryptionFailed) as exc:
                        if strict:
                            raise _StrictFailure([RowError(line=row.line,
                                                           reason=exc.message)]) from None
                        plan.errors.append(RowError(line=row.line, reason=exc.message))
                        failed.add(row.line)
        except _RETRY_ERRORS:
            raise _Retry from None
        return updated, unchanged, failed


def _current_password(conn: Conn, keyring: Keyring, person_id: uuid.UUID) -> str | None:
    row = conn.execute("SELECT password FROM people_latest WHERE person_id = %s",
                       (person_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    try:
        data_key = _write.load_data_key(conn, keyring, person_id)
        return data_key.decrypt("password", bytes(row[0])).decode("ascii")
    except (Conflict, DecryptionFailed, UnicodeDecodeError):
        return None  # erased or unreadable: any password given is a change


def _reject(summary: ImportSummary, errors: Iterable[RowError]) -> None:
    for error in errors:
        summary.rejected += 1
        if len(summary.errors) < MAX_REPORTED_ERRORS:
            summary.errors.append(error)


def _batches(records: Iterable[tuple[int, Any]], blind: BlindIndex, size: int,
             summary: ImportSummary) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    for line, record in records:
        summary.rows += 1
        row = record if isinstance(record, RowError) else _validate(line, record, blind)
        if isinstance(row, RowError):
            _reject(summary, [row])
            continue
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_file(records: Iterable[tuple[int, Any]], blind: BlindIndex,
                summary: ImportSummary, seen: _Seen) -> None:
    """The strict import's first pass: every row valid, no email or external id twice."""
    for batch in _batches(records, blind, 1000, summary):
        def check(conn: Conn, batch: list[_Row] = batch) -> None:
            prior = seen.lookup(conn, [key for row in batch for _, key in row.identities()])
            marks: list[tuple[bytes, int]] = []
            for row in batch:
                duplicate = next(((what, line) for what, key in row.identities()
                                  if (line := prior.get(key)) is not None), None)
                if duplicate is not None:
                    _reject(summary, [RowError(line=row.line, reason=f"duplicate: the same "
                                               f"{duplicate[0]} as line {duplicate[1]}")])
                    continue
                for _, key in row.identities():
                    prior.setdefault(key, row.line)
                    marks.append((key, row.line))
            seen.add(conn, marks)

        seen.database.run(check)


def import_people(database: Database, keyring: Keyring, records: Callable[[], Iterable[
        tuple[int, Any]]], *, update: bool = False, strict: bool = False,
        batch_size: int = 1000, workers: int = 2, actor: str | None = "import",
        reason: str | None = None,
        progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import rows from ``records()`` (called once, twice with ``strict``: check, write).

    Without ``strict`` every batch commits on its own: a crash loses at most the batch in
    flight, and a re-run skips what is already there. With ``strict`` the whole file is
    checked first and written in one transaction, or not at all. ``progress`` is called
    with the number of rows read so far after each batch.
    """
    if isinstance(batch_size, bool) or not 1 <= batch_size <= 100_000:
        raise InvalidInput("batch size must be between 1 and 100000")
    started = time.monotonic()
    importer = _Importer(database, keyring, update=update, actor=actor, reason=reason,
                         workers=workers)
    summary = ImportSummary()
    try:
        database.run(lambda conn: check_keyring(conn, keyring))
        if strict:
            check = _Seen(database)
            try:
                _check_file(records(), importer.blind, summary, check)
            finally:
                check.close()
            if summary.rejected:
                summary.written = False
                return _finish(summary, started)
            summary = ImportSummary()
        _write_all(importer, records(), summary, batch_size=batch_size, strict=strict,
                   progress=progress)
    except _StrictFailure as failure:
        summary = ImportSummary(rows=summary.rows, written=False)
        _reject(summary, failure.errors)
    finally:
        importer.pool.shutdown(cancel_futures=True)
        importer.seen.close()
    return _finish(summary, started)


def _finish(summary: ImportSummary, started: float) -> ImportSummary:
    summary.errors.sort(key=lambda error: error.line)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _write_all(importer: _Importer, records: Iterable[tuple[int, Any]],
               summary: ImportSummary, *, batch_size: int, strict: bool,
               progress: Callable[[int], None] | None) -> None:
    batches = _batches(records, importer.blind, batch_size, summary)

    def each(conn: Conn) -> None:
        for batch in batches:
            importer.write_batch(conn, batch, summary, strict)
            if progress is not None:
                progress(summary.rows)

    if strict:
        importer.database.transaction(each, attempts=1)
        return
    for batch in batches:

        def write(conn: Conn, batch: list[_Row] = batch) -> None:
            importer.write_batch(conn, batch, summary, strict)

        importer.database.run(write)
        if progress is not None:
            progress(summary.rows)
