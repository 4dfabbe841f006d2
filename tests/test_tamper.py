"""Whole-log integrity end to end: every tamper case is made by a superuser session that
bypasses the append-only triggers, each on its own fresh database with a scripted history
and a checkpoint the auditor took *before* the damage, and must be found by

    peoplelog verify --checkpoint held.txt --key VKEY --json      (exit 1)

with the right finding kind, naming the person and version where there is one. Also: the
clean path, checkpoints, pending versions, inclusion proofs, exports, the standard-tools
recipe of docs/AUDIT.md, concurrency with the sequencer, and the documented limits (what
an attacker with full database access can do without being detected), pinned so that
docs/AUDIT.md stays true.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT, Cli, CliResult, create_database, drop_database
from psycopg import sql

from peoplelog.fields import Attestations, KeyPurpose, Keyring
from peoplelog.ledger import Database, Ledger, cid_of, envelope_bytes
from peoplelog.projections import CheckpointSigner, make_checkpoint, parse_checkpoint
from peoplelog.projections._latest import _REBUILD_LATEST
from peoplelog.projections._merkle import Frontier, cid_leaf, leaf_hash
from peoplelog.projections._speedups import native_available
from peoplelog.schema import VersionRecord, apply_migrations

Conn = psycopg.Connection[Any]

# Valid argon2id PHC strings (cheap parameters): hashing real passwords is not the point here.
PHC_1 = ("$argon2id$v=19$m=19456,t=2,p=1$mbtcPMgPOg1zLTuLyNIz2w$"
         "GFA05gfcN9pu30FdI1P5TQlMuYv6YPDCPYUxuOR7iy4")
PHC_2 = ("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
         "GFA05gfcN9pu30FdI1P5TQlMuYv6YPDCPYUxuOR7iy4")
FORGED_CID = "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + bytes(32)).decode(
).lower().rstrip("=")

# The sizes of the scripted history's three checkpoints (see `script`): C1 is stored in the
# database only; C2 is also the auditor's held checkpoint (taken with `peoplelog checkpoint
# --out held.txt`); C3 is stored in the database only, taken after the held one.
C1, C2, C3 = 5, 10, 13


# --- the fresh database and its scripted history ---------------------------------------------


@dataclasses.dataclass
class Case:
    url: str
    path: Path
    runner: Cli
    vkey: str
    ids: dict[str, uuid.UUID] = dataclasses.field(default_factory=dict)

    @property
    def held(self) -> Path:
        return self.path / "held.txt"

    def cli(self, *args: str, **kw: Any) -> CliResult:
        return self.runner(*args, env={"PEOPLELOG_DATABASE_URL": self.url}, **kw)

    def verify(self, *extra: str, held: Path | None = None, use_held: bool = True,
               key: str | None = None, use_key: bool = True) -> CliResult:
        args = ["verify", "--json", *extra]
        if use_held:
            args += ["--checkpoint", str(held or self.held)]
        if use_key:
            args += ["--key", key or self.vkey]
        result = self.cli(*args)
        if "--save-checkpoint" not in extra:
            same_verdict(result, self.runner(*args, env={
                "PEOPLELOG_DATABASE_URL": self.url, "PEOPLELOG_PURE_PYTHON": "1"}))
        return result

    def connect(self) -> Conn:
        return psycopg.connect(self.url, autocommit=True)

    def one(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def cid(self, person: str, version: int) -> str:
        return str(self.one("SELECT cid FROM people WHERE person_id = %s AND version = %s",
                            (self.ids[person], version)))


def same_verdict(native: CliResult, python: CliResult) -> None:
    """The contract between the scanners: the C and the pure-Python ones reach the same
    verdict with the same findings, in the same order, on every case of this module."""
    assert native_available(), "the C scanners are not built (see setup.py)"
    assert (native.code, native.stderr) == (python.code, python.stderr)
    if native.stdout.startswith("{"):
        assert native.json == python.json
    else:
        assert native.stdout == python.stdout


def script(case: Case, keyring: Keyring) -> None:
    """Write the scripted history; the held checkpoint is taken with the CLI after C2."""
    led = Ledger(Database(case.url, pool_size=2), keyring)
    signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    tag = uuid.uuid4().hex[:8]

    def create(who: str, **kw: Any) -> None:
        case.ids[who] = led.create_person(email=f"{who}-{tag}@example.org",
                                          name=who.title(), **kw).person_id

    def checkpoint() -> None:
        with case.connect() as conn:
            make_checkpoint(conn, signer, writers=Attestations.of(keyring))

    try:
        create("ada", password_hash=PHC_1, verified=True, actor="signup", reason="web form")
        create("bob", actor="import")
        create("cy")
        led.update_person(case.ids["ada"], name="Ada King", actor="ops", reason="married")
        led.update_person(case.ids["bob"], email=f"bob2-{tag}@example.org", actor="bob")
        checkpoint()  # C1: ada 0-1, bob 0-1, cy 0
        led.update_person(case.ids["ada"], email=f"ada2-{tag}@example.org", actor="ops")
        led.update_person(case.ids["cy"], name="Cy Young", reason="typo\n(ticket 7)")
        led.erase_person(case.ids["cy"], actor="dpo", reason="GDPR art. 17")
        create("dee", verified=True)
        led.update_person(case.ids["bob"], verified=True)
        held = case.cli("checkpoint", "--out", str(case.held), "--json")  # C2, held
        assert held.code == 0, held.stderr
        led.update_person(case.ids["ada"], password_hash=PHC_2, actor="ada")
        create("eve")
        led.update_person(case.ids["dee"], name="Dee Dee")
        checkpoint()  # C3: ada 3, eve 0, dee 1
    finally:
        led.close()
    assert parse_checkpoint(case.held.read_text()).size == C2
    assert case.one("SELECT count(*) FROM people") == C3


@pytest.fixture(scope="module")
def vkey(cli: Cli) -> str:
    result = cli("keys", "public")
    assert result.code == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture()
def new_case(server_url: str, cli: Cli, keyring: Keyring, vkey: str,
             tmp_path: Path) -> Iterator[Callable[..., Case]]:
    """Builds cases: each a fresh, migrated database of its own (dropped afterwards)."""
    urls: list[str] = []

    def build(*, history: bool = True) -> Case:
        url = create_database(server_url, "tamper")
        urls.append(url)
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
        path = tmp_path / f"case{len(urls)}"
        path.mkdir()
        case = Case(url, path, cli, vkey)
        if history:
            script(case, keyring)
        return case

    yield build
    for url in urls:
        drop_database(server_url, url)


@pytest.fixture()
def case(new_case: Callable[..., Case]) -> Case:
    return new_case()


# --- the attacker's tools: a superuser session, and the public algorithms ------------------


@contextlib.contextmanager
def superuser(case: Case) -> Iterator[Conn]:
    """A session for which the append-only triggers do not fire; commits on success."""
    with psycopg.connect(case.url) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


_RECORDS = """
SELECT person_id, version, prev, op, (extract(epoch FROM recorded_at) * 1000000)::bigint,
       actor, reason, email, name, password,
       (extract(epoch FROM verified_at) * 1000000)::bigint, format
