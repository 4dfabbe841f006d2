"""The one exception tree of peoplelog.

Every error has a stable ``kind`` code (a class attribute, the same in every release):
programs branch on the class or the kind, never on the message. How a kind is presented
(the CLI's exit codes, later HTTP statuses) is decided by that floor, not here. Messages
name the problem and the object (person id, key id, field name) but never a plaintext
email, name, password or key.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ChainBroken",
    "ConfigurationError",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "DecryptionFailed",
    "EmailTaken",
    "InvalidInput",
    "InvalidToken",
    "KeyNotFound",
    "KeyringError",
    "LoginFailed",
    "NotFound",
    "NotPermitted",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "ProjectionDamaged",
    "RateLimited",
    "Unattested",
    "Unauthenticated",
    "VersionConflict",
    "VersionNotFound",
]


class PeoplelogError(Exception):
    """Root of every error peoplelog raises on purpose."""

    kind: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(PeoplelogError, ValueError):
    """A value given by the caller is not acceptable; nothing was written."""

    kind = "invalid_input"


class ConfigurationError(PeoplelogError):
    """The environment (keyring, database URL, data directory) is not usable."""

    kind = "configuration"


class KeyringError(ConfigurationError):
    """The keyring is missing, unreadable, malformed or too widely readable."""

    kind = "keyring"


class KeyNotFound(KeyringError):
    """A key id referenced by stored data is not in the keyring."""

    kind = "key_not_found"


class DatabaseError(PeoplelogError):
    """PostgreSQL reported an error peoplelog did not expect."""

    kind = "database"


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached, refused the connection or dropped it (an outage,
    not a mistake in the caller's configuration)."""

    kind = "database_unavailable"


class NotFound(PeoplelogError):
    """What the caller named does not exist."""

    kind = "not_found"


class PersonNotFound(NotFound):
    """No person has this id (or, for a lookup, this email)."""

    kind = "person_not_found"


class VersionNotFound(NotFound):
    """The person has no such version."""

    kind = "version_not_found"


class Conflict(PeoplelogError):
    """The write lost against the current state of the ledger; nothing was written."""

    kind = "conflict"


class VersionConflict(Conflict):
    """The head moved past the version the caller expected (optimistic concurrency)."""

    kind = "version_conflict"


class EmailTaken(Conflict):
    """Another person currently claims this email address."""

    kind = "email_taken"


class PersonErased(Conflict):
    """The person was erased; no further versions can be written or decrypted."""

    kind = "person_erased"


class DecryptionFailed(PeoplelogError):
    """A ciphertext did not decrypt: wrong key, damaged or moved ciphertext.

    One opaque error for every bad ciphertext, as Fernet does; the message names the
    field and owner, never the bytes.
    """

    kind = "decryption_failed"


class ProjectionDamaged(PeoplelogError):
    """A table derived from the ledger (``people_latest``, ``email_lookup``) disagrees with
    the person's chain head, so a read that decides identity or login refused to trust it
    (it fails closed). ``peoplelog projections check`` names the damage; ``projections
    rebuild`` repairs it."""

    kind = "projection_damaged"


class Unattested(PeoplelogError):
    """A person's newest version carries no valid seal of the application's writer key: it
    was written with the database login alone. Reads that decide identity or login, and
    writes that would build on it, refuse it (``peoplelog person restore`` writes the last
    attested state back)."""

    kind = "unattested_version"


class ChainBroken(PeoplelogError):
    """Verification found damage in the ledger."""

    kind = "chain_broken"


class Unauthenticated(PeoplelogError):
    """The caller could not be authenticated. One opaque error whatever the cause, so it
    tells an attacker nothing about which part was wrong."""

    kind = "unauthenticated"


class LoginFailed(Unauthenticated):
    """A login was refused: unknown or invalid email, wrong password, erased person or
    locked account all look the same."""

    kind = "login_failed"


class InvalidToken(Unauthenticated):
    """A token is wrong, malformed, expired, used, revoked, ended by a credential change,
    or of another kind (like Fernet's ``InvalidToken``: one error for every bad token)."""

    kind = "invalid_token"


class NotPermitted(PeoplelogError):
    """The scope may not do this: another person's sessions, or a change that needs a fresh
    login (``Scope.sudo``)."""

    kind = "not_permitted"


class RateLimited(PeoplelogError):
    """Too many requests of this kind from this client, or for this address, within the
    window; nothing was done. Counted whether or not the address is registered."""

    kind = "rate_limited"
