"""Object store conformance: what every backend must do, tested through the interface."""

from __future__ import annotations

import json
import os
import stat
import struct
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.ids import digest_bytes, digest_file
from tether.store import ObjectCorruptError, ObjectMissingError, ObjectStore, StoreError
from tether.store.local import LocalObjectStore

if TYPE_CHECKING:
    from .conftest import StoreHarness

MiB = 1024 * 1024


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_bytes_round_trip(store: ObjectStore) -> None:
    data = b"You are a helpful support assistant.\n"
    digest = store.put_bytes(data)
    assert digest == digest_bytes(data)
    assert store.has(digest)
    assert store.get_bytes(digest) == data
    assert store.size(digest) == len(data)
    with store.open(digest) as handle:
        assert handle.read(3) == data[:3]
        assert handle.read() == data[3:]
    assert store.verify(digest)
    assert 0 <= store.age_seconds(digest) < 600


def test_empty_object(store: ObjectStore) -> None:
    digest = store.put_bytes(b"")
    assert digest == digest_bytes(b"")
    assert store.get_bytes(digest) == b""
    assert store.size(digest) == 0
    assert store.verify(digest)


def test_put_file_returns_digest_and_size(store: ObjectStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "weights.bin", os.urandom(300_000))
    digest, size = store.put_file(source)
    assert (digest, size) == digest_file(source)
    assert store.get_bytes(digest) == source.read_bytes()
    assert store.size(digest) == size


def test_put_file_with_expected_digest(store: ObjectStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "prompt.md", b"system prompt")
    expected = digest_bytes(b"system prompt")
    assert store.put_file(source, expected_digest=expected) == (expected, 13)
    assert store.get_bytes(expected) == b"system prompt"


def test_put_file_skips_reading_when_object_exists(store: ObjectStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"already stored")
    # The path does not exist: any attempt to read it would fail.
    assert store.put_file(tmp_path / "not-there", expected_digest=digest) == (digest, 14)


def test_identical_content_is_stored_once(store: ObjectStore, tmp_path: Path) -> None:
    data = b"same bytes" * 1000
    first = store.put_bytes(data)
    second = store.put_bytes(data)
    third, _ = store.put_file(_write(tmp_path / "a", data))
    fourth, _ = store.put_file(_write(tmp_path / "b", data))
    assert first == second == third == fourth
    assert list(store.iter_digests()) == [first]
    assert store.clean_temporary(0) == 0  # dropping the duplicate left no temporary file


def test_expected_digest_mismatch_stores_nothing(store: ObjectStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "config.yaml", b"temperature: 0.7\n")
    stale = digest_bytes(b"temperature: 0.2\n")
    with pytest.raises(StoreError, match="changed while it was being stored"):
        store.put_file(source, expected_digest=stale)
    assert not store.has(stale)
    assert not store.has(digest_bytes(source.read_bytes()))
    assert list(store.iter_digests()) == []
    assert store.clean_temporary(0) == 0


def test_missing_object(store: ObjectStore, tmp_path: Path) -> None:
    digest = digest_bytes(b"never stored")
    assert not store.has(digest)
    with pytest.raises(ObjectMissingError, match=digest):
        store.open(digest)
    with pytest.raises(ObjectMissingError, match=digest):
        store.get_bytes(digest)
    with pytest.raises(ObjectMissingError, match=digest):
        store.size(digest)
    with pytest.raises(ObjectMissingError, match=digest):
        store.age_seconds(digest)
    with pytest.raises(ObjectMissingError, match=digest):
        store.verify(digest)
    dest = tmp_path / "out"
    with pytest.raises(ObjectMissingError, match=digest):
        store.materialize(digest, dest)
    assert not dest.exists()


def test_delete(store: ObjectStore) -> None:
    keep = store.put_bytes(b"keep")
    drop = store.put_bytes(b"drop")
    store.delete(drop)
    assert not store.has(drop)
    assert store.has(keep)
    store.delete(drop)  # deleting a missing object is a no-op
    assert sorted(store.iter_digests()) == [keep]
    assert store.put_bytes(b"drop") == drop  # and it can be stored again
    assert store.get_bytes(drop) == b"drop"


