"""The SQL of sessions and personal access tokens (``account_sessions``), and the client
details kept with them (encrypted by the caller under the person's data key)."""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from peoplelog.schema import InvalidInput

__all__ = [
    "CHECK",
    "CHECK_PERSON",
    "CHECK_SESSION",
    "EPOCH",
    "ISSUE",
    "LIST",
    "TOUCH",
    "Client",
    "IssuedToken",
    "SessionInfo",
    "check_row",
    "client_address",
    "details_json",
    "idle_seconds",
    "read_details",
]

_LABEL_MAX = 100
_AGENT_MAX = 512

ISSUE = """
INSERT INTO account_sessions (lookup, seal, seal_key, session_id, person_id, kind, epoch,
                              details, authenticated_at, last_used_at, expires_at,
                              idle_seconds)
SELECT %(lookup)s, %(seal)s, %(seal_key)s, %(session_id)s, l.person_id, %(kind)s,
       %(epoch)s, %(details)s, %(authenticated_at)s, now(), %(expires_at)s, %(idle)s
FROM people_latest AS l
LEFT JOIN account_credentials AS c ON c.person_id = l.person_id
WHERE l.person_id = %(person_id)s AND l.erased_at IS NULL
  AND (%(version)s::integer IS NULL OR l.version = %(version)s::integer)
  AND coalesce(c.epoch, 0) = %(epoch)s
  AND (%(via)s::uuid IS NULL OR EXISTS (SELECT 1 FROM account_sessions AS v
                                        WHERE v.session_id = %(via)s::uuid
                                          AND v.person_id = l.person_id
                                          AND v.expires_at > now()))
RETURNING authenticated_at, expires_at
"""
"""Issue a session or token (sealed over ``epoch``, its times and its person) for a person
who is not erased, only while ``epoch`` is still their credential epoch, the head still
``version`` (a login: the version whose password matched) and the session ``via`` still
live (a token made from a session); else nothing."""

CHECK = """
SELECT s.seal, s.seal_key, s.session_id, s.person_id, s.kind, s.epoch, s.authenticated_at,
       s.last_used_at, s.expires_at, s.idle_seconds, now(), l.version
FROM account_sessions AS s
LEFT JOIN account_credentials AS c ON c.person_id = s.person_id
LEFT JOIN people_latest AS l ON l.person_id = s.person_id
WHERE s.lookup = %s AND s.epoch = coalesce(c.epoch, 0)
"""
"""One indexed lookup: the row of a token whose epoch is still its person's, with its seal
(checked against the token and the row's columns), and the person's head version (what a
token issued through the scope names in its event)."""

CHECK_SESSION = """
SELECT seal, seal_key, session_id, person_id, kind, epoch, authenticated_at, last_used_at,
       expires_at, idle_seconds, now()
FROM account_sessions WHERE lookup = %s
"""
CHECK_PERSON = ("SELECT coalesce((SELECT epoch FROM account_credentials WHERE person_id = %s),"
                " 0), (SELECT version FROM people_latest WHERE person_id = %s)")
"""``CHECK`` on a Citus cluster, in two routed reads: the session by its lookup (a reference
table), then its person's epoch and head version (on the person's shard). A join of the
two would have to visit every shard."""


def check_row(session: Any, person: Any) -> Any:
    """``CHECK``'s row from ``CHECK_SESSION``'s and ``CHECK_PERSON``'s: None unless the
    session's epoch is still its person's."""
    if session is None or person is None or session[5] != person[0]:
        return None
    return (*session, person[1])


TOUCH = "UPDATE account_sessions SET last_used_at = now() WHERE lookup = %s"

EPOCH = ("SELECT coalesce((SELECT epoch FROM account_credentials WHERE person_id = %s), 0),"
         " now(), (SELECT version FROM people_latest WHERE person_id = %s)")
"""A person's credential epoch (0 before any credential change), the server's time and
the person's head version (None for nobody)."""

LIST = """
SELECT s.session_id, s.kind, s.details, s.created_at, s.authenticated_at, s.last_used_at,
       s.expires_at
FROM account_sessions AS s
LEFT JOIN account_credentials AS c ON c.person_id = s.person_id
WHERE s.person_id = %s AND s.kind = %s AND s.epoch = coalesce(c.epoch, 0)
  AND s.expires_at > now()
  AND (s.idle_seconds IS NULL OR s.last_used_at + s.idle_seconds * interval '1 second' > now())
ORDER BY s.created_at, s.session_id
"""


@dataclass(frozen=True, slots=True)
class Client:
    """What tells a session apart for its person: a label (``"work laptop"``), the client
    address and the user agent. Stored encrypted under the person's data key; its repr
    shows none of it."""

    label: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def __repr__(self) -> str:
        return "Client(...)"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new session or access token. ``token`` is shown here once and stored nowhere;
    the repr leaves it out."""

    token: str
    session_id: uuid.UUID
    person_id: uuid.UUID
    kind: str
    authenticated_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return (f"IssuedToken(kind={self.kind!r}, session_id={self.session_id}, "
                f"person_id={self.person_id})")

    def as_dict(self) -> dict[str, str]:
        return {"token": self.token, "session_id": str(self.session_id),
                "person_id": str(self.person_id), "kind": self.kind,
                "authenticated_at": self.authenticated_at.isoformat(),
                "expires_at": self.expires_at.isoformat()}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session or access token of a person, as listed (details decrypted)."""

    session_id: uuid.UUID
    kind: str
    label: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    authenticated_at: datetime
    last_used_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SessionInfo(session_id={self.session_id}, kind={self.kind!r})"

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": str(self.session_id), "kind": self.kind, "label": self.label,
                "ip": self.ip, "user_agent": self.user_agent,
                "created_at": self.created_at.isoformat(),
                "authenticated_at": self.authenticated_at.isoformat(),
                "last_used_at": self.last_used_at.isoformat(),
                "expires_at": self.expires_at.isoformat()}


def _text(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or not value.isprintable():
        raise InvalidInput(f"{what} must be 1 to {limit} printable characters")
    return value.strip()


def client_address(client: Client | None) -> str | None:
    """The client's IP address in ``ipaddress``'s form (None without one)."""
    if client is None or client.ip is None:
        return None
    try:
        return str(ipaddress.ip_address(client.ip))
    except ValueError:
        raise InvalidInput("the client address is not an IP address") from None


def counted_address(client: Client | None) -> str | None:
    """The client address as the throttles count it: an IPv4 address, or the /64 network
    of an IPv6 one (one subscriber's; rotating within it must not reset the count)."""
    address = client_address(client)
    if address is None or ":" not in address:
        return address
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def details_json(client: Client | None, *, name: str | None = None) -> bytes:
    """The plaintext of ``details``: a token's name, or a session's client (checked)."""
    if name is not None:
        return json.dumps({"name": _text(name, "a token name", _LABEL_MAX)}).encode()
    ip = client_address(client)
    client = client or Client()
    return json.dumps({"label": _text(client.label, "a session label", _LABEL_MAX), "ip": ip,
                       "user_agent": _text(client.user_agent, "a user agent", _AGENT_MAX)}
                      ).encode()


def read_details(plain: bytes) -> dict[str, str | None]:
    value = json.loads(plain)
    return value if isinstance(value, dict) else {}


def idle_seconds(idle: timedelta | None) -> int | None:
    return None if idle is None else int(idle.total_seconds())
