"""The ``peoplelog`` command line: a thin layer over the library, JSON with ``--json``.

Exit codes are mapped from the library's error kinds here (``EXIT_CODES``): 0 ok,
1 verification found damage, 2 bad usage, input, configuration or an unreachable database,
3 not found, 4 conflict, 5 unexpected error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import (
    _accounts,
    _api_keys,
    _audit,
    _forensics,
    _import,
    _keys,
    _person,
    _projections,
    _serve,
)
from ._common import (
    EXIT_CODES,
    EXIT_INTERNAL,
    Handler,
    Parser,
    add_command,
    exit_code,
    json_flag,
    unrecognized,
    usage_error,
    wants_json,
)

__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main"]


_EPILOG = """\
examples:
  peoplelog init
  peoplelog person create --email ada@example.org --name "Ada Lovelace" --json
  peoplelog --json verify

--json may be given before the command, after a group (person, keys, projections) or
after the command.

exit codes: 0 ok, 1 verification found damage, 2 bad usage/input/configuration or
            database unreachable, 3 not found, 4 conflict, 5 unexpected error

environment: PEOPLELOG_HOME (default ./.peoplelog), PEOPLELOG_DATABASE_URL or DATABASE_URL
             (default: embedded PostgreSQL under PEOPLELOG_HOME), PEOPLELOG_KEYRING (file,
             default $PEOPLELOG_HOME/keyring.json) or PEOPLELOG_KEYRING_JSON (the keyring)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="peoplelog", epilog=_EPILOG,
                    description="Append-only, tamper-evident identity store on PostgreSQL.")
    json_flag(parser, "json_top")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    person = _person.register(sub, add=add_command)
    _audit.register(sub, add=add_command)
    _keys.register(sub, add=add_command)
    _import.register(sub, add=add_command)
    _projections.register(sub, add=add_command)
    _accounts.register(sub, add=add_command)
    _api_keys.register(sub, add=add_command)
    _serve.register(sub, add=add_command)
    _forensics.register(sub, person, add=add_command)
    return parser


_PASSWORD_FLAG = "--password-stdin"  # noqa: S105 - an option's name


def _password_argument(argv: Sequence[str]) -> bool:
    """Whether ``argv`` tries to give a password as an argument (``--password x``,
    ``--password=x``, ``--pass``...): refused before parsing, never echoed."""
    for token in argv:
        name = token.split("=", 1)[0]
        if name != _PASSWORD_FLAG and len(name) > 3 and (
                _PASSWORD_FLAG.startswith(name) or name in ("--passwd", "--pwd")):
            return True
    return False


def _command_words(argv: Sequence[str]) -> str:
    """``peoplelog`` and the command words before the first option (``person create``)."""
    words = ["peoplelog"]
    for word in argv:
        if word == "--json":
            continue
        if word.startswith("-") or len(words) == 3:
            break
        words.append(word)
    return " ".join(words)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line's namespace; usage errors end the program (exit 2)."""
    Parser.json_errors = "--json" in argv
    if _password_argument(argv):
        usage_error(_command_words(argv),
                    "passwords are not taken as arguments (they would show in the process "
                    "list and the shell history): pipe the password on stdin and give "
                    "--password-stdin")
    parser = build_parser()
    args, extras = parser.parse_known_args(list(argv))
    if extras:
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        usage_error(command.prog, unrecognized(extras))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("PEOPLELOG_LOG_LEVEL", "WARNING").upper(),
                        format="peoplelog: %(levelname)s: %(message)s")
    args = parse(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(args)
    handler: Handler = args.handler
    from peoplelog.schema.errors import PeoplelogError  # noqa: PLC0415 - light, after parsing

    try:
        result, code = handler(args)
    except PeoplelogError as exc:
        _error(as_json, exc.kind, exc.message)
        return exit_code(exc)
    except KeyboardInterrupt:
        _error(as_json, "interrupted", "interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("PEOPLELOG_DEBUG"):
            raise
        _error(as_json, "internal", f"unexpected {type(exc).__name__}; set PEOPLELOG_DEBUG=1 "
               "for a traceback")
        return EXIT_INTERNAL
    if as_json:
        if isinstance(result, str):
            print(result)
        elif result is not None:
            print(json.dumps(result, ensure_ascii=False, indent=None))
    elif result is not None:
        print(_human(result))
    return code


def _error(as_json: bool, kind: str, message: str) -> None:
    if as_json:
        print(json.dumps({"error": kind, "message": message}), file=sys.stderr)
    else:
        print(f"peoplelog: error: {message}", file=sys.stderr)


# --- output -------------------------------------------------------------------------------


def _human(value: Any, indent: str = "") -> str:
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:")
                lines.append(_human(item, indent + "  "))
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        return "\n".join(
            f"{indent}-\n{_human(item, indent + '  ')}" if isinstance(item, dict)
            else f"{indent}- {_scalar(item)}" for item in value
        ) or f"{indent}(none)"
    return f"{indent}{_scalar(value)}"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
