"""peoplelog benchmarks: each operation against its raw PostgreSQL baseline.

Run ``make bench`` (or ``python -m bench.run``); see ``bench/README.md``. Benchmarks are not
tests: nothing here is imported by ``make test``.
"""

from __future__ import annotations
