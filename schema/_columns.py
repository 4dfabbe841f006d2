"""The columns the ledger writes and reads, listed once (the migrations create them).

Every statement that names all the stored columns of a version (the append's INSERT, the
bulk import's COPY, verification's and the export's scans) is built from these tuples,
so their order is the order the binary COPY layouts and the C scanners follow.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ATTESTATION_COLUMNS",
    "HISTORY_COLUMNS", "LATEST_COLUMNS",
    "PEOPLE_COLUMNS",
    "WRITTEN_COLUMNS",
    "column_list",
    "placeholders",
]

PEOPLE_COLUMNS = (
    "person_id", "version", "cid", "prev", "format", "op", "recorded_at", "actor", "reason",
    "email", "name", "password", "verified_at",
)
"""The columns of ``people`` a version is stored in (``seq`` is the server's alone)."""

ATTESTATION_COLUMNS = ("writer_key", "attestation")
"""Stored with each version, outside its envelope (the seal is of the envelope's CID):
which writer key sealed it, and the seal."""

WRITTEN_COLUMNS = PEOPLE_COLUMNS + ATTESTATION_COLUMNS
"""Every column a write of a version fills."""

HISTORY_COLUMNS = tuple(c for c in PEOPLE_COLUMNS if c not in ("person_id", "format"))
"""A version's columns as one person's history reads them (the person is known, and the
envelope format is the same for every version)."""

LATEST_COLUMNS = (
    "person_id", "version", "cid", "op", "created_at", "recorded_at", "email", "name",
    "password", "verified_at", "erased_at",
)
"""The columns of ``people_latest``: a person's head, as of its newest version."""


def column_list(columns: Iterable[str], alias: str = "") -> str:
    """``columns`` joined for a statement, each prefixed with ``alias.`` when given."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + column for column in columns)


def placeholders(columns: Iterable[str]) -> str:
    """One ``%s`` per column, for a statement's VALUES."""
    return ", ".join("%s" for _ in columns)
