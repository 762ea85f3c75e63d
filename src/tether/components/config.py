"""The ``config`` kind: a YAML, JSON or TOML generation config, compared by value.

Reformatting a config, reordering its keys or switching quotes changes its bytes but not the
model's behavior; changing ``temperature`` does. So the snapshot keeps the raw file (checkout is
byte-identical) and, as metadata, the parsed value in canonical JSON form; the diff compares
values key path by key path and says when only the formatting changed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    Kind,
    Snapshot,
    SnapshotContext,
    check_keys,
    file_status,
)
from tether.components.textdiff import (
    display_value,
    join_summary,
    normalize_path,
    plural,
    spec_changes,
    spec_summary,
)
from tether.ids import canonical_json

FORMATS = ("yaml", "json", "toml")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
_TOML_POSITION = re.compile(r"^(?P<message>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)\s*$", re.S)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

KeyPath = tuple[str | int, ...]
Leaf = Any


def detect_format(component: str, path: str, declared: str | None) -> str:
    """The declared ``format``, else the one the file's extension names."""
    if declared is not None:
        return declared
    found = _EXTENSIONS.get(PurePosixPath(path).suffix.lower())
    if found is None:
        raise ComponentError(
            f"tether.toml: components.{component}.path: cannot tell the format of '{path}' from its "
            f"extension; set format = \"yaml\", \"json\" or \"toml\""
        )
    return found


# ---- parsing -----------------------------------------------------------------------------

@functools.cache
def _strict_yaml_loader() -> type:
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML forbids it; PyYAML
    would keep the last value silently). Keys brought in by a ``<<`` merge may be overridden."""
    import yaml

    class StrictSafeLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                    except TypeError:  # an unhashable key: the base loader names it
                        continue
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"found duplicate key {key!r} (the last value would silently win)", key_node.start_mark,
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictSafeLoader


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _parse_yaml(text: str, rel_path: str) -> Any:
    import yaml  # imported here: only config components of YAML format need it

    try:
        return yaml.load(text, Loader=_strict_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None:
            raise ComponentError(
                f"{rel_path}: line {mark.line + 1}, column {mark.column + 1}: could not parse YAML: {problem}"
            ) from exc
        raise ComponentError(f"{rel_path}: could not parse YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ComponentError(f"{rel_path}: could not parse YAML: {exc}") from exc


def _parse_json(text: str, rel_path: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise ComponentError(
            f"{rel_path}: could not parse JSON: duplicate key {exc.key!r} in an object (the last value would silently win)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ComponentError(
            f"{rel_path}: line {exc.lineno}, column {exc.colno}: could not parse JSON: {exc.msg}"
        ) from exc


def _parse_toml(text: str, rel_path: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.match(str(exc))
        if found:
            raise ComponentError(
                f"{rel_path}: line {found['line']}, column {found['column']}: could not parse TOML: "
                f"{found['message']}"
            ) from exc
        raise ComponentError(f"{rel_path}: could not parse TOML: {exc}") from exc


_PARSERS: dict[str, Callable[[str, str], Any]] = {"yaml": _parse_yaml, "json": _parse_json, "toml": _parse_toml}


def _key_text(key: Any) -> str:
    """A mapping key as a string, the way JSON would write it (YAML allows ``1:`` or ``true:``)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    if isinstance(key, dt.date | dt.time):
        return key.isoformat()
    raise TypeError(type(key).__name__)


