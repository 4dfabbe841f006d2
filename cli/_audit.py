"""CLI commands for auditors: verify, checkpoint, keys, prove, verify-proof, export."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from peoplelog.fields import KeyPurpose
from peoplelog.ledger import Database, Settings
from peoplelog.ledger._inputs import check_person_id, check_version
from peoplelog.ledger._read import check_keyring
from peoplelog.projections import (
    AuditReport,
    CheckpointSigner,
    InclusionProof,
    TrustedKey,
    VerifierKey,
    VerifierKeys,
    audit_database,
    export_ledger,
    make_checkpoint,
    parse_checkpoint,
    prove_inclusion,
    verify_export,
)
from peoplelog.schema import InvalidInput, KeyNotFound

from ._common import EXIT_DAMAGE, EXIT_OK, AddCommand, progress

__all__ = ["register"]

_KEY_ENV = "PEOPLELOG_VERIFIER_KEY"


@contextlib.contextmanager
def _database() -> Iterator[Database]:
    database = Database.from_settings(Settings.from_environment(), pool_size=1)
    try:
        yield database
    finally:
        database.close()


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} file {path} cannot be read: {exc}") from None


def _verifier_key(given: list[str] | None) -> TrustedKey | None:
    """The keys of ``--key`` (repeatable) or the environment; each value is a key or a file
    of keys, one per line. Several keys are all trusted (a rotated signing key)."""
    texts = given or ([os.environ[_KEY_ENV]] if os.environ.get(_KEY_ENV) else [])
    keys: list[VerifierKey] = []
    for value in texts:
        text = _read_text(value, "verifier key") if (
            "+" not in value and Path(value).exists()) else value
        keys.extend(VerifierKey.parse(line) for line in text.splitlines() if line.strip())
    return VerifierKeys.of(keys) if keys else None


def _write_out(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


def _signer() -> CheckpointSigner:
    keyring = Settings.from_environment().keyring()
    return CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))


# --- handlers -------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> tuple[Any, int]:
    key = _verifier_key(args.key)
    held = None if args.checkpoint is None else parse_checkpoint(
        _read_text(args.checkpoint, "checkpoint"))
    if args.from_export is not None:
        if args.person is not None:
            raise InvalidInput("--person cannot be combined with --from-export")
        try:
            with open(args.from_export, encoding="utf-8") as handle:
                report = verify_export(handle, held=held, key=key)
        except FileNotFoundError:
            raise InvalidInput(f"export file {args.from_export} does not exist") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"export file {args.from_export} is not UTF-8") from None
        return report.model_dump(mode="json"), EXIT_OK if report.ok else EXIT_DAMAGE
    person = None if args.person is None else check_person_id(args.person)
    if person is not None and held is not None:
        raise InvalidInput("--checkpoint checks the whole log; it cannot be used with --person")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise InvalidInput("--workers must be at least 1")
    with _database() as database, progress("verifying") as update:
        report = database.run(
            lambda conn: audit_database(conn, person, held=held, key=key, progress=update,
                                        conninfo=database.conninfo, workers=workers))
    if report.ok and args.save_checkpoint and report.log and report.log.latest_checkpoint:
        _write_out(args.save_checkpoint, report.log.latest_checkpoint)
    result = report.model_dump(mode="json") if args.json else _verdict(report)
    return result, EXIT_OK if report.ok else EXIT_DAMAGE


def _verdict(report: AuditReport) -> str:
    """The human form of a verification report: verdict, findings, checkpoint to keep."""
    lines = [
        f"{'OK' if report.ok else 'DAMAGED'}: {report.checked} versions of {report.persons} "
        f"persons checked, {len(report.findings)} findings"
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
        lines.append(f"log: {log.size} entries, {log.checkpoints} checkpoints, "
                     f"{log.pending} versions pending the next checkpoint{held}")
        if report.ok and log.latest_checkpoint:
            lines += ["checkpoint to keep:", log.latest_checkpoint.rstrip("\n")]
    return "\n".join(lines)


def cmd_checkpoint(args: argparse.Namespace) -> tuple[Any, int]:
    signer = _signer()
    with _database() as database:
        keyring = Settings.from_environment().keyring()
        database.run(lambda conn: check_keyring(conn, keyring))
        result = database.run(lambda conn: make_checkpoint(conn, signer))
    if args.out:
        _write_out(args.out, result.checkpoint.text)
    if not args.json:
        return result.checkpoint.text.rstrip("\n"), EXIT_OK
    return {
        "size": result.checkpoint.size,
        "sequenced": result.sequenced,
        "new": result.new,
        "checkpoint": result.checkpoint.text,
    }, EXIT_OK


def cmd_keys_public(args: argparse.Namespace) -> tuple[Any, int]:
    signer = _signer()
    if not args.json:
        return str(signer.verifier), EXIT_OK
    return {"name": signer.verifier.name, "verifier_key": str(signer.verifier)}, EXIT_OK


def cmd_keys_add_signing(args: argparse.Namespace) -> tuple[Any, int]:
    settings = Settings.from_environment()
    if not settings.keyring_in_file:
        raise InvalidInput("the keyring comes from PEOPLELOG_KEYRING_JSON; add the key there")
    path = settings.keyring_file
    keyring = settings.keyring()
    try:
        current = keyring.active(KeyPurpose.CHECKPOINT_SIGNING)
    except KeyNotFound:
        current = None
    if current is not None and not args.rotate:
        return {"key_id": current.id, "added": False}, EXIT_OK
    updated = keyring.with_new_key(KeyPurpose.CHECKPOINT_SIGNING)
    updated.replace_file(path)
    return {"key_id": updated.active(KeyPurpose.CHECKPOINT_SIGNING).id, "added": True}, EXIT_OK


def cmd_prove(args: argparse.Namespace) -> tuple[Any, int]:
    person = check_person_id(args.person_id)
    version = check_version(args.version)
    with _database() as database:
        proof = database.run(lambda conn: prove_inclusion(conn, person, version))
    if args.out:
        _write_out(args.out, proof.model_dump_json(indent=2) + "\n")
    return proof.model_dump(mode="json"), EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> tuple[Any, int]:
    key = _verifier_key(args.key)
    if key is None:
        raise InvalidInput(f"give the verifier key with --key or {_KEY_ENV}")
    text = sys.stdin.read() if args.file == "-" else _read_text(args.file, "proof")
    try:
        proof = InclusionProof.model_validate_json(text)
    except ValueError:
        raise InvalidInput("the proof is not a peoplelog inclusion proof document") from None
    problems = proof.verify(key)
    result = {"ok": not problems, "person_id": str(proof.person_id), "version": proof.version,
              "cid": proof.cid, "tree_size": proof.tree_size, "problems": problems}
    return result, EXIT_OK if not problems else EXIT_DAMAGE


def cmd_export(args: argparse.Namespace) -> tuple[Any, int]:
    with _database() as database, progress("exporting", unit="versions") as update:
        if args.out:
            with _open_out(args.out) as handle:
                count = database.run(lambda conn: export_ledger(conn, handle, progress=update))
            return {"versions": count, "out": args.out}, EXIT_OK
        count = database.run(lambda conn: export_ledger(conn, sys.stdout, progress=update))
    return None, EXIT_OK


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[TextIO]:
    try:
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    with handle:
        yield handle


# --- parser ---------------------------------------------------------------------------------


def register(sub: Any, *, add: AddCommand, **_: Any) -> None:
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
                        "else the key recorded in the database")
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

    keys = sub.add_parser("keys", help="checkpoint signing keys",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="example:\n  peoplelog keys public > verifier.key")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    add(ksub, "public", cmd_keys_public,
        "print the verifier key that checks checkpoint signatures",
        "peoplelog keys public")
    p = add(ksub, "add-signing-key", cmd_keys_add_signing,
            "add a checkpoint-signing key to an older keyring file",
            "peoplelog keys add-signing-key")
    p.add_argument("--rotate", action="store_true",
                   help="add a new key even if one exists (the old one is kept)")

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
