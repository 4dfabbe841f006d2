"""``peoplelog serve``: the HTTP service and hosted pages (``peoplelog.http``) under
uvicorn, on the environment's database and keyring (the embedded PostgreSQL by default)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, AddCommand, settings

__all__ = ["register"]


def cmd_serve(args: argparse.Namespace) -> tuple[Any, int]:
    from dataclasses import replace  # noqa: PLC0415

    from peoplelog.accounts import Accounts  # noqa: PLC0415 - see cli/_common.py
    from peoplelog.http import HttpSettings, serve  # noqa: PLC0415
    from peoplelog.ledger import connect  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if not 0 < args.port < 65536:
        raise InvalidInput("--port must be 1 to 65535")
    http_settings = HttpSettings.from_environment()
    if args.insecure_cookies:
        http_settings = replace(http_settings, secure_cookies=False)
    with Accounts(connect(settings=settings(), pool_size=args.pool_size)) as accounts:
        print(f"peoplelog: serving http://{args.host}:{args.port}/ (API under /v1, pages "
              f"at /register, /login, /settings; Ctrl-C stops)", file=sys.stderr, flush=True)
        serve(accounts, host=args.host, port=args.port, settings=http_settings,
              forwarded_allow_ips=args.forwarded_allow_ips)
    return "stopped", EXIT_OK


def register(sub: Any, *, add: AddCommand) -> None:
    p = add(sub, "serve", cmd_serve,
            "run the HTTP API and the account pages (uvicorn) until interrupted",
            "peoplelog serve --host 127.0.0.1 --port 8000 --insecure-cookies")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, metavar="P",
                   help="the port to listen on (default 8000)")
    p.add_argument("--pool-size", type=int, default=8, metavar="N",
                   help="PostgreSQL connections (default 8)")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="the reverse proxy's addresses (comma-separated): trust the client "
                        "address in its X-Forwarded-For (rate limits count real clients)")
    p.add_argument("--insecure-cookies", action="store_true",
                   help="cookies without Secure, for plain HTTP on localhost only "
                        "(PEOPLELOG_HTTP_SECURE_COOKIES=false does the same)")
