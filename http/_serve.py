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
          settings: HttpSettings | None = None, log_level: str = "info") -> None:
    """Run the service on ``accounts`` until interrupted. uvicorn's own access log stays
    off: it would write client addresses and query strings (which carry link tokens); the
    service's access log (``peoplelog.http.access``) writes neither. Run several processes
    behind a proxy to use more cores: their rate limits share PostgreSQL's counters."""
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
                proxy_headers=False)
