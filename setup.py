"""Build the optional C scanners (projections/_native.c); everything else is in pyproject.toml.

The extension is optional: where it cannot be built (no compiler, no OpenSSL headers) the
install still succeeds and verification runs its pure-Python scanners.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "projections._native",
            sources=["projections/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
