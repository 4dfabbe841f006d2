"""``python -m bench._http_servers KIND PORT CONNINFO [KEYRING]``: one HTTP server of the
``http`` section, alone in its process, under uvicorn with the settings every server of
the section shares (``UVICORN``).

KIND is ``peoplelog`` (``create_app`` on ``Accounts``: ``GET /v1/me``), ``starlette`` (a
bare Starlette app: ``GET /v1/me`` doing the raw indexed SELECT in the threadpool, and
``GET /ping`` without the database, to measure the load generator's ceiling) or
``fastapi-users`` (its documented set-up with the database strategy: ``GET /users/me``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["HTTP", "POOL_SIZE", "RAW_CHECK", "UVICORN", "main"]

POOL_SIZE = 8
"""Database connections per server: ``create_app``'s own default pool size, for all three."""
HTTP = "httptools"
UVICORN: dict[str, Any] = {"workers": 1, "access_log": False, "log_level": "warning",
                           "http": HTTP}
"""The same for every server; the event loop is uvicorn's default (``auto``)."""

RAW_CHECK = ("SELECT seal, seal_key, session_id, person_id, kind, epoch, authenticated_at,"
             " last_used_at, expires_at, idle_seconds FROM account_sessions WHERE lookup = %s")
"""The accounts section's raw baseline: the session's row by its unique lookup digest."""


def peoplelog_app(conninfo: str, keyring_file: str) -> tuple[Any, Any]:
    """The service on ``Accounts`` with a pool of ``POOL_SIZE``, as ``create_app`` opens
    one; (app, what to close)."""
    from peoplelog.accounts import Accounts, AccountSettings  # noqa: PLC0415
    from peoplelog.fields import Keyring  # noqa: PLC0415
    from peoplelog.http import HttpSettings, create_app  # noqa: PLC0415
    from peoplelog.ledger import Database, Ledger  # noqa: PLC0415

    accounts = Accounts(Ledger(Database(conninfo, pool_size=POOL_SIZE),
                               Keyring.load(keyring_file)), AccountSettings())
    return create_app(accounts, settings=HttpSettings(secure_cookies=False)), accounts.close


def starlette_app(conninfo: str) -> Any:
    """No FastAPI: one sync endpoint (Starlette runs it in its threadpool, as FastAPI runs
    peoplelog's) with the token's lookup digest, the raw SELECT on a psycopg
    ``ConnectionPool`` like the ``Database``'s (autocommit, ``POOL_SIZE``, binary results),
    and a small JSON body."""
    from psycopg_pool import ConnectionPool  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse, PlainTextResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from peoplelog.accounts import token_digests  # noqa: PLC0415
    from peoplelog.schema import InvalidToken  # noqa: PLC0415

    pool: ConnectionPool[Any] = ConnectionPool(conninfo, min_size=1, max_size=POOL_SIZE,
                                               kwargs={"autocommit": True}, open=False,
                                               name="bench-starlette")
    refused = {"detail": "invalid token"}

    def me(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return JSONResponse(refused, 401)
        try:
            lookup = token_digests(token.strip()).lookup
        except InvalidToken:
            return JSONResponse(refused, 401)
        with pool.connection() as conn:
            row = conn.execute(RAW_CHECK, (lookup,), binary=True).fetchone()
        if row is None:
            return JSONResponse(refused, 401)
        return JSONResponse({"kind": row[4], "person_id": str(row[3]),
                             "session_id": str(row[2]), "expires_at": row[8].isoformat()})

    async def ping(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        pool.open(wait=True)
        try:
            yield
        finally:
            pool.close()

    return Starlette(routes=[Route("/v1/me", me), Route("/ping", ping)], lifespan=lifespan)


def main(argv: list[str]) -> int:
    import uvicorn  # noqa: PLC0415

    kind, port, conninfo = argv[0], int(argv[1]), argv[2]
    close: Any = None
    if kind == "peoplelog":
        app, close = peoplelog_app(conninfo, argv[3])
    elif kind == "starlette":
        app = starlette_app(conninfo)
    elif kind == "fastapi-users":
        from ._fastapi_users import users_me_app  # noqa: PLC0415

        app = users_me_app(conninfo, POOL_SIZE)
    else:
        raise SystemExit(f"unknown server {kind!r}")
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN)
    finally:
        if close is not None:
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