def canonical_value(value: Any, rel_path: str, path: KeyPath = ()) -> Any:
    """``value`` as plain JSON data: dates as ISO strings; NaN, infinities and binary refused.

    Errors name the file and the key path (``sampling.temperature``).
    """
    label = key_path_text(path)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            try:
                text = _key_text(key)
            except TypeError as exc:
                raise ComponentError(f"{rel_path}: {label}: a {exc} key has no JSON form") from exc
            if text in result:
                raise ComponentError(f"{rel_path}: {label}: key {text!r} appears twice once keys are strings")
            result[text] = canonical_value(item, rel_path, (*path, text))
        return result
    if isinstance(value, list | tuple):
        return [canonical_value(item, rel_path, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            what = "NaN" if math.isnan(value) else "infinity"
            raise ComponentError(
                f"{rel_path}: {label}: {what} is not allowed (canonical JSON has no NaN or infinity)"
            )
        return value
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dt.date | dt.time):  # dt.datetime is a dt.date
        return value.isoformat()
    raise ComponentError(f"{rel_path}: {label}: a {type(value).__name__} value has no JSON form")


def parse_config(data: bytes, rel_path: str, fmt: str) -> dict[str, Any]:
    """Parse a config file's bytes into its canonical value (a mapping at the top level)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{rel_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    parsed = _PARSERS[fmt](text, rel_path)
    if not isinstance(parsed, dict):
        got = "an empty document" if parsed is None else f"a {type(parsed).__name__}"
        raise ComponentError(f"{rel_path}: the top level must be a mapping, got {got}")
    value = canonical_value(parsed, rel_path)
    canonical_json(value)  # proves the value has a canonical form
    return value


# ---- value diffs -------------------------------------------------------------------------

def flatten(value: Any, prefix: KeyPath = ()) -> dict[KeyPath, Leaf]:
    """Leaves of a value by key path; empty mappings and lists are leaves themselves."""
    if isinstance(value, dict) and value:
        out: dict[KeyPath, Leaf] = {}
        for key, item in value.items():
            out.update(flatten(item, (*prefix, key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, (*prefix, index)))
        return out
    return {prefix: value}


def _sort_key(path: KeyPath) -> tuple[tuple[int, str, int], ...]:
    return tuple((1, part, 0) if isinstance(part, str) else (0, "", part) for part in path)


def diff_values(old: Any, new: Any) -> list[dict[str, Any]]:
    """Key paths added, removed and changed between two values, in key-path order.

    Each change is ``{"key": display path, "path": [keys and indices], "change": ..., "old", "new"}``.
    Applying the changes to the flattened old value and unflattening gives the new value.
    """
    old_flat = flatten(old)
    new_flat = flatten(new)
    if isinstance(old, dict) and isinstance(new, dict):
        old_flat.pop((), None)  # an empty top-level mapping is not a key
        new_flat.pop((), None)
    changes: list[dict[str, Any]] = []
    for path in sorted(set(old_flat) | set(new_flat), key=_sort_key):
        entry: dict[str, Any] = {"key": key_path_text(path), "path": list(path)}
        if path not in new_flat:
            changes.append({**entry, "change": "removed", "old": old_flat[path]})
        elif path not in old_flat:
            changes.append({**entry, "change": "added", "new": new_flat[path]})
        elif canonical_json(old_flat[path]) != canonical_json(new_flat[path]):
            changes.append({**entry, "change": "changed", "old": old_flat[path], "new": new_flat[path]})
    return changes


def key_path_text(path: KeyPath) -> str:
    """Display form of a key path: ``sampling.temperature``, ``stop[1]``, ``headers["x.y"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or "<top level>"


def change_line(change: dict[str, Any]) -> str:
    """``  ~ key: old -> new``, ``  + key: new``, ``  - key: old``."""
    if change["change"] == "added":
        return f"  + {change['key']}: {display_value(change['new'])}"
    if change["change"] == "removed":
        return f"  - {change['key']}: {display_value(change['old'])}"
    return f"  ~ {change['key']}: {display_value(change['old'])} -> {display_value(change['new'])}"


class ConfigKind(Kind):
    """A structured config file: diffs are key paths with old and new values, never text."""

    name: ClassVar[str] = "config"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"path", "format"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys, required=("path",))
        spec: dict[str, Any] = {"path": normalize_path(component, "path", table["path"])}
        if "format" in table:
            fmt = table["format"]
            if fmt not in FORMATS:
                raise ComponentError(
                    f"tether.toml: components.{component}.format: expected one of {', '.join(FORMATS)}, got {fmt!r}"
                )
            spec["format"] = fmt
        detect_format(component, spec["path"], spec.get("format"))
        return spec

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        rel = spec["path"]
        fmt = detect_format(component, rel, spec.get("format"))
        resolved = ctx.resolve(rel, f"components.{component}.path")
        if resolved.is_dir():
            raise ComponentError(
                f"{ctx.project_file}: components.{component}.path: '{rel}' is a folder; expected a file"
            )
        entry = ctx.file_entry(rel)

        def compute(path: Path) -> dict[str, Any]:
            return parse_config(path.read_bytes(), rel, fmt)

        value = ctx.cached(rel, f"config:{fmt}", compute)
        return Snapshot(kind=self.name, spec=spec, files=(entry,), meta={"value": value})

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged")
        old_value = old.meta.get("value", {}) if old is not None else {}
        new_value = new.meta.get("value", {}) if new is not None else {}
        details, lines = spec_changes(old, new)
        changes = diff_values(old_value, new_value)
        details.extend({"type": "key", **change} for change in changes)
        lines.extend(change_line(change) for change in changes)
        counted = [
            (verb, count)
            for verb in ("changed", "added", "removed")
            if (count := sum(1 for change in changes if change["change"] == verb))
        ]
        value_summary = ", ".join(
            f"{plural(count, 'key')} {verb}" if index == 0 else f"{count} {verb}"
            for index, (verb, count) in enumerate(counted)
        )
        if not changes and old is not None and new is not None:
            bytes_differ = [entry.digest for entry in old.files] != [entry.digest for entry in new.files]
            if bytes_differ and old.spec == new.spec:
                value_summary = "formatting only (no value changed)"
            elif bytes_differ:
                value_summary = "no value changed"
        summary = join_summary([value_summary, spec_summary(details)])
        return ComponentDiff(component, self.name, status, summary or "changed", [], details, lines)
