"""The working tree: safe path resolution, globbing and stat-cached hashing of project files."""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tether.components.base import (
    BlobReader,
    ComponentError,
    FileEntry,
    PathEscapeError,
    SnapshotContext,
    SourceMissingError,
)
from tether.errors import CheckFailedError, UsageError
from tether.ids import FileBlocks, FileChangedError, digest_file, open_blocks
from tether.project.statcache import StatCache, signature
from tether.store.atomic import is_temporary_name
from tether.store.base import StoreError

_GLOB_CHARS = set("*?[")
_IGNORED_DIRS = {".tether", ".git", "__pycache__", ".venv"}
#: a tether temporary file in the working tree younger than this may belong to a checkout still
#: writing (when another tether process holds the lock); older ones are leftovers of a killed one
STALE_TEMPORARY_SECONDS = 600.0


def permission_denied(rel_path: str) -> UsageError:
    """The one-line error for a project file or folder tether may not read (exit 2)."""
    return UsageError(f"{rel_path}: permission denied")


def project_folders(root: Path) -> Iterator[Path]:
    """Every folder of the project (not ``.tether``, ``.git``, ``.venv``, ``__pycache__``; symlinks
    not followed), for the temporary files a killed checkout left anywhere in the tree."""
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        dirnames[:] = [name for name in dirnames if name not in _IGNORED_DIRS]
        yield Path(dirpath)


