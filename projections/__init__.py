"""What is derived from the ledger and checked against it.

Names are loaded on first use (PEP 562): importing the package costs nothing until
one of them is asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peoplelog.ledger import parse_timestamp

    from ._audit import AuditReport, audit_database
    from ._checkpoint import (
        Checkpoint,
        CheckpointSigner,
        TrustedKey,
        VerifierKey,
        VerifierKeys,
        parse_checkpoint,
    )
    from ._export import EXPORT_FORMAT, export_ledger, verify_export
    from ._history import (
        ChangeEntry,
        ChangesPage,
        FieldChange,
        Forensics,
        VersionDiff,
        changes,
        diff_versions,
        history_with_values,
        person_as_of,
    )
    from ._latest import ProjectionReport, RebuildReport, check_projections, rebuild_projections
    from ._log import (
        CheckpointResult,
        InclusionProof,
        LogReport,
        iter_log_findings,
        log_origin,
        make_checkpoint,
        prove_inclusion,
        stored_verifier_key,
    )
    from ._verify import Finding, VerificationReport, iter_findings, verify_ledger

__all__ = [
    "EXPORT_FORMAT",
    "AuditReport",
    "ChangeEntry",
    "ChangesPage",
    "Checkpoint",
    "CheckpointResult",
    "CheckpointSigner",
    "FieldChange",
    "Finding",
    "Forensics",
    "InclusionProof",
    "LogReport",
    "ProjectionReport",
    "RebuildReport",
    "TrustedKey",
    "VerificationReport",
    "VerifierKey",
    "VerifierKeys",
    "VersionDiff",
    "audit_database",
    "changes",
    "check_projections",
    "diff_versions",
    "export_ledger",
    "history_with_values",
    "iter_findings",
    "iter_log_findings",
    "log_origin",
    "make_checkpoint",
    "parse_checkpoint",
    "parse_timestamp",
    "person_as_of",
    "prove_inclusion",
    "rebuild_projections",
    "stored_verifier_key",
    "verify_export",
    "verify_ledger",
]

_SOURCES = {
    "peoplelog.ledger": ("parse_timestamp",),
    "_audit": ("AuditReport", "audit_database"),
    "_checkpoint": ("Checkpoint", "CheckpointSigner", "TrustedKey", "VerifierKey",
                    "VerifierKeys", "parse_checkpoint"),
    "_export": ("EXPORT_FORMAT", "export_ledger", "verify_export"),
    "_history": ("ChangeEntry", "ChangesPage", "FieldChange", "Forensics", "VersionDiff",
                 "changes", "diff_versions", "history_with_values", "person_as_of"),
    "_latest": ("ProjectionReport", "RebuildReport", "check_projections", "rebuild_projections"),
    "_log": ("CheckpointResult", "InclusionProof", "LogReport", "iter_log_findings",
             "log_origin", "make_checkpoint", "prove_inclusion", "stored_verifier_key"),
    "_verify": ("Finding", "VerificationReport", "iter_findings", "verify_ledger"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    target = module if module.startswith("peoplelog.") else f"{__name__}.{module}"
    value = getattr(importlib.import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
