"""Fixtures for the file-based kind tests: a project folder that snapshots and diffs components.

``tree`` writes files into a fresh project folder and snapshots components in it; every file
a snapshot names is kept in an in-memory blob store, so a diff can read the old side after
the working tree has been edited (as a diff against a committed version would).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tether.components.base import BlobReader, ComponentDiff, FileEntry, Snapshot
from tether.components.registry import get_kind
from tether.project.worktree import WorkingTree


class MemoryBlobs(BlobReader):
    """Blobs by digest, captured at snapshot time."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def open(self, entry: FileEntry) -> BinaryIO:
        if entry.digest not in self.blobs:
            raise KeyError(entry.digest)
        return io.BytesIO(self.blobs[entry.digest])


class KindTree:
    """A project folder plus helpers to write files, snapshot components and diff snapshots."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.reader = MemoryBlobs()

    @property
    def ctx(self) -> WorkingTree:
        return WorkingTree(self.root)

    def write(self, rel: str, content: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
        return path

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def symlink(self, rel: str, target: Path) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return path

    def validate(self, kind: str, table: dict[str, Any], component: str = "c") -> dict[str, Any]:
        return get_kind(kind).validate(component, dict(table))

    def snapshot(self, kind: str, table: dict[str, Any], component: str = "c") -> Snapshot:
        """Validate a declaration, snapshot it, and keep its files' bytes for later diffs."""
        spec = self.validate(kind, table, component)
        snap = get_kind(kind).snapshot(component, spec, self.ctx)
        for entry in snap.files:
            self.reader.blobs[entry.digest] = (self.root / entry.path).read_bytes()
        return snap

    def diff(self, kind: str, old: Snapshot | None, new: Snapshot | None, component: str = "c") -> ComponentDiff:
        return get_kind(kind).diff(component, old, new, self.reader)


@pytest.fixture
def tree(tmp_path: Path) -> KindTree:
    """A fresh project folder (``tmp_path/project``) for kind tests."""
    return KindTree(tmp_path / "project")


@pytest.fixture
def tree_factory(tmp_path: Path) -> Callable[[str], KindTree]:
    """More project folders side by side (``tree_factory("a")``), e.g. for digest stability."""

    def make(name: str) -> KindTree:
        return KindTree(tmp_path / name)

    return make


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    """A file outside every project folder, for symlink-escape tests."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("secret\n", encoding="utf-8")
    return path
