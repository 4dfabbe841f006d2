"""A FastAPI application that lets peoplelog say who is calling (docs/HTTP.md §6).

Each route asks for a ``Scope`` with ``Depends(current_scope)`` (a person's session
cookie or bearer token, or a service's API key) or ``Depends(require_permission(...))``
(an API key holding that permission); a request without one gets a 401 or 403 problem
document. Whatever the route writes through peoplelog is attributed to ``scope.actor``.

Run it beside ``peoplelog serve`` (same database and keyring)::

    python docs/examples/notes_app.py            # http://127.0.0.1:8001/notes
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from peoplelog.accounts import Accounts, Scope
from peoplelog.http import current_scope, require_permission, use_accounts


def build(accounts: Accounts) -> FastAPI:
    app = FastAPI(title="notes")
    use_accounts(app, accounts)
    notes: dict[str, list[str]] = {}

    @app.get("/notes")
    def my_notes(scope: Annotated[Scope, Depends(current_scope)]) -> dict[str, Any]:
        return {"actor": scope.actor, "notes": notes.get(scope.actor, [])}

    @app.post("/notes")
    def add_note(text: str, scope: Annotated[Scope, Depends(current_scope)]
                 ) -> dict[str, Any]:
        notes.setdefault(scope.actor, []).append(text[:500])
        return {"actor": scope.actor, "notes": notes[scope.actor]}

    @app.get("/admin/people/{person_id}/name")
    def name_of(person_id: str,
                scope: Annotated[Scope, Depends(require_permission("people:read"))]
                ) -> dict[str, Any]:
        return {"name": accounts.ledger.get_person(person_id).name, "asked_by": scope.actor}

    return app


if __name__ == "__main__":
    import uvicorn

    with Accounts.open() as opened:
        uvicorn.run(build(opened), host="127.0.0.1", port=8001, access_log=False)