FROM people WHERE person_id = %s AND (%s::int IS NULL OR version = %s) ORDER BY version
"""


def records(conn: Conn, person: uuid.UUID, version: int | None = None) -> list[VersionRecord]:
    rows = conn.execute(_RECORDS, (person, version, version)).fetchall()
    return [VersionRecord(person_id=r[0], version=r[1], prev=r[2], op=r[3], recorded_at=r[4],
                          actor=r[5], reason=r[6], email=_b(r[7]), name=_b(r[8]),
                          password=_b(r[9]), verified_at=r[10], format=r[11]) for r in rows]


def _b(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def content_cid(record: VersionRecord) -> str:
    return cid_of(envelope_bytes(record))


def insert_record(conn: Conn, record: VersionRecord, cid: str | None = None) -> str:
    """INSERT a version as the attacker built it (CID recomputed unless given)."""
    cid = cid or content_cid(record)
    conn.execute(
        """INSERT INTO people (person_id, version, cid, prev, format, op, recorded_at, actor,
                               reason, email, name, password, verified_at)
           VALUES (%s, %s, %s, %s, %s, %s, 'epoch'::timestamptz + %s * interval '1 microsecond',
                   %s, %s, %s, %s, %s,
                   'epoch'::timestamptz + %s * interval '1 microsecond')""",
        (record.person_id, record.version, cid, record.prev, record.format, record.op,
         record.recorded_at, record.actor, record.reason, record.email, record.name,
         record.password, record.verified_at))
    return cid


def rechain(conn: Conn, person: uuid.UUID) -> None:
    """Recompute prev links and CIDs of a person's rows so that the chain is self-consistent."""
    prev: str | None = None
    for record in records(conn, person):
        fixed = dataclasses.replace(record, prev=prev)
        cid = content_cid(fixed)
        conn.execute("UPDATE people SET prev = %s, cid = %s WHERE person_id = %s AND version = %s",
                     (prev, cid, person, record.version))
        prev = cid


def relog(conn: Conn) -> None:
    """Point every log entry at the CID its version has now."""
    conn.execute("""UPDATE log_entries l SET cid = p.cid FROM people p
                    WHERE p.person_id = l.person_id AND p.version = l.version""")


def rebuild_checkpoints(conn: Conn, signer: CheckpointSigner | None) -> None:
    """Recompute every stored checkpoint's root and frontier from the (rewritten) log; notes
    are re-signed with the attacker's own key, or kept when there is no key."""
    origin = conn.execute("SELECT origin FROM log_meta").fetchone()
    assert origin is not None
    stored = conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
    cids = [row[0] for row in conn.execute("SELECT cid FROM log_entries ORDER BY position")]
    conn.execute("DELETE FROM checkpoints")
    for size, note in stored:
        frontier = Frontier()
        for cid in cids[:size]:
            frontier.append(leaf_hash(cid_leaf(cid)))
        text = note if signer is None else signer.sign(origin[0], size, frontier.root()).text
        conn.execute("INSERT INTO checkpoints (size, root, frontier, note) VALUES (%s,%s,%s,%s)",
                     (size, frontier.root(), frontier.to_bytes(), text))


def attacker_signer() -> CheckpointSigner:
    """Another key with the very same name as the real one."""
    return CheckpointSigner(Keyring.generate().active(KeyPurpose.CHECKPOINT_SIGNING))


# --- reading verify's verdict ---------------------------------------------------------------


def damage(result: CliResult) -> list[dict[str, Any]]:
    assert result.code == 1, (result.code, result.stdout, result.stderr)
    document = result.json
    assert document["ok"] is False and document["findings"], document
    findings: list[dict[str, Any]] = document["findings"]
    return findings


def kinds(result: CliResult) -> set[str]:
    return {finding["kind"] for finding in damage(result)}


def realign_stores(conn: Conn) -> None:
    """What a thorough attacker does after rewriting ``people``: bring the tables a login
    trusts in line with it (else key-free ``verify`` reports them)."""
    conn.execute("DELETE FROM people_latest")
    conn.execute(_REBUILD_LATEST, {"erased": "erased"})
    for table in ("email_lookup", "person_keys"):
        conn.execute(sql.SQL("DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM people p"
                             " WHERE p.person_id = t.person_id)").format(sql.Identifier(table)))


def assert_found(result: CliResult, kind: str, person: uuid.UUID | None = None,
                 version: int | None = None) -> None:
    findings = damage(result)
    matches = [f for f in findings if f["kind"] == kind
               and (person is None or f["person_id"] == str(person))
               and (version is None or f["version"] == version)]
    assert matches, (kind, str(person), version, findings)


def clean(result: CliResult) -> dict[str, Any]:
    assert result.code == 0, (result.code, result.stdout, result.stderr)
    document: dict[str, Any] = result.json
    assert document["ok"] is True and document["findings"] == [], document
    return document


# --- the clean path -------------------------------------------------------------------------


