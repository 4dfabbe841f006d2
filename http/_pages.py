"""The hosted pages: register, log in (password, link or code), confirm, reset, settings,
and an investigator's view of one person's history. Server-rendered, no JavaScript; every
form carries a CSRF token (double-submitted: a cookie and a field that must match) and is
refused from another site."""

from __future__ import annotations

import contextlib
import hmac
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from peoplelog.accounts import IssuedToken, Scope, TokenKind
from peoplelog.projections import (
    Forensics,
    audit_database,
    prove_inclusion,
    stored_verifier_key,
)
from peoplelog.schema import (
    EmailTaken,
    InvalidInput,
    LoginFailed,
    NotFound,
    NotPermitted,
    PeoplelogError,
    RateLimited,
    Unauthenticated,
)

from ._api import clear_session_cookie, session_out, set_session_cookie
from ._auth import accounts_of, client_of, same_origin, settings_of
from ._settings import HttpSettings

__all__ = ["TEMPLATES", "router", "templates_for"]

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"
_CSRF_BYTES = 32
_NOTICES = {
    "password": "Your password was changed. Every other session has ended.",
    "email": "If the new address can be used, a link is on its way to it; the address "
             "changes when it is used.",
    "revoked": "The session has ended.",
    "confirmed": "Your email address is confirmed.",
    "email_changed": "Your email address was changed.",
    "reset": "Your password was changed. Log in with the new one.",
    "logged_out": "You are logged out.",
    "erased": "Your account was erased.",
}
_SENT = "If the address can be used, a message is on its way to it. Check your inbox."
_Text = Annotated[str, Form(max_length=1024)]
_Email = Annotated[str, Form(max_length=320)]
_Csrf = Annotated[str, Form(max_length=100)]


def templates_for(settings: HttpSettings) -> Jinja2Templates:
    """The built-in templates, each replaceable by a file of the same name in
    ``settings.templates``."""
    loaders: list[Any] = [FileSystemLoader(str(TEMPLATES))]
    if settings.templates is not None:
        loaders.insert(0, FileSystemLoader(str(settings.templates)))
    env = Environment(loader=ChoiceLoader(loaders), autoescape=select_autoescape(default=True))
    return Jinja2Templates(env=env)


def _render(request: Request, template: str, status: int = 200, **context: Any
            ) -> HTMLResponse:
    settings = settings_of(request)
    given = request.cookies.get(settings.csrf_cookie)
    fresh = given is None or len(given) > 100
    token = secrets.token_urlsafe(_CSRF_BYTES) if given is None or fresh else given
    templates: Jinja2Templates = request.app.state.peoplelog_templates
    response = templates.TemplateResponse(request, template, {"csrf": token, **context},
                                          status_code=status)
    if fresh:
        response.set_cookie(settings.csrf_cookie, token, path="/", httponly=True,
                            secure=settings.secure_cookies, samesite="strict")
    return response


def _check_form(request: Request, csrf: str) -> None:
    expected = request.cookies.get(settings_of(request).csrf_cookie)
    if (not expected or not hmac.compare_digest(expected.encode(), csrf.encode())
            or not same_origin(request)):
        raise NotPermitted("the form expired or came from another site: reload the page")


def _session(request: Request) -> Scope | None:
    token = request.cookies.get(settings_of(request).session_cookie)
    if not token:
        return None
    try:
        return accounts_of(request).check(token, kind=TokenKind.SESSION)
    except Unauthenticated:
        return None


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


def _logged_in(request: Request, issued: IssuedToken, remember: bool) -> Response:
    """Rotate: the session the browser had (if any) ends; the new one is set."""
    old = _session(request)
    if old is not None and old.session_id is not None:
        accounts_of(request).revoke(old, old.session_id)
    response = _redirect("/settings")
    set_session_cookie(request, response, issued, remember)
    return response


def _refused(request: Request, exc: PeoplelogError) -> HTMLResponse:
    status = 429 if isinstance(exc, RateLimited) else 403
    return _render(request, "message.html", status, title="Not done", message=exc.message)


# --- entry ---------------------------------------------------------------------------------

