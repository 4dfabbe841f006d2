"""Who is calling: the request's bearer token or session cookie turned into a ``Scope``.

For applications too: ``Depends(current_scope)`` in any FastAPI route of an app that
``use_accounts(app, accounts)`` (or ``create_app``) set up; ``require_permission`` for
routes that only services holding an API key's permission may call."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request

from peoplelog.accounts import Client, Scope
from peoplelog.schema import ConfigurationError, NotPermitted, Unauthenticated

from ._settings import HttpSettings

if TYPE_CHECKING:
    from peoplelog.accounts import Accounts

__all__ = ["SAFE_METHODS", "accounts_of", "client_of", "current_scope", "optional_scope",
           "person_scope", "require_permission", "same_origin", "settings_of"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_USER_AGENT_MAX = 256


def accounts_of(request: Request) -> Accounts:
    accounts = getattr(request.app.state, "peoplelog_accounts", None)
    if accounts is None:
        raise ConfigurationError("this app has no peoplelog accounts: call "
                                 "peoplelog.http.use_accounts(app, accounts) at start-up")
    return accounts  # type: ignore[no-any-return]


def settings_of(request: Request) -> HttpSettings:
    return getattr(request.app.state, "peoplelog_http", None) or HttpSettings()


def client_of(request: Request) -> Client:
    """The client address and user agent, for the session's details (stored encrypted)."""
    agent = request.headers.get("user-agent")
    host = None if request.client is None else request.client.host
    try:
        ip = None if host is None else str(ipaddress.ip_address(host))
    except ValueError:  # a Unix socket, a test client's name
        ip = None
    return Client(ip=ip,
                  user_agent=None if not agent else agent[:_USER_AGENT_MAX].strip() or None)


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from this site (``Origin``, else
    ``Referer``): a request with the session cookie but from another site is refused."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


def _token(request: Request) -> tuple[str, bool] | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("give the token as: Authorization: Bearer <token>")
        return value.strip(), False
    cookie = request.cookies.get(settings_of(request).session_cookie)
    return (cookie, True) if cookie else None


async def _scope(request: Request, *, required: bool) -> Scope | None:
    cached = getattr(request.state, "peoplelog_scope", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found = _token(request)
    if found is None:
        if required:
            raise Unauthenticated("authentication required")
        return None
    token, by_cookie = found
    accounts = accounts_of(request)
    scope = await accounts.check_bearer_async(token)  # the lookup waits on the loop
    if by_cookie and request.method not in SAFE_METHODS and not same_origin(request):
        raise NotPermitted("a request from another site with the session cookie was refused")
    request.state.peoplelog_scope = scope
    return scope


async def current_scope(request: Request) -> Scope:
    """The caller's ``Scope`` (a person's session or access token, or a service's API key);
    401 (``Unauthenticated``) without a valid one."""
    scope = await _scope(request, required=True)
    assert scope is not None
    return scope


async def optional_scope(request: Request) -> Scope | None:
    """The caller's ``Scope``, or None when the request carries no token."""
    return await _scope(request, required=False)


async def person_scope(request: Request) -> Scope:
    """The caller's scope when it is a person's (a session or an access token)."""
    scope = await current_scope(request)
    if scope.person_id is None or scope.service is not None:
        raise NotPermitted("only a person's session or access token can do this")
    return scope


def require_permission(permission: str) -> Callable[[Request], Awaitable[Scope]]:
    """A dependency: the caller's scope, when it holds ``permission`` (an API key's, e.g.
    ``people:read``); 403 otherwise. ``Depends(require_permission("people:erase"))``."""

    async def dependency(request: Request) -> Scope:
        scope = await current_scope(request)
        if not scope.allows(permission):
            raise NotPermitted(f"this needs the {permission} permission")
        return scope

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency
