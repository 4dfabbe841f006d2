"""Bulk import of an existing users table: JSON lines or CSV, batched, resumable.

Each row becomes a person at version 0, or, with ``update``, a new version of the person
it already is (matched by external id, else by email). A batch is one transaction written
with COPY; a row that was already imported is recognised on a re-run (its email claim or
external id exists), so an interrupted import resumes without duplicates. Bad rows are
reported with their line numbers and do not stop the others; ``strict`` turns any bad row
into a failure of the whole import with nothing written.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from schema import Conflict, InvalidInput, VersionConflict

from . import _write
from ._inputs import check_actor, check_name, check_reason
from ._store import Database
from ._time import from_micros, to_micros

__all__ = ["ImportSummary", "RowError", "import_people", "read_rows"]

Conn = psycopg.Connection[Any]
COLUMNS = frozenset({"email", "name", "password", "password_hash", "verified_at",
                     "external_id"})
MAX_EXTERNAL_ID = 256
MAX_REPORTED_ERRORS = 1000


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


# --- reading ------------------------------------------------------------------------------


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, mapping)`` per data row, or ``(line, RowError)`` when it is unreadable.

    ``fmt`` is ``"jsonl"`` or ``"csv"``; by default the file name's suffix decides.
    """
    path = Path(path)
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput(f"unknown import format {fmt!r} (jsonl or csv)")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InvalidInput(f"import file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"import file {path} cannot be read: {exc.strerror}") from None
    with handle:
        yield from (_read_csv(handle) if fmt == "csv" else _read_jsonl(handle))


def _read_jsonl(handle: io.BufferedReader) -> Iterator[tuple[int, Any]]:
    for line, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield line, RowError(line=line, reason="not valid UTF-8")
            continue
        except ValueError:
            yield line, RowError(line=line, reason="not a JSON document")
            continue
        if not isinstance(record, dict):
            yield line, RowError(line=line, reason="not a JSON object")
            continue
        yield line, record


def _read_csv(handle: io.BufferedReader) -> Iterator[tuple[int, Any]]:
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape",
                            newline="")
    reader = csv.DictReader(text, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InvalidInput(f"the CSV header cannot be read: {exc}") from None
    if not header:
        raise InvalidInput("the CSV file is empty (it needs a header row)")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise InvalidInput("the CSV header has unknown or repeated columns "
                           f"(allowed: {', '.join(sorted(COLUMNS))})")
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowError(line=reader.line_num, reason=f"bad CSV: {exc}")
            continue
        line = reader.line_num
        if None in record:
            yield line, RowError(line=line, reason="more fields than the header")
            continue
        if any(isinstance(v, str) and _has_surrogates(v) for v in record.values()):
            yield line, RowError(line=line, reason="not valid UTF-8")
            continue
        yield line, {k: (v if v != "" else None) for k, v in record.items()}


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# --- validating ---------------------------------------------------------------------------


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
    return to_micros(moment)


def _external_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("external_id must be a non-empty string or integer")
    if len(value) > MAX_EXTERNAL_ID or any(ord(ch) < 32 for ch in value):
        raise InvalidInput(f"external_id is longer than {MAX_EXTERNAL_ID} characters or "
                           "contains control characters")
    return value.strip()


def _validate(line: int, record: dict[str, Any], blind: BlindIndex) -> _Row | RowError:
    try:
        unknown = set(record) - COLUMNS
        if unknown:
            raise InvalidInput(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}")
        for key in ("email", "name"):
            if record.get(key) is None:
                raise InvalidInput(f"{key} is missing")
        email = normalise_email(record["email"])
        name = check_name(record["name"])
        password, phc = record.get("password"), record.get("password_hash")
        if password is not None and phc is not None:
            raise InvalidInput("give password or password_hash, not both")
        if password is not None:
            check_password_policy(password)
        if phc is not None and (not isinstance(phc, str) or not PasswordHasher.is_phc(phc)):
            raise InvalidInput("password_hash is not an argon2id PHC string")
        external_id = _external_id(record.get("external_id"))
        return _Row(
            line=line, email=email, name=name, password=password, password_hash=phc,
            verified_at=_timestamp(record.get("verified_at")), external_id=external_id,
            email_digest=blind.digest(email),
            id_digest=None if external_id is None else blind.external_id_digest(external_id),
        )
    except InvalidInput as exc:
        return RowError(line=line, reason=exc.message)


# --- writing ------------------------------------------------------------------------------


class _Retry(Exception):
    """A concurrent writer claimed an email or id between the check and the write."""


@dataclass
class _Plan:
    new: list[_Row]
    updates: list[tuple[_Row, uuid.UUID]]
    skipped: int
    errors: list[RowError]


def _plan(conn: Conn, batch: list[_Row], update: bool) -> _Plan:
    claims = dict(conn.execute(
        "SELECT blind_index, person_id FROM email_lookup WHERE blind_index = ANY(%s)",
        ([r.email_digest for r in batch],)).fetchall())
    id_digests = [r.id_digest for r in batch if r.id_digest is not None]
    ids = dict(conn.execute(
        "SELECT id_hash, person_id FROM external_ids WHERE id_hash = ANY(%s)",
        (id_digests,)).fetchall()) if id_digests else {}
    plan = _Plan([], [], 0, [])
    seen_emails: dict[bytes, int] = {}
    seen_ids: dict[bytes, int] = {}
    for row in batch:
        by_email = claims.get(row.email_digest)
        by_id = None if row.id_digest is None else ids.get(row.id_digest)
        earlier = seen_emails.get(row.email_digest) or (
            None if row.id_digest is None else seen_ids.get(row.id_digest))
        if by_id is not None and by_email is not None and by_id != by_email:
            plan.errors.append(RowError(line=row.line, reason="the email belongs to another "
                                                             "person than the external id"))
        elif earlier is not None:
            plan.errors.append(RowError(line=row.line,
                                        reason=f"duplicate of line {earlier} in this batch"))
        elif by_id is None and by_email is None:
            plan.new.append(row)
        elif update:
            target = by_id or by_email
            assert target is not None
            plan.updates.append((row, target))
        else:
            plan.skipped += 1
        seen_emails.setdefault(row.email_digest, row.line)
        if row.id_digest is not None:
            seen_ids.setdefault(row.id_digest, row.line)
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

    def hash_passwords(self, rows: list[_Row]) -> list[str | None]:
        plain = [r.password for r in rows]
        todo = [p for p in plain if p is not None]
        hashed = iter(self.pool.map(self.hasher.hash, todo))
        return [r.password_hash if r.password is None else next(hashed) for r in rows]

    def prepare(self, rows: list[_Row]) -> list[_write.NewPerson]:
        hashes = self.hash_passwords(rows)
        return [
            _write.prepare_new_person(
                self.keyring, email=r.email, name=r.name, password_hash=phc,
                verified_at=r.verified_at, actor=self.actor, reason=self.reason)
            for r, phc in zip(rows, hashes, strict=True)
        ]

    def apply_update(self, conn: Conn, row: _Row, person_id: uuid.UUID) -> bool:
        phc = row.password_hash
        if row.password is not None:
            current = _current_password(conn, self.keyring, person_id)
            if current is None or not self.hasher.verify(current, row.password):
                phc = self.hasher.hash(row.password)
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
        """Plan and write one batch; retried from the plan when a concurrent writer wins."""
        for attempt in range(3):
            plan = _plan(conn, batch, self.update)
            if strict and plan.errors:
                raise _StrictFailure(plan.errors)
            people = self.prepare(plan.new)
            try:
                counts = self._commit(conn, plan, people, nested=strict)
            except _Retry:
                if attempt == 2:
                    raise
                continue
            summary.imported += len(people)
            summary.updated += counts[0]
            summary.skipped += plan.skipped + counts[1]
            _reject(summary, plan.errors)
            return

    def _commit(self, conn: Conn, plan: _Plan, people: list[_write.NewPerson],
                nested: bool) -> tuple[int, int]:
        updated = unchanged = 0
        try:
            with conn.transaction():
                _copy_new(conn, people, plan.new, self.blind.key.id)
                for row, person_id in plan.updates:
                    try:
                        with conn.transaction():
                            if self.apply_update(conn, row, person_id):
                                updated += 1
                            else:
                                unchanged += 1
                    except (Conflict, InvalidInput) as exc:
                        if nested:
                            raise _StrictFailure([RowError(line=row.line,
                                                           reason=exc.message)]) from None
                        plan.errors.append(RowError(line=row.line, reason=exc.message))
        except (pg_errors.UniqueViolation, VersionConflict):
            raise _Retry from None
        return updated, unchanged


class _StrictFailure(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("strict import failed")
        self.errors = errors


def _current_password(conn: Conn, keyring: Keyring, person_id: uuid.UUID) -> str | None:
    row = conn.execute("SELECT password FROM people_latest WHERE person_id = %s",
                       (person_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    data_key = _write.load_data_key(conn, keyring, person_id)
    return data_key.decrypt("password", bytes(row[0])).decode("ascii")


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


def import_people(database: Database, keyring: Keyring, records: Callable[[], Iterable[
        tuple[int, Any]]], *, update: bool = False, strict: bool = False,
        batch_size: int = 1000, workers: int = 2, actor: str | None = "import",
        reason: str | None = None,
        progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import rows from ``records()`` (called once, twice with ``strict``: validate, write).

    Without ``strict`` every batch commits on its own: a crash loses at most the batch in
    flight, and a re-run skips what is already there. With ``strict`` the whole file is
    validated first and written in one transaction, or not at all.
    """
    if not 1 <= batch_size <= 100_000:
        raise InvalidInput("batch size must be between 1 and 100000")
    started = time.monotonic()
    importer = _Importer(database, keyring, update=update, actor=actor, reason=reason,
                         workers=workers)
    summary = ImportSummary()
    try:
        if strict:
            for _ in _batches(records(), importer.blind, batch_size, summary):
                pass
            if summary.rejected:
                summary.written = False
                summary.seconds = round(time.monotonic() - started, 3)
                return summary
            summary = ImportSummary()
        _write_all(importer, records(), summary, batch_size=batch_size, strict=strict,
                   progress=progress)
    except _StrictFailure as failure:
        summary = ImportSummary(rows=summary.rows, written=False)
        _reject(summary, failure.errors)
    finally:
        importer.pool.shutdown()
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

