"""What is derived from the ledger and checked against it."""

from __future__ import annotations

from ._verify import Finding, VerificationReport, iter_findings, verify_ledger

__all__ = ["Finding", "VerificationReport", "iter_findings", "verify_ledger"]
