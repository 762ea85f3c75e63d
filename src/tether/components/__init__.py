"""Component kinds: one module per kind, each able to snapshot, fingerprint, diff and materialize."""

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    FileEntry,
    Kind,
    PathEscapeError,
    PinningFinding,
    Snapshot,
    SnapshotContext,
    SourceMissingError,
)
from tether.components.registry import KIND_MODULES, get_kind

__all__ = [
    "KIND_MODULES",
    "BlobReader",
    "ComponentDiff",
    "ComponentError",
    "FileEntry",
    "Kind",
    "PathEscapeError",
    "PinningFinding",
    "Snapshot",
    "SnapshotContext",
    "SourceMissingError",
    "get_kind",
]
