"""Bulk import of an existing users table: JSON lines or CSV, batched, resumable.

Each row becomes a person at version 0, or, with ``update``, a new version of the person
it already is (matched by external id, else by email). A batch is one transaction written
with COPY; a row that was already imported is recognised on a re-run (its email claim or
external id exists), so an interrupted import resumes without duplicates. Bad rows are
reported with their line numbers and do not stop the others; ``strict`` turns any bad row
into a failure of the whole import with nothing written.

Rows are told apart by their email (as the blind index sees it) and their external id: a
row that repeats an earlier row's email or external id, or that resolves to the same person
as an earlier row, is rejected as a duplicate, wherever the earlier row is in the file. A
person the run creates is recognised by its id (its line, encrypted under a key made for the
run: see ``_RunIds``); the keys of rows skipped or updated are kept in a compact table (32 to
64 bytes per key). So this holds across batches, in constant memory, and gives the same
verdicts when a file is re-run. Rows are matched against the database as their batch finds
it.

Without ``update`` or ``strict``, a few connections ("lanes") write consecutive batches at
the same time while the next batch is read and sealed (encrypted, CID'd and laid out as
binary COPY rows); plans still run in file order, so the verdicts are those of a batch by
batch import.
"""

from __future__ import annotations

import binascii
import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import os
import re
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from psycopg import errors as pg_errors
from psycopg import postgres, pq
from psycopg.adapt import Dumper
from pydantic import BaseModel

from peoplelog.fields import (
    NORMALISATION_VERSION,
    BlindIndex,
    KeyPurpose,
    Keyring,
    NewPersonSealer,
    NormalisedEmail,
    PasswordHasher,
    check_password_policy,
    normalise_email,
)
from peoplelog.schema import (
    FORMAT_VERSION,
    Conflict,
    DecryptionFailed,
    InvalidInput,
    Op,
    PeoplelogError,
)

from . import _write
from ._cid import CID_PREFIX, cid_from_digest, envelope_text, native_envelope_cid
from ._inputs import check_actor, check_name, check_reason
from ._read import check_keyring
from ._store import Database
from ._time import now_micros, to_micros

__all__ = ["BATCH_SIZE", "FIRST_BATCH", "ImportSummary", "RowError", "import_people", "read_rows"]

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
BATCH_SIZE = 2500
"""Rows per batch (one transaction) by default. PostgreSQL spends noticeably less per row on
COPYs of a few thousand rows than of a few hundred; a crash loses at most ``LANES`` batches
(a re-run resumes), and a batch in flight holds a few MB."""
FIRST_BATCH = 256
"""Rows in the first batch by default; each next batch is twice as big, up to
``BATCH_SIZE``. The server starts writing after a few milliseconds of reading, not after a
whole batch (about 30 ms of a 20k-row import spent with one core idle)."""

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
            record = _json_document(raw.decode("utf-8"))
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


_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


def _json_document(text: str) -> Any:
    """``json.loads(text)``, without its two whitespace regex scans (half its time on a
    short line): JSON's own whitespace around one document, anything else after it is an
    error."""
    text = text.strip(_JSON_SPACE)
    document, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return document


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


class _Digests:
    """The blind index's keyed hashes (HMAC-SHA256), with the key's padded blocks hashed
    once rather than per call. Checked against ``BlindIndex`` when built; on any
    difference it simply defers to it."""

    def __init__(self, blind: BlindIndex) -> None:
        self.blind = blind
        block = blind.key.secret
        if len(block) > 64:
            block = hashlib.sha256(block).digest()
        block = block.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        sample = normalise_email("Sample.Check@Example.org")
        self.fast = (
            self._hmac(_EMAIL_INPUT + sample.lookup_key.encode()) == blind.digest(sample)
            and self._hmac(_EXTERNAL_ID_INPUT + b"1") == blind.external_id_digest("1"))

    def _hmac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digest(self, email: NormalisedEmail) -> bytes:
        if self.fast:
            return self._hmac(_EMAIL_INPUT + email.lookup_key.encode())
        return self.blind.digest(email)

    def external_id_digest(self, external_id: str) -> bytes:
        if self.fast:
            return self._hmac(_EXTERNAL_ID_INPUT + external_id.encode())
        return self.blind.external_id_digest(external_id)


_EMAIL_INPUT = b"peoplelog/email/%d\x00" % NORMALISATION_VERSION
_EXTERNAL_ID_INPUT = b"peoplelog/external-id/1\x00"


_PLAIN = frozenset(REQUIRED)


def _validate(line: int, record: dict[str, Any], blind: _Digests) -> _Row | RowError:
    try:
        if record.keys() == _PLAIN:  # the common row: what follows would find nothing else
            email_text, name_text = record["email"], record["name"]
            if (type(email_text) is str and type(name_text) is str and email_text.isascii()
                    and name_text.isascii()):
                email = normalise_email(email_text)
                return _Row(line, email, check_name(name_text), None, None, None, None,
                            blind.digest(email), None)
        if not COLUMNS.issuperset(record):
            raise InvalidInput(_unknown_fields([name for name in record
                                                if name not in COLUMNS]))
        for key in REQUIRED:
            if record.get(key) is None:
                raise InvalidInput(f"{key} is missing")
        for key, value in record.items():
            if isinstance(value, str) and not value.isascii() and not _is_utf8(value):
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


