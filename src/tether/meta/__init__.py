"""Metadata: versions, snapshots and branches.

The embedded default is SQLite through SQLAlchemy with Alembic migrations; PostgreSQL is the
same code with another URL. Everything goes through :class:`MetadataRepository`.
"""

from tether.meta.base import (
    BranchConflictError,
    MetadataError,
    MetadataRepository,
    VersionRecord,
)
from tether.meta.open import open_metadata

__all__ = ["BranchConflictError", "MetadataError", "MetadataRepository", "VersionRecord", "open_metadata"]
