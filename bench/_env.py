"""Where the benchmark runs: the server, throwaway databases, the machine description."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from peoplelog.schema import DISTRIBUTION_PLAN, apply_migrations, distribute_tables

__all__ = ["Server", "machine", "server"]

_PLACED = {p.table: p for p in DISTRIBUTION_PLAN}


@dataclass
class Server:
    """One PostgreSQL server, or a Citus coordinator (``workers`` then lists its worker
    nodes, and each database is made on every node and distributed as ``peoplelog init``
    does); every database the benchmark creates is dropped on close."""

    url: str
    kind: str
    created: list[str] = field(default_factory=list)
    workers: list[tuple[str, int]] = field(default_factory=list)
    coordinator: tuple[str, int] | None = None

    @property
    def cluster(self) -> bool:
        return bool(self.workers)

    def create_database(self, prefix: str, *, migrate: bool = True) -> str:
        name = f"plb_{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            if self.cluster:
                conn.execute("SET citus.enable_create_database_propagation = on")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = make_conninfo(self.url, dbname=name)
        if self.cluster:
            self._join_cluster(name, url)
        if migrate:
            with psycopg.connect(url, autocommit=True) as conn:
                apply_migrations(conn)
                distribute_tables(conn)
        return url

    def _join_cluster(self, name: str, url: str) -> None:
        for host, port in self.workers:
            with psycopg.connect(make_conninfo(self.url, host=host, port=port, dbname=name),
                                 autocommit=True) as worker:
                worker.execute("CREATE EXTENSION IF NOT EXISTS citus")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
            if self.coordinator is not None:
                conn.execute("SELECT citus_set_coordinator_host(%s, %s)", self.coordinator)
            for node in self.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", node)

    def place_like(self, conn: psycopg.Connection[Any], table: str, like: str | None,
                   column: str | None = None) -> None:
        """On a cluster, place a raw baseline table as ``like`` is placed (or distributed
        by ``column``), so each baseline writes where peoplelog writes."""
        if not self.cluster:
            return
        placement = _PLACED.get(like or "")
        column = column or (placement.column if placement else None)
        if placement is not None and placement.column is None:
            conn.execute("SELECT create_reference_table(%s)", (table,))
        elif column is not None:
            conn.execute("SELECT create_distributed_table(%s, %s)", (table, column))

    def drop_database(self, url: str) -> None:
        name = str(conninfo_to_dict(url)["dbname"])
        with psycopg.connect(self.url, autocommit=True) as conn:
            if self.cluster:
                conn.execute("SET citus.enable_create_database_propagation = on")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
        for host, port in self.workers:
            with contextlib.suppress(psycopg.Error), psycopg.connect(
                    make_conninfo(self.url, host=host, port=port, dbname="postgres"),
                    autocommit=True) as worker:
                worker.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop_database(make_conninfo(self.url, dbname=name))

    def settings(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                 "wal_level", "shared_buffers", "work_mem", "max_wal_size", "jit")
        with psycopg.connect(self.url, autocommit=True) as conn:
            return {n: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n)))
                           .fetchone()[0])  # type: ignore[index]
                    for n in names}


@contextlib.contextmanager
def server() -> Iterator[Server]:
    """``PEOPLELOG_DATABASE_URL`` when set, else an embedded pgserver in a temp dir."""
    url = os.environ.get("PEOPLELOG_DATABASE_URL")
    if url:
        found = Server(url, "PEOPLELOG_DATABASE_URL")
        _find_cluster(found)
        try:
            yield found
        finally:
            found.drop_all()
        return
    pgdata = Path(tempfile.mkdtemp(prefix="peoplelog-bench-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - only without a URL

        embedded: Any = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    found = Server(str(embedded.get_uri()), "embedded pgserver")
    try:
        yield found
    finally:
        found.drop_all()
        embedded.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _find_cluster(found: Server) -> None:
    """A Citus coordinator's nodes, when the URL names a database with the extension."""
    with psycopg.connect(found.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() \
                is None:
            return
        for group, host, port in conn.execute(
                "SELECT groupid, nodename, nodeport FROM pg_dist_node"
                " WHERE noderole = 'primary' ORDER BY groupid"):
            if group == 0:
                found.coordinator = (str(host), int(port))
            else:
                found.workers.append((str(host), int(port)))
    if found.workers:
        found.kind = (f"Citus coordinator with {len(found.workers)} worker(s)"
                      " (PEOPLELOG_DATABASE_URL)")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(found: Server) -> dict[str, Any]:
    pg = found.settings()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": pg.pop("server_version"),
        "fsync": pg.pop("fsync"),
        "postgres_settings": pg,
        "server": found.kind,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }
