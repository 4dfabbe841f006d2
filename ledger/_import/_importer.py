"""The import itself: batches planned, sealed and written, one transaction each (or, with
``strict``, the whole file checked first and written in one transaction or not at all)."""

from __future__ import annotations

import functools
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from peoplelog.fields import BlindIndex, BlindIndexes, Keyring, PasswordHasher
from peoplelog.schema import Conflict, DecryptionFailed, InvalidInput

from .._cluster import clear_ended
from .._driver import RETRYABLE, translate_errors
from .._inputs import check_actor, check_reason
from .._read import check_keyring, read_password_hash
from .._store import Conn, Database
from .._write import Change, apply_change
from ._defaults import BATCH_ATTEMPTS, BATCH_SIZE, FIRST_BATCH
from ._pipeline import Pipeline
from ._planning import Plan, Result, Retry, StrictFailure, plan_batch
from ._sealing import Sealed, Sealer, copy_new
from ._seen import Seen
from ._summary import ImportSummary, RowError, reject
from ._validation import Row, validate

__all__ = ["Importer", "import_people"]


_UNCHANGED = "unchanged"
"""Marks a plaintext password that equals the person's current one: not a change."""


class Importer:
    """One import run: its settings, its sealer and password workers, what it has seen."""

    def __init__(self, database: Database, keyring: Keyring, *, update: bool,
                 actor: str | None, reason: str | None, workers: int) -> None:
        self.database = database
        self.keyring = keyring
        self.blinds = BlindIndexes.of(keyring)
        self.blind = self.blinds.active
        self.hasher = PasswordHasher()
        self.update = update
        self.actor = check_actor(actor)
        self.reason = check_reason(reason)
        self.sealer = Sealer(keyring, self.blind.key.id, self.actor, self.reason)
        self.pool = ThreadPoolExecutor(max_workers=max(workers, 1))
        self.seen = Seen(database)
        self.credentials_changed: set[uuid.UUID] = set()
        """People whose email or password an update changed (``clear_ended`` after)."""

    def prepare(self, rows: list[Row], done: dict[int, Sealed]) -> list[Sealed]:
        """Seal the new rows (hashing plaintext passwords across the worker threads);
        ``done`` keeps what an earlier attempt at the batch already sealed."""
        todo = [r for r in rows if r.line not in done]
        hashes = iter(self.pool.map(self.hasher.hash,
                                    [r.password for r in todo if r.password is not None]))
        phcs = [r.password_hash if r.password is None else next(hashes) for r in todo]
        ids = self.seen.ids.of([r.line for r in todo])
        for row, sealed in zip(todo, self.sealer.seal(todo, phcs, ids), strict=True):
            done[row.line] = sealed
        return [done[r.line] for r in rows]

    def prepare_ahead(self, rows: list[Row]) -> dict[int, Sealed]:
        """Seal the rows that need no password hashing, before knowing which are new."""
        ready = [r for r in rows if r.password is None]
        sealed = self.sealer.seal(ready, [r.password_hash for r in ready],
                                  self.seen.ids.of([r.line for r in ready]))
        return {row.line: s for row, s in zip(ready, sealed, strict=True)}

    def prepare_passwords(self, conn: Conn, updates: list[tuple[Row, uuid.UUID]],
                          done: dict[tuple[int, uuid.UUID], str | None]) -> None:
        """For updates with a plaintext password: the PHC to store, or ``_UNCHANGED`` when
        it is the person's current password (checked and hashed across the workers, before
        the batch's transaction)."""
        todo = [(row, pid) for row, pid in updates
                if row.password is not None and (row.line, pid) not in done]
        currents = [_current_password(conn, self.keyring, pid) for _, pid in todo]

        def decide(item: tuple[str | None, str]) -> str:
            current, password = item
            if current is not None and self.hasher.verify(current, password):
                return _UNCHANGED
            return self.hasher.hash(password)

        results = self.pool.map(decide, [(current, row.password or "")
                                         for current, (row, _) in zip(currents, todo,
                                                                      strict=True)])
        for (row, pid), result in zip(todo, results, strict=True):
            done[(row.line, pid)] = result

    def apply_update(self, conn: Conn, row: Row, person_id: uuid.UUID,
                     hashed: str | None) -> bool:
        phc = row.password_hash
        if row.password is not None:
            phc = None if hashed == _UNCHANGED else hashed
        elif phc is not None and phc == _current_password(conn, self.keyring, person_id):
            phc = None  # the same hash is not a change
        change = Change(
            email=row.email, name=row.name, password_hash=phc,
            verified=None if row.verified_at is None else True,
            actor=self.actor, reason=self.reason)
        ref = apply_change(conn, self.keyring, person_id, change, None)
        if ref.written and (change.email is not None or change.password_hash is not None):
            self.credentials_changed.add(person_id)
        if row.id_digest is not None:
            conn.execute(
                "INSERT INTO external_ids (id_hash, person_id, key_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (id_hash) DO NOTHING",
                (row.id_digest, person_id, self.blind.key.id))
        return ref.written

    def write_batch(self, conn: Conn, batch: list[Row], summary: ImportSummary,
                    strict: bool, sealed: dict[int, Sealed] | None = None) -> None:
        """Plan and write one batch; planned again when a concurrent writer wins a claim.
        ``sealed`` holds rows already sealed (by line)."""
        sealed = {} if sealed is None else sealed
        passwords: dict[tuple[int, uuid.UUID], str | None] = {}
        for _ in range(BATCH_ATTEMPTS):
            plan = plan_batch(conn, batch, self.update, self.seen, {},
                              older=self.blinds.older)
            if strict and plan.errors:
                raise StrictFailure(plan.errors)
            people = self.prepare(plan.new, sealed)
            self.prepare_passwords(conn, plan.updates, passwords)
            try:
                result = self.commit(conn, plan, people, passwords, strict=strict)
            except Retry:
                continue
            self.count(summary, plan, result)
            return
        raise Conflict(f"the batch starting at line {batch[0].line} could not be written: "
                       "other writers kept claiming its emails or external ids; run the "
                       "import again to resume")

    @staticmethod
    def count(summary: ImportSummary, plan: Plan, result: Result) -> None:
        updated, unchanged, _ = result
        summary.imported += len(plan.new)
        summary.updated += updated
        summary.skipped += len(plan.skipped) + unchanged
        reject(summary, plan.errors)

    def commit(self, conn: Conn, plan: Plan, people: list[Sealed],
               passwords: dict[tuple[int, uuid.UUID], str | None], *,
               strict: bool) -> Result:
        """Write a planned batch and remember its keys, in one transaction (a savepoint
        inside the strict import's transaction); ``Retry`` when a claim was lost."""
        updated = unchanged = 0
        failed: set[int] = set()
        if not plan.marks:
            return updated, unchanged, failed
        try:
            with translate_errors(retryable=True), conn.transaction():
                if people:
                    copy_new(conn, people)
                for row, person_id in plan.updates:
                    try:
                        with conn.transaction():
                            if self.apply_update(conn, row, person_id,
                                                 passwords.get((row.line, person_id))):
                                updated += 1
                            else:
                                unchanged += 1
                    except (Conflict, InvalidInput, DecryptionFailed) as exc:
                        if strict:
                            raise StrictFailure([RowError(line=row.line,
                                                           reason=exc.message)]) from None
                        plan.errors.append(RowError(line=row.line, reason=exc.message))
                        failed.add(row.line)
                new = {row.line for row in plan.new}  # known again by their person ids
                self.seen.add(conn, [(key, line) for line, keys in plan.marks
                                     if line not in failed and line not in new
                                     for key in keys])
        except (Conflict, *RETRYABLE):  # a claim won by another writer since the plan
            raise Retry from None
        return updated, unchanged, failed




