"""The ``tools`` kind: tool/function schemas, diffed as a contract.

A tool schema is an API between the model and the application. Removing a tool, removing or
retyping a parameter, making one required or narrowing an enum breaks callers (and prompts and
few-shot examples written against the old contract), while adding an optional parameter does
not. So the snapshot records each tool's parameters in a normalized form that accepts the
OpenAI, plain and Anthropic shapes alike, and the diff flags every breaking change.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    Kind,
    Snapshot,
    SnapshotContext,
    SourceMissingError,
    check_keys,
    file_status,
)
from tether.components.textdiff import (
    display_value,
    join_summary,
    normalize_sources,
    plural,
    sources_field,
    spec_changes,
    spec_patterns,
    spec_summary,
)
from tether.ids import canonical_json

BREAKING = "BREAKING"
#: nested object properties are recorded as ``parent.child`` down to this depth
MAX_NESTING = 8


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(data: bytes, rel_path: str) -> Any:
    """Parse JSON bytes; errors name the file, line and column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{rel_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ComponentError(f"{rel_path}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from exc
    except ValueError as exc:
        raise ComponentError(f"{rel_path}: invalid JSON ({exc})") from exc


def schema_type(schema: dict[str, Any]) -> str | list[str] | None:
    """A JSON schema's type: ``"string"``, a sorted list for unions (``anyOf`` too), or None."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    types: set[str] = set()
    if isinstance(declared, list):
        types.update(str(item) for item in declared)
    else:
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if not isinstance(options, list):
                continue
            for option in options:
                found = schema_type(option) if isinstance(option, dict) else None
                if found is None:
                    return None  # an option without a type: the union is not a plain type list
                types.update([found] if isinstance(found, str) else found)
    if not types:
        return None
    ordered = sorted(types)
    return ordered[0] if len(ordered) == 1 else ordered


def _parameters(
    schema: dict[str, Any], where: str, prefix: str = "", depth: int = 0
) -> dict[str, dict[str, Any]]:
    """Parameters of an object schema by name; nested object properties as ``parent.child``."""
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ComponentError(f"{where}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
        raise ComponentError(f"{where}: 'required' must be a list of parameter names")
    params: dict[str, dict[str, Any]] = {}
    for name, prop in properties.items():
        full = f"{prefix}{name}"
        if not isinstance(prop, dict):
            raise ComponentError(f"{where}: parameter '{full}' must be a schema object")
        param: dict[str, Any] = {"type": schema_type(prop), "required": name in required}
        enum = prop.get("enum")
        if isinstance(enum, list):
            param["enum"] = enum
        params[full] = param
        if depth < MAX_NESTING:
            if isinstance(prop.get("properties"), dict):
                params.update(_parameters(prop, where, f"{full}.", depth + 1))
            items = prop.get("items")
            if isinstance(items, dict) and isinstance(items.get("properties"), dict):
                params.update(_parameters(items, where, f"{full}[].", depth + 1))
    return params


def normalize_tool(raw: Any, rel_path: str, label: str) -> dict[str, Any]:
    """One tool in any accepted shape as ``{"name", "description", "parameters"}``."""
    where = f"{rel_path}: {label}"
    if not isinstance(raw, dict):
        raise ComponentError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    body = raw
    if isinstance(raw.get("function"), dict) and (raw.get("type") in ("function", None)) and "name" not in raw:
        body = raw["function"]  # OpenAI: {"type": "function", "function": {...}}
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ComponentError(f"{where}: tool has no name")
    where = f"{rel_path}: tool '{name}'"
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise ComponentError(f"{where}: 'description' must be a string")
    schema = body.get("parameters") if "parameters" in body else body.get("input_schema")
    if schema is None:
        schema = {}
    if not isinstance(schema, dict):
        raise ComponentError(f"{where}: parameters must be a JSON schema object")
    return {"name": name, "description": description, "parameters": _parameters(schema, where)}


def parse_tools_file(data: bytes, rel_path: str) -> list[dict[str, Any]]:
    """The tools of one file: one tool object, or a list of them."""
    value = load_json(data, rel_path)
    if isinstance(value, list):
        tools = [normalize_tool(item, rel_path, f"tool #{index}") for index, item in enumerate(value, start=1)]
    else:
        tools = [normalize_tool(value, rel_path, "tool")]
    seen: set[str] = set()
    for tool in tools:
        if tool["name"] in seen:
            raise ComponentError(f"{rel_path}: duplicate tool name '{tool['name']}'")
        seen.add(tool["name"])
    canonical_json(tools)  # enum values etc. must have a canonical form
    return tools


# ---- contract diff -----------------------------------------------------------------------

class _ContractDiff:
    """Accumulates details and lines, marking breaking ones."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.changed_tools: set[str] = set()

    def add(self, detail: dict[str, Any], text: str, breaking: bool) -> None:
        self.details.append({"type": "tool", **detail, "breaking": breaking})
        self.lines.append(f"{BREAKING} {text}" if breaking else f"  {text}")
        self.changed_tools.add(detail["tool"])

    @property
    def breaking_count(self) -> int:
        return sum(1 for detail in self.details if detail.get("breaking"))


def _type_text(value: Any) -> str:
    if value is None:
        return "any"
    return value if isinstance(value, str) else "|".join(value)


def _diff_parameter(out: _ContractDiff, tool: str, name: str, before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> None:
    label = f"{tool}.{name}"
    base = {"tool": tool, "parameter": name}
    if before is None and after is not None:
        if after["required"]:
            out.add({**base, "change": "parameter added", "required": True, "new": after},
                    f"+ {label}: required parameter added", True)
        else:
            out.add({**base, "change": "parameter added", "required": False, "new": after},
                    f"+ {label}: optional parameter added", False)
        return
    if after is None and before is not None:
        out.add({**base, "change": "parameter removed", "old": before}, f"- {label}: parameter removed", True)
        return
    assert before is not None and after is not None
    if canonical_json(before["type"]) != canonical_json(after["type"]):
        out.add({**base, "change": "parameter retyped", "old": before["type"], "new": after["type"]},
                f"~ {label}: type {_type_text(before['type'])} -> {_type_text(after['type'])}", True)
    if before["required"] != after["required"]:
        if after["required"]:
            out.add({**base, "change": "now required", "old": False, "new": True},
                    f"~ {label}: optional -> required", True)
        else:
            out.add({**base, "change": "now optional", "old": True, "new": False},
                    f"~ {label}: required -> optional", False)
    old_enum, new_enum = before.get("enum"), after.get("enum")
    if old_enum is None and new_enum is not None:
        out.add({**base, "change": "enum added", "new": new_enum},
                f"~ {label}: now restricted to {display_value(new_enum)}", True)
    elif old_enum is not None and new_enum is None:
        out.add({**base, "change": "enum removed", "old": old_enum}, f"~ {label}: no longer restricted to an enum",
                False)
    elif old_enum is not None and new_enum is not None:
        old_keys = {canonical_json(item): item for item in old_enum}
        new_keys = {canonical_json(item): item for item in new_enum}
        removed = [old_keys[key] for key in old_keys if key not in new_keys]
        added = [new_keys[key] for key in new_keys if key not in old_keys]
        if removed:
            out.add({**base, "change": "enum values removed", "values": removed},
                    f"~ {label}: enum values removed: {', '.join(display_value(v) for v in removed)}", True)
        if added:
            out.add({**base, "change": "enum values added", "values": added},
                    f"~ {label}: enum values added: {', '.join(display_value(v) for v in added)}", False)


def diff_tools(old_tools: dict[str, Any], new_tools: dict[str, Any]) -> _ContractDiff:
    """The contract changes between two ``meta["tools"]`` tables."""
    out = _ContractDiff()
    for name in sorted(set(old_tools) | set(new_tools)):
        before, after = old_tools.get(name), new_tools.get(name)
        if before is None:
            out.add({"tool": name, "change": "tool added", "new": after}, f"+ tool {name}", False)
            continue
        if after is None:
            out.add({"tool": name, "change": "tool removed", "old": before}, f"- tool {name}", True)
            continue
        if before.get("description") != after.get("description"):
            out.add({"tool": name, "change": "description changed", "old": before.get("description"),
                     "new": after.get("description")}, f"~ {name}: description changed", False)
        if before.get("file") != after.get("file"):
            out.add({"tool": name, "change": "moved", "old": before.get("file"), "new": after.get("file")},
                    f"~ {name}: moved from {before.get('file')} to {after.get('file')}", False)
        old_params, new_params = before.get("parameters", {}), after.get("parameters", {})
        for param in sorted(set(old_params) | set(new_params)):
            _diff_parameter(out, name, param, old_params.get(param), new_params.get(param))
    return out


class ToolsKind(Kind):
    """Tool/function schemas: tools and parameters added, removed, retyped; breaking changes flagged."""

    name: ClassVar[str] = "tools"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"path", "paths"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys)
        return normalize_sources(component, table)

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        field_name = sources_field(component, spec)
        paths: set[str] = set()
        for pattern in spec_patterns(spec):
            matched = ctx.expand([pattern], field_name)
            if matched == [pattern]:
                paths.update(matched)  # a file named explicitly is taken whatever its extension
                continue
            json_files = [rel for rel in matched if PurePosixPath(rel).suffix.lower() == ".json"]
            if not json_files:
                raise SourceMissingError(f"{ctx.project_file}: {field_name}: '{pattern}' matches no .json files")
            paths.update(json_files)
        files = tuple(ctx.file_entry(rel) for rel in sorted(paths))
        tools: dict[str, dict[str, Any]] = {}
        for rel in sorted(paths):

            def compute(path: Path, rel: str = rel) -> list[dict[str, Any]]:
                return parse_tools_file(path.read_bytes(), rel)

            for tool in ctx.cached(rel, "tools", compute):
                name = tool["name"]
                if name in tools:
                    raise ComponentError(f"{rel}: duplicate tool name '{name}' (also in {tools[name]['file']})")
                tools[name] = {"description": tool["description"], "parameters": tool["parameters"], "file": rel}
        return Snapshot(kind=self.name, spec=spec, files=files, meta={"tools": tools})

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged")
        old_tools = old.meta.get("tools", {}) if old is not None else {}
        new_tools = new.meta.get("tools", {}) if new is not None else {}
        spec_details, spec_lines = spec_changes(old, new)
        contract = diff_tools(old_tools, new_tools)
        added = sum(1 for d in contract.details if d["change"] == "tool added")
        removed = sum(1 for d in contract.details if d["change"] == "tool removed")
        changed = len(contract.changed_tools) - added - removed
        parts = [
            f"{plural(count, 'tool')} {verb}"
            for verb, count in (("added", added), ("removed", removed), ("changed", changed))
            if count
        ]
        contract_summary = ", ".join(parts)
        breaking = contract.breaking_count
        if breaking:
            contract_summary += f"; {plural(breaking, 'breaking change')}"
        if not contract.details and old is not None and new is not None and set(old.files) != set(new.files):
            same_spec = old.spec == new.spec
            contract_summary = "formatting only (no contract change)" if same_spec else "no contract change"
        summary = join_summary([contract_summary, spec_summary(spec_details)])
        return ComponentDiff(
            component,
            self.name,
            status,
            summary or "changed",
            [BREAKING] if breaking else [],
            spec_details + contract.details,
            spec_lines + contract.lines,
        )
