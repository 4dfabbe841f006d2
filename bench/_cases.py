"""The comparisons: each project operation and its raw PostgreSQL baseline, same server.

Every section interleaves its contenders round by round (raw, project, peer, raw, ...) so
that background load hits them alike, and reports the median of the rounds.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import psycopg

from peoplelog.fields import (
    Attestations,
    BlindIndex,
    DataKey,
    KeyPurpose,
    Keyring,
    normalise_email,
)
from peoplelog.ledger import BATCH_SIZE, FIRST_BATCH, Database, Ledger, cid_from_digest
from peoplelog.projections import (
    CheckpointSigner,
    audit_database,
    make_checkpoint,
    rebuild_projections,
)
from peoplelog.schema import WRITTEN_COLUMNS

from ._data import fill_ledger, from_micros, now_micros
from ._env import Server
from ._measure import (
    Result,
    cli_env,
    interleave,
    interleave_chunks,
    median,
    peak_rss_mb,
    percentile,
    rate,
    say,
    seconds,
)
from ._peer import PeerStore

__all__ = ["SECTIONS", "Bench", "Sizes", "bench_memory"]

Conn = psycopg.Connection[Any]
Row = tuple[Any, ...]
CPUS = os.cpu_count() or 1

_PEOPLE_COLUMNS = ", ".join(WRITTEN_COLUMNS)
"""A version as ``people`` stores it: the envelope's columns, the writer key and the seal."""
_PEOPLE_TYPES = ["uuid", "int4", "text", "text", "int2", "text", "timestamptz", "text", "text",
                 "bytea", "bytea", "bytea", "timestamptz", "text", "bytea"]
_RAW_INSERT = (f"INSERT INTO raw_people ({_PEOPLE_COLUMNS})"  # noqa: S608 - fixed column names
               f" VALUES ({', '.join(['%s'] * len(WRITTEN_COLUMNS))})")
_RAW_FOLD = """
INSERT INTO raw_latest (person_id, version, cid, op, created_at, recorded_at, email, name,
                        password, verified_at, erased_at)
SELECT DISTINCT ON (person_id) person_id, version, cid, op, recorded_at, recorded_at,
       email, name, password, verified_at, NULL
FROM people ORDER BY person_id, version DESC
"""


@dataclass(frozen=True)
class Sizes:
    scale: float
    reps: int
    appends: int
    append_persons: int
    import_rows: int
    batch: int | None
    """Rows per import batch; None: the library's default (``FIRST_BATCH`` doubling to
    ``BATCH_SIZE``)."""
    peer_batch: int
    verify_rows: int
    versions_per_person: int
    lookups: int

    @classmethod
    def from_environment(cls) -> Sizes:
        scale = float(os.environ.get("BENCH_SCALE") or 1)
        if scale <= 0:
            raise SystemExit("BENCH_SCALE must be a positive number")

        def scaled(n: int, floor: int) -> int:
            return max(floor, round(n * scale))

        return cls(
            scale=scale,
            reps=int(os.environ.get("BENCH_REPS") or 5),
            appends=scaled(2_000, 200),
            append_persons=100,
            import_rows=scaled(20_000, 2_000),
            batch=int(os.environ["BENCH_BATCH"]) if os.environ.get("BENCH_BATCH") else None,
            peer_batch=1_000,
            verify_rows=scaled(200_000, 20_000),
            versions_per_person=5,
            lookups=scaled(2_000, 500),
        )


@dataclass
class Bench:
    server: Server
    keyring: Keyring
    keyring_file: Path
    workdir: Path
    sizes: Sizes
    peer_store: PeerStore | None
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    app_url: str | None = None
    """The database of the last import round: append, lookup and rebuild run on it."""
    emails: list[str] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def peer(self) -> PeerStore:
        if self.peer_store is None:
            raise RuntimeError("this run has no peer store")
        return self.peer_store

    def connect(self, url: str) -> Conn:
        conn = psycopg.connect(url, autocommit=True)
        self._closers.append(conn.close)
        return conn

    def ledger(self, url: str) -> Ledger:
        ledger = Ledger(Database(url, pool_size=4), self.keyring)
        self._closers.append(ledger.close)
        return ledger

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()

    def add(self, result: Result) -> None:
        self.results.append(result)
        ratio = "" if result.ratio is None else f" ratio {result.ratio:.2f}"
        say(f"  {result.name}: {result.value:,.1f} {result.unit}{ratio}")


