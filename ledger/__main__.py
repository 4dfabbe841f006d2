"""``python -m ledger`` runs the peoplelog CLI."""

from __future__ import annotations

from ledger.cli import main

raise SystemExit(main())
