"""The ``[audit]`` table of ``tether.toml``: validated strictly, then resolved against the tier.

```toml
[audit]
durability = "sync"                    # sync | batched   (default: sync in regulated, batched otherwise)
payloads = "none"                      # none | input | output | both: whose content is kept (default none)
retention_days = 3650                  # purge records older than this, never younger (default 3650 in regulated)
checkpoint_export_interval = "24h"     # how often a checkpoint must be exported (required in regulated)
origin = "example.com/support-bot"     # the checkpoint origin line (default tether.local/<project>/audit)
batch_size = 4096                      # batched: the bounded queue's size
batch_interval_ms = 50                 # batched: how long the background writer gathers records
otel = false                           # also emit every record as an OpenTelemetry span
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import UsageError

DURABILITY = ("sync", "batched")
PAYLOADS = ("none", "input", "output", "both")
REGULATED_RETENTION_DAYS = 3650
_KEYS = (
    "durability",
    "payloads",
    "retention_days",
    "checkpoint_export_interval",
    "origin",
    "batch_size",
    "batch_interval_ms",
    "otel",
)
_INTERVAL = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _error(path: Path, key: str, message: str) -> UsageError:
    return UsageError(f"{path.name}: audit.{key}: {message}")


def parse_interval(value: Any) -> int | None:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"1w"``; None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        match = _INTERVAL.match(value.strip())
        if match and int(match.group(1)) > 0:
            return int(match.group(1)) * _UNITS[match.group(2)]
    return None


def check_origin(origin: str) -> bool:
    return bool(origin) and not any(ch.isspace() or ch == "+" for ch in origin) and all(ord(ch) >= 0x20 for ch in origin)


def validate_section(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check every key of ``[audit]``; returns the table normalized (intervals in seconds)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise _error(path, key, f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
        if key == "durability":
            if value not in DURABILITY:
                raise _error(path, key, f"'{value}' is not one of {', '.join(DURABILITY)}")
        elif key == "payloads":
            if value not in PAYLOADS:
                raise _error(path, key, f"'{value}' is not one of {', '.join(PAYLOADS)}")
        elif key in ("retention_days", "batch_size", "batch_interval_ms"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _error(path, key, f"expected a positive whole number, got {value!r}")
        elif key == "checkpoint_export_interval":
            seconds = parse_interval(value)
            if seconds is None:
                raise _error(path, key, f"expected seconds or a duration like '24h', '7d', got {value!r}")
            value = seconds
        elif key == "origin":
            if not isinstance(value, str) or not check_origin(value):
                raise _error(path, key, "expected a non-empty string without spaces or '+' (e.g. 'example.com/my-log')")
        elif key == "otel" and not isinstance(value, bool):
            raise _error(path, key, f"expected true or false, got {value!r}")
        out[key] = value
    return out


def default_origin(project_name: str) -> str:
    cleaned = re.sub(r"[\s+]+", "-", project_name.strip()) or "project"
    return f"tether.local/{cleaned}/audit"


@dataclass(frozen=True)
class AuditSettings:
    """The ``[audit]`` table with the tier's defaults applied."""

    tier: str
    durability: str
    payloads: str
    retention_days: int | None
    checkpoint_export_interval: int | None
    origin: str
    batch_size: int = 4096
    batch_interval_ms: int = 50
    otel: bool = False

    @property
    def keeps_input(self) -> bool:
        return self.payloads in ("input", "both")

    @property
    def keeps_output(self) -> bool:
        return self.payloads in ("output", "both")

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_settings(section: dict[str, Any] | None, tier: str, project_name: str, path: Path | None = None) -> AuditSettings:
    """Apply the tier's defaults; ``regulated`` requires a declared checkpoint export interval."""
    section = dict(section or {})
    where = path or Path("tether.toml")
    interval = section.get("checkpoint_export_interval")
    if tier == "regulated" and interval is None:
        raise _error(where, "checkpoint_export_interval", "required in tier 'regulated' (e.g. checkpoint_export_interval = \"24h\")")
    return AuditSettings(
        tier=tier,
        durability=section.get("durability", "sync" if tier == "regulated" else "batched"),
        payloads=section.get("payloads", "none"),
        retention_days=section.get("retention_days", REGULATED_RETENTION_DAYS if tier == "regulated" else None),
        checkpoint_export_interval=interval,
        origin=section.get("origin", default_origin(project_name)),
        batch_size=section.get("batch_size", 4096),
        batch_interval_ms=section.get("batch_interval_ms", 50),
        otel=section.get("otel", False),
    )
