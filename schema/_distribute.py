"""Distributing the tables on a Citus cluster: the plan, and applying it idempotently.

On plain PostgreSQL nothing here runs: ``citus_installed`` is one catalog lookup. On a
Citus coordinator ``distribute_tables`` places each table as ``DISTRIBUTION_PLAN`` says,
skipping the ones already placed, so ``peoplelog init`` can run any number of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .errors import ConfigurationError

__all__ = ["CLUSTER_ADJUSTMENTS", "DISTRIBUTION_PLAN", "Placement", "citus_installed",
           "distribute_tables"]


@dataclass(frozen=True)
class Placement:
    """Where one table goes: hash-distributed by ``column`` (co-located with
    ``colocate_with`` when given), or, with no column, a reference table copied to every
    node."""

    table: str
    column: str | None = None
    colocate_with: str | None = None
    why: str = ""

    @property
    def kind(self) -> str:
        return "reference" if self.column is None else "distributed"


DISTRIBUTION_PLAN: tuple[Placement, ...] = (
    Placement("people", "person_id",
              why="every write and read of a person names it; a chain lives on one shard"),
    Placement("people_latest", "person_id", "people",
              why="updated with each append, in the same shard transaction"),
    Placement("person_keys", "person_id", "people",
              why="read with the versions it decrypts; deleted by the erasure"),
    Placement("account_credentials", "person_id", "people",
              why="the credential epoch moves with the person's head (a trigger)"),
    Placement("email_lookup", "blind_index",
              why="a login knows only the address: its blind index routes to one shard"),
    Placement("external_ids", "id_hash", "email_lookup",
              why="an import knows only the external id: its hash routes to one shard"),
    Placement("import_seen", "run", why="one import run's rows together"),
    Placement("peoplelog_migrations", why="read by every node's checks"),
    Placement("peoplelog_key_checks", why="a few rows, read at every open"),
    Placement("kek_epochs", why="a few rows, read with every key"),
    Placement("log_entries",
              why="one sequence of positions for the whole store: the Merkle log"),
    Placement("checkpoints", why="signed tree heads of that one log"),
    Placement("log_meta", why="the log's single row"),
    Placement("log_refused", why="rows the sequencer refused; read by verify"),
    Placement("security_events",
              why="sequenced into the one log with the versions; events without a person"),
    Placement("security_events_refused", why="as log_refused, for events"),
    Placement("security_event_retirements", why="whole segments retired; read by verify"),
    Placement("account_sessions",
              why="checked by token digest and joined with the person's epoch and head"),
    Placement("account_one_time", why="as sessions: looked up by digest, joined by person"),
    Placement("account_outbox", why="scanned by due time by the mail sender"),
    Placement("account_throttle", why="counted by keyed digest, joined with credentials"),
    Placement("account_api_keys", why="a few service keys, unique by name and digest"),
)
"""Each table's place on a cluster (docs/SCALING.md explains the choices)."""


