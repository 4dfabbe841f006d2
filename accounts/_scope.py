"""Who is acting: a person through a session or an access token, or a named service
(an API key's holder) with the permissions it was given."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from peoplelog.schema import InvalidInput

__all__ = ["PERMISSIONS", "Scope", "check_permissions", "check_service_name"]

_SERVICE_NAME_MAX = 64

PERMISSIONS = frozenset({"people:read", "people:write", "people:erase", "audit:read",
                         "audit:write", "accounts:admin"})
"""What a service scope (an API key) may be permitted; a person's scope holds none."""


def check_service_name(name: object) -> str:
    """A service's (or API key's) name: 1 to 64 printable characters without surrounding
    spaces; ``InvalidInput`` otherwise."""
    if (not isinstance(name, str) or not name or len(name) > _SERVICE_NAME_MAX
            or not name.isprintable() or name != name.strip()):
        raise InvalidInput(f"a service name is 1 to {_SERVICE_NAME_MAX} printable "
                           "characters without surrounding spaces")
    return name


def check_permissions(permissions: Iterable[str]) -> frozenset[str]:
    """The permissions named, each one of ``PERMISSIONS``; ``InvalidInput`` naming the
    first that is not."""
    if isinstance(permissions, str | bytes):
        raise InvalidInput("permissions are a list of names, not one text")
    try:
        given = list(permissions)
    except TypeError:
        raise InvalidInput("permissions are a list of names") from None
    for permission in given:
        if not isinstance(permission, str) or permission not in PERMISSIONS:
            shown = permission if isinstance(permission, str) else type(permission).__name__
            raise InvalidInput(f"unknown permission {shown!r} (one of: "
                               f"{', '.join(sorted(PERMISSIONS))})")
    return frozenset(given)


@dataclass(frozen=True, slots=True)
class Scope:
    """Passed to every accounts call that acts for someone; its ``actor`` is what the
    ledger records as the actor of the versions written for it.

    ``kind`` is ``session``, ``access_token`` or ``service``; ``authenticated_at`` is when
    the person last proved who they are (a login), which ``sudo()`` measures against the
    sudo window. A service scope holds ``permissions`` (``allows``), and ``api_key_id``
    when an API key stands behind it. Later work adds roles."""

    kind: str
    person_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    service: str | None = None
    authenticated_at: datetime | None = None
    expires_at: datetime | None = None
    sudo_window: timedelta = timedelta(minutes=20)
    epoch: int | None = None
    """The person's credential epoch the session or token was issued under."""
    head: int | None = None
    """The person's head version when the token was checked (a hint for what is issued
    through this scope; checked again when it is)."""
    permissions: frozenset[str] = frozenset()
    """What a service may do (of ``PERMISSIONS``); always empty for a person's scope."""
    api_key_id: uuid.UUID | None = None
    """The API key a service scope was checked from (``Accounts.check_api_key``)."""

    def __post_init__(self) -> None:
        if self.permissions:
            if self.kind != "service":
                raise InvalidInput("only a service scope holds permissions")
            object.__setattr__(self, "permissions", check_permissions(self.permissions))
        elif type(self.permissions) is not frozenset:
            object.__setattr__(self, "permissions", frozenset())

    @classmethod
    def for_service(cls, name: str, permissions: Iterable[str] = ()) -> Scope:
        """A named service acting on its own account (an admin tool, a job), with
        ``permissions`` (each one of ``PERMISSIONS``)."""
        return cls(kind="service", service=check_service_name(name),
                   permissions=check_permissions(permissions))

    def allows(self, permission: str) -> bool:
        """Whether this is a service scope holding ``permission`` (a person's session or
        access token holds none); ``InvalidInput`` for a name not in ``PERMISSIONS``."""
        if not isinstance(permission, str) or permission not in PERMISSIONS:
            raise InvalidInput(f"unknown permission {permission!r}")
        return self.kind == "service" and permission in self.permissions

    @property
    def actor(self) -> str:
        """``person:<id>`` or ``service:<name>``."""
        if self.service is not None:
            return f"service:{self.service}"
        return f"person:{self.person_id}"

    def sudo(self, now: datetime | None = None) -> bool:
        """Whether the last authentication is recent enough for a sensitive change
        (email, password): within the sudo window. A service never is."""
        if self.authenticated_at is None:
            return False
        moment = datetime.now(UTC) if now is None else now
        return moment - self.authenticated_at <= self.sudo_window

    def as_dict(self) -> dict[str, Any]:
        def text(value: object) -> str | None:
            if value is None:
                return None
            return value.isoformat() if isinstance(value, datetime) else str(value)
        return {"kind": self.kind, "person_id": text(self.person_id),
                "session_id": text(self.session_id), "service": self.service,
                "authenticated_at": text(self.authenticated_at),
                "expires_at": text(self.expires_at),
                "permissions": sorted(self.permissions),
                "api_key_id": text(self.api_key_id)}
