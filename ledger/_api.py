"""The Python API: one ``Ledger`` object per application."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from peoplelog.fields import (
    BlindIndexes,
    DataKey,
    Keyring,
    NormalisedEmail,
    PasswordHasher,
    check_phc_bounds,
    normalise_email,
)
from peoplelog.schema import (
    HistoryEntry,
    InvalidInput,
    PersonNotFound,
    PersonView,
    ProjectionDamaged,
    VersionConflict,
    VersionRecord,
    VersionRef,
)

from . import _cluster, _heads, _read, _records, _rekey, _restore, _write
from ._cache import TimedCache
from ._import._importer import import_people
from ._import._reading import ImportFile
from ._import._summary import ImportSummary
from ._inputs import check_actor, check_name, check_person_id, check_reason, check_version
from ._read import PasswordMatch
from ._settings import Settings
from ._setup import migrate
from ._store import Conn, Cursor, Database
from ._time import now_micros

__all__ = ["KeysWanted", "Ledger", "connect"]

T = TypeVar("T")
KeysWanted = Literal["required", "optional", "none"]


class Ledger:
    """Write and read person versions.

    >>> with Ledger.open() as ledger:                      # doctest: +SKIP
    ...     ref = ledger.create_person(email="ada@example.org", name="Ada")
    ...     ledger.update_person(ref.person_id, name="Ada L.", expect_version=0)

    ``keyring`` may be None for key-free work (history, verification); writes and
    decryption need it.
    """

    def __init__(self, database: Database, keyring: Keyring | None) -> None:
        self.database = database
        self._keyring = keyring
        self._keyring_checked = False
        self._blind: BlindIndexes | None = None
        self._hasher = PasswordHasher()
        self._heads = _heads.HeadCache()
        self._claim_keys: TimedCache[uuid.UUID, tuple[_heads.Wrapped, DataKey]] = TimedCache()
        self._field_keys: TimedCache[uuid.UUID, DataKey] = TimedCache(ttl=5.0)

    def __repr__(self) -> str:
        return f"Ledger(database={self.database.where!r}, keyring={self._keyring!r})"

    @classmethod
    def open(
        cls,
        database_url: str | None = None,
        keyring: Keyring | str | Path | None = None,
        *,
        settings: Settings | None = None,
        pool_size: int = 4,
        keys: KeysWanted = "required",
    ) -> Ledger:
        """Connect using explicit arguments, falling back to ``settings`` (by default the
        environment, see ``Settings``).

        ``keys`` says what to do when no ``keyring`` is given: ``"required"`` loads the
        configured keyring (an error if there is none), ``"optional"`` loads it when one
        is configured and present, ``"none"`` opens without keys (history, verification,
        erasure).
        """
        settings = settings or Settings.from_environment()
        if database_url is not None:
            settings = settings.with_database(database_url)
        if isinstance(keyring, (str, Path)):
            keyring = Keyring.load(keyring)
        elif keyring is None and keys == "required":
            keyring = settings.keyring()
        elif keyring is None and keys == "optional":
            keyring = settings.keyring_if_present()
        elif keys not in ("required", "optional", "none"):
            raise InvalidInput("keys must be 'required', 'optional' or 'none'")
        return cls(Database.from_settings(settings, pool_size=pool_size), keyring)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def keyring(self) -> Keyring:
        """The keyring, checked once against the database's key fingerprints."""
        if self._keyring is None:
            raise InvalidInput("this operation needs the keyring")
        if not self._keyring_checked:
            keyring = self._keyring
            self.database.run(lambda conn: _read.check_keyring(conn, keyring),
                              retry_lost=True)  # idempotent: safe to repeat
            self._keyring_checked = True
        return self._keyring

    def keyring_or_none(self) -> Keyring | None:
        """The checked keyring (see ``keyring``), or None when the ledger has none."""
        return None if self._keyring is None else self.keyring

    def migrate(self, app_role: str | None = None) -> list[str]:
        """Apply pending migrations; optionally grant an application role its rights."""
        return migrate(self.database, app_role)

    # --- writes ---------------------------------------------------------------------------

    def create_person(
        self,
        *,
        email: str,
        name: str,
        password: str | None = None,
        password_hash: str | None = None,
        verified: bool = False,
        actor: str | None = None,
        reason: str | None = None,
        person_id: uuid.UUID | str | None = None,
    ) -> VersionRef:
        """Create a person at version 0. The email must not be claimed by anyone else."""
        normalised = normalise_email(email)
        clean_name = check_name(name)
        phc = self._password_hash(password, password_hash)
        new = _write.prepare_new_person(
            self.keyring,
            email=normalised,
            name=clean_name,
            password_hash=phc,
            verified_at=now_micros() if verified else None,
            actor=check_actor(actor),
            reason=check_reason(reason),
            person_id=None if person_id is None else check_person_id(person_id),
        )
        ref = self.database.transaction(
            lambda conn: _write.insert_new_person(conn, new),
            resume=lambda conn: _found(conn, new.record.person_id, new.cid),
        )
        if ref.written:
            self._heads.put(ref.person_id, _write.new_person_head(new, self.keyring))
        return ref

    def update_person(
        self,
        person_id: uuid.UUID | str,
        *,
        email: str | None = None,
        name: str | None = None,
        password: str | None = None,
        password_hash: str | None = None,
        verified: bool | None = None,
        expect_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> VersionRef:
        """Append a version changing the given fields.

        With ``expect_version`` the write fails with ``VersionConflict`` unless the head is
        still that version. Without it the change applies to whatever the head is.
        A change that changes nothing writes nothing (``written`` is False).
        """
        pid = check_person_id(person_id)
        change = self._change(email=email, name=name, password=password,
                              password_hash=password_hash, verified=verified, actor=actor,
                              reason=reason)
        if expect_version is not None:
            check_version(expect_version, "expected version")
        keyring = self.keyring
        heads = self._heads
        attempted: list[VersionRef] = []  # what the last attempt wrote, before its COMMIT
        new_head: list[_heads.Cached] = []

        def optimistic(cursor: Cursor) -> VersionRef | None:
            return _write.append_change(cursor, keyring, pid, change,
                                        expect_version=expect_version, heads=heads,
                                        attempted=attempted)

        def locked(conn: Conn) -> VersionRef:
            ref, head = _write.change_locked(conn, keyring, pid, change, expect_version)
            attempted.append(ref)
            new_head[:] = [] if head is None else [head]
            return ref

        def resume(conn: Conn) -> VersionRef | None:  # after a COMMIT whose outcome is unknown
            if not attempted or not attempted[-1].written:
                return None
            return _found(conn, pid, attempted[-1].cid)

        # On a Citus cluster the one-statement append would be split at its CTE, and the
        # head guard (for the application's login) would run before the version exists.
        fast = None if self.database.distributed else self.database.autocommit(
            optimistic, resume=resume)
        if fast is None:
            new_head.clear()
            fast = self.database.transaction(locked, resume=resume)
            if new_head:
                heads.put(pid, new_head[0])
        if fast.written and (change.email is not None or change.password_hash is not None):
            self._clear_ended(pid)
        return fast

    def prepare_update(self, person_id: uuid.UUID | str, **changes: Any) -> VersionRecord:
        """Build (but do not write) the version an update would append now; ``append`` it
        later, as often as needed: re-sending the same record never writes twice."""
        pid = check_person_id(person_id)
        change = self._change(
            email=changes.pop("email", None), name=changes.pop("name", None),
            password=changes.pop("password", None),
            password_hash=changes.pop("password_hash", None),
            verified=changes.pop("verified", None), actor=changes.pop("actor", None),
            reason=changes.pop("reason", None),
        )
        if changes:
            raise InvalidInput(f"unknown fields: {', '.join(sorted(changes))}")
        keyring = self.keyring
        return self.database.run(lambda conn: _records.prepare_record(conn, keyring, pid, change))

    def append(self, record: VersionRecord) -> VersionRef:
        """Append a prepared version; idempotent on its CID."""
        keyring = self.keyring
        self._heads.drop(record.person_id)
        ref = self.database.transaction(
            lambda conn: _records.append_record(conn, keyring, record),
        )
        self._clear_ended(record.person_id)
        return ref

    def erase_person(self, person_id: uuid.UUID | str, *, actor: str | None = None,
                     reason: str | None = None) -> VersionRef:
        """Erase by crypto-shredding: the data key and lookup go, an ``erased`` version is
        appended, the chain still verifies."""
        pid = check_person_id(person_id)
        clean_actor, clean_reason = check_actor(actor), check_reason(reason)
        keyring = self.keyring  # the erased version is attested like any other
        self._heads.drop(pid)
        try:
            ref = self.database.transaction(
                lambda conn: _write.erase_person(conn, keyring, pid, clean_actor, clean_reason)
            )
        finally:  # a write of this Ledger that raced the erasure may have cached the key again
            self._heads.drop(pid)
            self._claim_keys.drop(pid)
        self._clear_ended(pid)
        return ref

    def import_people(
        self,
        source: ImportFile | str | os.PathLike[str],
        *,
        format: str | None = None,
        update: bool = False,
        strict: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
        actor: str | None = "import",
        reason: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Import people from a JSON-lines or CSV file (``source``: a path, checked at once,
        or an ``ImportFile``): each row becomes a new person, or is skipped when its email
        or external id is already there (with ``update``: a new version of that person).

        Each batch is one transaction and a re-run resumes an interrupted import; with
        ``strict`` a bad row fails the whole import and nothing is written. ``workers``
        threads hash plaintext passwords (default: one per CPU). ``progress`` is called
        with the rows read so far after each batch. Rows refused are listed with their line
        and reason in the summary, never with their values.
        """
        file = source if isinstance(source, ImportFile) else ImportFile(source, format)
        return import_people(
            self.database, self.keyring, lambda: iter(file), update=update, strict=strict,
            batch_size=batch_size, workers=workers if workers is not None else (
                os.cpu_count() or 1),
            actor=actor, reason=reason, progress=progress)

    def restore_person(self, person_id: uuid.UUID | str, *, actor: str | None = None,
                       reason: str | None = None) -> VersionRef:
        """When the person's newest version carries no seal of the writer key (someone
        wrote it with the database login alone), append a ``restored`` version with the
        fields of the newest sealed one, so the person can log in and be changed again.
        Nothing is written (``written`` False) when the newest version is trusted."""
        pid = check_person_id(person_id)
        clean_actor, clean_reason = check_actor(actor), check_reason(reason)
        keyring = self.keyring
        self._heads.drop(pid)
        self._claim_keys.drop(pid)
        ref = self.database.transaction(
            lambda conn: _restore.restore_locked(conn, keyring, pid, clean_actor, clean_reason))
        self._clear_ended(pid)
        return ref

    def rotate_data_key(self, person_id: uuid.UUID | str, *, actor: str | None = None,
                        reason: str | None = None) -> VersionRef:
        """Give the person a new data key (their current one may be compromised): a
        ``key_rotated`` version carries their fields encrypted under it; older versions stay
        readable under the key their ciphertexts name."""
        pid = check_person_id(person_id)
        clean_actor, clean_reason = check_actor(actor), check_reason(reason)
        keyring = self.keyring
        self._heads.drop(pid)
        self._claim_keys.drop(pid)
        try:
            ref = self.database.transaction(
                lambda conn: _rekey.rotate_data_key(conn, keyring, pid, clean_actor,
                                                    clean_reason))
        finally:  # a write that raced the rotation may have cached the old key again
            self._heads.drop(pid)
            self._claim_keys.drop(pid)
        self._clear_ended(pid)
        return ref

    # --- reads ----------------------------------------------------------------------------

    def get_person(self, person_id: uuid.UUID | str, version: int | None = None) -> PersonView:
        pid = check_person_id(person_id)
        if version is not None:
            check_version(version)
        keyring = None if self._keyring is None else self.keyring
        return self._run(lambda conn: _read.read_person(conn, keyring, pid, version))

    def history(self, person_id: uuid.UUID | str) -> list[HistoryEntry]:
        pid = check_person_id(person_id)
        return self._run(lambda conn: _read.history(conn, pid))

    def find_person(self, email: str) -> uuid.UUID:
        """The person currently claiming ``email``; ``PersonNotFound`` if none.

        The claim is confirmed against the person's chain head (the claim's seal covers the
        email ciphertext the head holds, or the head's email, decrypted, is this address;
        the head itself is the application's and not erased): a tampered lookup fails
        closed with ``ProjectionDamaged`` or ``Unattested`` rather than naming someone
        else."""
        claimant = self._claimant(normalise_email(email), _read.CLAIMANT_BY_BLIND_INDEX)
        if claimant is None:
            raise PersonNotFound("no person has this email")
        return claimant.person_id

    def authenticate(self, email: str, password: str) -> uuid.UUID | None:
        """The person whose email and password match, else None.

        Unknown emails cost a full argon2id check against a dummy hash, so response time
        does not reveal who is registered. The email's claim and the password come from the
        person's chain head, not from a projection: a tampered lookup or ``people_latest``
        fails closed (``ProjectionDamaged``, ``Unattested``). An outdated hash is upgraded
        on success (a ``password_changed`` version, written only if the head is still the
        one whose password was checked).
        """
        match = self.check_password(email, password)
        if match is None:
            return None
        if match.needs_rehash:
            with contextlib.suppress(VersionConflict):  # written meanwhile: never over a
                self.update_person(  # newer password; the next login upgrades it
                    match.person_id, password_hash=self._hasher.hash(password),
                    expect_version=match.version, actor="peoplelog",
                    reason="argon2id parameters upgraded")
        return match.person_id

    def check_password(self, email: str, password: str) -> PasswordMatch | None:
        """Whether ``password`` is the password of the person ``email`` names, as
        ``authenticate`` decides it, without upgrading the hash: the person, the version
        whose password matched, and whether its hash is outdated. None otherwise, after the
        same argon2id work whatever the cause."""
        try:
            normalised = normalise_email(email)
        except InvalidInput:
            self._hasher.verify_dummy(password)
            return None
        claimant = self._claimant(normalised, _read.CLAIMANT_WITH_KEY)
        phc = None
        if claimant is not None and claimant.password is not None:
            data_key = self._claimant_key(claimant)
            if data_key is None:
                raise _heads.missing_key(claimant.person_id)
            phc = data_key.decrypt("password", claimant.password).decode("ascii")
        if claimant is None or phc is None:
            self._hasher.verify_dummy(password)
            return None
        if not self._hasher.verify(phc, password):
            return None
        assert claimant.version is not None  # a confirmed claimant has a head
        return PasswordMatch(claimant.person_id, claimant.version,
                             self._hasher.needs_rehash(phc))

    def encrypt_field(self, person_id: uuid.UUID, field: str, value: bytes) -> bytes:
        """``value`` encrypted under the person's newest data key, as ``field`` (for what
        the floors above keep of a person beside the ledger: erasure shreds it too). The key
        is kept a few seconds: what is written with it must still check that the person is
        not erased (a key rotated meanwhile stays readable)."""
        data_key = self._field_keys.get(person_id)
        if data_key is None:
            keyring = self.keyring
            data_key = self._run(lambda conn: _heads.load_data_key(conn, keyring, person_id))
            self._field_keys.put(person_id, data_key)
        return data_key.encrypt(field, value)

    def decrypt_field(self, person_id: uuid.UUID, field: str, blob: bytes) -> bytes:
        """A ciphertext of ``encrypt_field`` decrypted (``PersonErased`` once the person is
        erased, ``DecryptionFailed`` for a ciphertext of another person or field)."""
        keyring = self.keyring
        version = DataKey.key_version_of(blob)
        return self._run(lambda conn: _heads.load_data_key(conn, keyring, person_id, version)
                         ).decrypt(field, blob)

    def _claimant(self, email: NormalisedEmail, query: str, *,
                  again: bool = True) -> _read.Claimant | None:
        """The person ``email``'s claim names, confirmed against their chain head; None
        when nobody claims it. During a blind-index rotation a claim may still be under an
        older key of the keyring: each key's digest is tried, the active key's first. On a
        Citus cluster the claim and the head are read apart, so an email change may come
        between them: a claim that does not confirm is read once more before it is
        reported."""
        blinds = self._blind_indexes()
        split = self.database.distributed
        for blind in blinds.all:
            digest = blind.digest(email)
            if split:  # the claim and the person live on different shards: two reads
                row = self._claimant_on_cluster(query, digest)
            else:
                row = self.database.fetch_one(query, (digest,))
            if row is not None:
                break
        else:
            return None
        claimant = _read.Claimant(*row)

        def data_key() -> DataKey | None:  # only for a claim whose seal does not check
            if claimant.wrapped is not None:
                return self._claimant_key(claimant)
            return self._run(lambda conn: _heads.load_data_key(conn, self.keyring,
                                                               claimant.person_id))

        try:
            _read.confirm_claim(self.keyring, claimant, digest, email, data_key)
        except ProjectionDamaged:
            if split and again:
                return self._claimant(email, query, again=False)
            raise
        return claimant

    def _claimant_on_cluster(self, query: str, digest: bytes) -> Any:
        """``query``'s row on a Citus cluster: the claim by its blind index, then the
        person's head (and key) by the person; None when nobody claims the email."""
        claim = self.database.fetch_one(_read.CLAIM, (digest,))
        if claim is None:
            return None
        second = (_read.CLAIMANT_OF_PERSON_WITH_KEY if query == _read.CLAIMANT_WITH_KEY
                  else _read.CLAIMANT_OF_PERSON)
        return self.database.fetch_one(
            second, {"p": claim[0], "claim_key": claim[1], "claim": claim[2]})

    def _claimant_key(self, claimant: _read.Claimant) -> DataKey | None:
        """The claimant's data key: unwrapped once, then kept for a short time (as the
        ``HeadCache`` keeps a writer's), keyed by the wrapped key as stored."""
        wrapped = claimant.wrapped
        if wrapped is None:
            return None
        held = self._claim_keys.get(claimant.person_id)
        if held is not None and held[0] == wrapped:
            return held[1]
        data_key = _heads.unwrap(self.keyring, claimant.person_id, wrapped)
        self._claim_keys.put(claimant.person_id, (wrapped, data_key))
        return data_key

    # --- helpers --------------------------------------------------------------------------

    def _clear_ended(self, person_id: uuid.UUID) -> None:
        """On a Citus cluster, after a write that may have moved the person's credential
        epoch: delete what it ended (``_cluster.clear_ended``). Nothing on one server,
        where the credential trigger did it in the write's own statement."""
        if self.database.distributed:
            self.database.transaction(lambda conn: _cluster.clear_ended(conn, person_id))

    def _blind_indexes(self) -> BlindIndexes:
        if self._blind is None:
            self._blind = BlindIndexes.of(self.keyring)
        return self._blind

    def _run(self, work: Callable[[Conn], T]) -> T:
        return self.database.run(work, retry_lost=True)  # reads only: safe to repeat

    def _password_hash(self, password: str | None, password_hash: str | None) -> str | None:
        if password is not None and password_hash is not None:
            raise InvalidInput("give a password or a password hash, not both")
        if password is not None:
            return self._hasher.hash(password)
        if password_hash is not None:
            return check_phc_bounds(password_hash)
        return None

    def _change(self, *, email: str | None, name: str | None, password: str | None,
                password_hash: str | None, verified: bool | None, actor: str | None,
                reason: str | None) -> _write.Change:
        change = _write.Change(
            email=None if email is None else normalise_email(email),
            name=None if name is None else check_name(name),
            password_hash=self._password_hash(password, password_hash),
            verified=verified,
            actor=check_actor(actor),
            reason=check_reason(reason),
        )
        if change.is_empty():
            raise InvalidInput("nothing to update: give at least one field to change")
        return change


def _found(conn: Conn, person_id: uuid.UUID, cid: str) -> VersionRef | None:
    row = conn.execute(
        "SELECT version FROM people WHERE person_id = %s AND cid = %s", (person_id, cid)
    ).fetchone()
    if row is None:
        return None
    return VersionRef(person_id=person_id, version=row[0], cid=cid, written=True)


connect = Ledger.open
"""Open a ``Ledger``: the shortcut for ``Ledger.open``, as ``psycopg.connect`` is for
``Connection.connect``. Use it as a context manager to close it."""
