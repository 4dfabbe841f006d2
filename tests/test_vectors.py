"""peoplelog's code against the published test vectors in tests/vectors/.

The vectors are written by tests/vectors/generate.py, which shares no code with peoplelog;
docs/FORMAT.md describes the formats they pin down.
"""

from __future__ import annotations

import json
import runpy
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import peoplelog.ledger as ledger
from peoplelog.fields import BlindIndex, DataKey, Key, KeyPurpose, NewPersonSealer, normalise_email
from peoplelog.schema import DecryptionFailed, InvalidInput, VersionRecord

VECTORS = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


CID = load("cid.json")
CIPHER = load("field_cipher.json")
BLIND = load("blind_index.json")


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["description"][:60] for entry in entries]


def record_of(fields: dict[str, Any]) -> VersionRecord:
    def raw(name: str) -> bytes | None:
        value = fields[name]
        return None if value is None else bytes.fromhex(value)

    return VersionRecord(
        person_id=uuid.UUID(fields["person_id"]), version=fields["version"],
        prev=fields["prev"], op=fields["op"], recorded_at=fields["recorded_at"],
        actor=fields["actor"], reason=fields["reason"], email=raw("email"), name=raw("name"),
        password=raw("password"), verified_at=fields["verified_at"], format=fields["format"],
    )


# --- the vector files themselves -------------------------------------------------------------


def test_the_vector_files_are_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(VECTORS / "generate.py"))
    for name, text in generator["generate"]().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run tests/vectors/generate.py"
        )


def test_the_generator_imports_no_peoplelog_code() -> None:
    source = (VECTORS / "generate.py").read_text(encoding="utf-8")
    for package in ("peoplelog", "ledger", "fields", "schema", "projections"):
        assert f"import {package}" not in source
        assert f"from {package}" not in source


def test_there_are_enough_vectors_of_each_kind() -> None:
    assert len(CID["envelopes"]) >= 5
    assert {"", "68656c6c6f"} <= {entry["input_hex"] for entry in CID["raw"]}
    assert len(CIPHER["valid"]) >= 5
    assert len(CIPHER["invalid"]) >= 10
    assert len(BLIND["must_not_collide"]) >= 5


# --- envelopes and CIDs -----------------------------------------------------------------------


class TestEnvelopeVectors:
    @pytest.mark.parametrize("vector", CID["envelopes"], ids=ids(CID["envelopes"]))
    def test_envelope_of_the_record(self, vector: dict[str, Any]) -> None:
        assert ledger.envelope(record_of(vector["record"])) == vector["envelope"]

    @pytest.mark.parametrize("vector", CID["envelopes"], ids=ids(CID["envelopes"]))
    def test_canonical_bytes(self, vector: dict[str, Any]) -> None:
        expected = bytes.fromhex(vector["canonical_hex"])
        assert expected == vector["canonical"].encode("utf-8")
        assert ledger.envelope_bytes(record_of(vector["record"])) == expected

    @pytest.mark.parametrize("vector", CID["envelopes"], ids=ids(CID["envelopes"]))
    def test_canonical_json_of_the_envelope_gives_the_same_bytes(
        self, vector: dict[str, Any]
    ) -> None:
        assert ledger.canonical_json(vector["envelope"]) == vector["canonical"].encode("utf-8")

    @pytest.mark.parametrize("vector", CID["envelopes"], ids=ids(CID["envelopes"]))
    def test_version_cid(self, vector: dict[str, Any]) -> None:
        record = record_of(vector["record"])
        assert ledger.version_cid(record) == vector["cid"]
        assert ledger.cid_of(bytes.fromhex(vector["canonical_hex"])) == vector["cid"]
        assert ledger.parse_cid(vector["cid"]) == vector["cid"]

    def test_chained_vectors_link_by_cid(self) -> None:
        first, second, third = CID["envelopes"][:3]
        assert first["record"]["prev"] is None
        assert second["record"]["prev"] == first["cid"]
        assert third["record"]["prev"] == second["cid"]


class TestRawVectors:
    @pytest.mark.parametrize("vector", CID["raw"], ids=ids(CID["raw"]))
    def test_cid_of_bytes(self, vector: dict[str, Any]) -> None:
        assert ledger.cid_of(bytes.fromhex(vector["input_hex"])) == vector["cid"]

    def test_hello_matches_dwyl_cid(self) -> None:
        # The value in dwyl/cid's README for Cid.cid("hello") in base32.
        assert ledger.cid_of(b"hello") == (
            "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
        )


