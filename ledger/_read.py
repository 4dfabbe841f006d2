"""Reading persons back: one version decrypted, a history, an email lookup."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import psycopg

from peoplelog.fields import (
    Attestations,
    BlindIndex,
    BlindIndexes,
    DataKey,
    KeyPurpose,
    Keyring,
    NormalisedEmail,
)
from peoplelog.schema import (
    HISTORY_COLUMNS,
    HistoryEntry,
    KeyNotFound,
    KeyringError,
    Op,
    PersonErased,
    PersonNotFound,
    PersonView,
    ProjectionDamaged,
    VersionNotFound,
    column_list,
)

from ._heads import CHAIN_HEAD, check_head, load_data_key, missing_key
from ._write import lookup_key_of

__all__ = ["BY_BLIND_INDEX", "CLAIM", "CLAIMANT_BY_BLIND_INDEX", "CLAIMANT_OF_PERSON",
           "CLAIMANT_OF_PERSON_WITH_KEY", "CLAIMANT_WITH_KEY", "Claimant",
           "PasswordMatch",
           "check_keyring",
           "confirm_claim", "find_person_id", "history", "person_by_blind_index",
           "read_password_hash", "read_person"]

Conn = psycopg.Connection[Any]

BY_BLIND_INDEX = "SELECT person_id FROM email_lookup WHERE blind_index = %s"
_CLAIMANT = (
    "SELECT l.person_id, h.op, h.email, h.cid, h.writer_key, h.attestation,"
    " CASE WHEN h.attestation IS NULL THEN EXISTS (SELECT 1 FROM log_entries e"
    "  WHERE e.person_id = l.person_id AND e.version = h.version AND e.cid = h.cid) END,"
    " l.claim_key, l.claim{extra}"
    " FROM email_lookup l"
    " CROSS JOIN LATERAL (SELECT version, op, email, password, cid, writer_key, attestation"
    "  FROM people p WHERE p.person_id = l.person_id ORDER BY p.version DESC LIMIT 1) h{join}"
    " WHERE l.blind_index = %s")
CLAIMANT_BY_BLIND_INDEX = _CLAIMANT.format(extra="", join="")
"""The person an email's claim names, as their chain head (in ``people``, not a projection)
has them, with the claim's seal: one round trip for a lookup that does not trust the claim
alone, and, when the seal checks, no decryption."""
CLAIMANT_WITH_KEY = _CLAIMANT.format(
    extra=", h.password, k.key_version, k.kek_id, k.wrapped_key, h.version",
    join=" LEFT JOIN LATERAL (SELECT key_version, kek_id, wrapped_key FROM person_keys k"
         "  WHERE k.person_id = l.person_id ORDER BY k.key_version DESC LIMIT 1) k ON true")
"""The same, with the head's password ciphertext, the person's newest data key and the
head's version (for a login)."""

CLAIM = "SELECT person_id, claim_key, claim FROM email_lookup WHERE blind_index = %s"
"""An email's claim alone: the first of a lookup's two round trips on a Citus cluster,
where ``email_lookup`` (by blind index) and ``people`` (by person) are not co-located and
cannot be joined; the second is ``CLAIMANT_OF_PERSON`` or ``CLAIMANT_OF_PERSON_WITH_KEY``,
routed to the person's shard by its parameter."""
_CLAIMANT_OF_PERSON = (
    "SELECT h.person_id, h.op, h.email, h.cid, h.writer_key, h.attestation,"
    " CASE WHEN h.attestation IS NULL THEN EXISTS (SELECT 1 FROM log_entries e"
    "  WHERE e.person_id = %(p)s AND e.version = h.version AND e.cid = h.cid) END,"
    " %(claim_key)s::text, %(claim)s::bytea{extra}"
    " FROM (SELECT person_id, version, op, email, password, cid, writer_key, attestation"
    "  FROM people p WHERE p.person_id = %(p)s ORDER BY p.version DESC LIMIT 1) h{join}")
CLAIMANT_OF_PERSON = _CLAIMANT_OF_PERSON.format(extra="", join="")
CLAIMANT_OF_PERSON_WITH_KEY = _CLAIMANT_OF_PERSON.format(
    extra=", h.password, k.key_version, k.kek_id, k.wrapped_key, h.version",
    join=" LEFT JOIN LATERAL (SELECT key_version, kek_id, wrapped_key FROM person_keys k"
         "  WHERE k.person_id = %(p)s ORDER BY k.key_version DESC LIMIT 1) k ON true")
"""``CLAIMANT_BY_BLIND_INDEX`` and ``CLAIMANT_WITH_KEY`` for a claim already read (its
person, key and seal as parameters): the same columns, every table filtered by the
person."""


class PasswordMatch(NamedTuple):
    """A password that matched (``Ledger.check_password``): the person, the version whose
    password it is, and whether its argon2id parameters are outdated."""

    person_id: uuid.UUID
    version: int
    needs_rehash: bool


