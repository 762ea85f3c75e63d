"""The embedded object store: content-addressed files in a local folder, large files in parts.

Layout: ``root/ab/cdef...`` holds whole objects (the first two hex characters of the digest
name a fan-out folder so no folder grows to millions of entries); ``root/recipes/ab/cdef...``
holds *recipes*: a large file, named by its whole-file digest, stored as an ordered list of
parts that are themselves objects (see :mod:`tether.store.layout`); ``root/tmp/`` holds writes
in progress. Every write goes to a temporary file on the same filesystem, is fsynced and
renamed into place, so a reader never sees a partial object and a killed writer leaves only
files under ``tmp/``. A recipe is written only after every part it names is durable.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tether.ids import Hasher, digest_bytes, is_digest
from tether.ids.hashing import BLOCK_SIZE
from tether.store.atomic import TEMPORARY_SUFFIX, atomic_write_bytes, fsync_dir
from tether.store.base import ObjectCorruptError, ObjectMissingError, ObjectStore, StoreError, StoreHint
from tether.store.layout import (
    DELTA_LEVEL,
    DELTA_MAX_RATIO,
    DELTA_MIN_BYTES,
    SPLIT_THRESHOLD,
    LayoutError,
    Part,
    Recipe,
    TensorLayout,
    cdc_cuts,
    element_size,
    parse_safetensors_header,
    shuffle_bytes,
    unshuffle_bytes,
    xor_into,
)
from tether.store.safetensors_header import TensorInfo

OBJECT_MODE = 0o444
TMP_DIR = "tmp"
RECIPES_DIR = "recipes"
#: one small JSON file per version whose files ``gc --unreachable`` removed
PRUNED_DIR = "pruned"
_MIN_BUFFER = 64 * 1024
_FICLONE = 0x40049409  # linux/fs.h: clone a whole file (reflink) on btrfs, XFS, bcachefs...
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}

log = logging.getLogger("tether.store")


class _StderrWarnings(logging.Handler):
    """Store warnings (a file stored another way than its name suggests) go to the current
    ``sys.stderr`` as one line each, like every other warning the command line prints; they
    still propagate to any logging the application configured."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(record.getMessage() + "\n")


if not any(isinstance(handler, _StderrWarnings) for handler in log.handlers):
    log.addHandler(_StderrWarnings())


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


def _read_exactly(source: BinaryIO, view: memoryview, label: str) -> None:
    """Fill ``view`` from ``source``; a short read means the file shrank under us."""
    filled = 0
    while filled < len(view):
        got = source.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            raise StoreError(f"{label} changed while it was being stored (it ended early): nothing was stored")
        filled += got


def _blocks(source: BinaryIO, length: int, buffer: bytearray | memoryview, label: str) -> Iterator[memoryview]:
    """Exactly ``length`` bytes of ``source``, one reused buffer at a time."""
    view = memoryview(buffer)
    remaining = length
    while remaining:
        block = view[: min(remaining, len(view))]
        _read_exactly(source, block, label)
        remaining -= len(block)
        yield block


class _PositionalReader:
    """A private read position on a shared descriptor (``pread``): threads read one file at once."""

    def __init__(self, fd: int, position: int = 0):
        self._fd = fd
        self._position = position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise ValueError("only absolute seeks")
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: memoryview | bytearray) -> int:
        got = os.preadv(self._fd, [buffer], self._position)
        self._position += got
        return got

    def read(self, size: int) -> bytes:
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        return data


#: threads that store the tensors of one file side by side
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _signature(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


class _HashingSink:
    """Counts and hashes what passes to a file (the compressed delta names itself)."""

    def __init__(self, handle: BinaryIO, hasher: Hasher):
        self.handle = handle
        self.hasher = hasher
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hasher.update(data)
        self.written += len(data)
        self.handle.write(data)
        return len(data)

    def flush(self) -> None:
        self.handle.flush()


class _DirectWriter:
    """Large sequential writes that bypass the page cache (``O_DIRECT``) where the filesystem
    allows: a fresh gigabyte then costs one pass to disk instead of first filling (and
    flushing) page cache. Data goes through one aligned staging buffer; the unaligned tail is
    written normally after ``O_DIRECT`` is switched off. Falls back to plain writes when the
    filesystem refuses ``O_DIRECT`` (tmpfs, some network filesystems)."""

    _ALIGN = 4096

    def __init__(self, fd: int, staging: memoryview):
        self._fd = fd
        self._direct = _enable_direct(fd)
        self._view = staging  # page-aligned (an anonymous mmap), reused across objects
        self._used = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview, aligned: bool = False) -> int:
        """Stage ``data``; ``aligned`` promises it starts on a page boundary (it is then written
        straight from the caller's buffer when nothing is staged and its length allows)."""
        view = memoryview(data).cast("B")
        if aligned and self._direct and not self._used and len(view) % self._ALIGN == 0:
            _write_all(self._fd, view)
            return len(view)
        taken = 0
        while taken < len(view):
            room = len(self._view) - self._used
            step = min(room, len(view) - taken)
            self._view[self._used : self._used + step] = view[taken : taken + step]
            self._used += step
            taken += step
            if self._used == len(self._view):
                _write_all(self._fd, self._view[: self._used])
                self._used = 0
        return taken

    def flush(self) -> None:
        """Write what is staged (aligned part directly, the tail through the page cache)."""
        if not self._used:
            return
        aligned = self._used - self._used % self._ALIGN if self._direct else 0
        if aligned:
            _write_all(self._fd, self._view[:aligned])
        if aligned < self._used:
            if self._direct:
                _disable_direct(self._fd)
                self._direct = False
            _write_all(self._fd, self._view[aligned : self._used])
        self._used = 0

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        os.close(self._fd)


