"""Open an object store from a URL: a plain path or ``file://`` is the local folder store."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from tether.store.base import ObjectStore, StoreError

#: ``TETHER_DELTAS=0`` stores changed tensors whole (tensor and chunk dedup only), e.g. to
#: measure what the deltas save, or when checkout speed matters more than disk.
DELTAS_ENV = "TETHER_DELTAS"


def open_store(url: str, base: Path) -> ObjectStore:
    """The store at ``url``; relative paths are taken from ``base`` (the project root)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from tether.store.local import LocalObjectStore

        raw = parsed.path if parsed.scheme == "file" else url
        path = Path(raw)
        deltas = os.environ.get(DELTAS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
        return LocalObjectStore(path if path.is_absolute() else base / path, deltas=deltas)
    raise StoreError(f"storage.objects: unsupported store URL scheme '{parsed.scheme}' in '{url}' (supported: a local path)")
