"""CLI commands: forensic queries.

``person show --as-of``, ``person diff``, ``person history`` (values when keys are present)
and ``changes``. Timestamps are ISO 8601 with a time zone; a naive time is refused (exit 2).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from peoplelog.ledger._api import Ledger
from peoplelog.ledger._inputs import check_person_id, check_version
from peoplelog.projections import Forensics, parse_timestamp
from peoplelog.schema import PersonView

from ._common import EXIT_OK, AddCommand

__all__ = ["as_of_time", "cmd_changes", "cmd_diff", "cmd_history", "register", "show_as_of"]

_TIME_HELP = "ISO 8601 with a time zone, e.g. 2024-05-01T12:00:00Z"


def _ledger(*, keys: bool) -> Ledger:
    """A ledger with the keyring when one is available (``keys``), else without keys."""
    return Ledger.open(pool_size=1, keys="optional" if keys else "none")


# --- used by `person show` and `person history` ---------------------------------------------


def as_of_time(args: argparse.Namespace) -> datetime | None:
    """The parsed ``--as-of`` of ``person show``, or None when it was not given."""
    value = getattr(args, "as_of", None)
    return None if value is None else parse_timestamp(value, "--as-of")


def show_as_of(ledger: Ledger, person_id: str, at: datetime) -> PersonView:
    return Forensics(ledger).as_of(person_id, at)


def cmd_history(args: argparse.Namespace) -> tuple[Any, int]:
    """Every version, oldest first: values with keys, ciphertext facts without."""
    pid = check_person_id(args.person_id)
    with _ledger(keys=True) as ledger:
        entries = Forensics(ledger).history(pid)
    return [entry.model_dump(mode="json") for entry in entries], EXIT_OK


# --- new commands -------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> tuple[Any, int]:
    pid = check_person_id(args.person_id)
    v1 = check_version(args.v1, "V1")
    v2 = check_version(args.v2, "V2")
    with _ledger(keys=True) as ledger:
        diff = Forensics(ledger).diff(pid, v1, v2)
    return diff.model_dump(mode="json"), EXIT_OK


def cmd_changes(args: argparse.Namespace) -> tuple[Any, int]:
    since = None if args.since is None else parse_timestamp(args.since, "--since")
    until = None if args.until is None else parse_timestamp(args.until, "--until")
    person = None if args.person is None else check_person_id(args.person)
    with _ledger(keys=False) as ledger:
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
