"""``/v1/people`` (administration) and ``/v1/audit`` (key-free checks), for services with
an API key holding the permission each operation names."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from peoplelog.accounts import EventPage, Scope
from peoplelog.fields import Attestations, KeyPurpose
from peoplelog.ledger import check_keyring
from peoplelog.projections import (
    ChangesPage,
    CheckpointSigner,
    Forensics,
    InclusionProof,
    VersionDiff,
    audit_database,
    export_ledger,
    make_checkpoint,
    prove_inclusion,
)
from peoplelog.schema import HistoryEntry, InvalidInput, PersonView, VersionRef

from ._auth import accounts_of, require_permission
from ._models import PersonChange, PersonNew
from ._problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
Reader = Annotated[Scope, Depends(require_permission("people:read"))]
Writer = Annotated[Scope, Depends(require_permission("people:write"))]
Eraser = Annotated[Scope, Depends(require_permission("people:erase"))]
Auditor = Annotated[Scope, Depends(require_permission("audit:read"))]
Sequencer = Annotated[Scope, Depends(require_permission("audit:write"))]
_QUEUE_DEPTH = 64
_DONE = object()


@router.post("/people", status_code=201, response_model=VersionRef, tags=["people"],
             summary="Create a person (version 0)")
def create_person(body: PersonNew, scope: Writer, request: Request) -> VersionRef:
    return accounts_of(request).ledger.create_person(
        email=body.email, name=body.name, password=body.password, verified=body.verified,
        actor=scope.actor, reason=body.reason)


@router.get("/people/{person_id}", response_model=PersonView, tags=["people"],
            summary="A person as they are, at a version, or as they were at a time")
def show_person(person_id: uuid.UUID, scope: Reader, request: Request,
                version: Annotated[int | None, Query(ge=0)] = None,
                as_of: Annotated[datetime | None, Query()] = None) -> PersonView:
    ledger = accounts_of(request).ledger
    if as_of is not None:
        if version is not None:
            raise InvalidInput("give version or as_of, not both")
        if as_of.tzinfo is None:
            raise InvalidInput("as_of needs a time zone, e.g. 2024-05-01T12:00:00Z")
        return Forensics(ledger).as_of(person_id, as_of)
    return ledger.get_person(person_id, version)


@router.patch("/people/{person_id}", response_model=VersionRef, tags=["people"],
              summary="Change a person: a new version")
def update_person(person_id: uuid.UUID, body: PersonChange, scope: Writer,
                  request: Request) -> VersionRef:
    changes = body.model_dump(exclude_none=True, exclude={"expect_version", "reason"})
    if not changes:
        raise InvalidInput("give at least one of email, name, password, verified")
    return accounts_of(request).ledger.update_person(
        person_id, expect_version=body.expect_version, actor=scope.actor,
        reason=body.reason, **changes)


@router.delete("/people/{person_id}", response_model=VersionRef, tags=["people"],
               summary="Erase a person (crypto-shredding; the chain still verifies)")
def erase_person(person_id: uuid.UUID, scope: Eraser, request: Request,
                 reason: Annotated[str | None, Query(max_length=500)] = None) -> VersionRef:
    return accounts_of(request).ledger.erase_person(person_id, actor=scope.actor,
                                                    reason=reason)


@router.get("/people/{person_id}/history", response_model=list[HistoryEntry],
            tags=["people"], summary="Every version: who, when, why, what changed")
def person_history(person_id: uuid.UUID, scope: Reader,
                   request: Request) -> list[HistoryEntry]:
    return Forensics(accounts_of(request).ledger).history(person_id)


@router.get("/people/{person_id}/diff", response_model=VersionDiff, tags=["people"],
            summary="Which fields changed between two versions")
def person_diff(person_id: uuid.UUID, scope: Reader, request: Request,
                v1: Annotated[int, Query(ge=0, alias="from")],
                v2: Annotated[int, Query(ge=0, alias="to")]) -> VersionDiff:
    return Forensics(accounts_of(request).ledger).diff(person_id, v1, v2)


@router.get("/changes", response_model=ChangesPage, tags=["people"],
            summary="Versions written in a time window, newest first, paged")
def list_changes(scope: Reader, request: Request, *,
                 since: Annotated[datetime | None, Query()] = None,
                 until: Annotated[datetime | None, Query()] = None,
                 actor: Annotated[str | None, Query(max_length=200)] = None,
                 person: Annotated[uuid.UUID | None, Query()] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 cursor: Annotated[str | None, Query(max_length=200)] = None) -> ChangesPage:
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput("times need a time zone, e.g. 2024-05-01T12:00:00Z")
    return Forensics(accounts_of(request).ledger).changes(
        since=since, until=until, actor=actor, person_id=person, limit=limit, before=cursor)


# --- audit --------------------------------------------------------------------------------

@router.post("/audit/checkpoint", tags=["audit"],
             summary="Sequence pending versions and events, sign a checkpoint")
def checkpoint(scope: Sequencer, request: Request) -> dict[str, Any]:
    ledger = accounts_of(request).ledger
    keyring = ledger.keyring
    signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    writers = Attestations.of(keyring)
    ledger.database.run(lambda conn: check_keyring(conn, keyring))
    result = ledger.database.run(lambda conn: make_checkpoint(conn, signer, writers=writers))
    return {"size": result.checkpoint.size, "sequenced": result.sequenced,
            "refused": result.refused, "events": result.events,
            "refused_events": result.refused_events, "new": result.new,
            "checkpoint": result.checkpoint.text}


class _Abandoned(Exception):
    """The client went away: the work stops and gives its connection back."""


def _streamed(work: Callable[[Callable[[str], None]], Any]) -> Iterator[str]:
    """Run ``work`` in a thread and yield what it writes, as it writes it. When the client
    disconnects (the generator is closed), the next write raises and the work ends."""
    lines: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
    stop = threading.Event()
    failure: list[BaseException] = []

    def write(text: str) -> None:
        while not stop.is_set():
            try:
                lines.put(text, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Abandoned

    def run() -> None:
        try:
            work(write)
        except _Abandoned:
            return
        except BaseException as exc:
            failure.append(exc)
        with contextlib.suppress(_Abandoned):
            write(_DONE)  # type: ignore[arg-type]

    threading.Thread(target=run, name="peoplelog-stream", daemon=True).start()
    try:
        while (item := lines.get()) is not _DONE:
            yield str(item)
        if failure:
            kind = getattr(failure[0], "kind", "error")
            yield json.dumps({"type": "error", "kind": kind}) + "\n"
    finally:
        stop.set()


@router.get("/audit/verify", tags=["audit"],
            summary="Verify every chain, the log and the security log (NDJSON, streamed)",
            response_class=StreamingResponse,
            responses={"200": {"content": {"application/x-ndjson": {}},
                               "description": "progress lines, then findings, then the "
                                              "report"}})
def verify(scope: Auditor, request: Request,
           person: Annotated[uuid.UUID | None, Query()] = None) -> StreamingResponse:
    database = accounts_of(request).ledger.database

    def work(write: Callable[[str], None]) -> None:
        def progress(done: int) -> None:
            write(json.dumps({"type": "progress", "checked": done}) + "\n")

        report = database.run(lambda conn: audit_database(conn, person, progress=progress))
        for finding in report.findings:
            write(json.dumps({"type": "finding", **finding.model_dump(mode="json")}) + "\n")
        summary = report.model_dump(mode="json", exclude={"findings"})
        write(json.dumps({"type": "report", **summary}) + "\n")

    return StreamingResponse(_streamed(work), media_type="application/x-ndjson")


@router.get("/audit/proof/{person_id}/{version}", response_model=InclusionProof,
            tags=["audit"], summary="An inclusion proof of one version in the latest "
                                    "checkpoint")
def proof(person_id: uuid.UUID, version: Annotated[int, Path(ge=0)], scope: Auditor,
          request: Request) -> InclusionProof:
    database = accounts_of(request).ledger.database
    return database.run(lambda conn: prove_inclusion(conn, person_id, version))


class _Writer:
    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def write(self, text: str) -> int:
        self._write(text)
        return len(text)

    def flush(self) -> None:
        return None


@router.get("/audit/export", tags=["audit"], response_class=StreamingResponse,
            summary="The whole ledger and log, key-free, as JSON lines (streamed)",
            responses={"200": {"content": {"application/x-ndjson": {}},
                               "description": "the peoplelog export"}})
def export(scope: Auditor, request: Request) -> StreamingResponse:
    database = accounts_of(request).ledger.database

    def work(write: Callable[[str], None]) -> None:
        database.run(lambda conn: export_ledger(conn, _Writer(write)))  # type: ignore[arg-type]

    return StreamingResponse(_streamed(work), media_type="application/x-ndjson")


@router.get("/audit/events", tags=["audit"], summary="Security events, oldest first, paged")
def events(scope: Auditor, request: Request, *,
           person: Annotated[uuid.UUID | None, Query()] = None,
           kind: Annotated[str | None, Query(max_length=40)] = None,
           since: Annotated[datetime | None, Query()] = None,
           until: Annotated[datetime | None, Query()] = None,
           after: Annotated[int, Query(ge=0)] = 0,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    page: EventPage = accounts_of(request).events(scope, person_id=person, kind=kind,
                                                  since=since, until=until, after=after,
                                                  limit=limit)
    return page.as_dict()
