"""The tools kind: tool shapes, breaking-change detection, bad schemas, path escapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether.components.base import ComponentError, PathEscapeError
from tether.components.tools import ToolsKind, schema_type

from .conftest import KindTree

SEARCH_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "what to look for"},
        "limit": {"type": "integer"},
        "sort": {"type": "string", "enum": ["date", "score"]},
    },
    "required": ["query"],
}


def _search(**overrides: Any) -> dict[str, Any]:
    params = json.loads(json.dumps(SEARCH_PARAMS))
    for key, value in overrides.items():
        if key == "properties":
            params["properties"].update(value)
        else:
            params[key] = value
    return params


def _write(tree: KindTree, rel: str, value: Any) -> None:
    tree.write(rel, json.dumps(value, indent=2))


def test_three_shapes_give_the_same_contract(tree: KindTree) -> None:
    _write(tree, "openai/search.json",
           {"type": "function", "function": {"name": "search", "description": "Search", "parameters": SEARCH_PARAMS}})
    _write(tree, "plain/search.json", {"name": "search", "description": "Search", "parameters": SEARCH_PARAMS})
    _write(tree, "anthropic/search.json", {"name": "search", "description": "Search", "input_schema": SEARCH_PARAMS})
    metas = []
    for folder in ("openai", "plain", "anthropic"):
        tools = tree.snapshot("tools", {"path": f"{folder}/"}).meta["tools"]
        assert tools["search"].pop("file") == f"{folder}/search.json"
        metas.append(tools)
    assert metas[0] == metas[1] == metas[2]
    assert metas[0] == {
        "search": {
            "description": "Search",
            "parameters": {
                "query": {"type": "string", "required": True},
                "limit": {"type": "integer", "required": False},
                "sort": {"type": "string", "required": False, "enum": ["date", "score"]},
            },
            "details": {"query": {"description": "what to look for"}},
        }
    }


def test_list_file_unions_and_nested_parameters(tree: KindTree) -> None:
    _write(tree, "tools/all.json", [
        {"name": "a", "parameters": {"type": "object", "properties": {
            "x": {"type": ["null", "string"]},
            "y": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "z": {},
            "filters": {"type": "object", "properties": {"lang": {"type": "string"}}, "required": ["lang"]},
            "rows": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        }}},
        {"name": "b"},
    ])
    snap = tree.snapshot("tools", {"path": "tools/all.json"})
    assert snap.meta["tools"]["a"]["parameters"] == {
        "x": {"type": ["null", "string"], "required": False},
        "y": {"type": ["integer", "null"], "required": False},
        "z": {"type": None, "required": False},
        "filters": {"type": "object", "required": False},
        "filters.lang": {"type": "string", "required": True},
        "rows": {"type": "array", "required": False},
        "rows[].id": {"type": "integer", "required": False},
    }
    assert snap.meta["tools"]["b"] == {"description": None, "parameters": {}, "details": {}, "file": "tools/all.json"}


def test_schema_type_normalization() -> None:
    assert schema_type({"type": ["string"]}) == "string"
    assert schema_type({"oneOf": [{"type": "string"}, {"enum": [1]}]}) is None
    assert schema_type({}) is None


def test_breaking_and_non_breaking_changes(tree: KindTree) -> None:
    _write(tree, "tools/search.json", {"name": "search", "description": "Search", "parameters": SEARCH_PARAMS})
    _write(tree, "tools/old.json", {"name": "legacy", "parameters": {}})
    old = tree.snapshot("tools", {"path": "tools"})
    new_params = _search(
        properties={
            "limit": {"type": "string"},
            "sort": {"type": "string", "enum": ["score", "relevance"]},
            "lang": {"type": "string"},
            "region": {"type": "string"},
        },
        required=["query", "region"],
    )
    del new_params["properties"]["query"]
    new_params["required"] = ["region", "limit"]
    _write(tree, "tools/search.json", {"name": "search", "description": "Search the KB", "parameters": new_params})
    tree.remove("tools/old.json")
    _write(tree, "tools/new.json", {"name": "lookup", "parameters": {}})
    new = tree.snapshot("tools", {"path": "tools"})
    diff = tree.diff("tools", old, new)
    assert diff.status == "changed"
    assert diff.flags == ["BREAKING"]
    assert diff.summary == "1 tool added, 1 tool removed, 1 tool changed; 6 breaking changes"
    observed = [(d["tool"], d.get("parameter"), d["change"], d["breaking"]) for d in diff.details]
    assert observed == [
        ("legacy", None, "tool removed", True),
        ("lookup", None, "tool added", False),
        ("search", None, "description changed", False),
        ("search", "lang", "parameter added", False),
        ("search", "limit", "parameter retyped", True),
        ("search", "limit", "now required", True),
        ("search", "query", "parameter removed", True),
        ("search", "region", "parameter added", True),
        ("search", "sort", "enum values removed", True),
        ("search", "sort", "enum values added", False),
    ]
    assert diff.details[2]["old"] == "Search" and diff.details[2]["new"] == "Search the KB"
    assert diff.details[8]["values"] == ["date"] and diff.details[9]["values"] == ["relevance"]
    assert diff.lines == [
        "BREAKING - tool legacy",
        "  + tool lookup",
        "  ~ search: description changed",
        "  + search.lang: optional parameter added",
        "BREAKING ~ search.limit: type integer -> string",
        "BREAKING ~ search.limit: optional -> required",
        "BREAKING - search.query: parameter removed",
        "BREAKING + search.region: required parameter added",
        'BREAKING ~ search.sort: enum values removed: "date"',
        '  ~ search.sort: enum values added: "relevance"',
    ]


def test_relaxations_are_not_breaking(tree: KindTree) -> None:
    _write(tree, "t.json", {"name": "search", "parameters": SEARCH_PARAMS})
    old = tree.snapshot("tools", {"path": "t.json"})
    relaxed = _search(required=[])
    relaxed["properties"]["sort"] = {"type": "string"}
    _write(tree, "t.json", {"name": "search", "parameters": relaxed})
    diff = tree.diff("tools", old, tree.snapshot("tools", {"path": "t.json"}))
    assert diff.flags == []
    assert [(d["parameter"], d["change"], d["breaking"]) for d in diff.details] == [
        ("query", "now optional", False),
        ("sort", "enum removed", False),
    ]
    assert diff.summary == "1 tool changed"


def test_new_enum_constraint_is_breaking(tree: KindTree) -> None:
    _write(tree, "t.json", {"name": "f", "parameters": {"properties": {"mode": {"type": "string"}}}})
    old = tree.snapshot("tools", {"path": "t.json"})
    _write(tree, "t.json", {"name": "f", "parameters": {"properties": {"mode": {"type": "string", "enum": ["a"]}}}})
    diff = tree.diff("tools", old, tree.snapshot("tools", {"path": "t.json"}))
    assert diff.flags == ["BREAKING"]
    assert diff.lines == ['BREAKING ~ f.mode: now restricted to ["a"]']


def test_formatting_only_and_unchanged(tree: KindTree) -> None:
    tree.write("t.json", json.dumps({"name": "f", "parameters": SEARCH_PARAMS}))
    old = tree.snapshot("tools", {"path": "t.json"})
    tree.write("t.json", json.dumps({"parameters": SEARCH_PARAMS, "name": "f"}, indent=4))
    new = tree.snapshot("tools", {"path": "t.json"})
    diff = tree.diff("tools", old, new)
    assert (diff.status, diff.summary, diff.flags, diff.details) == (
        "changed", "formatting only (no contract change)", [], []
    )
    same = tree.diff("tools", new, tree.snapshot("tools", {"path": "t.json"}))
    assert (same.status, same.details) == ("unchanged", [])


@pytest.mark.parametrize("edit", [
    {"properties": {"limit": {"type": "integer", "default": 10}}},
    {"properties": {"limit": {"type": "integer", "title": "Limit"}}},
    {"additionalProperties": False},
])
def test_a_schema_edit_outside_the_contract_is_not_formatting_only(tree: KindTree, edit: dict[str, Any]) -> None:
    """A default, a title or a root-level constraint is sent to the model: never "formatting only"."""
    old, new = _snapshots(tree, SEARCH_PARAMS, _search(**edit))
    diff = tree.diff("tools", old, new)
    assert diff.status == "changed" and "formatting only" not in diff.summary
    assert diff.lines and all("parameters." in line for line in diff.lines)


def test_strict_mode_switched_on_is_not_formatting_only(tree: KindTree) -> None:
    _write(tree, "t.json", {"type": "function", "function": {"name": "f", "parameters": SEARCH_PARAMS}})
    old = tree.snapshot("tools", {"path": "t.json"})
    _write(tree, "t.json", {"type": "function", "function": {"name": "f", "strict": True, "parameters": SEARCH_PARAMS}})
    diff = tree.diff("tools", old, tree.snapshot("tools", {"path": "t.json"}))
    assert "formatting only" not in diff.summary
    assert diff.lines == ["  + function.strict: true"]


def test_tool_moved_between_files(tree: KindTree) -> None:
    _write(tree, "tools/a.json", {"name": "f"})
    old = tree.snapshot("tools", {"path": "tools"})
    tree.remove("tools/a.json")
    _write(tree, "tools/b.json", {"name": "f"})
    diff = tree.diff("tools", old, tree.snapshot("tools", {"path": "tools"}))
    assert diff.lines == ["  ~ f: moved from tools/a.json to tools/b.json"]
    assert diff.flags == []


def test_added_component_is_not_breaking_removed_is(tree: KindTree) -> None:
    _write(tree, "t.json", [{"name": "f"}, {"name": "g"}])
    snap = tree.snapshot("tools", {"path": "t.json"})
    added = tree.diff("tools", None, snap)
    assert (added.status, added.summary, added.flags) == ("added", "2 tools added", [])
    removed = tree.diff("tools", snap, None)
    assert (removed.status, removed.flags) == ("removed", ["BREAKING"])
    assert removed.summary == "2 tools removed; 2 breaking changes"


def test_folder_takes_json_files_only_but_named_files_always(tree: KindTree) -> None:
    _write(tree, "tools/f.json", {"name": "f"})
    tree.write("tools/README.md", "# tools\n")
    _write(tree, "extra/g.schema", {"name": "g"})
    snap = tree.snapshot("tools", {"paths": ["tools/", "extra/g.schema"]})
    assert sorted(snap.meta["tools"]) == ["f", "g"]
    assert [entry.path for entry in snap.files] == ["extra/g.schema", "tools/f.json"]
    tree.write("docs/readme.md", "x")
    with pytest.raises(ComponentError, match=r"components\.c\.path: 'docs' matches no \.json files"):
        tree.snapshot("tools", {"path": "docs"})


def test_digest_is_stable_across_folders(tree_factory: Callable[[str], KindTree]) -> None:
    digests = set()
    for name in ("one", "two"):
        project = tree_factory(name)
        _write(project, "tools/search.json", {"name": "search", "parameters": SEARCH_PARAMS})
        digests.add(project.snapshot("tools", {"path": "tools/"}).digest)
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"tools/a.json": '[{"name": "f"}, {"name": "f"}]'}, r"^tools/a\.json: duplicate tool name 'f'$"),
        ({"tools/a.json": '{"name": "f"}', "tools/b.json": '{"name": "f"}'},
         r"^tools/b\.json: duplicate tool name 'f' \(also in tools/a\.json\)"),
        ({"tools/a.json": '[{"name": "f"}, {"description": "no name"}]'}, r"^tools/a\.json: tool #2: tool has no name"),
        ({"tools/a.json": '{"type": "function", "function": {"name": ""}}'}, r"^tools/a\.json: tool: tool has no name"),
        ({"tools/a.json": '{\n  "name": "f",\n  "parameters": {,}\n}'},
         r"^tools/a\.json: line 3, column 18: invalid JSON \(Expecting property name"),
        ({"tools/a.json": '["f"]'}, r"^tools/a\.json: tool #1: expected a JSON object, got str"),
        ({"tools/a.json": '{"name": "f", "parameters": {"properties": []}}'},
         r"^tools/a\.json: tool 'f': 'properties' must be an object"),
        ({"tools/a.json": '{"name": "f", "parameters": {"properties": {}, "required": "x"}}'},
         r"^tools/a\.json: tool 'f': 'required' must be a list"),
        ({"tools/a.json": '{"name": "f", "parameters": {"properties": {"x": {"enum": [NaN]}}}}'},
         r"^tools/a\.json: invalid JSON \(NaN is not valid JSON\)"),
        ({"tools/a.json": '{"name": "f", "description": 3}'}, r"^tools/a\.json: tool 'f': 'description' must be a string"),
    ],
)
def test_bad_schemas(tree: KindTree, files: dict[str, str], message: str) -> None:
    for rel, text in files.items():
        tree.write(rel, text)
    with pytest.raises(ComponentError, match=message):
        tree.snapshot("tools", {"path": "tools"})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "tools", "strict": True}, r"^tether\.toml: components\.c\.strict: unknown key"),
        ({"paths": []}, r"^tether\.toml: components\.c\.paths: expected a non-empty list"),
        ({"paths": ["a", 1]}, r"^tether\.toml: components\.c\.paths: expected a non-empty list of strings"),
        ({}, r"missing 'path'"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("tools", table)


def test_validate_normalizes_paths(tree: KindTree) -> None:
    assert tree.validate("tools", {"paths": ["tools/", "more//"]}) == {"paths": ["tools", "more"]}


def test_missing_source(tree: KindTree) -> None:
    with pytest.raises(ComponentError, match=r"'tools' does not exist"):
        tree.snapshot("tools", {"path": "tools"})


@pytest.mark.parametrize("path", ["../tools", "tools/../../x.json", "/tmp/x.json", "../*.json"])
def test_escaping_paths(tree: KindTree, path: str) -> None:
    with pytest.raises(PathEscapeError):
        tree.validate("tools", {"path": path})
    with pytest.raises(PathEscapeError):
        ToolsKind().snapshot("c", {"path": path}, tree.ctx)


def test_symlink_outside(tree: KindTree, outside_file: Path) -> None:
    tree.symlink("tools/evil.json", outside_file)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("tools", {"path": "tools"})


def _contract_diff(tree: KindTree, old_params: dict[str, Any], new_params: dict[str, Any]) -> Any:
    _write(tree, "t.json", {"name": "f", "parameters": old_params})
    old = tree.snapshot("tools", {"path": "t.json"})
    _write(tree, "t.json", {"name": "f", "parameters": new_params})
    return tree.diff("tools", old, tree.snapshot("tools", {"path": "t.json"}))


def test_array_items_retyped_is_breaking(tree: KindTree) -> None:
    diff = _contract_diff(
        tree,
        {"properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
        {"properties": {"ids": {"type": "array", "items": {"type": "integer"}}}},
    )
    assert diff.flags == ["BREAKING"]
    assert "formatting only" not in diff.summary
    assert diff.lines == ["BREAKING ~ f.ids[]: type string -> integer"]


@pytest.mark.parametrize("defs", ["$defs", "definitions"])
def test_ref_into_defs_is_resolved_and_compared(tree: KindTree, defs: str) -> None:
    def params(q_type: str) -> dict[str, Any]:
        return {
            "type": "object",
            defs: {"Q": {"type": q_type}, "Row": {"type": "object", "properties": {"n": {"$ref": f"#/{defs}/Q"}}}},
            "properties": {"q": {"$ref": f"#/{defs}/Q"}, "rows": {"type": "array", "items": {"$ref": f"#/{defs}/Row"}},
                           "maybe": {"anyOf": [{"$ref": f"#/{defs}/Row"}, {"type": "null"}]}},
            "required": ["q"],
        }

    diff = _contract_diff(tree, params("string"), params("integer"))
    assert diff.flags == ["BREAKING"]
    assert diff.lines == [
        "BREAKING ~ f.maybe.n: type string -> integer",
        "BREAKING ~ f.q: type string -> integer",
        "BREAKING ~ f.rows[].n: type string -> integer",
    ]


def test_recursive_ref_is_cycle_safe(tree: KindTree) -> None:
    def params(leaf: dict[str, Any]) -> dict[str, Any]:
        node = {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}, "v": leaf}}
        return {"$defs": {"Node": node}, "properties": {"root": {"$ref": "#/$defs/Node"}}}

    diff = _contract_diff(tree, params({"type": "string"}), params({"type": "string", "maxLength": 5}))
    assert diff.lines == ["BREAKING ~ f.root.v: maxLength 5 added"]


def test_nested_constraints_and_descriptions(tree: KindTree) -> None:
    old = {"properties": {
        "filters": {"type": "object", "properties": {
            "lang": {"type": "string"}, "mode": {"type": "string", "enum": ["a", "b"]}, "n": {"type": "integer"},
            "code": {"type": "string", "pattern": "^[a-z]+$"}, "m": {"type": "integer", "minimum": 5},
        }},
        "tags": {"type": "array", "items": {"type": "string"}},
        "opt": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "query": {"type": "string", "description": "what to look for"},
    }}
    new = json.loads(json.dumps(old))
    props = new["properties"]
    props["filters"]["properties"].update({
        "lang": {"type": "string", "minLength": 2, "maxLength": 8}, "mode": {"type": "string", "enum": ["a"]},
        "n": {"type": "integer", "minimum": 0}, "code": {"type": "string"}, "m": {"type": "integer", "minimum": 1},
    })
    props["tags"]["items"]["maxLength"] = 10
    props["opt"]["anyOf"][0]["maxLength"] = 3
    props["query"]["description"] = "the search terms"
    diff = tree.diff("tools", *_snapshots(tree, old, new))
    assert diff.flags == ["BREAKING"]
    assert diff.lines == [
        "  ~ f.filters.code: pattern \"^[a-z]+$\" removed",
        "BREAKING ~ f.filters.lang: minLength 2 added",
        "BREAKING ~ f.filters.lang: maxLength 8 added",
        "  ~ f.filters.m: minimum 5 -> 1",
        'BREAKING ~ f.filters.mode: enum values removed: "b"',
        "BREAKING ~ f.filters.n: minimum 0 added",
        "BREAKING ~ f.opt<string>: maxLength 3 added",
        "  ~ f.query: description changed",
        "BREAKING ~ f.tags[]: maxLength 10 added",
    ]
    assert diff.summary == "1 tool changed; 6 breaking changes"
    described = [d for d in diff.details if d["change"] == "parameter description changed"]
    assert described == [{"type": "tool", "tool": "f", "parameter": "query", "change": "parameter description changed",
                          "old": "what to look for", "new": "the search terms", "breaking": False}]


def test_description_only_change_is_not_formatting_only(tree: KindTree) -> None:
    new = _search(properties={"query": {"type": "string", "description": "the search terms"}})
    diff = tree.diff("tools", *_snapshots(tree, SEARCH_PARAMS, new))
    assert diff.flags == []
    assert diff.summary == "1 tool changed"
    assert diff.lines == ["  ~ f.query: description changed"]


def test_snapshot_without_details_is_compared_as_before(tree: KindTree) -> None:
    """A snapshot recorded before details were kept: no detail comparisons, no false alarms."""
    old, new = _snapshots(tree, SEARCH_PARAMS, _search(properties={"query": {"type": "string", "minLength": 1}}))
    old.meta["tools"]["f"].pop("details")
    diff = tree.diff("tools", old, new)
    assert diff.flags == [] and {detail["type"] for detail in diff.details} == {"schema"}
    assert "formatting only" not in diff.summary  # the file's JSON did change


def _snapshots(tree: KindTree, old_params: dict[str, Any], new_params: dict[str, Any]) -> tuple[Any, Any]:
    _write(tree, "t.json", {"name": "f", "parameters": old_params})
    old = tree.snapshot("tools", {"path": "t.json"})
    _write(tree, "t.json", {"name": "f", "parameters": new_params})
    return old, tree.snapshot("tools", {"path": "t.json"})
