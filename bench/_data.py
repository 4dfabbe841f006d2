"""Synthetic ledgers for benchmarks: valid chains, written fast with COPY.

Ciphertexts are random bytes of realistic size (no encryption: verification never decrypts),
so generating a million versions takes seconds, not the hours argon2 and AES would.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from peoplelog.fields import Attestor, Keyring
from peoplelog.ledger import version_cid
from peoplelog.schema import Op, VersionRecord

__all__ = ["fill_ledger", "from_micros", "now_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_micros() -> int:
    """Now, in microseconds since the Unix epoch (the envelope's time unit)."""
    return time.time_ns() // 1000


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


_HEADER = b"\x01\x01\x00\x00\x00\x01"
"""A field ciphertext's header (format 1, AES-256-GCM, data key version 1): verify reads it,
without keys, to check that the key a head names is there."""


def _ciphertext() -> bytes:
    return _HEADER + os.urandom(60)


def fill_ledger(conn: psycopg.Connection[Any], persons: int, versions: int,
                keyring: Keyring) -> int:
    """Write ``persons`` chains of ``versions`` versions each, with the tables a login
    trusts to match (``people_latest``, one data key and one email claim per person), each
    version sealed with ``keyring``'s writer key; return the versions written."""
    attestor = Attestor.of(keyring)
    start = now_micros() - persons * versions
    rows = 0
    heads: list[tuple[Any, ...]] = []
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        with conn.cursor().copy(
            "COPY people (person_id, version, cid, prev, format, op, recorded_at, actor,"
            " reason, email, name, password, verified_at, writer_key, attestation) FROM STDIN"
        ) as copy:
            for p in range(persons):
                pid = uuid.UUID(bytes=os.urandom(16), version=4)
                prev = None
                email, name = _ciphertext(), _ciphertext()
                created = from_micros(start + p * versions)
                for v in range(versions):
                    if v:
                        name = _ciphertext()
                    record = VersionRecord(
                        person_id=pid, version=v, prev=prev,
                        op=Op.CREATED.value if v == 0 else Op.UPDATED.value,
                        recorded_at=start + p * versions + v, actor="bench", reason=None,
                        email=email, name=name, password=None, verified_at=None,
                    )
                    cid = version_cid(record)
                    copy.write_row((pid, v, cid, prev, 1, record.op,
                                    from_micros(record.recorded_at), "bench", None, email,
                                    name, None, None, attestor.key_id, attestor.seal(cid)))
                    prev = cid
                    rows += 1
                heads.append((pid, versions - 1, prev, Op.UPDATED.value if versions > 1
                              else Op.CREATED.value, created,
                              from_micros(start + p * versions + versions - 1), email, name))
        with conn.cursor().copy(
            "COPY people_latest (person_id, version, cid, op, created_at, recorded_at, email,"
            " name) FROM STDIN"
        ) as copy:
            for head in heads:
                copy.write_row(head)
        with conn.cursor().copy(
            "COPY person_keys (person_id, key_version, kek_id, wrapped_key) FROM STDIN"
        ) as copy:
            for head in heads:
                copy.write_row((head[0], 1, "bench", os.urandom(60)))
        with conn.cursor().copy(
            "COPY email_lookup (blind_index, person_id, key_id, norm) FROM STDIN"
        ) as copy:
            for head in heads:
                copy.write_row((os.urandom(32), head[0], "bench", 1))
    conn.execute("ANALYZE")
    return rows
