"""HMAC-SHA256 under one key: the one implementation of keyed hashing in peoplelog (the
email blind index, the writer's attestation of a version)."""

from __future__ import annotations

import hashlib

__all__ = ["KeyedHash"]

_BLOCK = 64
"""SHA-256's block size in bytes: HMAC pads the key to it."""


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) of messages under one secret. HMAC's two keyed SHA-256 states
    are made once and copied for each message, so the key's padded blocks are hashed once,
    not per call (and with less overhead per call than ``hmac.HMAC.copy``: a bulk import
    makes one or two per row). Its repr never shows the key."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        block = secret if len(secret) <= _BLOCK else hashlib.sha256(secret).digest()
        block = block.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def __repr__(self) -> str:
        return "KeyedHash()"

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