# --- binary COPY rows ---------------------------------------------------------------------

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_UUID = b"\x00\x00\x00\x10"
_PG_EPOCH = 946_684_800_000_000
"""Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC)."""
_i32 = struct.Struct(">i").pack
_stamp_field = struct.Struct(">iq").pack
_int2_field = struct.Struct(">ih").pack
_int4_field = struct.Struct(">ii").pack


def _bytes_field(value: bytes | None) -> bytes:
    return _NULL if value is None else _i32(len(value)) + value


def _text_field(value: str | None) -> bytes:
    return _NULL if value is None else _bytes_field(value.encode("utf-8"))


def _micros_field(micros: int | None) -> bytes:
    return _NULL if micros is None else _stamp_field(8, micros - _PG_EPOCH)


def _copy(conn: Conn, statement: str, rows: Iterable[bytes]) -> None:
    """One binary COPY of rows already laid out as binary tuples."""
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(_COPY_HEADER + b"".join(rows) + _COPY_TRAILER)


# --- rows seen in this run ----------------------------------------------------------------


class _Seen:
    """What this run has handled so far, with the lines: the persons it created, told by
    their ids (``ids``, see ``_RunIds``), and the keys (email digests, external id digests,
    person ids) of the rows it skipped or updated, kept in the ``import_seen`` table rather
    than in memory: a run of any size holds a few batches at a time."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.run = uuid.uuid4()
        self.ids = _RunIds()
        self.written = False
        """Whether any key was ever added: until then the table holds none of this run's
        (set before the batch that adds them commits: the batches in flight are counted
        by their plans as pending, not looked up)."""
        self._head = b"\x00\x03" + _UUID + self.run.bytes
        database.run(lambda conn: conn.execute(
            "DELETE FROM import_seen WHERE created < now() - interval '1 day'"))

    def lookup(self, conn: Conn, keys: list[bytes]) -> dict[bytes, int]:
        if not keys:
            return {}
        with conn.cursor(binary=True) as cur:
            cur.adapters.register_dumper(_ByteaArray, _ByteaArrayDumper)
            with conn.transaction():
                cur.execute(_PROBE_SETTINGS)
                return {bytes(k): int(line) for k, line in cur.execute(
                    "SELECT key, line FROM import_seen WHERE run = %s AND key = ANY(%s)",
                    (self.run, _ByteaArray.of(keys)))}

    def add(self, conn: Conn, pairs: list[tuple[bytes, int]]) -> None:
        if pairs:
            self.written = True
            head = self._head
            _copy(conn, "COPY import_seen (run, key, line) FROM STDIN (FORMAT BINARY)",
                  [head + _bytes_field(key) + _int4_field(4, min(line, 2**31 - 1))
                   for key, line in dict(reversed(pairs)).items()])

    def close(self) -> None:
        """Drop this run's keys; if that fails (database gone), they expire after a day."""
        with contextlib.suppress(PeoplelogError):
            self.database.run(lambda conn: conn.execute(
                "DELETE FROM import_seen WHERE run = %s", (self.run,)))


