"""What every component kind implements: validate, snapshot, diff, materialize.

A kind never writes to the store itself: :meth:`Kind.snapshot` describes the component as
files (each a digest) plus kind-specific metadata, and the project stores the files. The same
call with no store is the component's *fingerprint* (drift detection), so both agree by design.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

from tether.errors import UsageError
from tether.ids import FileBlocks, digest_json, open_blocks


class ComponentError(UsageError):
    """Bad declaration or bad source content; the message names the file and field.

    A :class:`~tether.UsageError`, so an application catching ``tether.TetherError`` around
    ``Project.add`` or ``commit`` catches it too."""


class PathEscapeError(ComponentError):
    """A component path that leaves the project folder (``..``, absolute, or a symlink outside)."""


class SourceMissingError(ComponentError):
    """A declared path that is not there: a file or folder that does not exist, a glob matching
    no files, an empty folder. (Any other :class:`ComponentError` means the paths are there but
    their content or declaration is rejected.)"""


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot: a POSIX path relative to the project root and its content digest."""

    path: str
    digest: str
    size: int
    executable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "size": self.size, "executable": self.executable}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        return cls(data["path"], data["digest"], int(data["size"]), bool(data.get("executable", False)))


@dataclass(frozen=True)
class Snapshot:
    """A component's content, frozen. Its digest is the digest of :meth:`to_json`."""

    kind: str
    spec: dict[str, Any]
    files: tuple[FileEntry, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "spec": self.spec,
            "files": [entry.to_json() for entry in sorted(self.files, key=lambda e: e.path)],
            "meta": self.meta,
        }

    @property
    def digest(self) -> str:
        return digest_json(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            kind=data["kind"],
            spec=data["spec"],
            files=tuple(FileEntry.from_json(item) for item in data["files"]),
            meta=data.get("meta", {}),
        )

    def file(self, path: str) -> FileEntry | None:
        for entry in self.files:
            if entry.path == path:
                return entry
        return None


Status = Literal["added", "removed", "changed", "unchanged"]


@dataclass
class ComponentDiff:
    """What changed in one component, in the component's own terms.

    ``summary`` is one line; ``flags`` are loud marks (``BREAKING``, ``REBUILD REQUIRED``,
    ``IRREVERSIBLE``); ``details`` are structured changes for ``--json``; ``lines`` are what a
    reviewer reads (a unified diff, ``key: old -> new`` lines, a tensor table row per tensor).
    """

    name: str
    kind: str
    status: Status
    summary: str = ""
    flags: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "summary": self.summary,
            "flags": self.flags,
            "details": self.details,
            "lines": self.lines,
        }


@dataclass(frozen=True)
class PinningFinding:
    """A floating identity (``floating``) or one tether cannot judge (``unknown``)."""

    component: str
    level: Literal["floating", "unknown"]
    message: str


