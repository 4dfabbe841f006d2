"""Security events: the one implementation of their format, and how they are stored and read.

An event is content-addressed like a version: its CID is the SHA-256 (CIDv1, raw) of the
RFC 8785 canonical JSON of its envelope::

    {"actor": str|null, "at": int (µs since the epoch), "detail": b64url|null,
     "facts": object|null, "format": 1, "id": uuid, "kind": str,
     "person_id": uuid|null, "session_id": uuid|null, "type": "peoplelog/security-event"}

``detail`` is ciphertext under the person's data key (client IP and user agent), so
erasure shreds it; ``facts`` holds what happened without personal data (counts, a method,
the head version a session was issued at). The application seals the CID with its writer
key (as it seals versions); the sequencer logs only sealed events.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from peoplelog.fields import Attestor
from peoplelog.schema import InvalidInput

from ._cid import canonical_json, cid_of
from ._time import from_micros, now_micros, to_micros

__all__ = [
    "EVENT_FORMAT",
    "EVENT_TYPE",
    "INSERT_EVENT",
    "EventKind",
    "SecurityEvent",
    "event_of_envelope",
    "event_params",
    "stored_event",
]

EVENT_FORMAT = 1
EVENT_TYPE = "peoplelog/security-event"
_KIND = re.compile(r"^[a-z][a-z_]{1,39}$")
_FACT_KEY = re.compile(r"^[a-z][a-z_]{0,39}$")
_FACT_TEXT_MAX = 200
_MAX_FACTS = 16


class EventKind(StrEnum):
    """What happened. Durable facts (a password or email changed, an erasure) are also
    person versions; their events say which sessions ended with them."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOCKED = "locked"
    SESSION_ISSUED = "session_issued"
    TOKEN_ISSUED = "token_issued"  # noqa: S105 - a kind's name
    LINK_ISSUED = "link_issued"
    LINK_USED = "link_used"
    TOKEN_REFUSED = "token_refused"  # noqa: S105 - a kind's name
    SESSION_ENDED = "session_ended"
    SESSIONS_ENDED = "sessions_ended"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a kind's name
    EMAIL_CHANGED = "email_changed"
    EMAIL_CONFIRMED = "email_confirmed"
    CLEANUP = "cleanup"
    EVENTS_RETIRED = "events_retired"
    API_KEY_ISSUED = "api_key_issued"
    API_KEY_REVOKED = "api_key_revoked"


FactValue = str | int | bool | None


