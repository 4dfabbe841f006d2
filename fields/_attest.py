"""Writer attestation: the application, which holds the keyring, seals each version it
writes; a version written with the database login alone carries no valid seal, so the
sequencer never puts it into a signed checkpoint and logins never trust it."""

from __future__ import annotations

import hmac
import weakref

from ._keyed import KeyedHash
from ._keyring import Key, KeyPurpose, Keyring

__all__ = ["ATTESTATION_LABEL", "CLAIM_LABEL", "GRANT_LABEL", "Attestations", "Attestor"]

ATTESTATION_LABEL = b"peoplelog/attest/1\x00"
"""What is sealed is this label and the version's CID (ASCII): the CID commits to the
whole envelope, so the seal covers every stored column of the version."""
CLAIM_LABEL = b"peoplelog/claim/1\x00"
"""An email claim's seal covers this label, the blind index, the person's id and the email
ciphertext the claim was made for: moved to another person, or left in place after the
person's email changed, it no longer checks. It lives only in ``email_lookup`` (deleted at
erasure), never in the ledger."""


GRANT_LABEL = b"peoplelog/grant/1\x00"
"""A grant's seal (a session's, an access token's, a link's, an API key's) covers this
label and the message the accounts layer builds: the token and every column that says whom
it lets in, how and until when, or what it permits. A row written with the database login
alone, or changed by it (another person, a later expiry, an epoch brought back, a wider
permission), no longer checks."""


def _claim_message(blind_index: bytes, person_id: bytes, email: bytes) -> bytes:
    return CLAIM_LABEL + blind_index + person_id + email


class Attestor:
    """Seals CIDs with the keyring's active writer key (HMAC-SHA256). Its repr names the
    key, never shows it."""

    __slots__ = ("_mac", "key_id")

    def __init__(self, key: Key) -> None:
        if key.purpose is not KeyPurpose.WRITER:
            raise ValueError("attestation needs a writer key")
        self.key_id = key.id
        self._mac = KeyedHash(key.secret)

    def __repr__(self) -> str:
        return f"Attestor(key_id={self.key_id!r})"

    @classmethod
    def of(cls, keyring: Keyring) -> Attestor:
        """The attestor of ``keyring``'s active writer key (``KeyNotFound`` without one),
        made once per keyring."""
        attestor = _ATTESTORS.get(keyring)
        if attestor is None:
            attestor = _ATTESTORS[keyring] = cls(keyring.active(KeyPurpose.WRITER))
        return attestor

    def seal(self, cid: str) -> bytes:
        return self._mac.digest(ATTESTATION_LABEL + cid.encode())

    def seal_claim(self, blind_index: bytes, person_id: bytes, email: bytes) -> bytes:
        """The seal of an email claim (``person_id``: 16 bytes; ``email``: the email
        ciphertext the person's version holds)."""
        return self._mac.digest(_claim_message(blind_index, person_id, email))

    def seal_grant(self, message: bytes) -> bytes:
        """The seal of a grant (see ``GRANT_LABEL``)."""
        return self._mac.digest(GRANT_LABEL + message)


class Attestations:
    """Checks seals against every writer key of a keyring (older ones too: a version sealed
    before a rotation still checks)."""

    __slots__ = ("_macs",)

    def __init__(self, keyring: Keyring) -> None:
        self._macs = {key.id: KeyedHash(key.secret)
                      for key in keyring.all_of(KeyPurpose.WRITER)}

    def __repr__(self) -> str:
        return f"Attestations(keys={sorted(self._macs)!r})"

    @classmethod
    def of(cls, keyring: Keyring) -> Attestations:
        """The checks of ``keyring``'s writer keys, made once per keyring."""
        checks = _CHECKS.get(keyring)
        if checks is None:
            checks = _CHECKS[keyring] = cls(keyring)
        return checks

    def holds(self, cid: str, key_id: str | None, seal: bytes | None) -> bool:
        """Whether ``seal`` is the seal of ``cid`` by the writer key ``key_id``."""
        mac = None if key_id is None else self._macs.get(key_id)
        if mac is None or seal is None:
            return False
        return hmac.compare_digest(mac.digest(ATTESTATION_LABEL + cid.encode()),
                                   bytes(seal))

    def holds_claim(self, key_id: str | None, seal: bytes | None, blind_index: bytes,
                    person_id: bytes, email: bytes | None) -> bool:
        """Whether ``seal`` is the writer's seal of this claim."""
        mac = None if key_id is None else self._macs.get(key_id)
        if mac is None or seal is None or email is None:
            return False
        return hmac.compare_digest(
            mac.digest(_claim_message(blind_index, person_id, email)), bytes(seal))

    def holds_grant(self, key_id: str | None, seal: bytes | None, message: bytes) -> bool:
        """Whether ``seal`` is the writer's seal of this grant (constant time)."""
        mac = None if key_id is None else self._macs.get(key_id)
        if mac is None or seal is None:
            return False
        return hmac.compare_digest(mac.digest(GRANT_LABEL + message), bytes(seal))


_ATTESTORS: weakref.WeakKeyDictionary[Keyring, Attestor] = weakref.WeakKeyDictionary()
_CHECKS: weakref.WeakKeyDictionary[Keyring, Attestations] = weakref.WeakKeyDictionary()