def _current_password(conn: Conn, keyring: Keyring, person_id: uuid.UUID) -> str | None:
    try:
        return read_password_hash(conn, keyring, person_id)
    except (Conflict, DecryptionFailed, UnicodeDecodeError):
        return None  # erased or unreadable: any password given is a change


def _batch_sizes(batch_size: int | None) -> Iterator[int]:
    """``batch_size`` rows per batch; by default ``FIRST_BATCH`` doubling to ``BATCH_SIZE``."""
    if batch_size is not None:
        yield from itertools.repeat(batch_size)
        return
    size = FIRST_BATCH
    while size < BATCH_SIZE:
        yield size
        size *= 2
    yield from itertools.repeat(BATCH_SIZE)


def _batches(records: Iterable[tuple[int, Any]], blind: BlindIndex, sizes: Iterator[int],
             summary: ImportSummary) -> Iterator[list[Row]]:
    batch: list[Row] = []
    rows = summary.rows
    size = next(sizes)
    try:
        for line, record in records:
            rows += 1
            row = record if isinstance(record, RowError) else validate(line, record, blind)
            if isinstance(row, RowError):
                reject(summary, [row])
                continue
            batch.append(row)
            if len(batch) >= size:
                summary.rows = rows  # counted per batch: a model's setattr is not free
                yield batch
                batch = []
                size = next(sizes)
    finally:
        summary.rows = rows
    if batch:
        yield batch


