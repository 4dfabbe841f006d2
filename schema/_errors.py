"""The one exception tree of peoplelog.

Every error carries the CLI exit code it maps to. Messages name the problem and the
object (person id, key id, field name) but never a plaintext email, name, password or key.
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
    "KeyNotFound",
    "KeyringError",
    "NotFound",
    "PeoplelogError",
    "PersonErased",
    "PersonNotFound",
    "VersionConflict",
    "VersionNotFound",
]


class PeoplelogError(Exception):
    """Root of every error peoplelog raises on purpose."""

    exit_code: ClassVar[int] = 5
    kind: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(PeoplelogError, ValueError):
    """A value given by the caller is not acceptable; nothing was written."""

    exit_code = 2
    kind = "invalid_input"


class ConfigurationError(PeoplelogError):
    """The environment (keyring, database URL, data directory) is not usable."""

    exit_code = 2
    kind = "configuration"


class KeyringError(ConfigurationError):
    """The keyring is missing, unreadable, malformed or too widely readable."""

    kind = "keyring"


class KeyNotFound(KeyringError):
    """A key id referenced by stored data is not in the keyring."""

    kind = "key_not_found"


class DatabaseUnavailable(ConfigurationError):
    """PostgreSQL could not be reached or refused the connection."""

    kind = "database_unavailable"


class DatabaseError(PeoplelogError):
    """PostgreSQL reported an error peoplelog did not expect."""

    kind = "database"


class NotFound(PeoplelogError):
    exit_code = 3
    kind = "not_found"


class PersonNotFound(NotFound):
    kind = "person_not_found"


class VersionNotFound(NotFound):
    kind = "version_not_found"


class Conflict(PeoplelogError):
    """The write lost against the current state of the ledger; nothing was written."""

    exit_code = 4
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

    exit_code = 2
    kind = "decryption_failed"


class ChainBroken(PeoplelogError):
    """Verification found damage in the ledger."""

    exit_code = 1
    kind = "chain_broken"
