"""RFC 6962 / RFC 9162 hashing and proofs against the transparency-dev/merkle test vectors.

The vectors (leaves, roots for 1..8 leaves, inclusion and consistency proofs) and the corrupted-
proof classes are copied from github.com/transparency-dev/merkle, files ``proof/verify_test.go``
and ``rfc6962/rfc6962_test.go``; the empty-tree root is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


LEAVES = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"), h("5051525354555657"),
          h("606162636465666768696a6b6c6d6e6f")]
ROOTS = [h(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY_TREE_HASH = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

# (leaf number counted from 1, tree size, proof)
INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def subtree_over(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return lambda start, end: root_from_leaf_hashes(hashes[start:end])


def reference_mth(hashes: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 2.1.1 defines it, recursively."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(reference_mth(hashes[:k]), reference_mth(hashes[k:]))


def test_rfc6962_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    assert node_hash(leaf_hash(b"Hello"), leaf_hash(b"World")) != node_hash(leaf_hash(b"World"), leaf_hash(b"Hello"))
    assert node_hash(leaf_hash(b"a"), leaf_hash(b"b")) != leaf_hash(leaf_hash(b"a") + leaf_hash(b"b"))


@pytest.mark.parametrize("size", range(9))
def test_roots_for_0_to_8_leaves(size: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES[:size]]
    expected = EMPTY_ROOT if size == 0 else ROOTS[size - 1]
    assert root_from_leaf_hashes(hashes) == expected
    assert reference_mth(hashes) == expected


@pytest.mark.parametrize(("number", "size", "proof"), INCLUSION)
def test_inclusion_vectors_generate_and_verify(number: int, size: int, proof: list[str]) -> None:
    expected = [h(item) for item in proof]
    assert inclusion_proof(number - 1, size, subtree_over(LEAVES[:size])) == expected
    verify_inclusion(number - 1, size, leaf_hash(LEAVES[number - 1]), expected, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors_generate_and_verify(old: int, new: int, proof: list[str]) -> None:
    expected = [h(item) for item in proof]
    assert consistency_proof(old, new, subtree_over(LEAVES[:new])) == expected
    verify_consistency(old, new, expected, ROOTS[old - 1], ROOTS[new - 1])


def corrupted_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):  # type: ignore[no-untyped-def]
    """The probes of corruptInclusionProof in transparency-dev/merkle proof/verify_test.go."""
    probes = [
        (index - 1, size, root, leaf, proof, "leafIndex - 1"),
        (index + 1, size, root, leaf, proof, "leafIndex + 1"),
        (index ^ 2, size, root, leaf, proof, "leafIndex ^ 2"),
        (index, size * 2, root, leaf, proof, "treeSize * 2"),
        (index, size // 2, root, leaf, proof, "treeSize / 2"),
        (index, size, root, b"WrongLeaf", proof, "wrong leaf"),
        (index, size, EMPTY_TREE_HASH, leaf, proof, "empty root"),
        (index, size, SOME_HASH, leaf, proof, "random root"),
        (index, size, root, leaf, [*proof, b""], "trailing garbage"),
        (index, size, root, leaf, [*proof, root], "trailing root"),
        (index, size, root, leaf, [b"", *proof], "preceding garbage"),
        (index, size, root, leaf, [root, *proof], "preceding root"),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = bytes([wrong[position][0] ^ 8]) + wrong[position][1:]
        probes.append((index, size, root, leaf, wrong, f"modified proof[{position}] bit 3"))
    if proof:
        probes.append((index, size, root, leaf, proof[:-1], "removed component"))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]], "inserted component"))
    return probes


@pytest.mark.parametrize(("number", "size", "proof"), INCLUSION)
def test_inclusion_rejects_every_corrupted_proof(number: int, size: int, proof: list[str]) -> None:
    good = [h(item) for item in proof]
    leaf = leaf_hash(LEAVES[number - 1])
    accepted = []
    for index, tree_size, root, leaf_value, wrong, desc in corrupted_inclusion(number - 1, size, good, ROOTS[size - 1], leaf):
        try:
            verify_inclusion(index, tree_size, leaf_value, wrong, root)
        except ProofError:
            continue
        accepted.append(desc)
    assert accepted == []


def test_inclusion_single_entry_and_invalid_probes() -> None:
    single = leaf_hash(b"data")
    verify_inclusion(0, 1, single, [], single)
    for root, leaf in ((single, b""), (b"", single), (b"", b"")):
        with pytest.raises(ProofError):
            verify_inclusion(0, 1, leaf, [], root)
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        for leaf, root in ((SOME_HASH, b""), (b"", EMPTY_TREE_HASH), (SOME_HASH, EMPTY_TREE_HASH)):
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf, [], root)


def corrupted_consistency(old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]):  # type: ignore[no-untyped-def]
    """The probes of corruptConsistencyProof in transparency-dev/merkle proof/verify_test.go."""
    probes = [
        (old - 1, new, root1, root2, proof, "size1 - 1"),
        (old + 1, new, root1, root2, proof, "size1 + 1"),
        (old ^ 2, new, root1, root2, proof, "size1 ^ 2"),
        (old, new * 2, root1, root2, proof, "size2 * 2"),
        (old, new // 2, root1, root2, proof, "size2 / 2"),
        (old, new, b"WrongRoot", root2, proof, "wrong root1"),
        (old, new, root1, b"WrongRoot", proof, "wrong root2"),
        (old, new, root2, root1, proof, "swapped roots"),
        (old, new, root1, root2, [], "empty proof"),
        (old, new, root1, root2, [*proof, b""], "trailing garbage"),
        (old, new, root1, root2, [*proof, root1], "trailing root1"),
        (old, new, root1, root2, [*proof, root2], "trailing root2"),
        (old, new, root1, root2, [b"", *proof], "preceding garbage"),
        (old, new, root1, root2, [root1, *proof], "preceding root1"),
        (old, new, root1, root2, [root2, *proof], "preceding root2"),
        (old, new, root1, root2, [proof[0], *proof], "preceding proof[0]"),
        (old, new, root1, root2, proof[:-1], "truncated proof"),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = bytes([wrong[position][0] ^ 16]) + wrong[position][1:]
        probes.append((old, new, root1, root2, wrong, f"modified proof[{position}] bit 4"))
    return probes


@pytest.mark.parametrize(("old", "new", "proof"), [vector for vector in CONSISTENCY if vector[2]])
def test_consistency_rejects_every_corrupted_proof(old: int, new: int, proof: list[str]) -> None:
    good = [h(item) for item in proof]
    accepted = []
    for size1, size2, root1, root2, wrong, desc in corrupted_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], good):
        try:
            verify_consistency(size1, size2, wrong, root1, root2)
        except ProofError:
            continue
        accepted.append(desc)
    assert accepted == []


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        (0, 0, b"don't care 1", b"don't care 2", [], False),
        (1, 1, b"don't care 1", b"don't care 2", [], False),
        (0, 0, b"don't care 1", b"don't care 1", [], True),
        (0, 1, b"don't care 1", b"don't care 2", [], True),
        (1, 1, b"don't care 2", b"don't care 2", [], True),
        (1, 0, b"don't care 1", b"don't care 2", [], False),
        (2, 1, b"don't care 1", b"don't care 2", [], False),
        (1, 2, b"don't care 1", b"don't care 2", [], False),
        (0, 0, EMPTY_TREE_HASH, b"don't care 2", [], False),
        (1, 1, EMPTY_TREE_HASH, b"don't care 2", [], False),
        (0, 0, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH], False),
        (0, 1, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH], False),
        (1, 1, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH], False),
    ],
)
def test_consistency_edge_cases(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool) -> None:
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, root2)


def test_compact_range_roots_and_ranges() -> None:
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(13)]
    compact = CompactRange()
    for count, item in enumerate(hashes, start=1):
        compact.append(item)
        assert compact.root() == reference_mth(hashes[:count])
    assert compact.ranges() == [(0, 8), (8, 12), (12, 13)]
    resumed = CompactRange(compact.size, compact.nodes)
    resumed.append(hashes[0])
    assert resumed.root() == reference_mth([*hashes, hashes[0]])
    with pytest.raises(ProofError):
        CompactRange(3, [hashes[0]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_property_every_proof_verifies_and_any_flip_fails(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    size = len(hashes)
    subtree = subtree_over(leaves)
    root = reference_mth(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, subtree)
    verify_inclusion(index, size, hashes[index], proof, root)
    assert root_from_inclusion_proof(index, size, hashes[index], proof) == root
    old = data.draw(st.integers(1, size))
    cproof = consistency_proof(old, size, subtree)
    verify_consistency(old, size, cproof, reference_mth(hashes[:old]), root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        wrong = list(proof)
        wrong[position] = bytes([wrong[position][bit // 8] ^ (1 << bit % 8)]).join(
            [wrong[position][: bit // 8], wrong[position][bit // 8 + 1:]])
        with pytest.raises(ProofError):
            verify_inclusion(index, size, hashes[index], wrong, root)
    if cproof:
        position = data.draw(st.integers(0, len(cproof) - 1))
        wrong = list(cproof)
        wrong[position] = bytes([wrong[position][0] ^ 1]) + wrong[position][1:]
        with pytest.raises(ProofError):
            verify_consistency(old, size, wrong, reference_mth(hashes[:old]), root)
