"""The evalset kind: case keys, case-level diffs, malformed lines, caching, path escapes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether.components import evalset as evalset_module
from tether.components.base import ComponentError, PathEscapeError
from tether.components.evalset import EvalsetKind
from tether.ids import digest_json
from tether.project.statcache import RACY_NS, StatCache
from tether.project.worktree import WorkingTree

from .conftest import KindTree


def _jsonl(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(case) + "\n" for case in cases)


CASES = [
    {"id": "refund-1", "input": "I want a refund", "expected": "policy"},
    {"id": "greet", "input": "hi", "expected": "hello"},
    {"id": "bye", "input": "bye", "expected": "goodbye"},
]


def test_snapshot_meta(tree: KindTree) -> None:
    anonymous = {"input": "no id", "rubric": "polite"}
    tree.write("evals/cases.jsonl", _jsonl(CASES) + "\n   \n" + json.dumps(anonymous) + "\n")
    snap = tree.snapshot("evalset", {"path": "evals/cases.jsonl"})
    assert snap.spec == {"path": "evals/cases.jsonl"}
    assert snap.meta["count"] == 4
    assert snap.meta["fields"] == ["expected", "id", "input", "rubric"]
    assert snap.meta["cases"] == {
        "refund-1": digest_json(CASES[0]),
        "greet": digest_json(CASES[1]),
        "bye": digest_json(CASES[2]),
        digest_json(anonymous): digest_json(anonymous),
    }


def test_round_trip_diff(tree: KindTree) -> None:
    tree.write("evals/cases.jsonl", _jsonl([*CASES, {"input": "anonymous old"}]))
    old = tree.snapshot("evalset", {"path": "evals/cases.jsonl"})
    changed = {"id": "greet", "input": "hello there", "expected": "hello", "tags": ["smalltalk"]}
    tree.write("evals/cases.jsonl", _jsonl([CASES[0], changed, {"id": "new-1", "input": "x"}, {"input": "anon"}]))
    new = tree.snapshot("evalset", {"path": "evals/cases.jsonl"})
    diff = tree.diff("evalset", old, new)
    assert diff.status == "changed"
    assert diff.summary == "2 cases added, 2 removed, 1 changed (4 -> 4 cases); fields added: tags"
    anon_new, anon_old = digest_json({"input": "anon"}), digest_json({"input": "anonymous old"})
    case_details = [d for d in diff.details if d["type"] == "case"]
    assert case_details == [
        {"type": "case", "key": min(anon_new, "new-1"), "change": "added"},
        {"type": "case", "key": max(anon_new, "new-1"), "change": "added"},
        {"type": "case", "key": min(anon_old, "bye"), "change": "removed"},
        {"type": "case", "key": max(anon_old, "bye"), "change": "removed"},
        {"type": "case", "key": "greet", "change": "changed", "fields": {
            "input": {"old": "hi", "new": "hello there"},
            "tags": {"new": ["smalltalk"]},
        }},
    ]
    assert {"type": "fields", "added": ["tags"], "removed": []} in diff.details
    assert '  + case {"input":"anon"}' in diff.lines
    assert "  + case new-1" in diff.lines
    assert "  - case bye" in diff.lines
    assert '  - case {"input":"anonymous old"}' in diff.lines
    greet = diff.lines.index("  ~ case greet")
    assert diff.lines[greet + 1: greet + 3] == ['      input: "hi" -> "hello there"', '      tags: (absent) -> ["smalltalk"]']
    assert diff.lines[-1] == "  + field tags"


def test_changed_cases_without_readable_content_still_listed(tree: KindTree) -> None:
    tree.write("c.jsonl", _jsonl(CASES))
    old = tree.snapshot("evalset", {"path": "c.jsonl"})
    tree.write("c.jsonl", _jsonl([{**CASES[0], "expected": "other"}, *CASES[1:]]))
    new = tree.snapshot("evalset", {"path": "c.jsonl"})
    tree.reader.blobs.clear()  # neither side readable
    diff = tree.diff("evalset", old, new)
    assert diff.summary == "1 case changed (3 -> 3 cases)"
    assert diff.lines == ["  ~ case refund-1"]
    assert diff.details == [{"type": "case", "key": "refund-1", "change": "changed"}]


def test_examples_are_capped_at_twenty(tree: KindTree) -> None:
    tree.write("c.jsonl", "")
    old = tree.snapshot("evalset", {"path": "c.jsonl"})
    tree.write("c.jsonl", _jsonl([{"id": f"case-{i:03d}", "input": i} for i in range(25)]))
    diff = tree.diff("evalset", old, tree.snapshot("evalset", {"path": "c.jsonl"}))
    assert diff.summary == "25 cases added (0 -> 25 cases); fields added: id, input"
    assert sum(1 for line in diff.lines if line.startswith("  + case ")) == 20
    assert "  ... and 5 more added" in diff.lines
    assert sum(1 for d in diff.details if d["type"] == "case") == 25


def test_reordering_is_not_a_case_change(tree: KindTree) -> None:
    tree.write("c.jsonl", _jsonl(CASES))
    old = tree.snapshot("evalset", {"path": "c.jsonl"})
    tree.write("c.jsonl", _jsonl(list(reversed(CASES))))
    diff = tree.diff("evalset", old, tree.snapshot("evalset", {"path": "c.jsonl"}))
    assert (diff.status, diff.summary, diff.details) == (
        "changed", "no case changed (lines reordered or reformatted)", []
    )


def test_added_removed_unchanged(tree: KindTree) -> None:
    tree.write("c.jsonl", _jsonl(CASES))
    snap = tree.snapshot("evalset", {"path": "c.jsonl"})
    assert tree.diff("evalset", None, snap).summary == "3 cases added (0 -> 3 cases)"
    assert tree.diff("evalset", snap, None).summary == "3 cases removed (3 -> 0 cases)"
    same = tree.diff("evalset", snap, tree.snapshot("evalset", {"path": "c.jsonl"}))
    assert (same.status, same.lines) == ("unchanged", [])


def test_digest_is_stable_across_folders(tree_factory: Callable[[str], KindTree]) -> None:
    digests = set()
    for name in ("one", "two"):
        project = tree_factory(name)
        project.write("evals/cases.jsonl", _jsonl(CASES))
        digests.add(project.snapshot("evalset", {"path": "evals/cases.jsonl"}).digest)
    assert len(digests) == 1


def test_parse_is_stat_cached(tree: KindTree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.write("c.jsonl", _jsonl(CASES))
    time.sleep(RACY_NS / 1e9 + 0.02)  # a file written this instant is never trusted to the cache
    cache = StatCache(tree.root / ".tether" / "cache" / "stat.json")
    ctx = WorkingTree(tree.root, cache=cache)
    kind = EvalsetKind()
    first = kind.snapshot("c", {"path": "c.jsonl"}, ctx)
    calls: list[str] = []
    real_parse = evalset_module.parse_evalset

    def counting_parse(path: Path, rel: str) -> dict[str, Any]:
        calls.append(rel)
        return real_parse(path, rel)

    monkeypatch.setattr(evalset_module, "parse_evalset", counting_parse)
    assert kind.snapshot("c", {"path": "c.jsonl"}, ctx) == first
    assert calls == []
    tree.write("c.jsonl", _jsonl(CASES[:2]))
    assert kind.snapshot("c", {"path": "c.jsonl"}, ctx).meta["count"] == 2
    assert calls == ["c.jsonl"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_jsonl(CASES[:2]) + "\n\n\n\n" + '{"id": "x", "input": }\n',
         r"^evals/cases\.jsonl: line 7: invalid JSON \(Expecting value at column 22\)$"),
        ('{"id": 1}\n[1, 2]\n', r"^evals/cases\.jsonl: line 2: expected a JSON object, got an array$"),
        (_jsonl([CASES[0], CASES[1], CASES[0]]),
         r"^evals/cases\.jsonl: line 3: duplicate id 'refund-1' \(first on line 1\)$"),
        ('{"input": "same"}\n{"input": "same"}\n',
         r"^evals/cases\.jsonl: line 2: duplicate case \(same content as line 1\)"),
        ('{"id": 1.5}\n', r"^evals/cases\.jsonl: line 1: 'id' must be a string or an integer, got 1\.5$"),
        ('{"id": "a", "score": NaN}\n', r"^evals/cases\.jsonl: line 1: invalid JSON \(NaN is not valid JSON\)$"),
        (b'{"id": "a"}\n{"input": "\xff"}\n', r"^evals/cases\.jsonl: line 2: not UTF-8 text"),
        # a truncated line: the position json reports on the line, never "column 1" of the next one
        ('{"id": "a"}\n{"id": "b", "input": "x"\n',
         r"^evals/cases\.jsonl: line 2: truncated JSON \(expecting ',' delimiter at column 25, past the end of the line\)$"),
        ('{"id": "a"}\r\n{"id": "b", "input": \r\n',
         r"^evals/cases\.jsonl: line 2: truncated JSON \(expecting value at column 22, past the end of the line\)$"),
        ('{"id": "a", "input": "cut off\n', r"^evals/cases\.jsonl: line 1: truncated JSON \(the string starting at column 22 is not closed\)$"),
        ('{"id": "a"} x\n', r"^evals/cases\.jsonl: line 1: invalid JSON \(Extra data at column 13\)$"),
    ],
)
def test_malformed_lines(tree: KindTree, content: str | bytes, message: str) -> None:
    tree.write("evals/cases.jsonl", content)
    with pytest.raises(ComponentError, match=message):
        tree.snapshot("evalset", {"path": "evals/cases.jsonl"})


def test_integer_ids_and_bom(tree: KindTree) -> None:
    tree.write("c.jsonl", b"\xef\xbb\xbf" + b'{"id": 7, "input": "x"}\r\n{"id": "8"}\r\n')
    snap = tree.snapshot("evalset", {"path": "c.jsonl"})
    assert sorted(snap.meta["cases"]) == ["7", "8"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "c.jsonl", "split": "test"}, r"^tether\.toml: components\.c\.split: unknown key"),
        ({"paths": ["c.jsonl"]}, r"^tether\.toml: components\.c\.paths: unknown key"),
        ({}, r"^tether\.toml: components\.c: missing required key 'path'"),
        ({"path": 5}, r"^tether\.toml: components\.c\.path: expected a string"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("evalset", table)


def test_missing_source_and_folder(tree: KindTree) -> None:
    with pytest.raises(ComponentError, match=r"components\.c\.path: 'evals/cases\.jsonl' does not exist"):
        tree.snapshot("evalset", {"path": "evals/cases.jsonl"})
    (tree.root / "evals").mkdir()
    with pytest.raises(ComponentError, match=r"'evals' is a folder"):
        tree.snapshot("evalset", {"path": "evals/"})


@pytest.mark.parametrize("path", ["../cases.jsonl", "evals/../../cases.jsonl", "/data/cases.jsonl"])
def test_escaping_paths(tree: KindTree, path: str) -> None:
    with pytest.raises(PathEscapeError):
        tree.validate("evalset", {"path": path})
    with pytest.raises(PathEscapeError):
        EvalsetKind().snapshot("c", {"path": path}, tree.ctx)


def test_symlink_outside(tree: KindTree, outside_file: Path) -> None:
    tree.symlink("evals/cases.jsonl", outside_file)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("evalset", {"path": "evals/cases.jsonl"})
