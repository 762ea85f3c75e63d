"""The safetensors header, validated strictly: one parser for the component kind and the store.

The header is parsed with ``json`` + ``struct`` (no dependency on the ``safetensors`` package)
and checked at least as strictly as the reference implementation, without ever trusting a
length it claims. Errors are :class:`HeaderError` with a message that does not name the file:
the ``model`` kind turns them into a bad-input error naming the file, and the object store
falls back to chunked storage.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: the reference implementation refuses headers above this size; so do we
MAX_HEADER_SIZE = 100_000_000


class HeaderError(ValueError):
    """A header that cannot be trusted (truncated, lying, overlapping, unknown dtype...)."""


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
    """One tensor of the header; ``begin``/``end`` are relative to the data section as parsed,
    and to the start of the file once :meth:`in_file` moved them (the store's layout)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def in_file(self, data_start: int) -> TensorInfo:
        """The same tensor with offsets from the start of the file."""
        return TensorInfo(self.name, self.dtype, self.shape, data_start + self.begin, data_start + self.end)


@dataclass(frozen=True)
class Header:
    """A validated header: where the data section starts and what it holds."""

    header_size: int
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def _no_duplicate_keys() -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A JSON object hook refusing a key given twice (the reference silently keeps the last)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise HeaderError(f"safetensors header has the key '{key}' twice")
            result[key] = value
        return result

    return hook


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_info(tensor: str, entry: Any) -> TensorInfo:
    where = f"tensor '{tensor}'"
    if not isinstance(entry, dict):
        raise HeaderError(f"{where}: expected an object with dtype, shape and data_offsets")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise HeaderError(f"{where}: missing '{key}'")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise HeaderError(f"{where}: unknown dtype {dtype!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise HeaderError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(item) for item in offsets):
        raise HeaderError(f"{where}: data_offsets must be [begin, end] non-negative integers, got {offsets!r}")
    begin, end = offsets
    if end < begin:
        raise HeaderError(f"{where}: data_offsets end {end} is before begin {begin}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise HeaderError(f"{where}: {dtype} {shape} does not end on a byte boundary")
    if bits // 8 != end - begin:
        raise HeaderError(
            f"{where}: {dtype} {shape} needs {bits // 8} bytes but data_offsets [{begin}, {end}] span {end - begin}"
        )
    return TensorInfo(tensor, dtype, tuple(shape), begin, end)


def check_length(prefix: bytes, file_size: int) -> int:
    """The header length the 8-byte ``prefix`` claims, once it is sane and fits in the file."""
    if file_size < 8:
        raise HeaderError(f"not a safetensors file: {file_size} bytes, shorter than the 8-byte header length")
    if len(prefix) != 8:
        raise HeaderError("truncated while reading the header length")
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > MAX_HEADER_SIZE:
        raise HeaderError(f"safetensors header length {header_size} is absurd (limit {MAX_HEADER_SIZE})")
    if 8 + header_size > file_size:
        raise HeaderError(f"safetensors header length {header_size} runs past the end of the file ({file_size} bytes)")
    return int(header_size)


def parse_header(raw: bytes, header_size: int, file_size: int) -> Header:
    """Validate the header bytes of a file of ``file_size`` bytes: every tensor's dtype, shape and
    size, and offsets that tile the data section exactly (no overlap, gap or trailing bytes)."""
    if len(raw) != header_size:
        raise HeaderError("truncated while reading the safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys())
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, HeaderError):
            raise
        raise HeaderError(f"safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeaderError(f"safetensors header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("__metadata__ must be a map of strings to strings")
    tensors = [_tensor_info(tensor, entry) for tensor, entry in header.items()]
    data_size = file_size - 8 - header_size
    for info in tensors:
        if info.end > data_size:
            raise HeaderError(
                f"tensor '{info.name}' data_offsets [{info.begin}, {info.end}] run past the end of the "
                f"file (data section is {data_size} bytes)"
            )
    ordered = sorted(tensors, key=lambda t: (t.begin, t.end, t.name))
    covered = 0
    previous: TensorInfo | None = None
    for info in ordered:
        if info.begin < covered:
            other = previous.name if previous is not None else "?"
            raise HeaderError(f"tensors '{other}' and '{info.name}' overlap")
        if info.begin > covered:
            raise HeaderError(f"data section not fully covered: bytes {covered}..{info.begin} belong to no tensor")
        covered = info.end
        if info.nbytes:
            previous = info
    if covered != data_size:
        raise HeaderError(f"data section not fully covered: {data_size - covered} trailing bytes after the last tensor")
    return Header(header_size, dict(metadata), tuple(ordered))
