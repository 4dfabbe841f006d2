"""Maintenance after erasures: PostgreSQL keeps a deleted row's bytes in its table and
index pages until they are rewritten. An erased person's wrapped data key, blind index and
external-id digest stay readable in the data files (and so in the next base backup) until
then. ``compact_after_erasure`` rewrites the tables that hold them (``VACUUM FULL``, which
rebuilds their indexes too), so the files no longer contain them.

It takes each table's ACCESS EXCLUSIVE lock while it is rewritten (logins wait for
``email_lookup``), so run it off-peak; it needs the owner's login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ._store import Database

__all__ = ["ERASURE_TABLES", "CompactedTable", "compact_after_erasure"]

ERASURE_TABLES = ("email_lookup", "person_keys", "external_ids", "import_seen",
                  "people_latest")
"""What an erasure deletes from or rewrites: claims (blind indexes), data keys, external id
digests, import notes, and the person's last ciphertexts in ``people_latest``."""


@dataclass(frozen=True)
class CompactedTable:
    table: str
    bytes_before: int
    bytes_after: int

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after}


def _size(database: Database, table: str) -> int:
    """The table's bytes with its indexes: on a Citus cluster, of all its shards (the
    coordinator's own table of a distributed one is empty)."""
    size = ("citus_total_relation_size" if database.distributed
            else "pg_total_relation_size")
    row = database.run(lambda conn: conn.execute(
        f"SELECT {size}(%s::regclass)", (table,)).fetchone())
    return 0 if row is None else int(row[0])


def compact_after_erasure(database: Database) -> list[CompactedTable]:
    """``VACUUM (FULL, ANALYZE)`` each of ``ERASURE_TABLES``, one at a time (VACUUM runs
    outside a transaction), with each table's size before and after."""
    done = []
    for table in ERASURE_TABLES:
        before = _size(database, table)
        statement = sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(table))
        database.run(lambda conn: conn.execute(statement))  # noqa: B023 - run at once
        done.append(CompactedTable(table, before, _size(database, table)))
    return done
