"""What peoplelog stores: SQL migrations, record models and the error tree.

Names are loaded on first use (PEP 562), so a caller that needs only the errors does not
import the database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._columns import LATEST_COLUMNS, PEOPLE_COLUMNS, column_list
    from ._migrate import Migration, apply_migrations, grant_app_role, migrations
    from ._models import FORMAT_VERSION, HistoryEntry, Op, PersonView, VersionRecord, VersionRef
    from .errors import (
        ChainBroken,
        ConfigurationError,
        Conflict,
        DatabaseError,
        DatabaseUnavailable,
        DecryptionFailed,
        EmailTaken,
        InvalidInput,
        KeyNotFound,
        KeyringError,
        NotFound,
        PeoplelogError,
        PersonErased,
        PersonNotFound,
        VersionConflict,
        VersionNotFound,
    )

__all__ = [
    "FORMAT_VERSION",
    "LATEST_COLUMNS",
    "PEOPLE_COLUMNS",
    "ChainBroken",
    "ConfigurationError",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "DecryptionFailed",
    "EmailTaken",
    "HistoryEntry",
    "InvalidInput",
    "KeyNotFound",
    "KeyringError",
    "Migration",
    "NotFound",
    "Op",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "PersonView",
    "VersionConflict",
    "VersionNotFound",
    "VersionRecord",
    "VersionRef",
    "apply_migrations",
    "column_list",
    "grant_app_role",
    "migrations",
]

_SOURCES = {
    "_columns": ("LATEST_COLUMNS", "PEOPLE_COLUMNS", "column_list"),
    "_migrate": ("Migration", "apply_migrations", "grant_app_role", "migrations"),
    "_models": ("FORMAT_VERSION", "HistoryEntry", "Op", "PersonView", "VersionRecord",
                "VersionRef"),
    "errors": ("ChainBroken", "ConfigurationError", "Conflict", "DatabaseError",
               "DatabaseUnavailable", "DecryptionFailed", "EmailTaken", "InvalidInput",
               "KeyNotFound", "KeyringError", "NotFound", "PeoplelogError", "PersonErased",
               "PersonNotFound", "VersionConflict", "VersionNotFound"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
