"""Validating an import row: the same rules as ``Ledger.create_person`` (email, name,
password policy), plus the import's own columns (``verified_at``, ``external_id``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peoplelog.fields import (
    BlindIndex,
    NormalisedEmail,
    check_password_policy,
    check_phc_bounds,
    normalise_email,
)
from peoplelog.schema import InvalidInput

from .._inputs import check_name
from .._time import to_micros
from ._reading import COLUMNS, REQUIRED
from ._summary import RowError

__all__ = ["MAX_EXTERNAL_ID", "MAX_MICROS", "Row", "validate"]

MAX_EXTERNAL_ID = 256
MAX_MICROS = 2**53 - 1
"""verified_at must fit an exact envelope integer (1970 to 2255)."""
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


@dataclass(slots=True)
class Row:
    """A valid row, normalised, with its keyed hashes; its repr shows the line only."""

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
        return f"Row(line={self.line})"

    def identities(self) -> list[tuple[str, bytes]]:
        """What tells this row apart: its email's digest, and its external id's."""
        keys = [("email", self.email_digest)]
        if self.id_digest is not None:
            keys.append(("external id", self.id_digest))
        return keys



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


_PLAIN = frozenset(REQUIRED)


def validate(line: int, record: dict[str, Any], blind: BlindIndex) -> Row | RowError:
    """The row on ``line`` checked and normalised, or why it cannot be imported."""
    try:
        if record.keys() == _PLAIN:  # the common row: what follows would find nothing else
            email_text, name_text = record["email"], record["name"]
            if (type(email_text) is str and type(name_text) is str and email_text.isascii()
                    and name_text.isascii()):
                email = normalise_email(email_text)
                return Row(line, email, check_name(name_text), None, None, None, None,
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
        if phc is not None:
            if not isinstance(phc, str):
                raise InvalidInput("password_hash is not an argon2id PHC string")
            check_phc_bounds(phc, "password_hash")
        verified_at = _timestamp(record.get("verified_at"))
        external_id = _external_id(record.get("external_id"))
        return Row(
            line=line, email=email, name=name, password=password, password_hash=phc,
            verified_at=verified_at, external_id=external_id,
            email_digest=blind.digest(email),
            id_digest=None if external_id is None else blind.external_id_digest(external_id),
        )
    except InvalidInput as exc:
        return RowError(line=line, reason=exc.message)
