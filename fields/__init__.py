"""How a value is protected: keyring, field encryption, blind index, passwords."""

from __future__ import annotations

from ._cipher import FIELDS, DataKey, NewPersonSealer
from ._email import NORMALISATION_VERSION, BlindIndex, NormalisedEmail, normalise_email
from ._keyring import KEYRING_FORMAT, REQUIRED_PURPOSES, Key, KeyPurpose, Keyring, keyring_path
from ._password import MAX_PASSWORD, MIN_PASSWORD, PasswordHasher, check_password_policy

__all__ = [
    "FIELDS",
    "KEYRING_FORMAT",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "NORMALISATION_VERSION",
    "REQUIRED_PURPOSES",
    "BlindIndex",
    "DataKey",
    "Key",
    "KeyPurpose",
    "Keyring",
    "NewPersonSealer",
    "NormalisedEmail",
    "PasswordHasher",
    "check_password_policy",
    "keyring_path",
    "normalise_email",
]
