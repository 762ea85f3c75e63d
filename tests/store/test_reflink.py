"""Checkout clones (reflinks) whole objects where the file system can: proven on a real XFS.

The machine's own disk may not reflink (ext4 does not), so the ``reflink_mount`` fixture makes a
small XFS image with ``reflink=1`` under the test's folder, loop-mounts it and always unmounts it
and detaches the loop device afterwards. Where that cannot be done (not root, no ``mkfs.xfs``,
the mount refused) the tests are skipped with the reason. Under CI (``CI=true``) missing tools
fail instead, as the PostgreSQL tests do (CI installs them and must prove the clone path); a
machine that refuses loop devices or mounts (a container without the capability) still skips.

Sharing is checked with the ``FS_IOC_FIEMAP`` ioctl: a clone's extents carry
``FIEMAP_EXTENT_SHARED`` and map to the stored object's own blocks; a byte copy's do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, NoReturn

import pytest

from tests.conftest import ProjectDir
from tests.services import in_ci
from tether.ids import digest_bytes
from tether.store.base import ObjectCorruptError
from tether.store.layout import SPLIT_THRESHOLD
from tether.store.local import _MIN_BUFFER, DIRECT_MIN, LocalObjectStore

MiB = 1024 * 1024
#: mkfs.xfs refuses file systems smaller than 300 MB (xfsprogs >= 5.19); the image is sparse
XFS_IMAGE_BYTES = 300 * MiB
#: below the split threshold and above the smallest object the store clones: one plain object
WHOLE_FILE_BYTES = SPLIT_THRESHOLD - 512 * 1024 + 123
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

# linux/fiemap.h
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP = struct.Struct("=QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved
_EXTENT = struct.Struct("=QQQQQIIII")  # fe_logical, fe_physical, fe_length, 2 reserved, fe_flags, 3 reserved
_FICLONE = 0x40049409

assert _FIEMAP.size == 32 and _EXTENT.size == 56
assert _MIN_BUFFER < WHOLE_FILE_BYTES < SPLIT_THRESHOLD


# -- the XFS mount -----------------------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"reflink tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _refused(reason: str) -> NoReturn:
    """The machine will not attach or mount an image (a container without loop devices or the
    mount capability): no installation can change that, so it is a skip even under CI."""
    pytest.skip(f"this machine does not allow loop mounts: {reason}")


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _failed(what: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"{what} exited {result.returncode}: {(result.stderr or result.stdout).strip()[:500]}"


def _probe_clone(mount: Path) -> None:
    """The kernel really clones on this mount (else the tests would blame tether for the machine)."""
    source, copy = mount / ".probe-source", mount / ".probe-copy"
    source.write_bytes(os.urandom(_MIN_BUFFER))
    try:
        with open(source, "rb") as src, open(copy, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except OSError as exc:
        _unavailable(f"the kernel does not clone files on an XFS mount with reflink=1: {exc}")
    finally:
        source.unlink()
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()


@contextlib.contextmanager
def xfs_reflink_mount(folder: Path) -> Iterator[Path]:
    """A fresh XFS (``reflink=1``) loop-mounted at ``folder/mnt``; unmounted and detached on exit."""
    if os.geteuid() != 0:
        _unavailable("loop-mounting an XFS image needs root")
    tools = {name: _tool(name) for name in ("mkfs.xfs", "losetup", "mount", "umount")}
    missing = sorted(name for name, path in tools.items() if path is None)
    if missing:
        _unavailable(f"{', '.join(missing)} not found (apt-get install xfsprogs)")
    image, mount = folder / "xfs.img", folder / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(XFS_IMAGE_BYTES)
    try:
        made = _run(tools["mkfs.xfs"], "-q", "-f", "-m", "reflink=1", str(image))  # type: ignore[arg-type]
        if made.returncode:
            _unavailable(_failed("mkfs.xfs -m reflink=1", made))
        attached = _run(tools["losetup"], "--find", "--show", str(image))  # type: ignore[arg-type]
        if attached.returncode or not attached.stdout.strip():
            _refused(_failed("losetup --find --show", attached))
        device = attached.stdout.strip()
        try:
            mount.mkdir()
            mounted = _run(tools["mount"], "-t", "xfs", device, str(mount))  # type: ignore[arg-type]
            if mounted.returncode:
                _refused(_failed(f"mount {device}", mounted))
            try:
                _probe_clone(mount)
                yield mount
            finally:
                if _run(tools["umount"], str(mount)).returncode:  # type: ignore[arg-type]
                    _run(tools["umount"], "--lazy", str(mount))  # type: ignore[arg-type]  # a file left open
        finally:
            _run(tools["losetup"], "--detach", device)  # type: ignore[arg-type]
    finally:
        image.unlink()


@pytest.fixture
def reflink_mount(tmp_path: Path) -> Iterator[Path]:
    with xfs_reflink_mount(tmp_path) as mount:
        yield mount


# -- extents ---------------------------------------------------------------------------------


class Extent(NamedTuple):
    logical: int
    physical: int
    length: int
    flags: int


def extents(path: Path) -> list[Extent]:
    """The file's extents from ``FS_IOC_FIEMAP`` (flushed first, so no delayed allocation)."""
    found: list[Extent] = []
    start, batch = 0, 64
    with open(path, "rb") as handle:
        while True:
            request = bytearray(_FIEMAP.pack(start, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, batch, 0))
            request += bytes(batch * _EXTENT.size)
            fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, request)
            mapped = _FIEMAP.unpack_from(request)[3]
            for index in range(mapped):
                fields = _EXTENT.unpack_from(request, _FIEMAP.size + index * _EXTENT.size)
                found.append(Extent(fields[0], fields[1], fields[2], fields[5]))
            if not mapped or found[-1].flags & FIEMAP_EXTENT_LAST:
                return found
            start = found[-1].logical + found[-1].length


