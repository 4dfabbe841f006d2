"""What an import run has handled so far, in constant memory: its new persons by their
ids, the keys of the rows it skipped or updated in the ``import_seen`` table."""

from __future__ import annotations

import contextlib
import uuid

from peoplelog.fields import RunIds
from peoplelog.schema import PeoplelogError

from .._store import Conn, Database
from ._copying import (
    COPY_SEEN,
    UUID_LENGTH,
    ByteaArray,
    bytes_field,
    copy_rows,
    int4_field,
    key_probe,
)

__all__ = ["Seen"]


class Seen:
    """What this run has handled so far, with the lines: the persons it created, told by
    their ids (``ids``, see ``peoplelog.fields.RunIds``), and the keys (email digests,
    external id digests, person ids) of the rows it skipped or updated, kept in the
    ``import_seen`` table rather than in memory: a run of any size holds a few batches at
    a time."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.run = uuid.uuid4()
        self.ids = RunIds()
        self.written = False
        """Whether any key was ever added: until then the table holds none of this run's
        (set before the batch that adds them commits: the batches in flight are counted
        by their plans as pending, not looked up)."""
        self._head = b"\x00\x03" + UUID_LENGTH + self.run.bytes
        database.run(lambda conn: conn.execute(
            "DELETE FROM import_seen WHERE created < now() - interval '1 day'"))

    def __repr__(self) -> str:
        return f"Seen(run={self.run})"

    def lookup(self, conn: Conn, keys: list[bytes]) -> dict[bytes, int]:
        """The line of each of ``keys`` this run has noted."""
        if not keys:
            return {}
        with key_probe(conn) as cur:
            return {bytes(k): int(line) for k, line in cur.execute(
                "SELECT key, line FROM import_seen WHERE run = %s AND key = ANY(%s)",
                (self.run, ByteaArray.of(keys)))}

    def add(self, conn: Conn, pairs: list[tuple[bytes, int]]) -> None:
        """Note ``(key, line)`` pairs (the first line of a key wins)."""
        if pairs:
            self.written = True
            head = self._head
            copy_rows(conn, COPY_SEEN,
                      [head + bytes_field(key) + int4_field(4, min(line, 2**31 - 1))
                       for key, line in dict(reversed(pairs)).items()])

    def close(self) -> None:
        """Drop this run's keys; if that fails (database gone), they expire after a day."""
        with contextlib.suppress(PeoplelogError):
            self.database.run(lambda conn: conn.execute(
                "DELETE FROM import_seen WHERE run = %s", (self.run,)))
