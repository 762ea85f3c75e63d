"""The Merkle tree over a store: subtree hashes from cached nodes, a purged prefix's frontier, or
the leaves themselves.

Perfect subtrees of 2**CACHE_LEVEL leaves and up are cached in the store's ``nodes`` table when a
checkpoint is signed, so a proof or a root over ten million leaves reads a few dozen rows rather
than every leaf. The cache is derived data: ``verify`` recomputes it from the leaves and reports
any disagreement; signing never trusts a leaf hash it did not recompute.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.audit.merkle import EMPTY_ROOT, CompactRange, leaf_hash, node_hash, root_from_leaf_hashes, split_point
from tether.audit.store import AuditStore
from tether.errors import VerificationError

CACHE_LEVEL = 8
BLOCK = 1 << CACHE_LEVEL

LeafHashes = Callable[[int, int], list[bytes]]


def recomputed_leaf_hashes(store: AuditStore) -> LeafHashes:
    """Leaf hashes recomputed from the stored records, refusing any that no longer match."""

    def read(start: int, end: int) -> list[bytes]:
        hashes = []
        expected = start
        for row in store.iter_leaves(start, end):
            if row.index != expected:
                raise VerificationError(f"leaf {expected}: missing from the audit log (deleted)")
            if row.damage is not None:
                raise VerificationError(f"leaf {row.index}: {row.damage}")
            value = leaf_hash(row.leaf)
            if value != row.leaf_hash:
                raise VerificationError(f"leaf {row.index}: the record changed after it was written")
            hashes.append(value)
            expected += 1
        if expected != end:
            raise VerificationError(f"leaf {expected}: missing from the audit log (deleted)")
        return hashes

    return read


class TreeView:
    """MTH(D[start:end]) for any range of the log, from the cheapest source that holds it."""

    def __init__(self, store: AuditStore, leaves: LeafHashes | None = None, overlay: dict[tuple[int, int], bytes] | None = None):
        self.store = store
        self.leaves = leaves or store.leaf_hashes
        self.overlay = overlay or {}
        self.purged_to = store.first_index()
        self.frontier: dict[tuple[int, int], bytes] = {}
        purges = store.purges()
        if purges:
            self.frontier = {(start, end): value for start, end, value in purges[-1].frontier}

    def node(self, level: int, index: int) -> bytes | None:
        cached = self.overlay.get((level, index))
        return cached if cached is not None else self.store.get_node(level, index)

    def subtree(self, start: int, end: int) -> bytes:
        size = end - start
        if size <= 0:
            return EMPTY_ROOT
        hit = self.frontier.get((start, end))
        if hit is not None:
            return hit
        perfect = size & (size - 1) == 0 and start % size == 0
        if perfect and size >= BLOCK:
            level = size.bit_length() - 1
            cached = self.node(level, start >> level)
            if cached is not None:
                return cached
        if start >= self.purged_to and size <= BLOCK:
            return root_from_leaf_hashes(self.leaves(start, end))
        if size == 1:
            raise VerificationError(f"leaf {start} was purged and no retained subtree covers it")
        k = split_point(size)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)


def extend_nodes(store: AuditStore, size: int) -> dict[tuple[int, int], bytes]:
    """The cached nodes missing for a tree of ``size`` leaves, computed from recomputed leaf hashes.

    Returned, not written: the caller stores them in the same transaction as the checkpoint.
    """
    view = TreeView(store, leaves=recomputed_leaf_hashes(store))
    new: dict[tuple[int, int], bytes] = {}
    view.overlay = new
    first = store.node_count(CACHE_LEVEL)
    for block in range(first, size // BLOCK):
        new[(CACHE_LEVEL, block)] = view.subtree(block * BLOCK, (block + 1) * BLOCK)
        level, index = CACHE_LEVEL, block
        while index & 1:
            left = view.node(level, index - 1)
            if left is None:
                left = view.subtree((index - 1) << level, index << level)
            parent = node_hash(left, new[(level, index)])
            level, index = level + 1, index >> 1
            new[(level, index)] = parent
    return new


def frontier(view: TreeView, size: int) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees covering [0, size), with their hashes: what a purge keeps."""
    return [(start, end, view.subtree(start, end)) for start, end in CompactRange(size, [b""] * bin(size).count("1")).ranges()]
