"""Service API keys (``account_api_keys``, migration 018): a backend service's bearer key
(``plk1_…``), named after the service and given some of ``PERMISSIONS``; shown once,
stored as a lookup digest and a writer seal over the token, id, name, permissions and
creation time, checked in constant time. Issuing and revoking one are security events
written in the same transaction; a revoked key's row is deleted."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from peoplelog.fields import Attestations, Attestor
from peoplelog.ledger import INSERT_EVENT, Ledger, check_actor
from peoplelog.schema import Conflict, InvalidInput, InvalidToken

from ._events import EventKind, SecurityLog
from ._scope import PERMISSIONS, Scope, check_permissions, check_service_name
from ._settings import AccountSettings
from ._tokens import TokenKind, api_key_grant, new_token, token_digests

__all__ = ["ApiKeyInfo", "ApiKeys", "IssuedApiKey"]

_ISSUE = """
INSERT INTO account_api_keys (key_id, name, lookup, seal, seal_key, permissions, created_at,
                              created_by)
VALUES (%(key_id)s, %(name)s, %(lookup)s, %(seal)s, %(seal_key)s, %(permissions)s,
        %(created_at)s, %(created_by)s)
ON CONFLICT (name) DO NOTHING
RETURNING key_id
"""
"""A sealed key, unless one of that name exists (then nothing)."""

_CHECK = """
SELECT k.key_id, k.name, k.permissions, k.created_at, k.seal, k.seal_key, k.last_used_at,
       now()
FROM account_api_keys AS k
WHERE k.lookup = %s
  AND NOT EXISTS (SELECT 1 FROM security_events AS e
                  WHERE e.kind = 'api_key_revoked' AND e.facts->>'key_id' = k.key_id::text)
"""
"""A key's row, unless it was revoked: a row saved before its revocation and put back
later is still refused (the revocation's event stays; migration 018's index finds it)."""
_TOUCH = "UPDATE account_api_keys SET last_used_at = now() WHERE key_id = %s"
_LIST = ("SELECT key_id, name, permissions, created_at, created_by, last_used_at"
         " FROM account_api_keys ORDER BY created_at, key_id")
_REVOKE = ("DELETE FROM account_api_keys WHERE {} = %s"
           " RETURNING key_id, name, permissions")


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A new API key. ``token`` is shown here once and stored nowhere; the repr leaves it
    out."""

    token: str
    key_id: uuid.UUID
    name: str
    permissions: tuple[str, ...]
    created_at: datetime

    def __repr__(self) -> str:
        return (f"IssuedApiKey(key_id={self.key_id}, name={self.name!r}, "
                f"permissions={self.permissions!r})")

    def as_dict(self) -> dict[str, Any]:
        return {"token": self.token, "key_id": str(self.key_id), "name": self.name,
                "permissions": list(self.permissions),
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """One API key as listed: no token, digest or seal."""

    key_id: uuid.UUID
    name: str
    permissions: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": str(self.key_id), "name": self.name,
                "permissions": list(self.permissions),
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "last_used_at": (None if self.last_used_at is None
                                 else self.last_used_at.isoformat())}


def _facts(key_id: uuid.UUID, name: str, permissions: Iterable[str]) -> dict[str, str]:
    """What an API key's events record: its id, its name (an operator's label for a
    service) and its permissions, comma-separated."""
    return {"key_id": str(key_id), "name": name, "permissions": ",".join(sorted(permissions))}