def remove_temporaries(folders: Iterable[Path], older_than_seconds: float | None, dry_run: bool = False) -> list[Path]:
    """Remove tether's own temporary files (:func:`~tether.store.atomic.is_temporary_name`) found
    directly in ``folders``: those older than ``older_than_seconds``, or all of them with None (no
    other tether process is writing). Returns what was (or, with ``dry_run``, would be) removed."""
    cutoff = None if older_than_seconds is None else time.time() - older_than_seconds
    removed: list[Path] = []
    for folder in dict.fromkeys(folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # gone, not a folder, or unreadable: nothing tether could have left there
        for entry in entries:
            if not is_temporary_name(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if cutoff is not None and entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if not dry_run:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue  # its writer or another cleaner got there first
            removed.append(Path(entry.path))
    return removed


class WorkingTree(SnapshotContext):
    """Project files as a kind sees them: every path checked to stay inside the root."""

    def __init__(self, root: str | os.PathLike[str], cache: StatCache | None = None, project_file: str = "tether.toml"):
        self.root = Path(root).resolve()
        self._root_text = str(self.root)
        self.cache = cache
        self.project_file = project_file
        #: what snapshots consulted, for the clean-tree certificate (see tether.project.clean):
        #: path -> {"sig": stat signature, "digest": content digest or None}
        self.observed: dict[str, dict[str, Any]] = {}
        #: every expansion: (patterns, field name, files found)
        self.expansions: list[tuple[list[str], str, list[str]]] = []
        #: folder -> ((st_dev, st_ino, st_ctime_ns) when resolved, its real path): one realpath per folder
        self._real_folders: dict[str, tuple[tuple[int, int, int], str]] = {}

    def _observe(self, rel_path: str, st: os.stat_result, digest: str | None = None) -> None:
        seen = self.observed.get(rel_path)
        sig = signature(st)
        if seen is None or seen["sig"] != sig:
            self.observed[rel_path] = {"sig": sig, "digest": digest}
        elif digest is not None:
            seen["digest"] = digest

    @staticmethod
    def _changed(rel_path: str) -> CheckFailedError:
        return CheckFailedError(
            f"{rel_path}: changed while it was being read (it was written to, or its size or mtime moved); "
            "nothing was recorded, try again once it is written"
        )

    def _changed_while_read(self, rel_path: str, before: os.stat_result, after: os.stat_result) -> None:
        if (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino):
            raise self._changed(rel_path)

    # -- paths -------------------------------------------------------------------------
    def _inside(self, path: str | os.PathLike[str]) -> bool:
        """String comparison, not ``Path.relative_to``: called for every file of every snapshot."""
        return is_within(os.fspath(path), self._root_text)

    def resolve(self, rel_path: str, field_name: str) -> Path:
        """The absolute path of a project-relative path, checked: inside the project (symlinks
        included), existing, and a regular file or a folder. Errors name ``field_name``."""
        return Path(self.checked(rel_path, field_name)[0])

    def checked(self, rel_path: str, field_name: str) -> tuple[str, os.stat_result]:
        """:meth:`resolve` on strings, with the ``stat`` it took (called for every file of every
        snapshot, so no ``pathlib`` objects and no second ``stat``)."""
        if not isinstance(rel_path, str) or not rel_path:
            raise ComponentError(f"{self.project_file}: {field_name}: empty path")
        if os.path.isabs(rel_path) or rel_path.startswith(("/", "\\")):
            raise PathEscapeError(f"{self.project_file}: {field_name}: '{rel_path}' is absolute; paths are relative to the project")
        # joined as pathlib would: "." segments and doubled slashes dropped, ".." kept
        parts = [part for part in rel_path.split("/") if part not in ("", ".")]
        candidate = os.path.join(self._root_text, *parts) if parts else self._root_text
        if not self._inside(os.path.normpath(candidate)):
            raise PathEscapeError(f"{self.project_file}: {field_name}: '{rel_path}' leaves the project folder")
        try:
            rel_path.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(rel_path).decode("utf-8", "backslashreplace")
            raise ComponentError(
                f"{self.project_file}: {field_name}: '{shown}': file name is not valid UTF-8; rename it"
            ) from None
        real = self._real_path(candidate)  # a symlink loop is left as it is, and stat names it below
        if not self._inside(real):
            raise PathEscapeError(
                f"{self.project_file}: {field_name}: '{rel_path}' is a symlink pointing outside the project folder"
            )
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            if os.path.islink(candidate):
                raise ComponentError(
                    f"{self.project_file}: {field_name}: '{rel_path}' is a dangling symlink "
                    f"(to '{os.readlink(candidate)}', which does not exist)"
                ) from None
            raise SourceMissingError(f"{self.project_file}: {field_name}: '{rel_path}' does not exist") from None
        except PermissionError:
            raise permission_denied(rel_path) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._loop(rel_path, field_name) from None
            raise
        if stat.S_ISREG(st.st_mode):
            self._observe(rel_path, st)
        elif not stat.S_ISDIR(st.st_mode):
            # Reading a FIFO blocks forever, a socket cannot be opened, a device has no end.
            raise ComponentError(
                f"{self.project_file}: {field_name}: '{rel_path}' is not a regular file "
                f"(a {_special_kind(st.st_mode)}); only files and folders are versioned"
            )
        return candidate, st

    def _real_path(self, path: str) -> str:
        """``os.path.realpath``, resolving each folder once: a file that is not a symlink itself
        lies in its folder's real path. A folder's answer holds while it is the same folder (its
        device, inode and ctime, checked per call; an inode number alone may be reused at once),
        so a folder swapped for a symlink, or moved elsewhere, is resolved again."""
        folder, name = os.path.split(path)
        try:
            here = os.lstat(folder)
            if stat.S_ISLNK(here.st_mode) or stat.S_ISLNK(os.lstat(path).st_mode):
                return os.path.realpath(path)
        except OSError:
            return os.path.realpath(path)  # missing, a loop...: the slow path names it
        identity = (here.st_dev, here.st_ino, here.st_ctime_ns)
        known = self._real_folders.get(folder)
        if known is None or known[0] != identity:
            known = (identity, os.path.realpath(folder))
            self._real_folders[folder] = known
        return os.path.join(known[1], name)

    def _loop(self, rel_path: str, field_name: str) -> ComponentError:
        return ComponentError(
            f"{self.project_file}: {field_name}: '{rel_path}' is a symlink loop (it leads back to a folder it is in)"
        )

    def relative(self, path: str | os.PathLike[str]) -> str:
        """The project-relative POSIX path of a path inside the root (ValueError otherwise)."""
        text = os.path.normpath(path)
        if text == self._root_text:
            return "."
        prefix = self._root_text.rstrip(os.sep) + os.sep
        if not text.startswith(prefix):
            raise ValueError(f"{text!r} is not in {self._root_text!r}")
        return text[len(prefix) :].replace(os.sep, "/")

    def _unreadable_folder(self, error: OSError) -> None:
        """``os.walk``'s error handler: a folder that cannot be listed is an error naming it, never
        a folder silently skipped (its files would go unversioned)."""
        if isinstance(error, FileNotFoundError):
            return  # removed while walking: it has no files
        folder = self.relative(Path(error.filename)) if error.filename else "?"
        if isinstance(error, PermissionError):
            raise UsageError(f"{folder}/: permission denied (folder cannot be read)") from None
        raise UsageError(f"{folder}/: folder cannot be read ({error.strerror})") from None

    def _walk(self, folder: Path, field_name: str, enclosing: tuple[str, ...] = (), files: bool = True) -> list[str]:
        """Files below ``folder``; symlinked folders are followed, but one leading back to a folder
        being walked (``enclosing``: the real paths of the folders walked so far) is a loop.
        With ``files`` False, only the folders a ``**`` glob descends into are checked for loops."""
        enclosing = (*enclosing, os.path.realpath(folder))
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder, onerror=self._unreadable_folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS and (files or not d.startswith(".")))
            for name in filenames if files else ():
                if is_temporary_name(name):
                    continue  # tether's own staging file, never part of a snapshot
                rel = self.relative(os.path.join(dirpath, name))
                self.checked(rel, field_name)  # symlinks inside a folder must stay inside too
                found.append(rel)
            for name in dirnames:
                full = Path(dirpath) / name
                if full.is_symlink():
                    rel = self.relative(full)
                    self.resolve(rel, field_name)
                    target = os.path.realpath(full)
                    if any(is_within(walked, target) for walked in (*enclosing, os.path.realpath(dirpath))):
                        raise self._loop(rel, field_name)
                    found.extend(self._walk(full, field_name, enclosing, files))
        return found

    def expand(self, patterns: Iterable[str], field_name: str) -> list[str]:
        wanted = list(patterns)
        found = self._expand(wanted, field_name)
        self.expansions.append((wanted, field_name, found))
        return found

    def _expand(self, patterns: list[str], field_name: str) -> list[str]:
        results: set[str] = set()
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ComponentError(f"{self.project_file}: {field_name}: empty path")
            if any(ch in _GLOB_CHARS for ch in pattern):
                if os.path.isabs(pattern):
                    raise PathEscapeError(f"{self.project_file}: {field_name}: '{pattern}' is absolute; paths are relative to the project")
                if ".." in Path(pattern).parts:
                    raise PathEscapeError(f"{self.project_file}: {field_name}: '{pattern}' leaves the project folder")
                self._check_glob_folders(self.root, Path(pattern).parts)
                self._check_glob_loops(Path(pattern).parts, field_name)
                matched = sorted(glob.glob(str(self.root / pattern), recursive=True))
                files = []
                for match in matched:
                    rel = self.relative(Path(match))
                    if any(part in _IGNORED_DIRS for part in Path(rel).parts) or is_temporary_name(Path(rel).name):
                        continue
                    resolved = self.resolve(rel, field_name)
                    if resolved.is_dir():
                        continue
                    files.append(rel)
                if not files:
                    raise SourceMissingError(f"{self.project_file}: {field_name}: '{pattern}' matches no files")
                results.update(files)
            else:
                resolved = self.resolve(pattern.rstrip("/") or pattern, field_name)
                if resolved.is_dir():
                    files = self._walk(resolved, field_name)
                    if not files:
                        raise SourceMissingError(f"{self.project_file}: {field_name}: folder '{pattern}' is empty")
                    results.update(files)
                else:
                    results.add(self.relative(resolved) if not resolved.is_symlink() else Path(pattern).as_posix())
        return sorted(results)

    def _check_glob_loops(self, parts: tuple[str, ...], field_name: str) -> None:
        """A ``**`` glob follows symlinked folders: through a loop it would list paths nesting the
        loop until the OS refuses, exponentially many with two links. Name the loop instead."""
        if "**" not in parts:
            return
        base = self.root
        for part in parts:
            if any(ch in _GLOB_CHARS for ch in part):
                break
            base = base / part
        if base.is_dir():
            self._walk(base, field_name, files=False)

    def _list_folder(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            self._unreadable_folder(exc)
            return []

    def _check_glob_folders(self, folder: Path, parts: tuple[str, ...]) -> None:
        """Name a folder a glob would have to list but cannot (``glob`` skips it silently, and the
        files below it would go unversioned): the folders the pattern descends into, as ``glob``
        chooses them (hidden names only for a part starting with '.'; symlinked folders not followed)."""
        if not parts:
            return
        head, rest = parts[0], parts[1:]
        if not any(ch in _GLOB_CHARS for ch in head):
            if rest:
                self._check_glob_folders(folder / head, rest)
            return
        entries = self._list_folder(folder)  # glob lists this folder to match ``head``
        if head == "**":
            if rest:
                self._check_glob_folders(folder, rest)
            subfolders = [entry for entry in entries if _descends(entry) and not entry.name.startswith(".")]
            for entry in subfolders:
                self._check_glob_folders(Path(entry.path), parts)
            return
        if not rest:
            return
        for entry in entries:
            hidden_ok = head.startswith(".") or not entry.name.startswith(".")
            if hidden_ok and _descends(entry) and fnmatch.fnmatchcase(entry.name, head):
                self._check_glob_folders(Path(entry.path), rest)

    # -- content -----------------------------------------------------------------------
    def file_entry(self, rel_path: str) -> FileEntry:
        try:
            return self._file_entry(rel_path)
        except PermissionError:
            raise permission_denied(rel_path) from None

    def _file_entry(self, rel_path: str) -> FileEntry:
        path, st = self.checked(rel_path, rel_path)
        executable = bool(st.st_mode & stat.S_IXUSR)
        if self.cache is not None:
            hit = self.cache.get(rel_path, st, "digest")
            if hit is not None:
                self._observe(rel_path, st, hit)
                return FileEntry(rel_path, hit, st.st_size, executable)
        try:
            digest, size = digest_file(path)
        except FileChangedError:
            raise self._changed(rel_path) from None
        self._changed_while_read(rel_path, st, os.stat(path))
        if self.cache is not None:
            self.cache.put(rel_path, st, "digest", digest)
        self._observe(rel_path, st, digest)
        return FileEntry(rel_path, digest, size, executable)

    def file_entry_with(
        self, rel_path: str, key: str, compute: Callable[[FileBlocks], Any]
    ) -> tuple[FileEntry, Any]:
        """The whole-file digest first (unless the stat cache knows it): a byte-identical re-save
        (new mtime, same bytes) then reuses the cached value instead of computing it again."""
        try:
            return self._file_entry_with(rel_path, key, compute)
        except PermissionError:
            raise permission_denied(rel_path) from None

    def _file_entry_with(
        self, rel_path: str, key: str, compute: Callable[[FileBlocks], Any]
    ) -> tuple[FileEntry, Any]:
        path = self.resolve(rel_path, rel_path)
        st = path.stat()
        executable = bool(st.st_mode & stat.S_IXUSR)
        digest, value = None, None
        if self.cache is not None:
            digest, value = self.cache.get(rel_path, st, "digest"), self.cache.get(rel_path, st, key)
            if digest is not None and value is not None:
                self._observe(rel_path, st, digest)
                return FileEntry(rel_path, digest, st.st_size, executable), value
        try:
            with open_blocks(path, rel_path) as blocks:
                before = os.fstat(blocks.fd)
                if digest is None:
                    digest = blocks.digest()
                size = blocks.size
                value = self.cache.by_content(rel_path, digest, key) if self.cache is not None else None
                if value is None:
                    value = compute(blocks)
                after = os.fstat(blocks.fd)
        except FileChangedError:
            raise self._changed(rel_path) from None
        self._changed_while_read(rel_path, before, after)
        self._changed_while_read(rel_path, st, before)
        if self.cache is not None:
            self.cache.put(rel_path, st, "digest", digest)
            self.cache.put(rel_path, st, key, value)
        self._observe(rel_path, st, digest)
        return FileEntry(rel_path, digest, size, executable), value

    def cached(self, rel_path: str, key: str, compute: Callable[[Path], Any]) -> Any:
        try:
            return self._cached(rel_path, key, compute)
        except PermissionError:
            raise permission_denied(rel_path) from None

    def _cached(self, rel_path: str, key: str, compute: Callable[[Path], Any]) -> Any:
        path = self.resolve(rel_path, rel_path)
        st = path.stat()
        if self.cache is not None:
            hit = self.cache.get(rel_path, st, key)
            if hit is not None:
                return hit
        value = compute(path)
        if self.cache is not None:
            self.cache.put(rel_path, st, key, value)
        return value

    def read_bytes(self, rel_path: str) -> bytes:
        path = self.resolve(rel_path, rel_path)
        try:
            return path.read_bytes()
        except PermissionError:
            raise permission_denied(rel_path) from None


def is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or below it (both real, absolute paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _special_kind(mode: int) -> str:
    """What a non-regular, non-folder file is, for an error message."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def _descends(entry: os.DirEntry[str]) -> bool:
    """A real folder tether looks into (a symlink to one is not followed by the readability check)."""
    if entry.name in _IGNORED_DIRS:
        return False
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


class WorkingTreeReader(BlobReader):
    """Reads entries from the working tree (for diffs against uncommitted content)."""

    def __init__(self, tree: WorkingTree, fallback: BlobReader | None = None):
        self.tree = tree
        self.fallback = fallback

    def open(self, entry: FileEntry) -> BinaryIO:
        if self.fallback is not None:
            try:
                return self.fallback.open(entry)
            except (StoreError, FileNotFoundError):
                pass
        try:
            return open(self.tree.resolve(entry.path, entry.path), "rb")
        except PermissionError:
            raise permission_denied(entry.path) from None
