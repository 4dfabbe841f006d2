"""Where the ledger lives: connections to PostgreSQL, with retries.

Driver errors are translated by ``_driver`` (the one place that mapping is made); the
embedded server is started by ``_embedded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from peoplelog.schema import DatabaseUnavailable

from ._driver import RETRYABLE, connect_error, translate_errors, translated
from ._embedded import embedded_database_url
from ._settings import Settings

__all__ = ["Conn", "Cursor", "Database", "describe", "tables_distributed"]

log = logging.getLogger("peoplelog")
T = TypeVar("T")
Conn = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]

_CONNECT_TIMEOUT = 5
_LOST_WINDOW = 15.0
"""For how long (seconds) work whose connection was lost is retried on a new one: long
enough for a server restart, short enough to report an outage."""


class _Backoff:
    """When and after how long work is tried again: pauses from 2 ms doubling to 250 ms,
    with jitter, and the window of ``_LOST_WINDOW`` seconds within which a lost
    connection is retried (it opens at the first loss, or at once with ``from_start``).
    The one retry policy of the store."""

    __slots__ = ("_deadline", "_delay")

    def __init__(self, *, from_start: bool = False) -> None:
        self._delay = 0.002
        self._deadline = time.monotonic() + _LOST_WINDOW if from_start else None

    def within_lost_window(self) -> bool:
        """Whether a connection lost now may still be retried."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + _LOST_WINDOW
        return now <= self._deadline

    def pause(self) -> None:
        time.sleep(self._delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
        self._delay = min(self._delay * 2, 0.25)


def describe(conninfo: str) -> str:
    """Where a connection string points, without any password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    where = host if str(host).startswith("/") else f"{host}:{port}"
    return f"{where}/{params.get('dbname') or params.get('user') or ''}"


def tables_distributed(conn: Conn) -> bool:
    """Whether this database's ``people`` table is distributed on a Citus cluster."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is None:
        return False
    return conn.execute("SELECT 1 FROM pg_dist_partition"
                        " WHERE logicalrelid = to_regclass('people')").fetchone() is not None


class Database:
    """Connections to one PostgreSQL database: a pool, or one connection for the CLI.

    With a pool, one of its connections is kept checked out as the *lane*: whoever finds
    it free uses it without the pool's bookkeeping (most calls, in a single-threaded
    application); concurrent callers get pooled connections as usual.
    """

    def __init__(self, conninfo: str, *, pool_size: int = 4) -> None:
        self.conninfo = conninfo
        self.where = describe(conninfo)
        self._at = f" at {self.where}"
        self._single: Conn | None = self._connect()
        self._pool: ConnectionPool[Conn] | None = None
        self._lane: Conn | None = None
        self._lane_cursor: Cursor | None = None
        self._lane_lock = threading.Lock()
        self._pool_size = pool_size
        self._async: tuple[asyncio.AbstractEventLoop, AsyncConnectionPool[Any],
                           asyncio.Lock] | None = None
        self._distributed: bool | None = None
        if pool_size > 1:
            self._single.close()
            self._single = None
            self._pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT},
                open=False,
                name="peoplelog",
            )
            try:
                self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT * 2)
            except PoolTimeout:
                raise DatabaseUnavailable(
                    f"cannot connect to PostgreSQL at {self.where}: pool timed out"
                ) from None

    @property
    def distributed(self) -> bool:
        """Whether the ledger's tables are distributed on a Citus cluster (``people`` is
        in ``pg_dist_partition``): a few reads then take two routed round trips instead
        of one join across shards. Asked once per ``Database``."""
        if self._distributed is None:
            self._distributed = self.run(tables_distributed, retry_lost=True)
        return self._distributed

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int = 4) -> Database:
        url = settings.database_url or embedded_database_url(settings.home)
        return cls(url, pool_size=pool_size)

    def _connect(self) -> Conn:
        try:
            return psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            raise connect_error(exc, self.where) from None

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        if self._pool is not None and self._lane_lock.acquire(blocking=False):
            try:
                yield self._take_lane(self._pool)
            finally:
                self._settle_lane(self._pool)
                self._lane_lock.release()
            return
        if self._pool is not None:
            try:
                with self._pool.connection(timeout=_CONNECT_TIMEOUT * 6) as conn:
                    yield conn
            except PoolTimeout:
                raise DatabaseUnavailable(
                    f"no connection to PostgreSQL at {self.where} became available"
                ) from None
            return
        if self._single is None or self._single.closed or self._single.broken:
            self._single = self._connect()
        yield self._single

    def _take_lane(self, pool: ConnectionPool[Conn]) -> Conn:
        lane = self._lane
        if lane is not None and not lane.closed and not lane.broken:
            return lane
        if lane is not None:
            self._lane = self._lane_cursor = None
            pool.putconn(lane)  # the pool replaces a broken connection
        try:
            lane = pool.getconn(timeout=_CONNECT_TIMEOUT * 6)
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"no connection to PostgreSQL at {self.where} became available"
            ) from None
        self._lane = lane
        self._lane_cursor = lane.cursor(binary=True)
        return lane

    def _settle_lane(self, pool: ConnectionPool[Conn]) -> None:
        """Give the lane back to the pool unless it is idle and usable, e.g. after an
        interrupted statement (the pool rolls back or replaces it)."""
        lane = self._lane
        if lane is None:
            return
        if lane.closed or lane.broken or lane.pgconn.transaction_status != TransactionStatus.IDLE:
            self._lane = self._lane_cursor = None
            pool.putconn(lane)

    def run(self, work: Callable[[Conn], T], *, retry_lost: bool = False) -> T:
        """Run ``work`` on a connection (autocommit), with driver errors translated.

        With ``retry_lost`` (for work that only reads) a lost connection is retried on a
        new one, e.g. when the pool held connections a restarted server had dropped.
        """
        backoff = _Backoff()
        while True:
            try:
                return self._once(work)
            except DatabaseUnavailable:
                if not retry_lost or not backoff.within_lost_window():
                    raise
                log.warning("connection lost; retrying a read")
            backoff.pause()

    def fetch_one(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> Any:
        """The first row (or None) of one read-only statement, values in binary format; a
        lost connection is retried as by ``run(..., retry_lost=True)``. Every email lookup
        comes here, so a free lane is used in place, through its one cursor, with nothing
        wrapped around it."""
        pool = self._pool
        if pool is not None and self._lane is not None and self._lane_lock.acquire(
                blocking=False):
            try:
                cursor = self._lane_cursor
                if cursor is not None:
                    cursor.execute(query, params)
                    return cursor.fetchone()
            except psycopg.Error as exc:
                self._settle_lane(pool)
                error = translated(exc, self._at)
                if not isinstance(error, DatabaseUnavailable):
                    raise error from None
            except BaseException:
                self._settle_lane(pool)
                raise
            finally:
                self._lane_lock.release()
        return self.run(lambda conn: conn.execute(query, params, binary=True).fetchone(),
                        retry_lost=True)

    async def fetch_one_async(self, query: str, params: Sequence[Any]) -> Any:
        """``fetch_one`` for an event loop (the HTTP service's session checks): the
        statement runs on an asyncio connection pool of the same size, opened in the
        running loop on first use (``close_async`` closes it), so the loop waits for
        PostgreSQL without a thread."""
        pool = await self._async_pool()
        try:
            async with pool.connection(timeout=_CONNECT_TIMEOUT * 6) as conn:
                cursor = await conn.execute(query, params, binary=True)
                return await cursor.fetchone()
        except psycopg.Error as exc:
            raise translated(exc, self._at) from None
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL{self._at}: pool timed out") from None

    async def _async_pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        current = self._async
        if current is None or current[0] is not loop:
            current = self._async = (loop, AsyncConnectionPool(
                self.conninfo, min_size=1, max_size=max(self._pool_size, 1),
                kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT},
                open=False, name="peoplelog-async"), asyncio.Lock())
        _, pool, opening = current
        if pool.closed:
            async with opening:
                if pool.closed:
                    try:
                        await pool.open(wait=True, timeout=_CONNECT_TIMEOUT * 2)
                    except PoolTimeout:
                        raise DatabaseUnavailable(
                            f"cannot connect to PostgreSQL{self._at}: pool timed out"
                        ) from None
        return pool

    async def close_async(self) -> None:
        """Close the asyncio pool of ``fetch_one_async`` (from its loop, e.g. at an
        application's shutdown); it opens again on next use."""
        current, self._async = self._async, None
        if current is not None and current[0] is asyncio.get_running_loop():
            await current[1].close()

    def _once(self, work: Callable[[Conn], T]) -> T:
        """``work`` on the lane when it is free (no context managers: this is the path
        of every lookup), else as ``connection`` gives."""
        pool = self._pool
        if pool is not None and self._lane_lock.acquire(blocking=False):
            try:
                conn = self._take_lane(pool)
                try:
                    return work(conn)  # returned normally: the lane is idle again
                except psycopg.Error as exc:
                    self._settle_lane(pool)
                    raise translated(exc, self._at) from None
                except BaseException:
                    self._settle_lane(pool)
                    raise
            finally:
                self._lane_lock.release()
        with self.connection() as conn, translate_errors(self._at):
            return work(conn)

    def autocommit(self, work: Callable[[Cursor], T], *,
                   resume: Callable[[Conn], T | None], attempts: int = 12) -> T:
        """Run ``work`` on a cursor of an autocommit connection (binary results): each
        statement commits on its own, so ``work`` may write with one statement at most.

        Deadlocks and serialization failures are retried (up to ``attempts`` tries in all).
        A connection lost at any point leaves the outcome unknown: within ``_LOST_WINDOW``
        seconds ``resume`` then looks, on a new connection, for the earlier attempt's
        effect and returns its result, or None to run ``work`` again.
        """
        backoff = _Backoff()
        lost = False
        for attempt in itertools.count(1):
            try:
                if lost:
                    done = self.run(resume)
                    if done is not None:
                        return done
                return self._on_cursor(work)
            except RETRYABLE as exc:
                if attempt >= attempts:
                    raise translated(exc, self._at) from None
            except DatabaseUnavailable:
                if attempts == 1 or not backoff.within_lost_window():
                    raise
                lost = True
                log.warning("connection lost; retrying (attempt %d)", attempt)
            backoff.pause()
        raise AssertionError("unreachable")  # pragma: no cover

    def _on_cursor(self, work: Callable[[Cursor], T]) -> T:
        """``work`` on the lane's cursor when the lane is free, else on a new cursor of
        a connection from ``connection``; driver errors translated, except deadlocks and
        serialization failures (for the caller to retry)."""
        pool = self._pool
        if pool is not None and self._lane_lock.acquire(blocking=False):
            try:
                cursor = self._lane_cursor  # a lane lost since fails on use, and is replaced
                if cursor is None:
                    self._take_lane(pool)
                    cursor = self._lane_cursor
                    assert cursor is not None  # set with the lane
                try:
                    return work(cursor)
                except RETRYABLE:
                    raise
                except psycopg.Error as exc:
                    self._settle_lane(pool)
                    raise translated(exc, self._at) from None
                except BaseException:
                    self._settle_lane(pool)
                    raise
            finally:
                self._lane_lock.release()
        with self.connection() as conn, conn.cursor(binary=True) as cursor:
            try:
                return work(cursor)
            except RETRYABLE:
                raise
            except psycopg.Error as exc:
                raise translated(exc, self._at) from None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            with self._lane_lock:
                if self._lane is not None:
                    self._pool.putconn(self._lane)
                    self._lane = self._lane_cursor = None
            self._pool.close()
        if self._single is not None:
            self._single.close()

    def transaction(self, work: Callable[[Conn], T], *, attempts: int = 12,
                    resume: Callable[[Conn], T | None] | None = None) -> T:
        """Run ``work`` in one transaction, retrying serialization failures and deadlocks
        (up to ``attempts`` tries in all; ``attempts=1`` retries nothing).

        A connection lost before COMMIT was sent is retried for up to ``_LOST_WINDOW``
        seconds: nothing can have been stored. One lost during COMMIT leaves the outcome
        unknown: the transaction is retried only when ``resume`` is given (it looks for the
        earlier attempt's effect and returns its result, or None to run ``work`` again);
        otherwise ``DatabaseUnavailable`` says that the outcome is unknown.
        """
        backoff = _Backoff(from_start=True)
        lost = False
        for attempt in itertools.count(1):
            committing = False
            try:
                with translate_errors(self._at):
                    try:
                        with self.connection() as conn:
                            if lost and resume is not None:
                                done = resume(conn)
                                if done is not None:
                                    return done
                            with conn.transaction():
                                result = work(conn)
                                committing = True  # leaving the block sends COMMIT
                            return result
                    except RETRYABLE:
                        if attempt >= attempts:
                            raise
            except DatabaseUnavailable as exc:
                if committing and resume is None:
                    raise DatabaseUnavailable(
                        f"{exc.message}; the connection was lost during COMMIT, so whether "
                        "the write was stored is unknown: check before writing it again"
                    ) from None
                if attempts == 1 or not backoff.within_lost_window():
                    raise
                lost = True
                log.warning("connection lost; retrying (attempt %d)", attempt)
            backoff.pause()
        raise AssertionError("unreachable")  # pragma: no cover
