"""One-time links: a login link, an email confirmation, a password reset and an email change,
each issued together with its message in one transaction (the outbox) and consumed once.

Requests for a link name an address; whether it is registered never shows: the answer is
the same (None), and it comes no sooner than ``request_floor``, known address or not. No
mail is queued for an address nobody has."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from peoplelog.fields import (
    Attestations,
    Attestor,
    BlindIndexes,
    NormalisedEmail,
    PasswordHasher,
    normalise_email,
)
from peoplelog.ledger import INSERT_EVENT, Ledger
from peoplelog.schema import (
    EmailTaken,
    InvalidInput,
    InvalidToken,
    LoginFailed,
    NotPermitted,
    PersonNotFound,
    RateLimited,
)

from ._codes import ISSUE_CODE, code_params, new_code, still_bound
from ._events import EventKind, SecurityLog
from ._mail import Message, MessageTexts
from ._policy import PasswordPolicy
from ._scope import Scope
from ._sessions import Client, counted_address
from ._settings import AccountSettings
from ._throttle import Throttle, count_request
from ._tokens import TokenKind, link_grant, new_token, token_digests

__all__ = ["LINK_PATHS", "OneTimeLinks", "Purpose"]

Purpose = str
LINK_PATHS = {"login": "/login/link", "confirm": "/confirm", "reset": "/reset-password",
              "change_email": "/settings/confirm-email"}
"""Where each link points, under ``AccountSettings.base_url``."""

_ISSUE = """
INSERT INTO account_one_time (lookup, seal, seal_key, person_id, purpose, sent_to, epoch,
                              new_email, expires_at)
SELECT %(lookup)s, %(seal)s, %(seal_key)s, %(person_id)s, %(purpose)s, %(sent_to)s,
       %(epoch)s, %(new_email)s, %(expires_at)s
WHERE EXISTS (SELECT 1 FROM email_lookup
              WHERE blind_index = %(sent_to)s AND person_id = %(person_id)s)
  AND (SELECT coalesce(max(epoch), 0) FROM account_credentials
       WHERE person_id = %(person_id)s) = %(epoch)s
RETURNING expires_at
"""
"""A sealed token bound to the address it is sent to: issued only while that address's
claim is the person's and their credential epoch is still the one sealed. (Two
subqueries, each by its table's own key, not a join: on a Citus cluster the claim and the
epoch are on different shards.)"""

_EPOCH = "SELECT coalesce((SELECT epoch FROM account_credentials WHERE person_id = %s), 0)"
_QUEUE = "INSERT INTO account_outbox (message_id, person_id, message) VALUES (%s, %s, %s)"

_TAKE = """
SELECT t.seal, t.seal_key, t.person_id, t.purpose, t.new_email, t.epoch, t.sent_to,
       t.expires_at
FROM account_one_time AS t
LEFT JOIN account_credentials AS c ON c.person_id = t.person_id
WHERE t.lookup = %s AND t.expires_at > now() AND t.epoch = coalesce(c.epoch, 0)
  AND EXISTS (SELECT 1 FROM email_lookup AS l
              WHERE l.person_id = t.person_id AND l.blind_index = t.sent_to)
FOR UPDATE OF t
"""
"""The token's row, locked: of concurrent uses, the first takes the lock and deletes the
row; the others then find nothing."""
_TAKE_ALONE = """
SELECT seal, seal_key, person_id, purpose, new_email, epoch, sent_to, expires_at
FROM account_one_time WHERE lookup = %s AND expires_at > now()
FOR UPDATE
"""
"""``_TAKE`` on a Citus cluster: the row locked alone, then ``still_bound`` checked."""


@dataclass(frozen=True, slots=True)
class _Used:
    person_id: uuid.UUID
    new_email: bytes | None
    epoch: int
    pending_password: str | None = None
    """A sign-up's confirmation: the password hash chosen at sign-up (checked)."""


_WRONG_PASSWORD = object()


