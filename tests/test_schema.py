"""The schema itself: migrations, the append-only guarantees PostgreSQL enforces whatever
the client, the application role's rights, and Citus-legal keys."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli, create_database, drop_database
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import (
    DISTRIBUTION_PLAN,
    InvalidInput,
    VersionRef,
    apply_migrations,
    citus_installed,
    distribute_tables,
    grant_app_role,
    migrations,
)
from peoplelog.schema._distribute import CLUSTER_ADJUSTMENTS
from peoplelog.schema._migrate import split_statements

TABLES = ("people", "people_latest", "email_lookup", "person_keys")
FAKE_CID = "bafkrei" + "a" * 52


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    return int(row.fetchone()[0])  # type: ignore[index]


def people_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM people ORDER BY person_id, version").fetchall()


@pytest.fixture(scope="module")
def person(ledger: Ledger) -> VersionRef:
    ref = ledger.create_person(email="schema.one@example.org", name="Schema One")
    return ledger.update_person(ref.person_id, name="Schema One, changed")


# --- migrations ---------------------------------------------------------------------------


class TestMigrations:
    def test_fresh_database_applies_every_migration_once(self, server_url: str) -> None:
        url = create_database(server_url, "migrate")
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                first = apply_migrations(conn)
                second = apply_migrations(conn)
                recorded = conn.execute(
                    "SELECT number, name, checksum FROM peoplelog_migrations ORDER BY number"
                ).fetchall()
                tables = {
                    row[0] for row in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    )
                }
        finally:
            drop_database(server_url, url)
        shipped = migrations()
        assert first == [f"{m.number:03d}_{m.name}" for m in shipped]
        assert second == []
        assert recorded == [(m.number, m.name, m.checksum) for m in shipped]
        assert set(TABLES) | {"peoplelog_migrations"} <= tables

    def test_reapplying_on_a_used_database_changes_nothing(
        self, conn: psycopg.Connection[Any], ledger: Ledger, person: VersionRef
    ) -> None:
        before = {table: count(conn, table) for table in TABLES}
        rows = people_rows(conn)
        assert ledger.migrate() == []
        assert apply_migrations(conn) == []
        assert count(conn, "peoplelog_migrations") == len(migrations())
        assert {table: count(conn, table) for table in TABLES} == before
        assert people_rows(conn) == rows


# --- the database keeps people append-only ------------------------------------------------


class TestAppendOnly:
    def test_connection_is_superuser(self, conn: psycopg.Connection[Any]) -> None:
        # The guarantees below hold for the most privileged client there is.
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert row.fetchone() == (True,)

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE people SET actor = 'mallory' WHERE person_id = %(pid)s",
            "UPDATE people SET version = version WHERE person_id = %(pid)s AND version = 0",
            "DELETE FROM people WHERE person_id = %(pid)s AND version = 1",
            "DELETE FROM people",
            "TRUNCATE people",
            "TRUNCATE people CASCADE",
        ],
    )
    def test_update_delete_truncate_are_rejected(
        self, conn: psycopg.Connection[Any], person: VersionRef, statement: str
    ) -> None:
        rows = people_rows(conn)
        with pytest.raises(pg_errors.RaiseException, match="append-only"):
            conn.execute(statement, {"pid": person.person_id})
        assert people_rows(conn) == rows

    def test_rejected_inside_a_transaction_too(
        self, conn: psycopg.Connection[Any], person: VersionRef
    ) -> None:
        rows = people_rows(conn)
        with pytest.raises(pg_errors.RaiseException), conn.transaction():
            conn.execute("DELETE FROM people WHERE person_id = %s", (person.person_id,))
        assert people_rows(conn) == rows

    def _insert(self, conn: psycopg.Connection[Any], pid: uuid.UUID, version: int,
                prev: str | None) -> None:
        conn.execute(
            "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at)"
            " VALUES (%s, %s, %s, %s, 1, 'updated', now())",
            (pid, version, "bafkrei" + "b" * 52, prev),
        )

    def test_version_whose_prev_is_not_the_previous_cid_is_rejected(
        self, conn: psycopg.Connection[Any], person: VersionRef
    ) -> None:
        rows = people_rows(conn)
        v0 = conn.execute(
            "SELECT cid FROM people WHERE person_id = %s AND version = 0", (person.person_id,)
        ).fetchone()
        assert v0 is not None
        # prev names a CID that is not version 1's (here: version 0's, and a made-up one).
        for prev in (v0[0], FAKE_CID):
            with pytest.raises(psycopg.Error, match="does not extend the chain") as info:
                self._insert(conn, person.person_id, person.version + 1, prev)
            assert info.value.sqlstate == "PL001"
        assert people_rows(conn) == rows

    def test_version_that_skips_ahead_is_rejected(
        self, conn: psycopg.Connection[Any], person: VersionRef
    ) -> None:
        with pytest.raises(psycopg.Error, match="does not extend the chain") as info:
            self._insert(conn, person.person_id, person.version + 2, person.cid)
        assert info.value.sqlstate == "PL001"

    def test_version_for_an_unknown_person_is_rejected(
        self, conn: psycopg.Connection[Any]
    ) -> None:
        with pytest.raises(psycopg.Error) as info:
            self._insert(conn, uuid.uuid4(), 1, FAKE_CID)
        assert info.value.sqlstate == "PL001"

    def test_genesis_has_no_prev_and_later_versions_have_one(
        self, conn: psycopg.Connection[Any], person: VersionRef
    ) -> None:
        with pytest.raises(pg_errors.CheckViolation):
            self._insert(conn, uuid.uuid4(), 0, FAKE_CID)
        # A later version without prev: the chain trigger or the check, whichever runs first.
        with pytest.raises(psycopg.Error) as info:
            self._insert(conn, person.person_id, person.version + 1, None)
        assert info.value.sqlstate in ("PL001", "23514")

    def test_second_version_with_the_same_number_is_rejected(
        self, conn: psycopg.Connection[Any], person: VersionRef
    ) -> None:
        v0 = conn.execute(
            "SELECT cid FROM people WHERE person_id = %s AND version = 0", (person.person_id,)
        ).fetchone()
        assert v0 is not None
        with pytest.raises(pg_errors.UniqueViolation):  # a fork of version 1
            self._insert(conn, person.person_id, 1, v0[0])

    def test_malformed_cid_is_rejected(self, conn: psycopg.Connection[Any]) -> None:
        with pytest.raises(pg_errors.CheckViolation):
            conn.execute(
                "INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at)"
                " VALUES (%s, 0, 'not-a-cid', NULL, 1, 'created', now())",
                (uuid.uuid4(),),
            )


# --- the application role -----------------------------------------------------------------


@pytest.fixture()
def app_role(conn: psycopg.Connection[Any], database_url: str) -> Iterator[str]:
    """A fresh LOGIN role without superuser; dropped (with its grants) afterwards."""
    name = f"plt_app_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
        sql.Identifier(name)))
    yield name
    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


class TestAppRole:
    def test_granted_role_can_insert_and_select_but_not_rewrite(
        self, ledger: Ledger, app_role: str, database_url: str, person: VersionRef,
        conn: psycopg.Connection[Any],
    ) -> None:
        assert ledger.migrate(app_role=app_role) == []
        rows = people_rows(conn)
        role_url = make_conninfo(database_url, user=app_role)
        with psycopg.connect(role_url, autocommit=True) as as_role:
            who = as_role.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert who == (app_role, False)
            assert as_role.execute("SELECT count(*) FROM people").fetchone() == (len(rows),)
            head = as_role.execute(
                "SELECT version, cid FROM people_latest WHERE person_id = %s",
                (person.person_id,),
            ).fetchone()
            assert head == (person.version, person.cid)
            for statement in (
                "UPDATE people SET actor = 'mallory' WHERE person_id = %(pid)s",
                "DELETE FROM people WHERE person_id = %(pid)s",
                "TRUNCATE people",
            ):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    as_role.execute(statement, {"pid": person.person_id})
        assert people_rows(conn) == rows

    def test_granted_role_runs_the_whole_ledger(
        self, ledger: Ledger, app_role: str, database_url: str, keyring: Keyring,
        conn: psycopg.Connection[Any],
    ) -> None:
        ledger.migrate(app_role=app_role)
        role_url = make_conninfo(database_url, user=app_role)
        with Ledger(Database(role_url, pool_size=1), keyring) as as_role:
            ref = as_role.create_person(email="role.user@example.org", name="Role User")
            as_role.update_person(ref.person_id, name="Role User II", expect_version=0)
            assert as_role.find_person("role.user@example.org") == ref.person_id
            assert as_role.get_person(ref.person_id).name == "Role User II"
            erased = as_role.erase_person(ref.person_id)
            assert erased.version == 2
            assert as_role.get_person(ref.person_id).erased
        inserted_by = conn.execute(
            "SELECT count(*) FROM people WHERE person_id = %s", (ref.person_id,)
        ).fetchone()
        assert inserted_by == (3,)

    def test_granted_role_cannot_change_the_schema(
        self, ledger: Ledger, app_role: str, database_url: str,
    ) -> None:
        ledger.migrate(app_role=app_role)
        with psycopg.connect(make_conninfo(database_url, user=app_role),
                             autocommit=True) as as_role:
            for statement in (
                "DROP TRIGGER people_no_update_delete ON people",
                "ALTER TABLE people DISABLE TRIGGER ALL",
                "DROP TABLE people",
            ):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    as_role.execute(statement)

    def test_grant_through_set_role_in_a_transaction(
        self, ledger: Ledger, app_role: str, conn: psycopg.Connection[Any],
        person: VersionRef,
    ) -> None:
        ledger.migrate(app_role=app_role)
        rows = people_rows(conn)
        with pytest.raises(pg_errors.InsufficientPrivilege), conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app_role)))
            assert conn.execute("SELECT count(*) FROM people").fetchone() == (len(rows),)
            conn.execute("DELETE FROM people WHERE person_id = %s", (person.person_id,))
        assert conn.execute("SELECT current_user").fetchone() != (app_role,)
        assert people_rows(conn) == rows

    def test_ungranted_role_cannot_read_people(
        self, app_role: str, database_url: str
    ) -> None:
        with psycopg.connect(make_conninfo(database_url, user=app_role),
                             autocommit=True) as as_role, \
                pytest.raises(pg_errors.InsufficientPrivilege):
            as_role.execute("SELECT count(*) FROM people")

    def test_rows_of_this_transaction_and_its_savepoints_are_written_here(
        self, conn: psycopg.Connection[Any],
    ) -> None:
        """The check behind the write-path triggers: rows this transaction (or one of its
        subtransactions, released or not) inserted are written here; rows committed
        before, and rows of a rolled-back savepoint's sibling, are not."""
        conn.execute("CREATE TEMP TABLE xids (n int)")
        conn.execute("INSERT INTO xids VALUES (0)")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO xids VALUES (1)")
                with conn.transaction():
                    conn.execute("INSERT INTO xids VALUES (2)")
                with conn.transaction():
                    conn.execute("INSERT INTO xids VALUES (3)")
                    rows = conn.execute("SELECT n, peoplelog_written_here(xmin) FROM xids"
                                        " ORDER BY n").fetchall()
            assert rows == [(0, False), (1, True), (2, True), (3, True)]
            later = conn.execute("SELECT n, peoplelog_written_here(xmin) FROM xids"
                                 " ORDER BY n").fetchall()
            assert later == [(0, False), (1, False), (2, False), (3, False)]
        finally:
            conn.execute("DROP TABLE xids")

    def test_unknown_role_is_invalid_input(self, ledger: Ledger) -> None:
        name = f"plt_missing_{uuid.uuid4().hex[:8]}"
        with pytest.raises(InvalidInput, match="does not exist"):
            ledger.migrate(app_role=name)


