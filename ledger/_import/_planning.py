"""Planning a batch: which rows are new, which are people already there (to skip or
update), which repeat an earlier row; one query per batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from peoplelog.fields import BlindIndex

from .._store import Conn
from ._copying import ByteaArray, key_probe
from ._seen import Seen
from ._summary import RowError
from ._validation import Row

__all__ = ["Plan", "Result", "Retry", "StrictFailure", "plan_batch"]

Result = tuple[int, int, set[int]]
"""What a committed batch did: rows updated, rows unchanged, lines that failed."""


class Retry(Exception):
    """A concurrent writer claimed an email or id between the plan and the write."""


class StrictFailure(Exception):
    """A strict import met a bad row: nothing is written; ``errors`` say which."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("strict import failed")
        self.errors = errors


@dataclass
class Plan:
    """A batch sorted: rows to create, to update (with their person), to skip, refused."""

    new: list[Row] = field(default_factory=list)
    updates: list[tuple[Row, uuid.UUID]] = field(default_factory=list)
    skipped: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    marks: list[tuple[int, list[bytes]]] = field(default_factory=list)
    """Per accepted row, the keys to remember once the batch is committed."""


_PLAN_QUERY = """
SELECT 0, blind_index, person_id, 0 FROM email_lookup WHERE blind_index = ANY(%(emails)s)
UNION ALL
SELECT 1, id_hash, person_id, 0 FROM external_ids WHERE id_hash = ANY(%(ids)s)
UNION ALL
SELECT 2, key, NULL::uuid, line FROM import_seen WHERE run = %(run)s AND key = ANY(%(keys)s)
"""


def _probe(conn: Conn, batch: list[Row], seen: Seen, older: Sequence[BlindIndex]
           ) -> tuple[dict[bytes, uuid.UUID], dict[bytes, uuid.UUID], dict[bytes, int]]:
    """The claims and ids the batch's digests find (by the active key's digest, also when
    an older key's found them) and the lines of this run that already saw them."""
    emails = [r.email_digest for r in batch]
    id_digests = [r.id_digest for r in batch if r.id_digest is not None]
    aliases: dict[bytes, bytes] = {}  # an older key's digest -> the active key's
    for row in batch if older else ():
        for blind in older:
            aliases[blind.digest(row.email)] = row.email_digest
            if row.external_id is not None and row.id_digest is not None:
                aliases[blind.external_id_digest(row.external_id)] = row.id_digest
    claims: dict[bytes, uuid.UUID] = {}
    ids: dict[bytes, uuid.UUID] = {}
    prior: dict[bytes, int] = {}
    with key_probe(conn) as cur:
        cur.execute(_PLAN_QUERY, {  # both kinds get the aliases: an email's digest never
            # equals an id's (each message has its label)
            "emails": ByteaArray.of(emails + list(aliases)),
            "ids": ByteaArray.of(id_digests + list(aliases)),
            "run": seen.run,
            "keys": ByteaArray.of(emails + id_digests if seen.written else [])})
        for kind, found, person_id, line in cur:
            if kind == 0:
                claims[aliases.get(found, found)] = person_id
            elif kind == 1:
                ids[aliases.get(found, found)] = person_id
            else:
                prior[found] = line
    return claims, ids, prior


def plan_batch(conn: Conn, batch: list[Row], update: bool, seen: Seen,
               pending: dict[bytes, int], *, older: Sequence[BlindIndex] = ()) -> Plan:
    """Sort a batch into new rows, updates, skips and errors, in one query.

    ``pending`` holds the keys of earlier batches still being written (key -> line): they
    count as seen, as they will be once those batches commit. ``older``: the keyring's
    older blind indexes during a blind-index rotation, whose digests of a row's email and
    external id still find the person a claim or id made before the rotation names.
    """
    claims, ids, prior = _probe(conn, batch, seen, older)
    created = seen.ids.lines([*claims.values(), *ids.values()])
    if created:
        for found in (claims, ids):
            for key, person_id in found.items():
                if (line := created.get(person_id)) is not None:
                    prior.setdefault(key, line)
                    prior.setdefault(person_id.bytes, line)
    result = Plan()
    local: dict[bytes, int] = {}

    def earlier(key: bytes, line: int) -> int | None:
        found = local.get(key) or pending.get(key) or prior.get(key)
        return found if found is not None and found < line else None

    for row in batch:
        email, external = row.email_digest, row.id_digest
        duplicate = None
        if (same := earlier(email, row.line)) is not None:
            duplicate = f"duplicate: the same email as line {same}"
        elif external is not None and (same := earlier(external, row.line)) is not None:
            duplicate = f"duplicate: the same external id as line {same}"
        if duplicate is not None:
            result.errors.append(RowError(line=row.line, reason=duplicate))
            continue
        by_email = claims.get(email)
        by_id = None if external is None else ids.get(external)
        if by_id is not None and by_email is not None and by_id != by_email:
            result.errors.append(RowError(line=row.line, reason="the email belongs to another "
                                                             "person than the external id"))
            continue
        target = by_id or by_email
        keys = [email] if external is None else [email, external]
        if target is not None:
            same = earlier(target.bytes, row.line)
            if same is not None:
                result.errors.append(RowError(
                    line=row.line, reason=f"duplicate: the same person as line {same}"))
                continue
            keys.append(target.bytes)
        if target is None:
            result.new.append(row)
        elif update:
            result.updates.append((row, target))
        else:
            result.skipped.append(row)
        for key in keys:
            local[key] = row.line
        result.marks.append((row.line, keys))
    return result
