"""Which scanners verification uses: the C ones (``_native``) when built, else pure Python.

``peoplelog.fields.native_enabled`` (the one switch) can force the pure-Python scanners; the
contract tests run both.
The C scanners read text as UTF-8, so they are used only on UTF-8 connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from peoplelog.fields import native_enabled
from peoplelog.schema import FORMAT_VERSION, Op

if TYPE_CHECKING:
    from ._native import ChainScanner, LogScanner

__all__ = ["native_available", "native_chain_scanner", "native_log_scanner"]


def _module(conn: psycopg.Connection[Any] | None) -> Any:
    if not native_enabled():
        return None
    if conn is not None and conn.info.encoding != "utf-8":
        return None
    try:
        from . import _native  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return None
    return _native


def native_available() -> bool:
    """True when the C scanners are built and not disabled."""
    return _module(None) is not None


def native_chain_scanner(conn: psycopg.Connection[Any]) -> ChainScanner | None:
    module = _module(conn)
    if module is None:
        return None
    scanner: ChainScanner = module.ChainScanner(
        FORMAT_VERSION, tuple(op.value.encode() for op in Op), Op.CREATED.value.encode(),
        Op.ERASED.value.encode())
    return scanner


def native_log_scanner(conn: psycopg.Connection[Any], stops: Sequence[int],
                       ranges: Sequence[tuple[int, int]]) -> LogScanner | None:
    module = _module(conn)
    if module is None:
        return None
    scanner: LogScanner = module.LogScanner(stops, ranges)
    return scanner