def test_iter_digests_lists_exactly_the_objects(store_backend: StoreHarness) -> None:
    store = store_backend.store
    assert list(store.iter_digests()) == []
    stored = {store.put_bytes(f"object {index}".encode()) for index in range(40)}
    store_backend.plant_temporary(0)
    assert set(store.iter_digests()) == stored
    assert len(list(store.iter_digests())) == len(stored)


def test_materialize(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = store.put_bytes(data)
    dest = tmp_path / "checkout" / "models" / "weights.bin"
    store.materialize(digest, dest)
    assert dest.read_bytes() == data
    # Replacing an existing file, which stays writable for the user.
    _write(dest, b"old content")
    store.materialize(digest, dest)
    assert dest.read_bytes() == data
    assert os.stat(dest).st_mode & stat.S_IWUSR
    assert sorted(path.name for path in dest.parent.iterdir()) == ["weights.bin"]


def test_corrupt_object_is_detected(store_backend: StoreHarness, tmp_path: Path) -> None:
    store = store_backend.store
    data = b"the weights" * 5000
    digest = store.put_bytes(data)
    store_backend.corrupt(digest)
    assert store.has(digest)
    assert not store.verify(digest)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    dest = _write(checkout / "weights.bin", b"previous checkout")
    with pytest.raises(ObjectCorruptError, match=digest):
        store.materialize(digest, dest)
    assert dest.read_bytes() == b"previous checkout"
    assert sorted(path.name for path in checkout.iterdir()) == ["weights.bin"]  # no temporary file left
    fresh = tmp_path / "fresh" / "weights.bin"
    with pytest.raises(ObjectCorruptError):
        store.materialize(digest, fresh)
    assert not fresh.exists()


def test_streaming_keeps_memory_flat(store: ObjectStore, tmp_path: Path) -> None:
    size = 64 * MiB
    source = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(source, "wb") as handle:
        for index in range(size // MiB):
            handle.write(index.to_bytes(8, "little") + block[8:])
    tracemalloc.start()
    try:
        digest, stored = store.put_file(source)
        assert store.verify(digest)
        dest = tmp_path / "copy.bin"
        store.materialize(digest, dest)
        with store.open(digest) as handle:
            while handle.read(MiB):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored == size
    assert dest.stat().st_size == size
    assert peak < 40 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB while streaming 64 MiB"
    assert (digest, stored) == digest_file(dest)


def test_clean_temporary(store_backend: StoreHarness) -> None:
    store = store_backend.store
    digest = store.put_bytes(b"a real object")
    assert store.clean_temporary(0) == 0
    store_backend.plant_temporary(3600)
    store_backend.plant_temporary(0)
    assert store.clean_temporary(600) == 1  # the fresh one may belong to a writer still running
    assert store.clean_temporary(600) == 0
    assert store.has(digest)
    assert store.get_bytes(digest) == b"a real object"


INVALID_DIGESTS = [
    "",
    "../../etc/passwd",
    "ab",
    "A" * 64,
    "g" * 64,
    "a" * 63,
    "a" * 65,
    "aa/" + "a" * 61,
    "tmp" + "a" * 61,
]


@pytest.mark.parametrize("bad", INVALID_DIGESTS)
def test_invalid_digests_are_rejected(store: ObjectStore, tmp_path: Path, bad: str) -> None:
    source = _write(tmp_path / "file", b"x")
    dest = tmp_path / "dest"
    calls = [
        lambda: store.has(bad),
        lambda: store.open(bad),
        lambda: store.get_bytes(bad),
        lambda: store.size(bad),
        lambda: store.age_seconds(bad),
        lambda: store.delete(bad),
        lambda: store.verify(bad),
        lambda: store.materialize(bad, dest),
        lambda: store.put_file(source, expected_digest=bad),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="invalid object digest"):
            call()
    assert not dest.exists()
    assert list(store.iter_digests()) == []


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=70_000))
def test_round_trip_property(store: ObjectStore, data: bytes) -> None:
    digest = store.put_bytes(data)
    assert digest == digest_bytes(data)
    assert store.get_bytes(digest) == data
    assert store.size(digest) == len(data)
    assert store.verify(digest)


