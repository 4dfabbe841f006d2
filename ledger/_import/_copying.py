"""Binary COPY for the import: tuples laid out by hand (the C twin in ``ledger._native``
lays out new persons' the same way), and ``bytea[]`` parameters for the key probes."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from psycopg import postgres, pq
from psycopg.adapt import Dumper

from peoplelog.schema import LATEST_COLUMNS, WRITTEN_COLUMNS, column_list

from .._store import Conn, Cursor

__all__ = [
    "COPY_IDS",
    "COPY_KEYS",
    "COPY_LATEST",
    "COPY_LOOKUP",
    "COPY_PEOPLE",
    "COPY_SEEN",
    "NULL",
    "UUID_LENGTH",
    "ByteaArray",
    "bytes_field",
    "copy_rows",
    "i32",
    "int2_field",
    "int4_field",
    "key_probe",
    "micros_field",
    "text_field",
]


def _copy_in(table: str, columns: Iterable[str]) -> str:
    return f"COPY {table} ({column_list(columns)}) FROM STDIN (FORMAT BINARY)"


COPY_PEOPLE = _copy_in("people", WRITTEN_COLUMNS)
COPY_LATEST = _copy_in("people_latest", [c for c in LATEST_COLUMNS if c != "erased_at"])
"""A new person's head: never erased, so ``erased_at`` is left to its default (NULL)."""
COPY_KEYS = _copy_in("person_keys", ("person_id", "key_version", "kek_id", "wrapped_key"))
COPY_LOOKUP = _copy_in("email_lookup", ("blind_index", "person_id", "key_id", "norm",
                                         "claim_key", "claim"))
COPY_IDS = _copy_in("external_ids", ("id_hash", "person_id", "key_id"))
COPY_SEEN = _copy_in("import_seen", ("run", "key", "line"))

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
UUID_LENGTH = b"\x00\x00\x00\x10"
"""The length word of a uuid field (16 bytes follow)."""
_PG_EPOCH = 946_684_800_000_000
"""Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC)."""
i32 = struct.Struct(">i").pack
_stamp_field = struct.Struct(">iq").pack
int2_field = struct.Struct(">ih").pack
int4_field = struct.Struct(">ii").pack


def bytes_field(value: bytes | None) -> bytes:
    return NULL if value is None else i32(len(value)) + value


def text_field(value: str | None) -> bytes:
    return NULL if value is None else bytes_field(value.encode("utf-8"))


def micros_field(micros: int | None) -> bytes:
    return NULL if micros is None else _stamp_field(8, micros - _PG_EPOCH)


def copy_rows(conn: Conn, statement: str, rows: Iterable[bytes]) -> None:
    """One binary COPY of rows already laid out as binary tuples."""
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(_COPY_HEADER + b"".join(rows) + _COPY_TRAILER)


_PROBE_SETTINGS = ("SELECT set_config('enable_seqscan', 'off', true),"
                   " set_config('jit', 'off', true),"
                   " set_config('max_parallel_workers_per_gather', '0', true)")
"""For the batch's key lookups: the tables grow during an import faster than their
statistics, and the planner would scan a young table whole (in parallel, JIT-compiled)
rather than probe its unique index once per key."""


@contextlib.contextmanager
def key_probe(conn: Conn) -> Iterator[Cursor]:
    """A binary cursor, in a transaction of its own, that takes ``ByteaArray`` parameters
    and probes indexes key by key (see ``_PROBE_SETTINGS``)."""
    with conn.cursor(binary=True) as cur, conn.transaction():
        cur.adapters.register_dumper(ByteaArray, _ByteaArrayDumper)
        cur.execute(_PROBE_SETTINGS)
        yield cur


class ByteaArray(bytes):
    """A ``bytea[]`` parameter already in binary form (psycopg's list dumper is slow)."""

    @classmethod
    def of(cls, values: list[bytes]) -> ByteaArray:
        if not values:
            return cls(_ARRAY_HEADER.pack(0, 0, _BYTEA_OID))
        return cls(_ARRAY_HEADER.pack(1, 0, _BYTEA_OID) + i32(len(values)) + i32(1)
                   + b"".join([i32(len(value)) + value for value in values]))


class _ByteaArrayDumper(Dumper):
    format = pq.Format.BINARY
    oid = postgres.types["bytea"].array_oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


_ARRAY_HEADER = struct.Struct(">iiI")
_BYTEA_OID = postgres.types["bytea"].oid
