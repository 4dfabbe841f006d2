"""One ASGI middleware for every response: security headers, the body size limit and the
access log (method, route, status, milliseconds; never a token, cookie, address, query
string or body)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._problems import problem

__all__ = ["CSP", "ServiceMiddleware"]

_access = logging.getLogger("peoplelog.http.access")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
"""No script at all, styles and images from this site only, forms post here only.
``Referrer-Policy: same-origin`` keeps a page's URL (a link's token) from other sites but
lets the browser name this site as a form's origin (``no-referrer`` would send
``Origin: null``, and every form would be refused as cross-site)."""

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class _TooLarge(Exception):
    pass


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, access_log: bool, hsts: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.access_log = access_log
        self.headers = [*_HEADERS, _NO_STORE, *([_HSTS] if hsts else [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            status = 413
            await self._too_large(scope, receive, send)
            self._log(scope, status, started)
            return
        seen = 0
        headers = self.headers
        is_static = scope["path"].startswith("/static/")

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [h for h in headers if not (is_static and h is _NO_STORE)]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited, send_with_headers)
        except _TooLarge:
            status = 413
            await self._too_large(scope, receive, send)
        finally:
            self._log(scope, status, started)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "payload_too_large",
                           f"the body is larger than {self.max_body} bytes")
        response.headers["connection"] = "close"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await response(scope, receive, send_with_headers)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        if not self.access_log or not _access.isEnabledFor(logging.INFO):
            return
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "-"
        _access.info(json.dumps({"method": scope.get("method"), "route": path,
                                 "status": status,
                                 "ms": round((time.perf_counter() - started) * 1000, 2)}))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
