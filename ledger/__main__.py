"""``python -m ledger`` runs the peoplelog CLI."""

from __future__ import annotations

from ledger.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
