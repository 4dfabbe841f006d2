"""Data-key rotation for one person, when their key may be compromised: a new data key
(the next key version), wrapped under the active KEK, and a ``key_rotated`` version whose
email, name and password are the head's, encrypted under it. Versions before it stay
readable under the key version their ciphertexts name; every later version uses the new
key. (The old key is kept for them: rotating does not make what it protected secret again,
it stops it protecting anything new.)"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from peoplelog.fields import DataKey, KeyPurpose, Keyring, normalise_email
from peoplelog.schema import Op, VersionRecord, VersionRef

from ._cid import version_cid
from ._heads import head_with_key, load_data_key, unwrap
from ._time import now_micros, to_micros
from ._write import insert_version, move_claim, require_writable, seal_of, upsert_latest

__all__ = ["rotate_data_key"]

Conn = psycopg.Connection[Any]


def rotate_data_key(conn: Conn, keyring: Keyring, person_id: uuid.UUID, actor: str | None,
                    reason: str | None) -> VersionRef:
    """Lock the person's head (confirmed against the chain), add the next data key and
    append the head's fields re-encrypted under it, in the caller's transaction."""
    head, wrapped = head_with_key(conn, keyring, person_id, lock=True)
    head = require_writable(head, person_id)
    current = unwrap(keyring, person_id, wrapped)
    keys = {current.version: current}

    def plain(field: str, blob: bytes | None) -> bytes | None:
        if blob is None:
            return None
        version = DataKey.key_version_of(blob)
        if version not in keys:
            keys[version] = load_data_key(conn, keyring, person_id, version)
        return keys[version].decrypt(field, blob)

    email, name, password = (plain("email", head.email), plain("name", head.name),
                             plain("password", head.password))
    new_key, secret = DataKey.generate(person_id, current.version + 1)
    kek = keyring.active(KeyPurpose.KEK)

    def sealed(field: str, value: bytes | None) -> bytes | None:
        return None if value is None else new_key.encrypt(field, value)

    record = VersionRecord(
        person_id=person_id, version=head.version + 1, prev=head.cid, op=Op.KEY_ROTATED.value,
        recorded_at=max(now_micros(), to_micros(head.recorded_at)), actor=actor,
        reason=reason, email=sealed("email", email), name=sealed("name", name),
        password=sealed("password", password),
        verified_at=None if head.verified_at is None else to_micros(head.verified_at))
    cid = version_cid(record)
    insert_version(conn, record, cid, seal_of(keyring, cid))  # first: a key is added only
    upsert_latest(conn, record, cid, head.created_at)  # with its person's new chain head
    conn.execute("INSERT INTO person_keys (person_id, key_version, kek_id, wrapped_key)"
                 " VALUES (%s, %s, %s, %s)",
                 (person_id, new_key.version, kek.id,
                  DataKey.wrap(person_id, new_key.version, secret, kek)))
    if email is not None:  # the claim's seal covers the email ciphertext: sealed again
        move_claim(conn, keyring, person_id, normalise_email(email.decode("utf-8")),
                   record.email)
    return VersionRef(person_id=person_id, version=record.version, cid=cid)
