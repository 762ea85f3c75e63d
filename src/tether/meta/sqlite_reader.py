"""A read-only :class:`MetadataRepository` over the stdlib ``sqlite3``, for hot read paths.

Importing SQLAlchemy costs more than everything ``tether status`` does on an unchanged tree, so
the quick status path reads the same tables through this class instead. It implements the
repository interface (the single source of truth for what metadata means) for reads; every
write raises :class:`MetadataError`: writers open the SQLAlchemy repository.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tether.meta.base import INHERITED_HANDLES, MetadataError, MetadataRepository, VersionRecord

#: the schema table the SQLAlchemy repository keeps (see tether.meta.sql.VERSION_TABLE)
_SCHEMA_TABLE = "tether_schema_version"
_HEX_PREFIX = re.compile(r"^[0-9a-f]*$")


def sqlite_path(url: str, base: Path) -> Path | None:
    """The database file of a ``sqlite:///`` URL (relative to ``base``), or None for other URLs."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    rest = url[len(prefix) :]
    if not rest or rest == ":memory:":
        return None
    path = Path(rest)
    return path if path.is_absolute() else base / path


class SqliteReader(MetadataRepository):
    """Versions, snapshots and branches read straight from a tether SQLite database."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise MetadataError(f"no metadata database at {path}: run `tether init` to create it")
        try:
            # mode=rw: never create a database; reads only (query_only) all the same
            self._db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA query_only = ON")
            row = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (_SCHEMA_TABLE,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise MetadataError(f"metadata database {path}: {exc}") from None
        if not row or not row[0]:
            self._db.close()
            raise MetadataError(f"no tether metadata in {path}: run `tether init` to create it")
        self._path = path

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise MetadataError(f"metadata database {self._path}: {exc}") from None

    # -- reads ---------------------------------------------------------------------------------

    def get_version(self, version_id: str) -> VersionRecord | None:
        rows = self._rows(
            "SELECT version_id, content_digest, created_at, manifest FROM versions WHERE version_id = ?", (version_id,)
        )
        if not rows:
            return None
        vid, content, created, manifest = rows[0]
        return VersionRecord(str(vid), str(content), str(created), bytes(manifest))  # type: ignore[arg-type]

    def find_versions_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        if not _HEX_PREFIX.match(prefix) or limit <= 0:
            return []
        rows = self._rows(
            "SELECT version_id FROM versions WHERE version_id >= ? AND version_id < ? ORDER BY version_id LIMIT ?",
            (prefix, prefix + "g", limit),
        )
        return [str(row[0]) for row in rows]

    def list_versions(self) -> list[VersionRecord]:
        rows = self._rows(
            "SELECT version_id, content_digest, created_at, manifest FROM versions ORDER BY created_at, version_id"
        )
        return [VersionRecord(str(a), str(b), str(c), bytes(d)) for a, b, c, d in rows]  # type: ignore[arg-type]

    def get_parents(self, version_id: str) -> list[str]:
        rows = self._rows("SELECT parent_id FROM version_parents WHERE version_id = ? ORDER BY position", (version_id,))
        return [str(row[0]) for row in rows]

    def get_snapshot(self, digest: str) -> bytes | None:
        rows = self._rows("SELECT body FROM snapshots WHERE digest = ?", (digest,))
        return bytes(rows[0][0]) if rows else None  # type: ignore[arg-type]

    def iter_snapshots(self) -> Iterator[tuple[str, bytes]]:
        for digest, body in self._rows("SELECT digest, body FROM snapshots ORDER BY digest"):
            yield str(digest), bytes(body)  # type: ignore[arg-type]

    def get_branch(self, name: str) -> str | None:
        rows = self._rows("SELECT version_id FROM branches WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def list_branches(self) -> dict[str, str]:
        return {str(name): str(vid) for name, vid in self._rows("SELECT name, version_id FROM branches ORDER BY name")}

    # -- writes: not here --------------------------------------------------------------------------

    def _read_only(self) -> MetadataError:
        return MetadataError(f"metadata database {self._path} is open read-only here")

    def put_version(
        self,
        record: VersionRecord,
        parents: list[str],
        snapshots: dict[str, bytes],
        branch: str | None = None,
        expected_branch_target: str | None = None,
    ) -> None:
        raise self._read_only()

    def set_branch(self, name: str, version_id: str, expected: str | None = None, create_only: bool = False) -> None:
        raise self._read_only()

    def delete_branch(self, name: str, expected: str | None = None) -> None:
        raise self._read_only()

    def close(self) -> None:
        self._db.close()

    def forget_inherited_connections(self) -> None:
        INHERITED_HANDLES.append(self._db)
        self._db = sqlite3.connect(f"file:{self._path}?mode=rw", uri=True, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA query_only = ON")
