"""The HTTP service and hosted account pages (``peoplelog.http``), on the accounts layer,
beside the CLI: a JSON API under ``/v1`` for backends in any language, server-rendered
pages for people, and FastAPI dependencies for Python applications.

>>> from peoplelog.http import create_app                             # doctest: +SKIP
>>> app = create_app()          # the embedded PostgreSQL and the keyring of the settings

Names are loaded on first use (PEP 562)."""

from __future__ import annotations

if __name__ == "http":  # pragma: no cover - the repository root is on sys.path
    # This folder is ``peoplelog.http``; run from the repository root (``python -m``), the
    # root is on sys.path and ``import http`` would find this folder before the standard
    # library's. Step aside: load the standard library's package under its own name.
    import importlib.util as _util
    import os as _os
    import sys as _sys
    import sysconfig as _sysconfig

    _stdlib = _os.path.join(_sysconfig.get_paths()["stdlib"], "http")
    _spec = _util.spec_from_file_location("http", _os.path.join(_stdlib, "__init__.py"),
                                          submodule_search_locations=[_stdlib])
    assert _spec is not None and _spec.loader is not None
    _module = _util.module_from_spec(_spec)
    _sys.modules["http"] = _module
    _spec.loader.exec_module(_module)
else:
    from typing import TYPE_CHECKING

    from peoplelog.schema.lazy import lazy_exports

    if TYPE_CHECKING:
        from ._app import create_app, use_accounts
        from ._auth import current_scope, optional_scope, person_scope, require_permission
        from ._problems import STATUS_OF_KIND, status_of
        from ._serve import serve
        from ._settings import HttpSettings

    __all__ = [
        "STATUS_OF_KIND",
        "HttpSettings",
        "create_app",
        "current_scope",
        "optional_scope",
        "person_scope",
        "require_permission",
        "serve",
        "status_of",
        "use_accounts",
    ]

    _SOURCES = {
        "_app": ("create_app", "use_accounts"),
        "_auth": ("current_scope", "optional_scope", "person_scope", "require_permission"),
        "_problems": ("STATUS_OF_KIND", "status_of"),
        "_serve": ("serve",),
        "_settings": ("HttpSettings",),
    }
    if not TYPE_CHECKING:
        __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
