"""How a value is protected: keyring, field encryption, blind index, passwords.

Names are loaded on first use (PEP 562): importing the package costs nothing until
one of them is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peoplelog.schema.lazy import lazy_exports

if TYPE_CHECKING:
    from ._attest import ATTESTATION_LABEL, CLAIM_LABEL, GRANT_LABEL, Attestations, Attestor
    from ._cipher import FIELDS, DataKey, NewPersonSealer
    from ._email import (
        NORMALISATION_VERSION,
        BlindIndex,
        BlindIndexes,
        NormalisedEmail,
        normalise_email,
    )
    from ._keyed import KeyedHash
    from ._keyring import KEYRING_FORMAT, REQUIRED_PURPOSES, Key, KeyPurpose, Keyring
    from ._password import (
        MAX_PASSWORD,
        MIN_PASSWORD,
        PasswordHasher,
        check_password_policy,
        check_phc_bounds,
    )
    from ._run_ids import RunIds
    from ._speedups import PURE_PYTHON_VARIABLE, native_enabled

__all__ = [
    "ATTESTATION_LABEL",
    "CLAIM_LABEL",
    "FIELDS",
    "GRANT_LABEL",
    "KEYRING_FORMAT",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "NORMALISATION_VERSION",
    "PURE_PYTHON_VARIABLE",
    "REQUIRED_PURPOSES",
    "Attestations",
    "Attestor",
    "BlindIndex",
    "BlindIndexes",
    "DataKey",
    "Key",
    "KeyPurpose",
    "KeyedHash",
    "Keyring",
    "NewPersonSealer",
    "NormalisedEmail",
    "PasswordHasher",
    "RunIds",
    "check_password_policy",
    "check_phc_bounds",
    "native_enabled",
    "normalise_email",
]

_SOURCES = {
    "_attest": ("ATTESTATION_LABEL", "CLAIM_LABEL", "GRANT_LABEL", "Attestations", "Attestor"),
    "_cipher": ("FIELDS", "DataKey", "NewPersonSealer"),
    "_email": ("NORMALISATION_VERSION", "BlindIndex", "BlindIndexes", "NormalisedEmail",
               "normalise_email"),
    "_keyed": ("KeyedHash",),
    "_keyring": ("KEYRING_FORMAT", "REQUIRED_PURPOSES", "Key", "KeyPurpose", "Keyring"),
    "_password": ("MAX_PASSWORD", "MIN_PASSWORD", "PasswordHasher", "check_password_policy",
                  "check_phc_bounds"),
    "_run_ids": ("RunIds",),
    "_speedups": ("PURE_PYTHON_VARIABLE", "native_enabled"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
