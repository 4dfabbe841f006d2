"""Bearer tokens: 256 random bits from ``secrets``, shown to their holder once and stored
only as two SHA-256 digests. The one implementation of the token format.

A token's text is its kind's prefix (``pls1_`` a session, ``plp1_`` a personal access
token, ``plo1_`` a one-time link) and its 32 bytes in unpadded base64url. Stored:
``lookup``, 16 bytes of SHA-256 over a label and the whole text (the indexed key), and
``verifier``, SHA-256 over another label and the text, compared in constant time. Both
cover the prefix, so a token of one kind never passes as another; neither reveals the
token, so a copy of the database cannot be used to log in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from peoplelog.schema import InvalidToken

__all__ = ["TOKEN_BYTES", "TokenDigests", "TokenKind", "new_token", "token_digests"]

TOKEN_BYTES = 32
_LOOKUP_LABEL = b"peoplelog/token-lookup/1\x00"
_VERIFIER_LABEL = b"peoplelog/token-verifier/1\x00"
_BODY_CHARS = 43  # 32 bytes in unpadded base64url


class TokenKind(StrEnum):
    """What a token stands for (the value is what ``account_sessions.kind`` stores)."""

    SESSION = "session"
    ACCESS_TOKEN = "access_token"  # noqa: S105 - a kind's name
    ONE_TIME = "one_time"
    """A link's token: a login, an email confirmation, a password reset, an email change."""


_PREFIXES = {TokenKind.SESSION: "pls1_", TokenKind.ACCESS_TOKEN: "plp1_",
             TokenKind.ONE_TIME: "plo1_"}
_KINDS = {prefix: kind for kind, prefix in _PREFIXES.items()}


@dataclass(frozen=True, slots=True)
class TokenDigests:
    """What is stored of a token. Its repr shows the kind only."""

    kind: TokenKind
    lookup: bytes
    verifier: bytes

    def __repr__(self) -> str:
        return f"TokenDigests(kind={self.kind.value!r})"

    def matches(self, stored_verifier: bytes) -> bool:
        """Whether ``stored_verifier`` is this token's (constant time)."""
        return hmac.compare_digest(self.verifier, stored_verifier)


def _digests(kind: TokenKind, text: str) -> TokenDigests:
    data = text.encode("ascii")
    return TokenDigests(kind, hashlib.sha256(_LOOKUP_LABEL + data).digest()[:16],
                        hashlib.sha256(_VERIFIER_LABEL + data).digest())


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