@router.get("/")
def home(request: Request) -> Response:
    return _redirect("/settings" if _session(request) else "/login")


@router.get("/register")
def register_page(request: Request) -> Response:
    return _render(request, "register.html")


@router.post("/register")
def register(request: Request, email: _Email, password: _Text, csrf: _Csrf,
             name: Annotated[str, Form(max_length=200)] = "") -> Response:
    try:
        _check_form(request, csrf)
        accounts = accounts_of(request)
        accounts.allow_request("sign_up", client=client_of(request), email=email)
        accounts.sign_up(email, password, name=name.strip() or None)
    except InvalidInput as exc:
        return _render(request, "register.html", 422, error=exc.message, email=email,
                       name=name)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _render(request, "message.html", title="Check your email", message=_SENT)


@router.get("/login")
def login_page(request: Request, notice: Annotated[str | None, Query(max_length=40)] = None
               ) -> Response:
    return _render(request, "login.html", notice=_NOTICES.get(notice or ""))


@router.post("/login")
def login(request: Request, email: _Email, password: _Text, csrf: _Csrf,
          remember: Annotated[bool, Form()] = False) -> Response:
    accounts = accounts_of(request)
    client = client_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("login", client=client, email=email)
        issued = accounts.login(email, password, client=client, remember=remember)
    except Unauthenticated as exc:
        return _render(request, "login.html", 401, error=exc.message, email=email)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _logged_in(request, issued, remember)


@router.post("/login/link-request")
def login_link_request(request: Request, email: _Email, csrf: _Csrf) -> Response:
    try:
        _check_form(request, csrf)
        accounts = accounts_of(request)
        accounts.allow_request("mail", client=client_of(request), email=email)
        accounts.request_login_link(email)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _render(request, "message.html", title="Check your email", message=_SENT)


@router.post("/login/code-request")
def login_code_request(request: Request, email: _Email, csrf: _Csrf) -> Response:
    try:
        _check_form(request, csrf)
        accounts = accounts_of(request)
        accounts.allow_request("mail", client=client_of(request), email=email)
        accounts.request_login_code(email)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _render(request, "code.html", email=email, notice=_SENT)


@router.post("/login/code")
def login_with_code(request: Request, email: _Email, code: Annotated[str, Form(max_length=12)],
                    csrf: _Csrf) -> Response:
    accounts = accounts_of(request)
    client = client_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("login", client=client, email=email)
        issued = accounts.login_with_code(email, code.strip(), client=client)
    except Unauthenticated as exc:
        return _render(request, "code.html", 401, email=email, error=exc.message)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _logged_in(request, issued, False)


def _link_page(request: Request, action: str, title: str, button: str, token: str,
               *, status: int = 200, **extra: Any) -> Response:
    return _render(request, "link.html", status, action=action, title=title, button=button,
                   token=token, **extra)


@router.get("/login/link")
def login_link_page(request: Request, token: Annotated[str, Query(max_length=200)] = ""
                    ) -> Response:
    return _link_page(request, "/login/link", "Sign in", "Sign in", token)


@router.post("/login/link")
def login_with_link(request: Request, token: _Text, csrf: _Csrf) -> Response:
    accounts = accounts_of(request)
    client = client_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("link", client=client)
        issued = accounts.login_with_link(token, client=client)
    except Unauthenticated:
        return _render(request, "message.html", 401, title="This link does not work",
                       message="It was used, has expired or was replaced. Ask for a new one.")
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _logged_in(request, issued, False)


@router.get("/confirm")
def confirm_page(request: Request, token: Annotated[str, Query(max_length=200)] = ""
                 ) -> Response:
    return _link_page(request, "/confirm", "Confirm your email address", "Confirm", token,
                      password=True)


def _use_link(request: Request, token: str, csrf: str, use: str, done: str) -> Response:
    accounts = accounts_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("link", client=client_of(request))
        getattr(accounts, use)(token)
    except Unauthenticated:
        return _render(request, "message.html", 401, title="This link does not work",
                       message="It was used, has expired or was replaced. Ask for a new one.")
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _redirect(f"/settings?notice={done}" if _session(request)
                     else f"/login?notice={done}")


