"""The peer for the session check: fastapi-users' database strategy on its PostgreSQL
backend (SQLAlchemy 2 with asyncpg), on the same server, as a request does it: a session
from the pool, ``DatabaseStrategy.read_token`` (the token's row, then its user through the
user manager). Installed only with the ``bench`` extra.

The ``accounts`` section times ``read_token`` in process; the ``http`` section serves
fastapi-users' own ``GET /users/me`` (``users_me_app``) with the same models and strategy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

__all__ = ["fastapi_users_check_latencies", "fastapi_users_installed", "fastapi_users_tokens",
           "users_me_app"]

_USERS = 20
_LIFETIME = 3600


def _asyncpg_url(conninfo: str) -> str:
    """The SQLAlchemy URL of a libpq connection string (a socket directory as ``host``)."""
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.get("user", "postgres")))
    password = params.get("password")
    auth = user if password is None else f"{user}:{quote(str(password))}"
    host = str(params.get("host", "127.0.0.1"))
    port = params.get("port", 5432)
    database = quote(str(params.get("dbname", "postgres")))
    if host.startswith("/"):
        return f"postgresql+asyncpg://{auth}@/{database}?host={quote(host)}&port={port}"
    return f"postgresql+asyncpg://{auth}@{host}:{port}/{database}"


def fastapi_users_installed() -> bool:
    try:
        import fastapi_users  # noqa: F401, PLC0415
        import fastapi_users_db_sqlalchemy  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@functools.cache
def _models() -> tuple[Any, Any, Any, Any]:
    """(Base, User, AccessToken, UserManager): the tables "user" and "accesstoken" as the
    fastapi-users documentation declares them, once per process."""
    from fastapi_users import BaseUserManager, UUIDIDMixin  # noqa: PLC0415
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID  # noqa: PLC0415
    from fastapi_users_db_sqlalchemy.access_token import (  # noqa: PLC0415
        SQLAlchemyBaseAccessTokenTableUUID,
    )
    from sqlalchemy.orm import DeclarativeBase  # noqa: PLC0415

    class Base(DeclarativeBase):
        pass

    class User(SQLAlchemyBaseUserTableUUID, Base):  # tables "user" and "accesstoken"
        pass

    class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
        pass

    class UserManager(UUIDIDMixin, BaseUserManager[Any, uuid.UUID]):
        reset_password_token_secret = "bench"  # noqa: S105 - unused by a token check
        verification_token_secret = "bench"  # noqa: S105

    return Base, User, AccessToken, UserManager


def _strategy(session: Any) -> Any:
    from fastapi_users.authentication.strategy.db import DatabaseStrategy  # noqa: PLC0415
    from fastapi_users_db_sqlalchemy.access_token import (  # noqa: PLC0415
        SQLAlchemyAccessTokenDatabase,
    )

    return DatabaseStrategy(SQLAlchemyAccessTokenDatabase(session, _models()[2]),
                            lifetime_seconds=_LIFETIME)


async def _tokens(sessions: Any, count: int) -> list[str]:
    """``count`` active, verified users, one access token each (the tables created)."""
    from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase  # noqa: PLC0415

    base, user_table, _, _ = _models()
    async with sessions() as session:
        conn = await session.connection()
        await conn.run_sync(base.metadata.create_all)
        await session.commit()
    tokens: list[str] = []
    async with sessions() as session:
        users: Any = SQLAlchemyUserDatabase(session, user_table)
        for i in range(count):
            user = await users.create({
                "email": f"fu-{i}-{uuid.uuid4().hex[:6]}@example.org",
                "hashed_password": "x", "is_active": True, "is_verified": True})
            tokens.append(await _strategy(session).write_token(user))
    return tokens


def fastapi_users_tokens(conninfo: str, count: int = _USERS) -> list[str] | None:
    """Access tokens of ``count`` new fastapi-users users in the database, or None when
    fastapi-users is not installed."""
    if not fastapi_users_installed():
        return None

    async def made() -> list[str]:
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

        engine = create_async_engine(_asyncpg_url(conninfo), pool_size=1)
        try:
            return await _tokens(async_sessionmaker(engine, expire_on_commit=False), count)
        finally:
            await engine.dispose()

    return asyncio.run(made())


def fastapi_users_check_latencies(conninfo: str, count: int) -> list[float] | None:
    """Microseconds per token check by fastapi-users, or None when it is not installed."""
    if not fastapi_users_installed():
        return None
    return asyncio.run(_latencies(_asyncpg_url(conninfo), count))


async def _latencies(url: str, count: int) -> list[float]:
    from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

    _, user_table, _, user_manager = _models()
    engine = create_async_engine(url, pool_size=2)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        tokens = await _tokens(sessions, _USERS)
        latencies: list[float] = []
        for i in range(count + 200):
            started = time.perf_counter_ns()
            async with sessions() as session:  # what one request does
                found = await _strategy(session).read_token(
                    tokens[i % len(tokens)],
                    user_manager(SQLAlchemyUserDatabase(session, user_table)))
            elapsed = (time.perf_counter_ns() - started) / 1000
            if found is None:
                raise RuntimeError("fastapi-users did not find its own token")
            if i >= 200:  # the first 200 warm up
                latencies.append(elapsed)
        return latencies
    finally:
        await engine.dispose()


def users_me_app(conninfo: str, pool_size: int) -> Any:
    """fastapi-users' documented set-up with its database strategy: ``FastAPIUsers`` with
    a bearer transport, the users router (``GET /users/me``), an async SQLAlchemy session
    per request from an engine pool of ``pool_size`` asyncpg connections."""
    from fastapi import Depends, FastAPI  # noqa: PLC0415
    from fastapi_users import FastAPIUsers, schemas  # noqa: PLC0415
    from fastapi_users.authentication import (  # noqa: PLC0415
        AuthenticationBackend,
        BearerTransport,
    )
    from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase  # noqa: PLC0415
    from fastapi_users_db_sqlalchemy.access_token import (  # noqa: PLC0415
        SQLAlchemyAccessTokenDatabase,
    )
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

    _, user_table, access_token_table, user_manager = _models()
    engine = create_async_engine(_asyncpg_url(conninfo), pool_size=pool_size, max_overflow=0)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_async_session() -> AsyncIterator[Any]:
        async with sessions() as session:
            yield session

    # Defaults, not Annotated: these functions are local, and FastAPI resolves string
    # annotations in the module's globals.
    session_dependency = Depends(get_async_session)

    async def get_user_db(session: Any = session_dependency) -> AsyncIterator[Any]:
        yield SQLAlchemyUserDatabase(session, user_table)

    async def get_access_token_db(session: Any = session_dependency) -> AsyncIterator[Any]:
        yield SQLAlchemyAccessTokenDatabase(session, access_token_table)

    async def get_user_manager(
            user_db: Any = Depends(get_user_db)) -> AsyncIterator[Any]:  # noqa: B008
        yield user_manager(user_db)

    def get_database_strategy(
            access_token_db: Any = Depends(get_access_token_db)) -> Any:  # noqa: B008
        from fastapi_users.authentication.strategy.db import DatabaseStrategy  # noqa: PLC0415

        return DatabaseStrategy(access_token_db, lifetime_seconds=_LIFETIME)

    class UserRead(schemas.BaseUser[uuid.UUID]):
        pass

    class UserUpdate(schemas.BaseUserUpdate):
        pass

    backend = AuthenticationBackend(name="database",
                                    transport=BearerTransport(tokenUrl="auth/login"),
                                    get_strategy=get_database_strategy)
    users = FastAPIUsers[Any, uuid.UUID](get_user_manager, [backend])

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(users.get_users_router(UserRead, UserUpdate), prefix="/users")
    return app
