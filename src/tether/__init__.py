"""tether: version control for AI systems.

Heavy modules are imported lazily so that ``tether --help`` and ``import tether`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from tether.errors import CheckFailedError, DriftError, TetherError, UsageError, VerificationError

if TYPE_CHECKING:
    from tether.lifecycle.runtime import resolve
    from tether.project.core import Project

__all__ = [
    "CheckFailedError",
    "DriftError",
    "Project",
    "TetherError",
    "UsageError",
    "VerificationError",
    "__version__",
    "resolve",
]


def __getattr__(name: str) -> Any:
    if name == "Project":
        from tether.project.core import Project

        return Project
    if name == "resolve":
        from tether.lifecycle.runtime import resolve

        globals()["resolve"] = resolve  # later lookups skip this hook: a warm resolve stays sub-microsecond
        return resolve
    raise AttributeError(f"module 'tether' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so ``dir()``, ``help()`` and notebook completion show ``resolve``."""
    return sorted({*globals(), *__all__})
