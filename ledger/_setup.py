"""Setting a store up: the keyring (created once, never overwritten) and the schema."""

from __future__ import annotations

from pydantic import BaseModel

from peoplelog.fields import Keyring
from peoplelog.schema import apply_migrations, grant_app_role, grant_auditor_role

from ._settings import Settings
from ._store import Conn, Database

__all__ = ["StoreInit", "init_store", "migrate"]


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


def migrate(database: Database, app_role: str | None = None,
            auditor_role: str | None = None) -> list[str]:
    """Apply pending migrations (idempotent); with ``app_role``, grant that existing role
    what an application needs and nothing more, and with ``auditor_role`` what key-free
    ``verify`` reads. The names of the migrations applied."""
    def work(conn: Conn) -> list[str]:
        applied = apply_migrations(conn)
        if app_role is not None:
            grant_app_role(conn, app_role)
        if auditor_role is not None:
            grant_auditor_role(conn, auditor_role)
        return applied

    return database.run(work)


def init_store(settings: Settings | None = None, *, app_role: str | None = None,
               auditor_role: str | None = None) -> StoreInit:
    """Create the keyring file when there is none (mode 0600; an existing one is only
    read, never overwritten), then apply pending migrations (idempotent) and, with
    ``app_role`` and ``auditor_role``, grant those existing roles least privilege. What
    ``peoplelog init`` does.
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
        applied = migrate(database, app_role, auditor_role)
    finally:
        database.close()
    return StoreInit(database=database.where, migrations_applied=applied,
                     keyring=settings.keyring_source, keyring_created=created,
                     app_role=app_role, auditor_role=auditor_role)
