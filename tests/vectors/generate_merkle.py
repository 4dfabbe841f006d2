"""Regenerate tests/vectors/merkle.json: RFC 9162 Merkle tree hashes and proofs.

Deliberately independent of peoplelog: it imports nothing from ``ledger``, ``fields``,
``schema`` or ``projections``, only ``hashlib``/``base64``/``json``. MTH, PATH and PROOF are
the recursive definitions of RFC 9162 section 2.1, written out as literally as possible and
with no caching, so that they are easy to check against the RFC by eye:

* MTH({}) = SHA-256(), MTH({d(0)}) = SHA-256(0x00 || d(0)),
  MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of 2 < n;
* PATH(m, D[n]) (section 2.1.3.1) and PROOF(m, D[n]) / SUBPROOF(m, D[n], b)
  (section 2.1.4.1).

Two sets of leaves:

* ``ct``: the eight leaf inputs of the classic Certificate Transparency test suites (the
  RFC 6962 reference tests of certificate-transparency and trillian). The roots computed
  here are checked against the published values in ``CT_ROOTS`` before anything is
  written, so the recursive code below and the published vectors vouch for each other.
* ``cid``: peoplelog-style leaves, the 36-byte binary CIDs (0x01 0x55 0x12 0x20 ||
  SHA-256(data)) of a fixed series of byte strings, as the log hashes them.

    python tests/vectors/generate_merkle.py            # rewrite merkle.json next to this file
    python tests/vectors/generate_merkle.py OUT_DIR    # write it somewhere else
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CT_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]

# Published roots for the first n CT leaves (n = 0..8).
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# Published proofs over the 8 CT leaves (index/sizes, hashes in hex).
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw, sha2-256, 32-byte digest
CID_LEAF_COUNT = 21  # crosses the 16 boundary and leaves an odd right edge


# --- RFC 9162 section 2.1, literally -----------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over the leaf *inputs* d."""
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + d[0])
    k = largest_power_of_two_below(n)
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the inclusion proof of leaf m."""
    n = len(d)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): the consistency proof from the first m leaves to all n."""
    return subproof(m, d, True)


# --- the file ------------------------------------------------------------------------------------


def cid_bytes(data: bytes) -> bytes:
    return CID_PREFIX + sha256(data)


def cid_text(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower()


def tree(leaves: list[bytes]) -> dict[str, Any]:
    n = len(leaves)
    return {
        "leaf_hashes": [sha256(b"\x00" + leaf).hex() for leaf in leaves],
        "roots": [mth(leaves[:size]).hex() for size in range(n + 1)],
        "inclusion": [
            {"index": m, "size": size, "path": [h.hex() for h in path(m, leaves[:size])]}
            for size in range(1, n + 1) for m in range(size)
        ],
        "consistency": [
            {"old": m, "new": size, "proof": [h.hex() for h in proof(m, leaves[:size])]}
            for size in range(1, n + 1) for m in range(1, size + 1)
        ],
    }


def self_check(ct: dict[str, Any]) -> None:
    """The recursive code above must reproduce the published CT vectors."""
    if ct["roots"] != CT_ROOTS:
        raise SystemExit("MTH disagrees with the published CT roots")
    inclusion = {(e["index"], e["size"]): e["path"] for e in ct["inclusion"]}
    for index, size, expected in CT_INCLUSION:
        if inclusion[(index, size)] != expected:
            raise SystemExit(f"PATH({index}, D[{size}]) disagrees with the published proof")
    consistency = {(e["old"], e["new"]): e["proof"] for e in ct["consistency"]}
    for old, new, expected in CT_CONSISTENCY:
        if consistency[(old, new)] != expected:
            raise SystemExit(f"PROOF({old}, D[{new}]) disagrees with the published proof")


def generate() -> dict[str, str]:
    ct_leaves = [bytes.fromhex(leaf) for leaf in CT_LEAVES]
    ct = {"leaves_hex": CT_LEAVES, **tree(ct_leaves)}
    self_check(ct)
    cid_leaves = [cid_bytes(f"peoplelog merkle vector {i}".encode()) for i in range(CID_LEAF_COUNT)]
    cid = {
        "cids": [cid_text(leaf) for leaf in cid_leaves],
        "leaves_hex": [leaf.hex() for leaf in cid_leaves],
        **tree(cid_leaves),
    }
    document = {
        "description": "RFC 9162 section 2.1 Merkle tree hashes, inclusion proofs (PATH) and "
                       "consistency proofs (PROOF); leaf hash = SHA-256(0x00 || leaf input), "
                       "node hash = SHA-256(0x01 || left || right). Written by "
                       "tests/vectors/generate_merkle.py; hashes in lower-case hex.",
        "empty_root": sha256(b"").hex(),
        "ct": ct,
        "cid": cid,
    }
    return {"merkle.json": json.dumps(document, indent=1) + "\n"}


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(sys.argv)
