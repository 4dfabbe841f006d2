"""peoplelog: an identity store on PostgreSQL that an application can trust and an auditor
can check.

The small public API: ``connect()`` (or ``Ledger.open``) for applications, ``Database`` and
``Settings`` for key-free tools, the record and CID helpers for auditors, and the error
tree rooted in ``PeoplelogError``. The floors are packages of their own
(``peoplelog.schema``, ``peoplelog.fields``, ``peoplelog.ledger``,
``peoplelog.projections``, ``peoplelog.cli``).

Names are loaded on first use (PEP 562): ``import peoplelog`` imports no database driver
and no cipher until one of them is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peoplelog.schema.lazy import lazy_exports

if TYPE_CHECKING:
    from peoplelog.ledger import (
        CID_PREFIX,
        Database,
        ImportSummary,
        Ledger,
        RowError,
        Settings,
        StoreInit,
        canonical_json,
        cid_bytes,
        cid_from_digest,
        cid_of,
        connect,
        envelope,
        envelope_bytes,
        envelope_text,
        init_store,
        parse_cid,
        record_of_envelope,
        version_cid,
    )
    from peoplelog.schema import (
        FORMAT_VERSION,
        HistoryEntry,
        Op,
        PersonView,
        VersionRecord,
        VersionRef,
    )
    from peoplelog.schema.errors import (
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

__version__ = "0.1.0"

__all__ = [
    "CID_PREFIX",
    "FORMAT_VERSION",
    "ChainBroken",
    "ConfigurationError",
    "Conflict",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "DecryptionFailed",
    "EmailTaken",
    "HistoryEntry",
    "ImportSummary",
    "InvalidInput",
    "InvalidToken",
    "KeyNotFound",
    "KeyringError",
    "Ledger",
    "LoginFailed",
    "NotFound",
    "NotPermitted",
    "Op",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "PersonView",
    "ProjectionDamaged",
    "RateLimited",
    "RowError",
    "Settings",
    "StoreInit",
    "Unattested",
    "Unauthenticated",
    "VersionConflict",
    "VersionNotFound",
    "VersionRecord",
    "VersionRef",
    "__version__",
    "canonical_json",
    "cid_bytes",
    "cid_from_digest",
    "cid_of",
    "connect",
    "envelope",
    "envelope_bytes",
    "envelope_text",
    "init_store",
    "parse_cid",
    "record_of_envelope",
    "version_cid",
]

_SOURCES = {
    "peoplelog.ledger": ("CID_PREFIX", "Database", "ImportSummary", "Ledger", "RowError",
                         "Settings", "StoreInit", "canonical_json", "cid_bytes",
                         "cid_from_digest", "cid_of", "connect", "envelope", "envelope_bytes",
                         "envelope_text", "init_store", "parse_cid", "record_of_envelope",
                         "version_cid"),
    "peoplelog.schema": ("FORMAT_VERSION", "HistoryEntry", "Op", "PersonView", "VersionRecord",
                         "VersionRef"),
    "peoplelog.schema.errors": ("ChainBroken", "ConfigurationError", "Conflict", "DatabaseError",
                                "DatabaseUnavailable", "DecryptionFailed", "EmailTaken",
                                "InvalidInput", "KeyNotFound", "KeyringError", "NotFound",
                                "PeoplelogError", "PersonErased", "PersonNotFound",
                                "ProjectionDamaged", "RateLimited", "Unattested", "VersionConflict",
                                "VersionNotFound", "InvalidToken", "LoginFailed",
                                "NotPermitted", "Unauthenticated"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
