"""Importing a user's runner or scorer from ``package.module:function``.

The project root goes on ``sys.path`` first, because a runner usually lives next to
``tether.toml`` (the application's own code), and users expect ``support_runner:answer`` to be
found there as it would be by ``python -m`` from that folder.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.errors import UsageError
from tether.repro.config import check_callable_spec


def put_on_path(root: Path) -> None:
    """Make modules in ``root`` importable (once; at the front, like the script folder of ``python``)."""
    entry = str(root)
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()


def load_callable(spec: str, where: str, root: Path | None = None) -> Callable[..., Any]:
    """The function ``spec`` names; a :class:`UsageError` naming ``where`` when it cannot be had."""
    check_callable_spec(spec, where)
    module_name, attribute = spec.split(":", 1)
    if root is not None:
        put_on_path(root)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"{where}: cannot import '{spec}': no module named '{exc.name}'") from exc
    except Exception as exc:
        raise UsageError(f"{where}: importing '{module_name}' failed: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise UsageError(f"{where}: module '{module_name}' has no attribute '{attribute}'") from exc
    if not callable(target):
        raise UsageError(f"{where}: '{spec}' is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


def accepts_keyword(function: Callable[..., Any], name: str) -> bool:
    """True when ``function`` takes ``name=`` (explicitly or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == name and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return True
    return False
