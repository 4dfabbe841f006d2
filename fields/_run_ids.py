"""The person ids a bulk import run gives the persons it creates: a keyed permutation of
line numbers onto version 4 UUIDs, and its inverse."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["RunIds"]


class RunIds:
    """The ids of the persons one import run creates, one per file line, and the way back.

    A new person's id is its line number encrypted with a key made for this run and never
    stored (AES-128 of a 16-byte block: a fixed tag and the line), laid out as a UUID
    version 4: to anyone without the key, as random as ``uuid4``. The run can then tell a
    person it created (and from which line) from an id alone, so it need not remember the
    keys of its new rows. The six bits the UUID layout fixes are found again by trying
    their 64 values; the tag makes a false match a 2**-58 event. Its repr never shows the
    key.
    """

    TAG = b"plimport"
    """The first half of every block encrypted (the second is the line)."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes | None = None) -> None:
        """``key``: 16 bytes (a fresh random one by default; given only by tests)."""
        key = os.urandom(16) if key is None else key
        if len(key) != 16:
            raise ValueError("a run-id key is 16 bytes")
        # ECB on purpose: single, distinct blocks (a block-by-block permutation)
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305

    def __repr__(self) -> str:
        return "RunIds()"

    def of(self, lines: list[int]) -> list[bytes]:
        """The ids (16 bytes each) of the persons created from ``lines``."""
        if not lines:
            return []
        blocks = bytearray(self._cipher.encryptor().update(
            b"".join([self.TAG + line.to_bytes(8, "big") for line in lines])))
        blocks[6::16] = blocks[6::16].translate(_V4_VERSION)
        blocks[8::16] = blocks[8::16].translate(_V4_VARIANT)
        ids = bytes(blocks)
        return [ids[i:i + 16] for i in range(0, len(ids), 16)]

    def lines(self, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The line each of ``person_ids`` was created from by this run (others are left
        out)."""
        ids = list(dict.fromkeys(person_ids))
        if not ids:
            return {}
        raw = [person_id.bytes for person_id in ids]
        candidates = bytearray(b"".join([value * 64 for value in raw]))
        candidates[6::16] = b"".join([_VERSION_COLUMN[value[6] & 0x0F] for value in raw])
        candidates[8::16] = b"".join([_VARIANT_COLUMN[value[8] & 0x3F] for value in raw])
        plain = self._cipher.decryptor().update(candidates)
        found: dict[uuid.UUID, int] = {}
        tag = self.TAG
        for i, person_id in enumerate(ids):
            start, end = i * 1024, (i + 1) * 1024  # 64 candidate blocks of 16 bytes
            at = plain.find(tag, start, end)
            while at >= 0 and at % 16:
                at = plain.find(tag, at + 1, end)
            if at >= 0:
                found[person_id] = int.from_bytes(plain[at + 8:at + 16], "big")
        return found


_V4_VERSION = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_V4_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))
"""Byte 6 and byte 8 of a block made a version 4 UUID's (version nibble, variant bits)."""
_VERSION_COLUMN = [bytes((high << 4) | low for high in range(16) for _ in range(4))
                   for low in range(16)]
_VARIANT_COLUMN = [bytes((high << 6) | low for _ in range(16) for high in range(4))
                   for low in range(64)]
"""Bytes 6 and 8 of the 64 candidate blocks of an id, by the bits the id keeps there: every
value of the bits a version 4 UUID fixes (the version nibble, the two variant bits)."""
