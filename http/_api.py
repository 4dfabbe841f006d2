"""``/v1``: the accounts API (sign-up, login, sessions, links, passwords, access tokens).

The unauthenticated operations never tell whether an address is registered: sign-up and
link requests answer 202 with the same body, a failed login is the same 401, and each is
counted per client address and per address named (429 past the limits)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from peoplelog.accounts import IssuedToken, Scope, SessionInfo
from peoplelog.schema import EmailTaken, NotFound

from ._auth import accounts_of, client_of, current_scope, person_scope, settings_of
from ._models import (
    Accepted,
    AccessTokenRequest,
    ApiSession,
    CodeLogin,
    Confirmation,
    EmailChange,
    EmailRequest,
    Ended,
    LinkLogin,
    Login,
    PasswordChange,
    PasswordReset,
    ScopeOut,
    SessionOut,
    SignUp,
    TokenRequest,
)
from ._problems import PROBLEM_RESPONSES

__all__ = ["router", "scope_out", "session_out", "set_session_cookie"]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
_ACCEPTED = "If the address can be used, a message is on its way to it."
Person = Annotated[Scope, Depends(person_scope)]
Anyone = Annotated[Scope, Depends(current_scope)]


def issued_out(issued: IssuedToken) -> ApiSession:
    return ApiSession(token=issued.token, session_id=issued.session_id,
                      person_id=issued.person_id, kind=issued.kind,
                      authenticated_at=issued.authenticated_at, expires_at=issued.expires_at)


def scope_out(scope: Scope) -> ScopeOut:
    return ScopeOut(kind=scope.kind, person_id=scope.person_id, session_id=scope.session_id,
                    service=scope.service, authenticated_at=scope.authenticated_at,
                    expires_at=scope.expires_at, permissions=sorted(scope.permissions),
                    sudo=scope.sudo())


def session_out(info: SessionInfo, current: uuid.UUID | None) -> SessionOut:
    return SessionOut(session_id=info.session_id, kind=info.kind, label=info.label,
                      ip=info.ip, user_agent=info.user_agent, created_at=info.created_at,
                      authenticated_at=info.authenticated_at, last_used_at=info.last_used_at,
                      expires_at=info.expires_at, current=info.session_id == current)


def set_session_cookie(request: Request, response: Response, issued: IssuedToken,
                       remember: bool) -> None:
    """The session in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure`` unless turned
    off); kept across browser restarts only with "remember me"."""
    settings = settings_of(request)
    max_age = None
    if remember:
        max_age = max(0, int((issued.expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(settings.session_cookie, issued.token, max_age=max_age, path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="lax")


def clear_session_cookie(request: Request, response: Response) -> None:
    settings = settings_of(request)
    response.delete_cookie(settings.session_cookie, path="/", secure=settings.secure_cookies,
                           httponly=True, samesite="lax")


# --- unauthenticated ----------------------------------------------------------------------

@router.post("/accounts", status_code=202, response_model=Accepted, tags=["accounts"],
             summary="Sign up (the answer never tells whether the address was registered)")
def sign_up(body: SignUp, request: Request) -> Accepted:
    accounts = accounts_of(request)
    accounts.allow_request("sign_up", client=client_of(request), email=body.email)
    accounts.sign_up(body.email, body.password, name=body.name)
    return Accepted(detail=_ACCEPTED)


@router.post("/sessions", status_code=201, response_model=ApiSession, tags=["sessions"],
             summary="Log in with email and password")
def log_in(body: Login, request: Request) -> ApiSession:
    accounts = accounts_of(request)
    client = client_of(request)
    accounts.allow_request("login", client=client, email=body.email)
    return issued_out(accounts.login(body.email, body.password, client=client,
                                     remember=body.remember))


@router.post("/sessions/link", status_code=201, response_model=ApiSession, tags=["sessions"],
             summary="Log in with the token of a mailed sign-in link")
def log_in_with_link(body: LinkLogin, request: Request) -> ApiSession:
    accounts = accounts_of(request)
    client = client_of(request)
    accounts.allow_request("link", client=client)
    return issued_out(accounts.login_with_link(body.token, client=client,
                                               remember=body.remember))


@router.post("/sessions/code", status_code=201, response_model=ApiSession, tags=["sessions"],
             summary="Log in with a mailed six-digit code")
def log_in_with_code(body: CodeLogin, request: Request) -> ApiSession:
    accounts = accounts_of(request)
    client = client_of(request)
    accounts.allow_request("login", client=client, email=body.email)
    return issued_out(accounts.login_with_code(body.email, body.code, client=client,
                                               remember=body.remember))


def _requested(request: Request, action: str, email: str) -> None:
    accounts = accounts_of(request)
    accounts.allow_request("mail", client=client_of(request), email=email)
    getattr(accounts, action)(email)


@router.post("/login-links", status_code=202, response_model=Accepted, tags=["links"],
             summary="Mail a sign-in link")
def request_login_link(body: EmailRequest, request: Request) -> Accepted:
    _requested(request, "request_login_link", body.email)
    return Accepted(detail=_ACCEPTED)


@router.post("/login-codes", status_code=202, response_model=Accepted, tags=["links"],
             summary="Mail a six-digit sign-in code")
def request_login_code(body: EmailRequest, request: Request) -> Accepted:
    _requested(request, "request_login_code", body.email)
    return Accepted(detail=_ACCEPTED)


@router.post("/password-resets", status_code=202, response_model=Accepted, tags=["links"],
             summary="Mail a password-reset link")
def request_password_reset(body: EmailRequest, request: Request) -> Accepted:
    _requested(request, "request_password_reset", body.email)
    return Accepted(detail=_ACCEPTED)


@router.post("/password-resets/complete", status_code=204, tags=["links"],
             summary="Choose a new password with a reset link's token (ends every session)")
def reset_password(body: PasswordReset, request: Request) -> Response:
    accounts = accounts_of(request)
    accounts.allow_request("link", client=client_of(request))
    accounts.reset_password(body.token, body.password)
    return Response(status_code=204)


@router.post("/email-confirmations", status_code=204, tags=["links"],
             summary="Confirm an address with a confirmation link's token (and, after a "
                     "sign-up, the password chosen then, which becomes the account's)")
def confirm_email(body: Confirmation, request: Request) -> Response:
    accounts = accounts_of(request)
    accounts.allow_request("link", client=client_of(request))
    accounts.confirm_email(body.token, body.password)
    return Response(status_code=204)


@router.post("/email-changes/complete", status_code=204, tags=["links"],
             summary="Make the new address the account's with the link mailed to it")
def complete_email_change(body: TokenRequest, request: Request) -> Response:
    accounts = accounts_of(request)
    accounts.allow_request("link", client=client_of(request))
    accounts.confirm_email_change(body.token)
    return Response(status_code=204)


# --- the caller's own ---------------------------------------------------------------------

@router.get("/me", response_model=ScopeOut, tags=["sessions"],
            summary="The caller's scope")
async def me(scope: Anyone) -> Response:
    """Every backend asks this on every request: answered on the event loop, serialised
    once (no thread, no second validation)."""
    return Response(scope_out(scope).model_dump_json(), media_type="application/json")


@router.delete("/sessions/current", status_code=204, tags=["sessions"],
               summary="Log out: end the session (or access token) of this request")
def log_out(scope: Anyone, request: Request) -> Response:
    accounts_of(request).log_out(scope)
    response = Response(status_code=204)
    clear_session_cookie(request, response)
    return response


@router.get("/sessions", response_model=list[SessionOut], tags=["sessions"],
            summary="The person's live sessions")
def list_sessions(scope: Person, request: Request) -> list[SessionOut]:
    return [session_out(info, scope.session_id)
            for info in accounts_of(request).sessions(scope)]


@router.delete("/sessions", response_model=Ended, tags=["sessions"],
               summary="Log out everywhere: end every session of the person")
def end_all_sessions(scope: Person, request: Request) -> Ended:
    ended = accounts_of(request).revoke_all(scope)
    return Ended(ended=ended)


@router.delete("/sessions/{session_id}", status_code=204, tags=["sessions"],
               summary="End one of the person's sessions or access tokens")
def end_session(session_id: uuid.UUID, scope: Person, request: Request) -> Response:
    if not accounts_of(request).revoke(scope, session_id):
        raise NotFound(f"no live session {session_id}")
    return Response(status_code=204)


@router.post("/me/password", status_code=201, response_model=ApiSession, tags=["settings"],
             summary="Change the password (fresh login needed); every session ends and a "
                     "new one is returned")
def change_password(body: PasswordChange, scope: Person, request: Request,
                    response: Response) -> ApiSession:
    issued = accounts_of(request).change_password(scope, body.current, body.new,
                                                  client=client_of(request))
    if request.cookies.get(settings_of(request).session_cookie):
        set_session_cookie(request, response, issued, remember=False)
    return issued_out(issued)


@router.post("/me/email", status_code=202, response_model=Accepted, tags=["settings"],
             summary="Start an email change (fresh login needed): a link to the new address")
def change_email(body: EmailChange, scope: Person, request: Request) -> Accepted:
    accounts = accounts_of(request)
    accounts.allow_request("email_change", client=client_of(request), email=body.email)
    with contextlib.suppress(EmailTaken):  # the same answer: nobody learns who has it
        accounts.request_email_change(scope, body.email)
    return Accepted(detail="If the address can be used, a link is on its way to it.")


@router.post("/me/confirmation", status_code=202, response_model=Accepted, tags=["settings"],
             summary="Mail a new confirmation link to the person's address")
def request_confirmation(scope: Person, request: Request) -> Accepted:
    accounts_of(request).request_confirmation(scope)
    return Accepted(detail="A confirmation link is on its way.")


@router.get("/access-tokens", response_model=list[SessionOut], tags=["access tokens"],
            summary="The person's personal access tokens")
def list_access_tokens(scope: Person, request: Request) -> list[SessionOut]:
    return [session_out(info, None) for info in accounts_of(request).access_tokens(scope)]


@router.post("/access-tokens", status_code=201, response_model=ApiSession,
             tags=["access tokens"], summary="A named personal access token, shown once")
def create_access_token(body: AccessTokenRequest, scope: Person,
                        request: Request) -> ApiSession:
    days = None if body.expires_in_days is None else timedelta(days=body.expires_in_days)
    return issued_out(accounts_of(request).create_access_token(scope, body.name,
                                                               expires_in=days))
