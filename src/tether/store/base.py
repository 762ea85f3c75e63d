"""The object store interface every backend implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO


class StoreError(Exception):
    """Base class for object store failures."""


class ObjectMissingError(StoreError):
    """An object a version needs is not in the store."""


class ObjectCorruptError(StoreError):
    """An object's bytes no longer hash to its name."""


class ObjectStore(ABC):
    """Immutable, content-addressed blobs named by BLAKE3 hex digests.

    Writes are atomic (temporary file, flush, fsync, rename), so a reader never sees a partial
    object and a killed writer leaves only temporary files that :meth:`clean_temporary` removes.
    """

    @abstractmethod
    def has(self, digest: str) -> bool:
        """True when the object is present (without verifying its bytes)."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest. Storing an existing object is a no-op."""

    @abstractmethod
    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> tuple[str, int]:
        """Stream a file into the store; return (digest, size).

        When ``expected_digest`` is given and the object already exists, the file is not read
        again. When the bytes read differ from ``expected_digest`` (the file changed while it was
        being committed), nothing is stored and :class:`StoreError` is raised.
        """

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """Open an object for streaming reads. Raises :class:`ObjectMissingError`."""

    def get_bytes(self, digest: str) -> bytes:
        """Read a (small) object whole."""
        with self.open(digest) as handle:
            return handle.read()

    @abstractmethod
    def size(self, digest: str) -> int:
        """Size of an object in bytes."""

    @abstractmethod
    def age_seconds(self, digest: str) -> float:
        """Seconds since the object was written (gc grace period)."""

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove an object (gc only). Removing a missing object is a no-op."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every stored object's digest, in no particular order."""

    @abstractmethod
    def verify(self, digest: str) -> bool:
        """Re-hash an object; False when its bytes no longer match its name."""

    @abstractmethod
    def materialize(self, digest: str, dest: str | os.PathLike[str]) -> None:
        """Write an object to ``dest`` atomically (temporary file and rename), verifying its digest.

        Raises :class:`ObjectCorruptError` and leaves ``dest`` untouched when the bytes are wrong.
        """

    @abstractmethod
    def clean_temporary(self, older_than_seconds: float) -> int:
        """Remove temporary files left by killed writers; return how many."""

    def describe(self) -> str:
        """A human-readable location, for messages."""
        return type(self).__name__
