"""The accounts layer's security events: written (sealed, with what they record) and read.

The event format is ``peoplelog.ledger``'s (``SecurityEvent``); the sequencer logs the
events and ``verify`` checks them (``peoplelog.projections``). Here: which events the
flows write, their client details encrypted under the person's data key (an event about
nobody keeps none), and the paged query of ``Accounts.events``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peoplelog.fields import Attestor
from peoplelog.ledger import INSERT_EVENT, EventKind, Ledger, SecurityEvent, event_params
from peoplelog.schema import DecryptionFailed, InvalidInput, PersonErased

from ._sessions import Client, client_address

__all__ = ["MAX_PAGE", "EventInfo", "EventKind", "EventPage", "SecurityLog", "client_detail",
           "insert_event_from", "read_events"]

MAX_PAGE = 1000
_COLUMNS = ("id, cid, kind, at, person_id, session_id, actor, facts, detail, writer_key,"
            " seal")
_VALUES = ("%(ev_id)s, %(ev_cid)s, %(ev_kind)s, %(ev_at)s, %(ev_person)s, %(ev_session)s,"
           " %(ev_actor)s, %(ev_facts)s, %(ev_detail)s, %(ev_key)s, %(ev_seal)s")


def insert_event_from(source: str) -> str:
    """An ``INSERT`` of the ``ev_*`` event that writes it once per row of ``source`` (a
    CTE of the same statement): the event exists exactly when what it records does."""
    return (f"INSERT INTO security_events ({_COLUMNS})"  # noqa: S608 - constants
            f" SELECT {_VALUES} FROM {source}")


def client_detail(client: Client | None) -> bytes | None:
    """What an event keeps of the client (IP and user agent; encrypted by the caller),
    None when there is nothing."""
    if client is None or (client.ip is None and client.user_agent is None):
        return None
    return json.dumps({"ip": client_address(client),
                       "user_agent": client.user_agent}).encode()


class SecurityLog:
    """Builds and writes the events of one ``Ledger``'s accounts."""

    __slots__ = ("_ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __repr__(self) -> str:
        return "SecurityLog(...)"

    def params(self, kind: EventKind, *, person_id: uuid.UUID | None = None,
               session_id: uuid.UUID | None = None, actor: str | None = None,
               facts: Mapping[str, str | int | bool | None] | None = None,
               client: Client | None = None) -> dict[str, Any]:
        """The ``ev_*`` parameters of a new event (see ``INSERT_EVENT``). The client's
        details are kept only for an event about a person, under their data key."""
        plain = None if person_id is None else client_detail(client)
        detail = None if plain is None or person_id is None else self._ledger.encrypt_field(
            person_id, "client", plain)
        event = SecurityEvent.new(kind, person_id=person_id, session_id=session_id,
                                  actor=actor, facts=facts, detail=detail)
        return event_params(event, Attestor.of(self._ledger.keyring))

    def write(self, conn: Any, kind: EventKind, **what: Any) -> None:
        """Write an event in the caller's transaction."""
        conn.execute(INSERT_EVENT, self.params(kind, **what))

    def record(self, kind: EventKind, **what: Any) -> None:
        """Write an event in a transaction of its own."""
        params = self.params(kind, **what)
        self._ledger.database.transaction(lambda conn: conn.execute(INSERT_EVENT, params))


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One security event as read back; ``ip`` and ``user_agent`` decrypted when the
    person's key is still there (never after erasure). Its repr shows neither."""

    seq: int
    id: uuid.UUID
    kind: str
    at: datetime
    person_id: uuid.UUID | None
    session_id: uuid.UUID | None
    actor: str | None
    facts: dict[str, Any] | None
    cid: str
    position: int | None
    ip: str | None = None
    user_agent: str | None = None

    def __repr__(self) -> str:
        return f"EventInfo(seq={self.seq}, kind={self.kind!r}, person_id={self.person_id})"

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": str(self.id), "kind": self.kind,
                "at": self.at.isoformat(),
                "person_id": None if self.person_id is None else str(self.person_id),
                "session_id": None if self.session_id is None else str(self.session_id),
                "actor": self.actor, "facts": self.facts, "cid": self.cid,
                "position": self.position, "ip": self.ip, "user_agent": self.user_agent}


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events, oldest first; ``next_after`` continues it (None at the end)."""

    events: list[EventInfo]
    next_after: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"events": [e.as_dict() for e in self.events], "next_after": self.next_after}


def read_events(ledger: Ledger, *, person_id: uuid.UUID | None = None,
                kind: str | None = None, since: datetime | None = None,
                until: datetime | None = None, after: int = 0,
                limit: int = 100) -> EventPage:
    """Events matching every filter given, numbered after ``after``, at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"a page holds 1 to {MAX_PAGE} events")
    if after < 0:
        raise InvalidInput("after is an event number (0 or more)")
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput("give times with a time zone")
    if kind is not None and kind not in {k.value for k in EventKind}:
        raise InvalidInput(f"unknown event kind {kind!r} (one of: "
                           f"{', '.join(k.value for k in EventKind)})")
    where = ["e.seq > %(after)s"]
    params: dict[str, Any] = {"after": after, "limit": limit + 1}
    for column, op, value in (("person_id", "=", person_id), ("kind", "=", kind),
                              ("at", ">=", since), ("at", "<", until)):
        if value is not None:
            name = f"p{len(params)}"
            where.append(f"e.{column} {op} %({name})s")
            params[name] = value
    query = ("SELECT e.seq, e.id, e.kind, e.at, e.person_id, e.session_id, e.actor, e.facts,"  # noqa: S608
             " e.detail, e.cid, l.position FROM security_events e"
             " LEFT JOIN log_entries l ON l.event = e.seq"
             f" WHERE {' AND '.join(where)} ORDER BY e.seq LIMIT %(limit)s")
    rows = ledger.database.run(lambda conn: conn.execute(query, params).fetchall(),
                               retry_lost=True)
    more = len(rows) > limit
    events = [_info(ledger, row) for row in rows[:limit]]
    return EventPage(events, events[-1].seq if more and events else None)


def _info(ledger: Ledger, row: tuple[Any, ...]) -> EventInfo:
    seq, event_id, kind, at, person, session, actor, facts, blob, cid, position = row
    ip = agent = None
    if blob is not None and person is not None:
        try:
            detail = json.loads(ledger.decrypt_field(person, "client", bytes(blob)))
        except (PersonErased, DecryptionFailed, ValueError):
            detail = {}
        if isinstance(detail, dict):
            ip, agent = detail.get("ip"), detail.get("user_agent")
    return EventInfo(seq=int(seq), id=event_id, kind=kind, at=at, person_id=person,
                     session_id=session, actor=actor, facts=facts, cid=cid,
                     position=None if position is None else int(position), ip=ip,
                     user_agent=agent)
