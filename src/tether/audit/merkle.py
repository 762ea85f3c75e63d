"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right); a tree of ``n``
leaves splits at the largest power of two below ``n``. SHA-256 (not tether's BLAKE3) because this
is what transparency-log tooling and witnesses compute.

Proof *generation* works over a ``subtree(start, end)`` callback returning MTH(D[start:end]), so
the log store can answer from cached nodes instead of rehashing millions of leaves. Verification
(RFC 9162 sections 2.1.3.2 and 2.1.4.2) needs nothing but the proof, sizes and roots: it is what a
third party runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]  # (start, end) -> MTH(D[start:end])


class ProofError(ValueError):
    """A proof that does not verify, or arguments no proof can exist for."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size`` >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, built bottom-up with a stack of perfect subtrees."""
    stack = CompactRange()
    for item in hashes:
        stack.append(item)
    return stack.root()


class CompactRange:
    """The perfect subtrees covering leaves [0, size): enough to append and to compute the root.

    ``nodes`` holds one hash per set bit of ``size``, largest (leftmost) subtree first. This is
    also what is kept of a purged prefix: with it, the tree over the remaining leaves still
    computes the same roots.
    """

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()):
        self.size = size
        self.nodes = list(nodes)
        if len(self.nodes) != bin(size).count("1"):
            raise ProofError(f"compact range of size {size} needs {bin(size).count('1')} hashes, got {len(self.nodes)}")

    def append(self, item: bytes) -> None:
        self.nodes.append(item)
        size = self.size
        while size & 1:
            right = self.nodes.pop()
            left = self.nodes.pop()
            self.nodes.append(node_hash(left, right))
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        result = self.nodes[-1]
        for item in reversed(self.nodes[:-1]):
            result = node_hash(item, result)
        return result

    def ranges(self) -> list[tuple[int, int]]:
        """(start, end) of each node, left to right."""
        out, start = [], 0
        for bit in reversed(range(self.size.bit_length())):
            if self.size >> bit & 1:
                out.append((start, start + (1 << bit)))
                start += 1 << bit
        return out


# ---- proof generation (RFC 9162 2.1.3.1 and 2.1.4.1) ----------------------------------------------
def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(index, D[0:size]), lowest level first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index - start < k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]), lowest level first."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        if m == end - start:
            if not complete:
                proof.append(subtree(start, end))
            break
        k = split_point(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
            m -= k
            complete = False
    proof.reverse()
    return proof


# ---- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ---------------------------------------------------
def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a valid inclusion proof leads to (RFC 9162 2.1.3.2 steps 1-3)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, result = index, size - 1, bytes(leaf)
    for position, item in enumerate(proof):
        _check_hash(item, f"proof element {position}")
        if sn == 0:
            raise ProofError(f"inclusion proof has {len(proof)} elements, more than a tree of size {size} needs")
        if fn & 1 or fn == sn:
            result = node_hash(item, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(proof)} elements, fewer than a tree of size {size} needs")
    return result


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``leaf`` (a leaf hash) is at ``index`` of the tree ``root``."""
    _check_hash(root, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}")


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> None:
    """Raise :class:`ProofError` unless the tree ``new_root`` extends the tree ``old_root``."""
    if new_size < old_size:
        raise ProofError(f"size {new_size} is smaller than size {old_size}: a log never shrinks")
    if old_size == new_size:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if bytes(old_root) != bytes(new_root):
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof between different tree sizes")
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    path = list(proof)
    for position, item in enumerate(path):
        _check_hash(item, f"proof element {position}")
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for item in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof has more elements than sizes {old_size} -> {new_size} need")
        if fn & 1 or fn == sn:
            fr = node_hash(item, fr)
            sr = node_hash(item, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof has fewer elements than sizes {old_size} -> {new_size} need")
    if fr != bytes(old_root):
        raise ProofError(f"consistency proof does not lead to the old root (size {old_size})")
    if sr != bytes(new_root):
        raise ProofError(f"consistency proof does not lead to the new root (size {new_size})")
