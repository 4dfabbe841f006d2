"""CLI commands: projections (check and rebuild ``people_latest`` and ``email_lookup``)."""

from __future__ import annotations

import argparse
from typing import Any

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Settings
from peoplelog.projections import check_projections, rebuild_projections
from peoplelog.schema import KeyringError

from ._common import EXIT_DAMAGE, EXIT_OK, AddCommand, progress

__all__ = ["register"]


def cmd_check(args: argparse.Namespace) -> tuple[Any, int]:
    """Exit 1 with findings on any difference; without a keyring the claims are only
    checked for shape (``checked_lookup`` is false and ``keyring`` says why)."""
    settings = Settings.from_environment()
    unavailable: str | None = None
    keyring: Keyring | None
    try:
        keyring = settings.keyring()
    except KeyringError as exc:
        keyring, unavailable = None, exc.message
    database = Database.from_settings(settings, pool_size=1)
    try:
        with progress("checking projections", _persons(database), unit="persons") as update:
            report = database.run(
                lambda conn: check_projections(conn, keyring, progress=update)
            )
    finally:
        database.close()
    result: dict[str, Any] = report.model_dump(mode="json")
    result["keyring"] = "used" if unavailable is None else f"not used: {unavailable}"
    return result, EXIT_OK if report.ok else EXIT_DAMAGE


def cmd_rebuild(args: argparse.Namespace) -> tuple[Any, int]:
    settings = Settings.from_environment()
    keyring = settings.keyring()  # keys are needed: no fallback
    database = Database.from_settings(settings, pool_size=1)
    try:
        with progress("rebuilding projections", _persons(database), unit="persons") as update:
            report = database.run(lambda conn: rebuild_projections(conn, keyring, update))
    finally:
        database.close()
    return report.model_dump(mode="json"), EXIT_OK


def _persons(database: Database) -> int | None:
    """How many persons the projection holds: the progress bar's total (an estimate)."""
    row = database.run(lambda conn: conn.execute("SELECT count(*) FROM people_latest").fetchone())
    return None if row is None else int(row[0])


def register(sub: Any, *, add: AddCommand, **_: Any) -> None:
    """Add this module's commands to the top-level subparsers."""
    group = sub.add_parser(
        "projections", help="check or rebuild the latest view and the email lookup",
        description="people_latest and email_lookup are derived from the ledger (people): "
                    "check compares them with a fresh fold of it, rebuild recomputes them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  peoplelog projections check --json",
    )
    commands = group.add_subparsers(dest="projections_command", required=True,
                                    metavar="COMMAND")
    p = add(commands, "check", cmd_check,
            "compare people_latest and email_lookup with the ledger; exit 1 on any "
            "difference (keys optional: with them every email claim is recomputed)",
            "peoplelog projections check --json")
    p.epilog = (p.epilog or "") + (
        "\n\nwithout a keyring only the lookup's shape is checked (claims point at existing,"
        "\nnot erased persons, one each); the output says checked_lookup: no")
    add(commands, "rebuild", cmd_rebuild,
        "rebuild people_latest and email_lookup from the ledger in one transaction "
        "(needs the keyring and the table owner's rights)",
        "peoplelog projections rebuild --json")
