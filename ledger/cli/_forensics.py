"""CLI commands: forensic queries."""

from __future__ import annotations

from typing import Any

from ._common import AddCommand

__all__ = ["register"]


def register(sub: Any, person_sub: Any, *, add: AddCommand) -> None:
    """Add forensic commands (top level and under ``person``)."""
