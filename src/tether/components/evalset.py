"""The ``evalset`` kind: JSONL eval cases, compared case by case.

An eval set is what a version is judged by, so a change to it must be visible as cases added,
removed or changed, not as a changed blob. Each case is keyed by its ``id`` (or, without one,
by the digest of its content) and the snapshot records each case's digest; the parse is
stat-cached because eval sets can be large and ``status`` must stay fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
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
)
from tether.components.textdiff import (
    UNREADABLE,
    display_value,
    join_summary,
    normalize_path,
    plural,
    spec_changes,
    spec_summary,
)
from tether.ids import canonical_json, digest_json, is_digest

#: example cases shown per category (added, removed, changed); details list every case
MAX_EXAMPLES = 20


class _CaseError(ValueError):
    """A malformed line (message without the file name)."""


def _reject_constant(name: str) -> Any:
    raise _CaseError(f"{name} is not valid JSON")


def json_line_error(exc: json.JSONDecodeError, text: str) -> str:
    """What is wrong with one JSONL line (``text``, without its line break), at the column json
    reports: ``truncated JSON (...)`` when the line ends before the value does (a cut-off write,
    or a case spread over several lines), else ``invalid JSON (...)``."""
    if exc.msg.startswith("Unterminated string"):
        return f"truncated JSON (the string starting at column {exc.colno} is not closed)"
    if exc.pos >= len(text.rstrip()):
        expecting = exc.msg[0].lower() + exc.msg[1:]
        return f"truncated JSON ({expecting} at column {exc.colno}, past the end of the line)"
    return f"invalid JSON ({exc.msg} at column {exc.colno})"


def _parse_line(raw: bytes, number: int) -> dict[str, Any] | None:
    """The case on one line, or None for a blank line."""
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise _CaseError(f"line {number}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not text.strip():
        return None
    text = text.rstrip("\r\n")  # else json places an error at the end of the line on the next line, column 1
    try:
        case = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _CaseError(f"line {number}: {json_line_error(exc, text)}") from exc
    except _CaseError as exc:
        raise _CaseError(f"line {number}: invalid JSON ({exc})") from exc
    if not isinstance(case, dict):
        raise _CaseError(f"line {number}: expected a JSON object, got {_json_type(case)}")
    return case


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def case_key(case: dict[str, Any], number: int) -> tuple[str, bool]:
    """(key, has an id): the ``id`` field as a string, else the digest of the case."""
    if "id" not in case:
        return digest_json(case), False
    case_id = case["id"]
    if isinstance(case_id, bool) or not isinstance(case_id, str | int):
        raise _CaseError(f"line {number}: 'id' must be a string or an integer, got {display_value(case_id)}")
    return str(case_id), True


def _lines(data: Iterator[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(data, start=1):
        case = _parse_line(raw, number)
        if case is not None:
            yield number, case


def parse_evalset(path: Path, rel_path: str) -> dict[str, Any]:
    """``{"cases": {key: digest}, "count": n, "fields": [...]}`` of a JSONL file, streamed."""
    cases: dict[str, str] = {}
    first_line: dict[str, int] = {}
    fields: set[str] = set()
    try:
        with open(path, "rb") as handle:
            for number, case in _lines(iter(handle)):
                key, has_id = case_key(case, number)
                if key in cases:
                    if has_id:
                        raise _CaseError(f"line {number}: duplicate id {key!r} (first on line {first_line[key]})")
                    raise _CaseError(
                        f"line {number}: duplicate case (same content as line {first_line[key]}); "
                        "give cases an 'id' to repeat one"
                    )
                cases[key] = digest_json(case)
                first_line[key] = number
                fields.update(case)
    except _CaseError as exc:
        raise ComponentError(f"{rel_path}: {exc}") from exc
    return {"cases": cases, "count": len(cases), "fields": sorted(fields)}


def find_cases(lines: Iterable[bytes], keys: set[str]) -> dict[str, dict[str, Any]]:
    """The cases with the given keys among a JSONL file's lines (malformed lines are skipped)."""
    found: dict[str, dict[str, Any]] = {}
    if not keys:
        return found
    for number, raw in enumerate(lines, start=1):
        try:
            case = _parse_line(raw, number)
            if case is None:
                continue
            key, _ = case_key(case, number)
        except _CaseError:
            continue
        if key in keys and key not in found:
            found[key] = case
            if len(found) == len(keys):
                break
    return found


def _read_cases(snapshot: Snapshot | None, reader: BlobReader, keys: set[str]) -> dict[str, dict[str, Any]]:
    """Cases of a snapshot by key, or nothing when its file cannot be read."""
    if snapshot is None or not keys or not snapshot.files:
        return {}
    entry: FileEntry = snapshot.files[0]
    try:
        with reader.open(entry) as handle:
            return find_cases(handle, keys)
    except UNREADABLE:
        return {}


