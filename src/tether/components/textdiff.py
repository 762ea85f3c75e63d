"""Per-file diffs and path declarations shared by the file-based kinds.

``prompt``, ``migration`` and ``files`` all show the same thing when their files change: which
files were added, removed or changed, and a unified text diff (or sizes, for binary files). It
is written once here so the three read alike. The normalization of ``path`` / ``paths``
declarations lives here too, because every kind that reads project files needs it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.components.base import (
    BlobReader,
    ComponentError,
    FileEntry,
    PathEscapeError,
    Snapshot,
    require_type,
    source_patterns,
)
from tether.ids import canonical_json
from tether.sizes import human_bytes
from tether.store.base import ObjectMissingError

#: lines of context around each hunk, as ``diff -u`` and ``git diff``
CONTEXT_LINES = 3
#: files larger than this are not text-diffed (sizes are shown instead)
TEXT_DIFF_MAX_BYTES = 4 * 1024 * 1024
NO_NEWLINE = "\\ No newline at end of file"
#: longest rendering of one value in a review line (details keep the full value)
VALUE_DISPLAY_MAX = 120

FileChangeKind = Literal["added", "removed", "changed", "mode"]


# ---- declarations ------------------------------------------------------------------------

def normalize_path(component: str, key: str, value: Any) -> str:
    """One declared project path: a non-empty relative string, trailing ``/`` stripped.

    Absolute paths and ``..`` are refused here already (the working tree checks again, and
    also catches symlinks that point outside).
    """
    require_type(component, key, value, str, "a string")
    field_name = f"tether.toml: components.{component}.{key}"
    if not value.strip():
        raise ComponentError(f"{field_name}: expected a non-empty path")
    if os.path.isabs(value) or value.startswith(("/", "\\")):
        raise PathEscapeError(f"{field_name}: '{value}' is absolute; paths are relative to the project")
    if ".." in value.replace("\\", "/").split("/"):
        raise PathEscapeError(f"{field_name}: '{value}' leaves the project folder")
    return value.rstrip("/") or value


def normalize_sources(component: str, table: dict[str, Any]) -> dict[str, Any]:
    """The normalized ``path`` or ``paths`` entry of a declaration (whichever was given)."""
    patterns = source_patterns(component, table)
    if "path" in table:
        return {"path": normalize_path(component, "path", patterns[0])}
    normalized = [normalize_path(component, f"paths[{index}]", item) for index, item in enumerate(patterns)]
    return {"paths": normalized}


def spec_patterns(spec: dict[str, Any]) -> list[str]:
    """The patterns of a normalized spec's ``path`` / ``paths``."""
    return [spec["path"]] if "path" in spec else list(spec["paths"])


def sources_field(component: str, spec: dict[str, Any]) -> str:
    """The field name to cite in errors about a spec's sources."""
    return f"components.{component}.{'path' if 'path' in spec else 'paths'}"


# ---- text diffs --------------------------------------------------------------------------

def split_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept; only ``\\n`` separates lines (unlike ``str.splitlines``)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def unified_diff(old_text: str, new_text: str, old_label: str, new_label: str) -> list[str]:
    """A unified diff (headers, hunks, 3 lines of context) as lines without line endings.

    A last line without a newline is followed by ``\\ No newline at end of file``, as in Git,
    so applying the diff reproduces the new text exactly. Equal texts give no lines.
    """
    out: list[str] = []
    raw = difflib.unified_diff(
        split_lines(old_text), split_lines(new_text), old_label, new_label, n=CONTEXT_LINES, lineterm=""
    )
    for index, line in enumerate(raw):
        if index < 2 or line.startswith("@@"):
            out.append(line)
        elif line.endswith("\n"):
            out.append(line[:-1])
        else:
            out.append(line)
            out.append(NO_NEWLINE)
    return out


def count_changed_lines(diff_lines: Iterable[str]) -> tuple[int, int]:
    """Lines added and removed in a unified diff from :func:`unified_diff`."""
    added = removed = 0
    for index, line in enumerate(diff_lines):
        if index < 2:
            continue  # --- / +++ headers
        if line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return added, removed


