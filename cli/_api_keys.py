"""CLI commands of service API keys: ``api-key create|list|revoke``. A key's token is
printed once, by ``create``, and never again."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, AddCommand, add_group, default_actor, open_ledger, wants_json

if TYPE_CHECKING:
    from peoplelog.accounts import Accounts

__all__ = ["register"]

_SHOWN_ONCE = ("this token is shown once and stored nowhere: keep it in the service's "
               "secret store now (if it is lost, revoke the key and create another)")


@contextlib.contextmanager
def _accounts() -> Iterator[Accounts]:
    from peoplelog.accounts import Accounts  # noqa: PLC0415 - see cli/_common.py

    with Accounts(open_ledger()) as accounts:
        yield accounts


def cmd_create(args: argparse.Namespace) -> tuple[Any, int]:
    with _accounts() as accounts:
        issued = accounts.create_api_key(args.name, args.permission,
                                         actor=default_actor(args.actor))
    if wants_json(args):
        return issued.as_dict(), EXIT_OK
    return (f"{issued.token}\nAPI key {issued.name!r} ({issued.key_id}), permissions "
            f"{', '.join(issued.permissions)}\n{_SHOWN_ONCE}"), EXIT_OK


def cmd_list(args: argparse.Namespace) -> tuple[Any, int]:
    with _accounts() as accounts:
        keys = accounts.api_keys()
    if wants_json(args):
        return [key.as_dict() for key in keys], EXIT_OK
    lines = [f"{'name':<24} {'id':<36} {'created':<25} {'last used':<25} permissions"]
    for key in keys:
        used = "-" if key.last_used_at is None else key.last_used_at.isoformat()[:25]
        lines.append(f"{key.name[:24]:<24} {key.key_id!s:<36} "
                     f"{key.created_at.isoformat()[:25]:<25} {used:<25} "
                     f"{','.join(key.permissions)}")
    return "\n".join(lines), EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.schema.errors import NotFound  # noqa: PLC0415

    with _accounts() as accounts:
        if not accounts.revoke_api_key(args.name, actor=default_actor(args.actor)):
            raise NotFound("no API key of that name or id")
    return ({"name": args.name, "revoked": True} if wants_json(args)
            else f"revoked API key {args.name!r}"), EXIT_OK


def _actor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", help="who is recorded as acting (default: cli: and the OS "
                                   "user)")


def register(sub: Any, *, add: AddCommand) -> None:
    """Add the ``api-key`` group."""
    from peoplelog.accounts import PERMISSIONS  # noqa: PLC0415 - a constant, loads no driver

    permissions = sorted(PERMISSIONS)
    group = add_group(sub, "api-key", "API keys of backend services calling the HTTP API",
                      "peoplelog api-key create billing --permission people:read --json",
                      dest="api_key_command")
    p = add(group, "create", cmd_create,
            "a new API key for a service, with its permissions: prints its token once",
            "peoplelog api-key create billing --permission people:read "
            "--permission people:write --json")
    p.add_argument("name", metavar="NAME",
                   help="the service's name (1-64 printable characters, unique)")
    p.add_argument("--permission", action="append", required=True, choices=permissions,
                   metavar="PERMISSION",
                   help=f"a permission to give (repeat for more): {', '.join(permissions)}")
    _actor(p)
    add(group, "list", cmd_list, "the live API keys, oldest first, with their last use",
        "peoplelog api-key list --json")
    p = add(group, "revoke", cmd_revoke, "revoke an API key (by name, or id): it stops "
            "working at once", "peoplelog api-key revoke billing")
    p.add_argument("name", metavar="NAME", help="the key's name, or its id")
    _actor(p)
