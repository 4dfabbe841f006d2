"""CLI commands: forensic queries.

``person diff`` and ``changes`` (``person show --as-of`` and ``person history`` are in
``_person``). Timestamps are ISO 8601 with a time zone; a naive time is refused (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, AddCommand, open_ledger

__all__ = ["register"]

_TIME_HELP = "ISO 8601 with a time zone, e.g. 2024-05-01T12:00:00Z"


def cmd_diff(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id, check_version  # noqa: PLC0415
    from peoplelog.projections import Forensics  # noqa: PLC0415

    pid = check_person_id(args.person_id)
    v1 = check_version(args.v1, "V1")
    v2 = check_version(args.v2, "V2")
    with open_ledger(keys="optional") as ledger:
        diff = Forensics(ledger).diff(pid, v1, v2)
    return diff.model_dump(mode="json"), EXIT_OK


def cmd_changes(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_actor, check_person_id, parse_timestamp  # noqa: PLC0415
    from peoplelog.projections import Forensics  # noqa: PLC0415

    since = None if args.since is None else parse_timestamp(args.since, "--since")
    until = None if args.until is None else parse_timestamp(args.until, "--until")
    person = None if args.person is None else check_person_id(args.person)
    if args.actor is not None:
        check_actor(args.actor)
    with open_ledger(keys="none") as ledger:
        page = Forensics(ledger).changes(since=since, until=until, actor=args.actor,
                                         person_id=person, limit=args.limit,
                                         before=args.cursor)
    return page.model_dump(mode="json"), EXIT_OK


def register(sub: Any, person_sub: Any, *, add: AddCommand) -> None:
    """Add forensic commands (top level and under ``person``)."""
    p = add(person_sub, "diff", cmd_diff,
            "which fields changed between two versions (old and new values when keys are "
            "present, field names only without; a password is never shown)",
            "peoplelog person diff PERSON_ID 0 2 --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("v1", type=int, metavar="V1", help="the version to compare from")
    p.add_argument("v2", type=int, metavar="V2", help="the version to compare to")

    p = add(sub, "changes", cmd_changes,
            "versions written in a time window, newest first, paged (no keys needed)",
            "peoplelog changes --since 2024-05-01T00:00:00Z --actor support --json")
    p.add_argument("--since", metavar="T", help=f"from this time, inclusive ({_TIME_HELP})")
    p.add_argument("--until", metavar="T", help="up to this time, exclusive")
    p.add_argument("--actor", metavar="A", help="only versions written by this actor")
    p.add_argument("--person", metavar="PERSON_ID", help="only this person's versions")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="at most N versions per page (1..1000, default 100)")
    p.add_argument("--cursor", metavar="C",
                   help="the `next` of the previous page (same filters) for the next page")
