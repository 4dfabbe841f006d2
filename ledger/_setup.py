"""Setting a store up: the keyring (created once, never overwritten) and the schema."""

from __future__ import annotations

from pydantic import BaseModel

from peoplelog.fields import Keyring
from peoplelog.schema import (
    apply_migrations,
    distribute_tables,
    grant_app_role,
    grant_auditor_role,
)

from ._settings import Settings
from ._store import Conn, Database

__all__ = ["StoreInit", "init_store", "migrate", "setup_store"]


class StoreInit(BaseModel):
    """What ``init_store`` did."""

    database: str
    """Where the database is (host, port and name; never a password)."""
    migrations_applied: list[str]
    keyring: str
    """The keyring file, or ``$PEOPLELOG_KEYRING_JSON`` when it is given as a document."""
    keyring_created: bool
    app_role: str | None
    auditor_role: str | None = None
    distributed: list[str] = []
    """On a Citus coordinator, the tables placed by this run (``"people: distributed by
    person_id"``); empty on plain PostgreSQL, with ``--no-distribute``, or when every
    table was placed before."""


def migrate(database: Database, app_role: str | None = None,
            auditor_role: str | None = None, *, distribute: bool = True) -> list[str]:
    """Apply pending migrations (idempotent); with ``app_role``, grant that existing role
    what an application needs and nothing more, and with ``auditor_role`` what key-free
    ``verify`` reads. The names of the migrations applied.

    On a Citus coordinator (the ``citus`` extension installed) the tables are placed by
    the distribution plan as well, unless ``distribute`` is false; see ``setup_store``.
    """
    return setup_store(database, app_role, auditor_role, distribute=distribute)[0]


def setup_store(database: Database, app_role: str | None = None,
                auditor_role: str | None = None, *, distribute: bool = True
                ) -> tuple[list[str], list[str]]:
    """``migrate``, returning the migrations applied and the tables placed on a cluster
    (nothing on plain PostgreSQL)."""
    def work(conn: Conn) -> tuple[list[str], list[str]]:
        applied = apply_migrations(conn)
        placed = distribute_tables(conn) if distribute else []
        if app_role is not None:
            grant_app_role(conn, app_role)
        if auditor_role is not None:
            grant_auditor_role(conn, auditor_role)
        return applied, placed

    return database.run(work)


def init_store(settings: Settings | None = None, *, app_role: str | None = None,
               auditor_role: str | None = None, distribute: bool = True) -> StoreInit:
    """Create the keyring file when there is none (mode 0600; an existing one is only
    read, never overwritten), then apply pending migrations (idempotent) and, with
    ``app_role`` and ``auditor_role``, grant those existing roles least privilege. On a
    Citus coordinator the tables are distributed too (``distribute=False``:
    ``--no-distribute``). What ``peoplelog init`` does.
    """
    settings = settings or Settings.from_environment()
    created = False
    if settings.keyring_in_file:
        settings.home.mkdir(parents=True, exist_ok=True)
        if not settings.keyring_file.exists() and not settings.keyring_file.is_symlink():
            Keyring.generate().save(settings.keyring_file)
            created = True
    settings.keyring()  # refuses a missing, unreadable, malformed or too open keyring
    database = Database.from_settings(settings, pool_size=1)
    try:
        applied, placed = setup_store(database, app_role, auditor_role,
                                      distribute=distribute)
    finally:
        database.close()
    return StoreInit(database=database.where, migrations_applied=applied,
                     keyring=settings.keyring_source, keyring_created=created,
                     app_role=app_role, auditor_role=auditor_role, distributed=placed)
