"""RFC 9162 Merkle hashing, proofs and C2SP checkpoints, checked against independent code.

The vectors in tests/vectors/merkle.json are written by tests/vectors/generate_merkle.py,
which uses only hashlib and the recursive MTH/PATH/PROOF of RFC 9162 section 2.1 and checks
itself against the published Certificate Transparency vectors. The property tests call the
same generator functions on random sizes. Checkpoints are checked against notes built here
with ``cryptography`` directly and against the signed-note example of Go's ``note`` package.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import runpy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peoplelog.fields import Key, KeyPurpose, Keyring
from peoplelog.projections import (
    Checkpoint,
    CheckpointSigner,
    InclusionProof,
    VerifierKey,
    parse_checkpoint,
)
from peoplelog.projections._merkle import (
    EMPTY_ROOT,
    Frontier,
    RangeHasher,
    cid_leaf,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from peoplelog.schema import InvalidInput

VECTORS = Path(__file__).resolve().parent / "vectors"
GENERATOR = runpy.run_path(str(VECTORS / "generate_merkle.py"))
MERKLE: dict[str, Any] = json.loads((VECTORS / "merkle.json").read_text(encoding="utf-8"))

# The independent RFC 9162 code (recursive, uncached): MTH, PATH, PROOF over leaf inputs.
rfc_mth: Callable[[list[bytes]], bytes] = GENERATOR["mth"]
rfc_path: Callable[[int, list[bytes]], list[bytes]] = GENERATOR["path"]
rfc_proof: Callable[[int, list[bytes]], list[bytes]] = GENERATOR["proof"]

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
GARBAGE = settings(max_examples=400, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def hexes(values: list[bytes]) -> list[str]:
    return [v.hex() for v in values]


def unhex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def flip(value: bytes, at: int = 0) -> bytes:
    return value[:at] + bytes([value[at] ^ 1]) + value[at + 1:]


def leaves_for(n: int, salt: int = 0) -> list[bytes]:
    """Leaf inputs shaped like the log's: 36-byte binary CIDs."""
    return [bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(f"{salt}/{i}".encode()).digest()
            for i in range(n)]


TREES = [pytest.param(MERKLE[name], id=name) for name in ("ct", "cid")]


# --- the vector file ---------------------------------------------------------------------------


def test_the_vector_file_is_what_the_generator_writes() -> None:
    for name, text in GENERATOR["generate"]().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run tests/vectors/generate_merkle.py")


def test_the_generator_imports_no_peoplelog_code() -> None:
    source = (VECTORS / "generate_merkle.py").read_text(encoding="utf-8")
    for package in ("peoplelog", "ledger", "fields", "schema", "projections"):
        assert f"import {package}" not in source
        assert f"from {package}" not in source


def test_the_generator_reproduces_the_published_ct_vectors() -> None:
    # generate() refuses to write anything that disagrees with these; pin them here too.
    assert MERKLE["ct"]["roots"] == GENERATOR["CT_ROOTS"]
    assert MERKLE["ct"]["roots"][8] == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
    assert MERKLE["empty_root"] == hashlib.sha256(b"").hexdigest() == EMPTY_ROOT.hex()


# --- hashing and roots -------------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_leaf_hashes(tree: dict[str, Any]) -> None:
    leaves = unhex(tree["leaves_hex"])
    assert hexes([leaf_hash(leaf) for leaf in leaves]) == tree["leaf_hashes"]


def test_node_hash_is_sha256_of_0x01_left_right() -> None:
    left, right = b"\x11" * 32, b"\x22" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    assert leaf_hash(left + right) != node_hash(left, right)  # domain separation


def test_cid_leaf_is_the_binary_cid() -> None:
    tree = MERKLE["cid"]
    for cid, leaf in zip(tree["cids"], tree["leaves_hex"], strict=True):
        assert cid_leaf(cid).hex() == leaf
        assert len(cid_leaf(cid)) == 36


@pytest.mark.parametrize("tree", TREES)
def test_roots_of_every_size(tree: dict[str, Any]) -> None:
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    frontier = Frontier()
    assert frontier.root().hex() == tree["roots"][0]
    for size in range(1, len(digests) + 1):
        frontier.append(digests[size - 1])
        assert frontier.size == size
        assert len(frontier.hashes) == bin(size).count("1")
        assert frontier.root().hex() == tree["roots"][size], size
        assert root_of(digests[:size]).hex() == tree["roots"][size]
    assert root_of([]) == EMPTY_ROOT