def _mapping(path: Path) -> list[tuple[int, int, int]]:
    return [(extent.logical, extent.physical, extent.length) for extent in extents(path)]


def assert_cloned(copy: Path, original: Path) -> None:
    """``copy`` is ``original``'s bytes and shares every one of its blocks (a reflink)."""
    assert copy.read_bytes() == original.read_bytes()
    found = extents(copy)
    assert found, f"{copy} has no extents"
    assert all(extent.flags & FIEMAP_EXTENT_SHARED for extent in found), f"{copy} is not shared: {found}"
    assert _mapping(copy) == _mapping(original), "the copy's blocks are not the stored object's"


def assert_written(copy: Path, original: Path) -> None:
    """``copy`` is ``original``'s bytes in blocks of its own (a byte copy)."""
    assert copy.read_bytes() == original.read_bytes()
    found = extents(copy)
    assert found and not any(extent.flags & FIEMAP_EXTENT_SHARED for extent in found), found
    theirs = {(extent.physical, extent.length) for extent in extents(original)}
    assert not theirs & {(extent.physical, extent.length) for extent in found}


def _object(store_root: Path, digest: str) -> Path:
    path = store_root / digest[:2] / digest[2:]
    assert path.is_file(), f"{digest} is not stored as one whole object"
    assert not (store_root / "recipes" / digest[:2] / digest[2:]).exists()
    return path


@pytest.fixture
def clone_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What every ``_clone`` call answered (True: the file system cloned)."""
    calls: list[bool] = []
    real = LocalObjectStore._clone

    def spy(self: LocalObjectStore, source: BinaryIO, handle: BinaryIO) -> bool:
        calls.append(real(self, source, handle))
        return calls[-1]

    monkeypatch.setattr(LocalObjectStore, "_clone", spy)
    return calls


# -- the store -------------------------------------------------------------------------------


def _store_whole(store: LocalObjectStore, folder: Path, size: int) -> str:
    """A whole object of ``size`` random bytes: put_file below the split threshold, else put_bytes."""
    data = os.urandom(size)
    if size < SPLIT_THRESHOLD:
        source = folder / "source.bin"
        source.write_bytes(data)
        digest, stored = store.put_file(source)
        assert stored == size
    else:
        digest = store.put_bytes(data)
    assert digest == digest_bytes(data)
    return digest


@pytest.mark.slow
@pytest.mark.parametrize("size", [WHOLE_FILE_BYTES, DIRECT_MIN + 3 * MiB + 17], ids=["put_file", "direct-writer"])
def test_materialize_clones_a_whole_object(reflink_mount: Path, clone_calls: list[bool], size: int) -> None:
    store = LocalObjectStore(reflink_mount / "objects")
    digest = _store_whole(store, reflink_mount, size)
    dest = reflink_mount / "out" / "file.bin"
    store.materialize(digest, dest)
    assert clone_calls == [True]
    assert_cloned(dest, _object(store.root, digest))
    assert not [name for name in os.listdir(dest.parent) if name != dest.name], "a temporary file was left"


@pytest.mark.slow
def test_the_extent_check_sees_a_byte_copy(reflink_mount: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the clone the same materialize writes the bytes: the check above would fail."""
    monkeypatch.setattr(LocalObjectStore, "_clone", lambda self, source, handle: False)
    store = LocalObjectStore(reflink_mount / "objects")
    digest = _store_whole(store, reflink_mount, WHOLE_FILE_BYTES)
    dest = reflink_mount / "out" / "file.bin"
    store.materialize(digest, dest)
    assert_written(dest, _object(store.root, digest))
    with pytest.raises(AssertionError, match="not shared"):
        assert_cloned(dest, _object(store.root, digest))


@pytest.mark.slow
def test_a_corrupt_object_is_refused_after_cloning(reflink_mount: Path, clone_calls: list[bool]) -> None:
    store = LocalObjectStore(reflink_mount / "objects")
    digest = _store_whole(store, reflink_mount, WHOLE_FILE_BYTES)
    stored = _object(store.root, digest)
    fd = os.open(stored, os.O_WRONLY)  # the tests run as root: mode 0444 does not stop it
    try:
        middle = WHOLE_FILE_BYTES // 2
        os.pwrite(fd, bytes([stored.read_bytes()[middle] ^ 0xFF]), middle)
    finally:
        os.close(fd)
    assert stored.stat().st_size == WHOLE_FILE_BYTES
    dest = reflink_mount / "out" / "file.bin"
    dest.parent.mkdir()
    with pytest.raises(ObjectCorruptError, match=f"{digest} is corrupt.*was not written"):
        store.materialize(digest, dest)
    assert clone_calls == [True], "the clone was made, then its bytes were checked"
    assert os.listdir(dest.parent) == []


