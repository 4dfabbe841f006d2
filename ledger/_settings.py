"""Where a deployment's ledger and keys are: the one place the environment is read.

Every entry point (the CLI's commands, ``connect()``, the bench) takes its database URL,
data directory and keyring from a ``Settings``; nothing else reads these variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from peoplelog.fields import Keyring

__all__ = ["Settings"]

_HOME = "PEOPLELOG_HOME"
_DATABASE_URL = ("PEOPLELOG_DATABASE_URL", "DATABASE_URL")
_KEYRING_PATH = "PEOPLELOG_KEYRING"
_KEYRING_JSON = "PEOPLELOG_KEYRING_JSON"


@dataclass(frozen=True)
class Settings:
    """A deployment's configuration: ``home`` (embedded database and default keyring
    file), ``database_url`` (None: the embedded PostgreSQL under ``home``), and the
    keyring, given either as a file (``keyring_path``, default ``home/keyring.json``) or
    as the document itself (``keyring_json``, which wins). Its repr never shows the
    keyring document."""

    home: Path = field(default_factory=lambda: Path(".peoplelog"))
    database_url: str | None = field(default=None, repr=False)
    keyring_path: Path | None = None
    keyring_json: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser())
        if self.keyring_path is None:
            object.__setattr__(self, "keyring_path", self.home / "keyring.json")
        else:
            object.__setattr__(self, "keyring_path", Path(self.keyring_path).expanduser())

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Settings:
        """``PEOPLELOG_HOME`` (default ``./.peoplelog``), ``PEOPLELOG_DATABASE_URL`` (else
        ``DATABASE_URL``), ``PEOPLELOG_KEYRING`` (a file) and ``PEOPLELOG_KEYRING_JSON``
        (the keyring itself; wins over the file)."""
        env = os.environ if env is None else env
        home = Path(env.get(_HOME) or ".peoplelog")
        url = next((env[name] for name in _DATABASE_URL if env.get(name)), None)
        path = env.get(_KEYRING_PATH)
        return cls(home=home, database_url=url, keyring_path=Path(path) if path else None,
                   keyring_json=env.get(_KEYRING_JSON) or None)

    def with_database(self, database_url: str | None) -> Settings:
        """These settings with another database URL (None: the embedded server)."""
        return Settings(self.home, database_url, self.keyring_path, self.keyring_json)

    @property
    def keyring_file(self) -> Path:
        """The keyring file (used unless the keyring is given as a document)."""
        assert self.keyring_path is not None  # set by __post_init__
        return self.keyring_path

    @property
    def keyring_source(self) -> str:
        """Where the keyring comes from, for messages: the variable or the file."""
        return f"${_KEYRING_JSON}" if self.keyring_json else str(self.keyring_file)

    @property
    def keyring_in_file(self) -> bool:
        """True when the keyring is a file (not given as a document in the environment)."""
        return not self.keyring_json

    def keyring(self) -> Keyring:
        """The keyring; ``KeyringError`` when it is missing, unreadable or malformed."""
        if self.keyring_json:
            return Keyring.from_json(self.keyring_json, f"${_KEYRING_JSON}")
        return Keyring.load(self.keyring_file)

    def keyring_if_present(self) -> Keyring | None:
        """The keyring, or None when none is configured and the file is absent. One that
        exists but is unreadable, malformed or too open is an error, never a silent
        fall-back to no keys."""
        if self.keyring_json:
            return self.keyring()
        path = self.keyring_file
        if not (path.exists() or path.is_symlink()):
            return None
        return Keyring.load(path)
