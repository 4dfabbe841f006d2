"""Bearer tokens: 256 random bits from ``secrets``, shown to their holder once and stored
only as two SHA-256 digests. The one implementation of the token format.

A token's text is its kind's prefix (``pls1_`` a session, ``plp1_`` a personal access
token, ``plo1_`` a one-time link, ``plk1_`` a service's API key) and its 32 bytes in
unpadded base64url; a token of one kind is never accepted as another. Stored:
``lookup``, 16 bytes of SHA-256 over a label and the whole text (the indexed key), and a
``seal``: HMAC-SHA256 under the keyring's writer key (``fields.GRANT_LABEL``) over the
text and every column that says whom the row lets in, how and until when, or what it
permits (the ``*_grant`` messages below), compared in constant time. The lookup reveals
nothing of the token; the seal cannot be made without the keyring, so the database login
alone can neither mint a token nor move one to another person, extend it, widen an API
key's permissions or bring a token back after a credential change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from peoplelog.schema import InvalidToken

__all__ = ["API_KEY_PREFIX", "TOKEN_BYTES", "TokenDigests", "TokenKind", "api_key_grant",
           "link_grant", "new_token", "session_grant", "token_digests"]

TOKEN_BYTES = 32
_LOOKUP_LABEL = b"peoplelog/token-lookup/1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBERS = struct.Struct(">qqq")
_BODY_CHARS = 43  # 32 bytes in unpadded base64url


class TokenKind(StrEnum):
    """What a token stands for (the value is what ``account_sessions.kind`` stores)."""

    SESSION = "session"
    ACCESS_TOKEN = "access_token"  # noqa: S105 - a kind's name
    ONE_TIME = "one_time"
    """A link's token: a login, an email confirmation, a password reset, an email change."""
    API_KEY = "api_key"
    """A backend service's key (``account_api_keys``): a name and its permissions."""


_PREFIXES = {TokenKind.SESSION: "pls1_", TokenKind.ACCESS_TOKEN: "plp1_",
             TokenKind.ONE_TIME: "plo1_", TokenKind.API_KEY: "plk1_"}
_KINDS = {prefix: kind for kind, prefix in _PREFIXES.items()}
API_KEY_PREFIX = _PREFIXES[TokenKind.API_KEY]


@dataclass(frozen=True, slots=True)
class TokenDigests:
    """A token's kind and lookup digest. Its repr shows the kind only."""

    kind: TokenKind
    lookup: bytes

    def __repr__(self) -> str:
        return f"TokenDigests(kind={self.kind.value!r})"


def _digests(kind: TokenKind, text: str) -> TokenDigests:
    return TokenDigests(kind, hashlib.sha256(_LOOKUP_LABEL + text.encode("ascii")).digest()[:16])


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH  # exact, and without timedelta's slow floor division
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def session_grant(token: str, *, session_id: uuid.UUID, person_id: uuid.UUID, kind: str,
                  epoch: int, authenticated_at: datetime, expires_at: datetime) -> bytes:
    """What a session's or access token's seal covers: the token and the row's meaning."""
    return b"".join((b"session\x00", token.encode("ascii"), session_id.bytes, person_id.bytes,
                     kind.encode("ascii"), b"\x00",
                     _NUMBERS.pack(epoch, _micros(authenticated_at), _micros(expires_at))))


def link_grant(token: str, *, person_id: uuid.UUID, purpose: str, sent_to: bytes,
               epoch: int, new_email: bytes | None, expires_at: datetime) -> bytes:
    """What a one-time link's seal covers: the token, whom and what for, the address it was
    sent to (its blind index), an email change's new address (ciphertext) and the expiry."""
    extra = b"" if new_email is None else new_email
    return b"".join((b"link\x00", token.encode("ascii"), person_id.bytes,
                     purpose.encode("ascii"), b"\x00", struct.pack(">H", len(sent_to)),
                     sent_to, _NUMBERS.pack(epoch, _micros(expires_at), len(extra)), extra))


def api_key_grant(token: str, *, key_id: uuid.UUID, name: str, permissions: Iterable[str],
                  created_at: datetime) -> bytes:
    """What an API key's seal covers: the token, the key's id and name, its permissions
    (sorted) and when it was made."""
    label = name.encode("utf-8")
    granted = b"\x00".join(p.encode("utf-8") for p in sorted(permissions))
    return b"".join((b"api_key\x00", token.encode("ascii"), key_id.bytes,
                     struct.pack(">H", len(label)), label, struct.pack(">I", len(granted)),
                     granted, struct.pack(">q", _micros(created_at))))


def new_token(kind: TokenKind) -> tuple[str, TokenDigests]:
    """A fresh token of ``kind``: its text (for the holder, once) and what to store."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()
    text = _PREFIXES[kind] + body
    return text, _digests(kind, text)


def token_digests(text: str, kind: TokenKind | None = None) -> TokenDigests:
    """The digests to look a presented token up by; ``InvalidToken`` for text that is no
    token (of ``kind``, when given), with the same message as every other bad token."""
    if not isinstance(text, str) or len(text) != len("pls1_") + _BODY_CHARS:
        raise InvalidToken("invalid token")
    found = _KINDS.get(text[:5])
    if found is None or (kind is not None and found is not kind):
        raise InvalidToken("invalid token")
    body = text[5:]
    try:
        raw = base64.urlsafe_b64decode(body + "=")
    except (binascii.Error, ValueError):
        raise InvalidToken("invalid token") from None
    if len(raw) != TOKEN_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != body:
        raise InvalidToken("invalid token")
    return _digests(found, text)
