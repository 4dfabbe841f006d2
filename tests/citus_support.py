"""A fresh database on a real Citus cluster, for the tests that run on one.

``PEOPLELOG_TEST_CITUS_URL`` names a database on the coordinator whose cluster is set up
(``citus_set_coordinator_host`` and ``citus_add_node`` done). A test database is created
on every node (Citus propagates ``CREATE DATABASE``), given the extension on each, and
the same nodes are added to it; the tests then connect to the coordinator only.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["CITUS_URL", "create_cluster_database", "drop_cluster_database", "skip_reason"]

CITUS_URL = os.environ.get("PEOPLELOG_TEST_CITUS_URL", "")


def skip_reason() -> str | None:
    """Why the cluster tests cannot run here, or None when they can."""
    if not CITUS_URL:
        return ("PEOPLELOG_TEST_CITUS_URL is not set: point it at a Citus coordinator "
                "(docs/SCALING.md) to run the product contract on a cluster")
    try:
        with psycopg.connect(CITUS_URL, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'"
                               ).fetchone()
            if row is None:
                return f"PEOPLELOG_TEST_CITUS_URL ({_where(CITUS_URL)}) has no citus extension"
            workers = _nodes(conn)[1]
    except psycopg.Error as exc:
        return f"PEOPLELOG_TEST_CITUS_URL ({_where(CITUS_URL)}) cannot be reached: {exc}"
    if not workers:
        return f"the coordinator at {_where(CITUS_URL)} has no worker nodes"
    return None


def _where(url: str) -> str:
    parts = conninfo_to_dict(url)
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname')}"


def _nodes(conn: psycopg.Connection[object]
           ) -> tuple[tuple[str, int] | None, list[tuple[str, int]]]:
    rows = conn.execute("SELECT groupid, nodename, nodeport FROM pg_dist_node"
                        " WHERE noderole = 'primary' ORDER BY groupid").fetchall()
    coordinator = next(((str(h), int(p)) for g, h, p in rows if g == 0), None)
    return coordinator, [(str(h), int(p)) for g, h, p in rows if g != 0]


def create_cluster_database(prefix: str) -> str:
    """A new database on every node of the cluster, with Citus set up in it."""
    name = f"plc_{prefix}_{uuid.uuid4().hex[:8]}".lower()
    with psycopg.connect(CITUS_URL, autocommit=True) as conn:
        coordinator, workers = _nodes(conn)
        conn.execute("SET citus.enable_create_database_propagation = on")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    for host, port in workers:
        with psycopg.connect(make_conninfo(CITUS_URL, host=host, port=port, dbname=name),
                             autocommit=True) as worker:
            worker.execute("CREATE EXTENSION IF NOT EXISTS citus")
    url = make_conninfo(CITUS_URL, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        if coordinator is not None:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", coordinator)
        for host, port in workers:
            conn.execute("SELECT citus_add_node(%s, %s)", (host, port))
    return url


def drop_cluster_database(url: str) -> None:
    """Drop a database made by ``create_cluster_database`` on every node. The workers may
    still hold, for a moment, the connections the coordinator's sessions cached: each
    node's drop is tried a few times."""
    name = str(conninfo_to_dict(url)["dbname"])
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(CITUS_URL, autocommit=True) as conn:
        workers = _nodes(conn)[1]
        _retry(lambda: conn.execute(drop))  # without propagation: each node on its own
    for host, port in workers:
        with psycopg.connect(make_conninfo(CITUS_URL, host=host, port=port,
                                           dbname="postgres"), autocommit=True) as worker:
            _retry(lambda: worker.execute(drop))


def _retry(action: Callable[[], object], attempts: int = 20) -> None:
    for attempt in range(attempts):
        try:
            action()
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
