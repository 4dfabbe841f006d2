"""CLI commands of the accounts layer: ``account register|login``, ``session
check|list|revoke|revoke-all``, ``token create|list|cleanup``, ``mail send-pending``,
``events`` and ``retire-events``. Passwords
and tokens are read from stdin only, never from arguments; a token is printed once."""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._audit import checkpoint_signer
from ._common import (
    EXIT_OK,
    AddCommand,
    add_group,
    default_actor,
    open_ledger,
    read_password,
    wants_json,
)

if TYPE_CHECKING:
    from peoplelog.accounts import Accounts, IssuedToken, SessionInfo

__all__ = ["register"]


@contextlib.contextmanager
def _accounts() -> Iterator[Accounts]:
    from peoplelog.accounts import Accounts  # noqa: PLC0415 - see cli/_common.py

    with Accounts(open_ledger()) as accounts:
        yield accounts


def _read_token() -> str:
    from peoplelog.schema.errors import InvalidToken  # noqa: PLC0415

    raw = sys.stdin.buffer.readline()
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidToken("invalid token") from None


def _issued(args: argparse.Namespace, issued: IssuedToken) -> tuple[Any, int]:
    if wants_json(args):
        return issued.as_dict(), EXIT_OK
    return (f"{issued.token}\nsession {issued.session_id} of person {issued.person_id}, "
            f"expires {issued.expires_at.isoformat()}"), EXIT_OK


def _listed(args: argparse.Namespace, rows: list[SessionInfo]) -> tuple[Any, int]:
    if wants_json(args):
        return [row.as_dict() for row in rows], EXIT_OK
    lines = [f"{'id':<36} {'label':<20} {'ip':<16} {'last used':<25} expires"]
    for row in rows:
        lines.append(f"{row.session_id!s:<36} {(row.label or '-')[:20]:<20} "
                     f"{(row.ip or '-')[:16]:<16} {row.last_used_at.isoformat()[:25]:<25} "
                     f"{row.expires_at.isoformat()}")
    return "\n".join(lines), EXIT_OK


def _service(args: argparse.Namespace) -> Any:
    from peoplelog.accounts import Scope  # noqa: PLC0415

    return Scope.for_service(default_actor(getattr(args, "actor", None)))


