"""The embedded object store: one read-only file per object in a local folder.

Layout: ``root/ab/cdef...`` (the first two hex characters of the digest name a fan-out folder so
no folder grows to millions of entries) and ``root/tmp/`` for writes in progress. Every write
goes to a temporary file on the same filesystem and is renamed into place, so a reader never
sees a partial object and a killed writer leaves only files under ``tmp/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from tether.ids import Hasher, digest_bytes, is_digest
from tether.ids.hashing import BLOCK_SIZE
from tether.store.atomic import fsync_dir
from tether.store.base import ObjectCorruptError, ObjectMissingError, ObjectStore, StoreError

OBJECT_MODE = 0o444
TMP_DIR = "tmp"
_MIN_BUFFER = 64 * 1024


class _Source(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Sink(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def _buffer_for(size_hint: int) -> bytearray:
    """A read buffer of at most one block: small files do not pay for an 8 MiB allocation."""
    return bytearray(min(BLOCK_SIZE, max(size_hint + 1, _MIN_BUFFER)))


def _pump(source: _Source, sink: _Sink | None, buffer: bytearray) -> tuple[str, int]:
    """Read ``source`` block by block, hash it and (optionally) write it to ``sink``.

    One pass over the bytes: what is written is exactly what was hashed.
    """
    hasher = Hasher()
    view = memoryview(buffer)
    size = 0
    while True:
        count = source.readinto(view)
        if not count:
            break
        chunk = view[:count]
        hasher.update(chunk)
        if sink is not None:
            sink.write(chunk)
        size += count
    return hasher.hexdigest(), size


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class LocalObjectStore(ObjectStore):
    """Content-addressed objects in a local folder (the default store)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / TMP_DIR

    # -- naming ------------------------------------------------------------------------------

    def _path(self, digest: str) -> Path:
        """The object's path; rejects anything but a full digest so no name escapes the root."""
        if not isinstance(digest, str) or not is_digest(digest):
            raise StoreError(f"invalid object digest {digest!r} (expected 64 lowercase hex characters)")
        return self.root / digest[:2] / digest[2:]

    def _new_temporary(self) -> tuple[int, str]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix="obj-", suffix=".tmp", dir=self._tmp)

    def _touch(self, target: Path) -> None:
        """Refresh an existing object's age so a concurrent gc's grace period covers the new user."""
        # In a store shared between users utime may be refused: the age is then only a hint.
        with contextlib.suppress(OSError):
            os.utime(target)

    def _install(self, tmp_name: str, handle: BinaryIO, digest: str) -> bool:
        """Move a fully written temporary file into place; False when the object already existed.

        The temporary file is fsynced only when it is actually kept, so re-storing existing
        content costs no disk flush.
        """
        target = self._path(digest)
        if target.is_file():
            handle.close()
            _unlink_quietly(tmp_name)
            self._touch(target)
            return False
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.chmod(tmp_name, OBJECT_MODE)
        folder = target.parent
        created = not folder.is_dir()
        if created:
            folder.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, target)
        fsync_dir(folder)
        if created:
            fsync_dir(self.root)
        return True

    # -- writes ------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        target = self._path(digest)
        if target.is_file():
            self._touch(target)
            return digest
        fd, tmp_name = self._new_temporary()
        handle = os.fdopen(fd, "wb")
        try:
            handle.write(data)
            self._install(tmp_name, handle, digest)
        except BaseException:
            handle.close()
            _unlink_quietly(tmp_name)
            raise
        return digest

    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> tuple[str, int]:
        if expected_digest is not None:
            target = self._path(expected_digest)
            try:
                stored_size = target.stat().st_size
            except FileNotFoundError:
                pass
            else:
                self._touch(target)
                return expected_digest, stored_size
        with open(path, "rb") as source:
            fd, tmp_name = self._new_temporary()
            handle = os.fdopen(fd, "wb")
            try:
                digest, size = _pump(source, handle, _buffer_for(os.fstat(source.fileno()).st_size))
                if expected_digest is not None and digest != expected_digest:
                    raise StoreError(
                        f"{os.fspath(path)} changed while it was being stored "
                        f"(expected {expected_digest}, read {digest}): nothing was stored"
                    )
                self._install(tmp_name, handle, digest)
            except BaseException:
                handle.close()
                _unlink_quietly(tmp_name)
                raise
        return digest, size

    # -- reads -------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        return self._open_raw(digest)

    def _open_raw(self, digest: str) -> io.BufferedReader:
        try:
            return open(self._path(digest), "rb")
        except FileNotFoundError:
            raise ObjectMissingError(f"object {digest} is missing from {self.root}") from None

    def _stat(self, digest: str) -> os.stat_result:
        try:
            return self._path(digest).stat()
        except FileNotFoundError:
            raise ObjectMissingError(f"object {digest} is missing from {self.root}") from None

    def size(self, digest: str) -> int:
        return self._stat(digest).st_size

    def age_seconds(self, digest: str) -> float:
        return max(0.0, time.time() - self._stat(digest).st_mtime)

    def iter_digests(self) -> Iterator[str]:
        try:
            folders = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for folder in folders:
            prefix = folder.name
            if len(prefix) != 2 or not folder.is_dir(follow_symlinks=False):
                continue
            with os.scandir(folder.path) as entries:
                for entry in entries:
                    digest = prefix + entry.name
                    if is_digest(digest) and entry.is_file(follow_symlinks=False):
                        yield digest

    def verify(self, digest: str) -> bool:
        with self._open_raw(digest) as source:
            actual, _ = _pump(source, None, _buffer_for(os.fstat(source.fileno()).st_size))
        return actual == digest

    def materialize(self, digest: str, dest: str | os.PathLike[str]) -> None:
        """Copy the object to ``dest`` in one hashing pass; ``dest`` changes only if the bytes verify.

        The copy is a plain read/hash/write loop rather than ``copy_file_range`` because the
        bytes must pass through the hasher anyway; reflink cloning is a later optimization.
        """
        target = Path(dest)
        with self._open_raw(digest) as source:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_name = str(target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp")
            # 0o666 filtered by the umask: a checked-out file gets the user's usual permissions.
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as handle:
                    actual, _ = _pump(source, handle, _buffer_for(os.fstat(source.fileno()).st_size))
                    if actual != digest:
                        raise ObjectCorruptError(
                            f"object {digest} is corrupt: its bytes hash to {actual}; {target} was not written"
                        )
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, target)
            except BaseException:
                _unlink_quietly(tmp_name)
                raise
        fsync_dir(target.parent)

    # -- maintenance -------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        target = self._path(digest)
        _unlink_quietly(target)

    def clean_temporary(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another cleaner or the writer itself got there first
        return removed

    def describe(self) -> str:
        return str(self.root)
