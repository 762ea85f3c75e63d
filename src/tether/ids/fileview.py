"""Reading a large file at memory speed for hashing, without trusting it to hold still.

Hashing is the hot path of ``commit`` and ``status``. Reading through ``read()`` copies every
byte once more before BLAKE3 sees it, and on a two-core machine that copy costs more than
hashing on every core; so a large file is mapped read-only instead and hashed in place, with
the pages behind the cursor dropped from this process so resident memory stays flat.

A mapped file that another process truncates would kill the reader (SIGBUS) instead of giving
a clear error, so a file is mapped only under a Linux read lease: while it is held, any other
open for writing or truncate waits, and the kernel tells this process (SIGIO). The reader then
stops at the next block, gives the lease back (the writer goes on) and raises
:class:`FileChangedError`. Where no lease can be had (someone still has the file open for
writing, another owner, a file system without leases, a thread other than the main one, not
Linux), the file is read with ``pread`` into one reusable buffer, and callers compare the
file's size and mtime before and after, as they do for every file.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from tether.ids.hashing import Hasher

#: below this size a file is read, not mapped: mapping and leasing cost more than the copy
MAP_MIN_BYTES = 4 * 1024 * 1024
#: bytes handed to the hasher at a time (and dropped from the mapping after)
STEP = 32 * 1024 * 1024


class FileChangedError(OSError):
    """Another process opened the file for writing, or it ended early, while it was read."""


class FileBlocks:
    """Random-access, block-wise reading of one open file (see :func:`open_blocks`).

    A yielded block is valid only until the next one is requested.
    """

    def __init__(self, fd: int, path: str, size: int):
        self.fd = fd
        self.path = path
        self.size = size

    @property
    def mapped(self) -> bool:
        return False

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset`` (a short read is a :class:`FileChangedError`)."""
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise FileChangedError(f"{self.path}: ended early while it was being read")
        return data

    def blocks(self, start: int = 0, end: int | None = None, step: int = STEP) -> Iterator[memoryview]:
        """The bytes ``[start, end)`` in order, at most ``step`` at a time."""
        stop = self.size if end is None else end
        buffer = memoryview(bytearray(min(step, max(stop - start, 1))))
        position = start
        while position < stop:
            want = buffer[: min(step, stop - position)]
            got = os.preadv(self.fd, [want], position)
            if got <= 0:
                raise FileChangedError(f"{self.path}: ended early while it was being read")
            yield want[:got]
            position += got

    def digest(self) -> str:
        """BLAKE3 of the whole file, on every core."""
        hasher = Hasher()
        for block in self.blocks():
            hasher.update(block)
        return hasher.hexdigest()


class _MappedBlocks(FileBlocks):
    """A file mapped read-only under a read lease (see the module docstring)."""

    def __init__(self, fd: int, path: str, size: int, lease: _Lease):
        super().__init__(fd, path, size)
        self._lease = lease
        self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        self._view = memoryview(self._map)

    @property
    def mapped(self) -> bool:
        return True

    def read_at(self, offset: int, length: int) -> bytes:
        self._lease.check(self.path)
        if offset + length > self.size:
            raise FileChangedError(f"{self.path}: ended early while it was being read")
        return bytes(self._view[offset : offset + length])

    def blocks(self, start: int = 0, end: int | None = None, step: int = STEP) -> Iterator[memoryview]:
        stop = self.size if end is None else end
        if stop > self.size:
            raise FileChangedError(f"{self.path}: ended early while it was being read")
        position = start
        while position < stop:
            self._lease.check(self.path)
            upto = min(stop, position + step)
            with self._view[position:upto] as block:
                yield block
            self._drop(position, upto)
            position = upto
        self._lease.check(self.path)

    def _drop(self, start: int, end: int) -> None:
        """Unmap hashed pages from this process (the page cache keeps them for everyone)."""
        first = start - start % mmap.PAGESIZE
        with contextlib.suppress(OSError, ValueError):
            self._map.madvise(mmap.MADV_DONTNEED, first, end - first)

    def close(self) -> None:
        self._view.release()
        with contextlib.suppress(BufferError):
            self._map.close()


class _Lease:
    """A Linux read lease on one file, broken (and noticed) when another process wants to write."""

    _F_SETLEASE = getattr(__import__("fcntl"), "F_SETLEASE", 1024) if sys.platform == "linux" else 0

    def __init__(self) -> None:
        self.broken = False
        self._previous: Any = None
        self._fd = -1

    def take(self, fd: int) -> bool:
        """True when the lease is held (and SIGIO watched); False to read without mapping."""
        if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
            return False
        import fcntl

        if signal.getsignal(signal.SIGIO) is None:  # a handler installed outside Python: leave it be
            return False
        try:
            self._previous = signal.signal(signal.SIGIO, self._on_break)
        except (ValueError, OSError):
            return False
        try:
            fcntl.fcntl(fd, self._F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # open for writing elsewhere, not ours, or no leases on this file system
            signal.signal(signal.SIGIO, self._previous)
            return False
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def _on_break(self, signum: int, frame: FrameType | None) -> None:
        self.broken = True
        if callable(self._previous):
            self._previous(signum, frame)

    def check(self, path: str) -> None:
        if self.broken:
            self.give_back()
            raise FileChangedError(f"{path}: another process opened it for writing while it was being read")

    def give_back(self) -> None:
        """Release the lease first (no SIGIO can follow), then restore the old handler."""
        if self._fd < 0:
            return
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(self._fd, self._F_SETLEASE, fcntl.F_UNLCK)
        self._fd = -1
        signal.signal(signal.SIGIO, self._previous)


@contextlib.contextmanager
def open_blocks(path: str | os.PathLike[str], label: str | None = None) -> Iterator[FileBlocks]:
    """Open ``path`` for block-wise reading: mapped under a lease when large and allowed, else read.

    ``label`` names the file in errors (default: the path).
    """
    name = label if label is not None else os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    blocks: FileBlocks | None = None
    lease = _Lease()
    try:
        size = os.fstat(fd).st_size
        if size >= max(MAP_MIN_BYTES, 1) and lease.take(fd):
            size = os.fstat(fd).st_size  # under the lease the size can no longer move
        if lease.held and size > 0:
            try:
                blocks = _MappedBlocks(fd, name, size, lease)
            except (OSError, ValueError):  # a file system that cannot map files: read it instead
                lease.give_back()
        if blocks is None:
            blocks = FileBlocks(fd, name, size)
        yield blocks
    finally:
        if isinstance(blocks, _MappedBlocks):
            blocks.close()
        lease.give_back()
        os.close(fd)


def digest_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Digest and size of a file, through the fastest safe route (never read whole)."""
    with open_blocks(Path(path)) as blocks:
        return blocks.digest(), blocks.size