# --- keys stay Citus-legal ----------------------------------------------------------------


def test_every_key_and_unique_index_includes_person_id_except_email_lookup(
    conn: psycopg.Connection[Any],
) -> None:
    rows = conn.execute(
        """
        SELECT c.relname, i.indexrelid::regclass::text,
               array_agg(a.attname::text ORDER BY a.attnum)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indisunique AND c.relnamespace = current_schema()::regnamespace
          AND c.relname = ANY (%s)
        GROUP BY c.relname, i.indexrelid
        """,
        (list(TABLES),),
    ).fetchall()
    unique = {(table, index): set(columns) for table, index, columns in rows}
    assert {table for table, _ in unique} == set(TABLES)
    for (table, index), columns in unique.items():
        if table == "email_lookup":
            assert columns == {"blind_index"}, index
        else:
            assert "person_id" in columns, (table, index, columns)
    constraints = conn.execute(
        """
        SELECT conrelid::regclass::text, conname, contype
        FROM pg_constraint
        WHERE contype IN ('p', 'u', 'x', 'f')
          AND connamespace = current_schema()::regnamespace
          AND conrelid::regclass::text = ANY (%s)
        """,
        (list(TABLES),),
    ).fetchall()
    assert not [c for c in constraints if c[2] in ("x", "f")]  # no exclusion/foreign keys
    assert {c[0] for c in constraints if c[2] == "p"} == set(TABLES)


