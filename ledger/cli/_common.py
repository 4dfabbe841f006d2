"""Shared pieces of the CLI: exit codes and how a command is declared."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DAMAGE",
    "EXIT_INTERNAL",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "AddCommand",
    "Handler",
    "add_command",
]

EXIT_OK, EXIT_DAMAGE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_INTERNAL = range(6)

Handler = Callable[[argparse.Namespace], tuple[Any, int]]
AddCommand = Callable[..., argparse.ArgumentParser]
"""``add(owner, name, handler, help_text, example, **kw)`` -> the command's parser."""


def add_command(owner: Any, name: str, handler: Handler, help_text: str, example: str, *,
                common: argparse.ArgumentParser, **kw: Any) -> argparse.ArgumentParser:
    """Declare a command: help, an example under it, ``--json``, and its handler."""
    parser: argparse.ArgumentParser = owner.add_parser(
        name, parents=[common], help=help_text, description=help_text,
        epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    parser.set_defaults(handler=handler)
    return parser
