"""RFC 9162 Merkle tree hashing over version CIDs in log order.

Leaf input is the binary CID (36 bytes: 0x01 0x55 0x12 0x20 + sha256 digest). Leaf hash
``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``, as in RFC 9162
section 2.1.1. ``Frontier`` keeps one hash per set bit of the tree size, so a root can be
computed while streaming in O(log n) memory and extended by later checkpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from peoplelog.ledger import cid_bytes

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "RangeHasher",
    "cid_leaf",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def cid_leaf(cid: str) -> bytes:
    """Leaf input of a version: its binary CID (multibase 'b' removed, base32 decoded)."""
    return cid_bytes(cid)


class Frontier:
    """The right edge of a Merkle tree: perfect-subtree roots, largest first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError("frontier does not match its size")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf_digest: bytes) -> None:
        """Add a leaf hash (already ``leaf_hash``-ed)."""
        node = leaf_digest
        size = self.size
        while size & 1:
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        return cls(size, [data[i : i + 32] for i in range(0, len(data), 32)])


def _split(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (RFC 9162 section 2.1.1)."""
    frontier = Frontier()
    for digest in leaves:
        frontier.append(digest)
    return frontier.root()


def _subtree(leaves: Sequence[bytes], start: int, end: int,
             cache: dict[tuple[int, int], bytes]) -> bytes:
    key = (start, end)
    if key not in cache:
        if end - start == 1:
            cache[key] = leaves[start]
        else:
            k = _split(end - start)
            cache[key] = node_hash(_subtree(leaves, start, start + k, cache),
                                   _subtree(leaves, start + k, end, cache))
    return cache[key]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, over leaf hashes ``leaves[:size]``."""
    if not 0 <= index < size <= len(leaves):
        raise ValueError("index outside the tree")
    cache: dict[tuple[int, int], bytes] = {}
    path: list[bytes] = []

    def walk(m: int, start: int, end: int) -> None:
        if end - start <= 1:
            return
        k = _split(end - start)
        if m < k:
            walk(m, start, start + k)
            path.append(_subtree(leaves, start + k, end, cache))
        else:
            walk(m - k, start + k, end)
            path.append(_subtree(leaves, start, start + k, cache))

    walk(index, 0, size)
    return path


def consistency_proof(leaves: Sequence[bytes], old: int, new: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1."""
    if not 0 < old <= new <= len(leaves):
        raise ValueError("sizes outside the tree")
    cache: dict[tuple[int, int], bytes] = {}
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                proof.append(_subtree(leaves, start, end, cache))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            proof.append(_subtree(leaves, start + k, end, cache))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(_subtree(leaves, start, start + k, cache))

    subproof(old, 0, new, True)
    return proof


def verify_inclusion(leaf_digest: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_digest
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a subtree root
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes form PATH(index, D[size]), in proof order."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, size, index
    stack: list[tuple[int, int]] = []
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            stack.append((start + k, end))
            end = start + k
        else:
            stack.append((start, start + k))
            start, m = start + k, m - k
    ranges.extend(reversed(stack))
    return ranges


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes form PROOF(old, D[new]), in proof order."""
    if not 0 < old <= new:
        raise ValueError("sizes outside the tree")
    ranges: list[tuple[int, int]] = []
    stack: list[tuple[int, int]] = []
    start, end, m, whole = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            stack.append((start + k, end))
            end = start + k
        else:
            stack.append((start, start + k))
            start, m, whole = start + k, m - k, False
    ranges.extend(reversed(stack))
    return ranges


class RangeHasher:
    """Computes the subtree hashes of disjoint leaf ranges from a stream of leaves."""

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self.ranges = list(ranges)
        self._order = sorted(range(len(self.ranges)), key=lambda i: self.ranges[i][0])
        self._frontiers = [Frontier() for _ in self.ranges]
        self._cursor = 0

    def feed(self, position: int, leaf_digest: bytes) -> None:
        while self._cursor < len(self._order):
            i = self._order[self._cursor]
            start, end = self.ranges[i]
            if position < start:
                return
            if position < end:
                self._frontiers[i].append(leaf_digest)
                return
            self._cursor += 1

    def hashes(self) -> list[bytes]:
        for (start, end), frontier in zip(self.ranges, self._frontiers, strict=True):
            if frontier.size != end - start:
                raise ValueError("the stream did not cover every range")
        return [frontier.root() for frontier in self._frontiers]