@pytest.mark.parametrize("tree", TREES)
def test_a_stored_frontier_resumes_the_tree(tree: dict[str, Any]) -> None:
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    for cut in range(len(digests) + 1):
        saved = Frontier()
        for digest in digests[:cut]:
            saved.append(digest)
        resumed = Frontier.from_bytes(cut, saved.to_bytes())
        copy = saved.copy()
        for digest in digests[cut:]:
            resumed.append(digest)
        assert resumed.root().hex() == tree["roots"][-1]
        assert copy.size == cut and copy.root() == saved.root()  # the copy is independent


def test_a_frontier_must_match_its_size() -> None:
    with pytest.raises(ValueError):
        Frontier(3, [b"\x00" * 32])
    with pytest.raises(ValueError):
        Frontier.from_bytes(1, b"")


# --- inclusion proofs ------------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_inclusion_proofs_match_the_vectors(tree: dict[str, Any]) -> None:
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    for entry in tree["inclusion"]:
        index, size, expected = entry["index"], entry["size"], entry["path"]
        assert hexes(inclusion_proof(digests, index, size)) == expected, (index, size)
        root = bytes.fromhex(tree["roots"][size])
        assert verify_inclusion(digests[index], index, size, unhex(expected), root)
        hasher = RangeHasher(inclusion_ranges(index, size))
        for position, digest in enumerate(digests):
            hasher.feed(position, digest)
        assert hexes(hasher.hashes()) == expected


@pytest.mark.parametrize("tree", TREES)
def test_tampered_inclusion_proofs_are_rejected(tree: dict[str, Any]) -> None:
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    for entry in tree["inclusion"]:
        index, size, path = entry["index"], entry["size"], unhex(entry["path"])
        root = bytes.fromhex(tree["roots"][size])
        leaf = digests[index]
        for i in range(len(path)):
            bad = [*path]
            bad[i] = flip(bad[i], i % 32)
            assert not verify_inclusion(leaf, index, size, bad, root)
        if path:
            assert not verify_inclusion(leaf, index, size, path[:-1], root)
            assert not verify_inclusion(leaf, index, size, path[::-1], root) or len(
                set(path)) == 1 or len(path) == 1
        assert not verify_inclusion(leaf, index, size, [*path, root], root)
        assert not verify_inclusion(flip(leaf), index, size, path, root)
        assert not verify_inclusion(leaf, index, size, path, flip(root))
        assert not verify_inclusion(leaf, size, size, path, root)  # index outside the tree
        assert not verify_inclusion(leaf, index + size, size, path, root)
        assert not verify_inclusion(leaf, index - size, size, path, root)  # negative index
        for other in range(size):
            if other != index:
                assert not verify_inclusion(leaf, other, size, path, root), (index, other)
        for other_size in range(index + 1, len(digests) + 1):
            if len(rfc_path(index, [b""] * other_size)) != len(path):
                assert not verify_inclusion(leaf, index, other_size, path, root)


def test_inclusion_proof_arguments_are_checked() -> None:
    digests = [leaf_hash(leaf) for leaf in leaves_for(5)]
    for index, size in ((5, 5), (-1, 5), (0, 0), (0, 6)):
        with pytest.raises(ValueError):
            inclusion_proof(digests, index, size)
    with pytest.raises(ValueError):
        inclusion_ranges(3, 3)
    hasher = RangeHasher(inclusion_ranges(0, 5))
    hasher.feed(0, digests[0])
    with pytest.raises(ValueError, match="did not cover"):
        hasher.hashes()


# --- consistency proofs ----------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_consistency_proofs_match_the_vectors(tree: dict[str, Any]) -> None:
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    for entry in tree["consistency"]:
        old, new, expected = entry["old"], entry["new"], entry["proof"]
        assert hexes(consistency_proof(digests, old, new)) == expected, (old, new)
        old_root, new_root = (bytes.fromhex(tree["roots"][s]) for s in (old, new))
        assert verify_consistency(old, new, old_root, new_root, unhex(expected))
        hasher = RangeHasher(consistency_ranges(old, new))
        for position, digest in enumerate(digests):
            hasher.feed(position, digest)
        assert hexes(hasher.hashes()) == expected


