"""A strict, streaming safetensors reader: tether validates the format itself.

A checkpoint is understood tensor by tensor so a diff can say *which* tensors changed and the
store can deduplicate unchanged ones. The header is parsed with ``json`` + ``struct`` (no
dependency on the ``safetensors`` package) and validated at least as strictly as the reference
implementation; the data section is then streamed once, in large blocks, hashing each
tensor's byte range. Nothing here ever holds a whole file in memory.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from tether.components.base import ComponentError
from tether.ids import Hasher

BLOCK_SIZE = 8 * 1024 * 1024
#: the reference implementation refuses headers above this size; so do we
MAX_HEADER_SIZE = 100_000_000

#: bits per element of every dtype the safetensors format defines
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the header; ``begin``/``end`` are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A validated header: where the data section starts and what it holds."""

    header_size: int
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def _no_duplicate_keys(name: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A JSON object hook refusing a key given twice (the reference silently keeps the last)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ComponentError(f"{name}: safetensors header has the key '{key}' twice")
            result[key] = value
        return result

    return hook


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_info(name: str, tensor: str, entry: Any) -> TensorInfo:
    where = f"{name}: tensor '{tensor}'"
    if not isinstance(entry, dict):
        raise ComponentError(f"{where}: expected an object with dtype, shape and data_offsets")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise ComponentError(f"{where}: missing '{key}'")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ComponentError(f"{where}: unknown dtype {dtype!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise ComponentError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(item) for item in offsets):
        raise ComponentError(f"{where}: data_offsets must be [begin, end] non-negative integers, got {offsets!r}")
    begin, end = offsets
    if end < begin:
        raise ComponentError(f"{where}: data_offsets end {end} is before begin {begin}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise ComponentError(f"{where}: {dtype} {shape} does not end on a byte boundary")
    if bits // 8 != end - begin:
        raise ComponentError(
            f"{where}: {dtype} {shape} needs {bits // 8} bytes but data_offsets [{begin}, {end}] span {end - begin}"
        )
    return TensorInfo(tensor, dtype, tuple(shape), begin, end)


def read_header(stream: BinaryIO, file_size: int, name: str) -> Header:
    """Parse and validate the header of a safetensors file of ``file_size`` bytes.

    ``name`` (the project-relative path) is named in every error. The stream is left just
    after the header, at the start of the data section.
    """
    if file_size < 8:
        raise ComponentError(
            f"{name}: not a safetensors file: {file_size} bytes, shorter than the 8-byte header length"
        )
    prefix = stream.read(8)
    if len(prefix) != 8:
        raise ComponentError(f"{name}: truncated while reading the header length")
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > MAX_HEADER_SIZE:
        raise ComponentError(f"{name}: safetensors header length {header_size} is absurd (limit {MAX_HEADER_SIZE})")
    if 8 + header_size > file_size:
        raise ComponentError(
            f"{name}: safetensors header length {header_size} runs past the end of the file ({file_size} bytes)"
        )
    raw = stream.read(header_size)
    if len(raw) != header_size:
        raise ComponentError(f"{name}: truncated while reading the safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys(name))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ComponentError(f"{name}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ComponentError(f"{name}: safetensors header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ComponentError(f"{name}: __metadata__ must be a map of strings to strings")

    tensors = [_tensor_info(name, tensor, entry) for tensor, entry in header.items()]
    data_size = file_size - 8 - header_size
    for info in tensors:
        if info.end > data_size:
            raise ComponentError(
                f"{name}: tensor '{info.name}' data_offsets [{info.begin}, {info.end}] run past the end of the "
                f"file (data section is {data_size} bytes)"
            )
    ordered = sorted(tensors, key=lambda t: (t.begin, t.end, t.name))
    covered = 0
    previous: TensorInfo | None = None
    for info in ordered:
        if info.begin < covered:
            other = previous.name if previous is not None else "?"
            raise ComponentError(f"{name}: tensors '{other}' and '{info.name}' overlap")
        if info.begin > covered:
            raise ComponentError(
                f"{name}: data section not fully covered: bytes {covered}..{info.begin} belong to no tensor"
            )
        covered = info.end
        if info.nbytes:
            previous = info
    if covered != data_size:
        raise ComponentError(
            f"{name}: data section not fully covered: {data_size - covered} trailing bytes after the last tensor"
        )
    return Header(header_size, dict(metadata), tuple(ordered))


def _blocks(stream: BinaryIO, length: int, block_size: int, name: str) -> Iterator[memoryview]:
    """Exactly ``length`` bytes of ``stream`` in blocks (a short read is an error).

    One buffer is reused: a yielded view is valid until the next block is requested.
    """
    buffer = bytearray(min(block_size, max(length, 1)))
    view = memoryview(buffer)
    readinto = getattr(stream, "readinto", None)
    remaining = length
    while remaining:
        want = min(remaining, len(buffer))
        if readinto is not None:
            got = readinto(view[:want]) or 0
        else:
            chunk = stream.read(want)
            got = len(chunk)
            view[:got] = chunk
        if not got:
            raise ComponentError(f"{name}: ended {remaining} bytes early (did it change while being read?)")
        remaining -= got
        yield view[:got]


def tensor_digests(stream: BinaryIO, header: Header, name: str, block_size: int = BLOCK_SIZE) -> dict[str, str]:
    """BLAKE3 of every tensor's bytes, streaming the data section once from the stream's position.

    Tensors may be stored in any order; the header's tensors are sorted by offset and (being
    validated) tile the data section exactly, so one sequential pass visits each range once,
    with ranges spanning block boundaries as needed.
    """
    ordered = list(header.tensors)
    digests: dict[str, str] = {}
    data_size = ordered[-1].end if ordered else 0
    index = 0
    position = 0
    hasher = Hasher()
    # zero-sized tensors at the very start have nothing to wait for
    while index < len(ordered) and ordered[index].end <= position:
        digests[ordered[index].name] = hasher.hexdigest()
        hasher = Hasher()
        index += 1
    for block in _blocks(stream, data_size, block_size, name):
        offset = 0
        while offset < len(block):
            info = ordered[index]
            take = min(info.end - position, len(block) - offset)
            hasher.update(block[offset : offset + take])
            offset += take
            position += take
            while index < len(ordered) and ordered[index].end <= position:
                digests[ordered[index].name] = hasher.hexdigest()
                hasher = Hasher()
                index += 1
    return digests


def table_from_stream(stream: BinaryIO, file_size: int, name: str, block_size: int = BLOCK_SIZE) -> dict[str, Any]:
    """The JSON-able tensor table of a safetensors stream positioned at its start."""
    header = read_header(stream, file_size, name)
    digests = tensor_digests(stream, header, name, block_size)
    return {
        "header_size": header.header_size,
        "metadata": dict(sorted(header.metadata.items())),
        "tensors": {
            info.name: {
                "dtype": info.dtype,
                "shape": list(info.shape),
                "offsets": [info.begin, info.end],
                "nbytes": info.nbytes,
                "digest": digests[info.name],
            }
            for info in sorted(header.tensors, key=lambda t: t.name)
        },
    }


def read_table(path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
    """The tensor table of a safetensors file; errors name ``name`` (default: the path).

    Shape::

        {"header_size": n, "metadata": {str: str},
         "tensors": {name: {"dtype", "shape", "offsets": [begin, end], "nbytes", "digest"}}}
    """
    label = name if name is not None else os.fspath(path)
    with open(path, "rb") as handle:
        return table_from_stream(handle, os.fstat(handle.fileno()).st_size, label)


def data_start(table: dict[str, Any]) -> int:
    """Absolute file offset of the data section described by a table."""
    return 8 + int(table["header_size"])


_COMPARE_STEP = 64 * 1024


def _count_block_differences(a: memoryview, b: memoryview) -> int:
    """Differing bytes between two equal-length buffers, at C speed without numpy.

    Equal 64 KiB slices are skipped by a memcmp; unequal ones are XORed as big integers and
    the zero bytes of the result counted.
    """
    differing = 0
    for start in range(0, len(a), _COMPARE_STEP):
        left = a[start : start + _COMPARE_STEP]
        right = b[start : start + _COMPARE_STEP]
        if left == right:
            continue
        size = len(left)
        xored = (int.from_bytes(left, "little") ^ int.from_bytes(right, "little")).to_bytes(size, "little")
        differing += size - xored.count(0)
    return differing


def count_differing_bytes(
    a: BinaryIO,
    b: BinaryIO,
    length: int,
    a_offset: int | None = None,
    b_offset: int | None = None,
    block_size: int = BLOCK_SIZE,
) -> int:
    """How many of ``length`` bytes differ between two byte ranges of two streams.

    An offset seeks its stream there first; ``None`` reads from the stream's current position
    (for streams that cannot seek, positioned by the caller). Both streams are read block by
    block, so two multi-gigabyte tensors are compared in bounded memory.
    """
    if a_offset is not None:
        a.seek(a_offset)
    if b_offset is not None:
        b.seek(b_offset)
    differing = 0
    left_blocks = _blocks(a, length, block_size, "left stream")
    right_blocks = _blocks(b, length, block_size, "right stream")
    pending_left = memoryview(b"")
    pending_right = memoryview(b"")
    remaining = length
    while remaining:
        if not pending_left:
            pending_left = next(left_blocks)
        if not pending_right:
            pending_right = next(right_blocks)
        step = min(len(pending_left), len(pending_right))
        differing += _count_block_differences(pending_left[:step], pending_right[:step])
        pending_left = pending_left[step:]
        pending_right = pending_right[step:]
        remaining -= step
    return differing


def skip_bytes(stream: BinaryIO, count: int) -> None:
    """Advance a stream by ``count`` bytes, reading through when it cannot seek."""
    if stream.seekable():
        stream.seek(count, os.SEEK_CUR)
        return
    remaining = count
    while remaining:
        chunk = stream.read(min(remaining, BLOCK_SIZE))
        if not chunk:
            raise ComponentError(f"stream ended {remaining} bytes before the requested offset")
        remaining -= len(chunk)
