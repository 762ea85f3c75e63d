"""The safetensors reader: agreement with the reference library, strict validation, streaming."""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pytest
import safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save

from tether.components.base import ComponentError
from tether.components.safetensors_format import (
    MAX_HEADER_SIZE,
    count_differing_bytes,
    read_table,
    table_from_blocks,
)
from tether.ids import FileBlocks

from .model_helpers import minilm_folder, raw_safetensors, write_tensors

F32_4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}


def _table(data: bytes, name: str = "x.safetensors", block_size: int = 8 * 1024 * 1024) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.safetensors"
        path.write_bytes(data)
        return read_table(path, name, block_size)


def test_minilm_table_matches_reference_library() -> None:
    path = minilm_folder() / "model.safetensors"
    table = read_table(path, "model.safetensors")
    with safe_open(str(path), "np") as handle:
        names = set(handle.keys())
        assert set(table["tensors"]) == names
        assert table["metadata"] == (handle.metadata() or {})
        for name in names:
            info = table["tensors"][name]
            view = handle.get_slice(name)
            assert info["shape"] == list(view.get_shape())
            assert info["dtype"] == view.get_dtype()
            tensor = handle.get_tensor(name)
            assert info["nbytes"] == tensor.nbytes
            assert info["digest"] == blake3.blake3(tensor.tobytes()).hexdigest()
    (header_size,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert table["header_size"] == header_size


def test_tensors_stored_out_of_name_order_zero_sized_and_scalars() -> None:
    data = bytes(range(24))
    header = {
        "__metadata__": {"format": "np"},
        "z_first": {"dtype": "I8", "shape": [8], "data_offsets": [0, 8]},
        "a_last": {"dtype": "F64", "shape": [], "data_offsets": [16, 24]},
        "m_middle": {"dtype": "U16", "shape": [2, 2], "data_offsets": [8, 16]},
        "empty": {"dtype": "F32", "shape": [0, 3], "data_offsets": [8, 8]},
        "empty_end": {"dtype": "BF16", "shape": [0], "data_offsets": [24, 24]},
    }
    table = _table(raw_safetensors(header, data))
    assert table["metadata"] == {"format": "np"}
    tensors = table["tensors"]
    assert tensors["z_first"]["digest"] == blake3.blake3(data[0:8]).hexdigest()
    assert tensors["m_middle"]["digest"] == blake3.blake3(data[8:16]).hexdigest()
    assert tensors["a_last"]["digest"] == blake3.blake3(data[16:24]).hexdigest()
    assert tensors["a_last"]["shape"] == []
    assert tensors["empty"]["digest"] == tensors["empty_end"]["digest"] == blake3.blake3(b"").hexdigest()
    assert tensors["empty"]["nbytes"] == 0
    assert list(tensors) == sorted(tensors)


@pytest.mark.parametrize("block_size", [1, 3, 7, 16, 1000])
def test_ranges_spanning_blocks_hash_the_same(block_size: int) -> None:
    rng = np.random.default_rng(1)
    data = save({f"t{i}": rng.standard_normal(i + 1).astype(np.float32) for i in range(6)})
    assert _table(data, block_size=block_size) == _table(data)


def test_sub_byte_dtype_must_end_on_a_byte_boundary() -> None:
    ok = {"q": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}}
    assert _table(raw_safetensors(ok, b"abc"))["tensors"]["q"]["nbytes"] == 3
    bad = {"q": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}
    with pytest.raises(ComponentError, match="byte boundary"):
        _table(raw_safetensors(bad, b"ab"))


def test_empty_file_with_empty_header_is_valid() -> None:
    assert _table(raw_safetensors({})) == {"header_size": 2, "metadata": {}, "tensors": {}}


