"""BLAKE3 digests of bytes, files and canonical JSON.

Files are hashed in large blocks so BLAKE3 can use every core; the digest never depends on the
block size or thread count, only on the bytes.
"""

from __future__ import annotations

import re
from typing import Any, BinaryIO

import blake3

from tether.ids.canonical import canonical_bytes

DIGEST_HEX_LEN = 64
BLOCK_SIZE = 8 * 1024 * 1024
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def is_digest(text: str) -> bool:
    """True when ``text`` is a full lowercase hex BLAKE3 digest."""
    return bool(_DIGEST_RE.match(text))


class Hasher:
    """Incremental BLAKE3; multi-threaded on large updates unless ``threads`` says otherwise
    (callers that already keep every core busy pass 1: splitting each update again only waits)."""

    def __init__(self, threads: int | None = None) -> None:
        self._hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if threads is None else threads)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """Digest of in-memory bytes."""
    return blake3.blake3(data).hexdigest()


def digest_json(value: Any) -> str:
    """Digest of the canonical JSON form of ``value``."""
    return digest_bytes(canonical_bytes(value))


def digest_stream(stream: BinaryIO, block_size: int = BLOCK_SIZE) -> tuple[str, int]:
    """Digest and length of a stream, read block by block (never whole).

    One buffer is reused (``readinto``): allocating a fresh block per read costs more than
    hashing it, since every new allocation first-touches fresh memory.
    """
    hasher = Hasher()
    size = 0
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while True:
            block = stream.read(block_size)
            if not block:
                break
            hasher.update(block)
            size += len(block)
        return hasher.hexdigest(), size
    view = memoryview(bytearray(block_size))
    while True:
        count = readinto(view)
        if not count:
            break
        hasher.update(view[:count])
        size += count
    return hasher.hexdigest(), size