def test_clean_ledger_verifies_and_saves_the_newest_checkpoint(case: Case) -> None:
    saved = case.path / "saved.txt"
    document = clean(case.verify("--save-checkpoint", str(saved)))
    log = document["log"]
    assert document["checked"] == C3 and document["persons"] == 5
    assert log["size"] == C3 and log["held_size"] == C2 and log["checkpoints"] == 3
    assert log["consistent_with_held"] is True and log["pending"] == 0
    assert log["key_source"] == "given"
    newest = case.one("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
    assert saved.read_text(encoding="utf-8") == newest == log["latest_checkpoint"]
    assert parse_checkpoint(newest).root == base64.b64decode(log["root"])
    # The saved checkpoint is the next run's held one.
    assert clean(case.verify(held=saved))["log"]["consistent_with_held"] is True
    # Without a held checkpoint and key: the key recorded in the database is used.
    assert clean(case.verify(use_held=False, use_key=False))["log"]["key_source"] == "database"
    # Human output, exit 0.
    human = case.cli("verify", "--checkpoint", str(case.held), "--key", case.vkey)
    assert human.code == 0 and human.stdout.strip() and not human.stdout.startswith("{"), (
        human.stdout)


def test_nothing_is_saved_when_verify_finds_damage(case: Case) -> None:
    saved = case.path / "saved.txt"
    with superuser(case) as conn:
        conn.execute("UPDATE people SET actor = 'x' WHERE person_id = %s AND version = 0",
                     (case.ids["bob"],))
    assert "cid_mismatch" in kinds(case.verify("--save-checkpoint", str(saved)))
    assert not saved.exists()


def test_the_key_may_be_a_file_or_the_environment(case: Case) -> None:
    key_file = case.path / "verifier.key"
    key_file.write_text(case.vkey + "\n")
    clean(case.verify(key=str(key_file)))
    result = case.runner("verify", "--json", "--checkpoint", str(case.held),
                         env={"PEOPLELOG_DATABASE_URL": case.url,
                              "PEOPLELOG_VERIFIER_KEY": case.vkey})
    assert clean(result)["log"]["key_source"] == "given"


def test_usage_errors_exit_2(case: Case) -> None:
    garbage = case.path / "garbage.txt"
    garbage.write_text("not a checkpoint\n")
    for result in (case.verify(held=garbage), case.verify(held=case.path / "missing.txt"),
                   case.verify(key="not-a-key"),
                   case.cli("verify", "--person", str(case.ids["ada"]), "--checkpoint",
                            str(case.held))):
        assert result.code == 2, (result.code, result.stdout, result.stderr)
        assert result.stdout == ""


def test_checkpoint_is_idempotent_when_nothing_is_pending(case: Case) -> None:
    first = case.cli("checkpoint", "--json")
    second = case.cli("checkpoint", "--json")
    assert first.code == second.code == 0
    assert first.json == second.json
    assert first.json["new"] is False and first.json["sequenced"] == 0
    assert first.json["size"] == C3
    assert case.one("SELECT count(*) FROM checkpoints") == 3
    human = case.cli("checkpoint")
    assert human.code == 0 and human.stdout == first.json["checkpoint"]


def test_versions_appended_after_a_checkpoint_are_pending_until_the_next(
        case: Case, keyring: Keyring) -> None:
    with Ledger(Database(case.url, pool_size=1), keyring) as led:
        led.update_person(case.ids["eve"], name="Eve Two")
        led.create_person(email=f"fay-{uuid.uuid4().hex[:6]}@example.org", name="Fay")
    log = clean(case.verify())["log"]
    assert log["pending"] == 2 and log["size"] == C3
    result = case.cli("checkpoint", "--json", "--out", str(case.path / "next.txt"))
    assert result.code == 0, result.stderr
    assert result.json["new"] is True and result.json["sequenced"] == 2
    assert result.json["size"] == C3 + 2
    positions = case.one("""SELECT array_agg(position ORDER BY position) FROM log_entries
                            WHERE position >= %s""", (C3,))
    assert positions == [C3, C3 + 1]
    assert case.one("SELECT version FROM log_entries WHERE person_id = %s AND position >= %s",
                    (case.ids["eve"], C3)) == 1
    log = clean(case.verify())["log"]
    assert log["pending"] == 0 and log["size"] == C3 + 2 and log["consistent_with_held"]
    clean(case.verify(held=case.path / "next.txt"))


def test_the_sequencer_refuses_a_log_that_does_not_match_its_checkpoint(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("DELETE FROM log_entries WHERE position = %s", (C3 - 1,))
    result = case.cli("checkpoint", "--json")
    assert result.code == 1 and "chain_broken" in result.stderr, result.stderr


def test_the_sequencer_refuses_to_extend_a_tampered_frontier(case: Case,
                                                             keyring: Keyring) -> None:
    with superuser(case) as conn:
        conn.execute("UPDATE checkpoints SET frontier = set_byte(frontier, 0, "
                     "get_byte(frontier, 0) # 1) WHERE size = %s", (C3,))
    assert "bad_checkpoint" in kinds(case.verify())
    with Ledger(Database(case.url, pool_size=1), keyring) as led:
        led.update_person(case.ids["eve"], name="Eve Two")
    result = case.cli("checkpoint", "--json")
    assert result.code == 1 and "chain_broken" in result.stderr, result.stderr
    assert case.one("SELECT max(size) FROM checkpoints") == C3


# --- inclusion proofs -----------------------------------------------------------------------


def test_prove_and_verify_proof(case: Case) -> None:
    proof_file = case.path / "proof.json"
    result = case.cli("prove", str(case.ids["ada"]), "--version", "1", "--out", str(proof_file),
                      "--json")
    assert result.code == 0, result.stderr
    proof = json.loads(proof_file.read_text())
    assert proof == result.json
    assert proof["cid"] == case.cid("ada", 1) and proof["tree_size"] == C3
    assert proof["checkpoint"] == case.one("SELECT note FROM checkpoints WHERE size = %s", (C3,))
    ok = case.cli("verify-proof", str(proof_file), "--key", case.vkey, "--json")
    assert ok.code == 0 and ok.json["ok"] is True and ok.json["problems"] == [], ok.stdout
    piped = case.cli("verify-proof", "-", "--key", case.vkey, "--json",
                     stdin=proof_file.read_text())
    assert piped.code == 0, piped.stderr
    # Every proof of every version verifies.
    for person, versions in (("bob", 3), ("eve", 1)):
        for version in range(versions):
            one = case.cli("prove", str(case.ids[person]), "--version", str(version), "--json")
            assert one.code == 0, one.stderr
            check = case.cli("verify-proof", "-", "--key", case.vkey, stdin=one.stdout)
            assert check.code == 0, (person, version, check.stdout)

    def rejected(document: dict[str, Any], key: str | None = None) -> None:
        path = case.path / "bad.json"
        path.write_text(json.dumps(document))
        check = case.cli("verify-proof", str(path), "--key", key or case.vkey, "--json")
        assert check.code == 1 and check.json["ok"] is False and check.json["problems"], (
            check.stdout)

    first = base64.b64decode(proof["proof"][0])
    rejected({**proof, "proof": [base64.b64encode(bytes([first[0] ^ 1]) + first[1:]).decode(),
                                 *proof["proof"][1:]]})
    rejected({**proof, "proof": proof["proof"][:-1]})
    rejected({**proof, "index": proof["index"] + 1})
    rejected({**proof, "cid": case.cid("ada", 2)})
    rejected({**proof, "tree_size": C2})
    rejected({**proof, "checkpoint": case.held.read_text()})
    rejected(proof, key=str(attacker_signer().verifier))
    # person_id and version are bound through the envelope, which must hash to the CID.
    rejected({**proof, "version": 2})
    rejected({**proof, "person_id": str(case.ids["bob"])})
    rejected({key: value for key, value in proof.items() if key != "envelope"})
    rejected({**proof, "envelope": {**proof["envelope"], "version": 2}})
    rejected({**proof, "envelope": {**proof["envelope"], "version": "1"}})
    rejected({**proof, "envelope": {**proof["envelope"], "person_id": "not-a-uuid"}})
    rejected({**proof, "envelope": {"person_id": proof["envelope"]["person_id"]}})
    rejected({**proof, "format": "peoplelog-inclusion-proof/1"})
    rejected({**proof, "envelope": {**proof["envelope"], "version": 2**60}})
    rejected({**proof, "envelope": {**proof["envelope"],
                                    "email": proof["envelope"]["email"] + "="}})
    assert proof["envelope"]["person_id"] == str(case.ids["ada"])
    assert proof["envelope"]["version"] == 1


def test_prove_needs_a_sequenced_version(case: Case, keyring: Keyring) -> None:
    with Ledger(Database(case.url, pool_size=1), keyring) as led:
        led.update_person(case.ids["eve"], name="Eve Two")
    for args in ((str(case.ids["eve"]), "--version", "1"),   # pending
                 (str(case.ids["eve"]), "--version", "5"),   # no such version
                 (str(uuid.uuid4()), "--version", "0")):     # no such person
        result = case.cli("prove", *args, "--json")
        assert result.code == 3, (args, result.stderr)
    garbage = case.path / "garbage.json"
    garbage.write_text("{}")
    assert case.cli("verify-proof", str(garbage), "--key", case.vkey).code == 2
    assert case.cli("verify-proof", str(garbage)).code == 2  # no key


# --- exports ----------------------------------------------------------------------------------


def export(case: Case, versions: int = C3) -> list[str]:
    out = case.path / "ledger.jsonl"
    result = case.cli("export", "--out", str(out), "--json")
    assert result.code == 0 and result.json["versions"] == versions, result.stderr
    return out.read_text(encoding="utf-8").splitlines(keepends=True)


def verify_export(case: Case, lines: list[str], *, use_held: bool = True) -> CliResult:
    path = case.path / "checked.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    args = ["verify", "--json", "--from-export", str(path), "--key", case.vkey]
    if use_held:
        args += ["--checkpoint", str(case.held)]
    # No database at all: an unreachable URL proves the export is checked on its own.
    return case.runner(*args, env={"PEOPLELOG_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})


def version_lines(lines: list[str]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, json.loads(line)) for i, line in enumerate(lines)
            if json.loads(line)["type"] == "version"]


def test_export_and_verify_from_export(case: Case) -> None:
    lines = export(case)
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["verifier_key"] == case.vkey
    assert [json.loads(line)["size"] for line in lines[1:4]] == [C1, C2, C3]
    versions = version_lines(lines)
    assert [item["position"] for _, item in versions] == list(range(C3))
    document = clean(verify_export(case, lines))
    assert document["checked"] == C3 and document["persons"] == 5
    clean(verify_export(case, lines, use_held=False))


def test_a_tampered_export_line_is_a_cid_mismatch(case: Case) -> None:
    lines = export(case)
    index, item = next((i, v) for i, v in version_lines(lines)
                       if v["envelope"]["person_id"] == str(case.ids["bob"])
                       and v["envelope"]["version"] == 1)
    item["envelope"]["actor"] = "somebody else"
    lines[index] = json.dumps(item, ensure_ascii=False) + "\n"
    result = verify_export(case, lines)
    assert_found(result, "cid_mismatch", case.ids["bob"], 1)


def test_an_export_line_whose_cid_is_no_cid_is_a_finding_not_a_crash(case: Case) -> None:
    lines = export(case)
    index, item = version_lines(lines)[3]
    item["cid"] = "not-a-cid"
    lines[index] = json.dumps(item, ensure_ascii=False) + "\n"
    result = verify_export(case, lines)
    assert result.code == 1, result.stderr
    assert "malformed_line" in kinds(result)


def test_a_truncated_export_is_found_against_the_held_checkpoint(case: Case) -> None:
    lines = export(case)
    # Drop the versions after position 7 and every checkpoint that would cover them.
    kept = [line for line in lines
            if not (json.loads(line)["type"] == "version" and json.loads(line)["position"] >= 8)
            and not (json.loads(line)["type"] == "checkpoint" and json.loads(line)["size"] > C1)]
    assert "log_truncated" in kinds(verify_export(case, kept))
    assert "checkpoint_rollback" in kinds(verify_export(case, kept))
    # Without the held checkpoint the shortened export is self-consistent: the limit of
    # any export (or database) checked on its own.
    clean(verify_export(case, kept, use_held=False))


# --- the standard-tools recipes of docs/AUDIT.md -----------------------------------------------


def doc_block(language: str, marker: str) -> str:
    text = (ROOT / "docs" / "AUDIT.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    found = [str(block) for block in blocks if block.startswith(f"# file: {marker}")]
    assert len(found) == 1, f"docs/AUDIT.md has no single ```{language} block for {marker}"
    return found[0]


# The recipe runs with no project paths: python3 -S and no PYTHON* variables.
PLAIN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def run_recipe(case: Case, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = case.path / "recompute_root.py"
    path.write_text(script, encoding="utf-8")
    python3 = shutil.which("python3")
    assert python3 is not None
    return subprocess.run([python3, "-S", str(path), *args], capture_output=True, text=True,
                          check=False, timeout=120, cwd=case.path, env=PLAIN_ENV)


def test_the_audit_recipe_recomputes_cids_and_the_root(case: Case, keyring: Keyring) -> None:
    script = doc_block("python", "recompute_root.py")
    assert not re.search(r"^\s*(import|from)\s+(ledger|fields|schema|projections)", script,
                         flags=re.MULTILINE)
    with Ledger(Database(case.url, pool_size=1), keyring) as led:  # one pending version
        led.update_person(case.ids["eve"], name="Eve Two")
    out = case.path / "ledger.jsonl"
    assert case.cli("export", "--out", str(out)).code == 0
    result = run_recipe(case, script, str(out), str(case.held))
    assert result.returncode == 0, (result.stdout, result.stderr)
    newest = parse_checkpoint(case.one("SELECT note FROM checkpoints WHERE size = %s", (C3,)))
    root_line = result.stdout.strip().splitlines()[-1]
    assert root_line == f"tree size {C3} root {base64.b64encode(newest.root).decode()}", (
        result.stdout)
    assert f"checkpoint {C2} root ok" in result.stdout and "held checkpoint ok" in result.stdout
    assert "pending 1" in result.stdout
    # A changed envelope, and a log rewritten consistently (CIDs recomputed), both fail.
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    index, item = version_lines(lines)[3]
    item["envelope"]["reason"] = "rewritten"
    lines[index] = json.dumps(item, ensure_ascii=False) + "\n"
    out.write_text("".join(lines), encoding="utf-8")
    result = run_recipe(case, script, str(out))
    assert result.returncode == 1 and "CID MISMATCH" in result.stdout, result.stdout
    item["cid"] = content_cid(VersionRecord(
        person_id=uuid.UUID(item["envelope"]["person_id"]), version=item["envelope"]["version"],
        prev=item["envelope"]["prev"], op=item["envelope"]["op"],
        recorded_at=item["envelope"]["recorded_at"], actor=item["envelope"]["actor"],
        reason="rewritten", email=_unb64(item["envelope"]["email"]),
        name=_unb64(item["envelope"]["name"]), password=_unb64(item["envelope"]["password"]),
        verified_at=item["envelope"]["verified_at"], format=item["envelope"]["format"]))
    lines[index] = json.dumps(item, ensure_ascii=False) + "\n"
    out.write_text("".join(lines), encoding="utf-8")
    result = run_recipe(case, script, str(out))
    assert result.returncode == 1 and "ROOT MISMATCH" in result.stdout, result.stdout
    assert "CID MISMATCH" not in result.stdout


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_the_audit_recipe_checks_a_signature_with_openssl(case: Case) -> None:
    script = doc_block("sh", "check_note.sh")
    path = case.path / "check_note.sh"
    path.write_text(script, encoding="utf-8")

    def check(note: Path, key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(path), str(note), key], capture_output=True, text=True,
                              check=False, timeout=60, cwd=case.path)

    result = check(case.held, case.vkey)
    assert result.returncode == 0 and "signature ok" in result.stdout, (result.stdout,
                                                                         result.stderr)
    text = case.held.read_text()
    forged = case.path / "forged.txt"
    forged.write_text(text.replace(f"\n{C2}\n", f"\n{C2 - 1}\n"))
    assert check(forged, case.vkey).returncode != 0
    other = attacker_signer().verifier
    assert check(case.held, str(other)).returncode != 0


# --- tamper cases: one column of one version -------------------------------------------------

# An SQL assignment per envelope column; each changes the value of the targeted row.
COLUMN_CHANGES = {
    "cid": "cid = %(forged)s",
    "prev": "prev = %(forged)s",
    "format": "format = format + 1",
    "op": "op = CASE op WHEN 'updated' THEN 'email_verified' ELSE 'updated' END",
    "recorded_at": "recorded_at = recorded_at + interval '1 microsecond'",
    "actor": "actor = coalesce(actor, '') || '.'",
    "reason": "reason = coalesce(reason, '') || '.'",
    "email": "email = set_byte(email, 30, get_byte(email, 30) # 1)",
    "name": "name = set_byte(name, 30, get_byte(name, 30) # 1)",
    "password": "password = CASE WHEN password IS NULL THEN '\\x00'::bytea "
                "ELSE set_byte(password, 30, get_byte(password, 30) # 1) END",
    "verified_at": "verified_at = CASE WHEN verified_at IS NULL THEN recorded_at "
                   "ELSE verified_at - interval '1 second' END",
    "person_id": "person_id = %(other)s",
    "version": "version = version + 100",
}
# ada's versions: 0 (in C1), 1 (in C1), 2 (in C2, the held one), 3 (newest, only in C3).
TARGETS = [0, 1, 2, 3]


@pytest.mark.parametrize("version", TARGETS, ids=[f"ada-v{v}" for v in TARGETS])
@pytest.mark.parametrize("column", list(COLUMN_CHANGES))
def test_a_changed_value_in_any_column(new_case: Callable[..., Case], column: str,
                                       version: int) -> None:
    case = new_case()
    ada, other = case.ids["ada"], uuid.uuid4()
    with superuser(case) as conn:
        # The attacker is superuser: CHECK constraints are no obstacle either.
        conn.execute("ALTER TABLE people DROP CONSTRAINT people_genesis_has_no_prev")
        changed = conn.execute(
            f"UPDATE people SET {COLUMN_CHANGES[column]} WHERE person_id = %(ada)s "
            "AND version = %(version)s",
            {"forged": FORGED_CID, "other": other, "ada": ada, "version": version}).rowcount
        assert changed == 1
    result = case.verify()
    now_person = other if column == "person_id" else ada
    now_version = version + 100 if column == "version" else version
    assert_found(result, "cid_mismatch", now_person, now_version)
    if column in ("person_id", "version"):
        assert_found(result, "missing_version", ada, version)  # the log still names it
    if column == "cid":
        assert_found(result, "log_cid_mismatch", ada, version)
        if version < 3:
            assert_found(result, "prev_mismatch", ada, version + 1)
    if column == "format":
        assert_found(result, "unknown_format", ada, version)
    if column == "op" and version == 0:
        assert_found(result, "bad_genesis", ada, 0)
    if column == "prev" and version == 0:
        assert_found(result, "prev_mismatch", ada, 0)


@pytest.mark.parametrize("moment", ["infinity", "-infinity", "294276-12-31 23:59:59+00"])
def test_a_timestamp_with_no_canonical_form(case: Case, moment: str) -> None:
    """Finite or not, a stored timestamp never stops verify: it is damage, found alike by the
    C and the Python scanner (the app role can insert such a version 0)."""
    eve = case.ids["eve"]
    with superuser(case) as conn:
        conn.execute("UPDATE people SET recorded_at = %s WHERE person_id = %s AND version = 0",
                     (moment, eve))
    assert_found(case.verify(), "cid_mismatch", eve, 0)
    proof = case.cli("prove", str(eve), "--version", "0", "--json")
    assert proof.code == 1 and "no canonical form" in proof.stderr, proof


def test_changed_recorded_at_actor_and_op(case: Case) -> None:
    bob = case.ids["bob"]
    with superuser(case) as conn:
        conn.execute("""UPDATE people SET recorded_at = recorded_at - interval '1 day'
                        WHERE person_id = %s AND version = 1""", (bob,))
        conn.execute("UPDATE people SET actor = 'intruder' WHERE person_id = %s AND version = 2",
                     (bob,))
        conn.execute("""UPDATE people SET op = 'erased' WHERE person_id = %s AND version = 0""",
                     (case.ids["eve"],))
    result = case.verify()
    assert_found(result, "cid_mismatch", bob, 1)
    assert_found(result, "cid_mismatch", bob, 2)
    assert_found(result, "cid_mismatch", case.ids["eve"], 0)
    assert_found(result, "bad_genesis", case.ids["eve"], 0)
    assert "unknown_op" not in kinds(result)  # 'erased' is a known op, just not at version 0


def test_an_unknown_op_is_named(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("UPDATE people SET op = 'teleported' WHERE person_id = %s AND version = 1",
                     (case.ids["dee"],))
    assert_found(case.verify(), "unknown_op", case.ids["dee"], 1)


def test_a_changed_value_with_a_recomputed_cid_is_found_by_the_log(case: Case) -> None:
    """The attacker recomputes the CID of the edited version and relinks the chain after it:
    the per-person chain is clean again, the log is not."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("UPDATE people SET reason = 'nothing to see' WHERE person_id = %s "
                     "AND version = 1", (ada,))
        rechain(conn, ada)
    clean(case.cli("verify", "--person", str(ada), "--json"))
    result = case.verify()
    for version in (1, 2, 3):  # the edited version and every one relinked after it
        assert_found(result, "log_cid_mismatch", ada, version)
    assert "checkpoint_mismatch" not in kinds(result)  # the log itself is untouched


# --- tamper cases: deletions ----------------------------------------------------------------


def test_a_deleted_middle_version(case: Case) -> None:
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s AND version = 1", (ada,))
    result = case.verify()
    assert_found(result, "version_gap", ada, 2)
    assert_found(result, "missing_version", ada, 1)


def test_a_deleted_newest_version(case: Case) -> None:
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s AND version = 3", (ada,))
    clean(case.cli("verify", "--person", str(ada), "--json"))  # the chain alone cannot tell
    assert_found(case.verify(), "missing_version", ada, 3)


def test_deleted_newest_versions_with_their_log_entries(case: Case) -> None:
    """The newest versions and their log entries go; the stored checkpoints stay."""
    with superuser(case) as conn:
        conn.execute("""DELETE FROM people p USING log_entries l WHERE l.position >= %s
                        AND p.person_id = l.person_id AND p.version = l.version""", (C2,))
        conn.execute("DELETE FROM log_entries WHERE position >= %s", (C2,))
    result = case.verify()
    assert "log_truncated" in kinds(result)


def test_deleted_newest_versions_rolled_back_to_an_older_checkpoint(case: Case) -> None:
    """Everything after C1 removed, log and checkpoints included: the database is
    self-consistent again, and only the held checkpoint (C2) can tell."""
    with superuser(case) as conn:
        conn.execute("""DELETE FROM people p USING log_entries l WHERE l.position >= %s
                        AND p.person_id = l.person_id AND p.version = l.version""", (C1,))
        conn.execute("DELETE FROM log_entries WHERE position >= %s", (C1,))
        conn.execute("DELETE FROM checkpoints WHERE size > %s", (C1,))
        realign_stores(conn)
    # Documented limit: without a held checkpoint this rollback shows only where it undid
    # an erasure: Cy is back without the data key and the claim the erasure destroyed.
    alone = case.verify(use_held=False)
    assert {(f["kind"], f["person_id"]) for f in damage(alone)} == {
        ("key_missing", str(case.ids["cy"])), ("claim_missing", str(case.ids["cy"]))}
    result = case.verify()
    assert {"checkpoint_rollback", "log_truncated"} <= kinds(result)
    assert_found(result, "checkpoint_rollback")


def test_a_deleted_person(case: Case) -> None:
    bob = case.ids["bob"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s", (bob,))
    result = case.verify()
    for version in range(3):
        assert_found(result, "missing_version", bob, version)


def test_a_deleted_person_with_their_log_entries(case: Case) -> None:
    bob = case.ids["bob"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s", (bob,))
        conn.execute("DELETE FROM log_entries WHERE person_id = %s", (bob,))
    result = case.verify()
    assert {"log_gap", "checkpoint_mismatch"} <= kinds(result)


@pytest.mark.parametrize("resigned", [False, True], ids=["old-notes", "re-signed"])
def test_a_deleted_person_with_the_log_renumbered(case: Case, resigned: bool) -> None:
    """The log is rebuilt without the person (positions closed up) and the checkpoints
    recomputed: kept with their old signed notes (which no longer match), or re-signed with
    the attacker's own key recorded as the log's key (only the held checkpoint can tell)."""
    bob = case.ids["bob"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s", (bob,))
        conn.execute("DELETE FROM log_entries WHERE person_id = %s", (bob,))
        conn.execute("UPDATE log_entries SET position = position + 1000000")
        conn.execute("""UPDATE log_entries l SET position = n.rank - 1
                        FROM (SELECT position, row_number() OVER (ORDER BY position) AS rank
                              FROM log_entries) n WHERE n.position = l.position""")
        conn.execute("DELETE FROM checkpoints WHERE size > (SELECT count(*) FROM log_entries)")
        signer = attacker_signer() if resigned else None
        rebuild_checkpoints(conn, signer)
        if signer is not None:
            conn.execute("UPDATE log_meta SET verifier_key = %s", (str(signer.verifier),))
        realign_stores(conn)
    if resigned:
        clean(case.verify(use_held=False, use_key=False))  # documented limit
        assert "checkpoint_mismatch" in kinds(case.verify(use_key=False))
        assert {"bad_signature", "checkpoint_mismatch"} <= kinds(case.verify())
    else:
        assert {"bad_checkpoint", "checkpoint_mismatch"} <= kinds(case.verify())


# --- tamper cases: relinking, renumbering, copying, forging -------------------------------


def test_prev_relinked(case: Case) -> None:
    """Version 2 made to follow version 0, its CID recomputed."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        (record,) = records(conn, ada, 2)
        relinked = dataclasses.replace(record, prev=case.cid("ada", 0))
        conn.execute("UPDATE people SET prev = %s, cid = %s WHERE person_id = %s AND version = 2",
                     (relinked.prev, content_cid(relinked), ada))
    result = case.verify()
    assert_found(result, "prev_mismatch", ada, 2)
    assert_found(result, "prev_mismatch", ada, 3)
    assert_found(result, "log_cid_mismatch", ada, 2)


def test_versions_renumbered(case: Case) -> None:
    """Version 1 removed, later versions renumbered down and the chain recomputed: a
    perfect chain, which only the log contradicts."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("DELETE FROM people WHERE person_id = %s AND version = 1", (ada,))
        for shift in (1000, -1001):  # in two steps: a unique index is checked row by row
            conn.execute("UPDATE people SET version = version + %s WHERE person_id = %s "
                         "AND version > 1", (shift, ada))
        rechain(conn, ada)
    clean(case.cli("verify", "--person", str(ada), "--json"))
    result = case.verify()
    assert_found(result, "log_cid_mismatch", ada, 1)
    assert_found(result, "log_cid_mismatch", ada, 2)
    assert_found(result, "missing_version", ada, 3)


def test_a_version_copied_to_another_person(case: Case) -> None:
    """Ada's version 1, verbatim (CID and prev included), as Bob's next version."""
    ada, bob = case.ids["ada"], case.ids["bob"]
    with superuser(case) as conn:
        conn.execute("""INSERT INTO people (person_id, version, cid, prev, format, op,
                            recorded_at, actor, reason, email, name, password, verified_at)
                        SELECT %s, 3, cid, prev, format, op, recorded_at, actor, reason,
                               email, name, password, verified_at
                        FROM people WHERE person_id = %s AND version = 1""", (bob, ada))
    result = case.verify()
    assert_found(result, "cid_mismatch", bob, 3)
    assert_found(result, "prev_mismatch", bob, 3)


def test_a_version_copied_over_another_persons_version(case: Case) -> None:
    """Ada's version 1 re-addressed as Bob's version 1 (person, prev and CID recomputed)."""
    ada, bob = case.ids["ada"], case.ids["bob"]
    with superuser(case) as conn:
        (source,) = records(conn, ada, 1)
        conn.execute("DELETE FROM people WHERE person_id = %s AND version = 1", (bob,))
        insert_record(conn, dataclasses.replace(source, person_id=bob,
                                                prev=case.cid("bob", 0)))
    result = case.verify()
    assert_found(result, "log_cid_mismatch", bob, 1)
    assert_found(result, "prev_mismatch", bob, 2)


def test_a_forged_version_after_a_gap(case: Case) -> None:
    ada = case.ids["ada"]
    with superuser(case) as conn:
        (head,) = records(conn, ada, 3)
        insert_record(conn, dataclasses.replace(head, version=5, prev=case.cid("ada", 3),
                                                reason="forged"))
    assert_found(case.verify(), "version_gap", ada, 5)


def test_a_forged_fork(case: Case) -> None:
    """A second version 1 (the primary key dropped first): a fork, and nothing else (the
    log tables are untouched, so no log finding may send an auditor after them)."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("ALTER TABLE people DROP CONSTRAINT people_pkey")
        (record,) = records(conn, ada, 1)
        insert_record(conn, dataclasses.replace(record, reason="the other story"))
    result = case.verify()
    assert_found(result, "fork", ada, 1)
    assert kinds(result) == {"fork"}, damage(result)
    exported = verify_export(case, export(case, C3 + 1))
    assert kinds(exported) == {"fork"}, damage(exported)


def test_a_duplicated_version(case: Case) -> None:
    """Version 1 stored twice, byte for byte (both unique constraints dropped first)."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        conn.execute("ALTER TABLE people DROP CONSTRAINT people_pkey")
        conn.execute("ALTER TABLE people DROP CONSTRAINT people_person_id_cid_key")
        (record,) = records(conn, ada, 1)
        insert_record(conn, record)
    result = case.verify()
    assert_found(result, "duplicate", ada, 1)
    assert kinds(result) == {"duplicate"}, damage(result)
    # An export is read in log order with one CID per person in memory: the second copy
    # of a version older than the newest is one finding, named a fork there.
    exported = verify_export(case, export(case, C3 + 1))
    assert len(damage(exported)) == 1 and kinds(exported) <= {"duplicate", "fork"}


def test_a_forged_log_entry_outside_any_checkpoint(case: Case, keyring: Keyring) -> None:
    with Ledger(Database(case.url, pool_size=1), keyring) as led:
        led.update_person(case.ids["eve"], name="Eve Two")
    with superuser(case) as conn:
        conn.execute("""INSERT INTO log_entries (position, person_id, version, cid)
                        SELECT %s, person_id, version, cid FROM people
                        WHERE person_id = %s AND version = 1""", (C3, case.ids["eve"]))
    assert "unsigned_log_entries" in kinds(case.verify())


# --- tamper cases: the log and the checkpoints ------------------------------------------------


@pytest.mark.parametrize("variant", ["cid", "not-a-cid", "swap", "delete", "relink"])
def test_log_entries_changed(case: Case, variant: str) -> None:
    with superuser(case) as conn:
        if variant == "cid":
            conn.execute("UPDATE log_entries SET cid = %s WHERE position = 3", (FORGED_CID,))
        elif variant == "not-a-cid":
            conn.execute("UPDATE log_entries SET cid = 'not a CID \u00e9' WHERE position = 3")
        elif variant == "swap":
            conn.execute("UPDATE log_entries SET position = 1000000 WHERE position = 3")
            conn.execute("UPDATE log_entries SET position = 3 WHERE position = 4")
            conn.execute("UPDATE log_entries SET position = 4 WHERE position = 1000000")
        elif variant == "delete":
            conn.execute("DELETE FROM log_entries WHERE position = 3")
        else:  # positions 0 and 1 name each other's versions (CIDs left in place)
            first = conn.execute("SELECT person_id, version FROM log_entries "
                                 "WHERE position = 0").fetchone()
            second = conn.execute("SELECT person_id, version FROM log_entries "
                                  "WHERE position = 1").fetchone()
            assert first is not None and second is not None
            conn.execute("UPDATE log_entries SET version = -1 WHERE position = 0")
            conn.execute("UPDATE log_entries SET person_id = %s, version = %s "
                         "WHERE position = 1", first)
            conn.execute("UPDATE log_entries SET person_id = %s, version = %s "
                         "WHERE position = 0", second)
    result = case.verify()
    expected = {"cid": "log_cid_mismatch", "not-a-cid": "bad_log_entry",
                "swap": "checkpoint_mismatch", "delete": "log_gap",
                "relink": "log_cid_mismatch"}[variant]
    assert expected in kinds(result)
    if variant in ("cid", "not-a-cid", "swap", "delete"):
        assert "checkpoint_mismatch" in kinds(result)


@pytest.mark.parametrize("size", [C2, C3], ids=["held-size", "newest"])
@pytest.mark.parametrize("column", ["size", "root", "note", "note-resigned", "frontier"])
def test_a_stored_checkpoint_changed(case: Case, column: str, size: int) -> None:
    with superuser(case) as conn:
        if column == "size":
            conn.execute("UPDATE checkpoints SET size = size + 1 WHERE size = %s", (size,))
        elif column == "root":
            conn.execute("UPDATE checkpoints SET root = set_byte(root, 0, get_byte(root, 0) # 1)"
                         " WHERE size = %s", (size,))
        elif column == "note":
            conn.execute("UPDATE checkpoints SET note = replace(note, %s, %s) WHERE size = %s",
                         (f"\n{size}\n", f"\n{size + 1}\n", size))
        elif column == "note-resigned":
            origin, root = conn.execute("SELECT origin, root FROM log_meta, checkpoints "
                                        "WHERE size = %s", (size,)).fetchone() or ("", b"")
            note = attacker_signer().sign(origin, size, bytes(root)).text
            conn.execute("UPDATE checkpoints SET note = %s WHERE size = %s", (note, size))
        else:
            conn.execute("UPDATE checkpoints SET frontier = set_byte(frontier, 0, "
                         "get_byte(frontier, 0) # 1) WHERE size = %s", (size,))
    if column == "frontier" and size != C3:
        # Documented: only the newest checkpoint's frontier is used (to extend the tree);
        # older frontiers are a cache nothing reads, and are checked once they are newest.
        clean(case.verify())
        return
    result = case.verify()
    expected = {"size": "bad_checkpoint", "root": "bad_checkpoint", "note": "bad_checkpoint",
                "note-resigned": "bad_signature", "frontier": "bad_checkpoint"}[column]
    assert expected in kinds(result)


def test_log_meta_changed(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("UPDATE log_meta SET origin = origin || '-2'")
    result = case.verify()
    assert {"bad_checkpoint", "origin_mismatch"} <= kinds(result)


def test_a_replaced_verifier_key_in_the_database(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("UPDATE log_meta SET verifier_key = %s", (str(attacker_signer().verifier),))
    assert "bad_signature" in kinds(case.verify(use_held=False, use_key=False))
    clean(case.verify())  # the auditor's own key is what counts


# --- tamper cases: a whole rewrite ------------------------------------------------------------


def rewrite_everything(case: Case, signer: CheckpointSigner | None) -> None:
    """Edit an old version, then recompute every chain, the log and every checkpoint."""
    with superuser(case) as conn:
        conn.execute("UPDATE people SET reason = 'rewritten' WHERE person_id = %s "
                     "AND version = 0", (case.ids["bob"],))
        for person in case.ids.values():
            rechain(conn, person)
        relog(conn)
        rebuild_checkpoints(conn, signer)
        if signer is not None:
            conn.execute("UPDATE log_meta SET verifier_key = %s", (str(signer.verifier),))
        realign_stores(conn)


def test_a_whole_rewrite_without_any_signing_key(case: Case) -> None:
    rewrite_everything(case, None)
    clean(case.cli("verify", "--person", str(case.ids["bob"]), "--json"))
    result = case.verify()
    assert {"bad_checkpoint", "checkpoint_mismatch"} <= kinds(result)
    assert "bad_checkpoint" in kinds(case.verify(use_held=False, use_key=False))


def test_a_whole_rewrite_re_signed_with_another_key(case: Case) -> None:
    rewrite_everything(case, attacker_signer())
    # Documented limit: a database checked against nothing but itself.
    clean(case.verify(use_held=False, use_key=False))
    # The auditor's key alone already refuses the stored checkpoints...
    assert "bad_signature" in kinds(case.verify(use_held=False))
    # ...and the held checkpoint shows the history was rewritten, key or no key.
    result = case.verify()
    assert {"bad_signature", "checkpoint_mismatch", "inconsistent_checkpoint"} <= kinds(result)
    assert "checkpoint_mismatch" in kinds(case.verify(use_key=False))


# --- tamper cases: the held checkpoint ----------------------------------------------------------


def test_a_held_checkpoint_with_a_bad_signature(case: Case) -> None:
    text = case.held.read_text()
    body, _, signature_line = text.partition("\n\n")
    dash, name, signature = signature_line.strip().split(" ")
    raw = base64.b64decode(signature)
    bad = base64.b64encode(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]).decode()
    edits = {
        "signature": f"{body}\n\n{dash} {name} {bad}\n",
        "root": text.replace(text.split("\n")[2], base64.b64encode(bytes(32)).decode()),
        "size": text.replace(f"\n{C2}\n", f"\n{C2 - 1}\n"),
    }
    for what, edited in edits.items():
        path = case.path / f"held-{what}.txt"
        path.write_text(edited)
        result = case.verify(held=path)
        assert "bad_signature" in kinds(result), what


def test_after_a_signing_key_rotation_every_trusted_key_is_given(case: Case,
                                                                   keyring: Keyring) -> None:
    rotated = keyring.with_new_key(KeyPurpose.CHECKPOINT_SIGNING)
    signer = CheckpointSigner(rotated.active(KeyPurpose.CHECKPOINT_SIGNING))
    assert str(signer.verifier) != case.vkey
    led = Ledger(Database(case.url, pool_size=1), keyring)
    try:
        led.update_person(case.ids["eve"], name="Eve Rotated")
    finally:
        led.close()
    with case.connect() as conn:
        make_checkpoint(conn, signer, writers=Attestations.of(keyring))
    new_key = str(signer.verifier)
    old_only = case.verify()
    assert_found(old_only, "bad_signature")
    assert all(f["kind"] == "bad_signature" for f in damage(old_only))
    assert "bad_signature" in kinds(case.verify(key=new_key))  # the held C2 is signed by the old
    both = case.path / "trusted.keys"
    both.write_text(f"{case.vkey}\n{new_key}\n")
    assert clean(case.verify(key=str(both)))["log"]["size"] == C3 + 1
    clean(case.cli("verify", "--json", "--checkpoint", str(case.held), "--key", case.vkey,
                   "--key", new_key))


def test_stored_checkpoints_smaller_than_the_held_one(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("DELETE FROM checkpoints WHERE size >= %s", (C2,))
    result = case.verify()
    assert {"checkpoint_rollback", "unsigned_log_entries"} <= kinds(result)


def test_a_held_checkpoint_from_another_log(new_case: Callable[..., Case]) -> None:
    mine, theirs = new_case(), new_case()
    result = mine.verify(held=theirs.held)
    assert "origin_mismatch" in kinds(result)


def test_a_missing_log_meta_is_damage(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("DELETE FROM log_meta")
    result = case.verify()
    assert result.code == 1 and "chain_broken" in result.stderr, result.stderr


# --- documented limits --------------------------------------------------------------------------


def test_a_forged_version_is_refused_by_the_sequencer(case: Case) -> None:
    """A valid-looking new version written straight into ``people`` (backdated to before
    the held checkpoint), the projections brought in line: until the next checkpoint it is
    pending like a late append; then the sequencer, finding no seal of the application's
    writer key, refuses it, and verify reports it as unattested."""
    ada = case.ids["ada"]
    with superuser(case) as conn:
        (head,) = records(conn, ada, 3)
        (first,) = records(conn, ada, 0)
        insert_record(conn, dataclasses.replace(head, version=4, prev=case.cid("ada", 3),
                                                recorded_at=first.recorded_at + 1,
                                                actor="ops", reason="forged"))
        realign_stores(conn)
    assert clean(case.verify())["log"]["pending"] == 1  # not yet seen by the sequencer
    done = case.cli("checkpoint", "--json")
    assert done.code == 0, done.stderr
    assert (done.json["sequenced"], done.json["refused"]) == (0, 1)
    assert "1 version refused" in done.stderr
    result = case.verify()
    assert kinds(result) == {"unattested"}, damage(result)
    assert_found(result, "unattested", ada, 4)
    assert result.json["log"]["pending"] == 0


def test_limit_versions_after_the_held_checkpoint(case: Case) -> None:
    """Versions covered only by checkpoints stored in the database (C3) can be removed with
    their log entries and checkpoints: the held checkpoint (C2) predates them."""
    with superuser(case) as conn:
        conn.execute("""DELETE FROM people p USING log_entries l WHERE l.position >= %s
                        AND p.person_id = l.person_id AND p.version = l.version""", (C2,))
        conn.execute("DELETE FROM log_entries WHERE position >= %s", (C2,))
        conn.execute("DELETE FROM checkpoints WHERE size > %s", (C2,))
        realign_stores(conn)
    clean(case.verify())


def test_limit_seq_and_checkpoint_created_at_are_not_protected(case: Case) -> None:
    with superuser(case) as conn:
        conn.execute("ALTER TABLE people ALTER COLUMN seq SET GENERATED BY DEFAULT")
        conn.execute("UPDATE people SET seq = 1000 - seq")
        conn.execute("UPDATE checkpoints SET created_at = created_at - interval '1 year'")
    clean(case.verify())


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.slow
def test_appends_concurrent_with_checkpoints(new_case: Callable[..., Case],
                                             keyring: Keyring) -> None:
    case = new_case(history=False)
    signer = CheckpointSigner(keyring.active(KeyPurpose.CHECKPOINT_SIGNING))
    writers, per_writer = 4, 20
    errors: list[BaseException] = []
    done = threading.Event()
    notes: list[str] = []

    def write(n: int) -> None:
        try:
            with Ledger(Database(case.url, pool_size=1), keyring) as led:
                person = led.create_person(email=f"w{n}-{uuid.uuid4().hex[:6]}@example.org",
                                           name=f"Writer {n}").person_id
                for i in range(per_writer):
                    led.update_person(person, name=f"Writer {n} rev {i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def sequence() -> None:
        try:
            with case.connect() as conn:
                while not done.is_set():
                    result = make_checkpoint(conn, signer, writers=Attestations.of(keyring))
                    if result.new:
                        notes.append(result.checkpoint.text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    sequencer = threading.Thread(target=sequence)
    sequencer.start()
    for thread in threads:
        thread.start()
    cli_runs = 0
    while cli_runs < 2 or any(thread.is_alive() for thread in threads):
        result = case.cli("checkpoint", "--json")  # the CLI sequencer, concurrently too
        assert result.code == 0, result.stderr
        cli_runs += 1
    for thread in threads:
        thread.join()
    done.set()
    sequencer.join()
    assert not errors, errors
    assert len(notes) >= 2

    total = writers * (per_writer + 1)
    final = case.cli("checkpoint", "--json", "--out", str(case.held))
    assert final.code == 0 and final.json["size"] == total, final.stdout
    with case.connect() as conn:
        row = conn.execute("""SELECT count(*), count(DISTINCT (person_id, version)),
                                     min(position), max(position) FROM log_entries""").fetchone()
        assert row == (total, total, 0, total - 1)
        unlogged = conn.execute("""SELECT count(*) FROM people p WHERE NOT EXISTS (
            SELECT 1 FROM log_entries l WHERE l.person_id = p.person_id
            AND l.version = p.version AND l.cid = p.cid)""").fetchone()
        assert unlogged == (0,)
        sizes = [int(r[0]) for r in conn.execute("SELECT size FROM checkpoints ORDER BY size")]
    assert sizes == sorted(set(sizes)) and sizes[-1] == total
    log = clean(case.verify())["log"]
    assert log["pending"] == 0 and log["consistent_with_held"] is True
    for index in (0, len(notes) // 2):  # every checkpoint taken during the run still holds
        early = case.path / f"early{index}.txt"
        early.write_text(notes[index])
        assert clean(case.verify(held=early))["log"]["consistent_with_held"] is True
