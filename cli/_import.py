"""CLI command: bulk import."""

from __future__ import annotations

import argparse
import os
from typing import Any

from peoplelog.ledger import Database, Settings
from peoplelog.ledger._import import BATCH_SIZE, FIRST_BATCH, LANES, import_people, read_rows

from ._common import EXIT_OK, EXIT_USAGE, AddCommand, progress

__all__ = ["register"]


def cmd_import(args: argparse.Namespace) -> tuple[Any, int]:
    settings = Settings.from_environment()
    keyring = settings.keyring()
    read_rows(args.file, args.format)  # fail fast: missing file, unknown format, bad header
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    database = Database.from_settings(settings, pool_size=1)
    try:
        with progress("importing") as update:
            summary = import_people(
                database, keyring, lambda: read_rows(args.file, args.format),
                update=args.update, strict=args.strict, batch_size=args.batch_size,
                workers=workers, actor=args.actor, reason=args.reason, progress=update)
    finally:
        database.close()
    return summary.model_dump(mode="json"), EXIT_OK if not summary.rejected else EXIT_USAGE


def register(sub: Any, *, add: AddCommand, **_: Any) -> None:
    """Add ``import`` to the top-level subparsers."""
    p = add(sub, "import", cmd_import,
            "import people from a JSON-lines or CSV file (batched, resumable)",
            "peoplelog import users.csv --update --json")
    p.epilog = (p.epilog or "") + (
        "\n\ncolumns: email, name (required); password (plain, hashed with argon2id) or "
        "password_hash\n(an argon2id PHC string); verified_at (ISO 8601 with a zone); "
        "external_id.\nA row whose email or external id is already there is skipped (a "
        "new version with\n--update); a row repeating an earlier row's email or external id "
        f"is rejected.\nEach batch is one transaction; up to {LANES} are written at once on "
        "their own\nconnections. Re-running the same file after an interruption resumes it.\n"
        "exit 0 when every row was imported, updated or skipped; exit 2 when any row was\n"
        "rejected (the others are written, unless --strict).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=["jsonl", "csv"],
                   help="default: csv for *.csv, else JSON lines")
    p.add_argument("--update", action="store_true",
                   help="rows whose external id or email exists become new versions")
    p.add_argument("--strict", action="store_true",
                   help="any bad row fails the whole import; nothing is written")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help=f"rows per batch (one transaction); by default the first batch has "
                        f"{FIRST_BATCH} rows and each next one twice as many, up to "
                        f"{BATCH_SIZE}")
    p.add_argument("--workers", type=int, metavar="N",
                   help="threads hashing plaintext passwords (default: the number of CPUs)")
    p.add_argument("--actor", default="import", help="recorded as the actor (plain text)")
    p.add_argument("--reason", help="recorded as the reason (plain text)")
