"""The ``peoplelog`` command line: a thin layer over the library, JSON with ``--json``.

Exit codes: 0 ok, 1 verification found damage, 2 bad usage, input or configuration,
3 not found, 4 conflict, 5 unexpected error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from peoplelog.ledger import Settings, _cid, init_store
from peoplelog.ledger._api import Ledger
from peoplelog.schema import InvalidInput, PeoplelogError

from . import _audit, _forensics, _import, _projections
from ._common import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    Handler,
    add_command,
    exit_code,
)

__all__ = ["EXIT_CODES", "exit_code", "main"]



def _without_values(message: str) -> str:
    """argparse quotes what was typed (a name, an email...): keep the problem, drop the value."""
    message = re.sub(r"'[^']*'", "'…'", message.replace("\n", " "))
    return re.sub(r"(unrecognized arguments:).*", r"\1 …", message)


class _Parser(argparse.ArgumentParser):
    """argparse with examples shown under each command's help."""

    json_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Usage errors are one line too (JSON with --json), exit 2."""
        text = f"{self.prog}: {_without_values(message)} (see {self.prog} --help)"
        if _Parser.json_errors:
            print(json.dumps({"error": "usage", "message": text}), file=sys.stderr)
        else:
            print(f"peoplelog: error: {text}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _settings() -> Settings:
    return Settings.from_environment()


def _ledger(*, keys: bool = True) -> Ledger:
    return Ledger.open(pool_size=1, keys="required" if keys else "none")


def _read_password(args: argparse.Namespace) -> str | None:
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


# --- commands -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> tuple[Any, int]:
    return init_store(_settings(), app_role=args.app_role).model_dump(mode="json"), EXIT_OK


def cmd_cid(args: argparse.Namespace) -> tuple[Any, int]:
    data = sys.stdin.buffer.read()
    if args.json:
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"stdin is not a JSON document: {exc}") from None
        data = _cid.canonical_json(document)
    return _cid.cid_of(data), EXIT_OK


def cmd_create(args: argparse.Namespace) -> tuple[Any, int]:
    password = _read_password(args)
    with _ledger() as ledger:
        ref = ledger.create_person(email=args.email, name=args.name, password=password,
                                   verified=args.verified, actor=args.actor, reason=args.reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_update(args: argparse.Namespace) -> tuple[Any, int]:
    password = _read_password(args)
    with _ledger() as ledger:
        ref = ledger.update_person(
            args.person_id, email=args.email, name=args.name, password=password,
            verified=True if args.verified else None, expect_version=args.expect_version,
            actor=args.actor, reason=args.reason,
        )
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_show(args: argparse.Namespace) -> tuple[Any, int]:
    at = _forensics.as_of_time(args)
    with _ledger() as ledger:
        if at is None:
            view = ledger.get_person(args.person_id, args.version)
        else:
            view = _forensics.show_as_of(ledger, args.person_id, at)
    return view.model_dump(mode="json"), EXIT_OK


def cmd_history(args: argparse.Namespace) -> tuple[Any, int]:
    return _forensics.cmd_history(args)  # values with keys, ciphertext facts without


def cmd_erase(args: argparse.Namespace) -> tuple[Any, int]:
    with _ledger(keys=False) as ledger:
        ref = ledger.erase_person(args.person_id, actor=args.actor, reason=args.reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_find(args: argparse.Namespace) -> tuple[Any, int]:
    with _ledger() as ledger:
        person_id = ledger.find_person(args.email)
    return {"person_id": str(person_id)}, EXIT_OK


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


# --- parser -------------------------------------------------------------------------------

_EPILOG = """\
examples:
  peoplelog init
  peoplelog person create --email ada@example.org --name "Ada Lovelace" --json
  peoplelog verify --json

exit codes: 0 ok, 1 verification found damage, 2 bad usage/input/configuration,
            3 not found, 4 conflict, 5 unexpected error

environment: PEOPLELOG_HOME (default ./.peoplelog), PEOPLELOG_DATABASE_URL or DATABASE_URL
             (default: embedded PostgreSQL under PEOPLELOG_HOME), PEOPLELOG_KEYRING (file,
             default $PEOPLELOG_HOME/keyring.json) or PEOPLELOG_KEYRING_JSON (the keyring)
