"""CLI commands for auditors: verify, checkpoint, prove, verify-proof, export."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._common import (
    EXIT_DAMAGE,
    EXIT_OK,
    AddCommand,
    open_database,
    plural,
    progress,
    read_text,
    settings,
    wants_json,
    write_out,
)

if TYPE_CHECKING:
    from peoplelog.projections import AuditReport, CheckpointSigner, TrustedKey

__all__ = ["register"]

_KEY_ENV = "PEOPLELOG_VERIFIER_KEY"


def _verifier_key(given: list[str] | None) -> TrustedKey | None:
    """The keys of ``--key`` (repeatable) or the environment; each value is a key or a file
    of keys, one per line. Several keys are all trusted (a rotated signing key)."""
    from peoplelog.projections import VerifierKey, VerifierKeys  # noqa: PLC0415

    texts = given or ([os.environ[_KEY_ENV]] if os.environ.get(_KEY_ENV) else [])
    keys: list[VerifierKey] = []
    for value in texts:
        text = read_text(value, "verifier key") if (
            "+" not in value and Path(value).exists()) else value
        keys.extend(VerifierKey.parse(line) for line in text.splitlines() if line.strip())
    return VerifierKeys.of(keys) if keys else None


def checkpoint_signer() -> CheckpointSigner:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415
    from peoplelog.projections import CheckpointSigner  # noqa: PLC0415

    return CheckpointSigner(settings().keyring().active(KeyPurpose.CHECKPOINT_SIGNING))


# --- handlers -------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id  # noqa: PLC0415
    from peoplelog.projections import audit_database, parse_checkpoint  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    key = _verifier_key(args.key)
    held = None if args.checkpoint is None else parse_checkpoint(
        read_text(args.checkpoint, "checkpoint"))
    if args.from_export is not None:
        if args.person is not None:
            raise InvalidInput("--person cannot be combined with --from-export")
        report = _verify_export(args.from_export, held, key)
    else:
        person = None if args.person is None else check_person_id(args.person)
        if person is not None and held is not None:
            raise InvalidInput(
                "--checkpoint checks the whole log; it cannot be used with --person")
        workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise InvalidInput("--workers must be at least 1")
        with open_database() as database, progress("verifying") as update:
            report = database.run(
                lambda conn: audit_database(conn, person, held=held, key=key,
                                            progress=update, conninfo=database.conninfo,
                                            workers=workers))
    if report.ok and args.save_checkpoint and report.log and report.log.latest_checkpoint:
        write_out(args.save_checkpoint, report.log.latest_checkpoint)
    result = report.model_dump(mode="json") if wants_json(args) else _verdict(report)
    return result, EXIT_OK if report.ok else EXIT_DAMAGE


def _verify_export(path: str, held: Any, key: TrustedKey | None) -> AuditReport:
    from peoplelog.projections import verify_export  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8") as handle:
            return verify_export(handle, held=held, key=key)
    except FileNotFoundError:
        raise InvalidInput(f"export file {path} does not exist") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"export file {path} is not UTF-8") from None


def _verdict(report: AuditReport) -> str:
    """The human form of a verification report: verdict, findings, checkpoint to keep."""
    lines = [
        f"{'OK' if report.ok else 'DAMAGED'}: {plural(report.checked, 'version')} of "
        f"{plural(report.persons, 'person')} checked, {plural(len(report.findings), 'finding')}"
    ]
    for finding in report.findings:
        where = "" if finding.version is None else f" {finding.person_id} v{finding.version}"
        lines.append(f"  {finding.kind}{where}: {finding.detail}")
    log = report.log
    if log is not None:
        held = ""
        if log.held_size is not None:
            held = (f"; consistent with the held checkpoint ({log.held_size})"
                    if log.consistent_with_held else "; NOT consistent with the held checkpoint")
        lines.append(f"log: {plural(log.size, 'entry', 'entries')}, "
                     f"{plural(log.checkpoints, 'checkpoint')}, "
                     f"{plural(log.pending, 'version')} pending the next checkpoint{held}")
        if log.events or log.events_pending:
            lines.append(f"security log: {plural(log.events, 'event')} logged "
                         f"({log.events_retired} retired), {log.events_pending} pending; "
                         f"{plural(log.live_sessions, 'live session')} checked")
        if report.ok and log.latest_checkpoint:
            lines += ["checkpoint to keep:", log.latest_checkpoint.rstrip("\n")]
    return "\n".join(lines)


def cmd_checkpoint(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import Attestations  # noqa: PLC0415
    from peoplelog.ledger import check_keyring  # noqa: PLC0415
    from peoplelog.projections import make_checkpoint  # noqa: PLC0415

    signer = checkpoint_signer()
    keyring = settings().keyring()
    writers = Attestations.of(keyring)
    with open_database() as database:
        database.run(lambda conn: check_keyring(conn, keyring))
        result = database.run(lambda conn: make_checkpoint(conn, signer, writers=writers))
    if args.out:
        write_out(args.out, result.checkpoint.text)
    if result.refused:
        print(f"peoplelog: warning: {plural(result.refused, 'version')} refused: no valid seal "
              "of the writer key (written with the database login alone?); `peoplelog "
              "verify` lists them as unattested", file=sys.stderr)
    if result.refused_events:
        print(f"peoplelog: warning: {plural(result.refused_events, 'security event')} "
              "refused: no valid seal of the writer key, or content that does not give its "
              "CID; `peoplelog verify` lists them as unattested_event", file=sys.stderr)
    if not wants_json(args):
        return result.checkpoint.text.rstrip("\n"), EXIT_OK
    return {
        "size": result.checkpoint.size,
        "sequenced": result.sequenced,
        "refused": result.refused,
        "events": result.events,
        "refused_events": result.refused_events,
        "new": result.new,
        "checkpoint": result.checkpoint.text,
    }, EXIT_OK


def cmd_prove(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import check_person_id, check_version  # noqa: PLC0415
    from peoplelog.projections import prove_inclusion  # noqa: PLC0415

    person = check_person_id(args.person_id)
    version = check_version(args.version)
    with open_database() as database:
        proof = database.run(lambda conn: prove_inclusion(conn, person, version))
    if args.out:
        write_out(args.out, proof.model_dump_json(indent=2) + "\n")
    return proof.model_dump(mode="json"), EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.projections import InclusionProof  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    key = _verifier_key(args.key)
    if key is None:
        raise InvalidInput(f"give the verifier key with --key or {_KEY_ENV}")
    text = sys.stdin.read() if args.file == "-" else read_text(args.file, "proof")
    try:
        proof = InclusionProof.model_validate_json(text)
    except ValueError:
        raise InvalidInput("the proof is not a peoplelog inclusion proof document") from None
    problems = proof.verify(key)
    result = {"ok": not problems, "person_id": str(proof.person_id), "version": proof.version,
              "cid": proof.cid, "tree_size": proof.tree_size, "problems": problems}
    return result, EXIT_OK if not problems else EXIT_DAMAGE


def cmd_export(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.projections import export_ledger  # noqa: PLC0415

    if args.out:
        with _open_out(args.out) as handle, open_database() as database, \
                progress("exporting", unit="versions") as update:
            count = database.run(lambda conn: export_ledger(conn, handle, progress=update))
        return {"versions": count, "out": args.out}, EXIT_OK
    with open_database() as database, progress("exporting", unit="versions") as update:
        database.run(lambda conn: export_ledger(conn, sys.stdout, progress=update))
    return None, EXIT_OK


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[TextIO]:
    """A file written beside ``path`` and put in its place only when the block ends without
    an error: an export that fails half way leaves no partial file behind."""
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    target = Path(path)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        handle = open(partial, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        with handle:
            yield handle
        os.replace(partial, target)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


# --- parser ---------------------------------------------------------------------------------


def register(sub: Any, *, add: AddCommand) -> None:
    """Add the auditor's commands to the top-level subparsers."""
    p = add(sub, "verify", cmd_verify,
            "recompute every CID, check every chain and the log against its checkpoints "
            "(no decryption keys needed)",
            "peoplelog verify --checkpoint held.txt --key \"$(cat verifier.key)\" "
            "--save-checkpoint held.txt --json")
    p.add_argument("--person", metavar="PERSON_ID", help="check one person's chain only")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="a checkpoint kept outside the database: the log must extend it")
    p.add_argument("--key", metavar="VKEY", action="append",
                   help=f"verifier key (NAME+HASH+BASE64, or a file of keys, one per line); "
                        f"repeat it to trust every key of a rotation; default ${_KEY_ENV}, "
                        "else the key recorded in the database (or in the export)")
    p.add_argument("--from-export", metavar="FILE",
                   help="verify a `peoplelog export` file instead of the database")
    p.add_argument("--save-checkpoint", metavar="FILE",
                   help="when everything checks out, write the newest checkpoint here")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for large ledgers (default: the number of CPUs)")

    p = add(sub, "checkpoint", cmd_checkpoint,
            "sequence pending versions and sign a checkpoint of the whole log",
            "peoplelog checkpoint --out checkpoint.txt")
    p.add_argument("--out", metavar="FILE", help="also write the signed checkpoint here")

    p = add(sub, "prove", cmd_prove,
            "inclusion proof of one version against the newest checkpoint",
            "peoplelog prove PERSON_ID --version 2 --out proof.json")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("--version", type=int, required=True, metavar="V")
    p.add_argument("--out", metavar="FILE", help="also write the proof here")

    p = add(sub, "verify-proof", cmd_verify_proof,
            "check an inclusion proof offline with only the verifier key",
            "peoplelog verify-proof proof.json --key \"$(cat verifier.key)\"")
    p.add_argument("file", metavar="FILE", help="the proof (- for stdin)")
    p.add_argument("--key", metavar="VKEY", action="append",
                   help=f"verifier key or a file of keys; repeatable (default ${_KEY_ENV})")

    p = add(sub, "export", cmd_export,
            "write the ledger as stored (JSON lines) with its checkpoints",
            "peoplelog export --out ledger.jsonl")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
