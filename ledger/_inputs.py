"""Validation of caller-supplied values. Errors name the problem, never the value."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime

from peoplelog.schema import InvalidInput

__all__ = [
    "MAX_ACTOR",
    "MAX_NAME",
    "MAX_REASON",
    "check_actor",
    "check_name",
    "check_person_id",
    "check_reason",
    "check_version",
    "parse_timestamp",
]

MAX_NAME = 256
MAX_ACTOR = 128
MAX_REASON = 1000
MAX_VERSION = 2**31 - 1


def _text(value: object, what: str, limit: int, *, allow_newlines: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    if value.isascii() and value.isprintable():  # NFC and the control scan change nothing
        text = value.strip()
        if text and len(text) <= limit:
            return text
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8") from None
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL byte")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise InvalidInput(f"{what} is empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} is too long ({len(text)} characters; at most {limit})")
    allowed = {"\n", "\t"} if allow_newlines else set()
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        raise InvalidInput(f"{what} contains control characters")
    return text


def check_name(value: object) -> str:
    """A person's name: trimmed, NFC, 1 to 256 characters, no control characters."""
    return _text(value, "name", MAX_NAME)


def check_actor(value: object | None) -> str | None:
    """Who made a change (stored in plain text: an operator or service id, not the subject's
    personal data): 1 to 128 characters."""
    return None if value is None else _text(value, "actor", MAX_ACTOR)


def check_reason(value: object | None) -> str | None:
    """Why a change was made (plain text): 1 to 1000 characters."""
    return None if value is None else _text(value, "reason", MAX_REASON, allow_newlines=True)


def check_person_id(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput("person id must be a UUID")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidInput("person id is not a valid UUID") from None


def check_version(value: object, what: str = "version") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer")
    if not 0 <= value <= MAX_VERSION:
        raise InvalidInput(f"{what} must be between 0 and {MAX_VERSION}")
    return value


_EXAMPLE = "e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00"


def parse_timestamp(value: datetime | str, what: str = "timestamp") -> datetime:
    """An aware datetime (in UTC) from a datetime or ISO 8601 text with a zone ('Z' too).

    Naive times are refused: the zone is never guessed. Errors name ``what``, not the value.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            raise InvalidInput(f"{what} is not an ISO 8601 timestamp ({_EXAMPLE})")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{what} is not an ISO 8601 timestamp ({_EXAMPLE})") from None
    else:
        raise InvalidInput(f"{what} must be a timestamp")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(
            f"{what} has no time zone; add one (Z or an offset such as +02:00), a naive "
            "time is not guessed"
        )
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{what} is out of range") from None
