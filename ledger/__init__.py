"""peoplelog's ledger: person versions, content-addressed, chained and encrypted.

The public API: ``Ledger`` (and ``connect``, ``init_store``) for applications, ``Settings``
and ``Database`` for every entry point, the record and CID helpers for auditors' tools, bulk
import, and the input checks the CLI makes before it opens a database. The records and
the error tree are ``peoplelog.schema``'s; ``import peoplelog`` gives both.

Names are loaded on first use (PEP 562): importing the package costs nothing until
one of them is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peoplelog.schema.lazy import lazy_exports

if TYPE_CHECKING:
    from ._api import KeysWanted, Ledger, connect
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
    from ._events import (
        EVENT_FORMAT,
        EVENT_TYPE,
        INSERT_EVENT,
        EventKind,
        SecurityEvent,
        event_of_envelope,
        event_params,
        stored_event,
    )
    from ._import._defaults import BATCH_SIZE, FIRST_BATCH, LANES
    from ._import._reading import ImportFile
    from ._import._summary import ImportSummary, RowError
    from ._inputs import (
        MAX_ACTOR,
        MAX_NAME,
        MAX_REASON,
        check_actor,
        check_name,
        check_person_id,
        check_reason,
        check_version,
        parse_timestamp,
    )
    from ._maintenance import ERASURE_TABLES, CompactedTable, compact_after_erasure
    from ._read import PasswordMatch, check_keyring, read_person
    from ._reindex import REINDEX_BATCH, ReindexSummary, reindex_claims, retire_blind_key
    from ._rotation import (
        REWRAP_BATCH,
        KekEpoch,
        RewrapSummary,
        kek_epochs,
        retire_kek,
        rewrap_data_keys,
    )
    from ._settings import Settings
    from ._setup import StoreInit, init_store
    from ._store import Database, tables_distributed

__all__ = [
    "BATCH_SIZE",
    "CID_PREFIX",
    "ERASURE_TABLES",
    "EVENT_FORMAT",
    "EVENT_TYPE",
    "FIRST_BATCH",
    "INSERT_EVENT",
    "LANES",
    "MAX_ACTOR",
    "MAX_NAME",
    "MAX_REASON",
    "REINDEX_BATCH",
    "REWRAP_BATCH",
    "CompactedTable",
    "Database",
    "EventKind",
    "ImportFile",
    "ImportSummary",
    "KekEpoch",
    "KeysWanted",
    "Ledger",
    "PasswordMatch",
    "ReindexSummary",
    "RewrapSummary",
    "RowError",
    "SecurityEvent",
    "Settings",
    "StoreInit",
    "canonical_json",
    "check_actor",
    "check_keyring",
    "check_name",
    "check_person_id",
    "check_reason",
    "check_version",
    "cid_bytes",
    "cid_from_digest",
    "cid_of",
    "compact_after_erasure",
    "connect",
    "envelope",
    "envelope_bytes",
    "envelope_text",
    "event_of_envelope",
    "event_params",
    "init_store",
    "kek_epochs",
    "parse_cid",
    "parse_timestamp",
    "read_person",
    "record_of_envelope",
    "reindex_claims",
    "retire_blind_key",
    "retire_kek",
    "rewrap_data_keys",
    "stored_event",
    "tables_distributed",
    "version_cid",
]

_SOURCES = {
    "_api": ("KeysWanted", "Ledger", "connect"),
    "_cid": ("CID_PREFIX", "canonical_json", "cid_bytes", "cid_from_digest", "cid_of",
             "envelope", "envelope_bytes", "envelope_text", "parse_cid", "record_of_envelope",
             "version_cid"),
    "_events": ("EVENT_FORMAT", "EVENT_TYPE", "INSERT_EVENT", "EventKind", "SecurityEvent",
                "event_of_envelope", "event_params", "stored_event"),
    "_import._defaults": ("BATCH_SIZE", "FIRST_BATCH", "LANES"),
    "_import._reading": ("ImportFile",),
    "_import._summary": ("ImportSummary", "RowError"),
    "_inputs": ("MAX_ACTOR", "MAX_NAME", "MAX_REASON", "check_actor", "check_name",
                "check_person_id", "check_reason", "check_version", "parse_timestamp"),
    "_maintenance": ("ERASURE_TABLES", "CompactedTable", "compact_after_erasure"),
    "_read": ("PasswordMatch", "check_keyring", "read_person"),
    "_reindex": ("REINDEX_BATCH", "ReindexSummary", "reindex_claims", "retire_blind_key"),
    "_rotation": ("REWRAP_BATCH", "KekEpoch", "RewrapSummary", "kek_epochs", "retire_kek",
                  "rewrap_data_keys"),
    "_settings": ("Settings",),
    "_setup": ("StoreInit", "init_store"),
    "_store": ("Database", "tables_distributed"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