# --- the distribution plan (docs/SCALING.md; run on a cluster in tests/test_citus.py) ------


def test_every_table_has_a_place_in_the_distribution_plan_that_its_keys_allow(
    conn: psycopg.Connection[Any],
) -> None:
    tables = {row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    planned = {p.table: p for p in DISTRIBUTION_PLAN}
    assert tables == set(planned), "a new table needs its place in DISTRIBUTION_PLAN"
    assert [p.table for p in DISTRIBUTION_PLAN].index("people") == 0  # placed first
    unique = conn.execute(
        """
        SELECT c.relname, array_agg(a.attname::text)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indisunique AND c.relnamespace = current_schema()::regnamespace
        GROUP BY c.relname, i.indexrelid
        """).fetchall()
    for table, columns in unique:
        placement = planned[table]
        if placement.column is not None:  # Citus enforces uniqueness only per shard
            assert placement.column in columns, (table, columns)
        if placement.colocate_with is not None:
            assert planned[placement.colocate_with].column is not None


def test_distributing_on_one_server_does_nothing(ledger: Ledger,
                                                 conn: psycopg.Connection[Any]) -> None:
    assert not citus_installed(conn)
    assert distribute_tables(conn) == []
    assert not ledger.database.distributed


def test_init_no_distribute_is_accepted_on_one_server(cli: Cli) -> None:
    done = cli("init", "--no-distribute", "--json")
    assert done.code == 0, done.stderr
    assert done.json["distributed"] == []
    assert "--no-distribute" in cli("init", "--help").stdout


def test_migration_scripts_split_into_their_commands() -> None:
    script = ("-- a comment; with a semicolon\nCREATE TABLE t (a text DEFAULT ';');\n"
              "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT ';' $body$;\n"
              "COMMENT ON TABLE t IS 'it''s; fine'; /* ; */ SELECT \"a;b\" FROM t\n")
    assert split_statements(script) == [
        "-- a comment; with a semicolon\nCREATE TABLE t (a text DEFAULT ';')",
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT ';' $body$",
        "COMMENT ON TABLE t IS 'it''s; fine'",
        "/* ; */ SELECT \"a;b\" FROM t",
    ]
    for migration in migrations():
        parts = split_statements(migration.sql)
        assert parts and all(part.strip() for part in parts)
        assert "".join(migration.sql.split()).replace(";", "") == "".join(
            "".join(parts).split()).replace(";", "")


def test_the_cluster_versions_of_the_guards_refuse_what_the_originals_refuse(
        server_url: str, keyring: Keyring) -> None:
    # On a cluster `init` replaces three guard triggers' functions with ones that ask for
    # each person's head one at a time (schema._distribute.CLUSTER_ADJUSTMENTS); here
    # they run on one server, for the application's role, against the same tampering.
    url = create_database(server_url, "guards")
    role = f"plt_guard_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(url, autocommit=True) as owner:
            apply_migrations(owner)
            for statement in CLUSTER_ADJUSTMENTS[1:4]:  # the guards, not the cluster-only
                owner.execute(statement.encode())
            owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            grant_app_role(owner, role)
        with Ledger(Database(make_conninfo(url, user=role), pool_size=1), keyring) as app:
            made = app.create_person(email=f"g-{uuid.uuid4().hex[:6]}@example.org", name="G")
            app.update_person(made.person_id, name="G II")
            with psycopg.connect(make_conninfo(url, user=role), autocommit=True) as raw:
                for statement, message in (
                    ("UPDATE people_latest SET name = '\\x00' WHERE person_id = %s",
                     "people_latest may only hold each person's chain head"),
                    ("DELETE FROM person_keys WHERE person_id = %s",
                     "a data key may only be removed with the erasure of its person"),
                    ("INSERT INTO person_keys (person_id, key_version, kek_id, wrapped_key)"
                     " VALUES (%s, 9, 'kek', '\\x00')",
                     "person_keys rows may only be added with a new version of their person"),
                ):
                    with pytest.raises(pg_errors.InsufficientPrivilege, match=re.escape(
                            message)):
                        raw.execute(statement, (made.person_id,))
            assert app.erase_person(made.person_id).version == 2
    finally:
        drop_database(server_url, url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
