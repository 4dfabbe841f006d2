"""Appending versions built elsewhere: ``Ledger.prepare_update`` builds one without
writing it, ``Ledger.append`` writes it, as often as it is sent (idempotent on its CID)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import psycopg

from peoplelog.fields import Keyring, normalise_email
from peoplelog.schema import (
    FORMAT_VERSION,
    InvalidInput,
    Op,
    VersionConflict,
    VersionRecord,
    VersionRef,
)

from ._cid import version_cid
from ._heads import head_with_key, load_data_key
from ._inputs import check_actor, check_reason
from ._time import now_micros, to_micros
from ._write import (
    Change,
    build_next,
    insert_version,
    move_claim,
    require_writable,
    seal_of,
    upsert_latest,
)

__all__ = ["append_record", "prepare_record"]

Conn = psycopg.Connection[Any]

_MAX_MICROS = 2**53 - 1


def _check_record(record: VersionRecord) -> None:
    """A record from outside must be one this library could have written."""
    if record.format != FORMAT_VERSION:
        raise InvalidInput(f"envelope format {record.format} is not {FORMAT_VERSION}")
    if record.op not in {op.value for op in Op}:
        raise InvalidInput("unknown op")
    for what, value in (("recorded_at", record.recorded_at),
                        ("verified_at", record.verified_at)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= _MAX_MICROS):
            raise InvalidInput(f"{what} must be integer microseconds in 0..2**53-1")
    if check_actor(record.actor) != record.actor:
        raise InvalidInput("actor is not in normal form (trimmed, NFC, within limits)")
    if check_reason(record.reason) != record.reason:
        raise InvalidInput("reason is not in normal form (trimmed, NFC, within limits)")
    if not isinstance(record.version, int) or not 1 <= record.version <= 2**31 - 1:
        raise InvalidInput("version out of range")


def append_record(conn: Conn, keyring: Keyring, record: VersionRecord) -> VersionRef:
    """Append a version built elsewhere (e.g. by ``Ledger.prepare_update``); idempotent.

    A record already stored (same person, same CID) succeeds without a second row. A record
    whose prev is not the head is a conflict. Its ciphertexts must decrypt under the
    person's data key (so they belong to this person and field).
    """
    cid = version_cid(record)
    stored = conn.execute(
        "SELECT version FROM people WHERE person_id = %s AND cid = %s",
        (record.person_id, cid),
    ).fetchone()
    if stored is not None:
        return VersionRef(person_id=record.person_id, version=stored[0], cid=cid,
                          written=False)
    if record.version == 0 or record.op in (Op.CREATED, Op.ERASED):
        raise InvalidInput("only update versions can be appended as records; use "
                           "create_person or erase_person")
    _check_record(record)
    head = require_writable(head_with_key(conn, keyring, record.person_id, lock=True)[0],
                             record.person_id)
    if record.prev != head.cid or record.version != head.version + 1:
        stored = conn.execute(  # a concurrent re-send may have landed it while we waited
            "SELECT version FROM people WHERE person_id = %s AND cid = %s",
            (record.person_id, cid),
        ).fetchone()
        if stored is not None:
            return VersionRef(person_id=record.person_id, version=stored[0], cid=cid,
                              written=False)
        raise VersionConflict(
            f"person {record.person_id} is at version {head.version}; the record extends "
            f"version {record.version - 1}"
        )
    if record.recorded_at < to_micros(head.recorded_at):  # only once it extends the head
        raise InvalidInput("recorded_at is earlier than the current head's")
    data_key = load_data_key(conn, keyring, record.person_id)
    plain_email: bytes | None = None
    for field in ("email", "name", "password"):
        blob = getattr(record, field)
        if blob is not None:
            plaintext = data_key.decrypt(field, blob)
            if field == "email":
                plain_email = plaintext
    insert_version(conn, record, cid, seal_of(keyring, cid))
    upsert_latest(conn, record, cid, head.created_at)
    if record.email != head.email:
        email = None if plain_email is None else normalise_email(plain_email.decode())
        move_claim(conn, keyring, record.person_id, email, record.email)
    return VersionRef(person_id=record.person_id, version=record.version, cid=cid)


def prepare_record(conn: Conn, keyring: Keyring, person_id: uuid.UUID,
                   change: Change) -> VersionRecord:
    """The version ``change`` would append on the current head, without writing it."""
    head = require_writable(head_with_key(conn, keyring, person_id, lock=False)[0],
                             person_id)
    data_key = load_data_key(conn, keyring, person_id)
    record, _, _ = build_next(head, data_key, change, now_micros())
    if not record.op:
        raise InvalidInput("the change does not change anything")
    return replace(record)