@pytest.mark.parametrize("tree", TREES)
def test_tampered_consistency_proofs_are_rejected(tree: dict[str, Any]) -> None:
    roots = unhex(tree["roots"])
    for entry in tree["consistency"]:
        old, new, proof = entry["old"], entry["new"], unhex(entry["proof"])
        old_root, new_root = roots[old], roots[new]
        for i in range(len(proof)):
            bad = [*proof]
            bad[i] = flip(bad[i], 31 - i % 32)
            assert not verify_consistency(old, new, old_root, new_root, bad)
        if proof:
            assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
        assert not verify_consistency(old, new, flip(old_root), new_root, proof)
        assert not verify_consistency(old, new, old_root, flip(new_root), proof)
        assert not verify_consistency(new, old, new_root, old_root, proof) or old == new
        if old < new:
            # Another old tree of the same size is not consistent with this new tree.
            assert not verify_consistency(old, new, roots[old - 1], new_root, proof)
        for other in range(1, len(roots)):
            if other != old and other <= new and len(
                    rfc_proof(other, [b""] * new)) != len(proof):
                assert not verify_consistency(other, new, old_root, new_root, proof)


def test_consistency_edge_cases() -> None:
    digests = [leaf_hash(leaf) for leaf in leaves_for(4)]
    root = root_of(digests)
    assert verify_consistency(4, 4, root, root, [])
    assert not verify_consistency(4, 4, root, root, [root])
    assert not verify_consistency(4, 4, root, flip(root), [])
    assert verify_consistency(0, 4, EMPTY_ROOT, root, [])  # everything extends the empty tree
    assert not verify_consistency(0, 4, EMPTY_ROOT, root, [root])
    assert not verify_consistency(5, 4, root, root, [])
    for old, new in ((0, 4), (5, 4), (1, 5)):
        with pytest.raises(ValueError):
            consistency_proof(digests, old, new)
    with pytest.raises(ValueError):
        consistency_ranges(0, 3)
    assert consistency_proof(digests, 4, 4) == [] == consistency_ranges(4, 4)


# --- properties over sizes -------------------------------------------------------------------


@PROPERTY
@given(size=st.integers(1, 260), data=st.data())
def test_inclusion_matches_the_recursive_rfc_path(size: int, data: st.DataObject) -> None:
    leaves = leaves_for(size, salt=size)
    digests = [leaf_hash(leaf) for leaf in leaves]
    index = data.draw(st.integers(0, size - 1), label="index")
    expected = rfc_path(index, leaves)
    root = rfc_mth(leaves)
    assert inclusion_proof(digests, index, size) == expected
    assert verify_inclusion(digests[index], index, size, expected, root)
    hasher = RangeHasher(inclusion_ranges(index, size))
    for position, digest in enumerate(digests):
        hasher.feed(position, digest)
    hasher.feed(size + 5, b"\x00" * 32)  # positions past the tree are ignored
    assert hasher.hashes() == expected
    if expected:
        victim = data.draw(st.integers(0, len(expected) - 1), label="victim")
        bad = [*expected]
        bad[victim] = flip(bad[victim], data.draw(st.integers(0, 31), label="byte"))
        assert not verify_inclusion(digests[index], index, size, bad, root)
    other = data.draw(st.integers(0, size - 1), label="other index")
    if other != index:
        assert not verify_inclusion(digests[index], other, size, expected, root)


@PROPERTY
@given(new=st.integers(1, 260), data=st.data())
def test_consistency_matches_the_recursive_rfc_proof(new: int, data: st.DataObject) -> None:
    leaves = leaves_for(new, salt=new)
    digests = [leaf_hash(leaf) for leaf in leaves]
    old = data.draw(st.integers(1, new), label="old")
    expected = rfc_proof(old, leaves)
    old_root, new_root = rfc_mth(leaves[:old]), rfc_mth(leaves)
    assert consistency_proof(digests, old, new) == expected
    assert verify_consistency(old, new, old_root, new_root, expected)
    hasher = RangeHasher(consistency_ranges(old, new))
    for position, digest in enumerate(digests):
        hasher.feed(position, digest)
    assert hasher.hashes() == expected
    if expected:
        victim = data.draw(st.integers(0, len(expected) - 1), label="victim")
        bad = [*expected]
        bad[victim] = flip(bad[victim], data.draw(st.integers(0, 31), label="byte"))
        assert not verify_consistency(old, new, old_root, new_root, bad)
    # A different history of the first `old` leaves is not consistent with this tree.
    forged = leaves_for(old, salt=-1)
    assert not verify_consistency(old, new, rfc_mth(forged), new_root, expected)


