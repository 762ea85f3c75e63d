"""A stat cache: values derived from a file, reused while (size, mtime_ns, inode, ctime_ns) hold.

It lives in ``.tether/cache/`` on the local machine only, never in the shared metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tether.store.atomic import atomic_write_bytes


class StatCache:
    """Maps a project-relative path and its stat signature to derived values (digest, tables)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if self.path.exists():
            try:
                self._entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._entries = {}  # a broken cache is only a slower status

    @staticmethod
    def _signature(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    def get(self, rel_path: str, st: os.stat_result, key: str) -> Any:
        entry = self._entries.get(rel_path)
        if entry is None or entry.get("sig") != self._signature(st):
            return None
        return entry.get("values", {}).get(key)

    def put(self, rel_path: str, st: os.stat_result, key: str, value: Any) -> None:
        signature = self._signature(st)
        entry = self._entries.get(rel_path)
        if entry is None or entry.get("sig") != signature:
            entry = {"sig": signature, "values": {}}
            self._entries[rel_path] = entry
        entry["values"][key] = value
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(self._entries, separators=(",", ":")).encode("utf-8"), durable=False)
        self._dirty = False
