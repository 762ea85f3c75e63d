"""Attribution records in an append-only, tamper-evident log: which version decided each request.

``AuditLog.open(project_dir)`` gives the recording API (context manager, decorator, plain
function, ASGI middleware in :mod:`tether.audit.asgi`); the log is an RFC 9162 Merkle tree with
C2SP signed checkpoints, and can be queried, proven, verified, purged and exported. Heavy modules
load on first use so ``import tether.audit`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.audit.log import AuditLog, AuditWriteError, Recording, open_log
    from tether.audit.records import AuditRecordError, Record

__all__ = ["AuditLog", "AuditRecordError", "AuditWriteError", "Record", "Recording", "open_log"]


def __getattr__(name: str) -> Any:
    if name in ("AuditLog", "AuditWriteError", "Recording", "open_log"):
        from tether.audit import log

        return getattr(log, name)
    if name in ("AuditRecordError", "Record"):
        from tether.audit import records

        return getattr(records, name)
    raise AttributeError(f"module 'tether.audit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so ``dir()`` and notebook completion show ``AuditLog``."""
    return sorted({*globals(), *__all__})
