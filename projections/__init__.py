"""What is derived from the ledger and checked against it.

Names are loaded on first use (PEP 562): importing the package costs nothing until
one of them is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peoplelog.schema.lazy import lazy_exports

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
    from ._events import ISSUED_KINDS, RetirementSummary, iter_event_findings, retire_events
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
        InclusionProof,
        LogReport,
        iter_log_findings,
        log_origin,
        prove_inclusion,
        stored_verifier_key,
    )
    from ._sequencer import CheckpointResult, make_checkpoint
    from ._verify import Finding, VerificationReport, iter_findings, verify_ledger

__all__ = [
    "EXPORT_FORMAT",
    "ISSUED_KINDS",
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
    "RetirementSummary",
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
    "iter_event_findings",
    "iter_findings",
    "iter_log_findings",
    "log_origin",
    "make_checkpoint",
    "parse_checkpoint",
    "parse_timestamp",
    "person_as_of",
    "prove_inclusion",
    "rebuild_projections",
    "retire_events",
    "stored_verifier_key",
    "verify_export",
    "verify_ledger",
]

_SOURCES = {
    "peoplelog.ledger": ("parse_timestamp",),
    "_audit": ("AuditReport", "audit_database"),
    "_checkpoint": ("Checkpoint", "CheckpointSigner", "TrustedKey", "VerifierKey",
                    "VerifierKeys", "parse_checkpoint"),
    "_events": ("ISSUED_KINDS", "RetirementSummary", "iter_event_findings", "retire_events"),
    "_export": ("EXPORT_FORMAT", "export_ledger", "verify_export"),
    "_history": ("ChangeEntry", "ChangesPage", "FieldChange", "Forensics", "VersionDiff",
                 "changes", "diff_versions", "history_with_values", "person_as_of"),
    "_latest": ("ProjectionReport", "RebuildReport", "check_projections", "rebuild_projections"),
    "_log": ("InclusionProof", "LogReport", "iter_log_findings", "log_origin", "prove_inclusion",
             "stored_verifier_key"),
    "_sequencer": ("CheckpointResult", "make_checkpoint"),
    "_verify": ("Finding", "VerificationReport", "iter_findings", "verify_ledger"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
