"""The projections, checked and rebuilt from the ledger.

``people_latest`` is a fold of ``people``: per person the newest version, with ``created_at``
from the first version and ``erased_at`` set when the newest version is ``erased``.
``email_lookup`` holds one claim (the blind index of the normalised email) per person who is
not erased and has an email. Without keys only the lookup's shape can be checked (claims
point at existing, non-erased persons, at most one each, and every such person with an email
has one); with keys every claim is recomputed, and a claim is accepted under the active
blind-index key or, while a blind-index rotation moves claims, under an older key of the
keyring (``claim_outdated`` when its recorded key is not the one its digest is under).

Both operations work in SQL: the fold is compared with ``people_latest`` by a full join that
returns only the differences, and recomputed claims are streamed (server-side cursor, in
batches) into a temporary table, then compared with or copied into ``email_lookup`` by set
operations. Nothing here holds more than one batch of persons in memory, and no plaintext
email, name or password appears in a finding, an error or a log line.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from pydantic import BaseModel

from peoplelog.fields import (
    NORMALISATION_VERSION,
    Attestor,
    BlindIndexes,
    DataKey,
    Key,
    KeyPurpose,
    Keyring,
    NormalisedEmail,
    normalise_email,
)
from peoplelog.ledger import check_keyring, tables_distributed
from peoplelog.schema import ChainBroken, DecryptionFailed, InvalidInput, Op

from ._verify import Finding

__all__ = [
    "ProjectionReport",
    "RebuildReport",
    "check_projections",
    "latest_findings",
    "lookup_shape_findings",
    "rebuild_projections",
]

Conn = psycopg.Connection[Any]
Progress = Callable[[int], None]

_BATCH = 2000
_CLAIMS = "peoplelog_expected_claims"
_LOOKUP_COPY = "peoplelog_lookup_copy"
"""On a Citus cluster, where a temporary table cannot be joined with a distributed one,
the claims are compared with a temporary copy of ``email_lookup`` (read once, in the
check's transaction) instead of the table itself."""

# The columns of people_latest that the fold determines (person_id is the join key).
_COLUMNS = ("version", "cid", "op", "created_at", "recorded_at", "email", "name", "password",
            "verified_at", "erased_at")

# Newest version per person, with created_at from the first version present (version 0 in
# an intact chain) and erased_at when the newest version erased the person.
_EXPECTED_LATEST = """
SELECT f.person_id, f.version, f.cid, f.op, c.created_at, f.recorded_at,
       f.email, f.name, f.password, f.verified_at,
       CASE WHEN f.op = %(erased)s THEN f.recorded_at END AS erased_at
FROM (SELECT DISTINCT ON (person_id) person_id, version, cid, op, recorded_at,
             email, name, password, verified_at
      FROM people ORDER BY person_id, version DESC, seq) AS f
JOIN (SELECT DISTINCT ON (person_id) person_id, recorded_at AS created_at
      FROM people ORDER BY person_id, version, seq) AS c ON c.person_id = f.person_id
"""

_DIFFERENT_COLUMNS = "array_remove(ARRAY[{}], NULL)".format(
    ", ".join(f"CASE WHEN e.{c} IS DISTINCT FROM l.{c} THEN '{c}' END" for c in _COLUMNS)
)

_LATEST_DIFF = f"""
SELECT coalesce(e.person_id, l.person_id), e.person_id IS NULL, l.person_id IS NULL,
       e.version, l.version, e.cid, l.cid, {_DIFFERENT_COLUMNS}
FROM ({_EXPECTED_LATEST}) AS e
FULL JOIN people_latest AS l ON l.person_id = e.person_id
WHERE e.person_id IS NULL OR l.person_id IS NULL
   OR ({", ".join(f"e.{c}" for c in _COLUMNS)})
      IS DISTINCT FROM ({", ".join(f"l.{c}" for c in _COLUMNS)})
ORDER BY 1
"""  # noqa: S608 - only fixed column names are interpolated

_REBUILD_LATEST = f"""
INSERT INTO people_latest (person_id, {", ".join(_COLUMNS)})
SELECT person_id, {", ".join(_COLUMNS)} FROM ({_EXPECTED_LATEST}) AS e
"""  # noqa: S608 - only fixed column names are interpolated

# Without keys: each person's newest state against the number of claims pointing at them.
_LOOKUP_SHAPE = """
SELECT coalesce(f.person_id, c.person_id), f.person_id IS NULL, f.version,
       f.op = %(erased)s, f.email IS NOT NULL, coalesce(c.claims, 0)
FROM (SELECT DISTINCT ON (person_id) person_id, version, op, email
      FROM people ORDER BY person_id, version DESC) AS f
FULL JOIN (SELECT person_id, count(*) AS claims FROM peoplelog_claim_owners GROUP BY person_id)
     AS c
     ON c.person_id = f.person_id
WHERE f.person_id IS NULL
   OR (c.claims IS NOT NULL AND f.op = %(erased)s)
   OR c.claims > 1
   OR (c.claims IS NULL AND f.op <> %(erased)s AND f.email IS NOT NULL)
ORDER BY 1
"""

# With keys: every person's newest email with the data key that protects it.
_EMAILS = """
SELECT f.person_id, f.version, f.op = %(erased)s, f.email, k.key_version, k.kek_id,
       k.wrapped_key
FROM (SELECT DISTINCT ON (person_id) person_id, version, op, email
      FROM people ORDER BY person_id, version DESC) AS f
LEFT JOIN (SELECT DISTINCT ON (person_id) person_id, key_version, kek_id, wrapped_key
           FROM person_keys ORDER BY person_id, key_version DESC) AS k
     ON k.person_id = f.person_id
ORDER BY f.person_id
"""

# Lookup rows that are not an expected (blind index, person) pair, with what is known of
# the person they point at and of the person (if any) the email belongs to.
_CLAIMS_NOT_EXPECTED = f"""
SELECT l.person_id, s.person_id IS NULL, s.version, s.erased, s.undecidable,
       (SELECT min(o.person_id::text) FROM {_CLAIMS} AS o
        WHERE o.blind_index = l.blind_index OR l.blind_index = ANY(o.older))
FROM {{lookup}} AS l
LEFT JOIN {_CLAIMS} AS s ON s.person_id = l.person_id
WHERE NOT EXISTS (SELECT 1 FROM {_CLAIMS} AS e
                  WHERE e.person_id = l.person_id
                    AND (e.blind_index = l.blind_index OR l.blind_index = ANY(e.older)))
ORDER BY l.person_id
"""  # noqa: S608 - fixed table name

_CLAIMS_MISSING = f"""
SELECT e.person_id, e.version FROM {_CLAIMS} AS e
WHERE e.blind_index IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {{lookup}} AS l
                  WHERE l.blind_index = e.blind_index OR l.blind_index = ANY(e.older))
ORDER BY e.person_id
"""  # noqa: S608 - fixed table name

_CLAIMS_OUTDATED = f"""
SELECT e.person_id, e.version, l.key_id, l.norm,
       CASE WHEN l.blind_index = e.blind_index THEN %(key_id)s
            ELSE (%(older)s::text[])[array_position(e.older, l.blind_index)] END
FROM {_CLAIMS} AS e
JOIN {{lookup}} AS l ON l.person_id = e.person_id
                      AND (l.blind_index = e.blind_index OR l.blind_index = ANY(e.older))
WHERE l.norm <> %(norm)s
   OR l.key_id IS DISTINCT FROM
      CASE WHEN l.blind_index = e.blind_index THEN %(key_id)s
           ELSE (%(older)s::text[])[array_position(e.older, l.blind_index)] END
ORDER BY e.person_id
"""  # noqa: S608 - fixed table name

_CLAIMS_CONFLICTING = f"""
SELECT e.person_id, e.version,
       array_agg(o.person_id ORDER BY o.person_id) FILTER (WHERE o.person_id <> e.person_id)
FROM {_CLAIMS} AS e JOIN {_CLAIMS} AS o ON o.blind_index = e.blind_index
WHERE e.blind_index IN (SELECT blind_index FROM {_CLAIMS} WHERE blind_index IS NOT NULL
                        GROUP BY blind_index HAVING count(*) > 1)
GROUP BY e.person_id, e.version
ORDER BY e.person_id
"""  # noqa: S608 - fixed table name


_REBUILD_LOOKUP = f"""
INSERT INTO email_lookup (blind_index, person_id, key_id, norm, claim_key, claim)
SELECT blind_index, person_id, %s, %s, claim_key, claim FROM {_CLAIMS}
WHERE blind_index IS NOT NULL
"""  # noqa: S608 - fixed table name


class ProjectionReport(BaseModel):
    """The verdict of ``check_projections``."""

    ok: bool
    persons: int
    claims: int
    checked_lookup: bool
    """True when the claims were recomputed with keys; False when only their shape was
    checked (no keyring)."""
    findings: list[Finding]


class RebuildReport(BaseModel):
    """What ``rebuild_projections`` wrote."""

    persons: int
    claims: int
    seconds: float


# --- checking ------------------------------------------------------------------------------


def check_projections(conn: Conn, keyring: Keyring | None, *,
                      progress: Progress | None = None,
                      max_findings: int = 10_000) -> ProjectionReport:
    """Compare ``people_latest`` and ``email_lookup`` with a fresh fold of ``people``.

    Runs in one repeatable-read snapshot (when ``conn`` is not already in a transaction) and
    changes nothing but the key fingerprints ``check_keyring`` records. With ``keyring``,
    it must fit the database (``check_keyring``) and every claim is recomputed.
    """
    if keyring is not None:
        check_keyring(conn, keyring)
    findings: list[Finding] = []
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction(force_rollback=True):
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _collect(findings, latest_findings(conn), max_findings)
        if keyring is None:
            persons = _count(conn, "SELECT count(DISTINCT person_id) FROM people")
            _collect(findings, lookup_shape_findings(conn), max_findings)
        else:
            tally = _Tally()

            def undecidable(finding: Finding) -> None:
                if len(findings) < max_findings:
                    findings.append(finding)

            _load_claims(conn, keyring, tally, progress, on_undecidable=undecidable)
            persons = tally.persons
            _collect(findings, _claim_findings(conn, keyring), max_findings)
        claims = _count(conn, "SELECT count(*) FROM email_lookup")
    return ProjectionReport(ok=not findings, persons=persons, claims=claims,
                            checked_lookup=keyring is not None, findings=findings)


def _collect(findings: list[Finding], found: Iterator[Finding], limit: int) -> None:
    for finding in found:
        if len(findings) < limit:
            findings.append(finding)


def _count(conn: Conn, query: str) -> int:
    row = conn.execute(query).fetchone()
    return 0 if row is None else int(row[0])


def _stream(conn: Conn, name: str, query: str,
            params: dict[str, Any] | None = None) -> Iterator[tuple[Any, ...]]:
    """Rows of ``query`` from a server-side cursor, a batch at a time."""
    with conn.cursor(name=name) as cur:
        cur.itersize = _BATCH
        cur.execute(query, params)
        yield from cur


def latest_findings(conn: Conn) -> Iterator[Finding]:
    rows = _stream(conn, "peoplelog_latest_diff", _LATEST_DIFF, {"erased": Op.ERASED.value})
    for pid, extra, missing, version, stored_version, cid, stored_cid, columns in rows:
        if extra:
            yield Finding(kind="latest_extra", person_id=pid, version=stored_version,
                          detail="people_latest has a row for a person with no version in "
                                 "people", stored=stored_cid)
        elif missing:
            yield Finding(kind="latest_missing", person_id=pid, version=version,
                          detail="people_latest has no row for this person", computed=cid)
        else:
            yield Finding(kind="latest_stale", person_id=pid, version=version,
                          detail="people_latest differs from the newest version in: "
                                 + ", ".join(columns),
                          stored=stored_cid, computed=cid)


def lookup_shape_findings(conn: Conn) -> Iterator[Finding]:
    rows = _stream(conn, "peoplelog_lookup_shape", _LOOKUP_SHAPE, {"erased": Op.ERASED.value})
    for pid, unknown, version, erased, has_email, claims in rows:
        if unknown:
            yield Finding(kind="claim_unknown_person", person_id=pid, version=None,
                          detail=f"email_lookup has {claims} claim(s) for a person with no "
                                 "version in people")
            continue
        if erased and claims:
            yield Finding(kind="claim_erased_person", person_id=pid, version=version,
                          detail=f"email_lookup has {claims} claim(s) for an erased person")
            continue
        if claims > 1:
            yield Finding(kind="claim_duplicate", person_id=pid, version=version,
                          detail=f"email_lookup has {claims} claims for this person (at most "
                                 "one: the current email)")
        if not claims and has_email:
            yield Finding(kind="claim_missing", person_id=pid, version=version,
                          detail="email_lookup has no claim for this person's current email")


def _lookup_for_claims(conn: Conn) -> str:
    """The table the claims are compared with: ``email_lookup``, or on a cluster its
    temporary copy (``_LOOKUP_COPY``)."""
    if not tables_distributed(conn):
        return "email_lookup"
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_LOOKUP_COPY}")
    conn.execute(f"CREATE TEMPORARY TABLE {_LOOKUP_COPY} ON COMMIT DROP AS"  # noqa: S608
                 " SELECT blind_index, person_id, key_id, norm FROM email_lookup")
    conn.execute(f"CREATE INDEX ON {_LOOKUP_COPY} (blind_index)")
    conn.execute(f"CREATE INDEX ON {_LOOKUP_COPY} (person_id)")
    conn.execute(f"ANALYZE {_LOOKUP_COPY}")
    return _LOOKUP_COPY


