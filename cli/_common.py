"""Shared pieces of the CLI: exit codes and how a command is declared."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_DAMAGE",
    "EXIT_INTERNAL",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "AddCommand",
    "Handler",
    "add_command",
    "exit_code",
    "progress",
]

EXIT_OK, EXIT_DAMAGE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_INTERNAL = range(6)

EXIT_CODES: dict[str, int] = {
    "chain_broken": EXIT_DAMAGE,
    "invalid_input": EXIT_USAGE,
    "configuration": EXIT_USAGE,
    "database_unavailable": EXIT_USAGE,
    "decryption_failed": EXIT_USAGE,
    "not_found": EXIT_NOT_FOUND,
    "conflict": EXIT_CONFLICT,
}
"""The exit code of each error kind; a kind not listed takes its nearest listed ancestor's
(``key_not_found`` is a ``keyring`` error is a ``configuration`` error: exit 2), and one
with none listed (``database``, the root ``error``) is an unexpected error, exit 5."""


def exit_code(error: BaseException) -> int:
    """The exit code for an error of the peoplelog tree (5 for anything else)."""
    for cls in type(error).__mro__:
        code = EXIT_CODES.get(getattr(cls, "kind", ""))
        if code is not None and "kind" in vars(cls):
            return code
    return EXIT_INTERNAL

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


@contextlib.contextmanager
def progress(description: str, total: int | None = None,
             unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; ``update(done)`` takes a running count.

    Off a terminal (CI, pipes) nothing is drawn, so machine output stays clean.
    """
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=False,
               dynamic_ncols=True, unit_scale=True)
    seen = 0

    def update(done: int) -> None:
        nonlocal seen
        bar.update(done - seen)
        seen = done

    try:
        yield update
    finally:
        bar.close()
