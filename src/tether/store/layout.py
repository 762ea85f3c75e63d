"""How a large file is stored as parts: recipes, safetensors splitting, FastCDC chunks, XOR deltas.

A *recipe* names a file by its whole-file BLAKE3 digest and lists, in file order, the parts that
reassemble it. A safetensors file's parts are its header and then each tensor's bytes, so a
fine-tune that changed a tenth of the tensors stores about a tenth of the bytes and a re-save
in another tensor order stores only a new header. Other large files are cut by content-defined
chunking (FastCDC), so an insertion moves only the chunks around it. A changed tensor may be
stored as ``zstd(tensor XOR base)`` where ``base`` is a *fully stored* tensor of the same name,
shape and dtype in the parent version: never a chain of deltas, and every part is checked
against its own digest when the file is reassembled.

This module knows formats only; :mod:`tether.store.local` decides where bytes live.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tether.store.safetensors_header import HeaderError, TensorInfo, check_length, parse_header

RECIPE_FORMAT = "tether.recipe/1"
#: XOR against the base, bytes grouped by significance within each block, then zstd
DELTA_CODEC = "xor+shuffle+zstd"

#: files smaller than this are stored whole (one object): splitting them saves nothing
SPLIT_THRESHOLD = 2 * 1024 * 1024
#: FastCDC sizes for large non-safetensors files
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024
#: tensors smaller than this are never delta-encoded (the delta's own overhead would dominate)
DELTA_MIN_BYTES = 64 * 1024
#: a delta is kept only when it is at most this fraction of the tensor's size
DELTA_MAX_RATIO = 0.8
#: zstd level for deltas: XORed weights compress as well at 1 as at 3 (measured), and faster
DELTA_LEVEL = 1


class LayoutError(ValueError):
    """A file claims to be safetensors but its header cannot be trusted (truncated, lying...)."""


@dataclass(frozen=True)
class TensorLayout:
    """A safetensors file cut into its header (bytes ``[0, header_end)``) and tensors, in file order."""

    header_end: int
    tensors: tuple[TensorInfo, ...]  # offsets from the start of the file


def parse_safetensors_header(prefix: bytes, raw_header: bytes | None, file_size: int) -> int | TensorLayout:
    """Validate a safetensors header without trusting any length it claims.

    Called twice: first with the 8-byte ``prefix`` alone (``raw_header`` None), which returns the
    header length after checking it is sane and fits in the file, so the caller reads exactly
    that many bytes; then with the header, which returns the layout. The checks are the strict
    ones of :mod:`tether.store.safetensors_header` (the ``model`` kind uses the same); anything
    odd raises :class:`LayoutError`, and the caller then falls back to chunked storage.
    """
    try:
        header_size = check_length(prefix, file_size)
        if raw_header is None:
            return header_size
        header = parse_header(raw_header, header_size, file_size)
    except HeaderError as exc:
        raise LayoutError(str(exc)) from None
    return TensorLayout(header.data_start, tuple(info.in_file(header.data_start) for info in header.tensors))


# ---- recipes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One part of a recipe: ``size`` bytes hashing to ``digest``.

    A plain part is the object ``digest``. A delta part is rebuilt as
    ``unshuffle(zstd_decompress(object delta), shuffle) XOR object base``, where ``base`` is
    always a whole object and ``shuffle`` the element size whose bytes were grouped.
    """

    digest: str
    size: int
    tensor: str | None = None
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    base: str | None = None
    delta: str | None = None
    shuffle: int = 1

    @property
    def is_delta(self) -> bool:
        return self.delta is not None

    def objects(self) -> list[str]:
        """The stored objects this part needs."""
        return [self.base, self.delta] if self.is_delta else [self.digest]  # type: ignore[list-item]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"digest": self.digest, "size": self.size}
        if self.tensor is not None:
            data["tensor"] = {"name": self.tensor, "dtype": self.dtype, "shape": list(self.shape or ())}
        if self.is_delta:
            data["delta"] = {"base": self.base, "object": self.delta, "codec": DELTA_CODEC, "shuffle": self.shuffle}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        tensor = data.get("tensor") or {}
        delta = data.get("delta") or {}
        if delta and delta.get("codec") != DELTA_CODEC:
            raise ValueError(f"unknown delta codec {delta.get('codec')!r}")
        shuffle = int(delta.get("shuffle", 1)) if delta else 1
        if shuffle not in (1, 2, 4, 8):
            raise ValueError(f"unknown delta shuffle {shuffle!r}")
        return cls(
            digest=str(data["digest"]),
            size=int(data["size"]),
            tensor=tensor.get("name"),
            dtype=tensor.get("dtype"),
            shape=tuple(tensor["shape"]) if "shape" in tensor else None,
            base=delta.get("base"),
            delta=delta.get("object"),
            shuffle=shuffle,
        )