def _claim_findings(conn: Conn, keyring: Keyring) -> Iterator[Finding]:
    lookup = _lookup_for_claims(conn)
    for pid, unknown, version, erased, undecidable, owner in _stream(
        conn, "peoplelog_claims_unexpected", _CLAIMS_NOT_EXPECTED.format(lookup=lookup)
    ):
        if undecidable:
            continue  # already reported: its expected claim could not be computed
        if owner is not None:
            state = ("an unknown person" if unknown else "an erased person" if erased
                     else "another person")
            yield Finding(kind="claim_wrong_person", person_id=uuid.UUID(owner),
                          version=None,
                          detail=f"this person's email is claimed in email_lookup by {state}",
                          stored=str(pid), computed=owner)
        elif unknown:
            yield Finding(kind="claim_unknown_person", person_id=pid, version=None,
                          detail="email_lookup has a claim for a person with no version in "
                                 "people")
        elif erased:
            yield Finding(kind="claim_erased_person", person_id=pid, version=version,
                          detail="email_lookup has a claim for an erased person")
        else:
            yield Finding(kind="claim_extra", person_id=pid, version=version,
                          detail="email_lookup has a claim for this person that is not "
                                 "their current email")
    for pid, version in _stream(conn, "peoplelog_claims_missing",
                                _CLAIMS_MISSING.format(lookup=lookup)):
        yield Finding(kind="claim_missing", person_id=pid, version=version,
                      detail="email_lookup has no claim for this person's current email")
    blinds = BlindIndexes.of(keyring)
    for pid, version, key_id, norm, hashed_by in _stream(
        conn, "peoplelog_claims_outdated", _CLAIMS_OUTDATED.format(lookup=lookup),
        {"key_id": blinds.active.key.id, "norm": NORMALISATION_VERSION,
         "older": [blind.key.id for blind in blinds.older]},
    ):
        yield Finding(kind="claim_outdated", person_id=pid, version=version,
                      detail="the claim is recorded with another blind-index key than the "
                             "one its digest is under, or another normalisation than the "
                             "active one",
                      stored=f"{key_id} norm {norm}",
                      computed=f"{hashed_by} norm {NORMALISATION_VERSION}")
    for pid, version, others in _stream(conn, "peoplelog_claims_conflict", _CLAIMS_CONFLICTING):
        yield Finding(kind="claim_conflict", person_id=pid, version=version,
                      detail="this person's current email is also the current email of "
                             + ", ".join(str(o) for o in others or ()))