"""


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON on stdout (errors as JSON on stderr)")
    parser = _Parser(prog="peoplelog", parents=[common], epilog=_EPILOG,
                     description="Append-only, tamper-evident identity store on PostgreSQL.")
    parser.set_defaults(json=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(owner: Any, name: str, handler: Handler, help_text: str, example: str,
                **kw: Any) -> argparse.ArgumentParser:
        return add_command(owner, name, handler, help_text, example, common=common, **kw)

    def who(p: argparse.ArgumentParser) -> None:
        p.add_argument("--actor", help="who makes the change (stored in plain text)")
        p.add_argument("--reason", help="why (stored in plain text)")

    p = command(sub, "init", cmd_init, "create or upgrade the schema and the keyring",
                "peoplelog init --app-role peoplelog_app")
    p.add_argument("--app-role", metavar="NAME",
                   help="grant this existing role INSERT/SELECT on people (and what the "
                        "projections need)")

    p = command(sub, "cid", cmd_cid, "print the CID of the bytes on stdin",
                "echo '{\"b\":1,\"a\":2}' | peoplelog cid --json")
    p.epilog = (p.epilog or "") + (
        "\n\nwith --json, stdin is a JSON document that is canonicalised (RFC 8785) first;"
        "\nthe output is the CID alone in both modes")

    person = sub.add_parser("person", help="create, change, read and erase persons",
                            parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  peoplelog person show PERSON_ID --json")
    psub = person.add_subparsers(dest="person_command", required=True, metavar="COMMAND")

    p = command(psub, "create", cmd_create, "create a person (version 0)",
                "printf 'secret-pass\\n' | peoplelog person create --email ada@example.org "
                "--name 'Ada Lovelace' --password-stdin --json")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p.add_argument("--verified", action="store_true", help="the email is already verified")
    who(p)

    p = command(psub, "update", cmd_update, "append a version that changes fields",
                "peoplelog person update PERSON_ID --name 'Ada King' --expect-version 0")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("--email")
    p.add_argument("--name")
    p.add_argument("--verified", action="store_true", help="mark the email verified")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the new password from the first line of stdin")
    p.add_argument("--expect-version", type=int, metavar="V",
                   help="fail with exit 4 unless the newest version is V")
    who(p)

    p = command(psub, "show", cmd_show, "show a person, decrypted",
                "peoplelog person show PERSON_ID --version 0 --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--version", type=int, metavar="V", help="that version (default: newest)")
    when.add_argument("--as-of", metavar="TIMESTAMP",
                      help="the version current at that time (ISO 8601 with a time zone, "
                           "e.g. 2024-05-01T12:00:00Z)")

    p = command(psub, "history", cmd_history, "list every version, oldest first, with values "
                "when keys are present (no keys needed)",
                "peoplelog person history PERSON_ID --json")
    p.add_argument("person_id", metavar="PERSON_ID")

    p = command(psub, "erase", cmd_erase, "erase a person by deleting their data key",
                "peoplelog person erase PERSON_ID --actor dpo --reason 'GDPR art. 17'")
    p.add_argument("person_id", metavar="PERSON_ID")
    who(p)

    p = command(psub, "find", cmd_find, "find the person who currently has an email",
                "peoplelog person find --email ada@example.org")
    p.add_argument("--email", required=True)

    _audit.register(sub, add=command)
    _import.register(sub, add=command)
    _projections.register(sub, add=command)
    _forensics.register(sub, psub, add=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("PEOPLELOG_LOG_LEVEL", "WARNING").upper(),
                        format="peoplelog: %(levelname)s: %(message)s")
    parser = build_parser()
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        result, code = handler(args)
    except PeoplelogError as exc:
        _error(args, exc.kind, exc.message)
        return exit_code(exc)
    except KeyboardInterrupt:
        _error(args, "interrupted", "interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("PEOPLELOG_DEBUG"):
            raise
        _error(args, "internal", f"unexpected {type(exc).__name__}; set PEOPLELOG_DEBUG=1 "
               "for a traceback")
        return EXIT_INTERNAL
    if args.json:
        if isinstance(result, str):
            print(result)
        else:
            print(json.dumps(result, ensure_ascii=False, indent=None))
    else:
        print(_human(result))
    return code


def _error(args: argparse.Namespace, kind: str, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": kind, "message": message}), file=sys.stderr)
    else:
        print(f"peoplelog: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
