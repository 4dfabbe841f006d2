"""What peoplelog stores: SQL migrations, record models and the error tree."""

from __future__ import annotations

from ._errors import (
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
from ._migrate import Migration, apply_migrations, grant_app_role, migrations
from ._models import FORMAT_VERSION, HistoryEntry, Op, PersonView, VersionRecord, VersionRef

__all__ = [
    "FORMAT_VERSION",
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
    "grant_app_role",
    "migrations",
]
