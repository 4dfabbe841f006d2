"""The embedded PostgreSQL: a real server from the ``pgserver`` wheel under ``home/pgdata``.

pgserver starts the server for the first process that asks and stops it when the last
one exits; the processes using it are listed in ``pgdata/.handle_pids.json``. A process
killed outright (SIGKILL, OOM) never takes itself off that list, so every later process
would think it is not the last and the server would never be stopped: entries of
processes that no longer run are dropped before each start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from peoplelog.schema import ConfigurationError, DatabaseUnavailable

from ._driver import first_line

__all__ = ["embedded_database_url"]

log = logging.getLogger("peoplelog")
_servers: dict[Path, Any] = {}
_HANDLES = ".handle_pids.json"


def embedded_database_url(home: Path) -> str:
    """Start (or join) the pgserver PostgreSQL under ``home/pgdata``; return its URL."""
    pgdata = (home / "pgdata").resolve()
    server = _servers.get(pgdata)
    if server is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver  # noqa: PLC0415 - slow import, only for the embedded server
        except ImportError as exc:  # pragma: no cover - pgserver is a dependency
            raise ConfigurationError(f"embedded PostgreSQL unavailable: {exc}") from None
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(pgdata)
        try:
            server = _start(pgserver, pgdata)
        except Exception as exc:
            raise DatabaseUnavailable(
                f"embedded PostgreSQL in {pgdata} did not start: {first_line(exc)}"
            ) from None
        _servers[pgdata] = server
    return str(server.get_uri())


_START_WAIT = 120.0
"""Seconds a slow start may take: pgserver gives ``pg_ctl start -w`` ten, which a loaded
machine can exceed while the server itself comes up fine."""


def _start(pgserver: Any, pgdata: Path) -> Any:
    """``pgserver.get_server``; when its ``pg_ctl`` times out, wait for the server it started
    to be ready (its ``postmaster.pid`` says so) and join it."""
    deadline = time.monotonic() + _START_WAIT
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pgserver.get_server(pgdata, cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            log.info("embedded PostgreSQL: slow start, waiting for the server to be ready")
            # pgserver registered the handle before starting: drop it, or it is handed back
            pgserver.PostgresServer._instances.pop(pgdata, None)
            while time.monotonic() < deadline and _status(pgdata) not in ("ready", None):
                time.sleep(0.5)
            if time.monotonic() >= deadline:
                raise


def _status(pgdata: Path) -> str | None:
    """The status line of ``postmaster.pid`` ("starting", "ready", ...), None without it."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[7].strip() if len(lines) > 7 else "starting"


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that no longer run from pgserver's list of the server's users
    (under pgserver's own lock, so a process starting or stopping at the same time sees
    the list before or after, never half written)."""
    path = pgdata / _HANDLES
    if not path.exists():
        return
    try:
        import psutil  # noqa: PLC0415 - a dependency of pgserver
        from pgserver.postgres_server import PostgresServer  # noqa: PLC0415
        from pgserver.utils import DiskList  # noqa: PLC0415

        with PostgresServer._lock:
            handles = DiskList(path)
            pids = handles.get()
            alive = [pid for pid in pids if pid == os.getpid() or _running(psutil, pid)]
            if alive != pids:
                handles.put(alive)
                log.info("embedded PostgreSQL: forgot %d exited processes",
                         len(pids) - len(alive))
    except (ImportError, AttributeError, OSError, ValueError, TypeError) as exc:
        # pgserver's internals moved, or the list is unreadable: pgserver decides alone
        log.debug("embedded PostgreSQL: handle list left as is (%s)", type(exc).__name__)


def _running(psutil: Any, pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # another user's process (access denied): it does run
        return True
