"""A stat cache: values derived from a file, reused while (size, mtime_ns, inode, ctime_ns, mode) hold.

It lives in ``.tether/cache/`` on the local machine only, never in the shared metadata.

A signature is only worth caching once it can no longer describe other content: a file written
again within the same timestamp tick keeps its size and times (the "racily clean" problem Git
has too). So a value is cached only when the file's mtime and ctime are older than
:data:`RACY_NS` before the moment it is cached; a file that fresh is simply hashed again next
time. ``status --verify`` and ``fsck`` never consult the cache.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tether.store.atomic import atomic_write_bytes

#: a signature younger than this (ns) may still change without changing (coarse file timestamps)
RACY_NS = 50_000_000


def signature(st: os.stat_result) -> list[int]:
    """What must stay equal for a cached value to hold: size, mtime, inode, ctime (ns) and the
    mode (a permission-only change, ``chmod +x``, is a change a snapshot records)."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode]


def settled(st: os.stat_result, now_ns: int | None = None) -> bool:
    """True when the file's timestamps are old enough that any later write must change them."""
    now = time.time_ns() if now_ns is None else now_ns
    return max(st.st_mtime_ns, st.st_ctime_ns) < now - RACY_NS


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
        return signature(st)

    def get(self, rel_path: str, st: os.stat_result, key: str) -> Any:
        entry = self._entries.get(rel_path)
        if entry is None or entry.get("sig") != self._signature(st):
            return None
        return entry.get("values", {}).get(key)

    def put(self, rel_path: str, st: os.stat_result, key: str, value: Any) -> None:
        """Remember ``value`` for this signature, unless the file is too fresh to trust it."""
        if not settled(st):
            return
        sig = self._signature(st)
        entry = self._entries.get(rel_path)
        if entry is None or entry.get("sig") != sig:
            entry = {"sig": sig, "values": {}}
            self._entries[rel_path] = entry
        entry["values"][key] = value
        self._dirty = True

    def by_content(self, rel_path: str, digest: str, key: str) -> Any:
        """A value cached for this path under any signature, when the bytes it was derived from
        had ``digest``: a re-saved file with the same content needs no recomputation."""
        values = self._entries.get(rel_path, {}).get("values", {})
        return values.get(key) if values.get("digest") == digest else None

    def carry_over(self, rel_path: str, st: os.stat_result, digest: str) -> None:
        """The file got a new signature but was re-hashed to the same ``digest``: every value
        derived from its bytes still holds, so move them to the new signature."""
        entry = self._entries.get(rel_path)
        if entry is None or entry.get("values", {}).get("digest") != digest or not settled(st):
            return
        self._entries[rel_path] = {"sig": self._signature(st), "values": entry["values"]}
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(self._entries, separators=(",", ":")).encode("utf-8"), durable=False)
        self._dirty = False
