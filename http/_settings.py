"""How the HTTP service presents itself: cookies, limits, templates."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from peoplelog.schema import ConfigurationError

__all__ = ["HttpSettings"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class HttpSettings:
    """Each field's environment variable is ``PEOPLELOG_HTTP_`` + its name in capitals
    (``PEOPLELOG_HTTP_SECURE_COOKIES=false`` for local HTTP)."""

    secure_cookies: bool = True
    """Cookies carry ``Secure`` (and the session cookie the ``__Host-`` prefix). Turn off
    only for plain HTTP on localhost."""
    max_body: int = 64 * 1024
    """Request bodies larger than this many bytes are refused (413) before they are read."""
    templates: Path | None = None
    """A directory of templates that replace the built-in ones of the same name."""
    access_log: bool = True
    """One JSON line per request on the ``peoplelog.http.access`` logger: method, route,
    status, time. Never a token, cookie, address, query string or body."""

    @property
    def session_cookie(self) -> str:
        return "__Host-peoplelog-session" if self.secure_cookies else "peoplelog-session"

    @property
    def csrf_cookie(self) -> str:
        return "__Host-peoplelog-csrf" if self.secure_cookies else "peoplelog-csrf"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> HttpSettings:
        env = os.environ if environ is None else environ
        given: dict[str, object] = {}
        for name in ("secure_cookies", "access_log"):
            value = env.get(f"PEOPLELOG_HTTP_{name.upper()}", "").strip().lower()
            if value:
                if value not in _TRUE + _FALSE:
                    raise ConfigurationError(f"PEOPLELOG_HTTP_{name.upper()}: give true or false")
                given[name] = value in _TRUE
        body = env.get("PEOPLELOG_HTTP_MAX_BODY", "").strip()
        if body:
            if not body.isdigit() or int(body) < 1024:
                raise ConfigurationError("PEOPLELOG_HTTP_MAX_BODY: give a number of bytes, "
                                         "at least 1024")
            given["max_body"] = int(body)
        templates = env.get("PEOPLELOG_HTTP_TEMPLATES", "").strip()
        if templates:
            if not Path(templates).is_dir():
                raise ConfigurationError("PEOPLELOG_HTTP_TEMPLATES: not a directory")
            given["templates"] = Path(templates)
        return cls(**given)  # type: ignore[arg-type]
