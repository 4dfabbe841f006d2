"""The service: the API, the pages, health and readiness, one error model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.staticfiles import StaticFiles

from peoplelog.schema import DatabaseUnavailable, PeoplelogError

from . import _admin, _api, _pages
from ._middleware import ServiceMiddleware
from ._problems import PROBLEM_RESPONSES, error_handler, install_handlers, problem
from ._settings import HttpSettings

if TYPE_CHECKING:
    from peoplelog.accounts import Accounts

__all__ = ["create_app", "use_accounts"]

_STATIC = Path(__file__).parent / "static"
_DESCRIPTION = """Accounts (sign-up, login, sessions, links, access tokens), people
administration and key-free audit for peoplelog. Callers: people by session cookie or
bearer token; services by API key (`Authorization: Bearer plk1_...`) holding the
operation's permission. Errors are RFC 9457 problem details with a stable `kind`."""


def use_accounts(app: Any, accounts: Accounts, settings: HttpSettings | None = None) -> None:
    """Let ``current_scope`` and ``require_permission`` work in ``app`` (any FastAPI or
    Starlette app): they check tokens against ``accounts``, and their refusals (any
    ``PeoplelogError``) answer as problem documents with the status of their kind."""
    app.state.peoplelog_accounts = accounts
    app.state.peoplelog_http = settings or HttpSettings.from_environment()
    app.add_exception_handler(PeoplelogError, error_handler(
        int(accounts.settings.login_window.total_seconds())))


def create_app(accounts: Accounts | None = None, *, settings: HttpSettings | None = None,
               database_url: str | None = None, pool_size: int = 8) -> FastAPI:
    """The peoplelog service. With ``accounts`` the app uses it (and leaves closing it to
    the caller); without (and unless ``use_accounts`` gives it one first), it opens one at
    start-up from the environment's database and keyring (``Accounts.open``; the embedded
    PostgreSQL by default) and closes it at shutdown."""
    http_settings = settings or HttpSettings.from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        given = getattr(app.state, "peoplelog_accounts", None)
        if given is not None:  # given, or set by use_accounts first: the caller closes it
            try:
                yield
            finally:  # but the asyncio pool of the token checks lives in this loop
                await given.ledger.database.close_async()
            return
        from peoplelog.accounts import Accounts  # noqa: PLC0415

        opened = Accounts.open(database_url, pool_size=pool_size)
        use_accounts(app, opened, http_settings)
        try:
            yield
        finally:
            await opened.ledger.database.close_async()
            opened.close()

    from peoplelog import __version__  # noqa: PLC0415

    app = FastAPI(title="peoplelog", version=__version__, description=_DESCRIPTION,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.peoplelog_http = http_settings
    app.state.peoplelog_templates = _pages.templates_for(http_settings)
    if accounts is not None:
        use_accounts(app, accounts, http_settings)
    window = 900 if accounts is None else int(accounts.settings.login_window.total_seconds())
    install_handlers(app, window)
    app.add_middleware(ServiceMiddleware, max_body=http_settings.max_body,
                       access_log=http_settings.access_log, hsts=http_settings.secure_cookies)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.include_router(_api.router)
    app.include_router(_admin.router)
    app.include_router(_pages.router)

    @app.get("/health", tags=["service"], summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], summary="Readiness: PostgreSQL answers",
             responses={"503": PROBLEM_RESPONSES["503"]})
    def ready(request: Request) -> JSONResponse:
        accounts_now = getattr(request.app.state, "peoplelog_accounts", None)
        try:
            if accounts_now is None:
                raise DatabaseUnavailable("the service is starting")
            accounts_now.ledger.database.run(lambda conn: conn.execute("SELECT 1"))
        except PeoplelogError as exc:
            return problem(503, exc.kind, "not ready: the database does not answer")
        return JSONResponse({"status": "ready"})

    return app
