"""What a runner sees of a version: a small read-only view over its materialized content.

The eval executor checks the version out (verified, byte for byte) into a temporary folder and
hands the runner a :class:`VersionView`, so a runner reads exactly the version it is judged as,
never the working tree. The view is deliberately small:

- ``view.version_id`` and ``view.root`` (the folder holding the version's files);
- ``view.components``: component name -> kind;
- ``view.prompt(name)``: the prompt's text (``file=`` picks one file of a multi-file prompt);
- ``view.config(name)``: the parsed config as a dict (a fresh copy on each call);
- ``view.model(name)``: a :class:`ModelRef` (``.provider``, ``.id``, ``.hub``, ``.revision``, ``.path``);
- ``view.files(name)`` / ``view.path(name)``: the component's files inside ``root``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.components import Snapshot


class VersionAccessError(LookupError):
    """A runner asked the view for a component the version does not have (or not of that kind)."""


@dataclass(frozen=True)
class ModelRef:
    """A model component: hosted (``provider`` + ``id``), hub (``hub`` + ``revision``) or weights (``path``)."""

    name: str
    provider: str | None = None
    id: str | None = None
    hub: str | None = None
    revision: str | None = None
    path: Path | None = None  # the weights, inside the materialized version
    spec: dict[str, Any] = field(default_factory=dict)


class VersionView:
    """Read-only access to one materialized version (see the module docstring)."""

    def __init__(self, version_id: str, root: Path, snapshots: dict[str, Snapshot]) -> None:
        self._version_id = version_id
        self._root = root
        self._snapshots = dict(snapshots)

    @property
    def version_id(self) -> str:
        return self._version_id

    @property
    def root(self) -> Path:
        return self._root

    @property
    def components(self) -> dict[str, str]:
        return {name: snap.kind for name, snap in sorted(self._snapshots.items())}

    def __repr__(self) -> str:
        return f"VersionView({self._version_id[:12]}, {self._root})"

    def _snapshot(self, name: str, kind: str | None = None) -> Snapshot:
        snap = self._snapshots.get(name)
        if snap is None:
            known = ", ".join(sorted(self._snapshots)) or "none"
            raise VersionAccessError(f"version {self._version_id[:12]} has no component '{name}' (it has: {known})")
        if kind is not None and snap.kind != kind:
            raise VersionAccessError(f"component '{name}' is a {snap.kind}, not a {kind}")
        return snap

    def files(self, name: str) -> list[Path]:
        """The component's files in the materialized version, sorted by path."""
        return [self._root / entry.path for entry in sorted(self._snapshot(name).files, key=lambda e: e.path)]

    def path(self, name: str) -> Path:
        """The component's single file (a weights folder for a folder model)."""
        snap = self._snapshot(name)
        declared = snap.spec.get("path")
        if isinstance(declared, str):
            return self._root / declared.rstrip("/")
        files = self.files(name)
        if len(files) != 1:
            raise VersionAccessError(f"component '{name}' has {len(files)} files; use files('{name}')")
        return files[0]

    def prompt(self, name: str, file: str | None = None) -> str:
        """The prompt's text; ``file`` (a project-relative path) picks one of several files."""
        snap = self._snapshot(name, "prompt")
        entries = sorted(snap.files, key=lambda e: e.path)
        if file is not None:
            entries = [entry for entry in entries if entry.path == file]
            if not entries:
                raise VersionAccessError(f"prompt '{name}' has no file '{file}'")
        if len(entries) != 1:
            listed = ", ".join(entry.path for entry in entries)
            raise VersionAccessError(f"prompt '{name}' has several files ({listed}); pass file=")
        return (self._root / entries[0].path).read_text(encoding="utf-8")

    def config(self, name: str) -> dict[str, Any]:
        """The parsed configuration (YAML, JSON or TOML) as a dict."""
        snap = self._snapshot(name, "config")
        return copy.deepcopy(snap.meta["value"])

    def model(self, name: str) -> ModelRef:
        snap = self._snapshot(name, "model")
        spec = dict(snap.spec)
        weights = spec.get("path")
        return ModelRef(
            name=name,
            provider=spec.get("provider"),
            id=spec.get("id"),
            hub=spec.get("hub"),
            revision=spec.get("revision"),
            path=self._root / weights.rstrip("/") if isinstance(weights, str) else None,
            spec=spec,
        )
