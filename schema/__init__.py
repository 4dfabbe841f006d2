"""What peoplelog stores: SQL migrations, record models and the error tree.

Names are loaded on first use (PEP 562), so a caller that needs only the errors does not
import the database driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:
    from ._columns import (
        ATTESTATION_COLUMNS,
        HISTORY_COLUMNS,
        LATEST_COLUMNS,
        PEOPLE_COLUMNS,
        WRITTEN_COLUMNS,
        column_list,
        placeholders,
    )
    from ._distribute import (
        DISTRIBUTION_PLAN,
        Placement,
        citus_installed,
        distribute_tables,
    )
    from ._migrate import (
        Migration,
        apply_migrations,
        grant_app_role,
        grant_auditor_role,
        migrations,
    )
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
        InvalidToken,
        KeyNotFound,
        KeyringError,
        LoginFailed,
        NotFound,
        NotPermitted,
        PeoplelogError,
        PersonErased,
        PersonNotFound,
        ProjectionDamaged,
        RateLimited,
        Unattested,
        Unauthenticated,
        VersionConflict,
        VersionNotFound,
    )

__all__ = [
    "ATTESTATION_COLUMNS",
    "DISTRIBUTION_PLAN",
    "FORMAT_VERSION",
    "HISTORY_COLUMNS",
    "LATEST_COLUMNS",
    "PEOPLE_COLUMNS",
    "WRITTEN_COLUMNS",
    "ChainBroken",
    "ConfigurationError",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "DecryptionFailed",
    "EmailTaken",
    "HistoryEntry",
    "InvalidInput",
    "InvalidToken",
    "KeyNotFound",
    "KeyringError",
    "LoginFailed",
    "Migration",
    "NotFound",
    "NotPermitted",
    "Op",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "PersonView",
    "Placement",
    "ProjectionDamaged",
    "RateLimited",
    "Unattested",
    "Unauthenticated",
    "VersionConflict",
    "VersionNotFound",
    "VersionRecord",
    "VersionRef",
    "apply_migrations",
    "citus_installed",
    "column_list",
    "distribute_tables",
    "grant_app_role",
    "grant_auditor_role",
    "migrations",
    "placeholders",
]

_SOURCES = {
    "_columns": ("ATTESTATION_COLUMNS", "HISTORY_COLUMNS", "LATEST_COLUMNS", "PEOPLE_COLUMNS",
                 "WRITTEN_COLUMNS", "column_list", "placeholders"),
    "_distribute": ("DISTRIBUTION_PLAN", "Placement", "citus_installed", "distribute_tables"),
    "_migrate": ("Migration", "apply_migrations", "grant_app_role", "grant_auditor_role",
                 "migrations"),
    "_models": ("FORMAT_VERSION", "HistoryEntry", "Op", "PersonView", "VersionRecord",
                "VersionRef"),
    "errors": ("ChainBroken", "ConfigurationError", "Conflict", "DatabaseError",
               "DatabaseUnavailable", "DecryptionFailed", "EmailTaken", "InvalidInput",
               "KeyNotFound", "KeyringError", "NotFound", "PeoplelogError", "PersonErased",
               "PersonNotFound", "ProjectionDamaged", "RateLimited", "Unattested",
               "VersionConflict", "VersionNotFound", "InvalidToken", "LoginFailed", "NotPermitted",
               "Unauthenticated"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
