"""``python -m peoplelog`` runs the peoplelog CLI."""

from __future__ import annotations

from peoplelog.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
