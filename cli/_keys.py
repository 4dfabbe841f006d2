"""CLI commands for the keyring: the verifier key, adding keys, and the key-encryption-key
rotation that carries erasure into backups (rotate-kek, retire-kek, epochs), and the
blind-index key rotation (add-blind-key, rotate-blind-index, retire-blind-key)."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from ._audit import checkpoint_signer
from ._common import (
    EXIT_OK,
    AddCommand,
    add_group,
    open_database,
    progress,
    settings,
    wants_json,
)

__all__ = ["register"]


def cmd_keys_public(args: argparse.Namespace) -> tuple[Any, int]:
    signer = checkpoint_signer()
    if not wants_json(args):
        return str(signer.verifier), EXIT_OK
    return {"name": signer.verifier.name, "verifier_key": str(signer.verifier)}, EXIT_OK


def cmd_keys_add_signing(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415

    return _add_key(KeyPurpose.CHECKPOINT_SIGNING, rotate=args.rotate), EXIT_OK


def cmd_keys_add_writer(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415

    return _add_key(KeyPurpose.WRITER, rotate=args.rotate), EXIT_OK


def _keyring_file_only(what: str) -> None:
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if not settings().keyring_in_file:
        raise InvalidInput(f"the keyring comes from PEOPLELOG_KEYRING_JSON; {what}")


def _add_key(purpose: Any, *, rotate: bool) -> dict[str, Any]:
    """Add a key of ``purpose`` to the keyring file (made active), unless one is there and
    ``rotate`` is not asked for; older keys are kept."""
    from peoplelog.schema.errors import KeyNotFound  # noqa: PLC0415

    _keyring_file_only("add the key there")
    config = settings()
    keyring = config.keyring()
    try:
        current = keyring.active(purpose)
    except KeyNotFound:
        current = None
    if current is not None and not rotate:
        return {"key_id": current.id, "added": False}
    updated = keyring.with_new_key(purpose)
    updated.replace_file(config.keyring_file)
    return {"key_id": updated.active(purpose).id, "added": True}


def cmd_keys_add_kek(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415

    return _add_key(KeyPurpose.KEK, rotate=True), EXIT_OK


def cmd_rotate_kek(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415
    from peoplelog.ledger import REWRAP_BATCH, rewrap_data_keys  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    added = _add_key(KeyPurpose.KEK, rotate=True)["key_id"] if args.add_kek else None
    with open_database() as database, progress("re-wrapping", unit="keys") as update:
        summary = rewrap_data_keys(database, settings().keyring(),
                                   batch_size=args.batch_size or REWRAP_BATCH, progress=update)
    return {**summary.as_dict(), "added": added}, EXIT_OK


def cmd_keys_add_blind(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415

    return _add_key(KeyPurpose.BLIND_INDEX, rotate=True), EXIT_OK


def cmd_rotate_blind_index(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.fields import KeyPurpose  # noqa: PLC0415
    from peoplelog.ledger import REINDEX_BATCH, reindex_claims  # noqa: PLC0415
    from peoplelog.schema.errors import InvalidInput  # noqa: PLC0415

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    added = (_add_key(KeyPurpose.BLIND_INDEX, rotate=True)["key_id"] if args.add_key
             else None)
    with open_database() as database, progress("re-indexing", unit="claims") as update:
        summary = reindex_claims(database, settings().keyring(),
                                 batch_size=args.batch_size or REINDEX_BATCH, progress=update)
    return {**summary.as_dict(), "added": added}, EXIT_OK


def cmd_retire_blind_key(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import retire_blind_key  # noqa: PLC0415

    _keyring_file_only("remove the key there once no claim uses it")
    config = settings()
    with open_database() as database:
        remaining, forgotten = retire_blind_key(
            database, config.keyring(), args.key_id,
            forget_external_ids=args.forget_external_ids)
    remaining.replace_file(config.keyring_file)
    return {"key_id": args.key_id, "retired": True,
            "external_ids_forgotten": forgotten}, EXIT_OK


_DURATION = re.compile(r"^(\d{1,6})([dh]?)$")


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("give a duration such as 30d, 12h or 0")
    number, unit = int(match[1]), match[2]
    return timedelta(hours=number) if unit == "h" else timedelta(days=number)


def cmd_retire_kek(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import retire_kek  # noqa: PLC0415

    _keyring_file_only("remove the key there once `peoplelog keys epochs` shows it drained")
    config = settings()
    with open_database() as database:
        remaining = retire_kek(database, config.keyring(), args.kek_id,
                               retention=args.retention)
    remaining.replace_file(config.keyring_file)
    return {"kek_id": args.kek_id, "retired": True}, EXIT_OK


def cmd_epochs(args: argparse.Namespace) -> tuple[Any, int]:
    from peoplelog.ledger import kek_epochs  # noqa: PLC0415

    with open_database() as database:
        epochs = kek_epochs(database)
    if wants_json(args):
        return [epoch.as_dict() for epoch in epochs], EXIT_OK
    lines = [f"{'kek':<16} {'activated':<26} {'drained':<26} {'retired':<26} live"]
    for epoch in epochs:
        row = epoch.as_dict()
        lines.append(f"{row['kek_id']:<16} {row['activated_at']:<26} "
                     f"{row['drained_at'] or '-':<26} {row['retired_at'] or '-':<26} "
                     f"{row['live_keys']}")
    return "\n".join(lines), EXIT_OK


def register(sub: Any, *, add: AddCommand) -> None:
    """Add the ``keys`` group to the top-level subparsers."""
    keys = add_group(sub, "keys",
                     "the keyring: verifier key, new keys, KEK and blind-index rotation",
                     "peoplelog keys public > verifier.key", dest="keys_command")
    add(keys, "public", cmd_keys_public,
        "print the verifier key that checks checkpoint signatures",
        "peoplelog keys public")
    p = add(keys, "add-signing-key", cmd_keys_add_signing,
            "add a checkpoint-signing key to an older keyring file",
            "peoplelog keys add-signing-key")
    p.add_argument("--rotate", action="store_true",
                   help="add a new key even if one exists (the old one is kept)")
    p = add(keys, "add-writer-key", cmd_keys_add_writer,
            "add the key that seals the versions the application writes to an older "
            "keyring file", "peoplelog keys add-writer-key")
    p.add_argument("--rotate", action="store_true",
                   help="add a new key even if one exists (the old one is kept: what it "
                        "sealed still checks)")
    add(keys, "add-kek", cmd_keys_add_kek,
        "add a new key-encryption key to the keyring file and make it active (new data "
        "keys are wrapped under it once applications load the file)",
        "peoplelog keys add-kek")
    p = add(keys, "rotate-kek", cmd_rotate_kek,
            "re-wrap every live data key under the active key-encryption key (online, in "
            "batches, resumable: run it again; needs the owner's login)",
            "peoplelog keys add-kek && peoplelog keys rotate-kek --json")
    p.add_argument("--add-kek", action="store_true",
                   help="add a new key-encryption key first (only when no running "
                        "application holds the old keyring: it could not read what is "
                        "re-wrapped)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="data keys per transaction (default 500)")
    p = add(keys, "retire-kek", cmd_retire_kek,
            "destroy a drained key-encryption key: remove it from the keyring file, so no "
            "backup of its epoch decrypts any more",
            "peoplelog keys retire-kek kek-1 --retention 35d")
    p.add_argument("kek_id", metavar="KEK_ID")
    p.add_argument("--retention", type=_duration, required=True, metavar="DURATION",
                   help="how long backups and WAL archives are kept (30d, 12h, 0): refused "
                        "until that long after the key was drained")
    add(keys, "add-blind-key", cmd_keys_add_blind,
        "add a new blind-index key to the keyring file and make it active (new email claims "
        "use it once applications load the file; lookups try every key of the keyring)",
        "peoplelog keys add-blind-key")
    p = add(keys, "rotate-blind-index", cmd_rotate_blind_index,
            "move every email claim under an older blind-index key to the active one "
            "(online: lookups go on; in batches, resumable: run it again; needs the owner's "
            "login)", "peoplelog keys add-blind-key && peoplelog keys rotate-blind-index --json")
    p.add_argument("--add-key", action="store_true",
                   help="add a new blind-index key first (only when no running application "
                        "holds the old keyring: it could not find the claims moved)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="persons per transaction (default 500)")
    p = add(keys, "retire-blind-key", cmd_retire_blind_key,
            "remove an older blind-index key no claim uses any more from the database's "
            "records and the keyring file",
            "peoplelog keys retire-blind-key blind-index-1")
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--forget-external-ids", action="store_true",
                   help="delete the imported external ids hashed under the key (they cannot "
                        "be hashed again without the ids; an import then matches those "
                        "records by email)")
    add(keys, "epochs", cmd_epochs,
        "each key-encryption key's epoch: activated, drained, retired, live data keys",
        "peoplelog keys epochs --json")
