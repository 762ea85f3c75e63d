"""The ``migration`` kind: an external change a version depends on, with ``up`` and optional ``down``.

A version may need a database schema or a downstream contract that lives outside the project.
Rolling back past such a version is only safe when the change can be undone, so the snapshot
records whether a ``down`` script exists, and every diff whose new side has none is flagged
``IRREVERSIBLE`` for the promote and rollback checks to see.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    FileEntry,
    Kind,
    Snapshot,
    SnapshotContext,
    check_keys,
    file_status,
    require_type,
)
from tether.components.textdiff import (
    FileChange,
    diff_entries,
    join_summary,
    normalize_path,
    spec_changes,
)

IRREVERSIBLE = "IRREVERSIBLE"
ROLES = ("up", "down")


class MigrationKind(Kind):
    """An ``up`` script and an optional ``down`` script; no ``down`` means irreversible."""

    name: ClassVar[str] = "migration"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"up", "down", "description"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys, required=("up",))
        spec: dict[str, Any] = {"up": normalize_path(component, "up", table["up"])}
        if "down" in table:
            spec["down"] = normalize_path(component, "down", table["down"])
            if spec["down"] == spec["up"]:
                raise ComponentError(f"tether.toml: components.{component}.down: the same file as 'up'")
        if "description" in table:
            require_type(component, "description", table["description"], str, "a string")
            spec["description"] = table["description"]
        return spec

    def spec_from_add(self, component: str, sources: list[str], settings: dict[str, Any]) -> dict[str, Any]:
        """``tether add migration NAME UP [DOWN]``."""
        if len(sources) > 2:
            raise ComponentError(f"components.{component}: a migration takes an up script and an optional down script")
        table: dict[str, Any] = dict(zip(ROLES, sources, strict=False))
        table.update(settings)
        return table

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        files: list[FileEntry] = []
        for role in ROLES:
            if role not in spec:
                continue
            rel = spec[role]
            if ctx.resolve(rel, f"components.{component}.{role}").is_dir():
                raise ComponentError(
                    f"{ctx.project_file}: components.{component}.{role}: '{rel}' is a folder; expected a file"
                )
            files.append(ctx.file_entry(rel))
        return Snapshot(kind=self.name, spec=spec, files=tuple(files), meta={"reversible": "down" in spec})

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        side = new if new is not None else old
        assert side is not None
        flags = [] if side.meta.get("reversible") else [IRREVERSIBLE]
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged", flags)
        details: list[dict[str, Any]] = []
        lines: list[str] = []
        parts: list[str] = []
        for role in ROLES:
            change = diff_entries(_role_entry(old, role), _role_entry(new, role), reader)
            if change is None:
                continue
            details.append({**change.to_detail(), "type": "script", "role": role})
            lines.extend(change.lines)
            parts.append(_role_summary(role, change))
        spec_details, spec_lines = spec_changes(old, new)
        for detail, line in zip(spec_details, spec_lines, strict=True):
            if detail["key"] in ROLES:
                continue  # shown by the script diff (a rename or an added/removed script)
            details.append(detail)
            lines.append(line)
            parts.append(f"{detail['key']} changed")
        if flags:
            parts.append("irreversible (no down)")
        summary = join_summary(parts)
        return ComponentDiff(component, self.name, status, summary or "changed", flags, details, lines)


def _role_entry(snapshot: Snapshot | None, role: str) -> FileEntry | None:
    if snapshot is None or role not in snapshot.spec:
        return None
    return snapshot.file(snapshot.spec[role])


def _role_summary(role: str, change: FileChange) -> str:
    if change.change == "mode":
        return f"{role} mode changed"
    if change.old is not None and change.new is not None and change.old.path != change.new.path:
        verb = f"renamed {change.old.path} -> {change.new.path}"
        if change.old.digest == change.new.digest:
            return f"{role} {verb}"
        return f"{role} {verb}, changed (+{change.added_lines} -{change.removed_lines} lines)"
    if change.change == "changed" and not change.binary:
        return f"{role} changed (+{change.added_lines} -{change.removed_lines} lines)"
    return f"{role} {change.change}"
