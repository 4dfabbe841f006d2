"""What an import reports: per-row errors (line and reason, never values) and totals."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

__all__ = ["MAX_REPORTED_ERRORS", "ImportSummary", "RowError", "reject"]

MAX_REPORTED_ERRORS = 1000
"""Rows rejected beyond this many are counted but not listed."""


class RowError(BaseModel):
    """A row that was not imported: its line number and why (never its values)."""

    line: int
    reason: str


class ImportSummary(BaseModel):
    """The outcome of an import: rows read, persons created (``imported``), persons given a
    new version (``updated``), rows already there (``skipped``) and rows refused
    (``rejected``, with the first ``MAX_REPORTED_ERRORS`` in ``errors``, by line).
    ``written`` is False when a strict import wrote nothing."""

    rows: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = []
    seconds: float = 0.0
    written: bool = True


def reject(summary: ImportSummary, errors: Iterable[RowError]) -> None:
    """Count ``errors`` as rejected rows in ``summary``."""
    for error in errors:
        summary.rejected += 1
        if len(summary.errors) < MAX_REPORTED_ERRORS:
            summary.errors.append(error)
