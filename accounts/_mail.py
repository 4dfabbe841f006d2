"""Mail: the messages the accounts layer sends, their default texts (replaceable), and the
mailers that deliver them: SMTP (``smtplib``), a directory of ``.eml`` files, the console."""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, fields
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from peoplelog.schema import ConfigurationError

__all__ = ["ConsoleMailer", "FileMailer", "Mailer", "Message", "MessageTexts", "SmtpMailer",
           "mailer_from_url"]


_SENDER = "peoplelog <no-reply@localhost>"


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one address. Its repr shows neither the address nor the text."""

    to: str
    subject: str
    body: str
    account_exists_subject: str = "Someone tried to sign up with your address"
    account_exists_body: str = ("Someone tried to create an account with this address, which "
                                "already has one. If it was you, sign in, or reset your "
                                "password here:\n\n{link}\n\nIf it was not you, ignore this "
                                "message.\n")
    sender: str = "peoplelog <no-reply@localhost>"

    def __repr__(self) -> str:
        return "Message(...)"



    def to_json(self) -> bytes:
        return json.dumps({"to": self.to, "subject": self.subject, "body": self.body,
                           "sender": self.sender}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Message:
        value = json.loads(data)
        return cls(to=value["to"], subject=value["subject"], body=value["body"],
                   sender=value.get("sender", _SENDER))

    def as_email(self) -> EmailMessage:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.sender, self.to, self.subject
        mail["Message-ID"] = f"<{uuid.uuid4()}@peoplelog>"
        plain = self.body.isascii() and all(len(line) <= 998 for line in self.body.splitlines())
        if plain:  # links stay whole and greppable (no quoted-printable soft breaks)
            mail.set_content(self.body, cte="7bit")
        else:
            mail.set_content(self.body)
        return mail


@dataclass(frozen=True)
class MessageTexts:
    """Subjects and bodies of each message, as ``str.format`` templates with ``{link}``
    (and ``{minutes}``, the link's lifetime). Replace any of them:
    ``MessageTexts(reset_subject="...")``."""

    login_subject: str = "Your sign-in link"
    login_body: str = ("Use this link to sign in. It works once, for {minutes} minutes:\n\n"
                       "{link}\n\nIf you did not ask for it, ignore this message.\n")
    login_code_subject: str = "Your sign-in code"
    login_code_body: str = ("Your sign-in code is {code}. It works once, for {minutes} "
                            "minutes.\n\nIf you did not ask for it, ignore this message.\n")
    confirm_subject: str = "Confirm your email address"
    confirm_body: str = ("Confirm your email address with this link ({minutes} minutes, "
                         "once):\n\n{link}\n")
    reset_subject: str = "Reset your password"
    reset_body: str = ("Use this link to choose a new password. It works once, for "
                       "{minutes} minutes:\n\n{link}\n\nIf you did not ask for it, ignore "
                       "this message: your password stays as it is.\n")
    change_email_subject: str = "Confirm your new email address"
    change_email_body: str = ("Use this link to make this your account's address ({minutes} "
                              "minutes, once):\n\n{link}\n")
    email_change_notice_subject: str = "Your account's email address is being changed"
    email_change_notice_body: str = ("Someone signed in to your account asked to change its "
                                     "address. It changes only when the link sent to the new "
                                     "address is used. If this was not you, reset your "
                                     "password.\n")
    account_exists_subject: str = "Someone tried to sign up with your address"
    account_exists_body: str = ("Someone tried to create an account with this address, which "
                                "already has one. If it was you, sign in, or reset your "
                                "password here:\n\n{link}\n\nIf it was not you, ignore this "
                                "message.\n")
    sender: str = "peoplelog <no-reply@localhost>"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"message text {item.name} must be non-empty text")


class Mailer(Protocol):
    """Delivers one message, or raises (the outbox retries it later)."""

    def send(self, message: Message) -> None: ...


class SmtpMailer:
    """SMTP through the standard library: ``smtp://[user:password@]host[:port]`` (with
    ``?starttls=1`` to upgrade), or ``smtps://`` (TLS from the start)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigurationError("an SMTP URL is smtp://host[:port] or smtps://host[:port]")
        self._tls = parts.scheme == "smtps"
        self._starttls = parse_qs(parts.query).get("starttls", ["0"])[0] in ("1", "true")
        self._host = parts.hostname
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("the SMTP URL's port is not a number") from None
        self._port = port or (465 if self._tls else 25)
        self._user = None if parts.username is None else unquote(parts.username)
        self._password = None if parts.password is None else unquote(parts.password)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self._host!r}, port={self._port})"

    def send(self, message: Message) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP = (
            smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=context)
            if self._tls else smtplib.SMTP(self._host, self._port, timeout=self._timeout))
        with client:
            if self._starttls:
                client.starttls(context=context)
            if self._user is not None:
                client.login(self._user, self._password or "")
            client.send_message(message.as_email())


class FileMailer:
    """Writes each message as an ``.eml`` file in a directory (mode 0600): for development
    and the demo."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileMailer({str(self.directory)!r})"

    def send(self, message: Message) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        with path.open("xb") as handle:
            with contextlib.suppress(OSError):
                path.chmod(0o600)
            handle.write(message.as_email().as_bytes())


class ConsoleMailer:
    """Prints each message (for development only: it shows the link)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: Message) -> None:
        stream = self._stream or sys.stdout
        stream.write(message.as_email().as_string() + "\n")
        stream.flush()


def mailer_from_url(url: str) -> Mailer:
    """``smtp://…``/``smtps://…``, ``file:///a/directory`` or ``console:``."""
    scheme = urlsplit(url).scheme
    if scheme in ("smtp", "smtps"):
        return SmtpMailer(url)
    if scheme == "file":
        return FileMailer(unquote(urlsplit(url).path))
    if scheme == "console":
        return ConsoleMailer()
    raise ConfigurationError("a mail URL is smtp://, smtps://, file:///directory or console:")
