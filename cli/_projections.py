"""CLI commands: projections (check and rebuild ``people_latest`` and ``email_lookup``) and
the maintenance that rewrites what erasures left in the data files."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ._common import (
    EXIT_DAMAGE,
    EXIT_OK,
    AddCommand,
    add_group,
    open_database,
    open_ledger,
    progress,
    wants_json,
)

if TYPE_CHECKING:
    from peoplelog.ledger import Database

__all__ = ["register"]


def cmd_check(args: argparse.Namespace) -> tuple[Any, int]:
    """Exit 1 with findings on any difference; without a keyring the claims are only
    checked for shape (``checked_lookup`` is false and ``keyring`` says why)."""
    from peoplelog.projections import check_projections  # noqa: PLC0415
    from peoplelog.schema.errors import KeyringError  # noqa: PLC0415

    unavailable: str | None = None
    try:
        ledger = open_ledger(keys="required")
    except KeyringError as exc:
        unavailable = exc.message
        ledger = open_ledger(keys="none")
    with ledger:
        database, keyring = ledger.database, ledger.keyring_or_none()
        with progress("checking projections", _persons(database), unit="persons") as update:
            report = database.run(lambda conn: check_projections(conn, keyring,
                                                                 progress=update))
    result: dict[str, Any] = report.model_dump(mode="json")
    result["keyring"] = "used" if unavailable is None else f"not used: {unavailable}"
    return result, EXIT_OK if report.ok else EXIT_DAMAGE


def cmd_rebuild(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.projections import rebuild_projections  # noqa: PLC0415

    with open_ledger(keys="required") as ledger:  # keys are needed: no fallback
        database = ledger.database
        keyring = ledger.keyring_or_none()
        assert keyring is not None  # keys="required"
        with progress("rebuilding projections", _persons(database), unit="persons") as update:
            report = database.run(lambda conn: rebuild_projections(conn, keyring, update))
    return report.model_dump(mode="json"), EXIT_OK


def cmd_maintenance(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import compact_after_erasure  # noqa: PLC0415

    with open_database() as database:
        tables = compact_after_erasure(database)
    if wants_json(args):
        return {"tables": [table.as_dict() for table in tables]}, EXIT_OK
    return "\n".join(f"{t.table}: {t.bytes_before} -> {t.bytes_after} bytes"
                     for t in tables), EXIT_OK


def _persons(database: Database) -> int | None:
    """How many persons the projection holds: the progress bar's total (an estimate)."""
    row = database.run(lambda conn: conn.execute("SELECT count(*) FROM people_latest").fetchone())
    return None if row is None else int(row[0])


def register(sub: Any, *, add: AddCommand) -> None:
    """Add this module's commands to the top-level subparsers."""
    commands = add_group(
        sub, "projections", "check or rebuild the latest view and the email lookup",
        "peoplelog projections check --json", dest="projections_command",
        description="people_latest and email_lookup are derived from the ledger (people): "
                    "check compares them with a fresh fold of it, rebuild recomputes them.")
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
    add(sub, "maintenance", cmd_maintenance,
        "rewrite the tables erasures delete from (VACUUM FULL), so the data files no longer "
        "hold erased keys, blind indexes or digests; locks each table while it runs; needs "
        "the owner's login (see docs/ERASURE.md)",
        "peoplelog maintenance --json")
