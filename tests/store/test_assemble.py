"""Rebuilding a split file: the reader thread and the writing thread fail together, cleanly."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.components.model_helpers import write_tensors
from tether.store import StoreHint
from tether.store.local import LocalObjectStore, _DirectWriter


def _checkpoint(path: Path, scale: float = 1.0, count: int = 6) -> Path:
    rng = np.random.default_rng(0)
    tensors = {f"layer.{i}.weight": (rng.standard_normal((1024, 1024)) * 0.05 * scale).astype("<f2") for i in range(count)}
    return write_tensors(path, tensors)


def _assembly_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "tether-assemble"]


@pytest.mark.parametrize("as_deltas", [False, True], ids=["plain-parts", "delta-parts"])
def test_a_failed_write_stops_the_reader_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_deltas: bool
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    parent, _ = store.put_file(_checkpoint(tmp_path / "a.safetensors"))
    digest = parent
    if as_deltas:
        digest, _ = store.put_file(_checkpoint(tmp_path / "b.safetensors", 1.01), hint=StoreHint(previous=parent))
        assert store.parts(digest) != store.parts(parent)
    writes = 0
    original = _DirectWriter.write

    def failing(self: _DirectWriter, data: bytes | bytearray | memoryview, aligned: bool = False) -> int:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, aligned)

    monkeypatch.setattr(_DirectWriter, "write", failing)
    dest = tmp_path / "out" / "model.safetensors"
    with pytest.raises(OSError, match="No space left"):
        store.materialize(digest, dest)
    assert writes == 3
    assert not _assembly_threads(), "the reader thread is joined, not left blocked"
    assert list(dest.parent.iterdir()) == []  # no partial file, no temporary file
    monkeypatch.undo()
    store.materialize(digest, dest)  # the store itself is untouched and still rebuilds the file
    assert store.verify(digest)


def test_the_rebuilt_file_is_byte_identical_across_many_blocks(tmp_path: Path) -> None:
    """More blocks than the ring holds, parts smaller and larger than a block."""
    source = _checkpoint(tmp_path / "a.safetensors", count=12)
    store = LocalObjectStore(tmp_path / "objects")
    digest, _ = store.put_file(source)
    child_source = _checkpoint(tmp_path / "b.safetensors", 1.01, count=12)
    child, _ = store.put_file(child_source, hint=StoreHint(previous=digest))
    for stored, original in ((digest, source), (child, child_source)):
        out = tmp_path / f"{stored[:8]}.safetensors"
        store.materialize(stored, out)
        assert out.read_bytes() == original.read_bytes()
    assert not _assembly_threads()