def cap_lines(diff_lines: list[str], max_lines: int | None) -> list[str]:
    """At most ``max_lines`` lines after the headers, then ``... (N more lines)``."""
    if max_lines is None or len(diff_lines) <= max_lines + 2:
        return diff_lines
    kept = diff_lines[: max_lines + 2]
    return [*kept, f"... ({len(diff_lines) - len(kept)} more lines)"]


def display_value(value: Any) -> str:
    """A value as compact JSON for a review line, shortened when long."""
    text = canonical_json(value)
    if len(text) > VALUE_DISPLAY_MAX:
        return text[: VALUE_DISPLAY_MAX - 3] + "..."
    return text


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


# ---- per-file changes --------------------------------------------------------------------

@dataclass
class FileChange:
    """One file's change: what happened, line counts for text, and the lines to show."""

    path: str
    change: FileChangeKind
    old: FileEntry | None
    new: FileEntry | None
    binary: bool = False
    added_lines: int = 0
    removed_lines: int = 0
    lines: list[str] = field(default_factory=list)
    old_path: str | None = None

    def to_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"type": "file", "path": self.path, "change": self.change}
        if self.old_path is not None and self.old_path != self.path:
            detail["old_path"] = self.old_path
        if self.old is not None:
            detail["old_size"] = self.old.size
            detail["old_digest"] = self.old.digest
        if self.new is not None:
            detail["new_size"] = self.new.size
            detail["new_digest"] = self.new.digest
        if self.change == "mode":
            detail["old_executable"] = self.old.executable if self.old else None
            detail["new_executable"] = self.new.executable if self.new else None
        detail["binary"] = self.binary
        if not self.binary:
            detail["added_lines"] = self.added_lines
            detail["removed_lines"] = self.removed_lines
        return detail


#: a blob that is neither in the store nor (unchanged) in the working tree: shown, not fatal
UNREADABLE = (OSError, LookupError, ObjectMissingError, ComponentError)


def _read_text(reader: BlobReader, entry: FileEntry) -> tuple[str | None, bool]:
    """(text or None when binary, readable?)."""
    try:
        return reader.read_text(entry), True
    except UNREADABLE:
        return None, False


def diff_entries(
    old: FileEntry | None,
    new: FileEntry | None,
    reader: BlobReader,
    max_lines: int | None = None,
) -> FileChange | None:
    """The change from ``old`` to ``new`` (either may be None), or None when they are equal.

    The two entries may have different paths (a migration's ``up`` script that was renamed).
    """
    if old is None and new is None:
        return None
    path = new.path if new is not None else old.path if old is not None else ""
    old_path = old.path if old is not None else None
    shown = quote_path(path)
    if old is not None and new is not None and old.digest == new.digest:
        if old.path == new.path and old.executable == new.executable:
            return None
        if old.path == new.path:
            state = "executable" if new.executable else "not executable"
            return FileChange(path, "mode", old, new, lines=[f"  ~ {shown}: mode changed (now {state})"])
        return FileChange(
            path, "changed", old, new, old_path=old_path,
            lines=[f"  ~ {shown}: renamed from {quote_path(old.path)} (content unchanged)"],
        )
    change: FileChangeKind = "added" if old is None else "removed" if new is None else "changed"
    result = FileChange(path, change, old, new, old_path=old_path)
    sizes = [entry.size for entry in (old, new) if entry is not None]
    if max(sizes) > TEXT_DIFF_MAX_BYTES:
        result.lines = [f"{_mark(change)} {shown}: {_sizes(old, new)} (too large for a text diff)"]
        return result
    old_text, old_ok = _read_text(reader, old) if old is not None else ("", True)
    new_text, new_ok = _read_text(reader, new) if new is not None else ("", True)
    if not (old_ok and new_ok):
        result.lines = [f"{_mark(change)} {shown}: {_sizes(old, new)} (content not available)"]
        return result
    if old_text is None or new_text is None:
        result.binary = True
        result.lines = [f"{_mark(change)} {shown}: binary, {_sizes(old, new)}"]
        return result
    old_label = quote_path(f"a/{old.path}") if old is not None else "/dev/null"
    new_label = quote_path(f"b/{new.path}") if new is not None else "/dev/null"
    lines = unified_diff(old_text, new_text, old_label, new_label)
    result.added_lines, result.removed_lines = count_changed_lines(lines)
    if not lines:  # an empty file added or removed
        lines = [f"{_mark(change)} {shown}: empty file"]
    result.lines = cap_lines(lines, max_lines)
    endings = (_line_endings(old_text), _line_endings(new_text))
    if None not in endings and endings[0] != endings[1]:
        # a carriage return is invisible in the diff lines: "-a" and "+a" would look alike
        result.lines.insert(0, f"  ~ {shown}: line endings {endings[0]} -> {endings[1]}")
    return result


