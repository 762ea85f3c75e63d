"""The ``tools`` kind: tool/function schemas, diffed as a contract.

A tool schema is an API between the model and the application. Removing a tool, removing or
retyping a parameter, making one required or narrowing an enum breaks callers (and prompts and
few-shot examples written against the old contract), while adding an optional parameter does
not. So the snapshot records each tool's parameters in a normalized form that accepts the
OpenAI, plain and Anthropic shapes alike, and the diff flags every breaking change. Nested
schemas are compared too: array items, object properties, anyOf/oneOf variants and local
``$ref`` into ``$defs``/``definitions`` (cycle-safe); a new or tightened constraint
(``minLength``, ``maximum``, ``pattern``...) is breaking, a description change is reported as
non-breaking.
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
from tether.components.config import change_line, diff_values
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


#: JSON-schema keywords that restrict the values a parameter accepts
CONSTRAINTS = (
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "const",
    "additionalProperties",
)
#: a larger value rejects more input
_LOWER_BOUNDS = frozenset({"minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties"})
#: a smaller value rejects more input
_UPPER_BOUNDS = frozenset({"maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties"})


class _Resolver:
    """Local ``$ref`` resolution (``#/$defs/X``, ``#/definitions/X``) against the tool's own document."""

    def __init__(self, *documents: Any) -> None:
        self.documents = [doc for doc in documents if isinstance(doc, dict)]

    def _lookup(self, ref: str) -> dict[str, Any] | None:
        parts = [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")] if ref != "#" else []
        for document in self.documents:
            node: Any = document
            for part in parts:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    node = None
                    break
            if isinstance(node, dict):
                return node
        return None

    def resolve(self, schema: dict[str, Any], seen: frozenset[str]) -> tuple[dict[str, Any], frozenset[str]]:
        """The schema with local ``$ref`` (and a lone ``allOf``) merged in; ``seen`` guards cycles."""
        for _ in range(64):
            all_of = schema.get("allOf")
            if "$ref" not in schema and isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                schema = {**all_of[0], **{k: v for k, v in schema.items() if k != "allOf"}}
                continue
            ref = schema.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#") or ref in seen:
                return schema, seen
            target = self._lookup(ref)
            if target is None:
                return schema, seen
            seen = seen | {ref}
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema, seen


def _options(schema: dict[str, Any]) -> list[Any] | None:
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list):
            return options
    return None


def _shape(schema: dict[str, Any], resolver: _Resolver, seen: frozenset[str], depth: int,
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(type info, details)`` of a resolved schema: type and enum as recorded for parameters;
    description, constraints, array items and anyOf/oneOf variants as details (nested shapes)."""
    options = _options(schema)
    resolved_options: list[tuple[dict[str, Any], frozenset[str]]] = []
    typed = schema
    if options is not None:
        resolved_options = [resolver.resolve(opt, seen) if isinstance(opt, dict) else ({}, seen) for opt in options]
        typed = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        if "type" not in typed:
            typed["anyOf"] = [opt for opt, _ in resolved_options]
    info: dict[str, Any] = {"type": schema_type(typed)}
    enum = schema.get("enum")
    if isinstance(enum, list):
        info["enum"] = enum
    details: dict[str, Any] = {}
    description = schema.get("description")
    if isinstance(description, str):
        details["description"] = description
    constraints = {key: schema[key] for key in CONSTRAINTS if key in schema and not isinstance(schema[key], dict)}
    if constraints:
        details["constraints"] = constraints
    if depth < MAX_NESTING:
        items = schema.get("items")
        if isinstance(items, dict):
            resolved, inner = resolver.resolve(items, seen)
            item_info, item_details = _shape(resolved, resolver, inner, depth + 1)
            details["items"] = {**item_info, **item_details}
        if resolved_options:
            variants = []
            for option, inner in resolved_options:
                option_info, option_details = _shape(option, resolver, inner, depth + 1)
                variants.append({**option_info, **option_details})
            details["variants"] = variants
    return info, details


def _object_parts(schema: dict[str, Any], resolver: _Resolver, seen: frozenset[str]
                  ) -> list[tuple[dict[str, Any], frozenset[str]]]:
    """The object schemas whose properties a (resolved) schema contributes: itself, anyOf/oneOf options."""
    parts = [(schema, seen)] if isinstance(schema.get("properties"), dict) else []
    for option in _options(schema) or []:
        if isinstance(option, dict):
            resolved, inner = resolver.resolve(option, seen)
            if isinstance(resolved.get("properties"), dict):
                parts.append((resolved, inner))
    return parts


def _parameters(
    schema: dict[str, Any], where: str, prefix: str = "", depth: int = 0,
    resolver: _Resolver | None = None, seen: frozenset[str] = frozenset(),
    details: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Parameters of an object schema by name; nested object properties as ``parent.child``.

    Local ``$ref`` are resolved against the document (cycle-safe); with ``details``, each
    parameter's description, constraints, array items and union variants are collected there.
    """
    resolver = resolver or _Resolver(schema)
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ComponentError(f"{where}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
        raise ComponentError(f"{where}: 'required' must be a list of parameter names")
    params: dict[str, dict[str, Any]] = {}
    for name, raw in properties.items():
        full = f"{prefix}{name}"
        if not isinstance(raw, dict):
            raise ComponentError(f"{where}: parameter '{full}' must be a schema object")
        prop, inner = resolver.resolve(raw, seen)
        info, extra = _shape(prop, resolver, inner, depth)
        param: dict[str, Any] = {"type": info["type"], "required": name in required}
        if "enum" in info:
            param["enum"] = info["enum"]
        params[full] = param
        if details is not None and extra:
            details[full] = extra
        if depth < MAX_NESTING:
            for part, part_seen in _object_parts(prop, resolver, inner):
                params.update(_parameters(part, where, f"{full}.", depth + 1, resolver, part_seen, details))
            items = prop.get("items")
            if isinstance(items, dict):
                resolved, items_seen = resolver.resolve(items, inner)
                for part, part_seen in _object_parts(resolved, resolver, items_seen):
                    params.update(_parameters(part, where, f"{full}[].", depth + 1, resolver, part_seen, details))
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
    details: dict[str, dict[str, Any]] = {}
    params = _parameters(schema, where, resolver=_Resolver(schema, body, raw), details=details)
    return {"name": name, "description": description, "parameters": params, "details": details}


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
    _diff_enum(out, base, label, before.get("enum"), after.get("enum"))


def _narrows(key: str, old: Any, new: Any) -> bool:
    """Whether changing constraint ``key`` from ``old`` to ``new`` (None: absent) rejects input that was valid."""
    if new is None:
        return False
    if key == "uniqueItems":
        return new is True and old is not True
    if key == "additionalProperties":
        return new is False and old is not False
    if old is None:
        return True
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if numbers and key in _LOWER_BOUNDS:
        return bool(new > old)
    if numbers and key in _UPPER_BOUNDS:
        return bool(new < old)
    return canonical_json(old) != canonical_json(new)


def _diff_enum(out: _ContractDiff, base: dict[str, Any], label: str, old_enum: Any, new_enum: Any) -> None:
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


def _variant_key(shape: dict[str, Any]) -> str:
    return _type_text(shape.get("type"))


def _diff_details(out: _ContractDiff, tool: str, name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Description, constraints, array items and union variants of one parameter (or a nested shape)."""
    label = f"{tool}.{name}"
    base = {"tool": tool, "parameter": name}
    if before.get("description") != after.get("description"):
        out.add({**base, "change": "parameter description changed", "old": before.get("description"),
                 "new": after.get("description")}, f"~ {label}: description changed", False)
    old_c, new_c = before.get("constraints") or {}, after.get("constraints") or {}
    for key in [k for k in CONSTRAINTS if k in old_c or k in new_c]:
        old_v, new_v = old_c.get(key), new_c.get(key)
        if canonical_json(old_v) == canonical_json(new_v):
            continue
        breaking = _narrows(key, old_v, new_v)
        if key not in old_c:
            out.add({**base, "change": "constraint added", "constraint": key, "new": new_v},
                    f"~ {label}: {key} {display_value(new_v)} added", breaking)
        elif key not in new_c:
            out.add({**base, "change": "constraint removed", "constraint": key, "old": old_v},
                    f"~ {label}: {key} {display_value(old_v)} removed", False)
        else:
            out.add({**base, "change": "constraint changed", "constraint": key, "old": old_v, "new": new_v},
                    f"~ {label}: {key} {display_value(old_v)} -> {display_value(new_v)}", breaking)
    old_items, new_items = before.get("items"), after.get("items")
    if isinstance(old_items, dict) and isinstance(new_items, dict):
        _diff_shape(out, tool, f"{name}[]", old_items, new_items)
    elif isinstance(new_items, dict) and old_items is None:
        out.add({**base, "change": "items restricted", "new": new_items}, f"~ {label}: items now restricted", True)
    elif isinstance(old_items, dict) and new_items is None:
        out.add({**base, "change": "items unrestricted", "old": old_items}, f"~ {label}: items no longer restricted",
                False)
    old_variants, new_variants = before.get("variants") or [], after.get("variants") or []
    new_by_type: dict[str, list[dict[str, Any]]] = {}
    for shape in new_variants:
        new_by_type.setdefault(_variant_key(shape), []).append(shape)
    for shape in old_variants:
        matches = new_by_type.get(_variant_key(shape))
        if matches:  # variants added or removed show as a type change of the parameter itself
            _diff_shape(out, tool, f"{name}<{_variant_key(shape)}>", shape, matches.pop(0))


def _diff_shape(out: _ContractDiff, tool: str, name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """A nested schema (array items, a union variant): type, enum, then its details."""
    label = f"{tool}.{name}"
    base = {"tool": tool, "parameter": name}
    if canonical_json(before.get("type")) != canonical_json(after.get("type")):
        out.add({**base, "change": "parameter retyped", "old": before.get("type"), "new": after.get("type")},
                f"~ {label}: type {_type_text(before.get('type'))} -> {_type_text(after.get('type'))}", True)
    _diff_enum(out, base, label, before.get("enum"), after.get("enum"))
    _diff_details(out, tool, name, before, after)


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
        # "details" is recorded since schema details are compared; an older snapshot has none to compare
        detailed = isinstance(before.get("details"), dict) and isinstance(after.get("details"), dict)
        for param in sorted(set(old_params) | set(new_params)):
            _diff_parameter(out, name, param, old_params.get(param), new_params.get(param))
            if detailed and param in old_params and param in new_params:
                _diff_details(out, name, param, before["details"].get(param, {}), after["details"].get(param, {}))
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

            for tool in ctx.cached(rel, "tools.v2", compute):
                name = tool["name"]
                if name in tools:
                    raise ComponentError(f"{rel}: duplicate tool name '{name}' (also in {tools[name]['file']})")
                tools[name] = {"description": tool["description"], "parameters": tool["parameters"],
                               "details": tool["details"], "file": rel}
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
        schema_details: list[dict[str, Any]] = []
        if not contract.details and old is not None and new is not None and set(old.files) != set(new.files):
            schema_details = _schema_changes(old, new, reader)
            if schema_details:
                contract_summary = f"no contract change; {plural(len(schema_details), 'schema key')} changed"
            elif old.spec == new.spec:
                contract_summary = "formatting only (no contract change)"
            else:
                contract_summary = "no contract change"
        summary = join_summary([contract_summary, spec_summary(spec_details)])
        return ComponentDiff(
            component,
            self.name,
            status,
            summary or "changed",
            [BREAKING] if breaking else [],
            spec_details + contract.details + schema_details,
            spec_lines + contract.lines + [change_line(detail) for detail in schema_details],
        )


def _schema_changes(old: Snapshot, new: Snapshot, reader: BlobReader) -> list[dict[str, Any]]:
    """Key paths changed in the tool files' JSON where the contract is the same: the contract
    leaves out what the model still sees (``default``, ``title``, ``strict``, root-level
    ``additionalProperties``...), so such an edit is no "formatting only" change."""

    def values(snapshot: Snapshot) -> dict[str, Any]:
        return {entry.path: load_json(reader.read_bytes(entry), entry.path) for entry in snapshot.files}

    before, after = values(old), values(new)
    changes: list[dict[str, Any]] = []
    for rel in sorted(set(before) | set(after)):
        for change in diff_values(before.get(rel, {}), after.get(rel, {})):
            changes.append({"type": "schema", "file": rel, **change})
    return changes
