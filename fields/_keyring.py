"""Named, versioned keys kept outside the database: a JSON file (mode 0600), or the same
document given by the deployment (``peoplelog.ledger.Settings`` says which)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from peoplelog.schema import KeyNotFound, KeyringError

__all__ = ["KEYRING_FORMAT", "Key", "KeyPurpose", "Keyring"]

KEYRING_FORMAT = "peoplelog-keyring/1"


class KeyPurpose(StrEnum):
    KEK = "kek"
    """Wraps per-person data keys."""
    BLIND_INDEX = "blind-index"
    """HMAC key of the email blind index."""
    CHECKPOINT_SIGNING = "checkpoint-signing"
    """Ed25519 seed that signs log checkpoints (optional until checkpoints are used)."""
    WRITER = "writer"
    """HMAC key that attests the versions the application writes (optional in older
    keyrings until they write: ``peoplelog keys add-writer-key``)."""


REQUIRED_PURPOSES = (KeyPurpose.KEK, KeyPurpose.BLIND_INDEX)


class Key:
    """A secret with a name and a purpose. Its repr never shows the secret."""

    __slots__ = ("created_at", "id", "purpose", "secret")

    def __init__(self, key_id: str, purpose: KeyPurpose, secret: bytes, created_at: str) -> None:
        self.id = key_id
        self.purpose = purpose
        self.secret = secret
        self.created_at = created_at

    def __repr__(self) -> str:
        return f"Key(id={self.id!r}, purpose={self.purpose.value!r})"

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of a label and the secret: identifies the key, reveals nothing of it."""
        return hashlib.sha256(b"peoplelog/key-fingerprint/1\x00" + self.secret).digest()


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    purpose: KeyPurpose
    secret: str = Field(repr=False)
    created_at: str

    @field_validator("secret")
    @classmethod
    def _secret_is_32_bytes(cls, value: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("secret is not base64url") from None
        if len(raw) != 32:
            raise ValueError(f"secret must be 32 bytes, got {len(raw)}")
        return value


def _location(loc: tuple[int | str, ...]) -> str:
    """Where a problem is, naming only the format's own fields: a name the document made up
    could be anything (a secret, a line break), so it is never repeated."""
    known = {*_KeyEntry.model_fields, *_KeyringFile.model_fields, "[key]",
             *(purpose.value for purpose in KeyPurpose)}
    return ".".join(str(p) if isinstance(p, int) or p in known else "(unknown name)"
                    for p in loc) or "document"


class _KeyringFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    active: dict[KeyPurpose, str]
    keys: list[_KeyEntry]


class Keyring:
    """The keys of one deployment. Never stored in the database.

    ``active`` names the key used for new writes per purpose; older keys stay to read
    what they protected.
    """

    def __init__(self, keys: Mapping[str, Key], active: Mapping[KeyPurpose, str],
                 source: str = "<memory>") -> None:
        self._keys = dict(keys)
        self._active = dict(active)
        self.source = source
        for purpose in KeyPurpose:
            key_id = self._active.get(purpose)
            if key_id is None:
                if purpose in REQUIRED_PURPOSES:
                    raise KeyringError(f"keyring {source}: no active {purpose.value} key")
                continue
            key = self._keys.get(key_id)
            if key is None:
                raise KeyNotFound(f"keyring {source}: the active {purpose.value} key is not "
                                  "in the keyring")
            if key.purpose is not purpose:
                raise KeyringError(f"keyring {source}: the key named active for "
                                   f"{purpose.value} is a {key.purpose.value} key")

    def __repr__(self) -> str:
        return f"Keyring(source={self.source!r}, keys={sorted(self._keys)!r})"

    def active_keys(self) -> list[Key]:
        return [self._keys[key_id] for key_id in self._active.values()]

    def active(self, purpose: KeyPurpose) -> Key:
        key_id = self._active.get(purpose)
        if key_id is None:
            command = ("add-writer-key" if purpose is KeyPurpose.WRITER
                       else "add-signing-key")
            raise KeyNotFound(
                f"keyring {self.source} has no {purpose.value} key "
                f"(run `peoplelog keys {command}`)"
            )
        return self._keys[key_id]

    def with_new_key(self, purpose: KeyPurpose) -> Keyring:
        """A copy with a fresh key for ``purpose``, made active; older keys are kept."""
        prefix = f"{purpose.value}-"
        numbers = [int(key_id[len(prefix):]) for key_id in self._keys
                   if key_id.startswith(prefix) and key_id[len(prefix):].isdigit()]
        key_id = f"{prefix}{max(numbers, default=0) + 1}"  # above every one kept: a removed
        # (retired) key's name is never reused while a newer one is kept
        now = datetime.now(UTC).isoformat(timespec="seconds")
        keys = {**self._keys, key_id: Key(key_id, purpose, secrets.token_bytes(32), now)}
        return Keyring(keys, {**self._active, purpose: key_id}, self.source)

    def without(self, key_id: str) -> Keyring:
        """A copy without the key ``key_id`` (never an active one): once the file is
        replaced, what only it protected is unreadable for good."""
        if key_id in self._active.values():
            raise KeyringError(f"keyring {self.source}: an active key cannot be removed")
        return Keyring({k: v for k, v in self._keys.items() if k != key_id}, self._active,
                       self.source)

    def replace_file(self, path: str | os.PathLike[str]) -> None:
        """Atomically replace the keyring file at ``path`` (mode 0600)."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def all_of(self, purpose: KeyPurpose) -> list[Key]:
        """Every key of ``purpose``, the active one and older ones (to check what they
        protected)."""
        return [key for key in self._keys.values() if key.purpose is purpose]

    def find(self, key_id: str) -> Key | None:
        return self._keys.get(key_id)

    def get(self, key_id: str, purpose: KeyPurpose) -> Key:
        key = self._keys.get(key_id)
        if key is None or key.purpose is not purpose:
            raise KeyNotFound(
                f"{purpose.value} key {key_id!r} is not in the keyring {self.source}"
            )
        return key

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh keyring with one key per purpose."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        keys = {
            f"{purpose.value}-1": Key(f"{purpose.value}-1", purpose, secrets.token_bytes(32), now)
            for purpose in KeyPurpose
        }
        return cls(keys, {purpose: f"{purpose.value}-1" for purpose in KeyPurpose})

    def to_json(self) -> str:
        document = {
            "format": KEYRING_FORMAT,
            "active": {purpose.value: key_id for purpose, key_id in self._active.items()},
            "keys": [
                {
                    "id": key.id,
                    "purpose": key.purpose.value,
                    "secret": base64.urlsafe_b64encode(key.secret).decode().rstrip("="),
                    "created_at": key.created_at,
                }
                for key in self._keys.values()
            ],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<memory>") -> Keyring:
        try:
            parsed = _KeyringFile.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_location(err['loc'])}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise KeyringError(f"keyring {source} is malformed: {problems}") from None
        if parsed.format != KEYRING_FORMAT:
            raise KeyringError(f"keyring {source} is not in the format {KEYRING_FORMAT!r}")
        keys: dict[str, Key] = {}
        for entry in parsed.keys:
            if entry.id in keys:
                raise KeyringError(f"keyring {source} has a key id twice")
            secret = base64.urlsafe_b64decode(entry.secret + "=" * (-len(entry.secret) % 4))
            keys[entry.id] = Key(entry.id, entry.purpose, secret, entry.created_at)
        return cls(keys, parsed.active, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring file, refusing one that group or others can read.

        A symbolic link (as a Kubernetes secret mount makes) is followed: the file it leads
        to is checked, once opened, so what is read is what was checked."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise KeyringError(
                f"keyring {path} does not exist (run `peoplelog init` to create one)"
            ) from None
        except OSError as exc:
            raise KeyringError(f"keyring {path} cannot be opened: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise KeyringError(f"keyring {path} is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            if mode & 0o077:
                raise KeyringError(
                    f"keyring {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
            text = handle.read()
        return cls.from_json(text, str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a new keyring file with mode 0600; never overwrite an existing one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyringError(f"keyring {path} already exists; refusing to overwrite") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json())
