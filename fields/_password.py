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
    "check_phc_bounds",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

# RFC 9106 section 4, second recommended option ("low memory"): t=3, p=4, m=64 MiB,
# 128-bit salt, 256-bit tag.
_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID, version=19, salt_len=16, hash_len=32,
    time_cost=3, memory_cost=65536, parallelism=4,
)


_OWASP_MEMORY = {1: 47104, 2: 19456, 3: 12288, 4: 9216}
"""OWASP's argon2id minimums (p=1): the least memory (KiB) for each time cost; 5 or more
passes need 7168 KiB."""
_MAX_MEMORY = 1 << 20  # 1 GiB
_MAX_TIME = 16
_MAX_PARALLELISM = 16


def check_phc_bounds(phc: str, what: str = "password hash") -> str:
    """Refuse a stored argon2id hash that is not a PHC string, weaker than OWASP's minimum
    (the table above), or so heavy that checking it would be a denial of service (above
    1 GiB, 16 passes or 16 lanes). Accepted hashes are upgraded to the pinned parameters at
    the next login."""
    if not PasswordHasher.is_phc(phc):
        raise InvalidInput(f"{what} is not an argon2id PHC string")
    found = argon2.extract_parameters(phc)
    least = _OWASP_MEMORY.get(found.time_cost, 7168)
    if found.memory_cost < least:
        raise InvalidInput(f"{what} is weaker than OWASP's argon2id minimum (with "
                           f"t={found.time_cost}, at least m={least})")
    if (found.memory_cost > _MAX_MEMORY or found.time_cost > _MAX_TIME
            or found.parallelism > _MAX_PARALLELISM):
        raise InvalidInput(f"{what} parameters are too heavy to check (at most "
                           f"m={_MAX_MEMORY}, t={_MAX_TIME}, p={_MAX_PARALLELISM})")
    return phc


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
