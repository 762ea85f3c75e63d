"""The Merkle tree over a store: subtree hashes from cached nodes, a purged prefix's frontier, or
the leaves themselves.

Perfect subtrees of 2**CACHE_LEVEL leaves and up are cached in the store's ``nodes`` table when a
checkpoint is signed, so a proof or a root over ten million leaves reads a few dozen rows rather
than every leaf. The cache is derived data: ``verify`` recomputes it from the leaves and reports
any disagreement; signing never trusts a leaf hash it did not recompute.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256 as _sha256

from tether.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    split_point,
    verify_inclusion,
)
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


class PathView(TreeView):
    """Inclusion checks of leaves of the tree of ``size`` leaves whose signed root is ``root``
    (``audit query``), each at the cost of an audit path.

    The stored leaf hashes of a block of 2**CACHE_LEVEL leaves are read once, in one statement,
    and hashed pairwise level by level once (the perfect subtrees below the cached nodes: 255
    hashes for a whole block); every subtree computed is remembered for the life of the view --
    one query. So a path costs one block and about one cached node per level above it.

    The path's nodes come from the database and are not trusted: a leaf is included only when
    its recomputed hash and its path lead to the signed root. Once a leaf of a whole block has
    proved so, the block's hashes are proven too (they hash to the block's node on that path),
    and any other leaf of the block is included when its recomputed hash is the one at its
    place in the block: a query showing thousands of neighbouring records walks one path per
    block, not one per record.
    """

    def __init__(self, store: AuditStore, size: int, root: bytes):
        super().__init__(store)
        self.size = size
        self.root = root
        self._subtrees: dict[tuple[int, int], bytes] = {}
        self._blocks: dict[int, list[list[bytes]] | VerificationError] = {}
        self._proven: set[int] = set()  # whole blocks whose hashes lead to the signed root

    def check_inclusion(self, index: int, hashed: bytes) -> None:
        """Raise :class:`ProofError` unless the leaf hashed ``hashed`` (recomputed from the
        record) is leaf ``index`` of the signed tree; :class:`VerificationError` when its path
        cannot be built (a leaf or node on it was deleted or holds what tether never writes)."""
        block = index >> CACHE_LEVEL
        first = block << CACHE_LEVEL
        whole = first >= self.purged_to and first + BLOCK <= self.size
        if whole and block in self._proven and self._pyramid(block)[0][index - first] == hashed:
            return
        verify_inclusion(index, self.size, hashed, inclusion_proof(index, self.size, self.subtree), self.root)
        if whole and self._pyramid(block)[0][index - first] == hashed:
            self._proven.add(block)

    def subtree(self, start: int, end: int) -> bytes:
        value = self._subtrees.get((start, end))
        if value is None:
            value = self._subtrees[(start, end)] = self._subtree(start, end)
        return value

    def _subtree(self, start: int, end: int) -> bytes:
        size = end - start
        block = start >> CACHE_LEVEL
        first = block << CACHE_LEVEL
        if 0 < size < BLOCK and (end - 1) >> CACHE_LEVEL == block and first >= self.purged_to:  # no purged leaf in the block
            if size & (size - 1) == 0 and start % size == 0:
                level = size.bit_length() - 1
                levels = self._pyramid(block)
                return levels[level][(start - first) >> level]
            k = split_point(size)
            return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))
        return super().subtree(start, end)

    def _pyramid(self, block: int) -> list[list[bytes]]:
        """The block's stored leaf hashes (up to the tree's size), then each level of perfect
        subtrees above them."""
        levels = self._blocks.get(block)
        if levels is None:
            first = block << CACHE_LEVEL
            try:
                row = self.store.leaf_hashes(first, min(first + BLOCK, self.size))
            except VerificationError as exc:  # a leaf deleted or holding no hash: every path through it fails
                levels = exc
            else:
                levels = [row]
                while len(row) > 1:
                    row = [_sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
                    levels.append(row)
            self._blocks[block] = levels
        if isinstance(levels, VerificationError):
            raise levels
        return levels


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
