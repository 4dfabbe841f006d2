"""The pipelined write (no ``update``, no ``strict``): while a few connections plan and
write earlier batches, the reading thread reads the next batch and seals it ahead."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from .._store import Conn, Database
from ._defaults import LANES
from ._planning import Plan, Result, Retry, plan_batch
from ._sealing import Sealed
from ._summary import ImportSummary
from ._validation import Row

if TYPE_CHECKING:
    from ._importer import Importer

__all__ = ["Pipeline"]



class Lane:
    """One connection and the thread that writes batches on it. The thread connects, so
    the reading thread goes on meanwhile; its first batch waits for it there."""

    def __init__(self, conninfo: str) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1,
                                         thread_name_prefix="peoplelog-import")
        self._connected = self.thread.submit(Database, conninfo, pool_size=1)
        self.conn: Conn | None = None
        """The connection of the batch being written, for ``cancel``."""

    @property
    def database(self) -> Database:
        """The lane's ``Database`` (raises what connecting raised)."""
        return self._connected.result()

    def cancel(self) -> None:
        """Cancel the statement in flight (its batch's transaction rolls back)."""
        conn = self.conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)

    def close(self) -> None:
        self.thread.shutdown(wait=True)
        if self._connected.exception() is None:
            self.database.close()


@dataclass
class Flight:
    lane: Lane
    batch: list[Row]
    rows: int
    planned: threading.Event = field(default_factory=threading.Event)
    plan: Plan | None = field(default=None, repr=False)
    sealed: dict[int, Sealed] = field(default_factory=dict, repr=False)
    future: Future[Result | None] | None = None


class Pipeline:
    """Without ``update`` or ``strict``: while lanes plan and write earlier batches, this
    thread reads the next one and seals its rows ahead (all of them, while most rows turn
    out new; the plan decides which seals are used).

    Plans run one after another, in file order, each counting the keys of the batches
    still in flight as seen: those keys are all a batch writes, so a plan gives what it
    would after their commits. A batch that loses a claim to another writer is written
    again, alone, once the batches in flight have landed."""

    def __init__(self, importer: Importer, summary: ImportSummary,
                 progress: Callable[[int], None] | None) -> None:
        self.importer = importer
        self.summary = summary
        self.progress = progress
        self.lanes: list[Lane] = []
        self.idle: list[Lane] = []
        self.flights: deque[Flight] = deque()
        self.pending: dict[bytes, int] = {}
        self.reported = 0
        self.stopped = threading.Event()
        self.ahead = True
        """Seal ahead while most rows turn out new (not on a re-run of an imported file)."""

    def run(self, batches: Iterator[list[Row]]) -> None:
        try:
            for batch in batches:
                rows = self.summary.rows
                sealed = self.importer.prepare_ahead(batch) if self.ahead else {}
                if len(self.flights) >= LANES:
                    self.land(self.flights.popleft())
                self.launch(batch, rows, sealed)
            while self.flights:
                self.land(self.flights.popleft())
        except BaseException:
            self.stopped.set()
            for flight in self.flights:
                flight.lane.cancel()
            raise
        finally:
            for lane in self.lanes:
                lane.close()

    def launch(self, batch: list[Row], rows: int, sealed: dict[int, Sealed]) -> None:
        if not self.idle:
            lane = Lane(self.importer.database.conninfo)
            self.lanes.append(lane)
            self.idle.append(lane)
        flight = Flight(self.idle.pop(), batch, rows, sealed=sealed)
        before = self.flights[-1].planned if self.flights else None
        importer, pending, stopped = self.importer, self.pending, self.stopped

        def write(conn: Conn) -> Result | None:
            flight.lane.conn = conn
            try:
                if before is not None:
                    before.wait()
                if stopped.is_set():
                    return None
                plan = flight.plan = plan_batch(conn, batch, False, importer.seen, pending,
                                                older=importer.blinds.older)
                for line, keys in plan.marks:
                    for key in keys:
                        pending[key] = line
            finally:
                flight.planned.set()
            people = importer.prepare(plan.new, flight.sealed)
            try:
                return importer.commit(conn, plan, people, {}, strict=False)
            except Retry:
                return None

        lane = flight.lane
        flight.future = lane.thread.submit(lambda: lane.database.run(write))
        self.flights.append(flight)

    def land(self, flight: Flight) -> None:
        """Wait for the oldest batch in flight and count it. One that lost a claim to
        another writer is written again once every batch in flight has landed, with any
        other such batch, in file order."""
        if self.wait(flight) is not None:
            self.report(flight)
            return
        again = [flight]
        while self.flights:
            later = self.flights.popleft()
            if self.wait(later) is None:
                again.append(later)
            else:
                self.report(later)
        for retry in again:
            retry.lane.database.run(functools.partial(self.write_alone, retry))
            self.report(retry)

    def write_alone(self, flight: Flight, conn: Conn) -> None:
        self.importer.write_batch(conn, flight.batch, self.summary, False, flight.sealed)

    def wait(self, flight: Flight) -> Result | None:
        """The batch's outcome, counted in the summary; None if it must be written again."""
        assert flight.future is not None
        try:
            result = flight.future.result()
        finally:
            for later in self.flights:  # their plans may still be reading these keys
                later.planned.wait()
            for _, keys in flight.plan.marks if flight.plan is not None else ():
                for key in keys:
                    self.pending.pop(key, None)
            self.idle.append(flight.lane)
        if result is None or flight.plan is None:
            return None
        self.importer.count(self.summary, flight.plan, result)
        self.ahead = 2 * len(flight.plan.new) >= len(flight.batch)
        return result

    def report(self, flight: Flight) -> None:
        self.reported = max(self.reported, flight.rows)
        if self.progress is not None:
            self.progress(self.reported)
