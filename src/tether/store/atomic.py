"""Atomic file writes: temporary file in the same folder, flush, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

#: Every temporary file tether creates beside a file it writes ends in this suffix: a staging
#: file ``.NAME.tether-tmp`` (one per target, see :func:`staging_path`) or an atomic write's
#: ``.NAME.<random>.tether-tmp``. Snapshots never record such names, and checkout and gc remove
#: the ones a killed process left behind.
TEMPORARY_SUFFIX = ".tether-tmp"
#: the longest file name (in bytes) the usual Linux and macOS file systems accept
NAME_MAX = 255
_TEMPORARY_NAME = re.compile(
    r"\..+\.tether-tmp"  # a staging file or an atomic write's temporary file
    r"(\.[0-9a-f]{16}\.tmp)?"  # older tethers: the store's own temporary file inside a staging name
)


def is_temporary_name(name: str) -> bool:
    """True for the name of a temporary file tether itself creates beside the files it writes."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def staging_path(final: str | os.PathLike[str]) -> Path:
    """Where ``final``'s bytes are written before being renamed into place: one predictable name
    per target, so a killed writer leaves at most one file, which the next writer recognizes.

    A name too long for the file system once the prefix and suffix are added (over
    :data:`NAME_MAX` bytes) is shortened and tagged with a digest of the whole name, so a file
    with a name of the longest allowed length can still be staged, still under one name.
    """
    target = Path(final)
    name = f".{target.name}{TEMPORARY_SUFFIX}"
    if len(os.fsencode(name)) > NAME_MAX:
        raw = os.fsencode(target.name)
        tag = hashlib.blake2b(raw, digest_size=8).hexdigest()
        keep = NAME_MAX - len(TEMPORARY_SUFFIX) - len(tag) - 2  # the leading '.' and the '~'
        name = f".{raw[:keep].decode('utf-8', 'ignore')}~{tag}{TEMPORARY_SUFFIX}"
    return target.with_name(name)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new bytes, never a mix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_dir(target.parent)