@PROPERTY
@given(size=st.integers(0, 300), cut=st.integers(0, 300))
def test_frontier_root_equals_the_recursive_mth(size: int, cut: int) -> None:
    leaves = leaves_for(size, salt=7)
    frontier = Frontier()
    for leaf in leaves[: min(cut, size)]:
        frontier.append(leaf_hash(leaf))
    resumed = Frontier.from_bytes(frontier.size, frontier.to_bytes())
    for leaf in leaves[min(cut, size):]:
        resumed.append(leaf_hash(leaf))
    assert resumed.root() == rfc_mth(leaves)


# --- checkpoints: the C2SP signed-note format -----------------------------------------------


def checkpoint_key(key_id: str = "checkpoint-signing-1") -> Key:
    return Key(key_id, KeyPurpose.CHECKPOINT_SIGNING, hashlib.sha256(key_id.encode()).digest(),
               datetime.now(UTC).isoformat())


def independent_note(private: Ed25519PrivateKey, name: str, body: str) -> tuple[str, str]:
    """A signed note and its verifier key, built from the C2SP spec with cryptography only."""
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_hash = hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public).digest()[:4]
    signature = private.sign(body.encode())
    note = f"{body}\n\u2014 {name} {base64.b64encode(key_hash + signature).decode()}\n"
    encoded = base64.b64encode(b"\x01" + public).decode()
    vkey = f"{name}+{key_hash.hex()}+{encoded}"
    return note, vkey


ROOT = bytes(range(32))
ORIGIN = "example.org/peoplelog/3f1c"


def test_sign_and_parse_round_trip() -> None:
    signer = CheckpointSigner(Keyring.generate().active(KeyPurpose.CHECKPOINT_SIGNING))
    cp = signer.sign(ORIGIN, 42, ROOT)
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 42, ROOT)
    assert cp.body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert cp.text.startswith(cp.body + "\n\u2014 checkpoint-signing-1 ")
    assert cp.text.endswith("\n") and cp.text.count("\n") == 5
    assert parse_checkpoint(cp.text) == cp
    assert cp.signed_by(signer.verifier)
    assert VerifierKey.parse(str(signer.verifier)) == signer.verifier
    assert VerifierKey.parse(f"  {signer.verifier}\n") == signer.verifier
    other = CheckpointSigner(Keyring.generate().active(KeyPurpose.CHECKPOINT_SIGNING))
    assert other.verifier.name == signer.verifier.name  # same name, different key
    assert not cp.signed_by(other.verifier)
    assert "secret" not in repr(signer) and repr(signer) == (
        "CheckpointSigner(key='checkpoint-signing-1')")
    empty = signer.sign(ORIGIN, 0, EMPTY_ROOT)
    assert parse_checkpoint(empty.text).size == 0


def test_a_signer_needs_a_checkpoint_signing_key() -> None:
    keyring = Keyring.generate()
    for purpose in KeyPurpose:
        if purpose is not KeyPurpose.CHECKPOINT_SIGNING:
            with pytest.raises(ValueError):
                CheckpointSigner(keyring.active(purpose))


def test_a_note_signed_independently_verifies() -> None:
    private = Ed25519PrivateKey.generate()
    body = f"{ORIGIN}\n7\n{base64.b64encode(ROOT).decode()}\n"
    note, vkey = independent_note(private, "auditor.example/log", body)
    key = VerifierKey.parse(vkey)
    cp = parse_checkpoint(note)
    assert (cp.origin, cp.size, cp.root, cp.body) == (ORIGIN, 7, ROOT, body)
    assert cp.signed_by(key)
    assert cp.text == note
    assert str(key) == vkey
    # ...and the project's own signer writes exactly the same text for the same key.
    raw = private.private_bytes_raw()
    ours = CheckpointSigner(Key("auditor.example/log", KeyPurpose.CHECKPOINT_SIGNING, raw, ""))
    assert ours.verifier == key
    assert ours.sign(ORIGIN, 7, ROOT).text == note  # Ed25519 signatures are deterministic


def test_extension_lines_and_cosignatures() -> None:
    """C2SP allows extra body lines (signed) and several signature lines."""
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = f"{ORIGIN}\n9\n{base64.b64encode(ROOT).decode()}\nextension: yes\n"
    note_a, vkey_a = independent_note(first, "log.example", body)
    note_b, vkey_b = independent_note(second, "witness.example", body)
    both = note_a + note_b.split("\n\n", 1)[1]
    cp = parse_checkpoint(both)
    assert cp.size == 9 and len(cp.signatures) == 2
    assert cp.signed_by(VerifierKey.parse(vkey_a)) and cp.signed_by(VerifierKey.parse(vkey_b))
    edited = parse_checkpoint(both.replace("extension: yes", "extension: no!"))
    assert not edited.signed_by(VerifierKey.parse(vkey_a))