# --- recomputing claims --------------------------------------------------------------------


class _Tally:
    persons = 0
    claims = 0


def _load_claims(conn: Conn, keyring: Keyring, tally: _Tally, progress: Progress | None,
                 on_undecidable: Callable[[Finding], None]) -> None:
    """Fill the temporary claims table: one row per person in ``people``, with the blind
    index of their current email (NULL when erased, without email, or undecidable)."""
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_CLAIMS}")
    conn.execute(
        f"CREATE TEMPORARY TABLE {_CLAIMS} (person_id uuid NOT NULL, version integer NOT NULL,"
        " erased boolean NOT NULL, undecidable boolean NOT NULL, blind_index bytea,"
        " claim_key text, claim bytea, older bytea[]) ON COMMIT DROP"
    )
    emails = _Emails(keyring)
    blinds = BlindIndexes.of(keyring)
    attestor = Attestor.of(keyring)
    with conn.cursor(name="peoplelog_emails") as source:
        source.execute(_EMAILS, {"erased": Op.ERASED.value})
        while rows := source.fetchmany(_BATCH):
            batch = []
            for pid, version, erased, email, key_version, kek_id, wrapped in rows:
                digest: bytes | None = None
                older: list[bytes] | None = None
                undecidable = False
                if not erased and email is not None:
                    problem = emails.read(pid, bytes(email), (key_version, kek_id, wrapped))
                    if not isinstance(problem, str):
                        digest = blinds.active.digest(problem)
                        older = list(blinds.older_digests(problem)) or None
                        tally.claims += 1
                    else:
                        undecidable = True
                        on_undecidable(Finding(kind="email_undecryptable", person_id=pid,
                                               version=version, detail=problem))
                claim = None if digest is None or email is None else attestor.seal_claim(
                    digest, pid.bytes, bytes(email))
                batch.append((pid, version, erased, undecidable, digest,
                              None if claim is None else attestor.key_id, claim, older))
            with conn.cursor() as cur, cur.copy(
                f"COPY {_CLAIMS} (person_id, version, erased, undecidable, blind_index,"
                " claim_key, claim, older) FROM STDIN"
            ) as copy:
                for item in batch:
                    copy.write_row(item)
            tally.persons += len(rows)
            if progress is not None:
                progress(tally.persons)
    conn.execute(f"CREATE INDEX ON {_CLAIMS} (blind_index)")
    conn.execute(f"CREATE INDEX ON {_CLAIMS} (person_id)")
    conn.execute(f"ANALYZE {_CLAIMS}")


