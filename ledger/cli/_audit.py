"""CLI commands: audit."""

from __future__ import annotations

from typing import Any

from ._common import AddCommand

__all__ = ["register"]


def register(sub: Any, *, add: AddCommand, **_: Any) -> None:
    """Add this module's commands to the top-level subparsers."""