class _RunIds:
    """The person ids of the persons this run creates, one per file line, and the way back.

    A new person's id is its line number encrypted with a key made for this run and never
    stored (AES-128 of a 16-byte block: a fixed tag and the line), laid out as a UUID
    version 4: to anyone without the key, as random as ``uuid4``. The run can then tell a
    person it created (and from which line) from an id alone, so it need not remember the
    keys of its new rows: ``import_seen`` holds only those of skipped and updated rows. The
    six bits the UUID layout fixes are found again by trying their 64 values; the tag makes
    a false match a 2**-58 event."""

    _TAG = b"plimport"
    """The first half of every block encrypted (the second is the line)."""

    def __init__(self) -> None:
        # ECB on purpose: single, distinct blocks (a block-by-block permutation)
        self._cipher = Cipher(algorithms.AES(os.urandom(16)), modes.ECB())  # noqa: S305

    def __repr__(self) -> str:
        return "_RunIds()"

    def of(self, lines: list[int]) -> list[bytes]:
        """The ids of the persons created from ``lines``."""
        if not lines:
            return []
        blocks = bytearray(self._cipher.encryptor().update(
            b"".join([self._TAG + line.to_bytes(8, "big") for line in lines])))
        blocks[6::16] = blocks[6::16].translate(_V4_VERSION)
        blocks[8::16] = blocks[8::16].translate(_V4_VARIANT)
        ids = bytes(blocks)
        return [ids[i:i + 16] for i in range(0, len(ids), 16)]

    def lines(self, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The line each of ``person_ids`` was created from by this run (others are left
        out)."""
        ids = list(dict.fromkeys(person_ids))
        if not ids:
            return {}
        raw = [person_id.bytes for person_id in ids]
        candidates = bytearray(b"".join([value * 64 for value in raw]))
        candidates[6::16] = b"".join([_VERSION_COLUMN[value[6] & 0x0F] for value in raw])
        candidates[8::16] = b"".join([_VARIANT_COLUMN[value[8] & 0x3F] for value in raw])
        plain = self._cipher.decryptor().update(candidates)
        found: dict[uuid.UUID, int] = {}
        tag = self._TAG
        for i, person_id in enumerate(ids):
            start, end = i * 1024, (i + 1) * 1024  # 64 candidate blocks of 16 bytes
            at = plain.find(tag, start, end)
            while at >= 0 and at % 16:
                at = plain.find(tag, at + 1, end)
            if at >= 0:
                found[person_id] = int.from_bytes(plain[at + 8:at + 16], "big")
        return found


_V4_VERSION = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_V4_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))
"""Byte 6 and byte 8 of a block made a version 4 UUID's (version nibble, variant bits)."""
_VERSION_COLUMN = [bytes((high << 4) | low for high in range(16) for _ in range(4))
                   for low in range(16)]
_VARIANT_COLUMN = [bytes((high << 6) | low for _ in range(16) for high in range(4))
                   for low in range(64)]
"""Bytes 6 and 8 of the 64 candidate blocks of an id, by the bits the id keeps there: every
value of the bits a version 4 UUID fixes (the version nibble, the two variant bits)."""


# --- planning -----------------------------------------------------------------------------


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


_PLAN_QUERY = """
SELECT 0, blind_index, person_id, 0 FROM email_lookup WHERE blind_index = ANY(%(emails)s)
UNION ALL
SELECT 1, id_hash, person_id, 0 FROM external_ids WHERE id_hash = ANY(%(ids)s)
UNION ALL
SELECT 2, key, NULL::uuid, line FROM import_seen WHERE run = %(run)s AND key = ANY(%(keys)s)
"""
_PROBE_SETTINGS = ("SELECT set_config('enable_seqscan', 'off', true),"
                   " set_config('jit', 'off', true),"
                   " set_config('max_parallel_workers_per_gather', '0', true)")
"""For the batch's key lookups: the tables grow during an import faster than their
statistics, and the planner would scan a young table whole (in parallel, JIT-compiled)
rather than probe its unique index once per key."""


class _ByteaArray(bytes):
    """A ``bytea[]`` parameter already in binary form (psycopg's list dumper is slow)."""

    @classmethod
    def of(cls, values: list[bytes]) -> _ByteaArray:
        if not values:
            return cls(_ARRAY_HEADER.pack(0, 0, _BYTEA_OID))
        return cls(_ARRAY_HEADER.pack(1, 0, _BYTEA_OID) + _i32(len(values)) + _i32(1)
                   + b"".join([_i32(len(value)) + value for value in values]))


class _ByteaArrayDumper(Dumper):
    format = pq.Format.BINARY
    oid = postgres.types["bytea"].array_oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


_ARRAY_HEADER = struct.Struct(">iiI")
_BYTEA_OID = postgres.types["bytea"].oid


def _plan(conn: Conn, batch: list[_Row], update: bool, seen: _Seen,
          pending: dict[bytes, int]) -> _Plan:
    """Sort a batch into new rows, updates, skips and errors, in one query.

    ``pending`` holds the keys of earlier batches still being written (key -> line): they
    count as seen, as they will be once those batches commit.
    """
    emails = [r.email_digest for r in batch]
    id_digests = [r.id_digest for r in batch if r.id_digest is not None]
    claims: dict[bytes, uuid.UUID] = {}
    ids: dict[bytes, uuid.UUID] = {}
    prior: dict[bytes, int] = {}
    with conn.cursor(binary=True) as cur, conn.transaction():
        cur.adapters.register_dumper(_ByteaArray, _ByteaArrayDumper)
        cur.execute(_PROBE_SETTINGS)
        cur.execute(_PLAN_QUERY, {
            "emails": _ByteaArray.of(emails), "ids": _ByteaArray.of(id_digests),
            "run": seen.run,
            "keys": _ByteaArray.of(emails + id_digests if seen.written else [])})
        for kind, key, person_id, line in cur:
            if kind == 0:
                claims[key] = person_id
            elif kind == 1:
                ids[key] = person_id
            else:
                prior[key] = line
    created = seen.ids.lines([*claims.values(), *ids.values()])
    if created:
        for found in (claims, ids):
            for key, person_id in found.items():
                if (line := created.get(person_id)) is not None:
                    prior.setdefault(key, line)
                    prior.setdefault(person_id.bytes, line)
    plan = _Plan()
    local: dict[bytes, int] = {}

    def earlier(key: bytes, line: int) -> int | None:
        found = local.get(key) or pending.get(key) or prior.get(key)
        return found if found is not None and found < line else None

    for row in batch:
        email, external = row.email_digest, row.id_digest
        duplicate = None
        if (same := earlier(email, row.line)) is not None:
            duplicate = f"duplicate: the same email as line {same}"
        elif external is not None and (same := earlier(external, row.line)) is not None:
            duplicate = f"duplicate: the same external id as line {same}"
        if duplicate is not None:
            plan.errors.append(RowError(line=row.line, reason=duplicate))
            continue
        by_email = claims.get(email)
        by_id = None if external is None else ids.get(external)
        if by_id is not None and by_email is not None and by_id != by_email:
            plan.errors.append(RowError(line=row.line, reason="the email belongs to another "
                                                             "person than the external id"))
            continue
        target = by_id or by_email
        keys = [email] if external is None else [email, external]
        if target is not None:
            same = earlier(target.bytes, row.line)
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


# --- sealing new persons ------------------------------------------------------------------

_Sealed = tuple[bytes, bytes, bytes, bytes, bytes | None]
"""One new person's rows for person_keys, people, people_latest, email_lookup and
external_ids (None without an external id), laid out for binary COPY."""

_RANDOM = NewPersonSealer.RANDOM
"""Random bytes per new person: its data key, four nonces."""
_OP = Op.CREATED.value
_COPY_KEYS = ("COPY person_keys (person_id, key_version, kek_id, wrapped_key)"
              " FROM STDIN (FORMAT BINARY)")
_COPY_PEOPLE = ("COPY people (person_id, version, cid, prev, format, op, recorded_at, actor,"
                " reason, email, name, password, verified_at) FROM STDIN (FORMAT BINARY)")
_COPY_LATEST = ("COPY people_latest (person_id, version, cid, op, created_at, recorded_at,"
                " email, name, password, verified_at) FROM STDIN (FORMAT BINARY)")
_COPY_LOOKUP = ("COPY email_lookup (blind_index, person_id, key_id, norm)"
                " FROM STDIN (FORMAT BINARY)")
_COPY_IDS = "COPY external_ids (id_hash, person_id, key_id) FROM STDIN (FORMAT BINARY)"


_BASE32 = bytes.maketrans(bytes(range(32)), b"abcdefghijklmnopqrstuvwxyz234567")
_SPREAD = ((160, 96), (80, 48), (40, 24), (20, 12), (10, 6), (5, 3))
"""Halving steps (low part's width, shift of the high part) that spread 320 bits, in a
512-bit slot, to 64 bytes of 5 bits each."""
_CID_SLOT = bytes(24) + CID_PREFIX


_CID_CHUNK = 1024
"""CIDs encoded per big integer: bounds the cached masks (12 integers of 64 bytes a CID)."""


@functools.lru_cache(maxsize=4)
def _spread_masks(count: int) -> list[tuple[int, int, int]]:
    masks = []
    for level, (width, shift) in enumerate(_SPREAD):
        low = sum(((1 << width) - 1) << ((512 >> level) * j) for j in range(1 << level))
        masks.append((int.from_bytes((low << width).to_bytes(64, "big") * count, "big"),
                      int.from_bytes(low.to_bytes(64, "big") * count, "big"), shift))
    return masks


def _cids_at_once(digests: list[bytes]) -> list[bytes]:
    """``cid_from_digest`` of many sha2-256 digests in a few big-integer operations: each
    CID's 36 bytes, padded to 40, sit in a 64-byte slot of one integer, which is spread by
    shifts and masks until every byte holds one base32 digit."""
    if len(digests) > _CID_CHUNK:
        return [cid for start in range(0, len(digests), _CID_CHUNK)
                for cid in _cids_at_once(digests[start:start + _CID_CHUNK])]
    if not digests:
        return []
    count = len(digests)
    n = int.from_bytes(b"".join([_CID_SLOT + d + b"\x00\x00\x00\x00" for d in digests]), "big")
    for high, low, shift in _spread_masks(count):
        n = ((n & high) << shift) | (n & low)
    text = n.to_bytes(64 * count, "big").translate(_BASE32)
    return [b"b" + text[i:i + 58] for i in range(0, 64 * count, 64)]


def _cids_one_by_one(digests: list[bytes]) -> list[bytes]:
    return [cid_from_digest(d).encode() for d in digests]


def _cid_encoder() -> Callable[[list[bytes]], list[bytes]]:
    """``_cids_at_once`` if it agrees with ``cid_from_digest`` here, else the latter."""
    samples = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    samples.append(bytes(32))
    samples.append(b"\xff" * 32)
    if _cids_at_once(samples) == _cids_one_by_one(samples):
        return _cids_at_once
    return _cids_one_by_one


_NewEnvelope = tuple[str, int, str, str, str | None, int | None]


def _envelope_of_new(actor: str | None, reason: str | None) -> Callable[[_NewEnvelope], str]:
    """``envelope_text`` of a version 0 by this importer, its constant members written once:
    ``(person_id, recorded_at, email, name, password, verified_at)`` -> RFC 8785 text, the
    byte fields given as base64url. Checked against ``envelope_text`` when made; on any
    difference it is ``envelope_text`` itself."""

    def canonical(values: _NewEnvelope) -> str:
        person_id, recorded_at, email, name, password, verified_at = values
        return envelope_text(person_id=person_id, version=0, prev=None, op=_OP,
                             recorded_at=recorded_at, actor=actor, reason=reason, email=email,
                             name=name, password=password, verified_at=verified_at,
                             format=FORMAT_VERSION)

    def constant(value: str | None) -> str:
        text = "null" if value is None else json.dumps(value, ensure_ascii=False)
        return text.replace("%", "%%")

    template = ('{"actor":' + constant(actor) + ',"email":"%s","format":%d,"name":"%s",'
                '"op":' + constant(_OP) + ',"password":%s,"person_id":"%s","prev":null,'
                '"reason":' + constant(reason) + ',"recorded_at":%d,"verified_at":%s,'
                '"version":0}')

    def fast(values: _NewEnvelope) -> str:
        person_id, recorded_at, email, name, password, verified_at = values
        return template % (email, FORMAT_VERSION, name,
                           "null" if password is None else '"' + password + '"', person_id,
                           recorded_at, "null" if verified_at is None else verified_at)

    samples = [("00000000-0000-4000-8000-000000000000", 1, "e-_", "n", None, None),
               ("ffffffff-ffff-4fff-bfff-ffffffffffff", MAX_MICROS, "AQ", "Ag", "Aw", 0)]
    if all(fast(sample) == canonical(sample) for sample in samples):
        return fast
    return canonical


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


class _Sealer:
    """Version 0 of new persons, as ``_write.prepare_new_person`` builds it (for the ids it
    is given: a random data key, field ciphertexts, wrapped key, CID), straight into binary
    COPY rows: in C (``ledger._native.NewPersonRows`` on ``fields.NewPersonSealer``) when
    built, else here, with the same bytes."""

    def __init__(self, keyring: Keyring, blind_key_id: str, actor: str | None,
                 reason: str | None, *, native: bool = True) -> None:
        kek = keyring.active(KeyPurpose.KEK)
        self._sealer = NewPersonSealer(kek, native=native)
        self._envelope = _envelope_of_new(actor, reason)
        self._cids = _cid_encoder()
        self._actor, self._reason = actor, reason
        self._native = native_envelope_cid() if native else None
        """The C CID of ``ledger._native`` when built: the whole envelope in one call."""
        version0 = _int4_field(4, 0)
        key_field = _text_field(blind_key_id)
        self._keys = (b"\x00\x04" + _UUID, _int4_field(4, 1) + _text_field(kek.id))
        self._people = (b"\x00\x0d" + _UUID, version0 + _i32(59),
                        _NULL + _int2_field(2, FORMAT_VERSION) + _text_field(_OP),
                        _text_field(actor) + _text_field(reason))
        self._latest = (b"\x00\x0a" + _UUID, version0 + _i32(59), _text_field(_OP))
        self._lookup = (b"\x00\x04" + _i32(32), _UUID,
                        key_field + _int2_field(2, NORMALISATION_VERSION))
        self._ids = (b"\x00\x03", _UUID, key_field)
        self._rows = None if self._native is None else _native_rows(
            self._keys + self._people + self._latest + self._lookup + self._ids, actor, reason)
        """``NewPersonRows.rows`` of ``ledger._native``: a sealed person's rows in one call."""

    @property
    def native(self) -> bool:
        """True when the rows are sealed and laid out in C."""
        return self._rows is not None and self._sealer.native

    def seal(self, rows: list[_Row], hashes: list[str | None], ids: list[bytes], *,
             random: bytes | None = None,
             clock: Callable[[], int] = now_micros) -> list[_Sealed]:
        """Seal ``rows`` as the persons ``ids`` (16 bytes each; ``hashes``: each row's
        password PHC, or None). ``random`` (``_RANDOM`` bytes a row) and ``clock`` are for
        tests; by default the OS's randomness and now."""
        if random is None:
            random = os.urandom(_RANDOM * len(rows))
        if len(random) != _RANDOM * len(rows) or len(ids) != len(rows):
            raise ValueError("random must hold _RANDOM bytes and ids one id per row")
        if self.native:
            return self._seal_native(rows, hashes, ids, random, clock)
        return self._seal_python(rows, hashes, ids, random, clock)

    def _seal_native(self, rows: list[_Row], hashes: list[str | None], ids: list[bytes],
                     random: bytes, clock: Callable[[], int]) -> list[_Sealed]:
        seal, lay_out = self._sealer.seal, self._rows
        assert lay_out is not None
        out: list[_Sealed] = []
        for i, (row, phc, pid) in enumerate(zip(rows, hashes, ids, strict=True)):
            at = i * _RANDOM
            email, name, password, wrapped = seal(
                pid, random[at:at + _RANDOM], row.email.display.encode(),
                row.name.encode(), None if phc is None else phc.encode())
            out.append(lay_out(pid, clock(), email, name, password, wrapped, row.verified_at,
                               row.email_digest, row.id_digest))
        return out

    def _seal_python(self, rows: list[_Row], hashes: list[str | None], ids: list[bytes],
                     random: bytes, clock: Callable[[], int]) -> list[_Sealed]:
        seal = self._sealer.seal
        keys_a, keys_b = self._keys
        people_a, people_b, people_c, people_d = self._people
        latest_a, latest_b, latest_c = self._latest
        lookup_a, lookup_b, lookup_c = self._lookup
        ids_a, ids_b, ids_c = self._ids
        envelope, b64, sha256 = self._envelope, _b64, hashlib.sha256
        field, moment = _bytes_field, _micros_field
        digests: list[bytes] = []
        cids: list[bytes] = []
        native, actor, reason = self._native, self._actor, self._reason
        parts: list[tuple[bytes, bytes, bytes, bytes, bytes, bytes | None]] = []
        for i, (row, phc, pid) in enumerate(zip(rows, hashes, ids, strict=True)):
            email, name, password, wrapped = seal(
                pid, random[i * _RANDOM:(i + 1) * _RANDOM], row.email.display.encode(),
                row.name.encode(), None if phc is None else phc.encode())
            at = clock()
            if native is not None:
                cids.append(native(pid, 0, None, _OP, at, actor, reason, email, name,
                                   password, row.verified_at, FORMAT_VERSION).encode())
            else:
                digests.append(sha256(envelope((
                    str(uuid.UUID(bytes=pid)), at, b64(email), b64(name),
                    None if password is None else b64(password),
                    row.verified_at)).encode()).digest())
            parts.append((
                pid, moment(at),
                b"".join((field(email), field(name), field(password), moment(row.verified_at))),
                b"".join((keys_a, pid, keys_b, field(wrapped))),
                b"".join((lookup_a, row.email_digest, lookup_b, pid, lookup_c)),
                None if row.id_digest is None
                else b"".join((ids_a, field(row.id_digest), ids_b, pid, ids_c)),
            ))
        out: list[_Sealed] = []
        for cid, (pid, stamp, fields, keys, lookup, external) in zip(
                cids if native is not None else self._cids(digests), parts, strict=True):
            out.append((
                keys,
                b"".join((people_a, pid, people_b, cid, people_c, stamp, people_d, fields)),
                b"".join((latest_a, pid, latest_b, cid, latest_c, stamp, stamp, fields)),
                lookup, external,
            ))
        return out


def _native_rows(segments: tuple[bytes, ...], actor: str | None,
                 reason: str | None) -> Callable[..., _Sealed] | None:
    """``NewPersonRows.rows``, asked for only when the C CID is in use (so built and not
    disabled by ``PEOPLELOG_PURE_PYTHON``)."""
    try:
        from ._native import NewPersonRows  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return None
    lay_out: Callable[..., _Sealed] = NewPersonRows(segments, _OP, actor, reason,
                                                    FORMAT_VERSION).rows
    return lay_out


def _copy_new(conn: Conn, sealed: list[_Sealed]) -> None:
    _copy(conn, _COPY_KEYS, [s[0] for s in sealed])
    _copy(conn, _COPY_PEOPLE, [s[1] for s in sealed])
    _copy(conn, _COPY_LATEST, [s[2] for s in sealed])
    _copy(conn, _COPY_LOOKUP, [s[3] for s in sealed])
    ids = [s[4] for s in sealed if s[4] is not None]
    if ids:
        _copy(conn, _COPY_IDS, ids)


# --- writing ------------------------------------------------------------------------------

_UNCHANGED = "unchanged"
"""Marks a plaintext password that equals the person's current one: not a change."""

_Result = tuple[int, int, set[int]]
"""What a committed batch did: rows updated, rows unchanged, lines that failed."""


class _Importer:
    def __init__(self, database: Database, keyring: Keyring, *, update: bool,
                 actor: str | None, reason: str | None, workers: int) -> None:
        self.database = database
        self.keyring = keyring
        self.blind = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX))
        self.digests = _Digests(self.blind)
        self.hasher = PasswordHasher()
        self.update = update
        self.actor = check_actor(actor)
        self.reason = check_reason(reason)
        self.sealer = _Sealer(keyring, self.blind.key.id, self.actor, self.reason)
        self.pool = ThreadPoolExecutor(max_workers=max(workers, 1))
        self.seen = _Seen(database)

    def prepare(self, rows: list[_Row], done: dict[int, _Sealed]) -> list[_Sealed]:
        """Seal the new rows (hashing plaintext passwords across the worker threads);
        ``done`` keeps what an earlier attempt at the batch already sealed."""
        todo = [r for r in rows if r.line not in done]
        hashes = iter(self.pool.map(self.hasher.hash,
                                    [r.password for r in todo if r.password is not None]))
        phcs = [r.password_hash if r.password is None else next(hashes) for r in todo]
        ids = self.seen.ids.of([r.line for r in todo])
        for row, sealed in zip(todo, self.sealer.seal(todo, phcs, ids), strict=True):
            done[row.line] = sealed
        return [done[r.line] for r in rows]

    def prepare_ahead(self, rows: list[_Row]) -> dict[int, _Sealed]:
        """Seal the rows that need no password hashing, before knowing which are new."""
        ready = [r for r in rows if r.password is None]
        sealed = self.sealer.seal(ready, [r.password_hash for r in ready],
                                  self.seen.ids.of([r.line for r in ready]))
        return {row.line: s for row, s in zip(ready, sealed, strict=True)}

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
                    strict: bool, sealed: dict[int, _Sealed] | None = None) -> None:
        """Plan and write one batch; planned again when a concurrent writer wins a claim.
        ``sealed`` holds rows already sealed (by line)."""
        sealed = {} if sealed is None else sealed
        passwords: dict[tuple[int, uuid.UUID], str | None] = {}
        for _ in range(BATCH_ATTEMPTS):
            plan = _plan(conn, batch, self.update, self.seen, {})
            if strict and plan.errors:
                raise _StrictFailure(plan.errors)
            people = self.prepare(plan.new, sealed)
            self.prepare_passwords(conn, plan.updates, passwords)
            try:
                result = self.commit(conn, plan, people, passwords, strict=strict)
            except _Retry:
                continue
            self.count(summary, plan, result)
            return
        raise Conflict(f"the batch starting at line {batch[0].line} could not be written: "
                       "other writers kept claiming its emails or external ids; run the "
                       "import again to resume")

    @staticmethod
    def count(summary: ImportSummary, plan: _Plan, result: _Result) -> None:
        updated, unchanged, _ = result
        summary.imported += len(plan.new)
        summary.updated += updated
        summary.skipped += len(plan.skipped) + unchanged
        _reject(summary, plan.errors)

    def commit(self, conn: Conn, plan: _Plan, people: list[_Sealed],
               passwords: dict[tuple[int, uuid.UUID], str | None], *,
               strict: bool) -> _Result:
        """Write a planned batch and remember its keys, in one transaction (a savepoint
        inside the strict import's transaction); ``_Retry`` when a claim was lost."""
        updated = unchanged = 0
        failed: set[int] = set()
        if not plan.marks:
            return updated, unchanged, failed
        try:
            with conn.transaction():
                if people:
                    _copy_new(conn, people)
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
                new = {row.line for row in plan.new}  # known again by their person ids
                self.seen.add(conn, [(key, line) for line, keys in plan.marks
                                     if line not in failed and line not in new
                                     for key in keys])
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


