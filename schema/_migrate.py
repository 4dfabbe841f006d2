"""Apply the numbered SQL migrations under ``schema/migrations`` exactly once each."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from .errors import ConfigurationError, InvalidInput

__all__ = ["Migration", "apply_migrations", "grant_app_role", "grant_auditor_role", "migrations",
           "split_statements"]

_PACKAGE = __name__.rpartition(".")[0]
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x70656F706C656C6F  # "peoplelo": serialises concurrent `init` runs


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migrations shipped with this release, in order."""
    found: list[Migration] = []
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.number)


def apply_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply pending migrations in one transaction; return the names applied.

    Idempotent: applied migrations are recorded in ``peoplelog_migrations`` with a checksum,
    and a changed file that was already applied is refused rather than silently skipped.
    """
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        citus = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'"
                             ).fetchone() is not None
        if citus:  # a migration's trigger on a table already distributed (docs/SCALING.md)
            conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS peoplelog_migrations (
                   number     integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            row[0]: row[1]
            for row in conn.execute("SELECT number, checksum FROM peoplelog_migrations")
        }
        for migration in migrations():
            if migration.number in done:
                if done[migration.number] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.number:03d}_{migration.name} was applied "
                        "with different contents; refusing to continue"
                    )
                continue
            if citus:  # Citus passes a DDL's text on to the workers: one command at a time
                for statement in split_statements(migration.sql):
                    conn.execute(statement.encode())
            else:
                conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO peoplelog_migrations (number, name, checksum) VALUES (%s, %s, %s)",
                (migration.number, migration.name, migration.checksum),
            )
            applied.append(f"{migration.number:03d}_{migration.name}")
    return applied


_TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|"""
                    r"""(\$[A-Za-z_0-9]*\$)(?:.|\n)*?\1|;""", re.S)


def split_statements(script: str) -> list[str]:
    """The commands of a migration script, each without its ``;``: split at the semicolons
    outside comments, quoted strings, quoted names and dollar-quoted bodies."""
    statements: list[str] = []
    start = 0
    for match in _TOKEN.finditer(script):
        if match.group(0) == ";":
            statements.append(script[start:match.start()])
            start = match.end()
    statements.append(script[start:])
    return [s.strip() for s in statements if _TOKEN.sub(
        lambda m: "" if m.group(0).startswith(("--", "/*")) else m.group(0), s).strip()]


_APP_GRANTS: tuple[tuple[str, str], ...] = (
    ("people", "SELECT, INSERT"),
    ("people_latest", "SELECT, INSERT, UPDATE"),
    ("email_lookup", "SELECT, INSERT, DELETE"),
    ("person_keys", "SELECT, INSERT, DELETE"),
    ("peoplelog_migrations", "SELECT"),
    ("peoplelog_key_checks", "SELECT, INSERT"),
    ("external_ids", "SELECT, INSERT, DELETE"),
    ("import_seen", "SELECT, INSERT, DELETE"),
    ("log_entries", "SELECT"),
    ("checkpoints", "SELECT"),
    ("log_meta", "SELECT"),
    ("log_refused", "SELECT"),
    ("peoplelog_key_versions", "SELECT"),
    ("peoplelog_claim_owners", "SELECT"),
    ("kek_epochs", "SELECT"),
    ("account_credentials", "SELECT, INSERT, UPDATE"),
    ("account_sessions", "SELECT, INSERT, UPDATE, DELETE"),
    ("account_one_time", "SELECT, INSERT, UPDATE, DELETE"),  # UPDATE: FOR UPDATE
    ("account_outbox", "SELECT, INSERT, UPDATE, DELETE"),
    ("account_throttle", "SELECT, INSERT, UPDATE, DELETE"),
    ("account_api_keys", "SELECT, INSERT, DELETE, UPDATE (last_used_at)"),
    ("security_events", "SELECT, INSERT"),
    ("security_events_refused", "SELECT"),
    ("security_event_retirements", "SELECT"),
)
_APP_SEQUENCES = ("people_seq_seq", "security_events_seq_seq")
_CLUSTER_APP_GRANTS: tuple[tuple[str, str], ...] = (
    ("peoplelog_key_checks", "UPDATE"),
    ("security_events", "UPDATE"),
)
"""On a Citus cluster, what the application's login also needs: Citus locks every copy of
a reference table it writes, and asks for UPDATE (or DELETE, or TRUNCATE) to do so. Both
tables' triggers refuse an UPDATE by any login but the owner, so the grant changes no
row."""