@router.post("/confirm")
def confirm(request: Request, token: _Text, csrf: _Csrf,
            password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    accounts = accounts_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("link", client=client_of(request))
        accounts.confirm_email(token, password or None)
    except LoginFailed as exc:  # a sign-up's link: the password chosen then is needed
        return _link_page(request, "/confirm", "Confirm your email address", "Confirm",
                          token, password=True, error=exc.message, status=401)
    except Unauthenticated:
        return _render(request, "message.html", 401, title="This link does not work",
                       message="It was used, has expired or was replaced. Ask for a new one.")
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _redirect("/settings?notice=confirmed" if _session(request)
                     else "/login?notice=confirmed")


@router.get("/settings/confirm-email")
def confirm_email_change_page(request: Request,
                              token: Annotated[str, Query(max_length=200)] = "") -> Response:
    return _link_page(request, "/settings/confirm-email", "Confirm your new email address",
                      "Use this address", token)


@router.post("/settings/confirm-email")
def confirm_email_change(request: Request, token: _Text, csrf: _Csrf) -> Response:
    return _use_link(request, token, csrf, "confirm_email_change", "email_changed")


@router.get("/forgot-password")
def forgot_page(request: Request) -> Response:
    return _render(request, "forgot.html")


@router.post("/forgot-password")
def forgot(request: Request, email: _Email, csrf: _Csrf) -> Response:
    try:
        _check_form(request, csrf)
        accounts = accounts_of(request)
        accounts.allow_request("mail", client=client_of(request), email=email)
        accounts.request_password_reset(email)
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    return _render(request, "message.html", title="Check your email", message=_SENT)


@router.get("/reset-password")
def reset_page(request: Request, token: Annotated[str, Query(max_length=200)] = ""
               ) -> Response:
    return _render(request, "reset.html", token=token)


@router.post("/reset-password")
def reset(request: Request, token: _Text, password: _Text, csrf: _Csrf) -> Response:
    accounts = accounts_of(request)
    try:
        _check_form(request, csrf)
        accounts.allow_request("link", client=client_of(request))
        accounts.reset_password(token, password)
    except InvalidInput as exc:
        return _render(request, "reset.html", 422, token=token, error=exc.message)
    except Unauthenticated:
        return _render(request, "message.html", 401, title="This link does not work",
                       message="It was used, has expired or was replaced. Ask for a new one.")
    except (NotPermitted, RateLimited) as exc:
        return _refused(request, exc)
    response = _redirect("/login?notice=reset")
    clear_session_cookie(request, response)
    return response


# --- settings ------------------------------------------------------------------------------

def _settings_page(request: Request, scope: Scope, status: int = 200, **extra: Any
                   ) -> Response:
    accounts = accounts_of(request)
    assert scope.person_id is not None
    person = accounts.ledger.get_person(scope.person_id)
    sessions = [session_out(info, scope.session_id) for info in accounts.sessions(scope)]
    tokens = [session_out(info, None) for info in accounts.access_tokens(scope)]
    return _render(request, "settings.html", status, person=person, sessions=sessions,
                   tokens=tokens, sudo=scope.sudo(), **extra)


@router.get("/settings")
def settings_page(request: Request,
                  notice: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    scope = _session(request)
    if scope is None:
        return _redirect("/login")
    return _settings_page(request, scope, notice=_NOTICES.get(notice or ""))


def _settings_action(request: Request, csrf: str) -> Scope | Response:
    scope = _session(request)
    if scope is None:
        return _redirect("/login")
    try:
        _check_form(request, csrf)
    except NotPermitted as exc:
        return _refused(request, exc)
    return scope


@router.post("/settings/email")
def change_email(request: Request, email: _Email, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    accounts = accounts_of(request)
    try:
        accounts.allow_request("email_change", client=client_of(request), email=email)
        with contextlib.suppress(EmailTaken):  # the same answer: nobody learns who has it
            accounts.request_email_change(scope, email)
    except (InvalidInput, NotPermitted, RateLimited) as exc:
        return _settings_page(request, scope, 422, email_error=exc.message)
    return _redirect("/settings?notice=email")


@router.post("/settings/password")
def change_password(request: Request, current: _Text, new: _Text, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    try:
        issued = accounts_of(request).change_password(scope, current, new,
                                                      client=client_of(request))
    except (InvalidInput, NotPermitted, Unauthenticated) as exc:
        return _settings_page(request, scope, 422, password_error=exc.message)
    response = _redirect("/settings?notice=password")
    set_session_cookie(request, response, issued, remember=False)
    return response


@router.post("/settings/sessions/{session_id}/revoke")
def revoke_session(request: Request, session_id: uuid.UUID, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    accounts_of(request).revoke(scope, session_id)
    if session_id == scope.session_id:
        response = _redirect("/login?notice=logged_out")
        clear_session_cookie(request, response)
        return response
    return _redirect("/settings?notice=revoked")


@router.post("/settings/sessions/revoke-all")
def log_out_everywhere(request: Request, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    accounts_of(request).revoke_all(scope)
    response = _redirect("/login?notice=logged_out")
    clear_session_cookie(request, response)
    return response


@router.post("/logout")
def log_out(request: Request, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    if scope.session_id is not None:
        accounts_of(request).revoke(scope, scope.session_id)
    response = _redirect("/login?notice=logged_out")
    clear_session_cookie(request, response)
    return response


@router.post("/settings/erase")
def erase(request: Request, password: _Text, csrf: _Csrf) -> Response:
    scope = _settings_action(request, csrf)
    if isinstance(scope, Response):
        return scope
    try:
        accounts_of(request).erase_account(scope, password)
    except (NotPermitted, Unauthenticated) as exc:
        return _settings_page(request, scope, 422, erase_error=exc.message)
    response = _render(request, "message.html", title="Account erased",
                       message=_NOTICES["erased"])
    clear_session_cookie(request, response)
    return response


# --- the investigator's view ------------------------------------------------------------------

def _investigator(request: Request, person_id: uuid.UUID) -> Scope:
    """The person themself (session cookie), or a service whose API key holds
    ``people:read`` (bearer)."""
    header = request.headers.get("authorization", "")
    scope: Scope | None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("give the token as: Authorization: Bearer <token>")
        scope = accounts_of(request).check_bearer(token.strip())
    else:
        scope = _session(request)
    if scope is None:
        raise Unauthenticated("authentication required")
    if not (scope.allows("people:read") or (scope.service is None
                                            and scope.person_id == person_id)):
        raise NotPermitted("this needs the people:read permission, or to be this person")
    return scope


@router.get("/people/{person_id}")
def person_page(request: Request, person_id: uuid.UUID) -> Response:
    try:
        _investigator(request, person_id)
        ledger = accounts_of(request).ledger
        history = Forensics(ledger).history(person_id)
    except Unauthenticated:
        return _redirect("/login")
    except (NotPermitted, NotFound) as exc:
        status = 404 if isinstance(exc, NotFound) else 403
        return _render(request, "message.html", status, title="Not shown", message=exc.message)
    database = ledger.database
    report = database.run(lambda conn: audit_database(conn, person_id))
    head = history[-1]
    inclusion: dict[str, Any] = {"state": "pending"}
    try:
        proof = database.run(lambda conn: prove_inclusion(conn, person_id, head.version))
        key = database.run(stored_verifier_key)
        problems = ["no verifier key is stored"] if key is None else proof.verify(key)
        inclusion = {"state": "ok" if not problems else "bad", "problems": problems,
                     "tree_size": proof.tree_size}
    except NotFound:
        pass  # written since the latest checkpoint
    return _render(request, "person.html", person_id=person_id, history=history,
                   report=report, inclusion=inclusion)


@router.get("/docs")
def docs(request: Request) -> Response:
    """The API's operations, from the OpenAPI document, as a page (no script)."""
    schema = request.app.openapi()
    operations = [{"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                   "tags": op.get("tags", [])}
                  for path, item in schema.get("paths", {}).items()
                  for method, op in item.items()]
    return _render(request, "docs.html", operations=operations, info=schema.get("info", {}))