class TestJsonDocumentVectors:
    @pytest.mark.parametrize("vector", CID["json_documents"], ids=ids(CID["json_documents"]))
    def test_canonical_json(self, vector: dict[str, Any]) -> None:
        document = json.loads(vector["input"])
        assert ledger.canonical_json(document) == vector["canonical"].encode("utf-8")
        assert ledger.cid_of(ledger.canonical_json(document)) == vector["cid"]


# --- the `peoplelog cid` command --------------------------------------------------------------


class TestCidCommand:
    @pytest.mark.parametrize("vector", CID["raw"], ids=ids(CID["raw"]))
    def test_bytes_on_stdin(self, cli: Any, vector: dict[str, Any]) -> None:
        result = cli("cid", stdin=bytes.fromhex(vector["input_hex"]))
        assert result.code == 0, result.stderr
        assert result.stdout == vector["cid"] + "\n"

    def test_an_already_canonical_document_keeps_its_cid(self, cli: Any) -> None:
        # dwyl/cid's README: Cid.cid(%{key: "value"}) hashes the same bytes.
        result = cli("cid", "--json", stdin=b'{"key":"value"}')
        assert result.code == 0, result.stderr
        assert result.stdout == "bafkreihehk6pgn2sisbzyajpsyz7swdc2izkswya2w6hgsftbgfz73l7gi\n"

    @pytest.mark.parametrize("vector", CID["json_documents"], ids=ids(CID["json_documents"]))
    def test_json_document_on_stdin_is_canonicalised(
        self, cli: Any, vector: dict[str, Any]
    ) -> None:
        result = cli("cid", "--json", stdin=vector["input"].encode("utf-8"))
        assert result.code == 0, result.stderr
        assert result.stdout == vector["cid"] + "\n"

    @pytest.mark.parametrize("vector", CID["envelopes"], ids=ids(CID["envelopes"]))
    def test_envelopes(self, cli: Any, vector: dict[str, Any]) -> None:
        as_bytes = cli("cid", stdin=bytes.fromhex(vector["canonical_hex"]))
        pretty = json.dumps(vector["envelope"], indent=4, ensure_ascii=True)
        as_json = cli("cid", "--json", stdin=pretty)
        assert (as_bytes.code, as_json.code) == (0, 0), as_bytes.stderr + as_json.stderr
        assert as_bytes.stdout.strip() == as_json.stdout.strip() == vector["cid"]

    def test_json_mode_rejects_what_is_not_json(self, cli: Any) -> None:
        for stdin in (b"{not json", b"\xff\xfe", b""):
            result = cli("cid", "--json", stdin=stdin)
            assert result.code == 2, (stdin, result.stdout)
            assert result.stdout == ""
            assert "JSON" in result.stderr

    def test_json_mode_rejects_integers_beyond_two_to_the_53(self, cli: Any) -> None:
        result = cli("cid", "--json", stdin=b'{"n": 9007199254740992}')
        assert result.code == 2
        assert result.stdout == ""


# --- field ciphertexts ------------------------------------------------------------------------


def data_key(vector: dict[str, Any]) -> DataKey:
    return DataKey(uuid.UUID(vector["person_id"]), vector["key_version"],
                   bytes.fromhex(vector["data_key_hex"]))


def kek(vector: dict[str, Any]) -> Key:
    return Key(vector["kek_id"], KeyPurpose.KEK, bytes.fromhex(vector["kek_hex"]),
               "2024-01-01T00:00:00+00:00")


