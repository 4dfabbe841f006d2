"""``Accounts``: sign people up, log them in, keep them logged in, on the ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from peoplelog.fields import (
    Attestations,
    Attestor,
    BlindIndexes,
    Keyring,
    PasswordHasher,
    normalise_email,
)
from peoplelog.ledger import INSERT_EVENT, Ledger, Settings
from peoplelog.schema import (
    InvalidInput,
    InvalidToken,
    LoginFailed,
    NotPermitted,
    PersonNotFound,
    VersionConflict,
)

from ._api_keys import ApiKeys
from ._cleanup import CLEANUP_BATCH, CleanupSummary, clean_up
from ._codes import CODE_DIGITS, take_code
from ._events import EventKind, EventPage, SecurityLog, insert_event_from, read_events
from ._links import OneTimeLinks
from ._mail import Mailer, MessageTexts
from ._outbox import OutboxSummary, send_pending
from ._policy import PasswordPolicy
from ._scope import Scope
from ._sessions import (
    CHECK,
    CHECK_PERSON,
    CHECK_SESSION,
    EPOCH,
    ISSUE,
    LIST,
    TOUCH,
    Client,
    IssuedToken,
    SessionInfo,
    check_row,
    counted_address,
    details_json,
    idle_seconds,
    read_details,
)
from ._settings import AccountSettings
from ._throttle import Throttle
from ._tokens import (
    API_KEY_PREFIX,
    TokenDigests,
    TokenKind,
    new_token,
    session_grant,
    token_digests,
)

__all__ = ["Accounts"]

_LOGIN_FAILED = "invalid email or password"
_ISSUE_LOGGED = ("WITH issued AS (" + ISSUE.strip() + "), logged AS ("  # noqa: S608
                 + insert_event_from("issued") + ") SELECT authenticated_at, expires_at"
                 " FROM issued")
"""Issue a session or token and write the event that issued it, in one statement: the
event exists exactly when the session does (``verify`` checks every live one has it)."""
_CHECKED = frozenset({TokenKind.SESSION, TokenKind.ACCESS_TOKEN})


class _Refusal(NamedTuple):
    """A stored session refused by ``check``: whose, which, of what kind, and why."""

    person_id: uuid.UUID
    session_id: uuid.UUID
    kind: str
    cause: str
"""The kinds ``check`` takes (an API key is ``check_api_key``'s, a link ``use_*``'s)."""


class Accounts(OneTimeLinks, ApiKeys):
    """The account lifecycle over a ``Ledger`` (which it owns: closing one closes both).

    Sessions and personal access tokens are bearer tokens (``pls1_…``, ``plp1_…``) shown
    once; ``check`` turns one into the ``Scope`` it stands for. A backend service's API
    key (``plk1_…``, ``create_api_key``) is never one of them: ``check_api_key`` takes it.
    A password or email change, a reset, an erasure (whatever writes it) ends every
    session and token of the person in the same transaction (the credential epoch,
    migration 014).

    >>> accounts = Accounts.open()                                    # doctest: +SKIP
    >>> person = accounts.register("ada@example.org", password="correct horse battery")
    >>> issued = accounts.login("ada@example.org", "correct horse battery")
    >>> accounts.check(issued.token).person_id == person
    True
    """

    def __init__(self, ledger: Ledger, settings: AccountSettings | None = None,
                 texts: MessageTexts | None = None) -> None:
        self.ledger = ledger
        self.settings = settings or AccountSettings.from_environment()
        self.texts = texts or MessageTexts()
        self.policy = PasswordPolicy(self.settings.min_password_length,
                                     self.settings.min_password_score)
        self._hasher = PasswordHasher()
        self.security_log = SecurityLog(ledger)
        self.throttle = Throttle(self.settings.login_attempts_per_account,
                                 self.settings.login_attempts_per_client,
                                 self.settings.login_window, self.settings.lockout)

    def __repr__(self) -> str:
        return f"Accounts(ledger={self.ledger!r})"

    @classmethod
    def open(cls, database_url: str | None = None,
             keyring: Keyring | str | Path | None = None, *,
             settings: Settings | None = None,
             account_settings: AccountSettings | None = None,
             texts: MessageTexts | None = None, pool_size: int = 4) -> Accounts:
        """Connect as ``Ledger.open`` does (the keyring is required)."""
        return cls(Ledger.open(database_url, keyring, settings=settings, pool_size=pool_size),
                   account_settings, texts)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- signing up and logging in ----------------------------------------------------------

    def register(self, email: str, *, password: str | None = None, name: str | None = None,
                 scope: Scope | None = None) -> uuid.UUID:
        """A new person with ``email`` and, unless they will log in by link, a password
        (``PasswordPolicy``: 12 to 1024 characters, strong enough, no NUL; checked before
        anything is looked up). ``name`` defaults to the address's local part.
        ``EmailTaken`` when the address is another person's."""
        normalised = normalise_email(email)
        if password is not None:
            self.policy.check(password, (normalised.display.split("@")[0], name or ""))
        ref = self.ledger.create_person(
            email=email, name=name if name is not None else normalised.display.split("@")[0],
            password=password, actor=None if scope is None else scope.actor,
            reason="registered")
        return ref.person_id

    def login(self, email: str, password: str, *, client: Client | None = None,
              remember: bool = False) -> IssuedToken:
        """A new session for the person whose email and password these are. Every failure
        is ``LoginFailed`` with the same message after the same argon2id work: unknown,
        invalid or erased email, wrong password. An outdated hash is upgraded first (a
        ``password_changed`` version, which ends the person's other sessions)."""
        details = details_json(client)  # checked before the password, like every input
        person = self._claimed(email)
        address = counted_address(client)
        digest = None if address is None else BlindIndexes.of(
            self.ledger.keyring).active.client_address_digest(address)
        if not self.ledger.database.transaction(
                lambda conn: self.throttle.count(conn, person, digest, self._locked)):
            self._hasher.verify_dummy(password)  # locked: the same answer, the same work
            raise self._login_failed(person, client, "password", "locked")
        match = self.ledger.check_password(email, password)
        if match is None:
            raise self._login_failed(person, client, "password", "credentials")
        version = match.version
        if match.needs_rehash:
            try:
                version = self.ledger.update_person(
                    match.person_id, password_hash=self._hasher.hash(password),
                    expect_version=version, actor="peoplelog",
                    reason="argon2id parameters upgraded").version
            except VersionConflict:
                raise self._login_failed(person, client, "password", "conflict") from None
        issued = self._issue(match.person_id, TokenKind.SESSION, details,
                             self._lifetime_of(remember),
                             idle=self.settings.session_idle, version=version,
                             event=EventKind.LOGIN, client=client,
                             facts={"method": "password", "remember": remember})
        if issued is None:  # a new version since the password matched: prove it again
            raise self._login_failed(person, client, "password", "conflict")
        self._clear_attempts(match.person_id)
        return issued

    def login_with_link(self, token: str, *, client: Client | None = None,
                        remember: bool = False) -> IssuedToken:
        """Use a sign-in link (``request_login_link``): a new session. ``InvalidToken`` for
        any bad, used, expired or ended link."""
        details = details_json(client)
        person, epoch = self.use_login_link(token)
        issued = self._issue(person, TokenKind.SESSION, details, self._lifetime_of(remember),
                             idle=self.settings.session_idle, epoch=epoch,
                             event=EventKind.LOGIN, client=client,
                             facts={"method": "link", "remember": remember})
        if issued is None:  # the credentials changed since the link was sent
            raise self._login_failed(person, client, "link", "conflict", InvalidToken)
        self._clear_attempts(person)
        return issued

    def login_with_code(self, email: str, code: str, *, client: Client | None = None,
                        remember: bool = False) -> IssuedToken:
        """A new session for the person whose address ``email`` is and who typed the code
        mailed to it (``request_login_code``). Every failure is ``LoginFailed``; each try
        counts towards the account's and the client's limits and the code's own."""
        details = details_json(client)
        person = self._claimed(email)
        address = counted_address(client)
        digest = None if address is None else BlindIndexes.of(
            self.ledger.keyring).active.client_address_digest(address)
        if not self.ledger.database.transaction(
                lambda conn: self.throttle.count(conn, person, digest, self._locked)):
            raise self._login_failed(person, client, "code", "locked")
        if person is None or not isinstance(code, str) or len(code) != CODE_DIGITS \
                or not (code.isascii() and code.isdigit()):
            raise self._login_failed(person, client, "code", "credentials")
        checks = Attestations.of(self.ledger.keyring)
        distributed = self.ledger.database.distributed

        def take(conn: Any) -> int | None:
            epoch = take_code(conn, checks, person, code, self.settings.code_attempts,
                              distributed=distributed)
            if epoch is not None:
                self.security_log.write(conn, EventKind.LINK_USED, person_id=person,
                                        actor=f"person:{person}", client=client,
                                        facts={"purpose": "login_code"})
            return epoch

        epoch = self.ledger.database.transaction(take)
        if epoch is None:
            raise self._login_failed(person, client, "code", "credentials")
        self._confirm(person)  # the code came to the address: it is confirmed
        issued = self._issue(person, TokenKind.SESSION, details, self._lifetime_of(remember),
                             idle=self.settings.session_idle, epoch=epoch,
                             event=EventKind.LOGIN, client=client,
                             facts={"method": "code", "remember": remember})
        if issued is None:
            raise self._login_failed(person, client, "code", "conflict")
        self._clear_attempts(person)
        return issued

    def change_password(self, scope: Scope, current: str, new: str, *,
                        client: Client | None = None) -> IssuedToken:
        """Change the scope's person's password: needs a fresh login (``scope.sudo()``) and
        the current password. Every session and token of the person ends with it; the
        caller gets a new session (rotated, not carried over)."""
        person = self._acting_person(scope)
        if not scope.sudo():
            raise NotPermitted("changing the password needs a fresh login")
        details = details_json(client)
        view = self.ledger.get_person(person)
        self.policy.check(new, ((view.email or "").split("@")[0], view.name or ""))
        email = view.email
        match = None if email is None else self.ledger.check_password(email, current)
        if match is None or match.person_id != person:
            raise LoginFailed(_LOGIN_FAILED)
        try:
            version = self.ledger.update_person(
                person, password=new, expect_version=match.version, actor=scope.actor,
                reason="password changed").version
        except VersionConflict:
            raise LoginFailed(_LOGIN_FAILED) from None
        self.security_log.record(EventKind.PASSWORD_CHANGED, person_id=person,
                                 session_id=scope.session_id, actor=scope.actor, client=client,
                                 facts={"version": version, "via": "change"})
        issued = self._issue(person, TokenKind.SESSION, details, self.settings.session_lifetime,
                             idle=self.settings.session_idle, version=version,
                             event=EventKind.SESSION_ISSUED, client=client, actor=scope.actor,
                             facts={"reason": "password_changed"})
        if issued is None:
            raise LoginFailed(_LOGIN_FAILED)
        return issued

    def clean_up(self, *, batch: int = CLEANUP_BATCH) -> CleanupSummary:
        """Delete expired, idle, ended and used sessions, tokens and links, mail sent more
        than a week ago and finished attempt counts, ``batch`` rows per transaction (safe
        while the application serves). Counts per kind."""
        summary = clean_up(self.ledger.database, window=self.settings.login_window,
                           batch=batch)
        self.security_log.record(EventKind.CLEANUP, actor="peoplelog", facts={
            kind.replace(" ", "_"): count for kind, count in summary.deleted.items()})
        return summary

    def send_pending(self, mailer: Mailer, *, limit: int | None = None) -> OutboxSummary:
        """Deliver the outbox's due messages through ``mailer`` (see ``send_pending``)."""
        return send_pending(self.ledger, mailer, limit=limit)

    # --- checking -------------------------------------------------------------------------

    def check(self, token: str, *, kind: TokenKind | None = None) -> Scope:
        """The ``Scope`` a session or access token (of ``kind``, when given) stands for.
        ``InvalidToken`` for any bad token: wrong, malformed, expired, idle too long,
        revoked, ended by a credential change, or of another kind."""
        digests = self._digests(token, kind)
        database = self.ledger.database
        if database.distributed:
            session = database.fetch_one(CHECK_SESSION, (digests.lookup,))
            row = None if session is None else check_row(
                session, database.fetch_one(CHECK_PERSON, (session[3], session[3])))
        else:
            row = database.fetch_one(CHECK, (digests.lookup,))
        checked = self._checked(token, digests, row)
        if isinstance(checked, _Refusal):
            raise self._refused(*checked)
        scope, touch = checked
        if touch:
            self._touch(digests.lookup)
        return scope

    async def check_async(self, token: str, *, kind: TokenKind | None = None) -> Scope:
        """``check`` for an event loop: the lookup runs on the database's asyncio pool
        (``Database.fetch_one_async``), so a server checks tokens without a thread; the
        rare writes (a refusal's event, the once-a-minute touch) go to a thread."""
        digests = self._digests(token, kind)
        database = self.ledger.database
        if database.distributed:
            session = await database.fetch_one_async(CHECK_SESSION, (digests.lookup,))
            row = None if session is None else check_row(session, await database.fetch_one_async(
                CHECK_PERSON, (session[3], session[3])))
        else:
            row = await database.fetch_one_async(CHECK, (digests.lookup,))
        checked = self._checked(token, digests, row)
        if isinstance(checked, _Refusal):
            raise await asyncio.to_thread(self._refused, *checked)
        scope, touch = checked
        if touch:
            await asyncio.to_thread(self._touch, digests.lookup)
        return scope

    async def check_bearer_async(self, token: str) -> Scope:
        """``check_bearer`` for an event loop (an API key is checked in a thread)."""
        if isinstance(token, str) and token.startswith(API_KEY_PREFIX):
            return await asyncio.to_thread(self.check_api_key, token)
        return await self.check_async(token)

    @staticmethod
    def _digests(token: str, kind: TokenKind | None) -> TokenDigests:
        digests = token_digests(token, kind)
        if digests.kind not in _CHECKED:
            raise InvalidToken("invalid token")
        return digests

    def _checked(self, token: str, digests: TokenDigests,
                 row: Any) -> tuple[Scope, bool] | _Refusal:
        """The scope of a session row found by its lookup (and whether to touch it), or
        why a stored session is refused; ``InvalidToken`` when there is none."""
        if row is None or row[4] != digests.kind:
            raise InvalidToken("invalid token")
        (seal, seal_key, session_id, person_id, found_kind, epoch, authenticated_at,
         last_used_at, expires_at, idle, now, head) = row
        grant = session_grant(token, session_id=session_id, person_id=person_id,
                              kind=found_kind, epoch=epoch, authenticated_at=authenticated_at,
                              expires_at=expires_at)
        if not Attestations.of(self.ledger.keyring).holds_grant(seal_key, bytes(seal), grant):
            return _Refusal(person_id, session_id, found_kind, "seal")
        if now >= expires_at or (idle is not None
                                 and now >= last_used_at + timedelta(seconds=idle)):
            return _Refusal(person_id, session_id, found_kind, "expired")
        return Scope(kind=found_kind, person_id=person_id, session_id=session_id,
                     authenticated_at=authenticated_at, expires_at=expires_at,
                     sudo_window=self.settings.sudo_window, epoch=epoch, head=head), (
            now - last_used_at >= self.settings.touch_interval)

    def _touch(self, lookup: bytes) -> None:
        self.ledger.database.transaction(lambda conn: conn.execute(TOUCH, (lookup,)))

    def check_bearer(self, token: str) -> Scope:
        """The ``Scope`` of any bearer token a caller may present: a service's API key
        (``check_api_key``), or a person's session or access token (``check``).
        ``InvalidToken`` for anything else."""
        if isinstance(token, str) and token.startswith(API_KEY_PREFIX):
            return self.check_api_key(token)
        return self.check(token)

    def log_out(self, scope: Scope) -> None:
        """End the session (or access token) the scope stands for (a logout)."""
        if scope.session_id is None:
            raise InvalidInput("an API key is no session: revoke it with revoke_api_key")
        self._delete("session_id = %s", (scope.session_id,),
                     self._ended(scope, "logout", scope.session_id))

    # --- sessions ---------------------------------------------------------------------------

    def logout(self, token: str) -> None:
        """End the session (or access token) ``token`` stands for."""
        scope = self.check(token)
        assert scope.session_id is not None
        self._delete("session_id = %s", (scope.session_id,),
                     self._ended(scope, "logout", scope.session_id))

    def sessions(self, scope: Scope, person_id: uuid.UUID | None = None) -> list[SessionInfo]:
        """The live sessions of the scope's person (a service names ``person_id``), oldest
        first, with their label, IP and user agent decrypted."""
        return self._list(self._person(scope, person_id), TokenKind.SESSION)

    def access_tokens(self, scope: Scope,
                      person_id: uuid.UUID | None = None) -> list[SessionInfo]:
        """The live personal access tokens of the scope's person, with their names."""
        return self._list(self._person(scope, person_id), TokenKind.ACCESS_TOKEN)

    def revoke(self, scope: Scope, session_id: uuid.UUID) -> bool:
        """End one session or access token (of the scope's own person, unless a service
        acts); False when there was none."""
        event = self._ended(scope, "revoked", session_id)
        if scope.service is not None:
            return self._delete("session_id = %s", (session_id,), event) > 0
        return self._delete("session_id = %s AND person_id = %s",
                            (session_id, scope.person_id), event) > 0

    def revoke_others(self, scope: Scope) -> int:
        """End every session of the scope's person but the scope's own."""
        person = self._person(scope, None)
        return self._delete("person_id = %s AND kind = 'session' AND session_id <> %s",
                            (person, scope.session_id), self._ended(scope, "others"))

    def revoke_all(self, scope: Scope, person_id: uuid.UUID | None = None) -> int:
        """Log the person out everywhere: end every session (access tokens stay)."""
        person = self._person(scope, person_id)
        return self._delete("person_id = %s AND kind = 'session'", (person,),
                            self._ended(scope, "all"))

    def create_access_token(self, scope: Scope, name: str, *,
                            expires_in: timedelta | None = None,
                            person_id: uuid.UUID | None = None) -> IssuedToken:
        """A named personal access token for scripts, for the scope's person (a service
        names ``person_id``), expiring after ``expires_in`` (default and limit: the
        settings)."""
        person = self._person(scope, person_id)
        if scope.service is None and not scope.sudo():  # a stolen session cannot outlive
            raise NotPermitted("creating an access token needs a fresh login")
        lifetime = self.settings.access_token_lifetime if expires_in is None else expires_in
        if lifetime <= timedelta(0) or lifetime > self.settings.access_token_max:
            raise InvalidInput(f"an access token lives at most "
                               f"{self.settings.access_token_max.days} days")
        issued = self._issue(person, TokenKind.ACCESS_TOKEN, details_json(None, name=name),
                             lifetime, idle=None, epoch=scope.epoch,
                             authenticated_at=scope.authenticated_at,
                             via=None if scope.service is not None else scope.session_id,
                             head=scope.head if scope.person_id == person else None,
                             event=EventKind.TOKEN_ISSUED, actor=scope.actor,
                             facts={"days": lifetime.days})
        if issued is None:
            raise NotPermitted("the session this scope stands for has ended")
        return issued

    # --- helpers ----------------------------------------------------------------------------

    def _claimed(self, email: str) -> uuid.UUID | None:
        """The person claiming ``email`` (confirmed), or None for an unknown or invalid
        address."""
        try:
            return self.ledger.find_person(email)
        except (InvalidInput, PersonNotFound):
            return None

    def _clear_attempts(self, person: uuid.UUID) -> None:
        self.ledger.database.transaction(lambda conn: Throttle.clear(conn, person))

    def _lifetime_of(self, remember: bool) -> timedelta:
        return (self.settings.remember_me_lifetime if remember
                else self.settings.session_lifetime)

    @staticmethod
    def _person(scope: Scope, person_id: uuid.UUID | None) -> uuid.UUID:
        if scope.service is not None:
            if person_id is None:
                raise InvalidInput("a service scope must name the person")
            return person_id
        if scope.person_id is None or (person_id is not None and person_id != scope.person_id):
            raise NotPermitted("a person's scope acts for that person only")
        return scope.person_id

    def _issue(self, person_id: uuid.UUID, kind: TokenKind, details: bytes,
               lifetime: timedelta, *, idle: timedelta | None, event: EventKind,
               facts: dict[str, str | int | bool | None], client: Client | None = None,
               actor: str | None = None, version: int | None = None,
               epoch: int | None = None, authenticated_at: datetime | None = None,
               via: uuid.UUID | None = None, head: int | None = None) -> IssuedToken | None:
        """Issue a sealed session or token under ``epoch`` (default: the person's epoch
        now) at the head ``version`` (default: ``head``, a hint, or the head now; tried
        again if it moves meanwhile), only while both are still the person's (see
        ``ISSUE``), with the ``event`` that issued it (its facts name the kind and the
        head); None otherwise."""
        sealed = self.ledger.encrypt_field(person_id, "client", details)
        hint = head
        for _ in range(1 if version is not None else 3):
            head, current, hint = version if version is not None else hint, epoch, None
            if head is None or current is None:
                found = self.ledger.database.fetch_one(EPOCH, (person_id, person_id))
                if found is None or found[2] is None:
                    return None
                head = int(found[2]) if head is None else head
                current = int(found[0]) if current is None else current
            session_id = uuid.uuid4()
            issued = self._issue_at(person_id, session_id, kind, sealed, lifetime, idle=idle,
                                    head=head, epoch=current,
                                    authenticated_at=authenticated_at, via=via,
                                    event=self.security_log.params(
                                        event, person_id=person_id, session_id=session_id,
                                        actor=actor or f"person:{person_id}", client=client,
                                        facts={**facts, "issued": kind.value, "head": head}))
            if issued is not None:
                return issued
        return None

    def _issue_at(self, person_id: uuid.UUID, session_id: uuid.UUID, kind: TokenKind,
                  sealed: bytes,
                  lifetime: timedelta, *, idle: timedelta | None, head: int, epoch: int,
                  authenticated_at: datetime | None, via: uuid.UUID | None,
                  event: dict[str, Any]) -> IssuedToken | None:
        now = datetime.now(UTC)
        authenticated = now if authenticated_at is None else authenticated_at
        expires_at = now + lifetime
        token, digests = new_token(kind)
        attestor = Attestor.of(self.ledger.keyring)
        seal = attestor.seal_grant(session_grant(
            token, session_id=session_id, person_id=person_id, kind=kind.value, epoch=epoch,
            authenticated_at=authenticated, expires_at=expires_at))
        params = {
            "lookup": digests.lookup, "seal": seal, "seal_key": attestor.key_id,
            "session_id": session_id, "kind": kind.value, "details": sealed,
            "authenticated_at": authenticated, "expires_at": expires_at,
            "idle": idle_seconds(idle), "person_id": person_id, "version": head,
            "epoch": epoch, "via": via, **event}

        def resume(conn: Any) -> Any:  # a commit whose outcome was lost: was it stored?
            return conn.execute("SELECT authenticated_at, expires_at FROM account_sessions"
                                " WHERE session_id = %s", (session_id,)).fetchone()

        row = self.ledger.database.autocommit(  # one statement: one round trip
            lambda cur: cur.execute(_ISSUE_LOGGED, params).fetchone(), resume=resume)
        if row is None:
            return None
        return IssuedToken(token=token, session_id=session_id, person_id=person_id,
                           kind=kind.value, authenticated_at=row[0], expires_at=row[1])

    def _list(self, person_id: uuid.UUID, kind: TokenKind) -> list[SessionInfo]:
        rows = self.ledger.database.run(
            lambda conn: conn.execute(LIST, (person_id, kind.value)).fetchall(),
            retry_lost=True)
        out = []
        for session_id, found_kind, blob, created, authenticated, used, expires in rows:
            details = {} if blob is None else read_details(
                self.ledger.decrypt_field(person_id, "client", bytes(blob)))
            out.append(SessionInfo(
                session_id=session_id, kind=found_kind,
                label=details.get("label") or details.get("name"), ip=details.get("ip"),
                user_agent=details.get("user_agent"), created_at=created,
                authenticated_at=authenticated, last_used_at=used, expires_at=expires))
        return out

    def _delete(self, where: str, params: tuple[Any, ...],
                event: Callable[[uuid.UUID, int], dict[str, Any]] | None = None) -> int:
        """Delete the sessions ``where`` says and, when any ended, write ``event`` (the
        ``ev_*`` parameters it gives for their person and count) in the same transaction."""
        query = (f"DELETE FROM account_sessions WHERE {where}"  # noqa: S608 - fixed clauses
                 " RETURNING person_id")

        def delete(conn: Any) -> int:
            people = conn.execute(query, params).fetchall()
            if people and event is not None:
                conn.execute(INSERT_EVENT, event(people[0][0], len(people)))
            return len(people)

        return self.ledger.database.transaction(delete)

    def _ended(self, scope: Scope, cause: str,
               session_id: uuid.UUID | None = None) -> Callable[[uuid.UUID, int],
                                                                dict[str, Any]]:
        """The event of sessions ended by ``scope``: ``session_ended`` of one
        (``session_id``), else ``sessions_ended`` with their count."""
        def event(person: uuid.UUID, count: int) -> dict[str, Any]:
            if session_id is not None:
                return self.security_log.params(
                    EventKind.SESSION_ENDED, person_id=person, session_id=session_id,
                    actor=scope.actor, facts={"cause": cause})
            return self.security_log.params(
                EventKind.SESSIONS_ENDED, person_id=person, actor=scope.actor,
                facts={"cause": cause, "count": count})
        return event

    def _refused(self, person: uuid.UUID, session_id: uuid.UUID, kind: str,
                 cause: str) -> InvalidToken:
        """Record that the token of a stored session or access token was refused; the
        opaque error to raise."""
        self.security_log.record(EventKind.TOKEN_REFUSED, person_id=person,
                                 session_id=session_id, facts={"token": kind, "cause": cause})
        return InvalidToken("invalid token")

    def _login_failed(self, person: uuid.UUID | None, client: Client | None, method: str,
                      cause: str, error: type[Exception] = LoginFailed) -> Exception:
        """Record a failed login (about the person when the address is someone's; about
        nobody, and nothing of the address, otherwise); the opaque error to raise."""
        self.security_log.record(EventKind.LOGIN_FAILED, person_id=person, client=client,
                                 facts={"method": method, "cause": cause})
        return error(_LOGIN_FAILED if error is LoginFailed else "invalid token")

    def _locked(self, conn: Any, person: uuid.UUID | None, scope: str) -> None:
        """The throttle locked an account (``person``) or a client address (nobody's)."""
        self.security_log.write(conn, EventKind.LOCKED, person_id=person, facts={
            "scope": scope, "minutes": int(self.settings.lockout.total_seconds() // 60)})

    # --- the security log -------------------------------------------------------------------

    def events(self, scope: Scope, *, person_id: uuid.UUID | None = None,
               kind: str | None = None, since: datetime | None = None,
               until: datetime | None = None, after: int = 0,
               limit: int = 100) -> EventPage:
        """Security events, oldest first, by person, kind and time window (``since``
        included, ``until`` not), ``limit`` a page from event ``after`` on. A person's
        scope reads only their own events; a service's reads any. Client IP and user agent
        are decrypted while the person's key exists."""
        if scope.service is None:
            person_id = self._person(scope, person_id)
        return read_events(self.ledger, person_id=person_id, kind=kind, since=since,
                           until=until, after=after, limit=limit)
