"""The metadata repository interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from tether.errors import TetherError

#: Database handles a forked child inherited and must neither use nor close (see
#: :meth:`MetadataRepository.forget_inherited_connections`): held here for the process's life.
INHERITED_HANDLES: list[object] = []


class MetadataError(TetherError):
    """Base class for metadata failures (an unreachable or unreadable database: exit 2)."""

    exit_code = 2


class BranchConflictError(MetadataError):
    """A compare-and-swap on a branch found another value than the caller expected (a lost race: exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class VersionRecord:
    """A stored version: its ID, content digest, creation time and canonical manifest bytes."""

    version_id: str
    content_digest: str
    created_at: str  # ISO 8601 UTC, as in the manifest
    manifest: bytes  # canonical JSON; hashes to version_id


class MetadataRepository(ABC):
    """Versions, snapshots and branches, with atomic multi-row writes."""

    @abstractmethod
    def put_version(
        self,
        record: VersionRecord,
        parents: list[str],
        snapshots: dict[str, bytes],
        branch: str | None = None,
        expected_branch_target: str | None = None,
    ) -> None:
        """Store a version with its snapshots and, in the same transaction, move ``branch`` to it.

        ``snapshots`` maps snapshot digest -> canonical JSON bytes (existing ones are kept).
        When ``branch`` is given the move is compare-and-swap: the branch must currently point at
        ``expected_branch_target`` (``None`` = must not exist), else :class:`BranchConflictError`
        and nothing is written.
        """

    @abstractmethod
    def get_version(self, version_id: str) -> VersionRecord | None:
        """The version with this exact ID, or None."""

    @abstractmethod
    def find_versions_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Version IDs that start with ``prefix`` (at most ``limit``)."""

    @abstractmethod
    def list_versions(self) -> list[VersionRecord]:
        """Every version, oldest first."""

    @abstractmethod
    def get_parents(self, version_id: str) -> list[str]:
        """Parents in order (first parent first)."""

    @abstractmethod
    def get_snapshot(self, digest: str) -> bytes | None:
        """A snapshot's canonical JSON bytes, or None."""

    @abstractmethod
    def iter_snapshots(self) -> Iterable[tuple[str, bytes]]:
        """Every stored (digest, canonical JSON bytes)."""

    @abstractmethod
    def get_branch(self, name: str) -> str | None:
        """The version a branch points at, or None."""

    @abstractmethod
    def list_branches(self) -> dict[str, str]:
        """Every branch name -> version ID."""

    @abstractmethod
    def set_branch(self, name: str, version_id: str, expected: str | None = None, create_only: bool = False) -> None:
        """Create or move a branch.

        ``create_only``: refuse when the branch exists. Otherwise, when ``expected`` is given, the
        branch must currently point there. Conflicts raise :class:`BranchConflictError`.
        """

    @abstractmethod
    def delete_branch(self, name: str, expected: str | None = None) -> None:
        """Remove a branch (its versions stay). With ``expected``, only while it still points
        there (compare-and-swap, as moves are): else :class:`BranchConflictError`."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def forget_inherited_connections(self) -> None:
        """In a forked child: stop using the connections inherited from the parent, without
        closing them, and open new ones when next needed.

        The parent still uses them: two processes on one PostgreSQL socket interleave their
        messages, and closing it from the child would end the parent's session (SQLite forbids
        using a connection across ``fork`` at all). Inherited handles are kept referenced, so
        garbage collection never closes them either.
        """
