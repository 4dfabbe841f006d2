"""Who may act and how that is proven: sign-up, login, sessions, personal access tokens,
service API keys and scopes, on the ledger (``peoplelog.accounts``).

Names are loaded on first use (PEP 562): importing the package costs nothing until
one of them is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peoplelog.schema.lazy import lazy_exports

if TYPE_CHECKING:
    from ._api import Accounts
    from ._api_keys import ApiKeyInfo, IssuedApiKey
    from ._cleanup import CLEANUP_BATCH, CleanupSummary
    from ._events import EventInfo, EventKind, EventPage
    from ._links import LINK_PATHS
    from ._mail import (
        ConsoleMailer,
        FileMailer,
        Mailer,
        Message,
        MessageTexts,
        SmtpMailer,
        mailer_from_url,
    )
    from ._outbox import OutboxSummary
    from ._policy import PasswordPolicy
    from ._scope import PERMISSIONS, Scope
    from ._sessions import Client, IssuedToken, SessionInfo
    from ._settings import AccountSettings, parse_duration
    from ._tokens import TOKEN_BYTES, TokenDigests, TokenKind, new_token, token_digests

__all__ = [
    "CLEANUP_BATCH",
    "LINK_PATHS",
    "PERMISSIONS",
    "TOKEN_BYTES",
    "AccountSettings",
    "Accounts",
    "ApiKeyInfo",
    "CleanupSummary",
    "Client",
    "ConsoleMailer",
    "EventInfo",
    "EventKind",
    "EventPage",
    "FileMailer",
    "IssuedApiKey",
    "IssuedToken",
    "Mailer",
    "Message",
    "MessageTexts",
    "OutboxSummary",
    "PasswordPolicy",
    "Scope",
    "SessionInfo",
    "SmtpMailer",
    "TokenDigests",
    "TokenKind",
    "mailer_from_url",
    "new_token",
    "parse_duration",
    "token_digests",
]

_SOURCES = {
    "_api": ("Accounts",),
    "_api_keys": ("ApiKeyInfo", "IssuedApiKey"),
    "_cleanup": ("CLEANUP_BATCH", "CleanupSummary"),
    "_events": ("EventInfo", "EventKind", "EventPage"),
    "_links": ("LINK_PATHS",),
    "_mail": ("ConsoleMailer", "FileMailer", "Mailer", "Message", "MessageTexts", "SmtpMailer",
              "mailer_from_url"),
    "_outbox": ("OutboxSummary",),
    "_policy": ("PasswordPolicy",),
    "_scope": ("PERMISSIONS", "Scope"),
    "_sessions": ("Client", "IssuedToken", "SessionInfo"),
    "_settings": ("AccountSettings", "parse_duration"),
    "_tokens": ("TOKEN_BYTES", "TokenDigests", "TokenKind", "new_token", "token_digests"),
}
if not TYPE_CHECKING:  # type checkers see the imports above; at run time, names load on use
    __getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals(), __all__)
