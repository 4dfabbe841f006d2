"""Canonical bytes and CIDs: properties, agreement with other implementations, and stored
versions recomputed from PostgreSQL rows by code that is not peoplelog's."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID
from psycopg.types.string import TextLoader

import peoplelog.ledger as ledger
from peoplelog.ledger import Ledger
from peoplelog.schema import InvalidInput, VersionRecord, VersionRef

ROOT = Path(__file__).resolve().parent.parent
FORMAT_DOC = ROOT / "docs" / "FORMAT.md"
VECTORS = json.loads((ROOT / "tests" / "vectors" / "cid.json").read_text(encoding="utf-8"))
SAFE = 2**53 - 1


# --- independent reference code (no peoplelog encoder) ----------------------------------------


def reference_cid(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "b" + base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().rstrip("=").lower()


def reference_b64url(data: bytes | None) -> str | None:
    return None if data is None else base64.urlsafe_b64encode(data).decode().rstrip("=")


def reference_canonical(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


# --- properties of the encoder ----------------------------------------------------------------

safe_ints = st.integers(min_value=-SAFE, max_value=SAFE)
optional_text = st.none() | st.text()
optional_bytes = st.none() | st.binary(max_size=300)

records = st.builds(
    VersionRecord,
    person_id=st.uuids(),
    version=safe_ints,
    prev=st.none() | st.text(),
    op=st.text(),
    recorded_at=safe_ints,
    actor=optional_text,
    reason=optional_text,
    email=optional_bytes,
    name=optional_bytes,
    password=optional_bytes,
    verified_at=st.none() | safe_ints,
    format=safe_ints,
)

property_settings = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


class TestCanonicalBytes:
    @property_settings
    @given(records)
    def test_envelope_bytes_are_rfc8785(self, record: VersionRecord) -> None:
        assert ledger.envelope_bytes(record) == rfc8785.dumps(ledger.envelope(record))

    @property_settings
    @given(records)
    def test_canonical_json_of_the_envelope_is_the_same(self, record: VersionRecord) -> None:
        assert ledger.canonical_json(ledger.envelope(record)) == ledger.envelope_bytes(record)

    @property_settings
    @given(records)
    def test_envelope_has_every_member_and_encodes_bytes_as_unpadded_base64url(
        self, record: VersionRecord
    ) -> None:
        envelope = ledger.envelope(record)
        assert list(envelope) == ["format", "person_id", "version", "prev", "op",
                                  "recorded_at", "actor", "reason", "email", "name",
                                  "password", "verified_at"]
        assert envelope["person_id"] == str(record.person_id)
        for field in ("email", "name", "password"):
            assert envelope[field] == reference_b64url(getattr(record, field))
        assert json.loads(ledger.envelope_bytes(record)) == envelope

    @property_settings
    @given(records)
    def test_canonical_bytes_never_contain_a_newline(self, record: VersionRecord) -> None:
        # docs/FORMAT.md's shell recipe strips psql's trailing newline with `tr -d '\n'`.
        assert b"\n" not in ledger.envelope_bytes(record)

    @property_settings
    @given(records)
    def test_version_cid_is_the_cid_of_the_canonical_bytes(self, record: VersionRecord) -> None:
        assert ledger.version_cid(record) == reference_cid(rfc8785.dumps(ledger.envelope(record)))

    def test_the_c_cid_is_built_and_used(self) -> None:
        assert ledger._cid._native_cid is not None, "ledger._native was not built (setup.py)"

    @property_settings
    @given(records)
    def test_the_c_and_python_cids_agree(self, record: VersionRecord) -> None:
        assert ledger.version_cid(record) == ledger.cid_of(ledger.envelope_bytes(record))

    @pytest.mark.parametrize("change", [{"version": 2**53}, {"recorded_at": -(2**53)},
                                        {"verified_at": 2**70}, {"format": True},
                                        {"version": 1.0}, {"op": b"created"},
                                        {"email": bytearray(b"x")}])
    def test_what_c_does_not_take_goes_the_python_way(self, change: dict[str, Any]) -> None:
        fields = dict(person_id=uuid.UUID(int=1), version=0, prev=None, op="created",
                      recorded_at=0, actor=None, reason=None, email=None, name=None,
                      password=None, verified_at=None)
        record = VersionRecord(**{**fields, **change})
        try:
            expected: object = ledger.cid_of(ledger.envelope_bytes(record))
        except Exception as exc:  # the Python definition's own error, whatever it is
            expected = type(exc)
        try:
            got: object = ledger.version_cid(record)
        except Exception as exc:
            got = type(exc)
        assert got == expected

    def test_member_order_is_alphabetical(self) -> None:
        record = VersionRecord(person_id=uuid.UUID(int=1), version=0, prev=None, op="created",
                               recorded_at=0, actor=None, reason=None, email=None, name=None,
                               password=None, verified_at=None)
        names = re.findall(rb'"([a-z_]+)":', ledger.envelope_bytes(record))
        assert names == [b"actor", b"email", b"format", b"name", b"op", b"password",
                         b"person_id", b"prev", b"reason", b"recorded_at", b"verified_at",
                         b"version"]

    def test_integers_beyond_two_to_the_53_are_not_canonicalised(self) -> None:
        with pytest.raises(InvalidInput):
            ledger.canonical_json({"n": 2**53})
        with pytest.raises(InvalidInput):
            ledger.canonical_json({"n": float("nan")})


class TestCidOfBytes:
    @property_settings
    @given(st.binary(max_size=2000))
    def test_matches_reference(self, data: bytes) -> None:
        assert ledger.cid_of(data) == reference_cid(data)

    @property_settings
    @given(st.binary(max_size=500))
    def test_shape(self, data: bytes) -> None:
        cid = ledger.cid_of(data)
        assert len(cid) == 59
        assert cid.startswith("bafkrei")
        assert re.fullmatch(r"b[a-z2-7]{58}", cid)

    def test_prefix_constant(self) -> None:
        assert bytes([0x01, 0x55, 0x12, 0x20]) == ledger.CID_PREFIX
        assert VECTORS["cid_prefix_hex"] == ledger.CID_PREFIX.hex()


# --- multiformats agrees ------------------------------------------------------------------------


def vector_inputs() -> list[bytes]:
    raw = [bytes.fromhex(v["input_hex"]) for v in VECTORS["raw"]]
    return raw + [bytes.fromhex(v["canonical_hex"]) for v in VECTORS["envelopes"]]


class TestMultiformats:
    @pytest.mark.parametrize("data", vector_inputs())
    def test_decode(self, data: bytes) -> None:
        cid = CID.decode(ledger.cid_of(data))
        assert cid.version == 1
        assert cid.codec.name == "raw"
        assert cid.hashfun.name == "sha2-256"
        assert bytes(cid.raw_digest) == hashlib.sha256(data).digest()
        assert bytes(cid)[:4] == ledger.CID_PREFIX

    @property_settings
    @given(st.binary(max_size=500))
    def test_encode(self, data: bytes) -> None:
        built = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest()))
        assert str(built) == ledger.cid_of(data)

    @pytest.mark.parametrize("vector", [v for v in VECTORS["raw"] if "dwyl_base58" in v],
                             ids=lambda v: v["description"][:40])
    def test_dwyl_base58_cids_are_the_same_cids(self, vector: dict[str, Any]) -> None:
        from_dwyl = CID.decode(vector["dwyl_base58"])
        assert from_dwyl.encode("base32") == vector["cid"]
        assert from_dwyl.encode("base32") == ledger.cid_of(bytes.fromhex(vector["input_hex"]))

    def test_parse_cid_accepts_version_cids(self) -> None:
        for vector in VECTORS["envelopes"]:
            assert ledger.parse_cid(vector["cid"]) == vector["cid"]

    def test_parse_cid_rejects_other_cids_and_spellings(self) -> None:
        digest = hashlib.sha256(b"x").digest()
        good = ledger.cid_of(b"x")
        others = [
            good.upper(),
            good[:-1],
            good + "a",
            " " + good,
            str(CID("base58btc", 1, "raw", ("sha2-256", digest))),
            str(CID("base32", 1, "dag-pb", ("sha2-256", digest))),
            str(CID("base32", 1, "raw", ("sha2-512", hashlib.sha512(b"x").digest()))),
            str(CID("base58btc", 0, "dag-pb", ("sha2-256", digest))),
            "",
        ]
        for text in others:
            with pytest.raises(InvalidInput):
                ledger.parse_cid(text)


# --- stored versions, recomputed from PostgreSQL rows ----------------------------------------


@pytest.fixture(scope="module")
def written(ledger: Ledger) -> list[VersionRef]:
    """A handful of persons with varied versions, written through the library."""
    tag = uuid.uuid4().hex[:8]
    refs: list[VersionRef] = []
    a = ledger.create_person(email=f"Zo\u00eb.{tag}@B\u00fccher.example",
                             name="Zo\u00eb \u00c5ngstr\u00f6m-\u6771\u4eac \U0001f680",
                             actor="signup-api", reason="self sign-up")
    refs.append(a)
    refs.append(ledger.update_person(
        a.person_id, verified=True, actor="zo\u00eb@ops-\u6771\u4eac",
        reason='clicked link\n(ticket "42")\ttab \\ backslash \u2028 sep',
    ))
    refs.append(ledger.update_person(a.person_id, name="Zo\u00eb A.", actor="support"))
    refs.append(ledger.update_person(a.person_id, password="correct horse battery staple",
                                     reason="password reset"))
    b = ledger.create_person(email=f"ada.{tag}@example.org", name="Ada Lovelace",
                             verified=True)
    refs.append(b)
    refs.append(ledger.update_person(b.person_id, email=f"ada+new.{tag}@example.org"))
    refs.append(ledger.erase_person(b.person_id, actor="dpo", reason="GDPR art. 17"))
    c = ledger.create_person(email=f"c.{tag}@example.org", name="C")
    refs.append(c)
    return refs


ROWS_SQL = """
SELECT person_id::text, version, cid, prev, format, op,
       (extract(epoch FROM recorded_at) * 1000000)::bigint,
       actor, reason, email, name, password,
       (extract(epoch FROM verified_at) * 1000000)::bigint
