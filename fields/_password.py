"""Passwords: argon2id with pinned parameters (RFC 9106, second recommended option)."""

from __future__ import annotations

import functools
import re

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from peoplelog.schema import InvalidInput

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "PasswordHasher",
    "check_password_policy",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

# RFC 9106 section 4, second recommended option ("low memory"): t=3, p=4, m=64 MiB,
# 128-bit salt, 256-bit tag.
_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID, version=19, salt_len=16, hash_len=32,
    time_cost=3, memory_cost=65536, parallelism=4,
)


def check_password_policy(password: str) -> str:
    if not isinstance(password, str):
        raise InvalidInput("password must be text")
    if "\x00" in password:
        raise InvalidInput("password contains a NUL byte")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("password is not valid UTF-8") from None
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password is too short (at least {MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password is too long (at most {MAX_PASSWORD} characters)")
    return password


class PasswordHasher:
    """Hash and check passwords; the parameters are pinned, not taken from callers."""

    parameters = _PARAMETERS

    def __init__(self, parameters: argon2.Parameters = _PARAMETERS) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)

    def hash(self, password: str) -> str:
        return self._hasher.hash(check_password_policy(password))

    def verify(self, phc: str, password: str) -> bool:
        try:
            return self._hasher.verify(phc, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
            return False

    def needs_rehash(self, phc: str) -> bool:
        return self._hasher.check_needs_rehash(phc)

    def verify_dummy(self, password: str) -> bool:
        """Spend the time of a real check when there is no person, so timing tells nothing."""
        self.verify(_dummy_hash(), password)
        return False

    @staticmethod
    def is_phc(value: str) -> bool:
        if not isinstance(value, str) or not _PHC.fullmatch(value):
            return False  # extract_parameters reads the parameters only, not salt and hash
        try:
            argon2.extract_parameters(value)
        except InvalidHashError:
            return False
        return value.startswith("$argon2id$")


_PHC = re.compile(r"\$argon2id\$v=19\$m=[0-9]{1,10},t=[0-9]{1,10},p=[0-9]{1,3}"
                  r"\$[A-Za-z0-9+/]{11,1024}\$[A-Za-z0-9+/]{16,1024}")


@functools.cache
def _dummy_hash() -> str:
    return argon2.PasswordHasher.from_parameters(_PARAMETERS).hash("peoplelog-dummy-password")