def _batch_sizes(batch_size: int | None) -> Iterator[int]:
    """``batch_size`` rows per batch; by default ``FIRST_BATCH`` doubling to ``BATCH_SIZE``."""
    if batch_size is not None:
        yield from itertools.repeat(batch_size)
        return
    size = FIRST_BATCH
    while size < BATCH_SIZE:
        yield size
        size *= 2
    yield from itertools.repeat(BATCH_SIZE)


def _batches(records: Iterable[tuple[int, Any]], blind: _Digests, sizes: Iterator[int],
             summary: ImportSummary) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    rows = summary.rows
    size = next(sizes)
    try:
        for line, record in records:
            rows += 1
            row = record if isinstance(record, RowError) else _validate(line, record, blind)
            if isinstance(row, RowError):
                _reject(summary, [row])
                continue
            batch.append(row)
            if len(batch) >= size:
                summary.rows = rows  # counted per batch: a model's setattr is not free
                yield batch
                batch = []
                size = next(sizes)
    finally:
        summary.rows = rows
    if batch:
        yield batch


def _check_file(records: Iterable[tuple[int, Any]], blind: _Digests,
                summary: ImportSummary, seen: _Seen) -> None:
    """The strict import's first pass: every row valid, no email or external id twice."""
    for batch in _batches(records, blind, itertools.repeat(1000), summary):
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
        batch_size: int | None = None, workers: int = 2, actor: str | None = "import",
        reason: str | None = None,
        progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import rows from ``records()`` (called once, twice with ``strict``: check, write).

    Without ``strict`` every batch commits on its own: a crash loses at most the batches
    in flight (``LANES`` at most), and a re-run skips what is already there. With
    ``strict`` the whole file is checked first and written in one transaction, or not at
    all.
    ``batch_size`` rows make a batch; by default the first has ``FIRST_BATCH`` and each
    next one twice as many, up to ``BATCH_SIZE``.
    ``progress`` is called with the number of rows read so far after each batch.
    """
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not 1 <= batch_size <= 100_000):
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
                _check_file(records(), importer.digests, summary, check)
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
               summary: ImportSummary, *, batch_size: int | None, strict: bool,
               progress: Callable[[int], None] | None) -> None:
    batches = _batches(records, importer.digests, _batch_sizes(batch_size), summary)

    def each(conn: Conn) -> None:
        for batch in batches:
            importer.write_batch(conn, batch, summary, strict)
            if progress is not None:
                progress(summary.rows)

    if strict:
        importer.database.transaction(each, attempts=1)
    elif importer.update:
        importer.database.run(each)
    else:
        _Pipeline(importer, summary, progress).run(batches)


# --- the pipelined write: plan and seal one batch while others are written ------------------

LANES = 3
"""Connections writing batches at the same time (each batch is still one transaction).
More than two keeps the server busy while one lane waits for its commit to be flushed or
for the plan before it."""


class _Lane:
    """One connection and the thread that writes batches on it. The thread connects, so
    the reading thread goes on meanwhile; its first batch waits for it there."""

    def __init__(self, conninfo: str) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1,
                                         thread_name_prefix="peoplelog-import")
        self._connected = self.thread.submit(Database, conninfo, pool_size=1)
        self.conn: Conn | None = None
        """The connection of the batch being written, for ``cancel``."""

    @property
    def database(self) -> Database:
        """The lane's ``Database`` (raises what connecting raised)."""
        return self._connected.result()

    def cancel(self) -> None:
        """Cancel the statement in flight (its batch's transaction rolls back)."""
        conn = self.conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)

    def close(self) -> None:
        self.thread.shutdown(wait=True)
        if self._connected.exception() is None:
            self.database.close()


