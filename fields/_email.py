"""Email normalisation (versioned) and the keyed blind index used for lookup."""

from __future__ import annotations

import re
import unicodedata
import weakref

import email_validator

from peoplelog.schema import InvalidInput

from ._keyed import KeyedHash
from ._keyring import Key, KeyPurpose, Keyring

__all__ = ["NORMALISATION_VERSION", "BlindIndex", "BlindIndexes", "NormalisedEmail",
           "normalise_email"]

NORMALISATION_VERSION = 1
MAX_EMAIL_INPUT = 320
MAX_LOCAL_PART = 64


class NormalisedEmail:
    """An email in the two forms peoplelog uses. Its repr never shows the address.

    ``display`` is what is encrypted and shown back (domain lower-cased, Unicode form);
    ``lookup_key`` is what is blind-indexed: NFC, local part lower-cased, domain in
    lower-case IDNA ASCII form. ``+tags`` are kept in both.
    """

    __slots__ = ("display", "lookup_key")

    def __init__(self, display: str, lookup_key: str) -> None:
        self.display = display
        self.lookup_key = lookup_key

    def __repr__(self) -> str:
        return "NormalisedEmail(<redacted>)"


_SIMPLE = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _simple(text: str) -> NormalisedEmail | None:
    """The common case (plain ASCII dot-atom, letters-only TLD) without the full validator.

    Gives exactly what the validator would (a property test holds the two together); any
    address outside this narrow shape takes the full path.
    """
    match = _SIMPLE.fullmatch(text)
    if match is None or len(text) > 254:
        return None
    local, _, domain = text.rpartition("@")
    domain = domain.lower()
    if len(local) > MAX_LOCAL_PART or len(domain) > 253 or "xn--" in domain or (
        domain.rsplit(".", 1)[-1] in _SPECIAL_USE or domain.endswith(".home.arpa")
    ):
        return None
    return NormalisedEmail(f"{local}@{domain}", f"{local.lower()}@{domain}")


_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
"""Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt, 15.1): drawn
as nothing, so ``a\u034fb`` would look like ``ab``."""
_BLANK = frozenset("\u2800\u3164\uffa0\u115f\u1160")
"""Drawn blank though not ignorable (Braille pattern blank, Hangul fillers)."""


def _invisible(ch: str) -> bool:
    """A character that draws as nothing or as a blank: control, format, separator
    (spaces included), default-ignorable or a blank-looking letter or symbol."""
    if ch == " ":
        return False  # the validator names it ("invalid characters")
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") or ch in _BLANK:
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)


def normalise_email(raw: str) -> NormalisedEmail:
    """Validate and normalise an email address (normalisation version 1).

    Errors say what is wrong without echoing the address.
    """
    if isinstance(raw, str) and len(raw) <= MAX_EMAIL_INPUT and raw.isascii():
        simple = _simple(raw.strip())
        if simple is not None:
            return simple
    if not isinstance(raw, str):
        raise InvalidInput("email must be text")
    if len(raw) > MAX_EMAIL_INPUT:
        raise InvalidInput(f"email is too long (more than {MAX_EMAIL_INPUT} characters)")
    if "\x00" in raw:
        raise InvalidInput("email contains a NUL byte")
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        raise InvalidInput("email is empty")
    if any(_invisible(ch) for ch in text):
        raise InvalidInput("email contains control, invisible or formatting characters "
                           "(default-ignorable ones included: an address must not look like "
                           "another)")
    problem = ""
    try:
        result = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=False
        )
    except email_validator.EmailNotValidError as exc:
        problem = _redact(str(exc), text)
    if problem:  # raised outside the handler: the validator's message must not ride along
        raise InvalidInput(f"invalid email address: {problem}")
    local = unicodedata.normalize("NFC", result.local_part)
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidInput(
            f"invalid email address: the part before the @ is longer than {MAX_LOCAL_PART} bytes"
        )
    lookup = f"{local.lower()}@{result.ascii_domain.lower()}"
    display = f"{local}@{result.domain.lower()}"
    return NormalisedEmail(display, lookup)


