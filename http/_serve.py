"""Serve the app under uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from ._app import create_app
from ._settings import HttpSettings

if TYPE_CHECKING:
    from peoplelog.accounts import Accounts

__all__ = ["serve"]


def serve(accounts: Accounts, *, host: str = "127.0.0.1", port: int = 8000,
          settings: HttpSettings | None = None, log_level: str = "info",
          forwarded_allow_ips: str | None = None) -> None:
    """Run the service on ``accounts`` until interrupted. uvicorn's own access log stays
    off: it would write client addresses and query strings (which carry link tokens); the
    service's access log (``peoplelog.http.access``) writes neither. Run several processes
    behind a proxy to use more cores: their rate limits share PostgreSQL's counters.

    Behind a proxy, name it in ``forwarded_allow_ips`` (its addresses, comma-separated):
    the client address (rate limits, the sessions' details) is then taken from the
    ``X-Forwarded-For`` it sets; without, from the connection (the proxy's own)."""
    import uvicorn  # noqa: PLC0415

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("peoplelog.http", "peoplelog.http.access"):
        logger = logging.getLogger(name)
        logger.setLevel(log_level.upper())
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    uvicorn.run(create_app(accounts, settings=settings), host=host, port=port,
                access_log=False, log_level=log_level, server_header=False,
                proxy_headers=forwarded_allow_ips is not None,
                forwarded_allow_ips=forwarded_allow_ips)
