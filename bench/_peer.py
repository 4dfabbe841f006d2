"""The peer event store: ``eventsourcing`` 9.5 with its PostgreSQL recorder, cipher on.

A ``Person`` aggregate carries the same fields a peoplelog version does (email, name). The
application is configured the documented way, through its environment: persistence module
``eventsourcing.postgres``, ``CIPHER_TOPIC`` = ``eventsourcing.cryptography:AESCipher`` and a
256-bit ``CIPHER_KEY``. Each stored event is JSON-transcoded and AES-GCM encrypted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate, event
from psycopg.conninfo import conninfo_to_dict

__all__ = ["PeerStore", "Person"]


class Person(Aggregate):
    @event("Registered")
    def __init__(self, email: str, name: str) -> None:
        self.email = email
        self.name = name

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name


class People(Application[Any]):
    pass


def peer_environment(url: str) -> dict[str, str]:
    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
        "CIPHER_KEY": AESCipher.create_key(num_bytes=32),
        "IS_SNAPSHOTTING_ENABLED": "n",
    }


class PeerStore:
    """An ``eventsourcing`` application over one database."""

    def __init__(self, url: str) -> None:
        self.app: Any = People(env=peer_environment(url))
        recorder = self.app.recorder
        self.cipher_on = self.app.mapper.cipher is not None
        self.recorder = f"{type(recorder).__module__}.{type(recorder).__name__}"

    def close(self) -> None:
        self.app.close()

    def create(self, rows: Sequence[tuple[str, str]]) -> list[Person]:
        """Register one aggregate per row, all in one transaction."""
        people = [Person(email=email, name=name) for email, name in rows]
        self.app.save(*people)
        return people

    def rename_each(self, people: Sequence[Person], count: int, tag: str) -> float:
        """``count`` renames, one event per transaction; returns seconds."""
        started = time.perf_counter()
        for i in range(count):
            person = people[i % len(people)]
            person.rename(f"{tag} renamed {i}")
            self.app.save(person)
        return time.perf_counter() - started

    def create_batches(self, rows: Sequence[tuple[str, str]], batch: int) -> float:
        """Register every row, ``batch`` aggregates per transaction; returns seconds."""
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            self.create(rows[start:start + batch])
        return time.perf_counter() - started
