"""Who is acting: a person through a session or an access token, or a named service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from peoplelog.schema import InvalidInput

__all__ = ["Scope"]

_SERVICE_NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class Scope:
    """Passed to every accounts call that acts for someone; its ``actor`` is what the
    ledger records as the actor of the versions written for it.

    ``kind`` is ``session``, ``access_token`` or ``service``; ``authenticated_at`` is when
    the person last proved who they are (a login), which ``sudo()`` measures against the
    sudo window. Later work adds roles."""

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

    @classmethod
    def for_service(cls, name: str) -> Scope:
        """A named service acting on its own account (an admin tool, a job)."""
        if (not isinstance(name, str) or not name or len(name) > _SERVICE_NAME_MAX
                or not name.isprintable() or name != name.strip()):
            raise InvalidInput(f"a service name is 1 to {_SERVICE_NAME_MAX} printable "
                               "characters without surrounding spaces")
        return cls(kind="service", service=name)

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

    def as_dict(self) -> dict[str, str | None]:
        def text(value: object) -> str | None:
            if value is None:
                return None
            return value.isoformat() if isinstance(value, datetime) else str(value)
        return {"kind": self.kind, "person_id": text(self.person_id),
                "session_id": text(self.session_id), "service": self.service,
                "authenticated_at": text(self.authenticated_at),
                "expires_at": text(self.expires_at)}
