"""Shared pieces of the CLI: exit codes, the parser, how a command is declared and opens
what it needs.

A command module imports only what its parser needs at the top; what a command needs to
run (the database driver, the ciphers, the projections) is imported when it runs, so
``--help`` and refused input answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from peoplelog.ledger import Database, KeysWanted, Ledger, Settings

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_DAMAGE",
    "EXIT_INTERNAL",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAUTHENTICATED",
    "EXIT_USAGE",
    "AddCommand",
    "Handler",
    "Parser",
    "add_command",
    "add_group",
    "default_actor",
    "exit_code",
    "open_database",
    "open_ledger",
    "plural",
    "progress",
    "read_password",
    "read_text",
    "settings",
    "write_out",
]

EXIT_OK, EXIT_DAMAGE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_INTERNAL = range(6)
EXIT_UNAUTHENTICATED = 6

EXIT_CODES: dict[str, int] = {
    "chain_broken": EXIT_DAMAGE,
    "projection_damaged": EXIT_DAMAGE,
    "unattested_version": EXIT_DAMAGE,
    "invalid_input": EXIT_USAGE,
    "configuration": EXIT_USAGE,
    "database_unavailable": EXIT_USAGE,
    "decryption_failed": EXIT_USAGE,
    "not_found": EXIT_NOT_FOUND,
    "conflict": EXIT_CONFLICT,
    "unauthenticated": EXIT_UNAUTHENTICATED,
    "not_permitted": EXIT_UNAUTHENTICATED,
}
"""The exit code of each error kind; a kind not listed takes its nearest listed ancestor's
(``key_not_found`` is a ``keyring`` error is a ``configuration`` error: exit 2), and one
with none listed (``database``, the root ``error``) is an unexpected error, exit 5."""


def exit_code(error: BaseException) -> int:
    """The exit code for an error of the peoplelog tree (5 for anything else)."""
    for cls in type(error).__mro__:
        code = EXIT_CODES.get(vars(cls).get("kind", ""))
        if code is not None:
            return code
    return EXIT_INTERNAL


Handler = Callable[[argparse.Namespace], tuple[Any, int]]
AddCommand = Callable[..., argparse.ArgumentParser]
"""``add(owner, name, handler, help_text, example, **kw)`` -> the command's parser."""

JSON_DESTS = ("json", "json_group", "json_top")
"""Where ``--json`` is recorded: after the command, after its group, before both (each
level its own, so a later level never resets an earlier one)."""


def json_flag(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--json", dest=dest, action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON on stdout (errors as JSON on stderr)")


def wants_json(args: argparse.Namespace) -> bool:
    return any(getattr(args, dest, False) for dest in JSON_DESTS)


def _without_values(message: str) -> str:
    """argparse's message with what was typed left out (it may be a secret), but the names
    of the valid choices kept: they are ours."""
    message = message.replace("\n", " ")
    message = re.sub(r"invalid choice: '[^']*'", "invalid choice", message)
    message = re.sub(r"\(choose from ([^)]*)\)",
                     lambda m: "(choose from " + m[1].replace("'", "") + ")", message)
    parts = re.split(r"(\(choose from [^)]*\))", message)
    return "".join(part if part.startswith("(choose from") else re.sub(r"'[^']*'", "'…'", part)
                   for part in parts)


def unrecognized(extras: Sequence[str]) -> str:
    """The unknown arguments by name: an option's name is shown, never a value typed."""
    shown = [token.split("=", 1)[0] + ("=…" if "=" in token else "")
             if token.startswith("-") and len(token) > 1 else "…" for token in extras]
    return "unrecognized arguments: " + " ".join(shown)


class Parser(argparse.ArgumentParser):
    """argparse with examples under each command's help, and usage errors as one line
    (JSON with ``--json``) that name the problem and the valid choices, never a value."""

    json_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, _without_values(message))


def usage_error(prog: str, message: str) -> NoReturn:
    """Print a usage error for the command ``prog`` (pointing to its help) and exit 2."""
    text = f"{prog}: {message} (see {prog} --help)"
    if Parser.json_errors:
        print(json.dumps({"error": "usage", "message": text}), file=sys.stderr)
    else:
        print(f"peoplelog: error: {text}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def add_command(owner: Any, name: str, handler: Handler, help_text: str, example: str,
                **kw: Any) -> argparse.ArgumentParser:
    """Declare a command: help, an example under it, ``--json``, and its handler."""
    parser: argparse.ArgumentParser = owner.add_parser(
        name, help=help_text, description=help_text, epilog=f"example:\n  {example}",
        **kw,
    )
    json_flag(parser, "json")
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


def add_group(owner: Any, name: str, help_text: str, example: str, *, dest: str,
              description: str | None = None) -> Any:
    """Declare a group of commands (``person``, ``keys``, ...); it takes ``--json`` too.
    Returns the group's subcommands, for ``add_command``."""
    group: argparse.ArgumentParser = owner.add_parser(
        name, help=help_text, description=description or help_text,
        epilog=f"example:\n  {example}")
    json_flag(group, "json_group")
    group.set_defaults(command_parser=group)
    return group.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 person``, ``2 persons``, ``0 findings``; ``nouns`` where adding s is wrong."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


# --- what commands open ---------------------------------------------------------------------


def settings() -> Settings:
    from peoplelog.ledger import Settings  # noqa: PLC0415 - see the module docstring

    return Settings.from_environment()


def open_ledger(keys: KeysWanted = "required") -> Ledger:
    """The ledger every command works on: the environment's database and keyring, one
    connection (``keys`` as for ``peoplelog.connect``)."""
    from peoplelog.ledger import connect  # noqa: PLC0415 - see the module docstring

    return connect(settings=settings(), pool_size=1, keys=keys)


@contextlib.contextmanager
def open_database() -> Iterator[Database]:
    """The environment's database alone, for commands that need no keys."""
    with open_ledger(keys="none") as ledger:
        yield ledger.database


def default_actor(given: str | None) -> str:
    """``--actor``, else ``cli:`` and the OS user running the command: every version
    records who wrote it."""
    if given is not None:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. in a container)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def read_password(args: argparse.Namespace) -> str | None:
    """The first line of stdin with ``--password-stdin``; passwords are never arguments."""
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if not getattr(args, "password_stdin", False):
        return None
    raw = sys.stdin.buffer.readline()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("password on stdin is not valid UTF-8") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise InvalidInput("no password on stdin")
    return text


def read_text(path: str, what: str) -> str:
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} file {path} cannot be read: {exc}") from None


def write_out(path: str, text: str) -> None:
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


@contextlib.contextmanager
def progress(description: str, total: int | None = None,
             unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; ``update(done)`` takes a running count.

    Off a terminal (CI, pipes) nothing is drawn, so machine output stays clean.
    """
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

    bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=False,
               dynamic_ncols=True, unit_scale=True)
    seen = 0

    def update(done: int) -> None:
        nonlocal seen
        bar.update(done - seen)
        seen = done

    try:
        yield update
    finally:
        bar.close()