def test_the_go_note_package_example_verifies() -> None:
    """The signed-note example of golang.org/x/mod/sumdb/note (real-world interop)."""
    key = VerifierKey.parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    assert key.key_hash.hex() == "c74f20a3"
    body = (b"If you think cryptography is the answer to your problem,\n"
            b"then you don't know what your problem is.\n")
    raw = base64.b64decode("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
                           "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
    assert raw[:4] == key.key_hash
    assert key.verify(body, raw[4:])
    assert not key.verify(body.replace(b"answer", b"Answer"), raw[4:])


def test_tampered_checkpoints_do_not_verify() -> None:
    signer = CheckpointSigner(checkpoint_key())
    cp = signer.sign(ORIGIN, 42, ROOT)
    lines = cp.text.split("\n")
    other_root = base64.b64encode(flip(ROOT)).decode()
    edits = [
        "\n".join([ORIGIN + "x", *lines[1:]]),
        "\n".join([lines[0], "43", *lines[2:]]),
        "\n".join([*lines[:2], other_root, *lines[3:]]),
    ]
    signature = base64.b64decode(lines[4].split(" ")[2])
    for i in (0, 4, 40, 67):  # key hash and signature bytes
        bad = base64.b64encode(flip(signature, i)).decode()
        edits.append("\n".join([*lines[:4], f"\u2014 checkpoint-signing-1 {bad}", *lines[5:]]))
    edits.append(cp.text.replace("checkpoint-signing-1", "checkpoint-signing-2"))
    for text in edits:
        assert not parse_checkpoint(text).signed_by(signer.verifier), text


MALFORMED_NOTES = {
    "empty": "",
    "no blank line": "o\n1\n" + base64.b64encode(ROOT).decode() + "\n",
    "two lines": "o\n1\n\n\u2014 k " + base64.b64encode(bytes(68)).decode() + "\n",
    "no signature": "o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "empty origin": "\n1\n" + base64.b64encode(ROOT).decode() + "\n\n\u2014 k AAAA\n",
    "size not decimal": "o\n0x1\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "negative size": "o\n-1\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "leading zero": "o\n01\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "unicode digits": "o\n\u0661\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "size over 2**64": f"o\n{2**64}\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "huge size": "o\n" + "9" * 5000 + "\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "root not base64": "o\n1\n%%%%\n\n",
    "root not ascii": "o\n1\n\u00e9\u00e9\u00e9\u00e9\n\n",
    "root too short": "o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n\n",
    "CR": "o\r\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "NUL": "o\x00\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
    "too large": "o" * 70_000 + "\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
}
_BODY = "o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n"
_SIG = base64.b64encode(bytes(68)).decode()
MALFORMED_NOTES.update({
    "signature without dash": _BODY + f"- k {_SIG}\n",
    "signature with two spaces": _BODY + f"\u2014  k {_SIG}\n",
    "signature name with plus": _BODY + f"\u2014 k+1 {_SIG}\n",
    "signature not base64": _BODY + "\u2014 k ****\n",
    "signature not ascii": _BODY + "\u2014 k \u00e9\u00e9\u00e9\u00e9\n",
    "signature too short": _BODY + f"\u2014 k {base64.b64encode(bytes(67)).decode()}\n",
    "blank line among signatures": _BODY + f"\u2014 k {_SIG}\n\n\u2014 k {_SIG}\n",
})


@pytest.mark.parametrize("text", MALFORMED_NOTES.values(), ids=MALFORMED_NOTES.keys())
def test_malformed_notes_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_checkpoint(text)


MALFORMED_KEYS = {
    "empty": "",
    "two parts": "name+c74f20a3",
    "name with space": "a b+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "empty name": "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "hash not hex": "PeterNeumann+zz4f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "wrong hash": "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "wrong name": "PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "not base64": "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
    "not ed25519": "PeterNeumann+c74f20a3+AhpcmQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "too short": "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",
    "non-ascii": "PeterNeumann+c74f20a3+\u00c4Rpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
}


@pytest.mark.parametrize("text", MALFORMED_KEYS.values(), ids=MALFORMED_KEYS.keys())
def test_malformed_verifier_keys_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        VerifierKey.parse(text)


def _parse_or_invalid(text: str) -> Checkpoint | None:
    try:
        return parse_checkpoint(text)
    except InvalidInput:
        return None


@GARBAGE
@given(st.text(max_size=300))
def test_garbage_notes_only_raise_invalid_input(text: str) -> None:
    _parse_or_invalid(text)


@GARBAGE
@given(st.lists(st.sampled_from([
    "o", "1", "0", "01", base64.b64encode(ROOT).decode(), "", "\u2014", " ", "k", "+", "\n",
    _SIG, "AAAA", "\u00e9", "\r", "=", "9" * 30,
]), max_size=14))
def test_garbage_built_from_note_parts_only_raises_invalid_input(parts: list[str]) -> None:
    for sep in ("\n", " ", ""):
        _parse_or_invalid(sep.join(parts))


NOTE = CheckpointSigner(checkpoint_key()).sign(ORIGIN, 1234, ROOT)
NOTE_KEY = CheckpointSigner(checkpoint_key()).verifier


@GARBAGE
@given(at=st.integers(0, len(NOTE.text)), cut=st.integers(0, 8),
       insert=st.text(max_size=4))
def test_edited_notes_never_verify_with_other_content(at: int, cut: int, insert: str) -> None:
    text = NOTE.text[:at] + insert + NOTE.text[at + cut:]
    cp = _parse_or_invalid(text)
    if cp is not None and cp.signed_by(NOTE_KEY):
        assert (cp.origin, cp.size, cp.root, cp.body) == (NOTE.origin, NOTE.size, NOTE.root,
                                                          NOTE.body)


@GARBAGE
@given(st.text(max_size=120))
def test_garbage_verifier_keys_only_raise_invalid_input(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        VerifierKey.parse(text)


@GARBAGE
@given(name=st.from_regex(r"[A-Za-z0-9./_-]{1,20}", fullmatch=True), flip_at=st.integers(0, 43))
def test_generated_verifier_keys(name: str, flip_at: int) -> None:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())
    _, vkey = independent_note(private, name, "x\n")
    key = VerifierKey.parse(vkey)
    assert str(key) == vkey and key.name == name
    name_part, hash_part, encoded = vkey.split("+", 2)
    assert len(encoded) == 44  # 33 bytes, no padding: every character carries key bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    replacement = alphabet[(alphabet.index(encoded[flip_at]) + 1) % 64]
    changed = encoded[:flip_at] + replacement + encoded[flip_at + 1:]
    with pytest.raises(InvalidInput):
        VerifierKey.parse(f"{name_part}+{hash_part}+{changed}")


# --- inclusion proof documents, offline ------------------------------------------------------


def proof_document(index: int = 5, size: int = 13) -> tuple[InclusionProof, VerifierKey]:
    tree = MERKLE["cid"]
    digests = [bytes.fromhex(h) for h in tree["leaf_hashes"]]
    signer = CheckpointSigner(checkpoint_key("log-key"))
    cp = signer.sign(ORIGIN, size, bytes.fromhex(tree["roots"][size]))
    path = inclusion_proof(digests, index, size)
    document = InclusionProof(
        person_id=uuid.UUID(int=1), version=0, cid=tree["cids"][index], index=index,
        tree_size=size, proof=[base64.b64encode(h).decode() for h in path], checkpoint=cp.text)
    return document, signer.verifier


def test_inclusion_proof_documents_verify_offline() -> None:
    for index in range(13):
        document, key = proof_document(index)
        assert document.tree_problems(key) == [], index
        assert document.verify(key) == [
            "the proof carries no envelope: person_id and version are not bound"]
        again = InclusionProof.model_validate_json(document.model_dump_json())
        assert again.tree_problems(key) == []


def test_tampered_inclusion_proof_documents_are_rejected() -> None:
    document, key = proof_document()
    other_key = CheckpointSigner(checkpoint_key("log-key-2")).verifier
    tree = MERKLE["cid"]
    first = base64.b64decode(document.proof[0])
    changes: list[dict[str, Any]] = [
        {"cid": tree["cids"][6]},
        {"index": 6},
        {"tree_size": 14},
        {"proof": document.proof[:-1]},
        {"proof": [base64.b64encode(flip(first)).decode(), *document.proof[1:]]},
        {"proof": ["not base64!", *document.proof[1:]]},
        {"cid": "b!!"},
        {"checkpoint": document.checkpoint.replace("\n13\n", "\n14\n")},
        {"checkpoint": "not a checkpoint"},
    ]
    for change in changes:
        assert document.model_copy(update=change).tree_problems(key), change
    assert document.tree_problems(other_key) == [
        f"checkpoint is not signed by {other_key.name}"]