class ApiKeys:
    """The API-key methods of ``Accounts`` (a mixin: it uses the ledger, the settings and
    the security log)."""

    ledger: Ledger
    settings: AccountSettings
    security_log: SecurityLog

    def create_api_key(self, name: str, permissions: Iterable[str], *,
                       actor: str = "peoplelog") -> IssuedApiKey:
        """A new key for the service ``name`` (1 to 64 printable characters, unique) with
        ``permissions`` (at least one, each of ``PERMISSIONS``; ``InvalidInput`` naming an
        unknown one); ``actor`` is recorded as its creator. ``Conflict`` when a key of
        that name exists. Nothing is written unless the key and its event both are."""
        name = check_service_name(name)
        granted = tuple(sorted(check_permissions(permissions)))
        if not granted:
            raise InvalidInput("an API key needs at least one permission (one of: "
                               f"{', '.join(sorted(PERMISSIONS))})")
        creator = check_actor(actor)
        if creator is None:
            raise InvalidInput("an API key needs an actor")
        key_id = uuid.uuid4()
        created_at = datetime.now(UTC)
        token, digests = new_token(TokenKind.API_KEY)
        attestor = Attestor.of(self.ledger.keyring)
        seal = attestor.seal_grant(api_key_grant(token, key_id=key_id, name=name,
                                                 permissions=granted, created_at=created_at))
        params = {"key_id": key_id, "name": name, "lookup": digests.lookup, "seal": seal,
                  "seal_key": attestor.key_id, "permissions": list(granted),
                  "created_at": created_at, "created_by": creator}
        event = self.security_log.params(EventKind.API_KEY_ISSUED, actor=creator,
                                         facts=_facts(key_id, name, granted))

        def issue(conn: Any) -> bool:
            if conn.execute(_ISSUE, params).fetchone() is None:
                return False
            conn.execute(INSERT_EVENT, event)
            return True

        def resume(conn: Any) -> bool | None:  # a commit whose outcome was lost
            found = conn.execute("SELECT 1 FROM account_api_keys WHERE key_id = %s",
                                 (key_id,)).fetchone()
            return True if found is not None else None

        if not self.ledger.database.transaction(issue, resume=resume):
            raise Conflict(f"an API key named {name!r} exists")
        return IssuedApiKey(token=token, key_id=key_id, name=name, permissions=granted,
                            created_at=created_at)

    def check_api_key(self, token: str) -> Scope:
        """The service ``Scope`` an API key stands for: its name as the service, its
        permissions and its id. ``InvalidToken`` ("invalid token") for anything else: not
        an API key, unknown, revoked (even if its row was put back), or a row whose seal
        does not hold (changed without the keyring)."""
        digests = token_digests(token, TokenKind.API_KEY)
        row = self.ledger.database.fetch_one(_CHECK, (digests.lookup,))
        if row is None:
            raise InvalidToken("invalid token")
        key_id, name, permissions, created_at, seal, seal_key, last_used_at, now = row
        grant = api_key_grant(token, key_id=key_id, name=name, permissions=permissions,
                              created_at=created_at)
        if not Attestations.of(self.ledger.keyring).holds_grant(seal_key, bytes(seal), grant):
            self.security_log.record(EventKind.TOKEN_REFUSED, facts={
                "token": TokenKind.API_KEY.value, "cause": "seal", "key_id": str(key_id)})
            raise InvalidToken("invalid token")
        if last_used_at is None or now - last_used_at >= self.settings.touch_interval:
            self.ledger.database.transaction(lambda conn: conn.execute(_TOUCH, (key_id,)))
        return Scope(kind="service", service=name, api_key_id=key_id,
                     permissions=frozenset(permissions) & PERMISSIONS)

    def api_keys(self) -> list[ApiKeyInfo]:
        """Every live API key, oldest first (no secrets)."""
        rows = self.ledger.database.run(lambda conn: conn.execute(_LIST).fetchall(),
                                        retry_lost=True)
        return [ApiKeyInfo(key_id=key_id, name=name, permissions=tuple(sorted(permissions)),
                           created_at=created_at, created_by=created_by,
                           last_used_at=last_used_at)
                for key_id, name, permissions, created_at, created_by, last_used_at in rows]

    def revoke_api_key(self, name_or_id: str, *, actor: str = "peoplelog") -> bool:
        """Revoke (delete) the key named ``name_or_id``, or else whose id it is, with its
        event in the same transaction; False when there is none."""
        if not isinstance(name_or_id, str):
            raise InvalidInput("name an API key by its name or id")
        creator = check_actor(actor)
        try:
            key_id: uuid.UUID | None = uuid.UUID(name_or_id)
        except ValueError:
            key_id = None

        def revoke(conn: Any) -> bool:
            row = conn.execute(_REVOKE.format("name"), (name_or_id,)).fetchone()
            if row is None and key_id is not None:
                row = conn.execute(_REVOKE.format("key_id"), (key_id,)).fetchone()
            if row is None:
                return False
            self.security_log.write(conn, EventKind.API_KEY_REVOKED, actor=creator,
                                    facts=_facts(row[0], row[1], row[2]))
            return True

        return self.ledger.database.transaction(revoke)
