"""The config kind: parsing, canonical values, key-path diffs, bad input, path escapes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.components.base import ComponentError, FileEntry, PathEscapeError, Snapshot
from tether.components.config import ConfigKind, canonical_value, diff_values, parse_config
from tether.ids import canonical_json, digest_bytes, digest_json

from .conftest import KindTree, MemoryBlobs

OLD_YAML = """\
model: small
sampling:
  temperature: 0.2
  top_p: 0.9
stop: ["###", "END"]
"""

NEW_YAML = """\
model: small
sampling:
  temperature: 0.7
stop: ["###", "STOP"]
max_tokens: 512
"""


def test_snapshot_keeps_raw_bytes_and_canonical_value(tree: KindTree) -> None:
    raw = tree.write("config/generation.yaml", OLD_YAML).read_bytes()
    snap = tree.snapshot("config", {"path": "config/generation.yaml"})
    assert snap.spec == {"path": "config/generation.yaml"}
    assert len(snap.files) == 1 and snap.files[0].digest == digest_bytes(raw)
    assert snap.meta == {
        "value": {"model": "small", "sampling": {"temperature": 0.2, "top_p": 0.9}, "stop": ["###", "END"]}
    }


def test_round_trip_diff_key_paths(tree: KindTree) -> None:
    tree.write("config/generation.yaml", OLD_YAML)
    old = tree.snapshot("config", {"path": "config/generation.yaml"})
    tree.write("config/generation.yaml", NEW_YAML)
    new = tree.snapshot("config", {"path": "config/generation.yaml"})
    diff = tree.diff("config", old, new)
    assert diff.status == "changed"
    assert diff.summary == "2 keys changed, 1 added, 1 removed"
    assert diff.details == [
        {"type": "key", "key": "max_tokens", "path": ["max_tokens"], "change": "added", "new": 512},
        {"type": "key", "key": "sampling.temperature", "path": ["sampling", "temperature"], "change": "changed",
         "old": 0.2, "new": 0.7},
        {"type": "key", "key": "sampling.top_p", "path": ["sampling", "top_p"], "change": "removed", "old": 0.9},
        {"type": "key", "key": "stop[1]", "path": ["stop", 1], "change": "changed", "old": "END", "new": "STOP"},
    ]
    assert diff.lines == [
        "  + max_tokens: 512",
        "  ~ sampling.temperature: 0.2 -> 0.7",
        "  - sampling.top_p: 0.9",
        '  ~ stop[1]: "END" -> "STOP"',
    ]


def test_formatting_only_change(tree: KindTree) -> None:
    tree.write("c.yaml", "a: 1\nb: [1, 2]\n")
    old = tree.snapshot("config", {"path": "c.yaml"})
    tree.write("c.yaml", "# comment\nb:\n  - 1\n  - 2\na: 1\n")
    new = tree.snapshot("config", {"path": "c.yaml"})
    diff = tree.diff("config", old, new)
    assert (diff.status, diff.summary, diff.details) == ("changed", "formatting only (no value changed)", [])


def test_added_removed_and_unchanged(tree: KindTree) -> None:
    tree.write("c.json", '{"a": {"b": 1}, "c": []}')
    snap = tree.snapshot("config", {"path": "c.json"})
    added = tree.diff("config", None, snap)
    assert (added.status, added.summary) == ("added", "2 keys added")
    assert added.lines == ["  + a.b: 1", "  + c: []"]
    removed = tree.diff("config", snap, None)
    assert (removed.status, removed.summary) == ("removed", "2 keys removed")
    same = tree.diff("config", snap, tree.snapshot("config", {"path": "c.json"}))
    assert (same.status, same.details, same.lines) == ("unchanged", [], [])


def test_type_changes_and_strict_equality() -> None:
    changes = diff_values({"a": 1, "b": True, "c": {"d": 1}, "e": 0}, {"a": 1.0, "b": 1, "c": 5, "e": 0})
    assert [(c["key"], c["change"]) for c in changes] == [
        ("a", "changed"), ("b", "changed"), ("c", "added"), ("c.d", "removed")
    ]


def test_odd_keys_are_quoted() -> None:
    changes = diff_values({"headers": {"x.y": 1, "a b": 2}}, {"headers": {"x.y": 2, "a b": 2}})
    assert changes[0]["key"] == 'headers["x.y"]'


def test_declaration_change_with_same_value(tree: KindTree) -> None:
    tree.write("a.yaml", "x: 1\n")
    tree.write("b.json", '{"x": 1}')
    diff = tree.diff("config", tree.snapshot("config", {"path": "a.yaml"}), tree.snapshot("config", {"path": "b.json"}))
    assert diff.summary == "no value changed; declaration changed: path"


def test_formats_and_format_override(tree: KindTree) -> None:
    tree.write("c.toml", 'title = "x"\n[sampling]\ntemperature = 0.5\nwhen = 2024-05-06T07:08:09Z\n')
    tree.write("c.json", '{"title": "x", "sampling": {"temperature": 0.5, "when": "2024-05-06T07:08:09+00:00"}}')
    tree.write("c.cfg", "title: x\nsampling: {temperature: 0.5, when: 2024-05-06T07:08:09Z}\n")
    toml_value = tree.snapshot("config", {"path": "c.toml"}).meta["value"]
    json_value = tree.snapshot("config", {"path": "c.json"}).meta["value"]
    yaml_value = tree.snapshot("config", {"path": "c.cfg", "format": "yaml"}).meta["value"]
    assert toml_value == json_value == yaml_value
    assert yaml_value["sampling"]["when"] == "2024-05-06T07:08:09+00:00"


def test_yaml_dates_and_non_string_keys_become_strings(tree: KindTree) -> None:
    tree.write("c.yaml", "released: 2024-01-02\nlogit_bias:\n  50256: -100\n  true: 1\n")
    value = tree.snapshot("config", {"path": "c.yaml"}).meta["value"]
    assert value == {"released": "2024-01-02", "logit_bias": {"50256": -100, "true": 1}}


def test_same_key_twice_after_stringifying_is_an_error(tree: KindTree) -> None:
    tree.write("c.yaml", "m:\n  1: a\n  '1': b\n")
    with pytest.raises(ComponentError, match=r"^c\.yaml: m: key '1' appears twice"):
        tree.snapshot("config", {"path": "c.yaml"})


@pytest.mark.parametrize(
    ("rel", "content", "message"),
    [
        ("config/generation.yaml", "a: 1\nb:\n  c: [1, 2\n  d: 3\n",
         r"^config/generation\.yaml: line \d+, column \d+: could not parse YAML: "),
        ("config/g.json", '{\n  "a": 1,\n  "b" 2\n}', r"^config/g\.json: line 3, column 7: could not parse JSON: "),
        ("config/g.toml", "a = 1\nb = = 2\n", r"^config/g\.toml: line 2, column 5: could not parse TOML: "),
        ("config/list.yaml", "- a\n- b\n", r"^config/list\.yaml: the top level must be a mapping, got a list"),
        ("config/empty.yaml", "", r"^config/empty\.yaml: the top level must be a mapping, got an empty document"),
        ("config/nan.yaml", "sampling:\n  temperature: .nan\n",
         r"^config/nan\.yaml: sampling\.temperature: NaN is not allowed"),
        ("config/inf.json", '{"a": [1, Infinity]}', r"^config/inf\.json: a\[1\]: infinity is not allowed"),
        ("config/bin.yaml", "blob: !!binary aGVsbG8=\n", r"^config/bin\.yaml: blob: a bytes value has no JSON form"),
        ("config/latin.yaml", b"a: \xe9\n", r"^config/latin\.yaml: not UTF-8 text"),
        ("config/twice.yaml", "x: 1\ny:\n  z: 2\nx: 3\n",
         r"^config/twice\.yaml: line 4, column 1: could not parse YAML: found duplicate key 'x'"),
        ("config/nested.yaml", "a:\n  b: 1\n  b: 2\n", r"^config/nested\.yaml: line 3, column 3: .*duplicate key 'b'"),
        ("config/twice.json", '{"a": 1, "b": {"c": 1}, "a": 2}', r"^config/twice\.json: could not parse JSON: duplicate key 'a'"),
    ],
)
def test_bad_content(tree: KindTree, rel: str, content: str | bytes, message: str) -> None:
    tree.write(rel, content)
    with pytest.raises(ComponentError, match=message):
        tree.snapshot("config", {"path": rel})


def test_yaml_error_position(tree: KindTree) -> None:
    tree.write("config/generation.yaml", "a: 1\nb: 2\nc: [oops\n")
    with pytest.raises(ComponentError, match=r"^config/generation\.yaml: line 4, column 1: could not parse YAML"):
        tree.snapshot("config", {"path": "config/generation.yaml"})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "c.yaml", "schema": "x"}, r"^tether\.toml: components\.c\.schema: unknown key"),
        ({"paths": ["c.yaml"]}, r"^tether\.toml: components\.c\.paths: unknown key"),
        ({}, r"^tether\.toml: components\.c: missing required key 'path'"),
        ({"path": ["c.yaml"]}, r"^tether\.toml: components\.c\.path: expected a string"),
        ({"path": "c.yaml", "format": "ini"}, r"^tether\.toml: components\.c\.format: expected one of yaml, json"),
        ({"path": "c.cfg"}, r"^tether\.toml: components\.c\.path: cannot tell the format of 'c\.cfg'"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("config", table)


def test_missing_file_and_folder(tree: KindTree) -> None:
    with pytest.raises(ComponentError, match=r"components\.c\.path: 'c\.yaml' does not exist"):
        tree.snapshot("config", {"path": "c.yaml"})
    (tree.root / "d.yaml").mkdir()
    with pytest.raises(ComponentError, match=r"'d\.yaml' is a folder"):
        tree.snapshot("config", {"path": "d.yaml"})


@pytest.mark.parametrize("path", ["../c.yaml", "a/../../c.yaml", "/etc/c.yaml"])
def test_escaping_paths(tree: KindTree, path: str) -> None:
    with pytest.raises(PathEscapeError):
        tree.validate("config", {"path": path})
    with pytest.raises(PathEscapeError):
        ConfigKind().snapshot("c", {"path": path}, tree.ctx)


def test_symlink_outside(tree: KindTree, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("a: 1\n", encoding="utf-8")
    tree.symlink("config/c.yaml", outside)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("config", {"path": "config/c.yaml"})


def test_digest_is_stable_across_folders(tree_factory: Callable[[str], KindTree]) -> None:
    digests = set()
    for name in ("one", "two"):
        project = tree_factory(name)
        project.write("config/generation.yaml", OLD_YAML)
        digests.add(project.snapshot("config", {"path": "config/generation.yaml"}).digest)
    assert len(digests) == 1


def _config_snapshot(value: dict[str, Any]) -> Snapshot:
    return Snapshot("config", {"path": "c.json"}, (FileEntry("c.json", digest_json(value), 1),), {"value": value})


def test_long_values_are_shortened_in_lines_only() -> None:
    long_text = "x" * 500
    diff = ConfigKind().diff("c", _config_snapshot({"a": "short"}), _config_snapshot({"a": long_text}), MemoryBlobs())
    assert diff.details[0]["new"] == long_text
    assert diff.lines[0].startswith('  ~ a: "short" -> "xxx') and diff.lines[0].endswith("...")
    assert len(diff.lines[0]) < 160


# ---- properties ------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)
_configs = st.dictionaries(st.text(max_size=3), _values, max_size=4)


def _leaves(value: Any, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(value, dict) and value:
        return {path: leaf for key, item in value.items() for path, leaf in _leaves(item, (*prefix, key)).items()}
    if isinstance(value, list) and value:
        return {path: leaf for i, item in enumerate(value) for path, leaf in _leaves(item, (*prefix, i)).items()}
    return {prefix: value}


def _rebuild(flat: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    order = sorted(flat, key=lambda p: [(0, "", c) if isinstance(c, int) else (1, c, 0) for c in p])
    for path in order:
        node: Any = root
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            child: Any = copy.deepcopy(flat[path]) if last else ({} if isinstance(path[depth + 1], str) else [])
            if isinstance(node, list):
                assert part == len(node) or (not last and part < len(node))
                if part == len(node):
                    node.append(child)
                node = node[part]
            else:
                node = node.setdefault(part, child)
    return root


@settings(max_examples=200, deadline=None)
@given(old=_configs, new=_configs)
def test_applying_reported_changes_to_old_gives_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    diff = ConfigKind().diff("c", _config_snapshot(old), _config_snapshot(new), MemoryBlobs())
    flat = _leaves(old)
    flat.pop((), None)
    for change in diff.details:
        path = tuple(change["path"])
        if change["change"] == "removed":
            assert canonical_json(flat.pop(path)) == canonical_json(change["old"])
        elif change["change"] == "changed":
            assert canonical_json(flat[path]) == canonical_json(change["old"])
            flat[path] = change["new"]
        else:
            assert path not in flat
            flat[path] = change["new"]
    assert canonical_json(_rebuild(flat)) == canonical_json(new)
    assert (diff.status == "unchanged") == (canonical_json(old) == canonical_json(new))


def _reorder(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(item) for item in value]
    return value


_plain_text = st.text(alphabet="abcxyz_ 0189", max_size=5)
_yaml_safe = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _plain_text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_plain_text, children, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.text(max_size=4), _values, max_size=5))
def test_canonical_value_is_stable_under_key_reordering(value: dict[str, Any]) -> None:
    reordered = _reorder(value)
    assert canonical_json(canonical_value(value, "c.json")) == canonical_json(canonical_value(reordered, "c.json"))
    from_json = parse_config(json.dumps(value).encode(), "c.json", "json")
    from_reordered = parse_config(json.dumps(reordered).encode(), "c.json", "json")
    assert digest_json(from_json) == digest_json(from_reordered)


@settings(max_examples=50, deadline=None)
@given(value=st.dictionaries(_plain_text, _yaml_safe, max_size=4))
def test_yaml_and_json_give_the_same_canonical_value(value: dict[str, Any]) -> None:
    from_yaml = parse_config(yaml.safe_dump(_reorder(value), sort_keys=False).encode(), "c.yaml", "yaml")
    from_json = parse_config(json.dumps(value).encode(), "c.json", "json")
    assert canonical_json(from_yaml) == canonical_json(from_json)


def test_yaml_merge_keys_may_be_overridden(tree: KindTree) -> None:
    """``<<`` brings defaults in; a key of the mapping itself overriding one is no duplicate."""
    tree.write("c.yaml", "base: &base\n  temperature: 0.2\n  top_p: 1\nprod:\n  <<: *base\n  temperature: 0.7\n")
    value = tree.snapshot("config", {"path": "c.yaml"}).meta["value"]
    assert value["prod"] == {"temperature": 0.7, "top_p": 1}