def _check_facts(facts: Mapping[str, FactValue] | None) -> dict[str, FactValue] | None:
    """Facts are a small flat object of short texts, integers and booleans: nothing a
    canonical form could spell two ways, nothing that could carry a whole record."""
    if facts is None:
        return None
    if len(facts) > _MAX_FACTS:
        raise InvalidInput(f"an event holds at most {_MAX_FACTS} facts")
    out: dict[str, FactValue] = {}
    for key, value in facts.items():
        if not isinstance(key, str) or not _FACT_KEY.match(key):
            raise InvalidInput("an event's fact names are lower-case words")
        if isinstance(value, str) and len(value) > _FACT_TEXT_MAX:
            raise InvalidInput(f"an event's fact {key!r} is longer than {_FACT_TEXT_MAX}")
        if isinstance(value, int) and not isinstance(value, bool) and not (
                -(2**53) < value < 2**53):
            raise InvalidInput(f"an event's fact {key!r} is out of range")
        if not (value is None or isinstance(value, str | int | bool)):
            raise InvalidInput(f"an event's fact {key!r} is not a text, number or flag")
        out[key] = value
    return out


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _unb64(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("detail must be base64url text or null")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise InvalidInput("detail is not base64url") from None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One security event as hashed. Its repr leaves the ciphertext out."""

    kind: str
    at: int
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    person_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    actor: str | None = None
    facts: dict[str, FactValue] | None = None
    detail: bytes | None = field(default=None, repr=False)
    format: int = EVENT_FORMAT

    @classmethod
    def new(cls, kind: str, *, person_id: uuid.UUID | None = None,
            session_id: uuid.UUID | None = None, actor: str | None = None,
            facts: Mapping[str, FactValue] | None = None,
            detail: bytes | None = None) -> SecurityEvent:
        """An event happening now (checked: a known-shaped kind, flat facts)."""
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidInput("an event kind is a lower-case word of 2 to 40 letters")
        return cls(kind=kind, at=now_micros(), person_id=person_id, session_id=session_id,
                   actor=actor, facts=_check_facts(facts), detail=detail)

    @property
    def at_time(self) -> datetime:
        return from_micros(self.at)

    def envelope(self) -> dict[str, Any]:
        return {
            "actor": self.actor, "at": self.at, "detail": _b64(self.detail),
            "facts": self.facts, "format": self.format, "id": str(self.id),
            "kind": self.kind,
            "person_id": None if self.person_id is None else str(self.person_id),
            "session_id": None if self.session_id is None else str(self.session_id),
            "type": EVENT_TYPE,
        }

    def cid(self) -> str:
        return cid_of(_canonical(self.envelope()))


def _plain(value: Any) -> bool:
    """A JSON value whose ``json.dumps`` text is already its RFC 8785 text: null, a
    boolean, an integer within ±2^53, a string, or a flat object of those."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return False


def _canonical(document: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of an envelope: sorted, compact ``json.dumps`` where that is the
    same text (every envelope peoplelog writes: ASCII names, strings, small integers,
    booleans, null), the full canonicaliser otherwise (a float, a nested object, a lone
    surrogate read back from a damaged row)."""
    facts = document.get("facts")
    if all(_plain(v) for k, v in document.items() if k != "facts") and (
            facts is None or (isinstance(facts, dict)
                              and all(isinstance(k, str) and k.isascii() and _plain(v)
                                      for k, v in facts.items()))):
        try:
            return json.dumps(document, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()
        except UnicodeEncodeError:
            pass
    return canonical_json(document)


def _uuid_or_none(value: Any, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{name} is not a UUID") from None


def event_of_envelope(document: Any) -> SecurityEvent:
    """The event an envelope describes (as exported); ``InvalidInput`` when it is not one."""
    if not isinstance(document, dict) or document.get("type") != EVENT_TYPE:
        raise InvalidInput("not a security event envelope")
    expected = {"actor", "at", "detail", "facts", "format", "id", "kind", "person_id",
                "session_id", "type"}
    if set(document) != expected:
        raise InvalidInput("a security event envelope has other members")
    at, fmt, kind, actor = (document["at"], document["format"], document["kind"],
                            document["actor"])
    if type(at) is not int or type(fmt) is not int or not isinstance(kind, str):
        raise InvalidInput("a security event's at, format and kind are malformed")
    if actor is not None and not isinstance(actor, str):
        raise InvalidInput("a security event's actor is not text")
    facts = document["facts"]
    if facts is not None and not isinstance(facts, dict):
        raise InvalidInput("a security event's facts are not an object")
    event_id = _uuid_or_none(document["id"], "id")
    if event_id is None:
        raise InvalidInput("a security event has no id")
    return SecurityEvent(kind=kind, at=at, id=event_id,
                         person_id=_uuid_or_none(document["person_id"], "person_id"),
                         session_id=_uuid_or_none(document["session_id"], "session_id"),
                         actor=actor, facts=facts, detail=_unb64(document["detail"]),
                         format=fmt)


INSERT_EVENT = """
INSERT INTO security_events (id, cid, kind, at, person_id, session_id, actor, facts, detail,
                             writer_key, seal)
VALUES (%(ev_id)s, %(ev_cid)s, %(ev_kind)s, %(ev_at)s, %(ev_person)s, %(ev_session)s,
        %(ev_actor)s, %(ev_facts)s, %(ev_detail)s, %(ev_key)s, %(ev_seal)s)
"""
"""One event, with its CID and its writer seal (the ``ev_*`` parameters of
``event_params``); a statement may also take them as ``SELECT ... FROM`` a CTE, so the
event is written only with what it records."""


def event_params(event: SecurityEvent, attestor: Attestor) -> dict[str, Any]:
    """The ``ev_*`` parameters that store ``event``, sealed by ``attestor``."""
    cid = event.cid()
    return {
        "ev_id": event.id, "ev_cid": cid, "ev_kind": event.kind,
        "ev_at": from_micros(event.at), "ev_person": event.person_id,
        "ev_session": event.session_id, "ev_actor": event.actor,
        "ev_facts": None if event.facts is None else Jsonb(event.facts),
        "ev_detail": event.detail, "ev_key": attestor.key_id, "ev_seal": attestor.seal(cid),
    }


def stored_event(row: tuple[Any, ...]) -> SecurityEvent:
    """The event of a stored row (id, kind, at, person_id, session_id, actor, facts,
    detail, format-less): what its CID is recomputed from."""
    event_id, kind, at, person_id, session_id, actor, facts, detail = row
    return SecurityEvent(kind=kind, at=to_micros(at), id=event_id, person_id=person_id,
                         session_id=session_id, actor=actor, facts=facts,
                         detail=None if detail is None else bytes(detail))
