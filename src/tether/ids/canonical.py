"""Canonical JSON: the one byte form that every digest in tether is taken over.

Keys sorted, no insignificant whitespace, UTF-8, no NaN or infinities. Python's float repr is
the shortest round-tripping form on every platform, so numbers encode the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any


class CanonicalEncodingError(ValueError):
    """A value that has no canonical form (NaN, a non-string key, an unknown type)."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalEncodingError(f"{path or '<root>'}: object key {key!r} is not a string")
            _check(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
    elif value is None or isinstance(value, bool | int | float | str):
        return
    else:
        raise CanonicalEncodingError(f"{path or '<root>'}: {type(value).__name__} has no canonical form")


def canonical_json(value: Any) -> str:
    """Encode ``value`` as canonical JSON text."""
    _check(value, "")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / infinity
        raise CanonicalEncodingError(str(exc)) from exc


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (UTF-8)."""
    return canonical_json(value).encode("utf-8")