class TestFieldCipherVectors:
    @pytest.mark.parametrize("vector", CIPHER["valid"], ids=ids(CIPHER["valid"]))
    def test_decrypts(self, vector: dict[str, Any]) -> None:
        plaintext = data_key(vector).decrypt(vector["field"],
                                             bytes.fromhex(vector["ciphertext_hex"]))
        assert plaintext == bytes.fromhex(vector["plaintext_hex"])
        assert plaintext.decode("utf-8") == vector["plaintext"]

    @pytest.mark.parametrize("vector", CIPHER["valid"], ids=ids(CIPHER["valid"]))
    def test_layout(self, vector: dict[str, Any]) -> None:
        token = bytes.fromhex(vector["ciphertext_hex"])
        padded = bytes.fromhex(vector["padded_hex"])
        assert token[:2] == b"\x01\x01"
        assert int.from_bytes(token[2:6], "big") == vector["key_version"]
        assert DataKey.key_version_of(token) == vector["key_version"]
        assert token[6:18] == bytes.fromhex(vector["nonce_hex"])
        assert len(token) == 6 + 12 + len(padded) + 16
        assert len(padded) % 32 == 0

    @pytest.mark.parametrize("vector", CIPHER["valid"], ids=ids(CIPHER["valid"]))
    def test_project_ciphertexts_decrypt_with_the_documented_recipe(
        self, vector: dict[str, Any]
    ) -> None:
        """The other direction: what peoplelog writes opens with plain AESGCM."""
        key = data_key(vector)
        token = key.encrypt(vector["field"], bytes.fromhex(vector["plaintext_hex"]))
        header, nonce, body = token[:6], token[6:18], token[18:]
        ad = (b"peoplelog/field/1\x00" + header + uuid.UUID(vector["person_id"]).bytes
              + vector["field"].encode("ascii"))
        padded = AESGCM(bytes.fromhex(vector["data_key_hex"])).decrypt(nonce, body, ad)
        assert padded == bytes.fromhex(vector["padded_hex"])

    @pytest.mark.parametrize("vector", CIPHER["invalid"], ids=ids(CIPHER["invalid"]))
    def test_invalid_tokens_fail(self, vector: dict[str, Any]) -> None:
        with pytest.raises(DecryptionFailed) as failure:
            data_key(vector).decrypt(vector["field"], bytes.fromhex(vector["ciphertext_hex"]))
        assert vector["field"] in str(failure.value)

    def test_wrapped_data_key_unwraps_and_opens_every_valid_vector(self) -> None:
        wrapped = CIPHER["wrapped_key"]
        key = DataKey.unwrap(uuid.UUID(wrapped["person_id"]), wrapped["key_version"],
                             bytes.fromhex(wrapped["wrapped_hex"]), kek(wrapped))
        assert key.version == wrapped["key_version"]
        for vector in CIPHER["valid"]:
            assert vector["data_key_hex"] == wrapped["data_key_hex"]
            plaintext = key.decrypt(vector["field"], bytes.fromhex(vector["ciphertext_hex"]))
            assert plaintext == bytes.fromhex(vector["plaintext_hex"])

    @pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
    @pytest.mark.parametrize("vector", CIPHER["valid"], ids=ids(CIPHER["valid"]))
    def test_the_bulk_sealer_writes_the_vectors(self, vector: dict[str, Any],
                                                native: bool) -> None:
        """``NewPersonSealer`` (bulk import; in C and in Python) given a vector's data key
        and nonces writes the vector's ciphertext and wrapped key, byte for byte."""
        wrapped = CIPHER["wrapped_key"]
        sealer = NewPersonSealer(kek(wrapped), native=native)
        if native and not sealer.native:
            pytest.fail("fields._native was not built (setup.py)")
        slot = ("email", "name", "password").index(vector["field"])
        nonces = [bytes([i]) * 12 for i in range(4)]
        nonces[slot] = bytes.fromhex(vector["nonce_hex"])
        nonces[3] = bytes.fromhex(wrapped["nonce_hex"])
        values: list[bytes | None] = [b"e", b"n", None]
        values[slot] = bytes.fromhex(vector["plaintext_hex"])
        random = bytes.fromhex(vector["data_key_hex"]) + b"".join(nonces)
        assert len(random) == NewPersonSealer.RANDOM
        sealed = sealer.seal(uuid.UUID(vector["person_id"]).bytes, random, values[0] or b"",
                             values[1] or b"", values[2])
        assert sealed[slot] == bytes.fromhex(vector["ciphertext_hex"])
        assert vector["person_id"] == wrapped["person_id"]
        assert sealed[3] == bytes.fromhex(wrapped["wrapped_hex"])

    @pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
    def test_the_bulk_sealer_refuses_short_randomness_or_ids(self, native: bool) -> None:
        sealer = NewPersonSealer(kek(CIPHER["wrapped_key"]), native=native)
        random = bytes(NewPersonSealer.RANDOM)
        with pytest.raises(ValueError):
            sealer.seal(bytes(16), random[:-1], b"e", b"n", None)
        with pytest.raises(ValueError):
            sealer.seal(bytes(15), random, b"e", b"n", None)

    @pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
    @pytest.mark.parametrize("password", [None, b"$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"])
    def test_the_bulk_sealer_writes_the_same_formats(self, password: bytes | None,
                                                     native: bool) -> None:
        """What ``NewPersonSealer`` (bulk import) writes opens with ``DataKey`` and the
        vectors' own KEK, field by field, and is bound to its person and field."""
        wrapped = CIPHER["wrapped_key"]
        person = uuid.uuid4()
        sealer = NewPersonSealer(kek(wrapped), native=native)
        email, name, secret, wrapped_key = sealer.seal(
            person.bytes, bytes(range(NewPersonSealer.RANDOM)), b"ada@example.org", b"Ada",
            password)
        key = DataKey.unwrap(person, 1, wrapped_key, kek(wrapped))
        assert key.decrypt("email", email) == b"ada@example.org"
        assert key.decrypt("name", name) == b"Ada"
        assert (secret is None) == (password is None)
        if secret is not None:
            assert key.decrypt("password", secret) == password
        with pytest.raises(DecryptionFailed):
            key.decrypt("name", email)
        with pytest.raises(DecryptionFailed):
            DataKey.unwrap(uuid.uuid4(), 1, wrapped_key, kek(wrapped))
        assert "secret" not in repr(sealer) and wrapped["kek_hex"] not in repr(sealer)

    @pytest.mark.parametrize("vector", CIPHER["invalid_wrapped"],
                             ids=ids(CIPHER["invalid_wrapped"]))
    def test_invalid_wrapped_keys_fail(self, vector: dict[str, Any]) -> None:
        with pytest.raises(DecryptionFailed):
            DataKey.unwrap(uuid.UUID(vector["person_id"]), vector["key_version"],
                           bytes.fromhex(vector["wrapped_hex"]), kek(vector))