def _line_endings(text: str) -> str | None:
    """``CRLF``, ``LF`` or ``mixed CRLF/LF``; None for a text without line breaks."""
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    if not crlf and not lf:
        return None
    return "CRLF" if not lf else "LF" if not crlf else "mixed CRLF/LF"


def quote_path(path: str) -> str:
    """A path as shown in one line: quoted with escapes, as Git does, when it holds a control
    character (a newline in a file name would otherwise read as two entries)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return json.dumps(path, ensure_ascii=False)
    return path


def _mark(change: str) -> str:
    return {"added": "  +", "removed": "  -"}.get(change, "  ~")


def _sizes(old: FileEntry | None, new: FileEntry | None) -> str:
    if old is None and new is not None:
        return human_bytes(new.size)
    if new is None and old is not None:
        return human_bytes(old.size)
    assert old is not None and new is not None
    return f"{human_bytes(old.size)} -> {human_bytes(new.size)}"


def snapshot_files(snapshot: Snapshot | None) -> dict[str, FileEntry]:
    """A snapshot's files by path (none for a missing side)."""
    return {} if snapshot is None else {entry.path: entry for entry in snapshot.files}


def diff_file_sets(
    old_files: dict[str, FileEntry],
    new_files: dict[str, FileEntry],
    reader: BlobReader,
    max_lines: int | None = None,
) -> list[FileChange]:
    """Files added, removed and changed between two sets, by path, sorted by path."""
    changes: list[FileChange] = []
    for path in sorted(set(old_files) | set(new_files)):
        change = diff_entries(old_files.get(path), new_files.get(path), reader, max_lines)
        if change is not None:
            changes.append(change)
    return changes


def summarize_file_changes(changes: list[FileChange]) -> str:
    """``1 file added, 2 files changed, +10 -3 lines`` (empty when nothing changed)."""
    parts: list[str] = []
    for change in ("added", "removed", "changed"):
        count = sum(1 for item in changes if item.change == change)
        if count:
            parts.append(f"{plural(count, 'file')} {change}")
    modes = sum(1 for item in changes if item.change == "mode")
    if modes:
        parts.append(f"{plural(modes, 'file')} mode changed")
    added = sum(item.added_lines for item in changes)
    removed = sum(item.removed_lines for item in changes)
    if added or removed:
        parts.append(f"+{added} -{removed} lines")
    return ", ".join(parts)


# ---- declaration changes -----------------------------------------------------------------

def spec_changes(old: Snapshot | None, new: Snapshot | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Details and lines for declaration keys that differ (only when both sides exist)."""
    if old is None or new is None or old.spec == new.spec:
        return [], []
    details: list[dict[str, Any]] = []
    lines: list[str] = []
    for key in sorted(set(old.spec) | set(new.spec)):
        before, after = old.spec.get(key), new.spec.get(key)
        if before == after:
            continue
        details.append({"type": "spec", "key": key, "old": before, "new": after})
        if key not in old.spec:
            lines.append(f"  + declaration {key} = {display_value(after)}")
        elif key not in new.spec:
            lines.append(f"  - declaration {key} (was {display_value(before)})")
        else:
            lines.append(f"  ~ declaration {key}: {display_value(before)} -> {display_value(after)}")
    return details, lines


def spec_summary(details: list[dict[str, Any]]) -> str:
    """``declaration changed: path`` or empty."""
    keys = [detail["key"] for detail in details if detail.get("type") == "spec"]
    return f"declaration changed: {', '.join(keys)}" if keys else ""


def join_summary(parts: Iterable[str]) -> str:
    """Non-empty parts joined with ``; ``."""
    return "; ".join(part for part in parts if part)