def _redact(message: str, raw: str) -> str:
    local, _, domain = raw.rpartition("@")
    for part in sorted({raw, local, domain, *domain.split(".")}, key=len, reverse=True):
        if len(part) >= 3:
            message = message.replace(part, "<redacted>")
    # IDNA errors quote a (case-mapped) label: hide every quoted run longer than a character.
    return re.sub(r"'[^']{2,}'", "'<redacted>'", message)


_EMAIL_PREFIX = b"peoplelog/email/%d\x00" % NORMALISATION_VERSION
_EXTERNAL_ID_PREFIX = b"peoplelog/external-id/1\x00"
_CLIENT_PREFIX = b"peoplelog/client-address/1\x00"


class BlindIndex:
    """Keyed hashes (HMAC-SHA256 under the blind-index key) that find a row without
    decrypting anything: of a normalised email, and of an imported record's external id.

    An email's input is ``b"peoplelog/email/1\\x00" + lookup_key`` (UTF-8), so a change of
    normalisation changes every digest rather than silently mixing two schemes; an
    external id's is ``b"peoplelog/external-id/1\\x00" + id`` (UTF-8); a client address's
    ``b"peoplelog/client-address/1\\x00" + address`` (ASCII). The one Python
    implementation of these digests (``tests/vectors/blind_index.json`` pins the email's).
    """

    __slots__ = ("_mac", "key")

    def __init__(self, key: Key) -> None:
        if key.purpose is not KeyPurpose.BLIND_INDEX:
            raise ValueError("a blind index needs a blind-index key")
        self.key = key
        self._mac = KeyedHash(key.secret)

    def __repr__(self) -> str:
        return f"BlindIndex(key_id={self.key.id!r})"

    def _digest(self, message: bytes) -> bytes:
        return self._mac.digest(message)

    def digest(self, email: NormalisedEmail) -> bytes:
        return self._digest(_EMAIL_PREFIX + email.lookup_key.encode())

    def external_id_digest(self, external_id: str) -> bytes:
        """Keyed hash of an imported record's external id."""
        return self._digest(_EXTERNAL_ID_PREFIX + external_id.encode())

    def client_address_digest(self, address: str) -> bytes:
        """Keyed hash of a client's IP address (as ``ipaddress`` writes it), the key its
        login attempts are counted under."""
        return self._digest(_CLIENT_PREFIX + address.encode())


class BlindIndexes:
    """A keyring's blind indexes: the active key's, under which every new claim is made,
    and the older keys' still in the keyring, under which claims made before a blind-index
    rotation stay until ``rotate_blind_index`` has moved them. A lookup tries each; an email
    is free only when no key's digest of it is claimed."""

    __slots__ = ("__weakref__", "active", "older")

    def __init__(self, keyring: Keyring) -> None:
        self.active = BlindIndex(keyring.active(KeyPurpose.BLIND_INDEX))
        older = [key for key in keyring.all_of(KeyPurpose.BLIND_INDEX)
                 if key.id != self.active.key.id]
        older.sort(key=lambda key: (key.created_at, key.id), reverse=True)  # newest first
        self.older = tuple(BlindIndex(key) for key in older)

    def __repr__(self) -> str:
        return (f"BlindIndexes(active={self.active.key.id!r}, "
                f"older={[blind.key.id for blind in self.older]!r})")

    @classmethod
    def of(cls, keyring: Keyring) -> BlindIndexes:
        """The blind indexes of ``keyring``, made once per keyring."""
        found = _INDEXES.get(keyring)
        if found is None:
            found = _INDEXES[keyring] = cls(keyring)
        return found

    @property
    def all(self) -> tuple[BlindIndex, ...]:
        """The active blind index, then the older ones, newest first."""
        return (self.active, *self.older)

    def older_digests(self, email: NormalisedEmail) -> tuple[bytes, ...]:
        """``email``'s digests under the older keys (none outside a rotation)."""
        return tuple(blind.digest(email) for blind in self.older)

    def older_id_digests(self, external_id: str) -> tuple[bytes, ...]:
        return tuple(blind.external_id_digest(external_id) for blind in self.older)


_INDEXES: weakref.WeakKeyDictionary[Keyring, BlindIndexes] = weakref.WeakKeyDictionary()