# -- the local folder store's own layout (not part of the interface) ----------------------------


def test_local_layout_and_read_only_objects(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_bytes(b"layout")
    path = tmp_path / "objects" / digest[:2] / digest[2:]
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.describe() == str(tmp_path / "objects")
    assert sorted(entry.name for entry in (tmp_path / "objects").iterdir()) == sorted([digest[:2], "tmp"])
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


# -- large files: tensors, chunks, deltas (every backend stores them in parts or whole, same result) --


def _safetensors(path: Path, tensors: dict[str, np.ndarray], order: list[str] | None = None) -> Path:
    """A safetensors file written by hand, tensors in ``order`` (default: as given)."""
    names = order or list(tensors)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        value = tensors[name]
        header[name] = {"dtype": "F16", "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for name in names:
            handle.write(tensors[name].astype(np.float16).tobytes())
    return path


def _weights(seed: int = 0, count: int = 8, shape: tuple[int, int] = (256, 512)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{index}.weight": (rng.standard_normal(shape) * 0.05).astype(np.float16) for index in range(count)}


def _new_bytes(store: ObjectStore, before: set[str]) -> int:
    return sum(store.stored_size(digest) for digest in set(store.iter_digests()) - before)


def _round_trips(store: ObjectStore, digest: str, source: Path, tmp_path: Path) -> None:
    assert store.verify(digest)
    assert store.size(digest) == source.stat().st_size
    dest = tmp_path / "out" / source.name
    store.materialize(digest, dest)
    assert dest.read_bytes() == source.read_bytes()
    with store.open(digest) as handle:
        assert handle.read() == source.read_bytes()


def test_large_random_file_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "index.faiss", os.urandom(5 * MiB + 123))
    digest, size = store.put_file(source)
    assert (digest, size) == digest_file(source)
    _round_trips(store, digest, source, tmp_path)
    assert store.put_file(source, expected_digest=digest) == (digest, size)


def test_changed_tensors_cost_about_their_own_bytes(store: ObjectStore, tmp_path: Path) -> None:
    weights = _weights()
    base = _safetensors(tmp_path / "base.safetensors", weights)
    base_digest, _ = store.put_file(base)
    before = set(store.iter_digests())
    tuned = dict(weights, **{"layer.7.weight": np.ones((256, 512), np.float16)})
    changed = _safetensors(tmp_path / "tuned.safetensors", tuned)
    digest, _ = store.put_file(changed)
    assert digest == digest_file(changed)[0]
    assert _new_bytes(store, before) <= 1.15 * tuned["layer.7.weight"].nbytes
    _round_trips(store, digest, changed, tmp_path)
    _round_trips(store, base_digest, base, tmp_path / "again")


def test_reordered_tensors_store_nothing_new(store: ObjectStore, tmp_path: Path) -> None:
    weights = _weights()
    store.put_file(_safetensors(tmp_path / "a.safetensors", weights))
    before = set(store.iter_digests())
    reordered = _safetensors(tmp_path / "b.safetensors", weights, order=sorted(weights, reverse=True))
    digest, _ = store.put_file(reordered)
    assert _new_bytes(store, before) < 0.01 * reordered.stat().st_size
    _round_trips(store, digest, reordered, tmp_path)


def test_full_fine_tune_is_stored_as_deltas_against_the_parent(store: ObjectStore, tmp_path: Path) -> None:
    from tether.store import StoreHint

    weights = _weights()
    parent, _ = store.put_file(_safetensors(tmp_path / "base.safetensors", weights))
    rng = np.random.default_rng(1)
    nudged = {name: (value * (1 + 0.01 * rng.standard_normal(value.shape))).astype(np.float16) for name, value in weights.items()}
    child = _safetensors(tmp_path / "tuned.safetensors", nudged)
    before = set(store.iter_digests())
    digest, _ = store.put_file(child, hint=StoreHint(previous=parent))
    assert _new_bytes(store, before) < 0.8 * child.stat().st_size
    _round_trips(store, digest, child, tmp_path)
    # a third version deltas against the fully stored base, never against a delta
    again = {name: (value * (1 + 0.01 * rng.standard_normal(value.shape))).astype(np.float16) for name, value in nudged.items()}
    third = _safetensors(tmp_path / "third.safetensors", again)
    third_digest, _ = store.put_file(third, hint=StoreHint(previous=digest))
    _round_trips(store, third_digest, third, tmp_path / "third")
    assert set(store.parts(third_digest)) & set(store.parts(digest))  # shared bases


def test_tensors_stored_side_by_side_match_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a trusted table the local store encodes tensors on several threads: the recipe, the
    objects and the bytes read back must not depend on how many."""
    import tether.store.local as local
    from tether.components.safetensors_format import read_table
    from tether.store import StoreHint

    weights = _weights(count=12)
    parent_path = _safetensors(tmp_path / "base.safetensors", weights)
    rng = np.random.default_rng(3)
    tuned = {
        name: value if index % 3 == 0  # unchanged
        else (rng.standard_normal(value.shape) * 0.05).astype(np.float16) if index % 3 == 1  # re-initialized
        else (value * (1 + 0.01 * rng.standard_normal(value.shape))).astype(np.float16)  # nudged: a delta
        for index, (name, value) in enumerate(weights.items())
    }
    child = _safetensors(tmp_path / "tuned.safetensors", tuned)
    table = read_table(child)["tensors"]
    stored = []
    for workers in (1, 3):
        monkeypatch.setattr(local, "_WORKERS", workers)
        store = LocalObjectStore(tmp_path / f"store-{workers}")
        parent, _ = store.put_file(parent_path)
        digest, _ = store.put_file(child, expected_digest=digest_file(child)[0], hint=StoreHint(previous=parent, tensors=table))
        _round_trips(store, digest, child, tmp_path / f"out-{workers}")
        stored.append((store.recipe(digest), sorted(store.iter_digests())))
        assert not list((tmp_path / f"store-{workers}" / "tmp").iterdir())
    assert stored[0] == stored[1]
    assert any(part.is_delta for part in stored[0][0].parts)  # type: ignore[union-attr]


def test_a_reinitialized_tensor_is_stored_whole_not_as_a_delta(store: ObjectStore, tmp_path: Path) -> None:
    """XOR against unrelated weights is noise: the store keeps the tensor whole (no larger delta)."""
    from tether.store import StoreHint

    weights = _weights(count=2, shape=(1024, 1024))
    parent, _ = store.put_file(_safetensors(tmp_path / "base.safetensors", weights))
    fresh = dict(weights, **{"layer.1.weight": _weights(seed=9, count=2, shape=(1024, 1024))["layer.1.weight"]})
    child = _safetensors(tmp_path / "reinit.safetensors", fresh)
    before = set(store.iter_digests())
    digest, _ = store.put_file(child, hint=StoreHint(previous=parent))
    tensor_digest = digest_bytes(fresh["layer.1.weight"].astype(np.float16).tobytes())
    assert tensor_digest in set(store.iter_digests()) - before  # stored whole, under its own digest
    assert _new_bytes(store, before) <= 1.05 * fresh["layer.1.weight"].nbytes + 4096
    _round_trips(store, digest, child, tmp_path)


def test_insertion_moves_only_nearby_chunks(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB)
    store.put_file(_write(tmp_path / "a.bin", data))
    before = set(store.iter_digests())
    inserted = _write(tmp_path / "b.bin", data[: 6 * MiB] + b"inserted bytes" + data[6 * MiB :])
    digest, _ = store.put_file(inserted)
    assert _new_bytes(store, before) < 0.5 * len(data)
    _round_trips(store, digest, inserted, tmp_path)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (struct.pack("<Q", 2**62), "absurd"),  # a header length that would allocate exabytes
        (struct.pack("<Q", 64) + b"{", "truncated"),
        (struct.pack("<Q", 16) + b'{"a": {"data_o', "not valid JSON"),
    ],
)
def test_lying_safetensors_header_falls_back_to_chunks(
    store: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, header: bytes, why: str
) -> None:
    source = _write(tmp_path / "broken.safetensors", header + os.urandom(3 * MiB))
    tracemalloc.start()
    try:
        with caplog.at_level("WARNING", logger="tether.store"):
            digest, _ = store.put_file(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * MiB
    assert "broken.safetensors" in caplog.text and "chunks" in caplog.text
    _round_trips(store, digest, source, tmp_path)


def test_overlapping_tensors_fall_back_to_chunks(store: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    header = json.dumps({"a": {"dtype": "U8", "shape": [3 * MiB], "data_offsets": [0, 3 * MiB]},
                         "b": {"dtype": "U8", "shape": [16], "data_offsets": [8, 24]}}).encode()
    source = _write(tmp_path / "overlap.safetensors", struct.pack("<Q", len(header)) + header + os.urandom(3 * MiB))
    with caplog.at_level("WARNING", logger="tether.store"):
        digest, _ = store.put_file(source)
    assert "overlap" in caplog.text
    _round_trips(store, digest, source, tmp_path)


def test_corrupt_part_is_detected(store_backend: StoreHarness, tmp_path: Path) -> None:
    store = store_backend.store
    source = _safetensors(tmp_path / "w.safetensors", _weights())
    digest, _ = store.put_file(source)
    parts = store.parts(digest)
    assert parts, "a large safetensors file is stored in parts"
    store_backend.corrupt(parts[-1])
    assert not store.verify(digest)
    dest = _write(tmp_path / "dest.safetensors", b"previous")
    with pytest.raises(ObjectCorruptError, match=digest):
        store.materialize(digest, dest)
    assert dest.read_bytes() == b"previous"


def test_corrupt_delta_is_detected(store_backend: StoreHarness, tmp_path: Path) -> None:
    from tether.store import StoreHint

    store = store_backend.store
    weights = _weights()
    parent, _ = store.put_file(_safetensors(tmp_path / "a.safetensors", weights))
    nudged = {name: (value * 1.01).astype(np.float16) for name, value in weights.items()}
    digest, _ = store.put_file(_safetensors(tmp_path / "b.safetensors", nudged), hint=StoreHint(previous=parent))
    only_child = [part for part in store.parts(digest) if part not in set(store.parts(parent))]
    assert only_child, "the nudged tensors are stored as deltas"
    store_backend.corrupt(only_child[0])
    assert not store.verify(digest)
    with pytest.raises(ObjectCorruptError):
        store.materialize(digest, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_link_materializes_read_only(store: ObjectStore, tmp_path: Path) -> None:
    for name, data in (("small.txt", b"prompt"), ("big.bin", os.urandom(3 * MiB))):
        digest = store.put_bytes(data) if len(data) < MiB else store.put_file(_write(tmp_path / name, data))[0]
        dest = tmp_path / "linked" / name
        store.materialize(digest, dest, link=True)
        assert dest.read_bytes() == data
        assert not os.stat(dest).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        assert store.verify(digest)


def test_big_safetensors_stream_in_flat_memory(store: ObjectStore, tmp_path: Path) -> None:
    source = _safetensors(tmp_path / "big.safetensors", _weights(count=4, shape=(4096, 2048)))  # 64 MiB
    tracemalloc.start()
    try:
        digest, _ = store.put_file(source)
        store.materialize(digest, tmp_path / "copy.safetensors")
        assert store.verify(digest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB for a 64 MiB checkpoint"


def test_pruned_versions_are_recorded_durably_and_listed(store: ObjectStore) -> None:
    """``gc --unreachable`` marks a version before its objects go; the mark is what fsck and
    checkout read back, and it never shows up as an object."""
    version = digest_bytes(b"an abandoned experiment")
    assert store.pruned() == {}
    store.mark_pruned(version, {"time": "2026-11-27T10:00:00Z", "by": "gc --unreachable"})
    store.mark_pruned(version, {"time": "2026-11-27T11:00:00Z", "by": "gc --unreachable"})  # idempotent
    assert store.pruned() == {version: {"time": "2026-11-27T11:00:00Z", "by": "gc --unreachable"}}
    assert version not in set(store.iter_digests())
    with pytest.raises(StoreError, match="not a version ID"):
        store.mark_pruned("../escape", {})
