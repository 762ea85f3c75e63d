"""A strict, streaming safetensors reader: tether validates the format itself.

A checkpoint is understood tensor by tensor so a diff can say *which* tensors changed and the
store can deduplicate unchanged ones. The header is parsed with ``json`` + ``struct`` (no
dependency on the ``safetensors`` package) and validated at least as strictly as the reference
implementation; each tensor's byte range is then hashed in large blocks, in file order
(:mod:`tether.ids.fileview`). Nothing here ever holds a whole file in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from tether.components.base import ComponentError
from tether.ids import FileBlocks, FileChangedError, Hasher, open_blocks
from tether.ids.fileview import STEP
from tether.ids.hashing import BLOCK_SIZE
from tether.store.safetensors_header import (
    DTYPE_BITS,
    MAX_HEADER_SIZE,
    Header,
    HeaderError,
    TensorInfo,
    check_length,
    parse_header,
)

__all__ = ["DTYPE_BITS", "MAX_HEADER_SIZE", "Header", "TensorInfo", "read_header", "read_table", "table_from_blocks"]

def read_header(blocks: FileBlocks, name: str) -> Header:
    """Parse and validate the header of a safetensors file; ``name`` is named in every error."""
    try:
        prefix = blocks.read_at(0, 8) if blocks.size >= 8 else b""
        header_size = check_length(prefix, blocks.size)
        return parse_header(blocks.read_at(8, header_size), header_size, blocks.size)
    except HeaderError as exc:
        raise ComponentError(f"{name}: {exc}") from exc
    except FileChangedError as exc:
        raise ComponentError(f"{name}: changed while it was being read ({exc})") from exc


def tensor_digests(blocks: FileBlocks, header: Header, step: int = STEP) -> dict[str, str]:
    """BLAKE3 of every tensor's bytes, each range hashed on every core.

    The header's tensors (validated) tile the data section exactly, so visiting them by offset
    reads each byte once, in file order.
    """
    start = 8 + header.header_size
    digests: dict[str, str] = {}
    for info in header.tensors:
        hasher = Hasher()
        for block in blocks.blocks(start + info.begin, start + info.end, step):
            hasher.update(block)
        digests[info.name] = hasher.hexdigest()
    return digests


def table_from_blocks(blocks: FileBlocks, name: str, step: int = STEP) -> dict[str, Any]:
    """The JSON-able tensor table of an open safetensors file."""
    header = read_header(blocks, name)
    try:
        digests = tensor_digests(blocks, header, step)
    except FileChangedError as exc:
        raise ComponentError(f"{name}: changed while it was being read ({exc})") from exc
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


def read_table(path: str | os.PathLike[str], name: str | None = None, step: int = STEP) -> dict[str, Any]:
    """The tensor table of a safetensors file; errors name ``name`` (default: the path).

    Shape::

        {"header_size": n, "metadata": {str: str},
         "tensors": {name: {"dtype", "shape", "offsets": [begin, end], "nbytes", "digest"}}}
    """
    label = name if name is not None else os.fspath(path)
    with open_blocks(path, label) as blocks:
        return table_from_blocks(blocks, label, step)


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
