"""CLI commands: ``init``, ``cid`` and the ``person`` group (create, update, show, history,
erase, find; ``diff`` is in ``_forensics``).

Each command checks what it can without a database (ids, versions, names, emails, actor
and reason, the password on stdin) before it opens one, so refused input never waits for
the embedded server.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import (
    EXIT_OK,
    AddCommand,
    add_group,
    default_actor,
    open_ledger,
    read_password,
    settings,
    wants_json,
)

__all__ = ["register"]


def _who(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``--actor`` (default ``cli:<OS user>``) and ``--reason``, checked."""
    from peoplelog.ledger import check_actor, check_reason  # noqa: PLC0415

    return check_actor(default_actor(args.actor)), check_reason(args.reason)


def cmd_init(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import init_store  # noqa: PLC0415

    return init_store(settings(), app_role=args.app_role, auditor_role=args.auditor_role,
                      distribute=not args.no_distribute).model_dump(mode="json"), EXIT_OK


def cmd_cid(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import canonical_json, cid_of  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    data = sys.stdin.buffer.read()
    if wants_json(args):
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"stdin is not a JSON document: {exc}") from None
        data = canonical_json(document)
    return cid_of(data), EXIT_OK


def cmd_create(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import normalise_email  # noqa: PLC0415
    from peoplelog.ledger import check_name  # noqa: PLC0415

    normalise_email(args.email)
    check_name(args.name)
    actor, reason = _who(args)
    password = read_password(args)
    with open_ledger() as ledger:
        ref = ledger.create_person(email=args.email, name=args.name, password=password,
                                   verified=args.verified, actor=actor, reason=reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_update(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import normalise_email  # noqa: PLC0415
    from peoplelog.ledger import check_name, check_person_id, check_version  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    if args.email is not None:
        normalise_email(args.email)
    if args.name is not None:
        check_name(args.name)
    if args.expect_version is not None:
        check_version(args.expect_version, "expected version")
    if (args.email is None and args.name is None and not args.verified
            and not args.password_stdin):
        raise InvalidInput("nothing to update: give at least one field to change")
    actor, reason = _who(args)
    password = read_password(args)
    with open_ledger() as ledger:
        ref = ledger.update_person(
            pid, email=args.email, name=args.name, password=password,
            verified=True if args.verified else None, expect_version=args.expect_version,
            actor=actor, reason=reason,
        )
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_show(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id, check_version, parse_timestamp  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    if args.version is not None:
        check_version(args.version)
    at = None if args.as_of is None else parse_timestamp(args.as_of, "--as-of")
    with open_ledger() as ledger:
        if at is None:
            view = ledger.get_person(pid, args.version)
        else:
            from peoplelog.projections import Forensics  # noqa: PLC0415

            view = Forensics(ledger).as_of(pid, at)
    return view.model_dump(mode="json"), EXIT_OK


def cmd_history(args: argparse.Namespace) -> tuple[Any, int]:
    """Every version, oldest first: values with keys, ciphertext facts without."""
    from peoplelog.ledger import check_person_id  # noqa: PLC0415
    from peoplelog.projections import Forensics  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    with open_ledger(keys="optional") as ledger:
        entries = Forensics(ledger).history(pid)
    return [entry.model_dump(mode="json") for entry in entries], EXIT_OK


def cmd_erase(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    actor, reason = _who(args)
    with open_ledger() as ledger:  # the erased version is sealed with the writer key
        ref = ledger.erase_person(pid, actor=actor, reason=reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_restore(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    actor, reason = _who(args)
    with open_ledger() as ledger:
        ref = ledger.restore_person(pid, actor=actor, reason=reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_rotate_key(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    actor, reason = _who(args)
    with open_ledger() as ledger:
        ref = ledger.rotate_data_key(pid, actor=actor, reason=reason)
    return ref.model_dump(mode="json"), EXIT_OK


def cmd_find(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import normalise_email  # noqa: PLC0415

    normalise_email(args.email)
    with open_ledger() as ledger:
        person_id = ledger.find_person(args.email)
    return {"person_id": str(person_id)}, EXIT_OK


def _who_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", help="who makes the change (stored in plain text; default "
                                   "cli:<OS user>)")
    p.add_argument("--reason", help="why (stored in plain text)")


def register(sub: Any, *, add: AddCommand) -> Any:
    """Add ``init``, ``cid`` and the ``person`` group; returns the group's subcommands."""
    p = add(sub, "init", cmd_init, "create or upgrade the schema and the keyring",
            "peoplelog init --app-role peoplelog_app")
    p.epilog = (p.epilog or "") + (
        "\n\non a Citus coordinator (the citus extension installed) the tables are also"
        "\ndistributed by person (docs/SCALING.md); a placed table is left as it is")
    p.add_argument("--app-role", metavar="NAME",
                   help="grant this existing role INSERT/SELECT on people (and what the "
                        "projections need)")
    p.add_argument("--auditor-role", metavar="NAME",
                   help="grant this existing role SELECT on what key-free verify reads "
                        "(no key material, no keyed hash)")
    p.add_argument("--no-distribute", action="store_true",
                   help="on a Citus coordinator, leave the tables where they are (local "
                        "to the coordinator) instead of distributing them")

    p = add(sub, "cid", cmd_cid, "print the CID of the bytes on stdin",
            "echo '{\"b\":1,\"a\":2}' | peoplelog cid --json")
    p.epilog = (p.epilog or "") + (
        "\n\nwith --json, stdin is a JSON document that is canonicalised (RFC 8785) first;"
        "\nthe output is the CID alone in both modes")

    psub = add_group(sub, "person", "create, change, read and erase persons",
                     "peoplelog person show PERSON_ID --json", dest="person_command")

    p = add(psub, "create", cmd_create, "create a person (version 0)",
            "printf 'secret-pass\\n' | peoplelog person create --email ada@example.org "
            "--name 'Ada Lovelace' --password-stdin --json")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p.add_argument("--verified", action="store_true", help="the email is already verified")
    _who_arguments(p)

    p = add(psub, "update", cmd_update, "append a version that changes fields",
            "peoplelog person update PERSON_ID --name 'Ada King' --expect-version 0")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("--email")
    p.add_argument("--name")
    p.add_argument("--verified", action="store_true", help="mark the email verified")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the new password from the first line of stdin")
    p.add_argument("--expect-version", type=int, metavar="V",
                   help="fail with exit 4 unless the newest version is V")
    _who_arguments(p)

    p = add(psub, "show", cmd_show, "show a person, decrypted",
            "peoplelog person show PERSON_ID --version 0 --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--version", type=int, metavar="V", help="that version (default: newest)")
    when.add_argument("--as-of", metavar="TIMESTAMP",
                      help="the version current at that time (ISO 8601 with a time zone, "
                           "e.g. 2024-05-01T12:00:00Z)")

    p = add(psub, "history", cmd_history, "list every version, oldest first, with values "
            "when keys are present (no keys needed)",
            "peoplelog person history PERSON_ID --json")
    p.add_argument("person_id", metavar="PERSON_ID")

    p = add(psub, "erase", cmd_erase, "erase a person by deleting their data key",
            "peoplelog person erase PERSON_ID --actor dpo --reason 'GDPR art. 17'")
    p.add_argument("person_id", metavar="PERSON_ID")
    _who_arguments(p)

    p = add(psub, "restore", cmd_restore,
            "write the newest version the application wrote back over versions it did not "
            "write (no seal of the writer key); nothing when the newest is trusted",
            "peoplelog person restore PERSON_ID --actor ops --reason 'unattested v7'")
    p.add_argument("person_id", metavar="PERSON_ID")
    _who_arguments(p)

    p = add(psub, "rotate-key", cmd_rotate_key,
            "give the person a new data key (the old one may be compromised): their fields "
            "are written again under it; older versions stay readable",
            "peoplelog person rotate-key PERSON_ID --actor security --reason 'laptop lost'")
    p.add_argument("person_id", metavar="PERSON_ID")
    _who_arguments(p)

    p = add(psub, "find", cmd_find, "find the person who currently has an email",
            "peoplelog person find --email ada@example.org")
    p.add_argument("--email", required=True)
    return psub
