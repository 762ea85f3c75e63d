"""Open the metadata repository from a SQLAlchemy URL (``sqlite:///...`` by default)."""

from __future__ import annotations

from pathlib import Path

from tether.meta.base import MetadataError, MetadataRepository


def open_metadata(url: str, base: Path, create: bool = False) -> MetadataRepository:
    """The repository at ``url``; a relative SQLite path is taken from ``base`` (the project root).

    ``create`` runs the schema migrations up to the newest revision (``init`` and upgrades).
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url[len("sqlite:///"):]
        url = f"sqlite:///{(base / relative).resolve()}"
    if not (url.startswith("sqlite:") or url.startswith("postgresql")):
        raise MetadataError(f"storage.metadata: unsupported database URL '{url}' (supported: sqlite:///, postgresql+psycopg://)")
    from tether.meta.sql import SqlMetadataRepository

    return SqlMetadataRepository(url, create=create)