def cmd_register(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import normalise_email  # noqa: PLC0415
    from peoplelog.ledger import check_name  # noqa: PLC0415

    normalise_email(args.email)
    if args.name is not None:
        check_name(args.name)
    password = read_password(args)
    with _accounts() as accounts:
        person = accounts.register(args.email, password=password, name=args.name,
                                   scope=_service(args))
    if wants_json(args):
        return {"person_id": str(person)}, EXIT_OK
    return str(person), EXIT_OK


def cmd_login(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.accounts import Client  # noqa: PLC0415

    password = read_password(args) or ""
    with _accounts() as accounts:
        issued = accounts.login(args.email, password, client=Client(label=args.label),
                                remember=args.remember)
    return _issued(args, issued)


def _read_two() -> tuple[str, str]:
    """A link's token and a new password: the first two lines of stdin."""
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    token = _read_token()
    raw = sys.stdin.buffer.readline()
    try:
        password = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise InvalidInput("password on stdin is not valid UTF-8") from None
    if not password:
        raise InvalidInput("no new password on the second line of stdin")
    return token, password


def _requested(args: argparse.Namespace) -> tuple[Any, int]:
    text = "if the address belongs to an account, a message is on its way"
    return ({"requested": True} if wants_json(args) else text), EXIT_OK


def cmd_request_login_link(args: argparse.Namespace) -> tuple[Any, int]:
    with _accounts() as accounts:
        accounts.request_login_link(args.email)
    return _requested(args)


def cmd_request_login_code(args: argparse.Namespace) -> tuple[Any, int]:
    with _accounts() as accounts:
        accounts.request_login_code(args.email)
    return _requested(args)


def cmd_login_code(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.accounts import Client  # noqa: PLC0415

    code = _read_token()
    with _accounts() as accounts:
        issued = accounts.login_with_code(args.email, code, client=Client(label=args.label))
    return _issued(args, issued)


def cmd_request_reset(args: argparse.Namespace) -> tuple[Any, int]:
    with _accounts() as accounts:
        accounts.request_password_reset(args.email)
    return _requested(args)


def cmd_request_confirmation(args: argparse.Namespace) -> tuple[Any, int]:
    token = _read_token()
    with _accounts() as accounts:
        accounts.request_confirmation(accounts.check(token))
    return ({"requested": True} if wants_json(args) else "a confirmation link is on its way"
            ), EXIT_OK


def cmd_login_link(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.accounts import Client  # noqa: PLC0415

    token = _read_token()
    with _accounts() as accounts:
        issued = accounts.login_with_link(token, client=Client(label=args.label))
    return _issued(args, issued)


def cmd_confirm(args: argparse.Namespace) -> tuple[Any, int]:
    token = _read_token()
    with _accounts() as accounts:
        person = accounts.confirm_email(token)
    return ({"person_id": str(person), "confirmed": True} if wants_json(args)
            else f"confirmed the address of {person}"), EXIT_OK


def cmd_reset(args: argparse.Namespace) -> tuple[Any, int]:
    token, password = _read_two()
    with _accounts() as accounts:
        person = accounts.reset_password(token, password)
    return ({"person_id": str(person), "reset": True} if wants_json(args)
            else f"new password set for {person}; every session ended"), EXIT_OK


def cmd_session_check(args: argparse.Namespace) -> tuple[Any, int]:
    token = _read_token()
    with _accounts() as accounts:
        scope = accounts.check(token)
    result = scope.as_dict()
    if wants_json(args):
        return result, EXIT_OK
    return (f"{scope.kind} {scope.session_id} of person {scope.person_id}, authenticated "
            f"{result['authenticated_at']}, expires {result['expires_at']}"), EXIT_OK


def cmd_session_list(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    person = check_person_id(args.person_id)
    with _accounts() as accounts:
        rows = accounts.sessions(_service(args), person)
    return _listed(args, rows)


def _session_id(text: str) -> uuid.UUID:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415 - the same uuid rules

    return check_person_id(text)


def cmd_session_revoke(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.schema.errors import NotFound  # noqa: PLC0415

    session = _session_id(args.session_id)
    with _accounts() as accounts:
        if not accounts.revoke(_service(args), session):
            raise NotFound(f"no live session or token {session}")
    return ({"session_id": str(session), "revoked": True} if wants_json(args)
            else f"revoked {session}"), EXIT_OK


def cmd_session_revoke_all(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    person = check_person_id(args.person_id)
    with _accounts() as accounts:
        count = accounts.revoke_all(_service(args), person)
    return ({"person_id": str(person), "revoked": count} if wants_json(args)
            else f"revoked {count} session(s)"), EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    person = check_person_id(args.person_id)
    with _accounts() as accounts:
        issued = accounts.create_access_token(_service(args), args.name,
                                              expires_in=args.expires_in, person_id=person)
    return _issued(args, issued)


def cmd_token_list(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415

    person = check_person_id(args.person_id)
    with _accounts() as accounts:
        rows = accounts.access_tokens(_service(args), person)
    return _listed(args, rows)


def cmd_token_cleanup(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.accounts import CLEANUP_BATCH  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    with _accounts() as accounts:
        summary = accounts.clean_up(batch=args.batch_size or CLEANUP_BATCH)
    if wants_json(args):
        return summary.as_dict(), EXIT_OK
    return ", ".join(f"{kind} {count}" for kind, count in summary.as_dict().items()), EXIT_OK


def cmd_mail_send_pending(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.accounts import AccountSettings, mailer_from_url  # noqa: PLC0415
    from peoplelog.schema.errors import ConfigurationError  # noqa: PLC0415

    url = AccountSettings.from_environment().smtp_url
    if not url:
        raise ConfigurationError("set PEOPLELOG_SMTP_URL (smtp://host:port, smtps://..., "
                                 "file:///a/directory or console:)")
    mailer = mailer_from_url(url)
    with _accounts() as accounts:
        summary = accounts.send_pending(mailer, limit=args.limit)
    if wants_json(args):
        return summary.as_dict(), EXIT_OK
    return (f"sent {summary.sent}, failed {summary.failed} (retried later), "
            f"{summary.pending} pending"), EXIT_OK


def cmd_events(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id, parse_timestamp  # noqa: PLC0415

    person = None if args.person is None else check_person_id(args.person)
    since = None if args.since is None else parse_timestamp(args.since, "--since")
    until = None if args.until is None else parse_timestamp(args.until, "--until")
    with _accounts() as accounts:
        page = accounts.events(_service(args), person_id=person, kind=args.kind, since=since,
                               until=until, after=args.after, limit=args.limit)
    if wants_json(args):
        return page.as_dict(), EXIT_OK
    lines = [f"{'seq':>8} {'at':<32} {'kind':<16} {'person':<36} facts"]
    for event in page.events:
        facts = " ".join(f"{k}={v}" for k, v in (event.facts or {}).items())
        lines.append(f"{event.seq:>8} {event.at.isoformat():<32} {event.kind:<16} "
                     f"{event.person_id or '-'!s:<36} {facts}")
    if page.next_after is not None:
        lines.append(f"more: --after {page.next_after}")
    return "\n".join(lines), EXIT_OK


def cmd_retire_events(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import Attestations, Attestor  # noqa: PLC0415
    from peoplelog.ledger import parse_timestamp  # noqa: PLC0415
    from peoplelog.projections import retire_events  # noqa: PLC0415

    before = parse_timestamp(args.before, "--before")
    actor = default_actor(args.actor)
    signer = checkpoint_signer()
    with _accounts() as accounts:
        keyring = accounts.ledger.keyring
        summary = accounts.ledger.database.run(lambda conn: retire_events(
            conn, Attestor.of(keyring), before, signer=signer,
            writers=Attestations.of(keyring), actor=actor))
    if wants_json(args):
        return summary.as_dict(), EXIT_OK
    if summary.event is None:
        return "nothing to retire", EXIT_OK
    return (f"retired {summary.retired} security event(s), numbers {summary.after + 1}.."
            f"{summary.through} (recorded as event {summary.event})"), EXIT_OK


def _duration(text: str) -> Any:
    from peoplelog.accounts import parse_duration  # noqa: PLC0415

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _actor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", help="the service name recorded as acting (default: cli: and "
                                   "the OS user)")


def register(sub: Any, *, add: AddCommand) -> None:
    """Add the ``account``, ``session`` and ``token`` groups."""
    account = add_group(sub, "account", "sign people up and log them in",
                        "printf 'correct horse battery\\n' | peoplelog account login "
                        "--email ada@example.org --password-stdin --json",
                        dest="account_command")
    p = add(account, "register", cmd_register,
            "register a person by email (and password, or none to log in by link later)",
            "printf 'correct horse battery\\n' | peoplelog account register --email "
            "ada@example.org --name Ada --password-stdin --json")
    p.add_argument("--email", required=True)
    p.add_argument("--name", help="default: the address's local part")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    _actor(p)
    p = add(account, "login", cmd_login,
            "log in with email and password: prints a session token once (any failure is "
            "one message, exit 6)",
            "printf 'correct horse battery\\n' | peoplelog account login --email "
            "ada@example.org --password-stdin --json")
    p.add_argument("--email", required=True)
    p.add_argument("--password-stdin", action="store_true", required=True,
                   help="read the password from the first line of stdin")
    p.add_argument("--label", help="a name for this session (e.g. the device)")
    p.add_argument("--remember", action="store_true",
                   help="the remember-me lifetime instead of the session's")
    for name, handler, what in (
            ("request-login-link", cmd_request_login_link, "a sign-in link"),
            ("request-login-code", cmd_request_login_code, "a six-digit sign-in code"),
            ("request-reset", cmd_request_reset, "a password-reset link")):
        p = add(account, name, handler,
                f"queue {what} for an address (the same answer whether or not it is "
                "registered; `mail send-pending` delivers it)",
                f"peoplelog account {name} --email ada@example.org")
        p.add_argument("--email", required=True)
    add(account, "request-confirmation", cmd_request_confirmation,
        "queue a confirmation link to the address of the session on stdin",
        "printf '%s\n' \"$TOKEN\" | peoplelog account request-confirmation")
    p = add(account, "login-link", cmd_login_link,
            "use a sign-in link's token (stdin): prints a session token once",
            "printf '%s\n' \"$LINK_TOKEN\" | peoplelog account login-link --json")
    p.add_argument("--label", help="a name for this session (e.g. the device)")
    p = add(account, "login-code", cmd_login_code,
            "log in with the address and the sign-in code mailed to it (stdin): prints a "
            "session token once (any failure is one message, exit 6)",
            "printf '%s\\n' 123456 | peoplelog account login-code --email ada@example.org")
    p.add_argument("--email", required=True)
    p.add_argument("--label", help="a name for this session (e.g. the device)")
    add(account, "confirm", cmd_confirm, "use a confirmation link's token (stdin)",
        "printf '%s\n' \"$LINK_TOKEN\" | peoplelog account confirm")
    add(account, "reset", cmd_reset,
        "use a reset link: its token on the first line of stdin, the new password on the "
        "second; every session of the person ends",
        "printf '%s\n%s\n' \"$LINK_TOKEN\" 'new horse battery staple' | "
        "peoplelog account reset")

    session = add_group(sub, "session", "check, list and revoke sessions",
                        "peoplelog session list PERSON_ID --json", dest="session_command")
    add(session, "check", cmd_session_check,
        "the scope a session or access token (first line of stdin) stands for; exit 6 if "
        "it is not valid", "printf '%s\\n' \"$TOKEN\" | peoplelog session check --json")
    p = add(session, "list", cmd_session_list, "a person's live sessions",
            "peoplelog session list PERSON_ID --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    p = add(session, "revoke", cmd_session_revoke, "end one session or access token",
            "peoplelog session revoke SESSION_ID")
    p.add_argument("session_id", metavar="SESSION_ID")
    _actor(p)
    p = add(session, "revoke-all", cmd_session_revoke_all,
            "end every session of a person (log out everywhere; access tokens stay)",
            "peoplelog session revoke-all PERSON_ID --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    _actor(p)

    token = add_group(sub, "token", "personal access tokens for scripts",
                      "peoplelog token create PERSON_ID --name deploy --json",
                      dest="token_command")
    p = add(token, "create", cmd_token_create,
            "a named, expiring personal access token (printed once)",
            "peoplelog token create PERSON_ID --name deploy --expires-in 30d --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("--name", required=True)
    p.add_argument("--expires-in", type=_duration, metavar="DURATION",
                   help="30d, 12h, 20m (default 90d, at most 366d)")
    _actor(p)
    p = add(token, "list", cmd_token_list, "a person's live access tokens, with last use",
            "peoplelog token list PERSON_ID --json")
    p.add_argument("person_id", metavar="PERSON_ID")
    p = add(token, "cleanup", cmd_token_cleanup,
            "delete expired, idle, ended and used sessions, tokens and links, old sent mail "
            "and finished attempt counts, in batches (safe while serving)",
            "peoplelog token cleanup --json")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="rows per transaction (default 25000)")

    p = add(sub, "events", cmd_events,
            "the security log: logins, lockouts, tokens issued, used and refused, sessions "
            "ended, credential changes, cleanups; oldest first, a page at a time",
            "peoplelog events --person PERSON_ID --kind login_failed "
            "--since 2026-12-01T00:00:00Z --json")
    p.add_argument("--person", metavar="PERSON_ID", help="only this person's events")
    p.add_argument("--kind", help="only events of this kind (e.g. login, login_failed)")
    p.add_argument("--since", metavar="TIME", help="from this time on (ISO 8601, with zone)")
    p.add_argument("--until", metavar="TIME", help="before this time (ISO 8601, with zone)")
    p.add_argument("--after", type=int, default=0, metavar="SEQ",
                   help="the page after event SEQ (the previous page's next_after)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="events per page (1-1000, default 100)")
    p = add(sub, "retire-events", cmd_retire_events,
            "delete the security events older than a time, after they are in a signed "
            "checkpoint (never those that issued a live session); the retirement is itself "
            "an event, and verify still checks what remains (needs the owner's login)",
            "peoplelog retire-events --before 2026-06-01T00:00:00Z --json")
    p.add_argument("--before", required=True, metavar="TIME",
                   help="retire events older than this (ISO 8601, with zone)")
    _actor(p)

    mail = add_group(sub, "mail", "deliver the mail outbox",
                     "PEOPLELOG_SMTP_URL=smtp://127.0.0.1:25 peoplelog mail send-pending",
                     dest="mail_command")
    p = add(mail, "send-pending", cmd_mail_send_pending,
            "deliver the queued messages that are due through PEOPLELOG_SMTP_URL (failures "
            "are retried later)",
            "PEOPLELOG_SMTP_URL=file:///tmp/mail peoplelog mail send-pending --json")
    p.add_argument("--limit", type=int, metavar="N", help="at most N messages this run")
