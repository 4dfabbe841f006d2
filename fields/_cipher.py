"""Per-person data keys and the field ciphertext format.

Field ciphertext (all integers big-endian)::

    0x01 | 0x01 | key_version:u32 | nonce:12 | AES-256-GCM(padded plaintext) + tag:16

byte 0 is the format version, byte 1 the algorithm (AES-256-GCM), ``key_version`` names the
person's data key. The associated data binds the ciphertext to its header, its person and
its field, so a ciphertext copied to another person or column does not decrypt. Plaintext
is padded (0x80 then zeros) to a multiple of 32 bytes so lengths leak only coarsely.

Wrapped data key::

    0x01 | 0x01 | nonce:12 | AES-256-GCM(data key) + tag:16

under the key-encryption key named in ``person_keys.kek_id``.
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from peoplelog.schema import DecryptionFailed

from ._keyring import Key, KeyPurpose
from ._speedups import native_enabled

__all__ = ["FIELDS", "DataKey", "NewPersonSealer"]

FIELDS = ("email", "name", "password", "client", "mail")
"""The fields a data key encrypts: a version's three; ``client``, what tells one of the
person's sessions or access tokens apart (label or name, IP, user agent); ``mail``, a
message queued for them (recipient, subject, body)."""
_VERSION = 0x01
_AES_256_GCM = 0x01
_FIELD_HEADER = struct.Struct(">BBI")
_NONCE = 12
_TAG = 16
_PAD_BLOCK = 32
_FIELD_AD = b"peoplelog/field/1\x00"
_WRAP_AD = b"peoplelog/data-key/1\x00"


def _pad(data: bytes) -> bytes:
    data += b"\x80"
    return data + b"\x00" * (-len(data) % _PAD_BLOCK)


def _unpad(data: bytes) -> bytes:
    end = data.rfind(b"\x80")
    if end < 0 or data[end + 1 :].strip(b"\x00"):
        raise ValueError("bad padding")
    return data[:end]


class DataKey:
    """One person's data key. Its repr never shows the key."""

    __slots__ = ("_aead", "person_id", "version")

    def __init__(self, person_id: uuid.UUID, version: int, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a data key is 32 bytes")
        self.person_id = person_id
        self.version = version
        self._aead = AESGCM(secret)

    def __repr__(self) -> str:
        return f"DataKey(person_id={self.person_id}, version={self.version})"

    @classmethod
    def generate(cls, person_id: uuid.UUID, version: int = 1) -> tuple[DataKey, bytes]:
        """A new random data key, and its secret for wrapping."""
        secret = AESGCM.generate_key(bit_length=256)
        return cls(person_id, version, secret), secret

    def _ad(self, header: bytes, field: str) -> bytes:
        return _FIELD_AD + header + self.person_id.bytes + field.encode("ascii")

    def encrypt(self, field: str, plaintext: bytes) -> bytes:
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}")
        header = _FIELD_HEADER.pack(_VERSION, _AES_256_GCM, self.version)
        nonce = os.urandom(_NONCE)
        return header + nonce + self._aead.encrypt(nonce, _pad(plaintext), self._ad(header, field))

    def decrypt(self, field: str, blob: bytes) -> bytes:
        if len(blob) < _FIELD_HEADER.size + _NONCE + _TAG:
            raise self._failure(field)
        version, algorithm, key_version = _FIELD_HEADER.unpack_from(blob)
        if version != _VERSION or algorithm != _AES_256_GCM or key_version != self.version:
            raise self._failure(field)
        header = blob[: _FIELD_HEADER.size]
        nonce = blob[_FIELD_HEADER.size : _FIELD_HEADER.size + _NONCE]
        try:
            padded = self._aead.decrypt(
                nonce, blob[_FIELD_HEADER.size + _NONCE :], self._ad(header, field)
            )
            return _unpad(padded)
        except (InvalidTag, ValueError):
            raise self._failure(field) from None

    def _failure(self, field: str) -> DecryptionFailed:
        """One opaque error for every bad ciphertext, naming only the field and person."""
        return DecryptionFailed(
            f"{field} of person {self.person_id} could not be decrypted "
            "(damaged, truncated or moved ciphertext, or the wrong key)"
        )

    @staticmethod
    def key_version_of(blob: bytes) -> int:
        """The data-key version a field ciphertext names (no key needed)."""
        if len(blob) < _FIELD_HEADER.size:
            raise DecryptionFailed("ciphertext is truncated: no header")
        return int(_FIELD_HEADER.unpack_from(blob)[2])

    @staticmethod
    def wrap(person_id: uuid.UUID, version: int, secret: bytes, kek: Key) -> bytes:
        """Encrypt a data key under a key-encryption key."""
        if kek.purpose is not KeyPurpose.KEK:
            raise ValueError("wrapping needs a kek")
        nonce = os.urandom(_NONCE)
        ad = _wrap_ad(kek.id, person_id, version)
        return bytes([_VERSION, _AES_256_GCM]) + nonce + AESGCM(kek.secret).encrypt(
            nonce, secret, ad
        )

    @classmethod
    def unwrap(cls, person_id: uuid.UUID, version: int, blob: bytes, kek: Key) -> DataKey:
        return cls(person_id, version, _unwrapped(person_id, version, blob, kek))


    @classmethod
    def rewrap(cls, person_id: uuid.UUID, version: int, blob: bytes, old: Key,
               new: Key) -> bytes:
        """The data key wrapped under ``old``, wrapped again under ``new`` (a KEK
        rotation); ``DecryptionFailed`` when it does not unwrap. The key itself never
        leaves this module."""
        return cls.wrap(person_id, version, _unwrapped(person_id, version, blob, old), new)