class Claimant(NamedTuple):
    """A row of ``CLAIMANT_BY_BLIND_INDEX`` or ``CLAIMANT_WITH_KEY`` (a named tuple: one is
    made on every lookup). Its repr shows the person only."""

    person_id: uuid.UUID
    op: str
    email: bytes | None
    cid: str
    writer_key: str | None
    attestation: bytes | None
    logged: bool | None
    claim_key: str | None
    claim: bytes | None
    password: bytes | None = None
    key_version: int | None = None
    kek_id: str | None = None
    wrapped_key: bytes | None = None
    version: int | None = None

    def __repr__(self) -> str:
        return f"Claimant(person_id={self.person_id})"

    @property
    def wrapped(self) -> tuple[int, str, bytes] | None:
        if self.key_version is None or self.kek_id is None or self.wrapped_key is None:
            return None
        return self.key_version, self.kek_id, self.wrapped_key


def confirm_claim(keyring: Keyring, claimant: Claimant, digest: bytes, email: NormalisedEmail,
                  data_key: Callable[[], DataKey | None]) -> None:
    """Fail closed unless the claimant's chain head agrees with the claim: written by the
    application (``Unattested`` otherwise), not erased, and the claim made for the email
    the head holds (``ProjectionDamaged`` otherwise): its seal, over the blind index, the
    person and the head's email ciphertext, checks; or, for a claim without a good seal
    (made before claims were sealed), the head's email, decrypted with ``data_key()``, is
    the address looked up. A claim pointed at another person, or left behind after an
    email change or an erasure, is never followed."""
    pid = claimant.person_id
    check_head(keyring, pid, claimant.cid, claimant[3:7])
    if claimant.op == Op.ERASED:
        raise ProjectionDamaged(f"the email lookup names person {pid}, who is erased")
    if Attestations.of(keyring).holds_claim(claimant.claim_key, claimant.claim, digest,
                                            pid.bytes, claimant.email):
        return
    key = data_key()
    if key is None:
        raise missing_key(pid)
    stored = None if claimant.email is None else key.decrypt("email", claimant.email)
    if stored is None or lookup_key_of(stored) != email.lookup_key:
        raise ProjectionDamaged(f"the email lookup names person {pid}, whose current email "
                                "is another address")


_COLUMNS = column_list(HISTORY_COLUMNS)


def _person_exists(conn: Conn, person_id: uuid.UUID) -> bool:
    return conn.execute(
        "SELECT 1 FROM people WHERE person_id = %s AND version = 0", (person_id,)
    ).fetchone() is not None


def read_person(conn: Conn, keyring: Keyring | None, person_id: uuid.UUID,
                version: int | None = None) -> PersonView:
    """The person as of ``version`` (default: the newest), decrypted when keys allow. With
    the keyring, the newest version is confirmed against the chain head first (as a login
    is), so a forged erasure is ``Unattested``, never read as an erasure."""
    latest = conn.execute(
        "SELECT version, created_at, erased_at, cid FROM people_latest WHERE person_id = %s",
        (person_id,),
    ).fetchone()
    if latest is None:
        raise PersonNotFound(f"person {person_id} not found")
    head_version, created_at, erased_at, head_cid = latest
    if keyring is not None and version is None:
        check_head(keyring, person_id, head_cid,
                   conn.execute(CHAIN_HEAD.format("%s"), (person_id,)).fetchone() or (None,) * 4)
    wanted = head_version if version is None else version
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM people WHERE person_id = %s AND version = %s",  # noqa: S608
        (person_id, wanted),
    ).fetchone()
    if row is None:
        raise VersionNotFound(
            f"person {person_id} has no version {wanted} (newest is {head_version})"
        )
    (ver, cid, prev, op, recorded_at, _actor, _reason, email, name, password,
     verified_at) = row
    erased = erased_at is not None
    plain_email = plain_name = None
    if not erased and keyring is not None:
        keys: dict[int | None, DataKey] = {}

        def key_for(blob: bytes | None) -> DataKey:
            version = None if blob is None else DataKey.key_version_of(bytes(blob))
            if version not in keys:  # the version its ciphertext names (older versions keep
                keys[version] = load_data_key(conn, keyring, person_id, version)  # theirs)
            return keys[version]

        plain_email = _decrypt(key_for(email), "email", email)
        plain_name = _decrypt(key_for(name), "name", name)
    return PersonView(
        person_id=person_id, version=ver, cid=cid, prev=prev, op=op,
        email=plain_email, name=plain_name, has_password=password is not None,
        verified_at=verified_at, recorded_at=recorded_at, created_at=created_at,
        erased=erased,
    )