def _label(key: str, case: dict[str, Any] | None) -> str:
    """A case as a reviewer recognizes it: its id, or its content when it has none."""
    if case is not None and "id" not in case:
        return display_value(case)
    return key[:12] if is_digest(key) and case is None else key


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Top-level fields of a case that differ: ``{field: {"old": ..., "new": ...}}`` (absent sides omitted)."""
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before) | set(after)):
        if name in before and name in after and canonical_json(before[name]) == canonical_json(after[name]):
            continue
        change: dict[str, Any] = {}
        if name in before:
            change["old"] = before[name]
        if name in after:
            change["new"] = after[name]
        changes[name] = change
    return changes


class EvalsetKind(Kind):
    """A JSONL eval set: cases added, removed and changed, with field-level changes for cases with ids."""

    name: ClassVar[str] = "evalset"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"path"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys, required=("path",))
        return {"path": normalize_path(component, "path", table["path"])}

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        rel = spec["path"]
        resolved = ctx.resolve(rel, f"components.{component}.path")
        if resolved.is_dir():
            raise ComponentError(
                f"{ctx.project_file}: components.{component}.path: '{rel}' is a folder; expected a JSONL file"
            )
        entry = ctx.file_entry(rel)

        def compute(path: Path) -> dict[str, Any]:
            return parse_evalset(path, rel)

        parsed = ctx.cached(rel, "evalset", compute)
        meta = {"cases": parsed["cases"], "count": parsed["count"], "fields": parsed["fields"]}
        return Snapshot(kind=self.name, spec=spec, files=(entry,), meta=meta)

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged")
        old_cases: dict[str, str] = old.meta.get("cases", {}) if old is not None else {}
        new_cases: dict[str, str] = new.meta.get("cases", {}) if new is not None else {}
        added = sorted(set(new_cases) - set(old_cases))
        removed = sorted(set(old_cases) - set(new_cases))
        changed = sorted(key for key in set(old_cases) & set(new_cases) if old_cases[key] != new_cases[key])
        shown_added, shown_removed, shown_changed = (
            added[:MAX_EXAMPLES], removed[:MAX_EXAMPLES], changed[:MAX_EXAMPLES]
        )
        old_read = _read_cases(old, reader, set(shown_removed) | set(shown_changed))
        new_read = _read_cases(new, reader, set(shown_added) | set(shown_changed))

        details, lines = spec_changes(old, new)
        for key in added:
            details.append({"type": "case", "key": key, "change": "added"})
        for key in removed:
            details.append({"type": "case", "key": key, "change": "removed"})
        for key in changed:
            details.append({"type": "case", "key": key, "change": "changed"})
        case_details = {(d["change"], d["key"]): d for d in details if d.get("type") == "case"}

        for key in shown_added:
            lines.append(f"  + case {_label(key, new_read.get(key))}")
        lines.extend(_more(added, "added"))
        for key in shown_removed:
            lines.append(f"  - case {_label(key, old_read.get(key))}")
        lines.extend(_more(removed, "removed"))
        for key in shown_changed:
            lines.append(f"  ~ case {key}")
            if key in old_read and key in new_read:
                fields = field_changes(old_read[key], new_read[key])
                case_details[("changed", key)]["fields"] = fields
                for name, change in fields.items():
                    before = display_value(change["old"]) if "old" in change else "(absent)"
                    after = display_value(change["new"]) if "new" in change else "(absent)"
                    lines.append(f"      {name}: {before} -> {after}")
        lines.extend(_more(changed, "changed"))

        fields_added: list[str] = []
        fields_removed: list[str] = []
        if old is not None and new is not None:
            old_fields, new_fields = set(old.meta.get("fields", [])), set(new.meta.get("fields", []))
            fields_added, fields_removed = sorted(new_fields - old_fields), sorted(old_fields - new_fields)
        if fields_added or fields_removed:
            details.append({"type": "fields", "added": fields_added, "removed": fields_removed})
            lines.extend(f"  + field {name}" for name in fields_added)
            lines.extend(f"  - field {name}" for name in fields_removed)

        counted = [(verb, n) for verb, n in (("added", len(added)), ("removed", len(removed)),
                                            ("changed", len(changed))) if n]
        case_summary = ", ".join(
            f"{plural(n, 'case')} {verb}" if index == 0 else f"{n} {verb}" for index, (verb, n) in enumerate(counted)
        )
        old_count = old.meta.get("count", 0) if old is not None else 0
        new_count = new.meta.get("count", 0) if new is not None else 0
        if case_summary:
            case_summary += f" ({old_count} -> {plural(new_count, 'case')})"
        elif old is not None and new is not None and set(old.files) != set(new.files):
            case_summary = "no case changed (lines reordered or reformatted)"
        summary = join_summary(
            [
                case_summary,
                f"fields added: {', '.join(fields_added)}" if fields_added else "",
                f"fields removed: {', '.join(fields_removed)}" if fields_removed else "",
                spec_summary(details),
            ]
        )
        return ComponentDiff(component, self.name, status, summary or "changed", [], details, lines)


def _more(keys: list[str], verb: str) -> list[str]:
    extra = len(keys) - MAX_EXAMPLES
    return [f"  ... and {extra} more {verb}"] if extra > 0 else []
