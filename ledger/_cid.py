"""Canonical bytes of a version and its CID.

Canonical bytes are the RFC 8785 (JCS) serialisation of the envelope; the CID is CIDv1,
multicodec raw (0x55), multihash sha2-256, printed in multibase base32 lower-case. The hot
path works on bytes (hashlib plus a fixed 4-byte prefix); ``multiformats`` parses CIDs that
come from outside.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import rfc8785
from multiformats import CID

from peoplelog.fields import native_enabled
from peoplelog.schema import InvalidInput, VersionRecord

__all__ = [
    "CID_PREFIX",
    "b64url",
    "canonical_json",
    "cid_bytes",
    "cid_from_digest",
    "cid_of",
    "envelope",
    "envelope_bytes",
    "envelope_text",
    "native_envelope_cid",
    "parse_cid",
    "record_of_envelope",
    "version_cid",
]

CID_PREFIX = b"\x01\x55\x12\x20"
"""CIDv1 (0x01), raw (0x55), sha2-256 (0x12), 32-byte digest (0x20)."""
_SAFE = 2**53 - 1
_CID_TEXT = re.compile(r"^bafkrei[a-z2-7]{52}$")


_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TRIPLES = tuple(a + b + c for a in _ALPHABET for b in _ALPHABET for c in _ALPHABET)
_SHIFTS = tuple(range(285, -1, -15))


def cid_from_digest(digest: bytes) -> str:
    """CID text of a sha2-256 digest: ``"b" + base32lower(prefix + digest)``, unpadded.

    The 36 bytes are read as one integer and cut into 15-bit groups of three base32
    digits: exact RFC 4648 (no padding), several times faster than ``base64.b32encode``.
    """
    n = int.from_bytes(CID_PREFIX + digest, "big") << 12
    return "b" + "".join([_TRIPLES[(n >> s) & 32767] for s in _SHIFTS])[:58]


_TO_PYTHON_DIGITS = str.maketrans(_ALPHABET, "0123456789abcdefghijklmnopqrstuv")


def cid_bytes(cid: str) -> bytes:
    """The 36 binary bytes of a ``bafkrei...`` CID (inverse of ``cid_from_digest``).

    RFC 4648 base32 digits are mapped onto Python's base-32 digits, so ``int(text, 32)``
    decodes in C; 58 digits carry 290 bits, the last 2 of which are padding.
    """
    if len(cid) != 59 or not _CID_TEXT.match(cid):
        raise InvalidInput("not a peoplelog CID ('bafkrei' + 52 base32 characters)")
    n = int(cid[1:].translate(_TO_PYTHON_DIGITS), 32)
    raw = (n >> 2).to_bytes(36, "big")
    if n & 3 or raw[:4] != CID_PREFIX:
        raise InvalidInput("not a canonical peoplelog CID (padding bits or prefix differ)")
    return raw


def cid_of(data: bytes) -> str:
    """The CID of ``data``: ``"b" + base32lower(prefix + sha256(data))``, unpadded."""
    return cid_from_digest(hashlib.sha256(data).digest())


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(value: bytes) -> str:
    """``value`` as unpadded base64url text: how an envelope writes its byte fields."""
    return binascii.b2a_base64(value, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _b64(value: bytes | None) -> str | None:
    return None if value is None else b64url(value)


def envelope(record: VersionRecord) -> dict[str, Any]:
    """The envelope of a version as a JSON-ready mapping (bytes as unpadded base64url)."""
    return {
        "format": record.format,
        "person_id": str(record.person_id),
        "version": record.version,
        "prev": record.prev,
        "op": record.op,
        "recorded_at": record.recorded_at,
        "actor": record.actor,
        "reason": record.reason,
        "email": _b64(record.email),
        "name": _b64(record.name),
        "password": _b64(record.password),
        "verified_at": record.verified_at,
    }


_ENVELOPE_KEYS = frozenset({
    "format", "person_id", "version", "prev", "op", "recorded_at", "actor", "reason", "email",
    "name", "password", "verified_at"})
_string = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # type: ignore[attr-defined]
_TEMPLATE = (
    '{"actor":%s,"email":%s,"format":%d,"name":%s,"op":%s,"password":%s,"person_id":"%s",'
    '"prev":%s,"reason":%s,"recorded_at":%d,"verified_at":%s,"version":%d}'
)


def _text_or_null(value: str | None) -> str:
    return "null" if value is None else _string(value)


def envelope_text(*, person_id: str, version: int, prev: str | None, op: str,
                  recorded_at: int, actor: str | None, reason: str | None,
                  email: str | None, name: str | None, password: str | None,
                  verified_at: int | None, format: int) -> str:
    """RFC 8785 text of an envelope whose byte fields are already base64url text.

    Members are written in JCS order (keys sorted by UTF-16 code unit; all ASCII here),
    strings escaped as JCS requires (the standard library's escaper without ``ensure_ascii``
    does exactly that), integers as plain decimals. The test suite checks this against an
    independent JCS implementation on arbitrary records.
    """
    for value in (version, recorded_at, format, verified_at):
        if value is not None and (type(value) is not int or not -_SAFE <= value <= _SAFE):
            raise InvalidInput("envelope integers must be exact (|n| < 2**53)")
    return _TEMPLATE % (
        _text_or_null(actor), _text_or_null(email), format, _text_or_null(name),
        _string(op), _text_or_null(password), person_id, _text_or_null(prev),
        _text_or_null(reason), recorded_at,
        "null" if verified_at is None else str(verified_at), version,
    )


def envelope_bytes(record: VersionRecord) -> bytes:
    """RFC 8785 bytes of the envelope of ``record``."""
    return envelope_text(
        person_id=str(record.person_id), version=record.version, prev=record.prev,
        op=record.op, recorded_at=record.recorded_at, actor=record.actor,
        reason=record.reason, email=_b64(record.email), name=_b64(record.name),
        password=_b64(record.password), verified_at=record.verified_at, format=record.format,
    ).encode("utf-8")


def _unb64(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("envelope byte fields must be base64url text or null")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise InvalidInput("envelope byte fields must be base64url text") from None
    if _b64(raw) != value:
        raise InvalidInput("envelope byte fields must be canonical unpadded base64url")
    return raw


def _member(document: dict[str, Any], name: str, kind: type, *, optional: bool) -> Any:
    value = document[name]
    if (value is None and optional) or type(value) is kind:
        return value
    raise InvalidInput(f"not a peoplelog envelope ({name} has the wrong type)")


def record_of_envelope(document: Any) -> VersionRecord:
    """The version an envelope mapping describes (inverse of ``envelope``)."""
    if not isinstance(document, dict) or set(document) != _ENVELOPE_KEYS:
        raise InvalidInput("not a peoplelog envelope (members differ)")
    try:
        person_id = uuid.UUID(_member(document, "person_id", str, optional=False))
    except ValueError:
        raise InvalidInput("not a peoplelog envelope (person_id is not a UUID)") from None
    text = {name: _member(document, name, str, optional=name != "op")
            for name in ("prev", "op", "actor", "reason", "email", "name", "password")}
    number = {name: _member(document, name, int, optional=name == "verified_at")
              for name in ("version", "recorded_at", "verified_at", "format")}
    return VersionRecord(
        person_id=person_id, version=number["version"], prev=text["prev"], op=text["op"],
        recorded_at=number["recorded_at"], actor=text["actor"], reason=text["reason"],
        email=_unb64(text["email"]), name=_unb64(text["name"]),
        password=_unb64(text["password"]), verified_at=number["verified_at"],
        format=number["format"])


def version_cid(record: VersionRecord) -> str:
    """The CID of ``record``: in C when built (``ledger._native``), else in Python. Anything
    the C code does not take as is (a wrong type, an inexact integer) goes the Python way,
    which raises the precise error."""
    if _native_cid is not None:
        try:
            return _native_cid(
                record.person_id.bytes, record.version, record.prev, record.op,
                record.recorded_at, record.actor, record.reason, record.email, record.name,
                record.password, record.verified_at, record.format)
        except (TypeError, ValueError, OverflowError, AttributeError):
            pass
    return cid_of(envelope_bytes(record))


def _load_native() -> Callable[..., str] | None:
    if not native_enabled():
        return None
    try:
        from . import _native  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return None
    function: Callable[..., str] = _native.envelope_cid
    return function


_native_cid = _load_native()


def native_envelope_cid() -> Callable[..., str] | None:
    """The C ``envelope_cid`` (arguments as ``version_cid`` passes them), or None."""
    return _native_cid


def canonical_json(document: Any) -> bytes:
    """RFC 8785 canonical bytes of any JSON document."""
    try:
        return bytes(rfc8785.dumps(document))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"JSON cannot be canonicalised: {exc}") from None


def parse_cid(text: str) -> str:
    """Check that ``text`` is a version CID in peoplelog's form; return it."""
    if not isinstance(text, str) or not _CID_TEXT.match(text):
        raise InvalidInput(
            "not a peoplelog CID (expected CIDv1 raw sha2-256 in base32: 'bafkrei' + 52 chars)"
        )
    try:
        cid = CID.decode(text)
    except Exception:
        raise InvalidInput("not a valid CID") from None
    if cid.version != 1 or cid.codec.name != "raw" or cid.hashfun.name != "sha2-256":
        raise InvalidInput("CID must be v1, raw, sha2-256")
    return text