@dataclass(frozen=True)
class Recipe:
    """A file stored as parts; ``digest`` and ``size`` are the whole file's."""

    digest: str
    size: int
    layout: str  # "safetensors" or "chunks"
    parts: tuple[Part, ...] = field(default_factory=tuple)

    def objects(self) -> list[str]:
        """Every stored object the file needs, each once, in first-use order."""
        seen: dict[str, None] = {}
        for part in self.parts:
            for digest in part.objects():
                seen.setdefault(digest, None)
        return list(seen)

    def to_bytes(self) -> bytes:
        body = {
            "format": RECIPE_FORMAT,
            "digest": self.digest,
            "size": self.size,
            "layout": self.layout,
            "parts": [part.to_json() for part in self.parts],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, expected_digest: str) -> Recipe:
        """Parse a stored recipe; ``ValueError`` when it is not one, or not the expected file's."""
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("format") != RECIPE_FORMAT:
            raise ValueError("not a tether recipe")
        if body.get("digest") != expected_digest:
            raise ValueError(f"recipe is for {body.get('digest')!r}, not {expected_digest}")
        parts = tuple(Part.from_json(item) for item in body["parts"])
        if sum(part.size for part in parts) != int(body["size"]):
            raise ValueError("recipe parts do not add up to the file size")
        return cls(str(body["digest"]), int(body["size"]), str(body["layout"]), parts)

    def tensor_parts(self) -> dict[str, Part]:
        """Tensor name -> part (for choosing delta bases in the next version)."""
        return {part.tensor: part for part in self.parts if part.tensor is not None}


# ---- content-defined chunking -----------------------------------------------------------------


def cdc_cuts(buffer: memoryview, final: bool) -> Iterator[tuple[int, int]]:
    """(offset, length) of the FastCDC chunks in ``buffer``.

    Unless ``final``, the last chunk is withheld: the buffer may have ended before its true cut
    point, so the caller carries its bytes over to the next buffer. Cut points depend only on
    the bytes from a chunk's start, so streaming gives exactly the chunks of the whole file.
    """
    from fastcdc import fastcdc

    pending: tuple[int, int] | None = None
    for chunk in fastcdc(buffer, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX):
        if pending is not None:
            yield pending
        pending = (int(chunk.offset), int(chunk.length))
    if pending is not None and final:
        yield pending


# ---- XOR deltas ------------------------------------------------------------------------------------


def xor_into(out: memoryview, a: memoryview, b: memoryview) -> None:
    """``out[:] = a XOR b`` for equal-length buffers, at memory speed."""
    import numpy as np

    n = len(a)
    words = n // 8
    if words:
        np.bitwise_xor(
            np.frombuffer(a, dtype=np.uint64, count=words),
            np.frombuffer(b, dtype=np.uint64, count=words),
            out=np.frombuffer(out, dtype=np.uint64, count=words),
        )
    tail = words * 8
    if tail < n:
        np.bitwise_xor(
            np.frombuffer(a[tail:], dtype=np.uint8),
            np.frombuffer(b[tail:], dtype=np.uint8),
            out=np.frombuffer(out[tail:], dtype=np.uint8),
        )


#: bytes per element of the safetensors dtypes whose bytes are worth grouping by significance
_ELEMENT_BYTES = {"F16": 2, "BF16": 2, "I16": 2, "U16": 2, "F32": 4, "I32": 4, "U32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8}


def element_size(dtype: str, nbytes: int) -> int:
    """The byte-shuffle stride for a tensor (1 = none): its element size when it divides the size."""
    size = _ELEMENT_BYTES.get(dtype, 1)
    return size if nbytes % size == 0 else 1


def shuffle_bytes(out: memoryview, data: memoryview, stride: int) -> None:
    """Group byte ``i`` of every ``stride``-byte element together: ``b0 b0 ... b1 b1 ...``.

    Two-byte elements (F16, BF16: most weights) are split with 16-bit arithmetic, others plane
    by plane; both run at memory speed, unlike a byte-wise transpose (several times slower).
    """
    import numpy as np

    planes = np.frombuffer(out, dtype=np.uint8).reshape(stride, -1)
    if stride == 2:
        words = np.frombuffer(data, dtype="<u2")  # byte 0 is the low byte, whatever the machine
        np.bitwise_and(words, 0xFF, out=planes[0], casting="unsafe")
        np.right_shift(words, 8, out=planes[1], casting="unsafe")
        return
    source = np.frombuffer(data, dtype=np.uint8)
    for index in range(stride):
        planes[index] = source[index::stride]


def unshuffle_bytes(out: memoryview, data: memoryview, stride: int) -> None:
    """The inverse of :func:`shuffle_bytes`."""
    import numpy as np

    planes = np.frombuffer(data, dtype=np.uint8).reshape(stride, -1)
    if stride == 2:
        words = np.frombuffer(out, dtype="<u2")
        np.left_shift(planes[1], 8, out=words, dtype="<u2")
        np.bitwise_or(words, planes[0], out=words)
        return
    target = np.frombuffer(out, dtype=np.uint8)
    for index in range(stride):
        target[index::stride] = planes[index]
