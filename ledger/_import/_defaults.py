"""The import's defaults: batch sizes and how many batches are written at once."""

from __future__ import annotations

__all__ = ["BATCH_ATTEMPTS", "BATCH_SIZE", "FIRST_BATCH", "LANES"]

BATCH_ATTEMPTS = 8
"""How often a batch is planned again when concurrent writers keep claiming its emails."""
BATCH_SIZE = 2500
"""Rows per batch (one transaction) by default. PostgreSQL spends noticeably less per row on
COPYs of a few thousand rows than of a few hundred; a crash loses at most ``LANES`` batches
(a re-run resumes), and a batch in flight holds a few MB."""
FIRST_BATCH = 256
"""Rows in the first batch by default; each next batch is twice as big, up to
``BATCH_SIZE``. The server starts writing after a few milliseconds of reading, not after a
whole batch (about 30 ms of a 20k-row import spent with one core idle)."""
LANES = 3
"""Connections writing batches at the same time (each batch is still one transaction).
More than two keeps the server busy while one lane waits for its commit to be flushed or
for the plan before it."""