_AUDITOR_GRANTS = ("people", "log_entries", "checkpoints", "log_meta", "log_refused",
                   "people_latest", "peoplelog_key_versions", "peoplelog_claim_owners",
                   "kek_epochs", "security_events", "security_events_refused",
                   "security_event_retirements", "account_credentials")
_AUDITOR_COLUMNS = (("account_sessions", "session_id, person_id, kind, epoch, created_at,"
                     " expires_at, last_used_at, idle_seconds"),
                    ("account_api_keys", "key_id, name, permissions, created_at, created_by,"
                     " last_used_at"))
"""What key-free ``verify`` reads: the ledger, the log (security events included), the
projections a login trusts (through views without key material or keyed hashes), and of
the sessions only what says whose they are and whether they are live: never their lookup
digests, seals or client details. And, for an access review, which service API keys exist
and what they permit (never their lookup digests or seals)."""


_CLUSTER_AUDITOR_COLUMNS = (("person_keys", "person_id, key_version"),
                            ("email_lookup", "person_id"))
"""On a Citus cluster, the columns the two views show, granted on their tables: Citus runs
a view's query on the shards as the reading login, not the view's owner. The same columns
as the views: no key material, no keyed hash."""


def grant_auditor_role(conn: psycopg.Connection[Any], role: str) -> None:
    """Give ``role`` SELECT on what key-free ``verify`` reads, and nothing else."""
    ident = _existing_role(conn, role)
    cluster = _reference_tables(conn)
    with conn.transaction():
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(_current_schema(conn)), ident))
        for table in _AUDITOR_GRANTS:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table),
                                                                    ident))
        for table, columns in _AUDITOR_COLUMNS + (_CLUSTER_AUDITOR_COLUMNS if cluster
                                                  else ()):
            conn.execute(sql.SQL("GRANT SELECT (" + columns + ") ON {} TO {}").format(
                sql.Identifier(table), ident))


def _existing_role(conn: psycopg.Connection[Any], role: str) -> sql.Identifier:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists is None:
        raise InvalidInput(f"role {role!r} does not exist; create it first (CREATE ROLE ...)")
    return sql.Identifier(role)


def grant_app_role(conn: psycopg.Connection[Any], role: str) -> None:
    """Give ``role`` what an application needs and nothing more.

    On ``people`` that is INSERT and SELECT only: the role can neither change nor remove a
    version, whatever the trigger does.
    """
    ident = _existing_role(conn, role)
    with conn.transaction():
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(_current_schema(conn)), ident
            )
        )
        for table, privileges in _APP_GRANTS:
            conn.execute(
                sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(table), ident)
            )
            conn.execute(
                sql.SQL("GRANT " + privileges + " ON {} TO {}").format(
                    sql.Identifier(table), ident
                )
            )
        for sequence in _APP_SEQUENCES:
            conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                sql.Identifier(sequence), ident))
        if _reference_tables(conn):
            for table, privileges in _CLUSTER_APP_GRANTS:
                conn.execute(sql.SQL("GRANT " + privileges + " ON {} TO {}").format(
                    sql.Identifier(table), ident))


def _reference_tables(conn: psycopg.Connection[Any]) -> bool:
    """Whether this is a Citus coordinator whose tables are placed (``pg_dist_partition``
    lists ``security_events``)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is None:
        return False
    return conn.execute("SELECT 1 FROM pg_dist_partition"
                        " WHERE logicalrelid = to_regclass('security_events')").fetchone() \
        is not None


def _current_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise ConfigurationError("no current schema: check the connection's search_path")
    return str(row[0])