def _unwrapped(person_id: uuid.UUID, version: int, blob: bytes, kek: Key) -> bytes:
    """The secret of a wrapped data key (``DecryptionFailed``: wrong KEK or damage)."""
    if len(blob) != 2 + _NONCE + 32 + _TAG or blob[0] != _VERSION or blob[1] != _AES_256_GCM:
        raise _unwrap_failure(person_id, version, kek)
    try:
        return AESGCM(kek.secret).decrypt(
            blob[2 : 2 + _NONCE], blob[2 + _NONCE :], _wrap_ad(kek.id, person_id, version))
    except InvalidTag:
        raise _unwrap_failure(person_id, version, kek) from None


def _unwrap_failure(person_id: uuid.UUID, version: int, kek: Key) -> DecryptionFailed:
    return DecryptionFailed(
        f"data key {version} of person {person_id} could not be unwrapped with "
        f"key-encryption key {kek.id!r} (wrong key or damaged wrapped key)"
    )


def _wrap_ad(kek_id: str, person_id: uuid.UUID, version: int) -> bytes:
    return (_WRAP_AD + kek_id.encode("ascii") + b"\x00" + person_id.bytes
            + struct.pack(">I", version))


class NewPersonSealer:
    """Version-1 data keys and field ciphertexts for many new persons at once (bulk import).

    The same formats as ``DataKey.generate``, ``encrypt`` and ``wrap``, with the per-call
    work hoisted: the KEK cipher is made once and randomness is given by the caller (drawn
    once per batch). ``seal`` runs in C (``fields._native``, OpenSSL) when that is built and
    not switched off (``native_enabled``), else in Python; both give the same bytes. Its repr
    never shows a key.
    """

    RANDOM = 32 + 4 * _NONCE
    """Bytes of randomness ``seal`` takes per person: the data key and four nonces (email,
    name, password, wrapping)."""

    __slots__ = ("_kek", "_native", "_wrap_ad", "kek_id")

    def __init__(self, kek: Key, *, native: bool = True) -> None:
        if kek.purpose is not KeyPurpose.KEK:
            raise ValueError("sealing needs a kek")
        self.kek_id = kek.id
        self._kek = AESGCM(kek.secret)
        self._wrap_ad = _WRAP_AD + kek.id.encode("ascii") + b"\x00"
        module = _native_module() if native else None
        self._native = None if module is None else module.Sealer(kek.secret,
                                                                  kek.id.encode("ascii"))

    def __repr__(self) -> str:
        return f"NewPersonSealer(kek_id={self.kek_id!r})"

    @property
    def native(self) -> bool:
        """True when ``seal`` runs in C."""
        return self._native is not None

    def seal(self, person_id: bytes, random: bytes, email: bytes, name: bytes,
             password: bytes | None) -> tuple[bytes, bytes, bytes | None, bytes]:
        """``(email, name, password, wrapped key)`` of a person (16 raw id bytes) whose data
        key and nonces are ``random`` (``RANDOM`` bytes)."""
        if self._native is not None:
            sealed: tuple[bytes, bytes, bytes | None, bytes] = self._native.seal(
                person_id, random, email, name, password)
            return sealed
        if len(random) < self.RANDOM or len(person_id) != 16:
            raise ValueError("person_id is 16 bytes, random at least RANDOM")
        secret, n1, n2, n3 = random[:32], random[32:44], random[44:56], random[56:68]
        aead = AESGCM(secret)
        ad = _FIELD_AD + _HEADER_1 + person_id
        email_ct = _HEADER_1 + n1 + aead.encrypt(n1, _pad(email), ad + b"email")
        name_ct = _HEADER_1 + n2 + aead.encrypt(n2, _pad(name), ad + b"name")
        password_ct = None
        if password is not None:
            password_ct = _HEADER_1 + n3 + aead.encrypt(n3, _pad(password), ad + b"password")
        n4 = random[68:80]
        wrapped = _WRAP_HEADER + n4 + self._kek.encrypt(
            n4, secret, self._wrap_ad + person_id + _VERSION_1)
        return email_ct, name_ct, password_ct, wrapped


def _native_module() -> Any:
    """``fields._native`` when built and not switched off (``native_enabled``)."""
    if not native_enabled():
        return None
    try:
        from . import _native  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return None
    return _native


_HEADER_1 = _FIELD_HEADER.pack(_VERSION, _AES_256_GCM, 1)
_WRAP_HEADER = bytes((_VERSION, _AES_256_GCM))
_VERSION_1 = struct.pack(">I", 1)
