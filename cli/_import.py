"""CLI command: bulk import."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, EXIT_USAGE, AddCommand, open_ledger, progress

__all__ = ["register"]

def cmd_import(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import ImportFile, check_actor, check_reason  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    source = ImportFile(args.file, args.format)  # fail fast: missing file, format, header
    actor, reason = check_actor(args.actor), check_reason(args.reason)
    if args.batch_size is not None and not 1 <= args.batch_size <= 100_000:
        raise InvalidInput("batch size must be between 1 and 100000")
    with open_ledger() as ledger, progress("importing") as update:
        summary = ledger.import_people(
            source, update=args.update, strict=args.strict, batch_size=args.batch_size,
            workers=args.workers, actor=actor, reason=reason, progress=update)
    return summary.model_dump(mode="json"), EXIT_OK if not summary.rejected else EXIT_USAGE


def register(sub: Any, *, add: AddCommand) -> None:
    """Add ``import`` to the top-level subparsers."""
    from peoplelog.ledger import BATCH_SIZE, FIRST_BATCH, LANES  # noqa: PLC0415 - light

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
