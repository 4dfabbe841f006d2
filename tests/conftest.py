"""Fixtures: a real PostgreSQL (PEOPLELOG_DATABASE_URL, else the embedded pgserver) and a
fresh database per test module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from peoplelog.fields import Keyring
from peoplelog.ledger import Database, Ledger
from peoplelog.schema import apply_migrations, distribute_tables

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the PostgreSQL server the tests run against."""
    url = os.environ.get("PEOPLELOG_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data
    # directory from under a server that a concurrent run is still using.
    pgdata = Path(tempfile.mkdtemp(prefix="peoplelog-test-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - only when no URL is given

        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    if os.environ.get("PEOPLELOG_TEST_FSYNC", "off") == "off":
        # A throwaway server: commits reach the OS (a killed PostgreSQL loses nothing, as
        # the reliability tests need) but are not forced to the disk, which only an OS
        # crash would show. PEOPLELOG_TEST_FSYNC=on keeps PostgreSQL's default.
        with psycopg.connect(str(server.get_uri()), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET fsync = off")
            admin.execute("SELECT pg_reload_conf()")
    yield str(server.get_uri())
    server.cleanup()
    shutil.rmtree(pgdata, ignore_errors=True)


def create_database(server_url: str, prefix: str) -> str:
    name = f"plt_{prefix}_{uuid.uuid4().hex[:8]}".lower()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


ON_CLUSTER = os.environ.get("PEOPLELOG_TEST_SUITE_ON_CITUS") == "1"
"""Run every module's database on the Citus cluster of PEOPLELOG_TEST_CITUS_URL (the
tables distributed as ``peoplelog init`` does), not on the server: for trying the whole
suite there; tests/test_citus.py is the contract that must pass on a cluster."""


@pytest.fixture(scope="module")
def database_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for one test module."""
    prefix = request.module.__name__.rsplit(".", 1)[-1][:20]
    if ON_CLUSTER:
        from citus_support import create_cluster_database, drop_cluster_database  # noqa: PLC0415

        url = create_cluster_database(prefix)
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
            distribute_tables(conn)
        yield url
        drop_cluster_database(url)
        return
    url = create_database(server_url, prefix)
    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture(scope="module")
def keyring_file(keyring: Keyring, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keyring.json"
    keyring.save(path)
    return path


@pytest.fixture(scope="module")
def ledger(database_url: str, keyring: Keyring) -> Iterator[Ledger]:
    led = Ledger(Database(database_url, pool_size=4), keyring)
    yield led
    led.close()


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs `python -m ledger` against the module's database and keyring."""

    env: dict[str, str]

    def __call__(self, *args: str, stdin: str | bytes | None = None,
                 env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [sys.executable, "-m", "peoplelog", *args], input=data, capture_output=True,
            env={**self.env, **(env or {})}, timeout=timeout, check=False, cwd=ROOT,
        )
        return CliResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                         proc.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, keyring_file: Path,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEOPLELOG_", "PG"))}
    env.pop("DATABASE_URL", None)
    env.update(
        PEOPLELOG_DATABASE_URL=database_url,
        PEOPLELOG_KEYRING=str(keyring_file),
        PEOPLELOG_HOME=str(tmp_path_factory.mktemp("home")),
    )
    return env


@pytest.fixture(scope="module")
def cli(cli_env: dict[str, str]) -> Cli:
    return Cli(cli_env)