CLUSTER_ADJUSTMENTS: tuple[str, ...] = (
    # A trigger on a shard may only touch its own node's co-located shards. The epoch
    # still moves with the head (account_credentials is co-located with people_latest),
    # which is what ends the sessions: every check compares it. The rows of the ended
    # sessions (a reference table, on every node) are deleted by `account cleanup`.
    """CREATE OR REPLACE FUNCTION peoplelog_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_credentials AS c (person_id, epoch) VALUES (NEW.person_id, 1)
    ON CONFLICT (person_id) DO UPDATE SET epoch = c.epoch + 1;
    RETURN NULL;
END
$$""",
    # A trigger on a shard cannot join its transition table with a distributed table: the
    # guards of 011 ask for each person's head one person at a time instead, which Citus
    # routes to the co-located shard on the same node, in the same transaction.
    """CREATE OR REPLACE FUNCTION peoplelog_latest_is_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n record;
    h record;
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    FOR n IN SELECT * FROM changed LOOP
        SELECT p.version, p.cid, p.op, p.recorded_at, p.email, p.name, p.password,
               p.verified_at INTO h
        FROM people AS p WHERE p.person_id = n.person_id
        ORDER BY p.version DESC, p.seq LIMIT 1;
        IF NOT FOUND
           OR (n.version, n.cid, n.op, n.recorded_at, n.email, n.name, n.password,
               n.verified_at)
              IS DISTINCT FROM (h.version, h.cid, h.op, h.recorded_at, h.email, h.name,
                                h.password, h.verified_at)
           OR (n.erased_at IS NOT NULL) IS DISTINCT FROM (h.op = 'erased')
        THEN
            PERFORM peoplelog_refuse('people_latest may only hold each person''s chain head');
        END IF;
    END LOOP;
    RETURN NULL;
END
$$""",
    """CREATE OR REPLACE FUNCTION peoplelog_added_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n record;
    h record;
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    FOR n IN SELECT DISTINCT person_id FROM added LOOP
        SELECT p.op, p.xmin AS x INTO h FROM people AS p WHERE p.person_id = n.person_id
        ORDER BY p.version DESC, p.seq LIMIT 1;
        IF NOT FOUND OR h.op = 'erased' OR NOT peoplelog_written_here(h.x) THEN
            PERFORM peoplelog_refuse(peoplelog_table_name(TG_TABLE_NAME)
                                     || ' rows may only be added with a new version'
                                     || ' of their person');
        END IF;
    END LOOP;
    RETURN NULL;
END
$$""",
    """CREATE OR REPLACE FUNCTION peoplelog_removed_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tab CONSTANT text := peoplelog_table_name(TG_TABLE_NAME);
    n record;
    h record;
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    FOR n IN SELECT DISTINCT person_id FROM removed LOOP
        SELECT p.op, p.xmin AS x INTO h FROM people AS p WHERE p.person_id = n.person_id
        ORDER BY p.version DESC, p.seq LIMIT 1;
        IF NOT FOUND OR NOT peoplelog_written_here(h.x)
           OR (tab = 'person_keys' AND h.op <> 'erased') THEN
            PERFORM peoplelog_refuse(CASE tab
                WHEN 'person_keys'
                THEN 'a data key may only be removed with the erasure of its person'
                ELSE tab || ' rows may only be removed with a new version of their person'
                END);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$""",
    # An email claim lives on its blind index's shard, its person's head on another node:
    # these guards cannot see it from there. A claim is still sealed by the application's
    # writer key, so one the database login adds or moves fails closed at its next read.
    "DROP TRIGGER IF EXISTS email_lookup_added_with_head ON email_lookup",
    "DROP TRIGGER IF EXISTS email_lookup_removed_with_head ON email_lookup",
)
"""What changes on a cluster besides where the rows are (docs/SCALING.md): run before the
tables are distributed, and again (idempotently) by every ``init``."""


def citus_installed(conn: psycopg.Connection[Any]) -> bool:
    """Whether this database has the ``citus`` extension (a coordinator or a worker)."""
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() \
        is not None


def distribute_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Place every table of ``DISTRIBUTION_PLAN`` that is not placed yet; return what was
    done (``"people: distributed by person_id"``). Must run on the coordinator, as the
    tables' owner, after the migrations. Tables keep their rows."""
    if not citus_installed(conn):
        return []
    done: list[str] = []
    with conn.transaction():
        placed = {row[0] for row in conn.execute(
            "SELECT logicalrelid::regclass::text FROM pg_dist_partition")}
        missing = [p.table for p in DISTRIBUTION_PLAN
                   if conn.execute("SELECT to_regclass(%s)", (p.table,)).fetchone()
                   in (None, (None,))]
        if missing:
            raise ConfigurationError(
                f"cannot distribute: tables {', '.join(missing)} are missing; "
                "apply the migrations first")
        # The row triggers only read rows of the shard's own person or claim (or the
        # reference tables), which is what this guard is about.
        conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        conn.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        for statement in CLUSTER_ADJUSTMENTS:
            conn.execute(statement.encode())
        for placement in DISTRIBUTION_PLAN:
            if placement.table in placed:
                continue
            if placement.column is None:
                conn.execute("SELECT create_reference_table(%s)", (placement.table,))
                done.append(f"{placement.table}: reference table")
            else:
                conn.execute(
                    "SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                    (placement.table, placement.column, placement.colocate_with or "default"))
                done.append(f"{placement.table}: distributed by {placement.column}")
    return done
