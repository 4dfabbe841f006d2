"""How each peoplelog package exports its names: loaded on first use (PEP 562).

A package lists where each public name lives (``_SOURCES``: module -> names) and gets its
``__getattr__`` and ``__dir__`` from ``lazy_exports``; its ``if TYPE_CHECKING:`` imports
say the same to type checkers. So ``import peoplelog`` (and the CLI's parser) load no
database driver and no cipher until a name that needs one is asked for. It lives on the
ground floor because every floor uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, tuple[str, ...]],
                 namespace: MutableMapping[str, Any], exported: list[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name of ``sources`` is imported
    from its module (relative to the package, or absolute when it starts with
    ``peoplelog``) when first asked for, then kept in ``namespace``."""
    module_of = {name: module for module, names in sources.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith("peoplelog") else f"{package}.{module}"
        value = getattr(importlib.import_module(target), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exported})

    return __getattr__, __dir__
