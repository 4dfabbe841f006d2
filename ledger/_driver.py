"""The one place where driver errors (SQLSTATEs, constraint names) become peoplelog errors.

Every statement peoplelog sends runs under ``translate_errors`` (or its errors pass
through ``translated``), so callers see the peoplelog error tree only. Deadlocks and
serialization failures are the exception: ``translate_errors`` lets them through
(``RETRYABLE``) for the store's retry loops, which translate them once they give up.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg_errors

from peoplelog.schema import (
    ConfigurationError,
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    EmailTaken,
    PeoplelogError,
    VersionConflict,
)

__all__ = ["RETRYABLE", "connect_error", "first_line", "translate_errors", "translated",
           "unique_constraint"]

RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
"""Errors after which the same work, tried again, can succeed (SQLSTATE 40001, 40P01)."""

CHAIN_NOT_EXTENDED = "PL001"
"""Raised by the ``people_extends_chain`` trigger: prev is not the CID of version - 1."""
_VERSION_TAKEN = frozenset({"people_pkey", "people_person_id_cid_key"})
_EMAIL_CLAIMED = "email_lookup_pkey"
_SHARD_SUFFIX = re.compile(r"_[0-9]+$")
_COPY_DUPLICATE = re.compile(r'^duplicate key value violates unique constraint "([^"]+)"')
"""Citus reports a duplicate key met by a COPY into a distributed table as XX000 with
PostgreSQL's message, not as 23505; and it names the shard's constraint
(``email_lookup_pkey_102156``), which ``_SHARD_SUFFIX`` takes back to the table's."""


def unique_constraint(exc: psycopg.Error) -> str | None:
    """The unique constraint a write broke (as the table names it, on a Citus cluster
    too), or None when ``exc`` is not a duplicate key."""
    if isinstance(exc, pg_errors.UniqueViolation):
        name = exc.diag.constraint_name or ""
    elif exc.sqlstate == "XX000":
        match = _COPY_DUPLICATE.match(exc.diag.message_primary or "")
        if match is None:
            return None
        name = match[1]
    else:
        return None
    return _SHARD_SUFFIX.sub("", name)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (the driver's detail lines may quote values)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translated(exc: psycopg.Error, where: str = "", *, person_id: uuid.UUID | None = None,
               version: int | None = None) -> PeoplelogError:
    """The peoplelog error for a driver error. ``where`` (" at host:port/db") and the
    version being written (``person_id``, ``version``) only make the message precise."""
    subject = "" if person_id is None else f"person {person_id}"
    if exc.sqlstate == CHAIN_NOT_EXTENDED:
        what = f"version {version} of {subject}" if subject else "a version"
        return VersionConflict(
            f"{what} does not extend its chain (prev is not the current head)")
    constraint = unique_constraint(exc)
    if constraint is not None:
        if constraint == _EMAIL_CLAIMED:
            return EmailTaken("email is already registered to another person")
        if constraint in _VERSION_TAKEN:
            return VersionConflict(f"{subject} already has a version {version}" if subject
                                   else "that version of the person is already stored")
        return Conflict(f"conflicting write: {first_line(exc)}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigurationError(f"permission denied by PostgreSQL: {first_line(exc)}")
    if isinstance(exc, pg_errors.UndefinedTable):
        return ConfigurationError(
            f"the database is not initialised ({first_line(exc)}); run `peoplelog init`"
        )
    if isinstance(exc, pg_errors.QueryCanceled):
        return DatabaseError(f"query cancelled: {first_line(exc)}")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return DatabaseUnavailable(
            f"lost or failed connection to PostgreSQL{where}: {first_line(exc)}"
        )
    return DatabaseError(f"database error {exc.sqlstate or '?'}: {first_line(exc)}")


def connect_error(exc: psycopg.Error, where: str) -> PeoplelogError:
    """The peoplelog error for a connection that could not be opened to ``where``."""
    if isinstance(exc, psycopg.ProgrammingError):  # raised while parsing the URL
        return ConfigurationError(
            "invalid database URL: it could not be parsed (check PEOPLELOG_DATABASE_URL)")
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {first_line(exc)}")


@contextlib.contextmanager
def translate_errors(where: str = "", *, retryable: bool = False,
                     person_id: uuid.UUID | None = None,
                     version: int | None = None) -> Iterator[None]:
    """Turn driver errors raised inside into peoplelog errors; with ``retryable``,
    deadlocks and serialization failures pass through untouched (for a retry loop)."""
    try:
        yield
    except PeoplelogError:
        raise
    except psycopg.Error as exc:
        if retryable and isinstance(exc, RETRYABLE):
            raise
        raise translated(exc, where, person_id=person_id, version=version) from None