CORRUPT: list[tuple[str, bytes, str]] = [
    ("short", b"\x01\x00\x00", "shorter than the 8-byte header length"),
    ("header-past-end", struct.pack("<Q", 500) + b"{}", "runs past the end of the file"),
    ("header-absurd", struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{}", "absurd"),
    ("header-huge", struct.pack("<Q", 2**63) + b"{}", "absurd"),
    ("not-json", raw_safetensors(b"{not json"), "not valid JSON"),
    ("not-utf8", raw_safetensors(b'{"\xff": 1}'), "not valid JSON"),
    ("not-object", raw_safetensors([1, 2]), "must be a JSON object"),
    (
        "duplicate-key",
        raw_safetensors(b'{"a": %s, "a": %s}' % ((json.dumps(F32_4).encode(),) * 2), bytes(16)),
        "twice",
    ),
    ("metadata-not-strings", raw_safetensors({"__metadata__": {"a": 1}}), "__metadata__"),
    ("entry-not-object", raw_safetensors({"t": [1]}), "expected an object"),
    ("missing-dtype", raw_safetensors({"t": {"shape": [1], "data_offsets": [0, 4]}}, b"0000"), "missing 'dtype'"),
    ("unknown-dtype", raw_safetensors({"t": {**F32_4, "dtype": "F128"}}, bytes(16)), "unknown dtype"),
    ("shape-negative", raw_safetensors({"t": {**F32_4, "shape": [-4]}}, bytes(16)), "shape"),
    ("shape-float", raw_safetensors({"t": {**F32_4, "shape": [4.0]}}, bytes(16)), "shape"),
    ("shape-bool", raw_safetensors({"t": {**F32_4, "shape": [True]}}, bytes(16)), "shape"),
    ("shape-not-list", raw_safetensors({"t": {**F32_4, "shape": 4}}, bytes(16)), "shape"),
    ("offsets-three", raw_safetensors({"t": {**F32_4, "data_offsets": [0, 8, 16]}}, bytes(16)), "data_offsets"),
    ("end-before-begin", raw_safetensors({"t": {**F32_4, "data_offsets": [16, 0]}}, bytes(16)), "before begin"),
    ("size-mismatch", raw_safetensors({"t": {**F32_4, "shape": [3]}}, bytes(16)), "needs 12 bytes"),
    ("past-end", raw_safetensors({"t": F32_4}, bytes(12)), "run past the end of the file"),
    (
        "overlap",
        raw_safetensors({"a": F32_4, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        "overlap",
    ),
    (
        "gap",
        raw_safetensors({"a": F32_4, "b": {"dtype": "F32", "shape": [1], "data_offsets": [20, 24]}}, bytes(24)),
        "data section not fully covered",
    ),
    ("trailing-bytes", raw_safetensors({"a": F32_4}, bytes(20)), "data section not fully covered"),
    ("leading-gap", raw_safetensors({"a": {**F32_4, "data_offsets": [4, 20]}}, bytes(20)), "not fully covered"),
]


@pytest.mark.parametrize(("case", "data", "message"), CORRUPT, ids=[case[0] for case in CORRUPT])
def test_corrupt_files_are_refused_naming_the_file(tmp_path: Path, case: str, data: bytes, message: str) -> None:
    path = tmp_path / "weights" / f"{case}.safetensors"
    path.parent.mkdir()
    path.write_bytes(data)
    with pytest.raises(ComponentError, match=message) as error:
        read_table(path, f"weights/{case}.safetensors")
    assert str(error.value).startswith(f"weights/{case}.safetensors: ")


def test_reference_library_refuses_the_same_files() -> None:
    """Our strictness is not invented: the reference implementation rejects these files too,
    except a duplicated tensor name, which it silently resolves to the last entry (we refuse:
    which of the two tensors is meant is ambiguous)."""
    for case, data, _ in CORRUPT:
        if case == "duplicate-key":
            assert [name for name, _ in safetensors.deserialize(data)] == ["a"]
            continue
        with pytest.raises(safetensors.SafetensorError):
            safetensors.deserialize(data)


def test_file_that_changes_while_read_is_an_error(tmp_path: Path) -> None:
    data = raw_safetensors({"a": F32_4}, bytes(16))
    path = tmp_path / "x.safetensors"
    path.write_bytes(data[:-4])  # shorter than when its size was taken
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ComponentError, match=r"x\.safetensors: changed while it was being read"):
            table_from_blocks(FileBlocks(fd, "x.safetensors", len(data)), "x.safetensors")
    finally:
        os.close(fd)


def test_count_differing_bytes_block_by_block() -> None:
    left = bytes(range(256)) * 40
    right = bytearray(left)
    for position in (5, 77, 4000, 10239):
        right[position] ^= 0xFF
    assert count_differing_bytes(io.BytesIO(left), io.BytesIO(bytes(right)), len(left), 0, 0) == 4
    for block in (1, 7, 64, 100_000):
        counted = count_differing_bytes(io.BytesIO(left), io.BytesIO(bytes(right)), 100, 0, 0, block_size=block)
        assert counted == 2  # positions 5 and 77 only
    shifted = b"xyz" + bytes(right)
    assert count_differing_bytes(io.BytesIO(left), io.BytesIO(shifted), 4001, 0, 3, block_size=999) == 3
    assert count_differing_bytes(io.BytesIO(left), io.BytesIO(left), len(left), 0, 0) == 0


# ---- properties ----------------------------------------------------------------------------

_DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.bool_]

_tensor = st.builds(
    lambda dtype, shape, seed: np.random.default_rng(seed).integers(0, 255, size=shape).astype(dtype),
    st.sampled_from(_DTYPES),
    st.lists(st.integers(0, 5), min_size=0, max_size=3),
    st.integers(0, 2**32 - 1),
)
_tensor_dicts = st.dictionaries(st.text("abcdefgh._", min_size=1, max_size=8), _tensor, min_size=0, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors=_tensor_dicts, metadata=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_parsed_table_agrees_with_safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    data = save(tensors, metadata=metadata or None)
    table = _table(data, block_size=5)
    reference = dict(safetensors.deserialize(data))
    assert set(table["tensors"]) == set(reference)
    for name, info in reference.items():
        ours = table["tensors"][name]
        assert ours["dtype"] == info["dtype"]
        assert ours["shape"] == list(info["shape"])
        assert ours["nbytes"] == len(info["data"])
        assert ours["digest"] == blake3.blake3(bytes(info["data"])).hexdigest()
    assert table["metadata"] == metadata
    json.dumps(table)  # JSON-able


@settings(max_examples=60, deadline=None)
@given(tensors=_tensor_dicts.filter(lambda d: sum(a.nbytes for a in d.values()) > 0), data=st.data())
def test_a_byte_flip_changes_exactly_the_tensor_holding_it(tensors: dict[str, np.ndarray], data: st.DataObject) -> None:
    original = save(tensors)
    before = _table(original)
    start = 8 + before["header_size"]
    position = data.draw(st.integers(start, len(original) - 1))
    flipped = bytearray(original)
    flipped[position] ^= data.draw(st.integers(1, 255))
    after = _table(bytes(flipped))
    relative = position - start
    changed = {name for name in before["tensors"] if before["tensors"][name] != after["tensors"][name]}
    holding = {name for name, info in before["tensors"].items() if info["offsets"][0] <= relative < info["offsets"][1]}
    assert changed == holding
    assert len(holding) == 1
    (name,) = holding
    begin, end = before["tensors"][name]["offsets"]
    counted = count_differing_bytes(
        io.BytesIO(original), io.BytesIO(bytes(flipped)), end - begin, start + begin, start + begin
    )
    assert counted == 1


def test_table_is_read_from_disk_in_one_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_tensors(tmp_path / "w.safetensors", {"a": rng.standard_normal((64, 64)).astype(np.float32)})
    table = read_table(path)
    assert table["tensors"]["a"]["offsets"] == [0, 64 * 64 * 4]
    assert read_table(path, "named.safetensors") == table
