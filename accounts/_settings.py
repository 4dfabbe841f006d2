"""The accounts layer's lifetimes: documented defaults, each overridable by an environment
variable (a duration such as ``14d``, ``12h``, ``20m`` or ``90s``; ``PEOPLELOG_BASE_URL`` a URL)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from peoplelog.schema import ConfigurationError

__all__ = ["AccountSettings", "parse_duration"]

_DURATION = re.compile(r"^(\d{1,7})([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``14d``, ``12h``, ``20m``, ``90s`` as a positive ``timedelta``; ``ValueError``
    otherwise."""
    match = _DURATION.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError("give a positive duration such as 14d, 12h, 20m or 90s")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True)
class AccountSettings:
    """How long things live. Each field's environment variable is
    ``PEOPLELOG_`` + its name in capitals (``PEOPLELOG_SESSION_LIFETIME=7d``)."""

    session_lifetime: timedelta = timedelta(days=14)
    """A session's absolute lifetime from the login."""
    session_idle: timedelta = timedelta(days=3)
    """A session unused this long ends."""
    remember_me_lifetime: timedelta = timedelta(days=60)
    """The absolute lifetime of a session opened with "remember me"."""
    access_token_lifetime: timedelta = timedelta(days=90)
    """A personal access token's default lifetime (a longer one may be asked for, up to
    ``access_token_max``)."""
    access_token_max: timedelta = timedelta(days=366)
    sudo_window: timedelta = timedelta(minutes=20)
    """How long after a login a session may do what needs a fresh login (``Scope.sudo``)."""
    touch_interval: timedelta = timedelta(minutes=1)
    """``last_used_at`` is written at most this often per session: a check is a read."""
    login_link_lifetime: timedelta = timedelta(minutes=15)
    """A sign-in link's lifetime, and a sign-in code's."""
    code_attempts: int = 5
    """Wrong tries after which a sign-in code is void."""
    confirm_link_lifetime: timedelta = timedelta(days=7)
    reset_link_lifetime: timedelta = timedelta(hours=1)
    change_email_link_lifetime: timedelta = timedelta(days=1)
    request_floor: timedelta = timedelta(milliseconds=250)
    """A request for a link answers no sooner than this, known address or not, so its time
    does not tell whether the address is registered."""
    base_url: str = "http://localhost:8000"
    """Where the links in the mail point (``{base_url}/login/link?token=...``)."""
    login_attempts_per_account: int = 10
    """Login attempts per account within ``login_window``; past them the account is locked
    for ``lockout`` (its sessions end; a reset link still gets the person in)."""
    login_attempts_per_client: int = 100
    """Login attempts per client address within ``login_window``, whatever the account."""
    login_window: timedelta = timedelta(minutes=15)
    requests_per_client: int = 60
    """Unauthenticated requests of one kind (sign-up, login, link, reset) per client address
    within ``login_window`` (``Accounts.allow_request``; the HTTP service answers 429)."""
    requests_per_address: int = 10
    """Such requests naming one email address within ``login_window``, registered or not."""
    lockout: timedelta = timedelta(minutes=15)
    min_password_length: int = 12
    """Passwords are at least this long (and at most 1024 characters)."""
    min_password_score: int = 3
    """The least zxcvbn strength score (0 to 4) a new password must reach."""
    signup_by_link: bool = False
    """A sign-in link asked for an address nobody has registers it first (as phx.gen.auth
    1.8 does): the person exists, unconfirmed, until the link is used. Off by default."""
    smtp_url: str | None = None
    """Where ``peoplelog mail send-pending`` delivers: ``smtp://host:port``, ``smtps://…``,
    ``file:///a/directory`` or ``console:`` (``PEOPLELOG_SMTP_URL``)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AccountSettings:
        """The defaults, with each ``PEOPLELOG_<FIELD>`` set in ``environ`` (default: the
        process environment) applied; a value that is no duration is a
        ``ConfigurationError`` naming the variable."""
        env = os.environ if environ is None else environ
        given: dict[str, Any] = {}
        for field in fields(cls):
            name = f"PEOPLELOG_{field.name.upper()}"
            value = env.get(name)
            if value is None or not value.strip():
                continue
            if field.name == "base_url":
                given[field.name] = _base_url(name, value.strip())
                continue
            if field.name == "smtp_url":
                given[field.name] = value.strip()
                continue
            if isinstance(getattr(cls, field.name, None), bool):
                flag = value.strip().lower()
                if flag not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ConfigurationError(f"{name}: give true or false")
                given[field.name] = flag in ("1", "true", "yes", "on")
                continue
            if isinstance(getattr(cls, field.name, None), int):
                if not value.strip().isdigit():
                    raise ConfigurationError(f"{name}: give a whole number")
                given[field.name] = int(value)
                continue
            try:
                given[field.name] = parse_duration(value)
            except ValueError as exc:
                raise ConfigurationError(f"{name}: {exc}") from None
        return cls(**given)


def _base_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ConfigurationError(f"{name}: give an http:// or https:// URL")
    return value.rstrip("/")
