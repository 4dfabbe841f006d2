"""peoplelog's ledger: person versions, content-addressed, chained and encrypted.

The public API: ``Ledger`` for applications, the record and CID helpers for auditors'
tools, and the error tree (``PeoplelogError`` and its subclasses).
"""

from __future__ import annotations

from schema import (
    FORMAT_VERSION,
    ChainBroken,
    ConfigurationError,
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    DecryptionFailed,
    EmailTaken,
    HistoryEntry,
    InvalidInput,
    KeyNotFound,
    KeyringError,
    NotFound,
    Op,
    PeoplelogError,
    PersonErased,
    PersonNotFound,
    PersonView,
    VersionConflict,
    VersionNotFound,
    VersionRecord,
    VersionRef,
)

from ._api import Ledger
from ._cid import (
    CID_PREFIX,
    canonical_json,
    cid_bytes,
    cid_from_digest,
    cid_of,
    envelope,
    envelope_bytes,
    envelope_text,
    parse_cid,
    record_of_envelope,
    version_cid,
)
from ._store import Database, Settings

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
    "InvalidInput",
    "KeyNotFound",
    "KeyringError",
    "Ledger",
    "NotFound",
    "Op",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "PersonView",
    "Settings",
    "VersionConflict",
    "VersionNotFound",
    "VersionRecord",
    "VersionRef",
    "canonical_json",
    "cid_bytes",
    "cid_from_digest",
    "cid_of",
    "envelope",
    "envelope_bytes",
    "envelope_text",
    "parse_cid",
    "record_of_envelope",
    "version_cid",
]
