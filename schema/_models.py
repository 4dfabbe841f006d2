"""What a version is, and the shapes the ledger hands back to callers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FORMAT_VERSION",
    "HistoryEntry",
    "Op",
    "PersonView",
    "VersionRecord",
    "VersionRef",
]

FORMAT_VERSION = 1
"""Version of the envelope format; part of every envelope, so of every CID."""


class Op(StrEnum):
    """What a version did to the person."""

    CREATED = "created"
    UPDATED = "updated"
    EMAIL_VERIFIED = "email_verified"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an op name
    ERASED = "erased"
    RESTORED = "restored"
    """The fields of the newest version the application wrote, written back over versions
    it did not write (no seal of its writer key)."""
    KEY_ROTATED = "key_rotated"
    """The same fields, encrypted under the person's next data key (a key rotation)."""


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version as stored: the envelope fields, ciphertexts at rest.

    Timestamps are integer microseconds since the Unix epoch (UTC); byte fields are the
    ciphertexts exactly as stored. Nothing here is plaintext personal data.
    """

    person_id: uuid.UUID
    version: int
    prev: str | None
    op: str
    recorded_at: int
    actor: str | None
    reason: str | None
    email: bytes | None
    name: bytes | None
    password: bytes | None
    verified_at: int | None
    format: int = FORMAT_VERSION

    def __repr__(self) -> str:
        return (
            f"VersionRecord(person_id={self.person_id}, version={self.version}, "
            f"op={self.op!r}, prev={self.prev!r})"
        )


class VersionRef(BaseModel):
    """Where a write landed."""

    model_config = ConfigDict(frozen=True)

    person_id: uuid.UUID
    version: int
    cid: str
    written: bool = True
    """False when the write changed nothing or re-sent a version already stored."""


class PersonView(BaseModel):
    """A person as of one version, decrypted with the keyring."""

    model_config = ConfigDict(frozen=True)

    person_id: uuid.UUID
    version: int
    cid: str
    prev: str | None
    op: str
    email: str | None = Field(repr=False)
    name: str | None = Field(repr=False)
    has_password: bool
    verified_at: datetime | None
    recorded_at: datetime
    created_at: datetime
    erased: bool


class HistoryEntry(BaseModel):
    """One line of a person's history: what happened, when, by whom and why."""

    model_config = ConfigDict(frozen=True)

    version: int
    cid: str
    prev: str | None
    op: str
    recorded_at: datetime
    actor: str | None
    reason: str | None
    changed: list[str]
    # Filled by the forensic history (projections.history_with_values), None otherwise:
    values: dict[str, str | None] | None = Field(default=None, repr=False)
    """Decrypted new values of the fields this version changed (keys present, person not
    erased); a password is never shown, only named in ``changed``."""
    facts: dict[str, str] | None = None
    """Per field, what the ciphertexts tell without keys: changed, unchanged or absent."""
    erased: bool | None = None
    """The person was erased: data keys shredded, so no value can be decrypted."""
