"""tether: version control for AI systems.

Heavy modules are imported lazily so that ``tether --help`` and ``import tether`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tether.project.core import Project

__all__ = ["Project", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Project":
        from tether.project.core import Project

        return Project
    raise AttributeError(f"module 'tether' has no attribute {name!r}")
