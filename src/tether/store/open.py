"""Open an object store from a URL: a plain path or ``file://`` is the local folder store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tether.store.base import ObjectStore, StoreError


def open_store(url: str, base: Path) -> ObjectStore:
    """The store at ``url``; relative paths are taken from ``base`` (the project root)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from tether.store.local import LocalObjectStore

        raw = parsed.path if parsed.scheme == "file" else url
        path = Path(raw)
        return LocalObjectStore(path if path.is_absolute() else base / path)
    raise StoreError(f"storage.objects: unsupported store URL scheme '{parsed.scheme}' in '{url}' (supported: a local path)")