@pytest.mark.slow
def test_a_checkout_to_another_file_system_does_not_stop_later_clones(
    reflink_mount: Path, tmp_path: Path, clone_calls: list[bool]
) -> None:
    """A destination on another file system cannot share blocks; the next one on the store's can."""
    store = LocalObjectStore(reflink_mount / "objects")
    digest = _store_whole(store, reflink_mount, WHOLE_FILE_BYTES)
    elsewhere = tmp_path / "elsewhere" / "file.bin"
    assert os.stat(tmp_path).st_dev != os.stat(reflink_mount).st_dev
    store.materialize(digest, elsewhere)
    assert elsewhere.read_bytes() == _object(store.root, digest).read_bytes()
    dest = reflink_mount / "out" / "file.bin"
    store.materialize(digest, dest)
    assert clone_calls == [False, True]
    assert_cloned(dest, _object(store.root, digest))


# -- the user's path: commit, then checkout ---------------------------------------------------


@pytest.mark.slow
def test_checkout_clones_committed_files(reflink_mount: Path, clone_calls: list[bool]) -> None:
    project = ProjectDir(reflink_mount / "proj")
    project.root.mkdir()
    first, second = os.urandom(WHOLE_FILE_BYTES), os.urandom(WHOLE_FILE_BYTES)
    blob = project.write("assets/blob.bin", first)
    project.run("init", "--tier", "lite")
    project.run("add", "files", "assets", "assets/")
    v1 = project.run("commit", "-m", "first").stdout.strip()
    stored = _object(project.root / ".tether" / "objects", digest_bytes(first))

    out = reflink_mount / "out"
    project.run("checkout", v1, "--dir", str(out))
    assert_cloned(out / "assets" / "blob.bin", stored)

    blob.write_bytes(second)
    project.run("commit", "-m", "second")
    project.run("checkout", v1)  # back into the working tree
    assert_cloned(blob, stored)
    assert clone_calls == [True, True]


@pytest.mark.slow
def test_checkout_refuses_a_corrupt_clone(reflink_mount: Path, clone_calls: list[bool]) -> None:
    project = ProjectDir(reflink_mount / "proj")
    project.root.mkdir()
    data = os.urandom(WHOLE_FILE_BYTES)
    project.write("assets/blob.bin", data)
    project.run("init", "--tier", "lite")
    project.run("add", "files", "assets", "assets/")
    v1 = project.run("commit", "-m", "first").stdout.strip()
    stored = _object(project.root / ".tether" / "objects", digest_bytes(data))
    with open(stored, "r+b") as handle:
        handle.seek(WHOLE_FILE_BYTES - 1)
        handle.write(bytes([data[-1] ^ 0x01]))

    out = reflink_mount / "out"
    result = project.run("checkout", v1, "--dir", str(out), code=None)
    assert result.exit_code != 0
    assert "assets/blob.bin" in result.stderr and "corrupted" in result.stderr
    assert clone_calls == [True], "the clone was made, then its bytes were checked"
    assert not [path for path in out.rglob("*") if path.is_file()]


# -- where the mount cannot be had -----------------------------------------------------------


@pytest.fixture
def no_mkfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)


@pytest.mark.usefixtures("no_mkfs")
def test_no_xfs_tools_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"mkfs\.xfs.*not found.*xfsprogs"), xfs_reflink_mount(tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_mkfs")
def test_no_xfs_tools_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"cannot run under CI.*mkfs\.xfs"), xfs_reflink_mount(tmp_path):
        pass


def test_a_refused_mount_is_cleaned_up_and_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every step that was done is undone when a later one fails (here: the mount is refused)."""
    monkeypatch.setenv("CI", "true")  # no installation fixes a refused mount: a skip even under CI
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: f"/fake/{name}")
    ran: list[tuple[str, ...]] = []

    def fake_run(*argv: str) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        tool = Path(argv[0]).name
        if tool == "losetup" and "--find" in argv:
            return subprocess.CompletedProcess(argv, 0, "/dev/loop99\n", "")
        if tool == "mount":
            return subprocess.CompletedProcess(argv, 32, "", "mount: permission denied")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(sys.modules[__name__], "_run", fake_run)
    refused = pytest.raises(pytest.skip.Exception, match="loop mounts: mount /dev/loop99 exited 32: mount: permission denied")
    with refused, xfs_reflink_mount(tmp_path):
        pass
    assert [Path(argv[0]).name for argv in ran] == ["mkfs.xfs", "losetup", "mount", "losetup"]
    assert ran[-1][1:] == ("--detach", "/dev/loop99")
    assert not (tmp_path / "xfs.img").exists()
