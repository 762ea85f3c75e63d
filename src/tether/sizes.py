"""Sizes as people read them, written one way everywhere: decimal (SI) units, ``kB`` not ``KB``."""

from __future__ import annotations


def human_bytes(size: int) -> str:
    """Exact bytes below 1 kB (``999 B``), else decimal units with one decimal: ``1.5 MB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
