"""Build the optional C parts; everything else is in pyproject.toml.

``peoplelog.fields._native`` seals new persons (bulk import), ``peoplelog.ledger._native``
computes version CIDs and lays out imported rows, ``peoplelog.projections._native`` holds
verification's scanners; the last two share ``csrc/canonical.h``. They are optional: where
they cannot be built (no compiler, no OpenSSL headers) the install still succeeds and the
pure-Python code runs.
"""

from setuptools import Extension, setup


def native(name: str) -> Extension:
    return Extension(
        f"peoplelog.{name}._native",
        sources=[f"{name}/_native.c"],
        depends=["csrc/canonical.h"],
        include_dirs=["csrc"],
        libraries=["crypto"],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
        optional=True,
    )


setup(ext_modules=[native("fields"), native("ledger"), native("projections")])