# --- email normalisation and blind index ------------------------------------------------------


def blind_index() -> BlindIndex:
    return BlindIndex(Key(BLIND["key_id"], KeyPurpose.BLIND_INDEX,
                          bytes.fromhex(BLIND["key_hex"]), "2024-01-01T00:00:00+00:00"))


class TestBlindIndexVectors:
    @pytest.mark.parametrize("vector", BLIND["cases"], ids=ids(BLIND["cases"]))
    def test_normalisation(self, vector: dict[str, Any]) -> None:
        normalised = normalise_email(vector["raw"])
        assert normalised.lookup_key == vector["lookup_key"]
        assert normalised.display == vector["display"]

    @pytest.mark.parametrize("vector", BLIND["cases"], ids=ids(BLIND["cases"]))
    def test_digest(self, vector: dict[str, Any]) -> None:
        digest = blind_index().digest(normalise_email(vector["raw"]))
        assert digest.hex() == vector["hmac_sha256_hex"]

    @pytest.mark.parametrize("pair", BLIND["must_not_collide"], ids=ids(BLIND["must_not_collide"]))
    def test_look_alikes_do_not_collide(self, pair: dict[str, Any]) -> None:
        index = blind_index()
        a, b = normalise_email(pair["a"]), normalise_email(pair["b"])
        assert a.lookup_key != b.lookup_key
        assert index.digest(a) != index.digest(b)

    def test_case_and_spelling_variants_share_one_digest(self) -> None:
        index = blind_index()
        groups: dict[str, set[bytes]] = {}
        for vector in BLIND["cases"]:
            digest = index.digest(normalise_email(vector["raw"]))
            groups.setdefault(vector["lookup_key"], set()).add(digest)
        assert all(len(digests) == 1 for digests in groups.values())
        variants = [v["raw"] for v in BLIND["cases"] if v["lookup_key"] == "ada@example.org"]
        assert len(variants) >= 5

    @pytest.mark.parametrize("vector", BLIND["rejected"], ids=ids(BLIND["rejected"]))
    def test_rejected(self, vector: dict[str, Any]) -> None:
        with pytest.raises(InvalidInput) as failure:
            normalise_email(vector["raw"])
        if len(vector["raw"].strip()) >= 3:
            assert vector["raw"].strip() not in str(failure.value)

    def test_repr_never_shows_the_address(self) -> None:
        normalised = normalise_email("ada@example.org")
        assert "ada" not in repr(normalised)
