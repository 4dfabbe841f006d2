"""The peer for the session check: fastapi-users' database strategy on its PostgreSQL
backend (SQLAlchemy 2 with asyncpg), on the same server, as a request does it: a session
from the pool, ``DatabaseStrategy.read_token`` (the token's row, then its user through the
user manager). Installed only with the ``bench`` extra."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

__all__ = ["fastapi_users_check_latencies"]

_USERS = 20


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


def fastapi_users_check_latencies(conninfo: str, count: int) -> list[float] | None:
    """Microseconds per token check by fastapi-users, or None when it is not installed."""
    try:
        import fastapi_users  # noqa: F401, PLC0415
        import fastapi_users_db_sqlalchemy  # noqa: F401, PLC0415
    except ImportError:
        return None
    return asyncio.run(_latencies(_asyncpg_url(conninfo), count))


async def _latencies(url: str, count: int) -> list[float]:
    from fastapi_users import BaseUserManager, UUIDIDMixin  # noqa: PLC0415
    from fastapi_users.authentication.strategy.db import DatabaseStrategy  # noqa: PLC0415
    from fastapi_users_db_sqlalchemy import (  # noqa: PLC0415
        SQLAlchemyBaseUserTableUUID,
        SQLAlchemyUserDatabase,
    )
    from fastapi_users_db_sqlalchemy.access_token import (  # noqa: PLC0415
        SQLAlchemyAccessTokenDatabase,
        SQLAlchemyBaseAccessTokenTableUUID,
    )
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415
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

    engine = create_async_engine(url, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        def strategy(session: Any) -> Any:
            return DatabaseStrategy(SQLAlchemyAccessTokenDatabase(session, AccessToken),
                                    lifetime_seconds=3600)

        tokens: list[str] = []
        async with sessions() as session:
            users = SQLAlchemyUserDatabase(session, User)
            for i in range(_USERS):
                user = await users.create({
                    "email": f"fu-{i}-{uuid.uuid4().hex[:6]}@example.org",
                    "hashed_password": "x", "is_active": True, "is_verified": True})
                tokens.append(await strategy(session).write_token(user))
        latencies: list[float] = []
        for i in range(count + 200):
            started = time.perf_counter_ns()
            async with sessions() as session:  # what one request does
                found = await strategy(session).read_token(
                    tokens[i % len(tokens)], UserManager(SQLAlchemyUserDatabase(session, User)))
            elapsed = (time.perf_counter_ns() - started) / 1000
            if found is None:
                raise RuntimeError("fastapi-users did not find its own token")
            if i >= 200:  # the first 200 warm up
                latencies.append(elapsed)
        return latencies
    finally:
        await engine.dispose()
