"""The kinds tether knows, imported only when a component of that kind is touched."""

from __future__ import annotations

import importlib
from functools import cache

from tether.components.base import ComponentError, Kind

KIND_MODULES: dict[str, str] = {
    "prompt": "tether.components.prompt:PromptKind",
    "config": "tether.components.config:ConfigKind",
    "tools": "tether.components.tools:ToolsKind",
    "model": "tether.components.model:ModelKind",
    "index": "tether.components.index:IndexKind",
    "evalset": "tether.components.evalset:EvalsetKind",
    "migration": "tether.components.migration:MigrationKind",
    "files": "tether.components.files:FilesKind",
}


@cache
def get_kind(name: str) -> Kind:
    """The kind called ``name``; an unknown kind is a :class:`ComponentError` listing the known ones."""
    target = KIND_MODULES.get(name)
    if target is None:
        known = ", ".join(sorted(KIND_MODULES))
        raise ComponentError(f"unknown kind '{name}' (known kinds: {known})")
    module_name, class_name = target.split(":")
    kind_class = getattr(importlib.import_module(module_name), class_name)
    return kind_class()