FROM people ORDER BY person_id, version
"""


def stored_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(ROWS_SQL).fetchall()


class TestStoredVersions:
    def test_every_row_recomputes_with_independent_code(
        self, written: list[VersionRef], conn: psycopg.Connection[Any]
    ) -> None:
        rows = stored_rows(conn)
        assert len(rows) == len(written)
        for (person_id, version, cid, prev, fmt, op, recorded_at, actor, reason, email, name,
             password, verified_at) in rows:
            envelope = {
                "format": fmt, "person_id": person_id, "version": version, "prev": prev,
                "op": op, "recorded_at": recorded_at, "actor": actor, "reason": reason,
                "email": reference_b64url(email), "name": reference_b64url(name),
                "password": reference_b64url(password), "verified_at": verified_at,
            }
            assert reference_cid(reference_canonical(envelope)) == cid, (person_id, version)

    def test_the_cids_returned_by_writes_are_the_stored_cids(
        self, written: list[VersionRef], conn: psycopg.Connection[Any]
    ) -> None:
        stored = {(row[0], row[1]): row[2] for row in stored_rows(conn)}
        for ref in written:
            assert stored[(str(ref.person_id), ref.version)] == ref.cid

    def test_chains_link_by_cid(
        self, written: list[VersionRef], conn: psycopg.Connection[Any]
    ) -> None:
        previous: dict[str, tuple[int, str]] = {}
        for person_id, version, cid, prev, *_ in stored_rows(conn):
            if version == 0:
                assert prev is None
            else:
                assert previous[person_id] == (version - 1, prev)
            previous[person_id] = (version, cid)
        assert len(previous) == 3

    def test_rows_cover_the_interesting_cases(
        self, written: list[VersionRef], conn: psycopg.Connection[Any]
    ) -> None:
        rows = stored_rows(conn)
        assert any(row[7] and not row[7].isascii() for row in rows)  # unicode actor
        assert any(row[8] and "\n" in row[8] and "\t" in row[8] for row in rows)
        assert any(row[5] == "erased" and row[9] is None for row in rows)
        assert any(row[11] is not None for row in rows)  # a password
        assert any(row[12] is not None for row in rows)  # verified


# --- the recipes in docs/FORMAT.md, run as written --------------------------------------------


def recipe(name: str) -> str:
    """The code block of docs/FORMAT.md whose first line is `-- file: NAME` or `# file: NAME`."""
    text = FORMAT_DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        if re.match(rf"(--|#) file: {re.escape(name)}\s", block):
            return str(block)
    raise AssertionError(f"docs/FORMAT.md has no code block for {name}")


class TestFormatDocRecipes:
    def test_envelope_sql_and_cid_sh(
        self, written: list[VersionRef], conn: psycopg.Connection[Any], tmp_path: Path
    ) -> None:
        query = recipe("envelope.sql")
        assert ":'person_id'" in query and ":version_no" in query
        query = query.replace(":'person_id'", "%(person_id)s").replace(
            ":version_no", "%(version_no)s")
        script = tmp_path / "cid.sh"
        script.write_text(recipe("cid.sh"), encoding="utf-8")
        canonical = tmp_path / "canonical.json"
        for person_id, version, cid, *_ in stored_rows(conn):
            row = conn.execute(query, {"person_id": person_id, "version_no": version}).fetchone()
            assert row is not None
            canonical.write_bytes(row[0].encode("utf-8"))
            result = subprocess.run(["sh", str(script), str(canonical)], capture_output=True,
                                    text=True, check=False)
            assert result.returncode == 0, result.stderr
            assert result.stdout == cid + "\n", (person_id, version)
        canonical.write_bytes(b"")  # what a failed or empty query leaves: refused, not hashed
        empty = subprocess.run(["sh", str(script), str(canonical)], capture_output=True,
                               text=True, check=False)
        assert empty.returncode == 1 and empty.stdout == "" and "empty" in empty.stderr

    def test_rows_sql_and_recompute_cids_py(
        self, written: list[VersionRef], database_url: str, tmp_path: Path
    ) -> None:
        with psycopg.connect(database_url) as connection:
            connection.adapters.register_loader("json", TextLoader)
            lines = [row[0] for row in connection.execute(recipe("rows.sql")).fetchall()]
        assert len(lines) == len(written) + 1 and json.loads(lines[-1]) == {
            "rows": len(written)}
        rows, end = lines[:-1], lines[-1]
        script = tmp_path / "recompute_cids.py"
        script.write_text(recipe("recompute_cids.py"), encoding="utf-8")

        def run(*given: str) -> subprocess.CompletedProcess[str]:
            # -S: no site-packages, so the script can only use the standard library.
            return subprocess.run([sys.executable, "-S", str(script)],
                                  input="".join(f"{line}\n" for line in given),
                                  capture_output=True, text=True, encoding="utf-8",
                                  check=False)

        good = run(*rows, end)
        assert good.returncode == 0, good.stdout + good.stderr
        assert [line.split()[0] for line in good.stdout.splitlines()] == (
            ["ok"] * len(rows) + ["checked"])

        tampered = json.loads(rows[0])
        tampered["recorded_at"] += 1
        bad = run(json.dumps(tampered), *rows[1:], end)
        assert bad.returncode == 1
        assert bad.stdout.splitlines()[0].startswith("MISMATCH")
        # a recipe that checked nothing, or not everything, never reports success
        for lines_in, says in (((), "INCOMPLETE"), ((*rows,), "INCOMPLETE"),
                            ((*rows[1:], end), "INCOMPLETE"), ((end, rows[0]), "UNCHECKABLE")):
            failed = run(*lines_in)
            assert failed.returncode == 1 and says in failed.stdout, (lines_in, failed.stdout)

    def test_rows_sql_names_a_row_it_cannot_check(
        self, written: list[VersionRef], database_url: str, tmp_path: Path
    ) -> None:
        """A timestamp without a microsecond count (``infinity``) comes out as null, and
        the script refuses that row (exit 1) instead of stopping the query or passing."""
        with psycopg.connect(database_url) as connection:
            connection.adapters.register_loader("json", TextLoader)
            connection.execute("CREATE TEMP TABLE people AS SELECT * FROM public.people")
            connection.execute("UPDATE pg_temp.people SET recorded_at = 'infinity'"
                               " WHERE version = 0 AND person_id = %s",
                               (written[0].person_id,))
            lines = [row[0] for row in connection.execute(recipe("rows.sql")).fetchall()]
            connection.rollback()
        script = tmp_path / "recompute_cids.py"
        script.write_text(recipe("recompute_cids.py"), encoding="utf-8")
        done = subprocess.run([sys.executable, "-S", str(script)],
                              input="".join(f"{line}\n" for line in lines),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 1
        assert f"UNCHECKABLE {written[0].person_id} 0 no exact value for recorded_at" in (
            done.stdout)

    def test_worked_example_matches_the_vectors(self) -> None:
        text = FORMAT_DOC.read_text(encoding="utf-8")
        erased = next(v for v in VECTORS["envelopes"] if v["record"]["op"] == "erased")
        assert erased["canonical"] in text
        assert erased["sha256"] in text
        assert erased["cid"] in text
        assert f"({len(bytes.fromhex(erased['canonical_hex']))} bytes" in text
