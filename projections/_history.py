"""Forensic queries: a person as of a time, the difference between two versions, what was
written in a time window, and a history with values.

Every function takes a connection and a keyring that may be None. Without keys the answers
are what the ciphertexts tell (a field changed or not: an unchanged field carries its
ciphertext forward byte for byte); with keys, email and name are decrypted. A password hash
is never shown, only that it changed. An erased person's data keys are shredded, so their
values are null and ``erased`` says why.

Timestamps must carry a time zone: a naive time is refused rather than guessed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from peoplelog.fields import DataKey, KeyPurpose, Keyring
from peoplelog.ledger import (
    Ledger,
    check_actor,
    check_person_id,
    check_version,
    parse_timestamp,
    read_person,
)
from peoplelog.schema import (
    HISTORY_COLUMNS,
    DecryptionFailed,
    HistoryEntry,
    InvalidInput,
    NotFound,
    Op,
    PeoplelogError,
    PersonErased,
    PersonNotFound,
    PersonView,
    VersionNotFound,
    column_list,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ChangeEntry",
    "ChangesPage",
    "FieldChange",
    "Forensics",
    "VersionDiff",
    "changes",
    "diff_versions",
    "history_with_values",
    "person_as_of",
]

Conn = psycopg.Connection[Any]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_FIELDS = ("email", "name", "password", "verified_at")
_ENCRYPTED = ("email", "name")  # decrypted when keys allow; the password hash never is
_COLUMNS = column_list(HISTORY_COLUMNS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


# --- models -------------------------------------------------------------------------------


class FieldChange(BaseModel):
    """One field that differs between two versions.

    ``old_set``/``new_set`` are ciphertext facts (the version holds a value or not) and are
    known without keys. ``shown`` says whether ``old``/``new`` carry the values: always for
    ``verified_at`` (not personal data), for email and name only with keys and a person who
    was not erased, never for the password.
    """

    model_config = ConfigDict(frozen=True)

    field: str
    old_set: bool
    new_set: bool
    shown: bool
    old: str | None = Field(default=None, repr=False)
    new: str | None = Field(default=None, repr=False)


class VersionDiff(BaseModel):
    """What changed from one version of a person to another; op, actor, reason and
    recorded_at are those of the to-version."""

    model_config = ConfigDict(frozen=True)

    person_id: uuid.UUID
    from_version: int
    to_version: int
    from_cid: str
    to_cid: str
    from_recorded_at: datetime
    recorded_at: datetime
    op: str
    actor: str | None
    reason: str | None
    erased: bool
    decrypted: bool
    """Email and name values are shown (keys present, person not erased)."""
    changed: list[FieldChange]


class ChangeEntry(BaseModel):
    """One version written in the queried window."""

    model_config = ConfigDict(frozen=True)

    person_id: uuid.UUID
    version: int
    cid: str
    op: str
    recorded_at: datetime
    actor: str | None
    reason: str | None
    changed: list[str]


class ChangesPage(BaseModel):
    """A page of versions, newest first; ``next`` is the cursor of the following page, None
    on the last one."""

    model_config = ConfigDict(frozen=True)

    since: datetime | None
    until: datetime | None
    actor: str | None
    person_id: uuid.UUID | None
    limit: int
    changes: list[ChangeEntry]
    next: str | None


# --- input --------------------------------------------------------------------------------


def _optional_time(value: datetime | str | None, what: str) -> datetime | None:
    return None if value is None else parse_timestamp(value, what)


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInput("limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


# --- decryption ---------------------------------------------------------------------------


class _Decryptor:
    """A person's data keys, unwrapped on first use, by the key version a ciphertext names."""

    def __init__(self, conn: Conn, keyring: Keyring, person_id: uuid.UUID) -> None:
        self._conn = conn
        self._keyring = keyring
        self._person_id = person_id
        self._keys: dict[int, DataKey] = {}

    def __repr__(self) -> str:
        return f"_Decryptor(person_id={self._person_id})"

    def text(self, field: str, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        data = bytes(blob)
        key = self._key(DataKey.key_version_of(data))
        try:
            return key.decrypt(field, data).decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionFailed(
                f"{field} of person {self._person_id} is not UTF-8 text"
            ) from None

    def _key(self, version: int) -> DataKey:
        key = self._keys.get(version)
        if key is None:
            row = self._conn.execute(
                "SELECT kek_id, wrapped_key FROM person_keys"
                " WHERE person_id = %s AND key_version = %s",
                (self._person_id, version),
            ).fetchone()
            if row is None:
                raise self._missing_key(version)
            kek = self._keyring.get(row[0], KeyPurpose.KEK)
            key = DataKey.unwrap(self._person_id, version, bytes(row[1]), kek)
            self._keys[version] = key
        return key


    def _missing_key(self, version: int) -> PeoplelogError:
        """An erasure (keys shredded, maybe since this read began) or a damaged key store."""
        if _is_erased(self._conn, self._person_id):
            return PersonErased(f"person {self._person_id} has no data key {version} (erased)")
        return DecryptionFailed(
            f"person {self._person_id} has no data key version {version} in person_keys, "
            "but was not erased: the key store is damaged")


def _shown_time(value: datetime | None) -> str | None:
    """UTC ISO 8601 with 'Z', as pydantic writes the other timestamps in JSON."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# --- reading rows -------------------------------------------------------------------------


def _rows(conn: Conn, person_id: uuid.UUID, versions: Sequence[int] | None = None
          ) -> list[tuple[Any, ...]]:
    if versions is None:
        query = sql.SQL("SELECT {} FROM people WHERE person_id = %s ORDER BY version")
        params: tuple[Any, ...] = (person_id,)
    else:
        query = sql.SQL(
            "SELECT {} FROM people WHERE person_id = %s AND version = ANY(%s) ORDER BY version"
        )
        params = (person_id, list(versions))
    return conn.execute(query.format(sql.SQL(_COLUMNS)), params).fetchall()


def _field_values(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_FIELDS, row[7:11], strict=True))


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    if before is None:
        return [f for f in _FIELDS if after[f] is not None]
    return [f for f in _FIELDS if after[f] != before[f]]


def _is_erased(conn: Conn, person_id: uuid.UUID) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM people WHERE person_id = %s AND op = %s)",
        (person_id, Op.ERASED.value),
    ).fetchone()
    return bool(row and row[0])


def _missing_version(conn: Conn, person_id: uuid.UUID, version: int) -> NotFound:
    row = conn.execute(
        "SELECT max(version) FROM people WHERE person_id = %s", (person_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return PersonNotFound(f"person {person_id} not found")
    return VersionNotFound(f"person {person_id} has no version {version} (newest is {row[0]})")


# --- as of --------------------------------------------------------------------------------


def person_as_of(conn: Conn, keyring: Keyring | None, person_id: uuid.UUID | str,
                 at: datetime | str) -> PersonView:
    """The person as of the newest version recorded at or before ``at``.

    ``VersionNotFound`` (naming the time) when the person did not exist yet at ``at``;
    ``PersonNotFound`` when there is no such person at all.
    """
    pid = check_person_id(person_id)
    moment = parse_timestamp(at, "as-of time")
    row = conn.execute(
        "SELECT version FROM people WHERE person_id = %s AND recorded_at <= %s"
        " ORDER BY version DESC LIMIT 1",
        (pid, moment),
    ).fetchone()
    if row is None:
        first = conn.execute(
            "SELECT recorded_at FROM people WHERE person_id = %s AND version = 0", (pid,)
        ).fetchone()
        if first is None:
            raise PersonNotFound(f"person {pid} not found")
        raise VersionNotFound(
            f"person {pid} did not exist yet at {moment.isoformat()} "
            f"(created {_utc(first[0]).isoformat()})"
        )
    return read_person(conn, keyring, pid, row[0])


# --- diff ---------------------------------------------------------------------------------


def diff_versions(conn: Conn, keyring: Keyring | None, person_id: uuid.UUID | str,
                  v1: int, v2: int) -> VersionDiff:
    """The fields that differ from version ``v1`` to version ``v2`` (either order).

    Differences are found by comparing ciphertexts, so they need no keys; with keys the
    email and name values are decrypted too.
    """
    pid = check_person_id(person_id)
    check_version(v1, "first version")
    check_version(v2, "second version")
    rows = {row[0]: row for row in _rows(conn, pid, [v1, v2])}
    for wanted in (v1, v2):
        if wanted not in rows:
            raise _missing_version(conn, pid, wanted)
    old_row, new_row = rows[v1], rows[v2]
    old, new = _field_values(old_row), _field_values(new_row)
    erased = _is_erased(conn, pid)
    decrypt = keyring is not None and not erased
    try:
        changed = _field_changes(conn, keyring if decrypt else None, pid, old, new)
    except PersonErased:  # erased since we looked: the keys are gone
        erased, decrypt = True, False
        changed = _field_changes(conn, None, pid, old, new)
    return VersionDiff(
        person_id=pid, from_version=v1, to_version=v2, from_cid=old_row[1], to_cid=new_row[1],
        from_recorded_at=_utc(old_row[4]), recorded_at=_utc(new_row[4]), op=new_row[3],
        actor=new_row[5], reason=new_row[6], erased=erased, decrypted=decrypt,
        changed=changed,
    )


def _field_changes(conn: Conn, keyring: Keyring | None, person_id: uuid.UUID,
                   old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    decryptor = None if keyring is None else _Decryptor(conn, keyring, person_id)
    changes_: list[FieldChange] = []
    for field in _FIELDS:
        before, after = old[field], new[field]
        if before == after:
            continue
        shown = False
        old_value = new_value = None
        if field == "verified_at":
            shown, old_value, new_value = True, _shown_time(before), _shown_time(after)
        elif field in _ENCRYPTED and decryptor is not None:
            shown = True
            old_value, new_value = decryptor.text(field, before), decryptor.text(field, after)
        changes_.append(FieldChange(
            field=field, old_set=before is not None, new_set=after is not None, shown=shown,
            old=old_value, new=new_value,
        ))
    return changes_


# --- history with values ------------------------------------------------------------------


def history_with_values(conn: Conn, keyring: Keyring | None,
                        person_id: uuid.UUID | str) -> list[HistoryEntry]:
    """Every version, oldest first, with per-field ciphertext facts and, when keys are
    present and the person was not erased, the new values of the fields each changed."""
    pid = check_person_id(person_id)
    rows = _rows(conn, pid)
    if not rows:
        raise PersonNotFound(f"person {pid} not found")
    erased = any(row[3] == Op.ERASED for row in rows)
    try:
        return _history(conn, None if erased else keyring, pid, rows, erased=erased)
    except PersonErased:  # erased since we looked: the keys are gone
        return _history(conn, None, pid, rows, erased=True)


def _history(conn: Conn, keyring: Keyring | None, person_id: uuid.UUID,
             rows: list[tuple[Any, ...]], *, erased: bool) -> list[HistoryEntry]:
    decryptor = None if keyring is None else _Decryptor(conn, keyring, person_id)
    entries: list[HistoryEntry] = []
    before: dict[str, Any] | None = None
    for row in rows:
        after = _field_values(row)
        changed = _changed(before, after)
        facts = {
            f: "changed" if f in changed else "absent" if after[f] is None else "unchanged"
            for f in _FIELDS
        }
        values: dict[str, str | None] | None = None
        if decryptor is not None:
            values = {}
            for field in changed:
                if field == "verified_at":
                    values[field] = _shown_time(after[field])
                elif field in _ENCRYPTED:
                    values[field] = decryptor.text(field, after[field])
        entries.append(HistoryEntry(
            version=row[0], cid=row[1], prev=row[2], op=row[3], recorded_at=_utc(row[4]),
            actor=row[5], reason=row[6], changed=changed, values=values, facts=facts,
            erased=erased,
        ))
        before = after
    return entries


# --- changes in a window ------------------------------------------------------------------


_CHANGES = """
SELECT c.person_id, c.version, c.cid, c.op, c.recorded_at, c.actor, c.reason,
       c.email IS DISTINCT FROM p.email, c.name IS DISTINCT FROM p.name,
       c.password IS DISTINCT FROM p.password, c.verified_at IS DISTINCT FROM p.verified_at
FROM people c
LEFT JOIN people p ON p.person_id = c.person_id AND p.version = c.version - 1
WHERE {where}
ORDER BY c.recorded_at DESC, c.person_id DESC, c.version DESC
LIMIT %s
"""


def changes(
    conn: Conn,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    actor: str | None = None,
    person_id: uuid.UUID | str | None = None,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
) -> ChangesPage:
    """Versions recorded in ``[since, until)``, newest first, optionally by one actor or for
    one person; at most ``limit`` (1..1000) per page.

    Pages are keyed on (recorded_at, person_id, version): pass a page's ``next`` as
    ``before`` (with the same filters) for the following page. Every version is visited
    exactly once. A version committed later with an earlier ``recorded_at`` than a page
    already read is not seen by that walk; query the window again to include it.
    """
    start = _optional_time(since, "since")
    end = _optional_time(until, "until")
    if start is not None and end is not None and start >= end:
        raise InvalidInput("since must be earlier than until")
    who = check_actor(actor)
    pid = None if person_id is None else check_person_id(person_id)
    size = _check_limit(limit)
    scope = _scope(start, end, who, pid)

    conditions: list[sql.Composable] = []
    params: list[Any] = []
    for condition, value in (
        ("c.recorded_at >= %s", start),
        ("c.recorded_at < %s", end),
        ("c.actor = %s", who),
        ("c.person_id = %s", pid),
    ):
        if value is not None:
            conditions.append(sql.SQL(condition))
            params.append(value)
    if before is not None:
        position = _decode_cursor(before, scope)
        conditions.append(sql.SQL("(c.recorded_at, c.person_id, c.version) < (%s, %s, %s)"))
        params.extend(position)
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    query = sql.SQL(_CHANGES).format(where=where)
    rows = conn.execute(query, [*params, size + 1]).fetchall()

    entries = [
        ChangeEntry(
            person_id=row[0], version=row[1], cid=row[2], op=row[3],
            recorded_at=_utc(row[4]), actor=row[5], reason=row[6],
            changed=[f for f, flag in zip(_FIELDS, row[7:11], strict=True) if flag],
        )
        for row in rows[:size]
    ]
    following = None
    if len(rows) > size:
        last = entries[-1]
        following = _encode_cursor(last.recorded_at, last.person_id, last.version, scope)
    return ChangesPage(since=start, until=end, actor=who, person_id=pid, limit=size,
                       changes=entries, next=following)


_CURSOR_PREFIX = "c1."


def _scope(since: datetime | None, until: datetime | None, actor: str | None,
           person_id: uuid.UUID | None) -> str:
    """A short digest of the filters, so a cursor is not reused with other ones."""
    text = json.dumps([
        None if since is None else _micros(since),
        None if until is None else _micros(until),
        actor,
        None if person_id is None else str(person_id),
    ])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _encode_cursor(recorded_at: datetime, person_id: uuid.UUID, version: int,
                   scope: str) -> str:
    payload = json.dumps([_micros(recorded_at), str(person_id), version, scope],
                         separators=(",", ":"))
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_cursor(cursor: object, scope: str) -> tuple[datetime, uuid.UUID, int]:
    bad = InvalidInput("cursor is not one this query returned (use a page's `next`)")
    if not isinstance(cursor, str) or not cursor.startswith(_CURSOR_PREFIX) \
            or len(cursor) > 200:
        raise bad
    body = cursor[len(_CURSOR_PREFIX):]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not (isinstance(decoded, list) and len(decoded) == 4
            and type(decoded[0]) is int and isinstance(decoded[1], str)
            and type(decoded[2]) is int and isinstance(decoded[3], str)):
        raise bad
    micros, person, version, cursor_scope = decoded
    if cursor_scope != scope:
        raise InvalidInput("cursor belongs to a query with other filters; repeat the same "
                           "--since/--until/--actor/--person to page on")
    try:
        moment = _EPOCH + micros * _MICRO
        pid = uuid.UUID(person)
        check_version(version)
    except (OverflowError, ValueError):
        raise bad from None
    return moment, pid, version


# --- a convenience over a Ledger ----------------------------------------------------------


class Forensics:
    """The forensic queries over a ``Ledger``'s database, with its (checked) keyring when it
    has one.

    >>> Forensics(ledger).as_of(person_id, "2024-05-01T12:00:00Z")   # doctest: +SKIP
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __repr__(self) -> str:
        return f"Forensics({self.ledger!r})"

    def as_of(self, person_id: uuid.UUID | str, at: datetime | str) -> PersonView:
        pid = check_person_id(person_id)
        moment = parse_timestamp(at, "as-of time")
        keyring = self.ledger.keyring_or_none()
        return self.ledger.database.run(lambda conn: person_as_of(conn, keyring, pid, moment))

    def diff(self, person_id: uuid.UUID | str, v1: int, v2: int) -> VersionDiff:
        pid = check_person_id(person_id)
        check_version(v1, "first version")
        check_version(v2, "second version")
        keyring = self.ledger.keyring_or_none()
        return self.ledger.database.run(lambda conn: diff_versions(conn, keyring, pid, v1, v2))

    def changes(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        actor: str | None = None,
        person_id: uuid.UUID | str | None = None,
        limit: int = DEFAULT_LIMIT,
        before: str | None = None,
    ) -> ChangesPage:
        return self.ledger.database.run(lambda conn: changes(
            conn, since=since, until=until, actor=actor, person_id=person_id, limit=limit,
            before=before,
        ))

    def history(self, person_id: uuid.UUID | str) -> list[HistoryEntry]:
        pid = check_person_id(person_id)
        keyring = self.ledger.keyring_or_none()
        return self.ledger.database.run(lambda conn: history_with_values(conn, keyring, pid))
