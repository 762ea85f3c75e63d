"""The ``files`` kind: any other files that change behavior, tracked by per-file digests.

Not every behavior-changing file has a kind of its own (a lookup table, a stop-word list, an
image the UI shows the model). Declaring them as ``files`` still versions them byte for byte,
and the diff stays readable: text files get unified diffs (capped per file so a large data
file cannot flood a review), binary files their sizes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    Kind,
    Snapshot,
    SnapshotContext,
    check_keys,
    file_status,
)
from tether.components.textdiff import (
    diff_file_sets,
    join_summary,
    normalize_sources,
    snapshot_files,
    sources_field,
    spec_changes,
    spec_patterns,
    spec_summary,
    summarize_file_changes,
)

#: diff lines shown per file before ``... (N more lines)``
MAX_DIFF_LINES = 200


class FilesKind(Kind):
    """Arbitrary files: added, removed and changed files with sizes and text diffs."""

    name: ClassVar[str] = "files"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"path", "paths"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys)
        return normalize_sources(component, table)

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        paths = ctx.expand(spec_patterns(spec), sources_field(component, spec))
        return Snapshot(kind=self.name, spec=spec, files=tuple(ctx.file_entry(rel) for rel in paths))

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged")
        details, lines = spec_changes(old, new)
        changes = diff_file_sets(snapshot_files(old), snapshot_files(new), reader, MAX_DIFF_LINES)
        for change in changes:
            details.append(change.to_detail())
            lines.extend(change.lines)
        summary = join_summary([summarize_file_changes(changes), spec_summary(details)])
        return ComponentDiff(component, self.name, status, summary or "changed", [], details, lines)