class SnapshotContext(ABC):
    """What a kind may do while snapshotting: read the project's files, safely and cached."""

    root: Path
    project_file: str  # for error messages, e.g. "tether.toml"

    @abstractmethod
    def resolve(self, rel_path: str, field_name: str) -> Path:
        """Absolute path of a project-relative path; raises :class:`PathEscapeError` when it
        leaves the root (``..``, absolute, symlink outside) and :class:`SourceMissingError` when
        it does not exist. ``field_name`` (``components.x.path``) is named in the error."""

    @abstractmethod
    def expand(self, patterns: Iterable[str], field_name: str) -> list[str]:
        """Project-relative POSIX paths of the files named by paths, folders or globs, sorted.

        A folder means every file below it. A pattern matching nothing is a :class:`SourceMissingError`.
        """

    @abstractmethod
    def file_entry(self, rel_path: str) -> FileEntry:
        """Digest, size and mode of a project file (stat-cached; never re-hashed when unchanged)."""

    @abstractmethod
    def cached(self, rel_path: str, key: str, compute: Callable[[Path], Any]) -> Any:
        """A value derived from a file (e.g. a safetensors tensor table), recomputed only when the
        file's stat changes. The value must be canonical-JSON-able."""

    def file_entry_with(
        self, rel_path: str, key: str, compute: Callable[[FileBlocks], Any]
    ) -> tuple[FileEntry, Any]:
        """A file's entry and a value derived from its bytes (e.g. a safetensors tensor table).

        ``compute(blocks)`` reads the open file through :class:`~tether.ids.FileBlocks`. Both
        results are stat-cached like :meth:`file_entry` and :meth:`cached`.
        """
        entry = self.file_entry(rel_path)

        def from_path(path: Path) -> Any:
            with open_blocks(path, rel_path) as blocks:
                return compute(blocks)

        return entry, self.cached(rel_path, key, from_path)

    def read_bytes(self, rel_path: str) -> bytes:
        """A small file's bytes."""
        return self.resolve(rel_path, rel_path).read_bytes()

    def read_text(self, rel_path: str) -> str:
        """A small text file, decoded as UTF-8 (error names the file)."""
        try:
            return self.read_bytes(rel_path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ComponentError(f"{rel_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


class BlobReader(ABC):
    """Reads the bytes behind a :class:`FileEntry`, from the store or the working tree."""

    @abstractmethod
    def open(self, entry: FileEntry) -> BinaryIO:
        """Stream the file's bytes."""

    def read_bytes(self, entry: FileEntry) -> bytes:
        with self.open(entry) as handle:
            return handle.read()

    def read_text(self, entry: FileEntry) -> str | None:
        """UTF-8 text, or None when the file is binary."""
        data = self.read_bytes(entry)
        if b"\x00" in data[:8192]:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None


class Kind(ABC):
    """A component kind. Subclasses are stateless; one instance serves every component."""

    name: ClassVar[str]
    #: keys a declaration may have besides ``kind`` (anything else is an error)
    allowed_keys: ClassVar[frozenset[str]]

    @abstractmethod
    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        """Check a declaration from ``tether.toml`` (without ``kind``) and return the normalized
        spec that goes into the snapshot. Errors name ``components.<name>.<key>``."""

    def spec_from_add(self, component: str, sources: list[str], settings: dict[str, Any]) -> dict[str, Any]:
        """The table that ``tether add KIND NAME SOURCE... --set k=v`` writes.

        Default: one source is ``path``, several are ``paths``; settings are merged in.
        """
        table: dict[str, Any] = {}
        if len(sources) == 1:
            table["path"] = sources[0]
        elif sources:
            table["paths"] = list(sources)
        table.update(settings)
        return table

    @abstractmethod
    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        """Freeze the component: its files (digests only) and kind-specific metadata."""

    @abstractmethod
    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        """Semantic diff. ``old`` None = added, ``new`` None = removed; never both None."""

    def check_pinning(self, component: str, spec: dict[str, Any]) -> list[PinningFinding]:
        """Floating identities in the declaration (models, hub references). Default: none."""
        return []

    def materialize(self, snapshot: Snapshot, write_file: Callable[[FileEntry], None]) -> None:
        """Put the component's content back; ``write_file`` writes one entry to its path."""
        for entry in snapshot.files:
            write_file(entry)


# ---- helpers shared by kinds -------------------------------------------------------------

def check_keys(component: str, table: dict[str, Any], allowed: frozenset[str], required: Iterable[str] = ()) -> None:
    """Unknown keys are errors, not silently ignored; missing required keys too."""
    for key in table:
        if key not in allowed:
            allowed_list = ", ".join(sorted(allowed))
            raise ComponentError(f"tether.toml: components.{component}.{key}: unknown key (allowed: {allowed_list})")
    for key in required:
        if key not in table:
            raise ComponentError(f"tether.toml: components.{component}: missing required key '{key}'")


def require_type(component: str, key: str, value: Any, expected: type | tuple[type, ...], what: str) -> None:
    """Type check of one declaration value with an error naming the field."""
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
        raise ComponentError(f"tether.toml: components.{component}.{key}: expected {what}, got {value!r}")


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def source_patterns(component: str, table: dict[str, Any]) -> list[str]:
    """The ``path`` / ``paths`` of a declaration as a list (exactly one of the two)."""
    if "path" in table and "paths" in table:
        raise ComponentError(f"tether.toml: components.{component}: give either 'path' or 'paths', not both")
    if "path" in table:
        require_type(component, "path", table["path"], str, "a string")
        return [table["path"]]
    if "paths" in table:
        value = table["paths"]
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise ComponentError(f"tether.toml: components.{component}.paths: expected a non-empty list of strings")
        return list(value)
    raise ComponentError(f"tether.toml: components.{component}: missing 'path' (or 'paths')")


def file_status(old: Snapshot | None, new: Snapshot | None) -> Status:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    return "unchanged" if old.digest == new.digest else "changed"


def is_posix_relative(path: str) -> bool:
    """A stored path must be relative, normalized and inside the root (checked again on checkout)."""
    if not path or path.startswith("/") or "\\" in path or os.path.isabs(path):
        return False
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts)