def _enable_direct(fd: int) -> bool:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | flag)
    except OSError:
        return False
    return True


def _disable_direct(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~getattr(os, "O_DIRECT", 0))


def _write_all(fd: int, view: memoryview) -> None:
    written = 0
    while written < len(view):
        try:
            written += os.write(fd, view[written:])
        except OSError as exc:
            if exc.errno != errno.EINVAL or not fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
                raise
            _disable_direct(fd)  # the filesystem accepted the flag but not the write


class _Cancelled(Exception):
    """The writing side of an assembly failed: its reader stops quietly."""


#: blocks in flight between the reader and the writer of an assembly
_RING_SLOTS = 3

#: objects at least this large are written with :class:`_DirectWriter`
DIRECT_MIN = 4 * 1024 * 1024


class LocalObjectStore(ObjectStore):
    """Content-addressed objects in a local folder (the default store).

    ``deltas`` turns XOR+zstd tensor deltas on (the default) or off (plain tensor dedup only).
    """

    def __init__(self, root: Path, deltas: bool = True) -> None:
        self.root = Path(root)
        self.deltas = deltas
        self._tmp = self.root / TMP_DIR
        self._recipes = self.root / RECIPES_DIR
        self._reflink = True  # until the filesystem says otherwise
        self._pending_dirs: set[Path] | None = None  # folders to fsync once, at the end of a put_file
        self._local = threading.local()  # work buffers: one set per thread storing tensors
        self._tensor_cache: dict[str, dict[str, Part]] = {}  # recipe digest -> its tensor parts

    def _aligned_buffers(self) -> tuple[memoryview, memoryview]:
        """(read block, write staging): page-aligned, allocated once per store and thread and
        reused, since first-touching fresh memory costs more than the bytes it holds."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            import mmap

            buffers = self._local.buffers = (memoryview(mmap.mmap(-1, BLOCK_SIZE)), memoryview(mmap.mmap(-1, BLOCK_SIZE)))
        return buffers  # type: ignore[no-any-return]

    def _hasher(self) -> Hasher:
        """A hasher for this thread: single-threaded inside a pool that already uses every core."""
        return Hasher(threads=1) if getattr(self._local, "in_pool", False) else Hasher()

    def _delta_scratch(self) -> tuple[bytearray, bytearray, bytearray]:
        """Three block-sized work buffers for delta encoding, allocated once per store and thread."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = (bytearray(BLOCK_SIZE), bytearray(BLOCK_SIZE), bytearray(BLOCK_SIZE))
        return scratch  # type: ignore[no-any-return]

    def _take_decode_scratch(self) -> tuple[memoryview, ...]:
        """Four block-sized buffers for decoding one delta; given back by the reader when it
        closes and reused by the next (a fresh set per part costs more in first-touched memory
        than the decoding itself). Readers open side by side (a diff) each get their own."""
        free: list[tuple[memoryview, ...]] | None = getattr(self._local, "decode_scratch", None)
        if free:
            return free.pop()
        return tuple(memoryview(bytearray(BLOCK_SIZE)) for _ in range(4))

    def _give_back_decode_scratch(self, scratch: tuple[memoryview, ...]) -> None:
        free: list[tuple[memoryview, ...]] | None = getattr(self._local, "decode_scratch", None)
        if free is None:
            free = self._local.decode_scratch = []
        if len(free) < 2:
            free.append(scratch)

    def _writer(self, fd: int, size: int) -> BinaryIO:
        """A direct writer for large objects, a plain buffered file for small ones."""
        if size >= DIRECT_MIN:
            return _DirectWriter(fd, self._aligned_buffers()[1])  # type: ignore[return-value]
        return os.fdopen(fd, "wb")

    # -- naming ------------------------------------------------------------------------------

    def _path(self, digest: str) -> Path:
        """The whole object's path; rejects anything but a full digest so no name escapes the root."""
        if not isinstance(digest, str) or not is_digest(digest):
            raise StoreError(f"invalid object digest {digest!r} (expected 64 lowercase hex characters)")
        return self.root / digest[:2] / digest[2:]

    def _recipe_path(self, digest: str) -> Path:
        self._path(digest)  # validates
        return self._recipes / digest[:2] / digest[2:]

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
        if self._pending_dirs is not None:
            self._pending_dirs.add(folder)
            if created:
                self._pending_dirs.add(self.root)
            return True
        fsync_dir(folder)
        if created:
            fsync_dir(self.root)
        return True

    def _sync_pending(self) -> None:
        """Make every rename of this put_file durable: one fsync per folder touched."""
        pending, self._pending_dirs = self._pending_dirs or set(), None
        for folder in sorted(pending, key=lambda path: len(path.parts), reverse=True):
            fsync_dir(folder)

    # -- whole objects -------------------------------------------------------------------------

    def _has_plain(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def _has_recipe(self, digest: str) -> bool:
        return self._recipe_path(digest).is_file()

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

    def _write_plain(self, digest: str, fill: Callable[[_Sink], None], size: int = 0) -> None:
        """Store an object whose digest the caller already verified while ``fill`` writes it."""
        fd, tmp_name = self._new_temporary()
        handle = self._writer(fd, size)
        try:
            fill(handle)
            self._install(tmp_name, handle, digest)
        except BaseException:
            handle.close()
            _unlink_quietly(tmp_name)
            raise

    # -- files -----------------------------------------------------------------------------------

    def put_file(
        self, path: str | os.PathLike[str], expected_digest: str | None = None, hint: StoreHint | None = None
    ) -> tuple[str, int]:
        if expected_digest is not None:
            for target in (self._path(expected_digest), self._recipe_path(expected_digest)):
                if target.is_file():
                    self._touch(target)
                    return expected_digest, self.size(expected_digest)
        label = (hint.label if hint and hint.label else None) or os.fspath(path)
        with open(path, "rb") as source:
            before = os.fstat(source.fileno())
            if before.st_size < SPLIT_THRESHOLD:
                digest, size = self._put_whole(source, before.st_size, expected_digest, label)
            else:
                self._pending_dirs = set()
                try:
                    digest, size = self._put_split(source, before.st_size, expected_digest, hint, label)
                finally:
                    self._pending_dirs = None
            if _signature(os.fstat(source.fileno())) != _signature(before):
                raise StoreError(
                    f"{label} changed while it was being stored (its size or mtime moved during the read): "
                    "nothing was recorded; commit again once it is written"
                )
        return digest, size

    def _mismatch(self, label: str, expected: str, actual: str) -> StoreError:
        return StoreError(
            f"{label} changed while it was being stored (expected {expected}, read {actual}): nothing was stored"
        )

    def _put_whole(self, source: BinaryIO, size_hint: int, expected: str | None, label: str) -> tuple[str, int]:
        fd, tmp_name = self._new_temporary()
        handle = os.fdopen(fd, "wb")
        try:
            digest, size = _pump(source, handle, _buffer_for(size_hint))  # type: ignore[arg-type]
            if expected is not None and digest != expected:
                raise self._mismatch(label, expected, digest)
            self._install(tmp_name, handle, digest)
        except BaseException:
            handle.close()
            _unlink_quietly(tmp_name)
            raise
        return digest, size

    def _put_split(
        self, source: BinaryIO, size: int, expected: str | None, hint: StoreHint | None, label: str
    ) -> tuple[str, int]:
        """Store a large file as parts and a recipe, reading it once sequentially.

        Bytes of tensors the store already holds are only hashed (for the whole-file digest);
        a new tensor is re-read from the page cache to write it (or its delta) after its digest
        proved it new.
        """
        buffer = self._aligned_buffers()[0]
        whole = Hasher()
        layout = self._tensor_layout(source, size, label)
        source.seek(0)
        trusted: dict[str, str] | None = None
        if layout is not None:
            trusted = _trusted_table(layout, hint, expected)
            previous = self._previous_tensors(hint) if self.deltas else {}
            parts = self._store_tensors(
                source, layout, whole if trusted is None else None, buffer, trusted or {}, previous, label
            )
            kind = "safetensors"
        else:
            parts = self._store_chunks(source, size, whole, buffer, label)
            kind = "chunks"
        if trusted is not None and expected is not None:
            # Every part was checked against the table read in the same pass as ``expected``:
            # known tensors are stored objects, new ones were hashed as they were written.
            digest = expected
        else:
            digest = whole.hexdigest()
            if expected is not None and digest != expected:
                raise self._mismatch(label, expected, digest)
        recipe = Recipe(digest, size, kind, tuple(parts))
        self._sync_pending()  # every part durable before the recipe that names them
        target = self._recipe_path(digest)
        if not target.is_file():
            atomic_write_bytes(target, recipe.to_bytes(), durable=True, mode=OBJECT_MODE)
        return digest, size

    def _tensor_layout(self, source: BinaryIO, size: int, label: str) -> TensorLayout | None:
        """The file's tensors when it is a trustworthy safetensors file, else None (chunks).

        A ``.safetensors`` file with a bad header is a warning: it is still stored (in chunks),
        byte for byte, and nothing a lying header claims is ever allocated.
        """
        prefix = source.read(8)
        try:
            header_size = parse_safetensors_header(prefix, None, size)
            assert isinstance(header_size, int)
            raw = source.read(header_size)
            layout = parse_safetensors_header(prefix, raw, size)
        except LayoutError as exc:
            if label.lower().endswith(".safetensors"):
                log.warning("warning: %s: not a valid safetensors file (%s); stored in content-defined chunks instead", label, exc)
            return None
        assert isinstance(layout, TensorLayout)
        return layout

    def _previous_tensors(self, hint: StoreHint | None) -> dict[str, Part]:
        """Tensor name -> the parent version's part, for reusing deltas and choosing delta bases:
        the same file's tensors first, then those of the parent's other files (``related``)."""
        if hint is None:
            return {}
        tensors: dict[str, Part] = {}
        for digest in (*hint.related, hint.previous):  # the same file last, so it wins a shared name
            tensors.update(self._recipe_tensors(digest))
        return tensors

    def _recipe_tensors(self, digest: str | None) -> dict[str, Part]:
        """Tensor name -> part of a stored safetensors file (empty for anything else); recipes are
        immutable, so each is parsed once per store even when every shard of a checkpoint asks."""
        if digest is None or not is_digest(digest):
            return {}
        cache = self._tensor_cache
        if digest not in cache:
            tensors: dict[str, Part] = {}
            if self._has_recipe(digest):
                with contextlib.suppress(StoreError, ValueError):
                    recipe = self._load_recipe(digest)
                    if recipe.layout == "safetensors":
                        tensors = recipe.tensor_parts()
            if len(cache) >= 1024:
                cache.clear()
            cache[digest] = tensors
        return cache[digest]

    def _store_tensors(
        self,
        source: BinaryIO,
        layout: TensorLayout,
        whole: Hasher | None,
        buffer: bytearray | memoryview,
        trusted: dict[str, str],
        previous: dict[str, Part],
        label: str,
    ) -> list[Part]:
        header = source.read(layout.header_end)
        if len(header) != layout.header_end:
            raise StoreError(f"{label} changed while it was being stored (it ended early): nothing was stored")
        if whole is not None:
            whole.update(header)
        parts = [Part(self.put_bytes(header), len(header))]
        if whole is None and _WORKERS > 1 and len(layout.tensors) > 1:
            return parts + self._store_tensors_in_parallel(source, layout, trusted, previous, label)
        for span in layout.tensors:
            parts.append(self._store_tensor(source, span, whole, buffer, trusted.get(span.name), previous, label))
        return parts

    def _store_tensors_in_parallel(
        self, source: BinaryIO, layout: TensorLayout, trusted: dict[str, str], previous: dict[str, Part], label: str
    ) -> list[Part]:
        """Tensors on every core, when a trusted table spares the in-order whole-file hash.

        Compressing deltas, hashing and writing release the GIL, so a full fine-tune's tensors
        are encoded side by side; each thread reads the file at its own position (``pread``).
        """
        from concurrent.futures import ThreadPoolExecutor

        fd = source.fileno()

        def store(span: TensorInfo) -> Part:
            self._local.in_pool = True
            reader = _PositionalReader(fd, span.begin)
            return self._store_tensor(
                reader,  # type: ignore[arg-type]
                span,
                None,
                self._aligned_buffers()[0],
                trusted.get(span.name),
                previous,
                label,
            )

        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="tether-store") as pool:
            futures = [pool.submit(store, span) for span in layout.tensors]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _store_tensor(
        self,
        source: BinaryIO,
        span: TensorInfo,
        whole: Hasher | None,
        buffer: bytearray | memoryview,
        known: str | None,
        previous: dict[str, Part],
        label: str,
    ) -> Part:
        """One tensor: an existing object, a new object, or a delta against the parent's tensor.

        ``whole`` (None when a trusted table vouches for the file) sees every byte exactly once.
        """

        def part(digest: str, base: str | None = None, delta: str | None = None, shuffle: int = 1) -> Part:
            return Part(digest, span.nbytes, span.name, span.dtype, span.shape, base, delta, shuffle)

        reused = self._reusable(known, span, previous) if known is not None else None
        if reused is not None:
            if whole is None:
                source.seek(span.end)  # a trusted table: the tensor is stored, no need to read it
            else:
                for block in _blocks(source, span.nbytes, buffer, label):
                    whole.update(block)
            return reused
        whole_pending = whole is not None
        if known is None:
            hasher = self._hasher()
            for block in _blocks(source, span.nbytes, buffer, label):
                if whole is not None:
                    whole.update(block)
                hasher.update(block)
            known = hasher.hexdigest()
            whole_pending = False
            reused = self._reusable(known, span, previous)
            if reused is not None:
                return reused
            source.seek(span.begin)
        base = self._delta_base(span, previous)
        if base is not None:
            shuffle = element_size(span.dtype, span.nbytes)
            delta = self._try_delta(source, span, base, known, whole if whole_pending else None, buffer, shuffle, label)
            if delta is not None:
                return part(known, base, delta, shuffle)
            whole_pending = False
            source.seek(span.begin)
        self._write_tensor(source, span, known, whole if whole_pending else None, buffer, label)
        return part(known)

    def _reusable(self, digest: str, span: TensorInfo, previous: dict[str, Part]) -> Part | None:
        """The stored form of a tensor the store already holds: a whole object, or the parent's delta."""
        if self._has_plain(digest):
            self._touch(self._path(digest))
            return Part(digest, span.nbytes, span.name, span.dtype, span.shape)
        old = previous.get(span.name)
        if old is not None and old.digest == digest and old.is_delta and all(self._has_plain(d) for d in old.objects()):
            for needed in old.objects():
                self._touch(self._path(needed))
            return Part(digest, span.nbytes, span.name, span.dtype, span.shape, old.base, old.delta, old.shuffle)
        return None

    def _delta_base(self, span: TensorInfo, previous: dict[str, Part]) -> str | None:
        """A fully stored tensor of the same name, shape and dtype in the parent version, if any."""
        old = previous.get(span.name)
        if old is None or span.nbytes < DELTA_MIN_BYTES or old.size != span.nbytes:
            return None
        if old.dtype != span.dtype or tuple(old.shape or ()) != span.shape:
            return None
        base = old.base if old.is_delta else old.digest  # never a chain: a delta's own base
        return base if base is not None and self._has_plain(base) else None

    def _write_tensor(
        self, source: BinaryIO, span: TensorInfo, digest: str, whole: Hasher | None, buffer: bytearray | memoryview, label: str
    ) -> None:
        def fill(sink: _Sink) -> None:
            hasher = self._hasher()
            for block in _blocks(source, span.nbytes, buffer, label):
                if whole is not None:
                    whole.update(block)
                hasher.update(block)
                if isinstance(sink, _DirectWriter):
                    sink.write(block, aligned=True)  # blocks start at the aligned read buffer
                else:
                    sink.write(block)
            actual = hasher.hexdigest()
            if actual != digest:
                raise self._mismatch(f"{label} tensor '{span.name}'", digest, actual)

        self._write_plain(digest, fill, span.nbytes)

    def _try_delta(
        self,
        source: BinaryIO,
        span: TensorInfo,
        base: str,
        digest: str,
        whole: Hasher | None,
        buffer: bytearray | memoryview,
        shuffle: int,
        label: str,
    ) -> str | None:
        """Store ``zstd(shuffle(tensor XOR base))`` when it is small enough; return its object digest.

        The XOR leaves zeros wherever a bit did not change; grouping the bytes of each element by
        significance (``shuffle``) puts the unchanged sign/exponent bytes into long zero runs,
        which zstd compresses better and faster. The tensor is read exactly once here; ``whole``
        (when given) sees every byte even when the delta turns out too large, and the tensor's
        digest is re-checked on the way.
        """
        import zstandard

        limit = int(span.nbytes * DELTA_MAX_RATIO)
        base_buffer, xored, shuffled = self._delta_scratch()
        if shuffle == 1:
            shuffled = xored
        fd, tmp_name = self._new_temporary()
        handle = self._writer(fd, span.nbytes)
        sink = _HashingSink(handle, self._hasher())
        writer = zstandard.ZstdCompressor(level=DELTA_LEVEL).stream_writer(sink, closefd=False)
        hasher = self._hasher()
        too_big = False
        probed = False
        consumed = 0
        try:
            with open(self._path(base), "rb") as base_handle:
                base_view = memoryview(base_buffer)
                for block in _blocks(source, span.nbytes, buffer, label):
                    if whole is not None:
                        whole.update(block)
                    hasher.update(block)
                    if too_big:
                        continue
                    size = len(block)
                    other = base_view[:size]
                    _read_exactly(base_handle, other, f"object {base}")
                    xor_into(memoryview(xored)[:size], block, other)
                    if shuffle > 1:
                        shuffle_bytes(memoryview(shuffled)[:size], memoryview(xored)[:size], shuffle)
                    writer.write(memoryview(shuffled)[:size])
                    consumed += size
                    if not probed:
                        # One block tells whether the delta can pay: a re-initialized or heavily
                        # trained tensor XORs to noise, and compressing all of it would be wasted.
                        writer.flush(zstandard.FLUSH_BLOCK)
                        probed = True
                        too_big = sink.written > consumed * DELTA_MAX_RATIO
                    too_big = too_big or sink.written > limit
            actual = hasher.hexdigest()
            if actual != digest:
                raise self._mismatch(f"{label} tensor '{span.name}'", digest, actual)
            writer.close()  # ends the frame; the sink stays open
            if too_big or sink.written > limit:
                handle.close()
                _unlink_quietly(tmp_name)
                return None
            delta_digest = sink.hasher.hexdigest()
            self._install(tmp_name, handle, delta_digest)
            return delta_digest
        except BaseException:
            handle.close()
            _unlink_quietly(tmp_name)
            raise

    def _store_chunks(self, source: BinaryIO, size: int, whole: Hasher, buffer: bytearray | memoryview, label: str) -> list[Part]:
        """FastCDC chunks of the whole file, each stored once, streamed with a carry-over.

        Memory stays at one block plus one withheld chunk, whatever the file's size.
        """
        parts: list[Part] = []
        carry = b""
        remaining = size
        view = memoryview(buffer)
        while True:
            block = view[: min(remaining, len(view))]
            _read_exactly(source, block, label)
            remaining -= len(block)
            whole.update(block)
            final = remaining == 0
            data = carry + block
            window = memoryview(data)
            cut_end = 0
            for offset, length in cdc_cuts(window, final):
                chunk = window[offset : offset + length]
                digest = digest_bytes(chunk)
                if self._has_plain(digest):
                    self._touch(self._path(digest))
                else:
                    self._write_plain(digest, lambda sink, chunk=chunk: sink.write(chunk), length)  # type: ignore[misc]
                parts.append(Part(digest, length))
                cut_end = offset + length
            carry = data[cut_end:]
            if final:
                return parts

    # -- recipes -----------------------------------------------------------------------------------

    def _load_recipe(self, digest: str) -> Recipe:
        path = self._recipe_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ObjectMissingError(f"object {digest} is missing from {self.root}") from None
        except PermissionError:
            raise StoreError(f"{path}: permission denied") from None
        try:
            return Recipe.from_bytes(data, digest)
        except (ValueError, KeyError, TypeError) as exc:
            raise ObjectCorruptError(f"object {digest} is corrupt: its recipe does not parse ({exc})") from None

    def recipe(self, digest: str) -> Recipe | None:
        """How a file is stored: its recipe, or None when it is one whole object."""
        if self._has_plain(digest) or not self._has_recipe(digest):
            return None
        return self._load_recipe(digest)

    def parts(self, digest: str) -> list[str]:
        if self._has_plain(digest) or not self._has_recipe(digest):
            return []
        return self._load_recipe(digest).objects()

    # -- reads -------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return self._has_plain(digest) or self._has_recipe(digest)

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._open_raw(digest)
        except ObjectMissingError:
            if not self._has_recipe(digest):
                raise
        return io.BufferedReader(_RecipeStream(self, self._load_recipe(digest)), buffer_size=BLOCK_SIZE)  # type: ignore[return-value]

    def _open_raw(self, digest: str) -> io.BufferedReader:
        path = self._path(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise ObjectMissingError(f"object {digest} is missing from {self.root}") from None
        except PermissionError:
            raise StoreError(f"{path}: permission denied") from None

    def _stat(self, digest: str) -> os.stat_result:
        for target in (self._path(digest), self._recipe_path(digest)):
            try:
                return target.stat()
            except FileNotFoundError:
                continue
        raise ObjectMissingError(f"object {digest} is missing from {self.root}")

    def size(self, digest: str) -> int:
        path = self._path(digest)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            pass
        return self._load_recipe(digest).size

    def stored_size(self, digest: str) -> int:
        """Bytes this entry itself takes on disk (a recipe's own size, not its parts')."""
        return self._stat(digest).st_size

    def age_seconds(self, digest: str) -> float:
        return max(0.0, time.time() - self._stat(digest).st_mtime)

    def iter_digests(self) -> Iterator[str]:
        seen_plain: set[str] = set()
        for digest in self._scan(self.root):
            seen_plain.add(digest)
            yield digest
        for digest in self._scan(self._recipes):
            if digest not in seen_plain:
                yield digest

    @staticmethod
    def _scan(folder: Path) -> Iterator[str]:
        try:
            folders = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for sub in folders:
            prefix = sub.name
            if len(prefix) != 2 or not sub.is_dir(follow_symlinks=False):
                continue
            with os.scandir(sub.path) as entries:
                for entry in entries:
                    digest = prefix + entry.name
                    if is_digest(digest) and entry.is_file(follow_symlinks=False):
                        yield digest

    def verify(self, digest: str) -> bool:
        if self._has_plain(digest) or not self._has_recipe(digest):
            with self._open_raw(digest) as source:
                actual, _ = _pump(source, None, _buffer_for(os.fstat(source.fileno()).st_size))
            return actual == digest
        try:
            self._assemble(self._load_recipe(digest), None)
        except ObjectCorruptError:
            return False
        except ObjectMissingError:
            return False
        return True

    def check(self, digest: str) -> str | None:
        if self._has_plain(digest) or not self._has_recipe(digest):
            return None if self.verify(digest) else "content does not hash to its name"
        try:
            self._assemble(self._load_recipe(digest), None)
        except (ObjectCorruptError, ObjectMissingError) as exc:
            message = str(exc)
            for prefix in (f"object {digest} is corrupt: ", f"object {digest} is incomplete: "):
                if message.startswith(prefix):
                    return message[len(prefix) :]
            return message
        return None

    def _missing_part(self, part: Part) -> str:
        """What is gone of a part that cannot be opened: the part itself, or an object its delta needs."""
        what = f"its part {part.digest}" + (f" (tensor {part.tensor})" if part.tensor else "")
        if part.is_delta:
            for role, object_digest in (("delta", part.delta), ("delta base", part.base)):
                if object_digest is not None and not self._has_plain(object_digest):
                    return f"{what} cannot be rebuilt: its {role} {object_digest} is missing"
        return f"{what} is missing"

    def _assemble(self, recipe: Recipe, sink: _Sink | None) -> None:
        """Rebuild a file part by part, checking each part's digest and then the whole file's.

        With a sink, parts are read and verified on a second thread while this one writes:
        reading objects (and decoding deltas), hashing and the durable write then overlap
        instead of taking turns. The caller keeps the file out of sight until this returns.
        """
        if sink is None:
            buffer = self._aligned_buffers()[0]
            for _ in self._verified_blocks(recipe, lambda: buffer):
                pass
            return
        direct = isinstance(sink, _DirectWriter)
        slots: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        ready: queue.SimpleQueue[tuple[memoryview, memoryview] | BaseException | None] = queue.SimpleQueue()
        for slot in self._ring():
            slots.put(slot)

        taken: list[memoryview] = []

        def take_slot() -> memoryview:
            slot = slots.get()
            if slot is None:
                raise _Cancelled
            taken.append(slot)
            return slot

        def produce() -> None:
            try:
                for block in self._verified_blocks(recipe, take_slot):
                    ready.put((taken.pop(), block))
                ready.put(None)
            except _Cancelled:
                pass
            except BaseException as exc:  # handed to the writing thread, which raises it
                ready.put(exc)

        reader = threading.Thread(target=produce, name="tether-assemble", daemon=True)
        reader.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                slot, block = item
                if direct:
                    sink.write(block, aligned=True)  # type: ignore[call-arg]
                else:
                    sink.write(block)
                block.release()
                slots.put(slot)
        except BaseException:
            slots.put(None)  # the reader stops at its next block
            raise
        finally:
            reader.join()

    def _ring(self) -> list[memoryview]:
        """Page-aligned blocks the assembling reader fills while the writer drains them (allocated
        once per store and thread: first-touching fresh memory costs more than the bytes)."""
        ring = getattr(self._local, "ring", None)
        if ring is None:
            import mmap

            whole = memoryview(mmap.mmap(-1, _RING_SLOTS * BLOCK_SIZE))
            ring = self._local.ring = [whole[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE] for i in range(_RING_SLOTS)]
        return ring  # type: ignore[no-any-return]

    def _verified_blocks(self, recipe: Recipe, next_buffer: Callable[[], memoryview]) -> Iterator[memoryview]:
        """The recipe's bytes in order, each block read into ``next_buffer()``; every part's
        digest is checked after its last block, the whole file's after the last part."""
        whole = Hasher()
        for part in recipe.parts:
            hasher = Hasher()
            label = f"object {part.digest}"
            try:
                opened = _open_part(self, part)
            except ObjectMissingError:
                raise ObjectMissingError(f"object {recipe.digest} is incomplete: {self._missing_part(part)}") from None
            with opened as reader:
                remaining = part.size
                while remaining:
                    slot = next_buffer()
                    block = slot[: min(remaining, len(slot))]
                    _read_exactly(reader, block, label)  # type: ignore[arg-type]
                    remaining -= len(block)
                    hasher.update(block)
                    whole.update(block)
                    yield block
            if hasher.hexdigest() != part.digest:
                raise ObjectCorruptError(
                    f"object {recipe.digest} is corrupt: its part {part.digest} (tensor {part.tensor}) "
                    "does not rebuild to its digest"
                    if part.tensor
                    else f"object {recipe.digest} is corrupt: its part {part.digest} does not hash to its name"
                )
        actual = whole.hexdigest()
        if actual != recipe.digest:
            raise ObjectCorruptError(f"object {recipe.digest} is corrupt: its parts hash to {actual}")

    # -- materializing -------------------------------------------------------------------------

    def materialize(self, digest: str, dest: str | os.PathLike[str], link: bool = False, *, staged: bool = False) -> None:
        """Write the file to ``dest`` so that ``dest`` changes only if the bytes verify.

        A whole object is hard-linked when ``link`` asks for a read-only file (and the folders
        share a filesystem), else cloned (reflink) where the filesystem can, else copied in one
        hashing pass; a recipe is rebuilt with large sequential writes, every part verified.
        With ``staged``, ``dest`` is the caller's own staging file (it must not exist): it is
        written directly, with no temporary file of the store's, and removed if it does not verify.
        """
        target = Path(dest)
        plain = self._path(digest)
        if not plain.is_file() and not self._has_recipe(digest):
            raise ObjectMissingError(f"object {digest} is missing from {self.root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = str(target) if staged else str(target.parent / f".{target.name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")
        try:
            if plain.is_file() and link and self._link(plain, tmp_name):
                self._check_copy(digest, tmp_name)
            elif plain.is_file():
                self._copy_plain(plain, digest, tmp_name)
            else:
                recipe = self._load_recipe(digest)
                fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                handle = self._writer(fd, recipe.size)
                try:
                    _preallocate(handle, recipe.size)
                    self._assemble(recipe, handle)  # type: ignore[arg-type]
                    handle.flush()
                    os.fsync(handle.fileno())
                finally:
                    handle.close()
            if link and not os.stat(tmp_name).st_nlink > 1:
                os.chmod(tmp_name, 0o444)
            if not staged:
                os.replace(tmp_name, target)
        except FileExistsError:
            raise  # the name was taken before this call created anything: not ours to remove
        except ObjectCorruptError as exc:
            _unlink_quietly(tmp_name)
            raise ObjectCorruptError(f"{exc}; {target} was not written") from None
        except BaseException:
            _unlink_quietly(tmp_name)
            raise
        fsync_dir(target.parent)

    def _link(self, plain: Path, tmp_name: str) -> bool:
        try:
            os.link(plain, tmp_name)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return False
            raise
        return True

    def _check_copy(self, digest: str, tmp_name: str) -> None:
        with open(tmp_name, "rb") as source:
            actual, _ = _pump(source, None, _buffer_for(os.fstat(source.fileno()).st_size))
        if actual != digest:
            raise ObjectCorruptError(f"object {digest} is corrupt: its bytes hash to {actual}")

    def _copy_plain(self, plain: Path, digest: str, tmp_name: str) -> None:
        with open(plain, "rb") as source:
            # 0o666 filtered by the umask: a checked-out file gets the user's usual permissions.
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            size = os.fstat(source.fileno()).st_size
            handle = self._writer(fd, size)
            try:
                if self._reflink and size >= _MIN_BUFFER and self._clone(source, handle):
                    self._check_copy(digest, tmp_name)
                else:
                    _preallocate(handle, size)
                    buffer = self._aligned_buffers()[0] if size >= DIRECT_MIN else _buffer_for(size)
                    actual, _ = _pump(source, handle, buffer)  # type: ignore[arg-type]
                    if actual != digest:
                        raise ObjectCorruptError(f"object {digest} is corrupt: its bytes hash to {actual}")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                handle.close()

    def _clone(self, source: BinaryIO, handle: BinaryIO) -> bool:
        """Reflink ``source`` into ``handle`` (copy-on-write, no data copied); False when unsupported."""
        try:
            fcntl.ioctl(handle.fileno(), _FICLONE, source.fileno())
        except OSError as exc:
            if exc.errno in _NO_REFLINK:
                # EXDEV is about this destination (another file system), not about the store's:
                # a later destination beside the store may still clone.
                if exc.errno != errno.EXDEV:
                    self._reflink = False
                return False
            raise
        return True

    # -- maintenance -------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        _unlink_quietly(self._path(digest))
        _unlink_quietly(self._recipe_path(digest))

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

    def mark_pruned(self, version_id: str, record: dict[str, Any]) -> None:
        if not is_digest(version_id):
            raise StoreError(f"mark_pruned: '{version_id}' is not a version ID")
        body = json.dumps(record, sort_keys=True).encode("utf-8")
        atomic_write_bytes(self.root / PRUNED_DIR / f"{version_id}.json", body, durable=True, mode=OBJECT_MODE)

    def pruned(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        try:
            entries = list(os.scandir(self.root / PRUNED_DIR))
        except FileNotFoundError:
            return found
        for entry in entries:
            version_id = entry.name.removesuffix(".json")
            if entry.name == version_id or not is_digest(version_id):
                continue  # a temporary file of a killed gc, or not ours
            try:
                record = json.loads(Path(entry.path).read_bytes())
            except (OSError, ValueError):
                record = {}  # unreadable details: the version is still pruned
            found[version_id] = record if isinstance(record, dict) else {}
        return found

    def describe(self) -> str:
        return str(self.root)


def _trusted_table(layout: TensorLayout, hint: StoreHint | None, expected: str | None) -> dict[str, str] | None:
    """Tensor name -> digest from the caller's table, when it describes exactly this header.

    Only with ``expected``: the table was read from the same, unchanged file that produced the
    whole-file digest, so it vouches for every tensor the header names. Any disagreement (names, dtypes,
    shapes, offsets) means the file is not the one snapshotted: every byte is then re-hashed.
    """
    if expected is None or hint is None or not hint.tensors or len(hint.tensors) != len(layout.tensors):
        return None
    known: dict[str, str] = {}
    for span in layout.tensors:
        entry = hint.tensors.get(span.name)
        if not isinstance(entry, Mapping):
            return None
        begin, end = span.begin - layout.header_end, span.end - layout.header_end
        digest = entry.get("digest")
        if (
            entry.get("dtype") != span.dtype
            or list(entry.get("shape") or []) != list(span.shape)
            or list(entry.get("offsets") or []) != [begin, end]
            or not isinstance(digest, str)
            or not is_digest(digest)
        ):
            return None
        known[span.name] = digest
    return known


def _preallocate(handle: BinaryIO, size: int) -> None:
    """Reserve the file's blocks up front: one extent, sequential writes, no ENOSPC half-way."""
    if size > 0:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fallocate(handle.fileno(), 0, size)


# ---- reading parts -----------------------------------------------------------------------------


class _DeltaReader:
    """A delta part's bytes: ``unshuffle(zstd_decompress(delta)) XOR base``, decoded block by block
    (the encoder shuffled each block of :data:`BLOCK_SIZE` bytes on its own)."""

    def __init__(self, store: LocalObjectStore, part: Part):
        import zstandard

        assert part.base is not None and part.delta is not None
        self._base = store._open_raw(part.base)
        try:
            self._raw = store._open_raw(part.delta)
        except BaseException:
            self._base.close()
            raise
        self._delta = zstandard.ZstdDecompressor().stream_reader(self._raw, read_across_frames=False)
        self._shuffle = part.shuffle
        self._remaining = part.size
        self._label = f"object {part.delta}"
        size = min(BLOCK_SIZE, max(part.size, 1))
        self._store = store
        self._scratch: tuple[memoryview, ...] | None = store._take_decode_scratch()
        coded, xored, base_block, decoded = self._scratch
        self._coded = coded[:size]
        self._xored = xored[:size] if part.shuffle > 1 else self._coded
        self._base_block = base_block[:size]
        self._decoded = decoded[:size]
        self._start = 0
        self._end = 0

    def _fill(self) -> bool:
        size = min(self._remaining, len(self._coded))
        if not size:
            return False
        coded = memoryview(self._coded)[:size]
        got = 0
        try:
            while got < size:
                count = self._delta.readinto(coded[got:])
                if not count:
                    break
                got += count
        except Exception as exc:  # zstd reports damaged frames as its own error type
            raise ObjectCorruptError(f"{self._label} is corrupt: {exc}") from None
        if got != size:
            raise ObjectCorruptError(f"{self._label} is corrupt: it decodes to fewer bytes than its tensor")
        if self._shuffle > 1:
            unshuffle_bytes(memoryview(self._xored)[:size], coded, self._shuffle)
        base = memoryview(self._base_block)[:size]
        _read_exactly(self._base, base, "delta base")
        xor_into(memoryview(self._decoded)[:size], memoryview(self._xored)[:size], base)
        self._remaining -= size
        self._start, self._end = 0, size
        return True

    def readinto(self, view: memoryview) -> int:
        if self._start == self._end and not self._fill():
            return 0
        count = min(len(view), self._end - self._start)
        view[:count] = memoryview(self._decoded)[self._start : self._start + count]
        self._start += count
        return count

    def skip(self, count: int) -> None:
        while count:
            if self._start == self._end and not self._fill():
                raise ObjectCorruptError(f"{self._label} is corrupt: it ended early")
            step = min(count, self._end - self._start)
            self._start += step
            count -= step

    def close(self) -> None:
        self._delta.close()
        self._raw.close()
        self._base.close()
        if self._scratch is not None:  # this thread's next reader takes it over
            scratch, self._scratch = self._scratch, None
            self._store._give_back_decode_scratch(scratch)

    def __enter__(self) -> _DeltaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_part(store: LocalObjectStore, part: Part) -> BinaryIO | _DeltaReader:
    if part.is_delta:
        return _DeltaReader(store, part)
    return store._open_raw(part.digest)


class _RecipeStream(io.RawIOBase):
    """A recipe's file as one seekable stream (reads do not verify; ``materialize`` and ``verify`` do)."""

    def __init__(self, store: LocalObjectStore, recipe: Recipe):
        super().__init__()
        self._store = store
        self._recipe = recipe
        self._starts: list[int] = []
        offset = 0
        for part in recipe.parts:
            self._starts.append(offset)
            offset += part.size
        self._position = 0
        self._index = -1
        self._reader: BinaryIO | _DeltaReader | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self._recipe.size
        if offset < 0:
            raise ValueError("negative seek position")
        if offset != self._position:
            self._drop()
            self._position = offset
        return self._position

    def _drop(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._index = -1

    def _ensure(self) -> bool:
        if self._position >= self._recipe.size:
            return False
        index = bisect.bisect_right(self._starts, self._position) - 1
        while index < len(self._recipe.parts) - 1 and self._recipe.parts[index].size == 0:
            index += 1
        if index != self._index or self._reader is None:
            self._drop()
            part = self._recipe.parts[index]
            reader = _open_part(self._store, part)
            within = self._position - self._starts[index]
            if isinstance(reader, _DeltaReader):
                reader.skip(within)
            else:
                reader.seek(within)
            self._reader = reader
            self._index = index
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if not view or not self._ensure():
            return 0
        assert self._reader is not None
        part_end = self._starts[self._index] + self._recipe.parts[self._index].size
        want = min(len(view), part_end - self._position)
        got = self._reader.readinto(view[:want]) or 0  # type: ignore[union-attr]
        if not got:
            raise ObjectCorruptError(f"object {self._recipe.parts[self._index].digest} ended early")
        self._position += got
        if self._position >= part_end:
            self._drop()
        return got

    def close(self) -> None:
        self._drop()
        super().close()