def _check_file(records: Iterable[tuple[int, Any]], blind: BlindIndex,
                summary: ImportSummary, seen: Seen) -> None:
    """The strict import's first pass: every row valid, no email or external id twice."""
    for batch in _batches(records, blind, itertools.repeat(1000), summary):
        def check(conn: Conn, batch: list[Row] = batch) -> None:
            prior = seen.lookup(conn, [key for row in batch for _, key in row.identities()])
            marks: list[tuple[bytes, int]] = []
            for row in batch:
                duplicate = next(((what, line) for what, key in row.identities()
                                  if (line := prior.get(key)) is not None), None)
                if duplicate is not None:
                    reject(summary, [RowError(line=row.line, reason=f"duplicate: the same "
                                               f"{duplicate[0]} as line {duplicate[1]}")])
                    continue
                for _, key in row.identities():
                    prior.setdefault(key, row.line)
                    marks.append((key, row.line))
            seen.add(conn, marks)

        seen.database.run(check)


def import_people(database: Database, keyring: Keyring, records: Callable[[], Iterable[
        tuple[int, Any]]], *, update: bool = False, strict: bool = False,
        batch_size: int | None = None, workers: int = 2, actor: str | None = "import",
        reason: str | None = None,
        progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import rows from ``records()`` (called once, twice with ``strict``: check, write).

    Without ``strict`` every batch commits on its own: a crash loses at most the batches
    in flight (``LANES`` at most), and a re-run skips what is already there. With
    ``strict`` the whole file is checked first and written in one transaction, or not at
    all.
    ``batch_size`` rows make a batch; by default the first has ``FIRST_BATCH`` and each
    next one twice as many, up to ``BATCH_SIZE``.
    ``progress`` is called with the number of rows read so far after each batch.
    """
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not 1 <= batch_size <= 100_000):
        raise InvalidInput("batch size must be between 1 and 100000")
    started = time.monotonic()
    importer = Importer(database, keyring, update=update, actor=actor, reason=reason,
                         workers=workers)
    summary = ImportSummary()
    try:
        database.run(lambda conn: check_keyring(conn, keyring))
        if strict:
            check = Seen(database)
            try:
                _check_file(records(), importer.blind, summary, check)
            finally:
                check.close()
            if summary.rejected:
                summary.written = False
                return _finish(summary, started)
            summary = ImportSummary()
        _write_all(importer, records(), summary, batch_size=batch_size, strict=strict,
                   progress=progress)
        if importer.credentials_changed and database.distributed:
            for person in sorted(importer.credentials_changed):
                database.transaction(functools.partial(clear_ended, person_id=person))
    except StrictFailure as failure:
        summary = ImportSummary(rows=summary.rows, written=False)
        reject(summary, failure.errors)
    finally:
        importer.pool.shutdown(cancel_futures=True)
        importer.seen.close()
    return _finish(summary, started)


def _finish(summary: ImportSummary, started: float) -> ImportSummary:
    summary.errors.sort(key=lambda error: error.line)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _write_all(importer: Importer, records: Iterable[tuple[int, Any]],
               summary: ImportSummary, *, batch_size: int | None, strict: bool,
               progress: Callable[[int], None] | None) -> None:
    batches = _batches(records, importer.blind, _batch_sizes(batch_size), summary)

    def each(conn: Conn) -> None:
        for batch in batches:
            importer.write_batch(conn, batch, summary, strict)
            if progress is not None:
                progress(summary.rows)

    if strict:
        importer.database.transaction(each, attempts=1)
    elif importer.update:
        importer.database.run(each)
    else:
        Pipeline(importer, summary, progress).run(batches)