class OneTimeLinks:
    """The link flows of ``Accounts`` (a mixin: it uses the ledger, settings and texts)."""

    ledger: Ledger
    settings: AccountSettings
    texts: MessageTexts
    policy: PasswordPolicy
    security_log: SecurityLog
    _hasher: PasswordHasher

    # --- requests -------------------------------------------------------------------------

    def sign_up(self, email: str, password: str, *, name: str | None = None) -> None:
        """Register ``email`` for someone not logged in, without telling whether it is
        already registered: a new person is mailed a confirmation link; the owner of a
        taken address is mailed a notice with a reset link instead. The same answer (None)
        after the same argon2id work, no sooner than ``request_floor``. Bad input (the
        address's form, a weak password) is ``InvalidInput``, which tells nothing.

        The password is not the person's yet: its hash waits, sealed and encrypted, in the
        confirmation link, and becomes theirs when the link is used with it
        (``confirm_email(token, password)``). So whoever signs up with someone else's
        address can never log in with it, and the address's owner, who does not know
        that password, cannot confirm it for them (they reset the password instead)."""
        normalised = normalise_email(email)
        local = normalised.display.split("@")[0]
        self.policy.check(password, (local, name or ""))
        started = time.monotonic()
        try:
            phc = self._hasher.hash(password)  # whatever happens next: the same work
            new = uuid.uuid4()
            try:
                person = self.ledger.create_person(
                    email=normalised.display, name=local if name is None else name,
                    actor=f"person:{new}", reason="signed up", person_id=new).person_id
            except EmailTaken:
                try:
                    owner = self.ledger.find_person(normalised.display)
                except PersonNotFound:  # erased or moved meanwhile: nobody to tell
                    return
                self._send_link(owner, normalised, "reset", texts="account_exists")
                return
            self._send_link(person, normalised, "confirm", pending_password=phc)
        finally:
            rest = self.settings.request_floor.total_seconds() - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def erase_account(self, scope: Scope, password: str) -> None:
        """The person erases their own account (crypto-shredding, ``Ledger.erase_person``):
        needs a fresh login (``scope.sudo()``) and the current password; every session
        ends with it. ``LoginFailed`` for a wrong password."""
        person = self._acting_person(scope)
        if not scope.sudo():
            raise NotPermitted("erasing the account needs a fresh login")
        email = self.ledger.get_person(person).email
        match = None if email is None else self.ledger.check_password(email, password)
        if match is None or match.person_id != person:
            raise LoginFailed("invalid email or password")
        self.ledger.erase_person(person, actor=scope.actor, reason="erased by the person")

    def allow_request(self, action: str, *, client: Client | None = None,
                      email: str | None = None) -> None:
        """Count one unauthenticated request (``action``: ``sign_up``, ``login``, ``link``…)
        for the client address and for the address it names, in the PostgreSQL counters
        the login throttle uses (so every server process agrees); ``RateLimited`` past
        ``requests_per_client`` or ``requests_per_address`` within ``login_window``. Keys
        are keyed digests: an address is counted whether or not it is registered."""
        indexes = BlindIndexes.of(self.ledger.keyring).active
        label = b"r" + action.encode()[:32] + b"\x00"
        keys: list[tuple[bytes, int]] = []
        address = counted_address(client)
        if address is not None:
            keys.append((label + b"c" + indexes.client_address_digest(address),
                         self.settings.requests_per_client))
        if email is not None:
            with contextlib.suppress(InvalidInput):  # the request answers for a bad address
                keys.append((label + b"e" + indexes.digest(normalise_email(email)),
                             self.settings.requests_per_address))
        if not keys:
            return
        window = self.settings.login_window

        def count(conn: Any) -> bool:
            return all([count_request(conn, key, window) <= limit
                        for key, limit in sorted(keys)])

        if not self.ledger.database.transaction(count):
            raise RateLimited("too many requests: try again later")

    def request_login_link(self, email: str) -> None:
        """Mail a sign-in link (``login_link_lifetime``) to ``email`` if a person has it;
        with ``signup_by_link``, an address nobody has is registered first (by email only)
        and gets its link too."""
        self._request(email, "login")

    def request_login_code(self, email: str) -> None:
        """Mail a six-digit sign-in code (``login_link_lifetime``, ``code_attempts`` tries)
        to ``email`` if a person has it (or, with ``signup_by_link``, registers it first);
        ``Accounts.login_with_code`` takes it back with the address."""
        self._request(email, "login_code")

    def request_password_reset(self, email: str) -> None:
        """Mail a password-reset link (``reset_link_lifetime``) to ``email`` if a person
        has it (also when their account is locked: the reset is the way back in)."""
        self._request(email, "reset")

    def request_confirmation(self, scope: Scope) -> None:
        """Mail a confirmation link to the scope's person's current address."""
        person = self._acting_person(scope)
        email = self.ledger.get_person(person).email
        if email is None:
            raise InvalidInput("the person has no email address to confirm")
        self._send_link(person, normalise_email(email), "confirm")

    def request_email_change(self, scope: Scope, new_email: str) -> None:
        """Start an email change: needs a fresh login (``scope.sudo()``); mails a link to
        the new address and a notice to the current one. The address changes (and the
        lookup moves) only when the link is used."""
        person = self._acting_person(scope)
        if not scope.sudo():
            raise NotPermitted("changing the email needs a fresh login")
        new = normalise_email(new_email)
        current = self.ledger.get_person(person).email
        if current is None:
            raise InvalidInput("the person has no email address to change")
        try:
            holder = self.ledger.find_person(new.display)
        except PersonNotFound:
            holder = None
        if holder == person:
            raise InvalidInput("that is already the account's address")
        if holder is not None:
            raise EmailTaken("email is already registered to another person")
        notice = Message(to=current, subject=self.texts.email_change_notice_subject,
                         body=self.texts.email_change_notice_body, sender=self.texts.sender)
        self._send_link(person, normalise_email(current), "change_email", new_email=new,
                        extra=notice)

    # --- using a link ---------------------------------------------------------------------

    def use_login_link(self, token: str) -> tuple[uuid.UUID, int]:
        """The person a sign-in link is for (it is then used up) and the credential epoch
        it was issued under; ``Accounts.login_with_link`` opens the session. The address
        it came to is confirmed by its use."""
        used = self._take(token, "login")
        self._confirm(used.person_id)
        return used.person_id, used.epoch

    def confirm_email(self, token: str, password: str | None = None) -> uuid.UUID:
        """Use a confirmation link: an ``email_verified`` version (none if already). The
        link of a sign-up (``sign_up``) needs the password chosen then, which becomes the
        person's in the same version; ``LoginFailed`` (the link kept) when it is missing
        or another."""
        used = self._take(token, "confirm", password=password)
        if used.pending_password is not None:
            version = self.ledger.update_person(
                used.person_id, password_hash=used.pending_password, verified=True,
                actor=f"person:{used.person_id}",
                reason="email confirmed: the sign-up's password set").version
            self.security_log.record(EventKind.EMAIL_CONFIRMED, person_id=used.person_id,
                                     actor=f"person:{used.person_id}",
                                     facts={"version": version, "via": "sign_up"})
        else:
            self._confirm(used.person_id)
        return used.person_id

    def reset_password(self, token: str, new_password: str) -> uuid.UUID:
        """Use a reset link: a ``password_changed`` version, which ends every session and
        token of the person. The password is checked before the link is used up."""
        self.policy.check(new_password)
        used = self._take(token, "reset")
        actor = f"person:{used.person_id}"
        version = self.ledger.update_person(used.person_id, password=new_password,
                                            actor=actor, reason="password reset").version

        def cleared(conn: Any) -> None:  # the way back in while locked
            Throttle.clear(conn, used.person_id)
            self.security_log.write(conn, EventKind.PASSWORD_CHANGED,
                                    person_id=used.person_id, actor=actor,
                                    facts={"version": version, "via": "reset"})

        self.ledger.database.transaction(cleared)
        return used.person_id

    def confirm_email_change(self, token: str) -> uuid.UUID:
        """Use an email-change link: the new address becomes the person's (a version; the
        lookup moves), confirmed; every session and token of the person ends."""
        used = self._take(token, "change_email")
        assert used.new_email is not None
        email = self.ledger.decrypt_field(used.person_id, "email", used.new_email).decode()
        actor = f"person:{used.person_id}"
        version = self.ledger.update_person(used.person_id, email=email, verified=True,
                                            actor=actor, reason="email changed").version
        self.security_log.record(EventKind.EMAIL_CHANGED, person_id=used.person_id,
                                 actor=actor, facts={"version": version})
        return used.person_id

    # --- helpers ----------------------------------------------------------------------------

    def _acting_person(self, scope: Scope) -> uuid.UUID:
        if scope.person_id is None or scope.service is not None:
            raise NotPermitted("only a person's own session can do this")
        return scope.person_id

    def _sign_up(self, email: NormalisedEmail) -> uuid.UUID:
        try:
            return self.ledger.create_person(
                email=email.display, name=email.display.split("@")[0],
                reason="signed up by link").person_id
        except EmailTaken:  # a concurrent request registered it first
            return self.ledger.find_person(email.display)

    def _lifetime(self, purpose: Purpose) -> timedelta:
        return {"login": self.settings.login_link_lifetime,
                "confirm": self.settings.confirm_link_lifetime,
                "reset": self.settings.reset_link_lifetime,
                "change_email": self.settings.change_email_link_lifetime}[purpose]

    def _request(self, email: str, purpose: Purpose) -> None:
        started = time.monotonic()
        try:
            try:
                normalised = normalise_email(email)
                person = self.ledger.find_person(normalised.display)
            except InvalidInput:
                return  # the same answer, after the same floor
            except PersonNotFound:
                if purpose not in ("login", "login_code") or not self.settings.signup_by_link:
                    return
                person = self._sign_up(normalised)
            if purpose == "login_code":
                self._send_code(person, normalised)
            else:
                self._send_link(person, normalised, purpose)
        finally:
            rest = self.settings.request_floor.total_seconds() - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def _send_link(self, person: uuid.UUID, to: NormalisedEmail, purpose: Purpose, *,
                   new_email: NormalisedEmail | None = None,
                   extra: Message | None = None, texts: str | None = None,
                   pending_password: str | None = None) -> None:
        token, digests = new_token(TokenKind.ONE_TIME)
        lifetime = self._lifetime(purpose)
        expires_at = datetime.now(UTC) + lifetime
        link = f"{self.settings.base_url}{LINK_PATHS[purpose]}?token={quote(token)}"
        minutes = int(lifetime.total_seconds() // 60)
        subject = getattr(self.texts, f"{texts or purpose}_subject")
        body = getattr(self.texts, f"{texts or purpose}_body").format(link=link,
                                                                     minutes=minutes)
        recipient = new_email.display if new_email is not None else to.display
        messages = [Message(to=recipient, subject=subject, body=body, sender=self.texts.sender)]
        if extra is not None:
            messages.append(extra)
        sealed = [self.ledger.encrypt_field(person, "mail", m.to_json()) for m in messages]
        sealed_new = None if new_email is None else self.ledger.encrypt_field(
            person, "email", new_email.display.encode())
        if pending_password is not None:  # a sign-up's: the link's payload, like a new email
            sealed_new = self.ledger.encrypt_field(person, "password",
                                                   pending_password.encode())
        sent_to = BlindIndexes.of(self.ledger.keyring).active.digest(to)
        attestor = Attestor.of(self.ledger.keyring)
        event = self.security_log.params(EventKind.LINK_ISSUED, person_id=person,
                                         facts={"purpose": purpose})

        def issue(conn: Any) -> bool:
            row = conn.execute(_EPOCH, (person,)).fetchone()
            epoch = int(row[0])
            seal = attestor.seal_grant(link_grant(
                token, person_id=person, purpose=purpose, sent_to=sent_to, epoch=epoch,
                new_email=sealed_new, expires_at=expires_at))
            row = conn.execute(_ISSUE, {
                "lookup": digests.lookup, "seal": seal, "seal_key": attestor.key_id,
                "purpose": purpose, "new_email": sealed_new, "expires_at": expires_at,
                "person_id": person, "sent_to": sent_to, "epoch": epoch}).fetchone()
            if row is None:
                return False
            for blob in sealed:
                conn.execute(_QUEUE, (uuid.uuid4(), person, blob))
            conn.execute(INSERT_EVENT, event)
            return True

        self.ledger.database.transaction(issue)  # nothing queued when the address moved

    def _send_code(self, person: uuid.UUID, to: NormalisedEmail) -> None:
        code = new_code()
        lifetime = self.settings.login_link_lifetime
        expires_at = datetime.now(UTC) + lifetime
        body = self.texts.login_code_body.format(
            code=code, minutes=int(lifetime.total_seconds() // 60))
        sealed = self.ledger.encrypt_field(person, "mail", Message(
            to=to.display, subject=self.texts.login_code_subject, body=body,
            sender=self.texts.sender).to_json())
        sent_to = BlindIndexes.of(self.ledger.keyring).active.digest(to)
        attestor = Attestor.of(self.ledger.keyring)
        event = self.security_log.params(EventKind.LINK_ISSUED, person_id=person,
                                         facts={"purpose": "login_code"})

        def issue(conn: Any) -> None:
            epoch = int(conn.execute(_EPOCH, (person,)).fetchone()[0])
            params = code_params(attestor, code, person=person, sent_to=sent_to, epoch=epoch,
                                 expires_at=expires_at)
            if conn.execute(ISSUE_CODE, params).fetchone() is not None:
                conn.execute(_QUEUE, (uuid.uuid4(), person, sealed))
                conn.execute(INSERT_EVENT, event)

        self.ledger.database.transaction(issue)

    def _take(self, token: str, purpose: Purpose, *, password: str | None = None) -> _Used:
        try:
            digests = token_digests(token, TokenKind.ONE_TIME)
        except InvalidToken:
            self.security_log.record(EventKind.TOKEN_REFUSED,
                                     facts={"token": "link", "purpose": purpose})
            raise

        checks = Attestations.of(self.ledger.keyring)

        distributed = self.ledger.database.distributed

        def take(conn: Any) -> _Used | uuid.UUID | object | None:
            row = conn.execute(_TAKE_ALONE if distributed else _TAKE,
                               (digests.lookup,)).fetchone()
            if row is None or (distributed and not still_bound(conn, row[2], row[5],
                                                               bytes(row[6]))):
                return None
            seal, seal_key, person, found, new_email, epoch, sent_to, expires_at = row
            if found != purpose:
                return uuid.UUID(str(person))
            new_email = None if new_email is None else bytes(new_email)
            grant = link_grant(token, person_id=person, purpose=purpose,
                               sent_to=bytes(sent_to), epoch=epoch, new_email=new_email,
                               expires_at=expires_at)
            if not checks.holds_grant(seal_key, bytes(seal), grant):
                return uuid.UUID(str(person))
            pending = None
            if purpose == "confirm" and new_email is not None:  # a sign-up's password
                pending = self.ledger.decrypt_field(person, "password",
                                                    new_email).decode()
                if password is None or not self._hasher.verify(pending, password):
                    return _WRONG_PASSWORD  # the link stays for its rightful user
                new_email = None
            conn.execute("DELETE FROM account_one_time WHERE lookup = %s", (digests.lookup,))
            self.security_log.write(conn, EventKind.LINK_USED, person_id=person,
                                    actor=f"person:{person}", facts={"purpose": purpose})
            return _Used(person, new_email, epoch, pending)

        used = self.ledger.database.transaction(take)
        if used is _WRONG_PASSWORD:
            raise LoginFailed("give the password chosen at sign-up to confirm this address")
        if not isinstance(used, _Used):  # about the link's person when it named one
            self.security_log.record(EventKind.TOKEN_REFUSED,
                                     person_id=used if isinstance(used, uuid.UUID) else None,
                                     facts={"token": "link", "purpose": purpose})
            raise InvalidToken("invalid token")
        return used

    def _confirm(self, person: uuid.UUID) -> None:
        if self.ledger.get_person(person).verified_at is None:
            version = self.ledger.update_person(person, verified=True,
                                                actor=f"person:{person}",
                                                reason="email confirmed").version
            self.security_log.record(EventKind.EMAIL_CONFIRMED, person_id=person,
                                     actor=f"person:{person}", facts={"version": version})
