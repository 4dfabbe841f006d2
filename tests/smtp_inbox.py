"""A real SMTP server on localhost (aiosmtpd) for the tests that follow mail: what it
received, and the link tokens read out of it."""

from __future__ import annotations

import email
import email.message
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller

from peoplelog.accounts import SmtpMailer

TOKEN = re.compile(r"token=(plo1_[A-Za-z0-9_-]{43})")
CODE = re.compile(r"code is (\d{6})")


class Inbox:
    """What the SMTP server received: (recipients, parsed message)."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[email.message.Message]:
        return [m for rcpts, m in self.mails if address.lower() in (r.lower() for r in rcpts)]

    def body(self, message: email.message.Message) -> str:
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode()

    def token_for(self, address: str) -> str:
        body = self.body(self.to(address)[-1])
        found = TOKEN.search(body)
        assert found is not None, body
        return found[1]

    def code_for(self, address: str) -> str:
        body = self.body(self.to(address)[-1])
        found = CODE.search(body)
        assert found is not None, body
        return found[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, SmtpMailer]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, SmtpMailer(f"smtp://127.0.0.1:{port}")
    finally:
        controller.stop()
