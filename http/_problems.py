"""One error model: RFC 9457 problem details carrying the library's stable ``kind``, with
the HTTP status of each kind decided here and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from peoplelog.schema import PeoplelogError

__all__ = ["PROBLEM_RESPONSES", "STATUS_OF_KIND", "Problem", "error_handler",
           "install_handlers", "problem", "status_of"]

_log = logging.getLogger("peoplelog.http")

STATUS_OF_KIND: dict[str, int] = {
    "invalid_input": 422,
    "invalid_json": 400,
    "payload_too_large": 413,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "person_erased": 410,
    "unauthenticated": 401,
    "not_permitted": 403,
    "rate_limited": 429,
    "database_unavailable": 503,
    "projection_damaged": 503,
}
"""The status of each error kind; a kind not listed takes its nearest listed ancestor's,
and 500 when none is."""

_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
            413: "Content Too Large", 422: "Unprocessable Content",
            429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
"""The title of each status a problem may have (RFC 9110's reason phrases)."""

PROBLEM_TYPE = "urn:peoplelog:problem:"
"""A problem's ``type`` is this prefix and its kind (``urn:peoplelog:problem:rate_limited``)."""


class Problem(BaseModel):
    """RFC 9457 problem details, with the stable error ``kind``."""

    type: str
    title: str
    status: int
    detail: str
    kind: str
    errors: list[dict[str, Any]] | None = None


_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    str(status): {"model": Problem, "description": _PHRASES.get(status, "Error"),
                  "content": _CONTENT}
    for status in (400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 503)
}
"""Every operation may answer with these (declared so the OpenAPI document is complete)."""


def status_of(error: PeoplelogError) -> int:
    for cls in type(error).__mro__:
        status = STATUS_OF_KIND.get(vars(cls).get("kind", ""))
        if status is not None:
            return status
    return 500


def problem(status: int, kind: str, detail: str, *,
            errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(type=PROBLEM_TYPE + kind, title=_PHRASES.get(status, "Error"), status=status,
                   detail=detail, kind=kind, errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status,
                        media_type="application/problem+json", headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, never the value given (it may be a password)."""
    return [{"loc": [str(part) for part in error.get("loc", ())],
             "type": str(error.get("type", "")), "msg": str(error.get("msg", ""))}
            for error in exc.errors()]


def error_handler(window_seconds: int) -> Any:
    """The handler that answers a ``PeoplelogError`` as a problem document."""

    async def peoplelog_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PeoplelogError)
        status = status_of(exc)
        headers = None
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="peoplelog"'}
        elif status == 429:
            headers = {"Retry-After": str(window_seconds)}
        if status >= 500:
            _log.error("request failed: %s (%s)", type(exc).__name__, exc.kind)
            detail = ("the service is unavailable: try again later" if status == 503
                      else "the server could not do this")
            return problem(status, exc.kind, detail, headers=headers)
        return problem(status, exc.kind, exc.message, headers=headers)

    return peoplelog_error


def install_handlers(app: Any, window_seconds: int) -> None:
    """Answer every error as a problem document."""

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        if any(error["type"] == "json_invalid" for error in errors):
            return problem(400, "invalid_json", "the body is not valid JSON", errors=errors)
        return problem(422, "invalid_input", "the request does not match its schema",
                       errors=errors)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                400: "invalid_input"}.get(exc.status_code, "error")
        detail = (exc.detail if isinstance(exc.detail, str)
                  else _PHRASES.get(exc.status_code, "Error"))
        return problem(exc.status_code, kind, detail, headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("request failed: %s", type(exc).__name__)
        return problem(500, "error", "the server could not do this")

    app.add_exception_handler(PeoplelogError, error_handler(window_seconds))
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
