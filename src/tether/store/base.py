"""The object store interface every backend implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from tether.errors import TetherError


class StoreError(TetherError):
    """Base class for object store failures (a :class:`~tether.TetherError`, exit 2)."""


class ObjectMissingError(StoreError):
    """An object a version needs is not in the store."""

    exit_code = 1


class ObjectCorruptError(StoreError):
    """An object's bytes no longer hash to its name."""

    exit_code = 1


@dataclass(frozen=True)
class StoreHint:
    """What the caller already knows about a file it stores, so the store can do less work.

    ``previous`` is the digest of the same file in the parent version: a store that keeps
    tensors may encode a changed tensor as a delta against the parent's. ``tensors`` is the
    safetensors table the caller's snapshot read from the same unchanged file that
    produced ``expected_digest`` (name -> ``{"dtype", "shape", "offsets", "digest"}``): with it a store
    need not re-read tensors it already holds, and must check every byte it does read against
    it. ``label`` names the file in warnings and errors (a project-relative path).
    ``related`` are the digests of the parent version's other files of the same component:
    tensors that moved between files (a re-shard, a renamed checkpoint) are looked up there by
    name when ``previous`` has none, so a tensor the parent stored as a delta is reused, not
    stored whole again.
    """

    previous: str | None = None
    tensors: Mapping[str, Mapping[str, Any]] | None = None
    label: str | None = None
    related: tuple[str, ...] = ()


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
    def put_file(
        self, path: str | os.PathLike[str], expected_digest: str | None = None, hint: StoreHint | None = None
    ) -> tuple[str, int]:
        """Stream a file into the store; return (digest, size) of the whole file.

        When ``expected_digest`` is given and the object already exists, the file is not read
        again. When the bytes read differ from ``expected_digest``, or the file's size or mtime
        moves while it is read (it changed while it was being committed), :class:`StoreError` is
        raised and no object is recorded under the file's digest (parts of it already written
        are unreferenced, and ``gc`` removes them). ``hint`` may let the store skip work or
        store less; the result never depends on it.
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

    def stored_size(self, digest: str) -> int:
        """Bytes the entry itself occupies (for a file stored in parts, its recipe alone)."""
        return self.size(digest)

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

    def check(self, digest: str) -> str | None:
        """Like :meth:`verify`, but says what is wrong: None when the object verifies, else one
        phrase (``content does not hash to its name``; for a file stored in parts, which part is
        missing or corrupt)."""
        return None if self.verify(digest) else "content does not hash to its name"

    def parts(self, digest: str) -> list[str]:
        """The objects a stored file is assembled from (empty for an object stored whole).

        ``gc`` keeps these as long as the file is kept; ``fsck`` verifies them one by one.
        """
        return []

    @abstractmethod
    def materialize(self, digest: str, dest: str | os.PathLike[str], link: bool = False, *, staged: bool = False) -> None:
        """Write an object to ``dest`` atomically (temporary file and rename), verifying its digest.

        Raises :class:`ObjectCorruptError` and leaves ``dest`` untouched when the bytes are wrong.
        With ``link`` the caller asks for a read-only file: the store may hard-link its own
        object (never modify it!) instead of copying; otherwise ``dest`` is a writable copy.
        With ``staged`` the caller passes its own staging file (see
        :func:`tether.store.atomic.staging_path`), which must not exist (:class:`FileExistsError`
        otherwise): the store writes it directly, with no temporary file of its own, and removes it
        when the bytes are wrong; the caller renames it into place.
        """

    @abstractmethod
    def clean_temporary(self, older_than_seconds: float) -> int:
        """Remove temporary files left by killed writers; return how many."""

    @abstractmethod
    def mark_pruned(self, version_id: str, record: dict[str, Any]) -> None:
        """Record durably that ``gc --unreachable`` removes the files of ``version_id`` (its
        metadata stays), before any of its objects go: fsck and checkout then name the version as
        pruned instead of reporting missing objects, even after a gc killed half-way."""

    @abstractmethod
    def pruned(self) -> dict[str, dict[str, Any]]:
        """Version ID -> the record :meth:`mark_pruned` wrote, for every pruned version."""

    def describe(self) -> str:
        """A human-readable location, for messages."""
        return type(self).__name__