def _decrypt(data_key: DataKey, field: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    return data_key.decrypt(field, bytes(blob)).decode("utf-8")


def history(conn: Conn, person_id: uuid.UUID) -> list[HistoryEntry]:
    """Every version of the person, oldest first, with the fields each one changed.

    Changes are seen by comparing ciphertexts, so no key is needed.
    """
    entries: list[HistoryEntry] = []
    before: dict[str, Any] | None = None
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM people WHERE person_id = %s ORDER BY version",  # noqa: S608
            (person_id,),
        )
        for row in cur:
            fields = dict(zip(("email", "name", "password", "verified_at"), row[7:], strict=True))
            if before is None:
                changed = [k for k, v in fields.items() if v is not None]
            elif row[3] == Op.KEY_ROTATED:  # the same values under a new key: no change
                changed = []
            else:
                changed = [k for k, v in fields.items() if v != before[k]]
            entries.append(HistoryEntry(
                version=row[0], cid=row[1], prev=row[2], op=row[3], recorded_at=row[4],
                actor=row[5], reason=row[6], changed=changed,
            ))
            before = fields
    if not entries:
        raise PersonNotFound(f"person {person_id} not found")
    return entries


def find_person_id(conn: Conn, keyring: Keyring | BlindIndex,
                   email: NormalisedEmail) -> uuid.UUID | None:
    """The person claiming ``email`` as ``email_lookup`` has it (not confirmed against the
    chain: ``Ledger.find_person`` is); with a keyring, each of its blind-index keys is
    tried, the active one first (claims may still be under an older key in a rotation)."""
    blinds = (keyring,) if isinstance(keyring, BlindIndex) else BlindIndexes.of(keyring).all
    for blind in blinds:
        found = person_by_blind_index(conn, blind.digest(email))
        if found is not None:
            return found
    return None


def person_by_blind_index(conn: Conn, digest: bytes) -> uuid.UUID | None:
    row = conn.execute(BY_BLIND_INDEX, (digest,)).fetchone()
    return None if row is None else row[0]


def read_password_hash(conn: Conn, keyring: Keyring, person_id: uuid.UUID) -> str | None:
    row = conn.execute(
        "SELECT password, op FROM people_latest WHERE person_id = %s", (person_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    if row[1] == Op.ERASED:
        raise PersonErased(f"person {person_id} was erased")
    data_key = load_data_key(conn, keyring, person_id)
    return data_key.decrypt("password", bytes(row[0])).decode("ascii")


def check_keyring(conn: Conn, keyring: Keyring) -> None:
    """Refuse a keyring that does not fit the keys this database was written with.

    Each key id's fingerprint is recorded on first use. A recorded key that the keyring also
    holds must have the same fingerprint, every recorded blind-index key must be present
    (without it, lookups and one-email-per-person silently stop working), and the active
    blind-index key must be the newest recorded one (claims under an older key are refused
    by the database once a newer one is recorded).

    Recording a new blind-index key (the start of a blind-index rotation) first waits for
    every claim in flight (a SHARE lock on ``email_lookup``): from then on, a claim under
    an older key is refused, and every earlier one is visible to a check for taken emails.
    """
    with conn.transaction():
        _check_recorded_keys(conn, keyring)
        blind = keyring.active(KeyPurpose.BLIND_INDEX)
        blind_keys = [row[0] for row in conn.execute(
            "SELECT key_id FROM peoplelog_key_checks WHERE purpose = %s"
            " ORDER BY first_used, key_id", (KeyPurpose.BLIND_INDEX.value,))]
        if blind_keys and blind.id not in blind_keys:
            conn.execute("LOCK TABLE email_lookup IN SHARE MODE")
        for key in keyring.active_keys():
            conn.execute(
                "INSERT INTO peoplelog_key_checks (key_id, purpose, fingerprint)"
                " VALUES (%s, %s, %s) ON CONFLICT (key_id) DO NOTHING",
                (key.id, key.purpose.value, key.fingerprint),
            )
        _check_recorded_keys(conn, keyring)
        if blind_keys and blind.id in blind_keys and blind_keys[-1] != blind.id:
            raise KeyringError(
                f"keyring {keyring.source} makes blind-index key {blind.id!r} active, but "
                f"this database already indexes emails under the newer {blind_keys[-1]!r}: "
                "make that one active")


def _check_recorded_keys(conn: Conn, keyring: Keyring) -> None:
    rows = conn.execute(
        "SELECT key_id, purpose, fingerprint FROM peoplelog_key_checks ORDER BY key_id"
    ).fetchall()
    for key_id, purpose, fingerprint in rows:
        held = keyring.find(key_id)
        if held is None:
            if purpose == KeyPurpose.BLIND_INDEX.value:
                raise KeyNotFound(
                    f"blind-index key {key_id!r} indexes this database's emails but is not "
                    f"in the keyring {keyring.source}"
                )
            continue
        if held.purpose.value != purpose or held.fingerprint != bytes(fingerprint):
            raise KeyringError(
                f"keyring {keyring.source} does not match this database: its "
                f"{held.purpose.value} key {key_id!r} is not the one this database was "
                "written with"
            )