@dataclass
class _Flight:
    lane: _Lane
    batch: list[_Row]
    rows: int
    planned: threading.Event = field(default_factory=threading.Event)
    plan: _Plan | None = field(default=None, repr=False)
    sealed: dict[int, _Sealed] = field(default_factory=dict, repr=False)
    future: Future[_Result | None] | None = None


class _Pipeline:
    """Without ``update`` or ``strict``: while lanes plan and write earlier batches, this
    thread reads the next one and seals its rows ahead (all of them, while most rows turn
    out new; the plan decides which seals are used).

    Plans run one after another, in file order, each counting the keys of the batches
    still in flight as seen: those keys are all a batch writes, so a plan gives what it
    would after their commits. A batch that loses a claim to another writer is written
    again, alone, once the batches in flight have landed."""

    def __init__(self, importer: _Importer, summary: ImportSummary,
                 progress: Callable[[int], None] | None) -> None:
        self.importer = importer
        self.summary = summary
        self.progress = progress
        self.lanes: list[_Lane] = []
        self.idle: list[_Lane] = []
        self.flights: deque[_Flight] = deque()
        self.pending: dict[bytes, int] = {}
        self.reported = 0
        self.stopped = threading.Event()
        self.ahead = True
        """Seal ahead while most rows turn out new (not on a re-run of an imported file)."""

    def run(self, batches: Iterator[list[_Row]]) -> None:
        try:
            for batch in batches:
                rows = self.summary.rows
                sealed = self.importer.prepare_ahead(batch) if self.ahead else {}
                if len(self.flights) >= LANES:
                    self.land(self.flights.popleft())
                self.launch(batch, rows, sealed)
            while self.flights:
                self.land(self.flights.popleft())
        except BaseException:
            self.stopped.set()
            for flight in self.flights:
                flight.lane.cancel()
            raise
        finally:
            for lane in self.lanes:
                lane.close()

    def launch(self, batch: list[_Row], rows: int, sealed: dict[int, _Sealed]) -> None:
        if not self.idle:
            lane = _Lane(self.importer.database.conninfo)
            self.lanes.append(lane)
            self.idle.append(lane)
        flight = _Flight(self.idle.pop(), batch, rows, sealed=sealed)
        before = self.flights[-1].planned if self.flights else None
        importer, pending, stopped = self.importer, self.pending, self.stopped

        def write(conn: Conn) -> _Result | None:
            flight.lane.conn = conn
            try:
                if before is not None:
                    before.wait()
                if stopped.is_set():
                    return None
                plan = flight.plan = _plan(conn, batch, False, importer.seen, pending)
                for line, keys in plan.marks:
                    for key in keys:
                        pending[key] = line
            finally:
                flight.planned.set()
            people = importer.prepare(plan.new, flight.sealed)
            try:
                return importer.commit(conn, plan, people, {}, strict=False)
            except _Retry:
                return None

        lane = flight.lane
        flight.future = lane.thread.submit(lambda: lane.database.run(write))
        self.flights.append(flight)

    def land(self, flight: _Flight) -> None:
        """Wait for the oldest batch in flight and count it. One that lost a claim to
        another writer is written again once every batch in flight has landed, with any
        other such batch, in file order."""
        if self.wait(flight) is not None:
            self.report(flight)
            return
        again = [flight]
        while self.flights:
            later = self.flights.popleft()
            if self.wait(later) is None:
                again.append(later)
            else:
                self.report(later)
        for retry in again:
            retry.lane.database.run(functools.partial(self.write_alone, retry))
            self.report(retry)

    def write_alone(self, flight: _Flight, conn: Conn) -> None:
        self.importer.write_batch(conn, flight.batch, self.summary, False, flight.sealed)

    def wait(self, flight: _Flight) -> _Result | None:
        """The batch's outcome, counted in the summary; None if it must be written again."""
        assert flight.future is not None
        try:
            result = flight.future.result()
        finally:
            for later in self.flights:  # their plans may still be reading these keys
                later.planned.wait()
            for _, keys in flight.plan.marks if flight.plan is not None else ():
                for key in keys:
                    self.pending.pop(key, None)
            self.idle.append(flight.lane)
        if result is None or flight.plan is None:
            return None
        self.importer.count(self.summary, flight.plan, result)
        self.ahead = 2 * len(flight.plan.new) >= len(flight.batch)
        return result

    def report(self, flight: _Flight) -> None:
        self.reported = max(self.reported, flight.rows)
        if self.progress is not None:
            self.progress(self.reported)
