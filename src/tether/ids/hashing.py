"""BLAKE3 digests of bytes and canonical JSON (files: :mod:`tether.ids.fileview`).

Files are hashed in large blocks so BLAKE3 can use every core; the digest never depends on the
block size or thread count, only on the bytes.
"""

from __future__ import annotations

import re
from typing import Any

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
