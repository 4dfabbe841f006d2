"""The one switch between the C extensions and the pure-Python code.

Each floor with a C twin (``fields``, ``ledger``, ``projections``) asks ``native_enabled``
before it loads its ``_native`` module; both paths give the same bytes and verdicts
(vectors and property tests hold them together), so the switch changes speed only.
"""

from __future__ import annotations

import os

__all__ = ["PURE_PYTHON_VARIABLE", "native_enabled"]

PURE_PYTHON_VARIABLE = "PEOPLELOG_PURE_PYTHON"
"""Set it to anything but ``0`` to run the pure-Python code even where C is built."""


def native_enabled() -> bool:
    """False when ``PEOPLELOG_PURE_PYTHON`` asks for pure Python (read at each call, so a
    test can switch it)."""
    return os.environ.get(PURE_PYTHON_VARIABLE, "") in ("", "0")