# --- data -----------------------------------------------------------------------------------


def person_rows(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"person{i}.{tag}@example.org", f"Person Number {i} {tag}") for i in range(n)]


def write_jsonl(path: Path, rows: Iterable[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for email, name in rows:
            handle.write(json.dumps({"email": email, "name": name}) + "\n")
    return path


def _random_cid() -> str:
    return cid_from_digest(os.urandom(32))


def people_shaped(rows: Sequence[tuple[str, str]], *, version: int = 0) -> list[Row]:
    """Rows as ``people`` stores them: per-person AES-GCM ciphertexts, realistic CIDs."""
    now = now_micros()
    out: list[Row] = []
    for i, (email, name) in enumerate(rows):
        pid = uuid.uuid4()
        key, _ = DataKey.generate(pid)
        out.append((pid, version, _random_cid(), None if version == 0 else _random_cid(), 1,
                    "created" if version == 0 else "updated", from_micros(now + i), "import",
                    None, key.encrypt("email", email.encode()),
                    key.encrypt("name", name.encode()), None, None, "writer-1",
                    os.urandom(32)))
    return out


def _every_table(shaped: Sequence[Row]) -> list[tuple[str, str, list[str], list[Row]]]:
    """The rows an import of ``shaped`` writes, table by table (raw_* copies)."""
    latest = [(r[0], 0, r[2], r[5], r[6], r[6], r[9], r[10], None, None, None) for r in shaped]
    lookup = [(os.urandom(32), r[0], "blind-index-1", 1, "writer-1", os.urandom(32))
              for r in shaped]
    keys = [(r[0], 1, "kek-1", os.urandom(64)) for r in shaped]
    return [
        ("raw_people", _PEOPLE_COLUMNS, _PEOPLE_TYPES, list(shaped)),
        ("raw_people_latest", "person_id, version, cid, op, created_at, recorded_at, email,"
         " name, password, verified_at, erased_at",
         ["uuid", "int4", "text", "text", "timestamptz", "timestamptz", "bytea", "bytea",
          "bytea", "timestamptz", "timestamptz"], latest),
        ("raw_email_lookup", "blind_index, person_id, key_id, norm, claim_key, claim",
         ["bytea", "uuid", "text", "int2", "text", "bytea"], lookup),
        ("raw_person_keys", "person_id, key_version, kek_id, wrapped_key",
         ["uuid", "int4", "text", "bytea"], keys),
    ]


def copy_in(conn: Conn, statement: str, types: Sequence[str], rows: Sequence[Row]) -> None:
    """One binary COPY in one transaction."""
    with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


# --- bulk import ------------------------------------------------------------------------------


def bench_import(b: Bench) -> None:
    n, batch = b.sizes.import_rows, b.sizes.batch
    batches = (f"batches of {batch}" if batch is not None else
               f"batches of {FIRST_BATCH} doubling to {BATCH_SIZE}")
    say(f"import: {n:,} JSON-lines rows, {batches}, vs raw binary COPY")
    rows = person_rows(n, "imp")
    b.emails = [email for email, _ in rows]
    path = write_jsonl(b.workdir / f"import-{n}.jsonl", rows)
    shaped = people_shaped(rows)
    raw = b.connect(b.server.create_database("rawcopy"))
    raw.execute("CREATE TABLE raw_import (email text, name text)")
    b.server.place_like(raw, "raw_import", None, "email")
    raw.execute("CREATE TABLE raw_people (LIKE people INCLUDING ALL)")
    b.server.place_like(raw, "raw_people", "people")
    for table in ("people_latest", "email_lookup", "person_keys"):
        raw.execute(f"CREATE TABLE raw_{table} (LIKE {table} INCLUDING ALL)")
        b.server.place_like(raw, f"raw_{table}", table)
    every = _every_table(shaped)

    def copy_every() -> float:
        raw.execute("TRUNCATE raw_people, raw_people_latest, raw_email_lookup, raw_person_keys")

        def work() -> None:
            with raw.transaction():
                for table, columns, types, table_rows in every:
                    with raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN"
                                           " (FORMAT BINARY)") as copy:
                        copy.set_types(types)
                        for row in table_rows:
                            copy.write_row(row)

        return rate(n, work)

    def copy_plain() -> float:
        raw.execute("TRUNCATE raw_import")
        return rate(n, lambda: copy_in(raw, "COPY raw_import (email, name) FROM STDIN"
                                       " (FORMAT BINARY)", ["text", "text"], rows))

    def copy_people() -> float:
        raw.execute("TRUNCATE raw_people")
        return rate(n, lambda: copy_in(raw, f"COPY raw_people ({_PEOPLE_COLUMNS}) FROM STDIN"
                                       " (FORMAT BINARY)", _PEOPLE_TYPES, shaped))

    previous: list[str] = []

    def project(source: Path = path, count: int = n) -> float:
        url = b.server.create_database("import")
        ledger = Ledger(Database(url, pool_size=1), b.keyring)
        summaries = []
        try:
            speed = rate(count, lambda: summaries.append(ledger.import_people(
                source, batch_size=batch, workers=CPUS)))
        finally:
            ledger.close()
        if summaries[0].imported != count or summaries[0].rejected:
            raise RuntimeError(f"import wrote {summaries[0].imported} of {count} rows")
        for old in previous:
            b.server.drop_database(old)
        previous[:] = [url]
        return speed

    def peer_batches() -> float:
        return n / b.peer.create_batches(rows, b.sizes.peer_batch)

    warm = write_jsonl(b.workdir / "warm.jsonl", rows[:1000])
    project(warm, 1000)
    copy_plain()
    copy_people()
    copy_every()
    b.peer.create_batches(rows[:1000], b.sizes.peer_batch)
    samples = interleave(b.sizes.reps, {
        "raw COPY email,name": copy_plain, "raw COPY people-shaped": copy_people,
        "raw COPY every table": copy_every, "peoplelog import": project,
        "eventsourcing batched": peer_batches})
    b.app_url = previous[0]
    value = median(samples["peoplelog import"])
    b.add(Result(f"bulk import ({n:,} rows) vs raw binary COPY of people-shaped rows", value,
                 median(samples["raw COPY people-shaped"]), 0.5, True, "rows/s",
                 note="Ledger.import_people from a JSON-lines file (read+validate+encrypt+CID+COPY"
                      f" into people, people_latest, person_keys, email_lookup), {batches};"
                      " baseline: binary COPY of encrypted, people-shaped rows (made before"
                      " timing) into a copy of people (same indexes, no trigger), one"
                      " transaction: the rows the import must write, without the projections",
                 samples=samples))
    b.add(Result(f"bulk import ({n:,} rows) vs raw binary COPY into all four tables", value,
                 median(samples["raw COPY every table"]), None, True, "rows/s",
                 note="informative: baseline COPYs the same precomputed rows into copies of"
                      " people, people_latest, email_lookup and person_keys (same indexes, no"
                      " trigger) in one transaction: what the import's writes cost PostgreSQL"
                      " alone, without reading, validating, encrypting or deduplicating"))
    b.add(Result(f"bulk import ({n:,} rows) vs raw binary COPY (email, name)", value,
                 median(samples["raw COPY email,name"]), None, True, "rows/s",
                 note="informative: baseline is a binary COPY of the plaintext (email, name)"
                      " tuples into a 2-column table without indexes; not the rows an import"
                      " writes (encrypted, people-shaped, plus projections)"))
    peer_batch = b.sizes.peer_batch
    b.add(Result(f"bulk import vs eventsourcing batched append ({peer_batch} per txn)", value,
                 median(samples["eventsourcing batched"]), 1.0, True, "rows/s",
                 note=f"eventsourcing: {peer_batch} Person aggregates registered per"
                      " Application.save (one transaction), AES-GCM cipher on"))


# --- single-version append --------------------------------------------------------------------


def bench_append(b: Bench) -> None:
    n, persons, reps = b.sizes.appends, b.sizes.append_persons, b.sizes.reps
    assert b.app_url is not None
    say(f"append: {n:,} single-version updates per round, one per transaction")
    conn = b.connect(b.app_url)
    ledger = b.ledger(b.app_url)
    pids = [r[0] for r in conn.execute(
        "SELECT person_id FROM people_latest ORDER BY person_id LIMIT %s", (persons,))]
    conn.execute("CREATE TABLE raw_people (LIKE people INCLUDING ALL)")
    b.server.place_like(conn, "raw_people", "people")
    warm = 100
    raw_rows = iter(_raw_versions(persons, warm + n * reps))
    peer_people = b.peer.create(person_rows(persons, "peer"))
    tags = itertools.count()

    def raw_inserts(count: int) -> float:
        todo = list(itertools.islice(raw_rows, count))

        def work() -> None:
            for row in todo:
                conn.execute(_RAW_INSERT, row)

        return seconds(work)

    def appends(count: int) -> float:
        tag = next(tags)

        def work() -> None:
            for i in range(count):
                ledger.update_person(pids[i % len(pids)], name=f"Renamed {tag} {i}")

        return seconds(work)

    def peer_single(count: int) -> float:
        return b.peer.rename_each(peer_people, count, f"r{next(tags)}")

    raw_inserts(warm)
    appends(warm)
    peer_single(warm)
    samples = interleave_chunks(reps, 20, n, {
        "raw INSERT": raw_inserts, "peoplelog update_person": appends,
        "eventsourcing save": peer_single})
    value = median(samples["peoplelog update_person"])
    b.add(Result("single-version append vs raw single-row INSERT commit", value,
                 median(samples["raw INSERT"]), 0.7, True, "ops/s",
                 note="Ledger.update_person(name=...) without password, sequential, one per"
                      " transaction; baseline: autocommit INSERT of a people-shaped row into"
                      " a copy of people (same columns and indexes, no trigger)",
                 samples=samples))
    b.add(Result("single-version append vs eventsourcing (one event per txn)", value,
                 median(samples["eventsourcing save"]), 1.0, True, "ops/s",
                 note="eventsourcing: Person.rename + Application.save per event, aggregates"
                      " held in memory (no reload), AES-GCM cipher on"))


def _raw_versions(persons: int, count: int) -> list[Row]:
    pids = [uuid.uuid4() for _ in range(persons)]
    key, _ = DataKey.generate(pids[0])
    email = key.encrypt("email", b"someone@example.org")
    now = now_micros()
    rows: list[Row] = []
    for i in range(count):
        rows.append((pids[i % persons], i // persons + 1, _random_cid(), _random_cid(), 1,
                     "updated", from_micros(now + i), None, None, email,
                     key.encrypt("name", f"Renamed {i}".encode()), None, None, "writer-1",
                     os.urandom(32)))
    return rows


# --- email lookup ------------------------------------------------------------------------------


def bench_lookup(b: Bench) -> None:
    assert b.app_url is not None
    count = min(b.sizes.lookups, len(b.emails))
    say(f"lookup: {count:,} find_person calls vs raw indexed SELECT, interleaved")
    conn = b.connect(b.app_url)
    ledger = b.ledger(b.app_url)
    blind = BlindIndex(b.keyring.active(KeyPurpose.BLIND_INDEX))
    rng = random.Random(7)  # noqa: S311 - a reproducible sample, not a secret
    sample = rng.sample(b.emails, count)
    digests = [blind.digest(normalise_email(e)) for e in sample]
    query = "SELECT person_id FROM email_lookup WHERE blind_index = %s"
    raw_ns: list[int] = []
    led_ns: list[int] = []
    for email, digest in zip(sample[:200], digests[:200], strict=False):  # warm up
        conn.execute(query, (digest,)).fetchone()
        ledger.find_person(email)
    # One by one: in chunks, a chunk could run while the scheduler kept client and server
    # on one core (~45 us a round trip here) and the next while it woke the other (~90 us).
    for email, digest in zip(sample, digests, strict=True):
        t0 = time.perf_counter_ns()
        if conn.execute(query, (digest,)).fetchone() is None:
            raise RuntimeError("raw lookup found nothing")
        raw_ns.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        ledger.find_person(email)
        led_ns.append(time.perf_counter_ns() - t0)
    raw_us = [x / 1000 for x in raw_ns]
    led_us = [x / 1000 for x in led_ns]
    note = ("Ledger.find_person(email): normalise + HMAC blind index + pooled connection +"
            " SELECT on email_lookup; baseline: the same SELECT with a precomputed digest"
            " on one plain connection (unique bytea index)")
    for pct in (50, 99):
        b.add(Result(f"email lookup p{pct} latency vs raw indexed SELECT",
                     percentile(led_us, pct), percentile(raw_us, pct), 1.5, False, "us",
                     note=note))


# --- projection rebuild -----------------------------------------------------------------------


def bench_rebuild(b: Bench) -> None:
    assert b.app_url is not None
    conn = b.connect(b.app_url)
    persons = int(conn.execute("SELECT count(*) FROM people_latest").fetchone()[0])  # type: ignore[index]
    versions = int(conn.execute("SELECT count(*) FROM people").fetchone()[0])  # type: ignore[index]
    say(f"rebuild: {persons:,} persons, {versions:,} versions vs INSERT ... SELECT DISTINCT ON")
    conn.execute("CREATE TABLE raw_latest (LIKE people_latest INCLUDING ALL)")
    b.server.place_like(conn, "raw_latest", "people_latest")

    def raw() -> float:
        conn.execute("TRUNCATE raw_latest")

        def work() -> None:
            with conn.transaction():
                conn.execute(_RAW_FOLD)

        return rate(persons, work)

    def project() -> float:
        reports = []
        speed = rate(persons, lambda: reports.append(rebuild_projections(conn, b.keyring)))
        if reports[0].persons != persons:
            raise RuntimeError("rebuild saw a different number of persons")
        return speed

    raw()
    samples = interleave(b.sizes.reps, {"raw INSERT SELECT DISTINCT ON": raw,
                                        "peoplelog rebuild_projections": project})
    b.add(Result("projection rebuild vs INSERT ... SELECT DISTINCT ON", median(
        samples["peoplelog rebuild_projections"]), median(
        samples["raw INSERT SELECT DISTINCT ON"]), None, True, "persons/s",
        note=f"informative. {persons:,} persons / {versions:,} versions. rebuild_projections"
             " folds people_latest in SQL and recomputes every email claim (unwrap data key,"
             " decrypt email, HMAC) into email_lookup; baseline only folds people_latest",
        samples=samples))


# --- full verification ------------------------------------------------------------------------


def make_verify_database(b: Bench, rows: int, prefix: str) -> str:
    versions = b.sizes.versions_per_person
    url = b.server.create_database(prefix)
    conn = b.connect(url)
    started = time.perf_counter()
    written = fill_ledger(conn, rows // versions, versions, b.keyring)
    conn.execute("ANALYZE people")  # else reltuples is -1 and audit never goes parallel
    signer = CheckpointSigner(b.keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    make_checkpoint(conn, signer, writers=Attestations.of(b.keyring))
    say(f"  filled {written:,} versions and checkpointed in "
        f"{time.perf_counter() - started:.1f}s")
    return url


def bench_verify(b: Bench) -> str:
    rows = b.sizes.verify_rows
    say(f"verify: {rows:,} versions, audit_database workers={CPUS} vs COPY out + sha256")
    url = make_verify_database(b, rows, "verify")
    conn = b.connect(url)

    def raw() -> float:
        seen = 0

        def work() -> None:
            nonlocal seen
            with conn.cursor() as cur, cur.copy("COPY people TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["bytea"] * (len(WRITTEN_COLUMNS) + 1))  # and seq
                for row in copy.rows():
                    sha256(b"\x1f".join([f or b"" for f in row])).digest()
                    seen += 1

        speed = rate(rows, work)
        if seen != rows:
            raise RuntimeError(f"COPY saw {seen} rows, expected {rows}")
        return speed

    def project() -> float:
        reports = []
        speed = rate(rows, lambda: reports.append(
            audit_database(conn, conninfo=url, workers=CPUS)))
        if not reports[0].ok or reports[0].checked != rows:
            raise RuntimeError(f"verify failed: {reports[0].model_dump_json()[:500]}")
        return speed

    raw()
    samples = interleave(b.sizes.reps, {"raw COPY out + sha256": raw,
                                        "peoplelog audit_database": project})
    b.add(Result(f"full verify ({rows:,} versions) vs COPY out + sha256", median(
        samples["peoplelog audit_database"]), median(samples["raw COPY out + sha256"]), 0.4,
        True, "rows/s",
        note=f"audit_database(conninfo, workers={CPUS}) with a signed checkpoint over the"
             " whole log (chains in this process, the log in a forked child, C scanners);"
             " baseline: one process, COPY people TO STDOUT (FORMAT BINARY) and sha256 of"
             " each row",
        samples=samples))
    return url


# --- peak memory --------------------------------------------------------------------------------


def _rss_entries(b: Bench, what: str, sizes: tuple[int, int],
                 measured: tuple[tuple[float, float], tuple[float, float]]) -> None:
    (small_mb, small_s), (large_mb, large_s) = measured
    for rows, mb, secs in ((sizes[0], small_mb, small_s), (sizes[1], large_mb, large_s)):
        b.add(Result(f"{what} peak RSS at {rows:,} rows", mb, None, None, False, "MB",
                     note=f"CLI run took {secs:.1f}s; largest single process of the tree"))
    b.add(Result(f"{what} peak RSS growth, {sizes[1]:,} vs {sizes[0]:,} rows", large_mb,
                 small_mb, None, False, "MB",
                 note="ratio near 1.0 means memory stays flat as the input grows 4x"))


def bench_memory(b: Bench, verify_url: str | None) -> None:
    home = b.workdir / "home"
    home.mkdir(exist_ok=True)
    python = sys.executable
    large = b.sizes.verify_rows
    small = large // 4
    say(f"memory: `peoplelog verify` at {small:,} and {large:,} versions")
    small_url = make_verify_database(b, small, "verify_small")
    large_url = verify_url or make_verify_database(b, large, "verify")
    verify: list[tuple[float, float]] = []
    for url, rows in ((small_url, small), (large_url, large)):
        mb, secs, out = peak_rss_mb([python, "-m", "peoplelog", "verify", "--json"],
                                    cli_env(url, str(b.keyring_file), str(home)))
        report = json.loads(out)
        if not report["ok"] or report["checked"] != rows:
            raise RuntimeError(f"CLI verify of {rows} rows: {out[:300]}")
        verify.append((mb, secs))
    _rss_entries(b, "verify", (small, large), (verify[0], verify[1]))
    b.server.drop_database(small_url)

    n = b.sizes.import_rows
    say(f"memory: `peoplelog import` of {n:,} and {4 * n:,} rows")
    imported: list[tuple[float, float]] = []
    for count in (n, 4 * n):
        path = write_jsonl(b.workdir / f"rss-{count}.jsonl", person_rows(count, f"rss{count}"))
        url = b.server.create_database("import_rss")
        mb, secs, out = peak_rss_mb([python, "-m", "peoplelog", "import", str(path), "--json"],
                                    cli_env(url, str(b.keyring_file), str(home)))
        summary = json.loads(out)
        if summary["imported"] != count:
            raise RuntimeError(f"CLI import of {count} rows: {out[:300]}")
        imported.append((mb, secs))
        b.server.drop_database(url)
        path.unlink()
    _rss_entries(b, "import", (n, 4 * n), (imported[0], imported[1]))


def _accounts_section(b: Bench) -> None:
    from ._accounts import bench_accounts  # noqa: PLC0415 - it imports this module

    bench_accounts(b)


def _http_section(b: Bench) -> None:
    from ._http import bench_http  # noqa: PLC0415 - it imports this module

    bench_http(b)


SECTIONS: dict[str, Callable[[Bench], object]] = {
    "import": bench_import,
    "append": bench_append,
    "lookup": bench_lookup,
    "rebuild": bench_rebuild,
    "verify": bench_verify,
    "accounts": _accounts_section,
    "http": _http_section,
}
