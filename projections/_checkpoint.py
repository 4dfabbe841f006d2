"""Signed checkpoints in the C2SP ``tlog-checkpoint`` / ``signed-note`` text format.

::

    <origin>
    <tree size>
    <base64 root hash>

    — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>

The signature covers the note body (the first three lines, each ending in a newline). The
key hash is the first 4 bytes of ``SHA-256(key name || "\\n" || 0x01 || public key)``; a
verifier key is written ``<name>+<key hash hex>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from peoplelog.fields import Key, KeyPurpose
from peoplelog.schema import InvalidInput

__all__ = [
    "Checkpoint",
    "CheckpointSigner",
    "TrustedKey",
    "VerifierKey",
    "VerifierKeys",
    "parse_checkpoint",
]

_ED25519 = 0x01
_NAME = re.compile(r"^[^\s+]+$")
_MAX_NOTE = 64 * 1024


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ED25519]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A public key that checks checkpoint signatures."""

    name: str
    public: bytes

    @property
    def key_hash(self) -> bytes:
        return _key_hash(self.name, self.public)

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _NAME.match(parts[0]):
            raise InvalidInput("verifier key must look like NAME+HASH+BASE64")
        name, hash_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            key_hash = bytes.fromhex(hash_hex)
        except (binascii.Error, ValueError):
            raise InvalidInput("verifier key is not valid hex/base64") from None
        if len(raw) != 33 or raw[0] != _ED25519:
            raise InvalidInput("verifier key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if key.key_hash != key_hash:
            raise InvalidInput("verifier key hash does not match its name and key")
        return key

    def verify(self, body: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, body)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class VerifierKeys:
    """Several trusted verifier keys, as after a signing-key rotation: a checkpoint signed
    by any one of them counts as signed."""

    keys: tuple[VerifierKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise InvalidInput("give at least one verifier key")

    @property
    def name(self) -> str:
        return " or ".join(dict.fromkeys(key.name for key in self.keys))

    @classmethod
    def of(cls, keys: Sequence[VerifierKey]) -> TrustedKey:
        """One key as itself, several as a set."""
        unique = tuple(dict.fromkeys(keys))
        return unique[0] if len(unique) == 1 else cls(unique)


TrustedKey = VerifierKey | VerifierKeys
"""What verification accepts as the signer of checkpoints."""


class CheckpointSigner:
    """Signs checkpoints with the keyring's checkpoint-signing key. Repr hides the key."""

    def __init__(self, key: Key) -> None:
        if key.purpose is not KeyPurpose.CHECKPOINT_SIGNING:
            raise ValueError("a checkpoint signer needs a checkpoint-signing key")
        self._private = Ed25519PrivateKey.from_private_bytes(key.secret)
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = VerifierKey(key.id, public)

    def __repr__(self) -> str:
        return f"CheckpointSigner(key={self.verifier.name!r})"

    def sign(self, origin: str, size: int, root: bytes) -> Checkpoint:
        body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
        signature = self._private.sign(body.encode())
        line = (f"\u2014 {self.verifier.name} "
                f"{base64.b64encode(self.verifier.key_hash + signature).decode()}\n")
        return parse_checkpoint(body + "\n" + line)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]
    """(key name, key hash, signature) for each signature line."""

    @property
    def text(self) -> str:
        lines = "".join(
            f"\u2014 {name} {base64.b64encode(key_hash + sig).decode()}\n"
            for name, key_hash, sig in self.signatures
        )
        return f"{self.body}\n{lines}"

    def signed_by(self, key: TrustedKey) -> bool:
        """True when a signature line verifies under ``key`` (any one of a key set)."""
        body = self.body.encode()
        keys = key.keys if isinstance(key, VerifierKeys) else (key,)
        return any(
            name == k.name and key_hash == k.key_hash and k.verify(body, sig)
            for name, key_hash, sig in self.signatures for k in keys
        )


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a signed checkpoint; signatures are parsed, not verified."""
    if len(text) > _MAX_NOTE:
        raise InvalidInput("checkpoint is too large")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("checkpoint is not valid UTF-8") from None
    if "\r" in text or "\x00" in text:
        raise InvalidInput("checkpoint contains CR or NUL characters")
    body, sep, rest = text.partition("\n\n")
    if not sep:
        raise InvalidInput("checkpoint has no signature block (no blank line)")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise InvalidInput("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin or not size_text.isascii() or not size_text.isdigit() or (
        size_text != "0" and size_text.startswith("0")
    ) or len(size_text) > 20 or int(size_text) >= 2**64:
        raise InvalidInput("checkpoint origin is empty or its size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise InvalidInput("checkpoint root is not base64") from None
    if len(root) != 32:
        raise InvalidInput("checkpoint root is not a SHA-256 hash")
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in rest.rstrip("\n").split("\n") if rest.strip() else []:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or not _NAME.match(parts[1]):
            raise InvalidInput("checkpoint signature line is malformed")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidInput("checkpoint signature is not base64") from None
        if len(raw) != 4 + 64:
            raise InvalidInput("checkpoint signature is not an Ed25519 signature")
        signatures.append((parts[1], raw[:4], raw[4:]))
    if not signatures:
        raise InvalidInput("checkpoint has no signature")
    return Checkpoint(origin, int(size_text), root, body, tuple(signatures))
