"""Reading a large file at memory speed for hashing, without trusting it to hold still.

Hashing is the hot path of ``commit`` and ``status``. Reading through ``read()`` copies every
byte once more before BLAKE3 sees it, and on a two-core machine that copy costs more than
hashing on every core; so a large file is mapped read-only instead and hashed in place, with
the pages behind the cursor dropped from this process so resident memory stays flat.

A mapped file that another process truncates would kill the reader (SIGBUS) instead of giving
a clear error, so a file is mapped only under a Linux read lease: while it is held, any other
open for writing or truncate waits, and the kernel tells this process, on a real-time signal
that nothing else in the process uses (``F_SETSIG``; not SIGIO, which the host program may get
for reasons of its own). The reader then stops at the next block, gives the lease back (the
writer goes on) and raises :class:`FileChangedError`. Where no lease can be had (someone still
has the file open for writing, another owner, a file system without leases, no free real-time
signal, a thread other than the main one, not Linux), the file is read with ``pread`` into one
reusable buffer, and callers compare the file's size and mtime before and after, as they do for
every file.
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


def _free_signal() -> int | None:
    """A real-time signal that nothing in this process handles, ignores or blocks, or None.

    Free means: Python's table says ``SIG_DFL`` (``None`` there is a handler installed outside
    Python), the kernel agrees that it is neither caught nor ignored (a C library may have set a
    handler since Python started; ``/proc/self/status`` shows it), and the main thread does not
    block it (a blocked signal would never tell us of the break). When none is free, no lease is
    taken and the file is read with ``pread``: falling back to SIGIO would again take any SIGIO
    the host program receives for a lease break (a spurious refusal), while the read route is
    always correct, only slower.
    """
    elsewhere = 0  # bit n-1 set: signal n is caught or ignored by the kernel's account
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith((b"SigCgt:", b"SigIgn:")):
                elsewhere |= int(line.split()[1], 16)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    for signum in range(signal.SIGRTMIN, signal.SIGRTMAX + 1):
        if (
            signal.getsignal(signum) == signal.SIG_DFL
            and not elsewhere >> (signum - 1) & 1
            and signum not in blocked
        ):
            return signum
    return None


class _Lease:
    """A Linux read lease on one file, broken (and noticed) when another process wants to write.

    The kernel reports the break on a real-time signal of this lease's own (see
    :func:`_free_signal`), so no other signal the process receives is mistaken for a break. Only
    a signal whose handler is ``SIG_DFL`` is chosen, so there is no earlier handler to chain; the
    default action of a real-time signal is to end the process, so our handler is installed
    before ``F_SETSIG``/``F_SETLEASE`` and put back only after both are undone.
    """

    _F_SETLEASE = getattr(__import__("fcntl"), "F_SETLEASE", 1024) if sys.platform == "linux" else 0
    _F_SETSIG = getattr(__import__("fcntl"), "F_SETSIG", 10) if sys.platform == "linux" else 0

    def __init__(self) -> None:
        self.broken = False
        self.signum = 0  # the real-time signal watched while the lease is held (0: none)
        self._previous: Any = None
        self._fd = -1

    def take(self, fd: int) -> bool:
        """True when the lease is held (and its signal watched); False to read without mapping."""
        if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
            return False
        import fcntl

        signum = _free_signal()
        if signum is None:
            return False
        try:
            self._previous = signal.signal(signum, self._on_break)
        except (ValueError, OSError):
            return False
        self.signum = signum
        try:
            fcntl.fcntl(fd, self._F_SETSIG, signum)  # before the lease: a break must never be a SIGIO
        except OSError:
            self._restore_handler()
            return False
        try:
            fcntl.fcntl(fd, self._F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # open for writing elsewhere, not ours, or no leases on this file system
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, self._F_SETSIG, 0)
            self._restore_handler()
            return False
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def _on_break(self, signum: int, frame: FrameType | None) -> None:
        self.broken = True

    def check(self, path: str) -> None:
        if self.broken:
            self.give_back()
            raise FileChangedError(f"{path}: another process opened it for writing while it was being read")

    def give_back(self) -> None:
        """Release the lease and reset ``F_SETSIG`` first (no signal can follow), then restore the handler."""
        if self._fd < 0:
            return
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(self._fd, self._F_SETLEASE, fcntl.F_UNLCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._fd, self._F_SETSIG, 0)
        self._fd = -1
        self._restore_handler()

    def _restore_handler(self) -> None:
        """Put the signal's earlier handler back; a break still pending is dropped, not fatal."""
        if not self.signum:
            return
        if self._previous == signal.SIG_DFL:
            signal.signal(self.signum, signal.SIG_IGN)  # discards a pending one (default: terminate)
        signal.signal(self.signum, self._previous)
        self.signum = 0


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