class _Emails:
    """Turns a stored email ciphertext into the address, caching key-encryption keys."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._keks: dict[str, Key] = {}

    def read(self, pid: uuid.UUID, email: bytes,
             key: tuple[int | None, str | None, bytes | None]) -> NormalisedEmail | str:
        """A person's stored email, normalised, or why it cannot be read.

        A key-encryption key missing from the keyring is the keyring's fault, not the
        data's: it raises ``KeyNotFound``.
        """
        key_version, kek_id, wrapped = key
        if key_version is None or kek_id is None or wrapped is None:
            return "the person is not erased but has no data key: their email cannot be read"
        kek = self._keks.get(kek_id)
        if kek is None:
            kek = self._keks[kek_id] = self.keyring.get(kek_id, KeyPurpose.KEK)
        try:
            plain = DataKey.unwrap(pid, key_version, bytes(wrapped), kek).decrypt("email", email)
        except DecryptionFailed as exc:
            return f"the current email cannot be decrypted: {exc.message}"
        try:
            return normalise_email(plain.decode("utf-8"))
        except (InvalidInput, UnicodeDecodeError):
            return "the current email does not normalise (not a valid address)"


# --- rebuilding ----------------------------------------------------------------------------


def rebuild_projections(conn: Conn, keyring: Keyring,
                        progress: Progress | None = None) -> RebuildReport:
    """Rebuild ``people_latest`` and ``email_lookup`` from ``people``, in one transaction.

    Both tables are locked (EXCLUSIVE: reads go on, appends wait) before the snapshot is
    taken, so no append interleaves. If two persons would claim the same email (possible
    only after tampering) or a current email cannot be read, ``ChainBroken`` is raised and
    nothing changes. Needs DELETE on ``people_latest``, i.e. the owner role, not the app's.
    """
    started = time.monotonic()
    check_keyring(conn, keyring)
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    undecidable: list[Finding] = []
    tally = _Tally()
    with conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("LOCK TABLE people_latest, email_lookup IN EXCLUSIVE MODE")
        _load_claims(conn, keyring, tally, progress, on_undecidable=undecidable.append)
        if undecidable:
            first = undecidable[0]
            raise ChainBroken(
                f"rebuild refused, nothing was changed: {len(undecidable)} person(s) have a "
                f"current email that cannot be read, first {first.person_id} version "
                f"{first.version}: {first.detail}"
            )
        conflict = conn.execute(
            f"SELECT array_agg(person_id ORDER BY person_id) FROM {_CLAIMS}"  # noqa: S608
            " WHERE blind_index IS NOT NULL GROUP BY blind_index HAVING count(*) > 1"
            " LIMIT 1"
        ).fetchone()
        if conflict is not None:
            persons = ", ".join(str(p) for p in conflict[0])
            raise ChainBroken(
                f"rebuild refused, nothing was changed: persons {persons} have the same "
                "current email (only possible if the ledger was tampered with)"
            )
        conn.execute("DELETE FROM people_latest")
        conn.execute(_REBUILD_LATEST, {"erased": Op.ERASED.value})
        conn.execute("DELETE FROM email_lookup")
        conn.execute(_REBUILD_LOOKUP,
                     (keyring.active(KeyPurpose.BLIND_INDEX).id, NORMALISATION_VERSION))
        conn.execute(f"DROP TABLE {_CLAIMS}")
    return RebuildReport(persons=tally.persons, claims=tally.claims,
                         seconds=round(time.monotonic() - started, 3))
