"""The prompt kind: snapshot, variables, unified diffs, bad declarations, path escapes."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.components.base import ComponentError, PathEscapeError
from tether.components.prompt import format_variables, jinja_variables, template_variables
from tether.components.textdiff import NO_NEWLINE, count_changed_lines, split_lines, unified_diff

from .conftest import KindTree

OLD = "You are a support agent for {company}.\nBe concise.\nAnswer in English.\nSign off politely.\n"
NEW = "You are a support agent for {company}.\nBe concise and {tone}.\nUse {tone} wording.\nSign off politely.\n"


def test_snapshot_records_files_and_variables(tree: KindTree) -> None:
    tree.write("prompts/system.md", "Hello {{ customer }}, about {{ order.id }}.\n")
    tree.write("prompts/user.txt", "Question: {question}\n")
    snap = tree.snapshot("prompt", {"path": "prompts/"})
    assert snap.spec == {"path": "prompts"}
    assert [entry.path for entry in snap.files] == ["prompts/system.md", "prompts/user.txt"]
    assert snap.meta == {"variables": {"prompts/system.md": ["customer", "order"], "prompts/user.txt": ["question"]}}


def test_round_trip_diff_reports_text_and_variables(tree: KindTree) -> None:
    tree.write("prompts/system.md", OLD)
    old = tree.snapshot("prompt", {"path": "prompts/system.md"})
    tree.write("prompts/system.md", NEW)
    new = tree.snapshot("prompt", {"path": "prompts/system.md"})
    diff = tree.diff("prompt", old, new)
    assert diff.status == "changed"
    assert diff.summary == "1 file changed, +2 -2 lines; variables added: tone"
    assert diff.flags == []
    assert diff.lines == [
        "--- a/prompts/system.md",
        "+++ b/prompts/system.md",
        "@@ -1,4 +1,4 @@",
        " You are a support agent for {company}.",
        "-Be concise.",
        "-Answer in English.",
        "+Be concise and {tone}.",
        "+Use {tone} wording.",
        " Sign off politely.",
        "  + variable tone (prompts/system.md)",
    ]
    file_detail, variable_detail = diff.details
    assert file_detail["type"] == "file"
    assert file_detail["path"] == "prompts/system.md"
    assert file_detail["change"] == "changed"
    assert (file_detail["added_lines"], file_detail["removed_lines"]) == (2, 2)
    assert file_detail["old_digest"] == old.files[0].digest and file_detail["new_digest"] == new.files[0].digest
    assert variable_detail == {"type": "variable", "name": "tone", "change": "added", "files": ["prompts/system.md"]}


def test_summary_counts_one_line_replaced_by_two(tree: KindTree) -> None:
    tree.write("p.md", "a\nb\nc\n")
    old = tree.snapshot("prompt", {"path": "p.md"})
    tree.write("p.md", "a\nB {tone}\nB2\nc\n")
    diff = tree.diff("prompt", old, tree.snapshot("prompt", {"path": "p.md"}))
    assert diff.summary == "1 file changed, +2 -1 lines; variables added: tone"


def test_a_line_ending_change_is_named(tree: KindTree) -> None:
    """CRLF -> LF changes every line, but the carriage return is invisible in the diff lines."""
    tree.write("p.md", b"You are helpful.\r\nBe brief.\r\n")
    old = tree.snapshot("prompt", {"path": "p.md"})
    tree.write("p.md", b"You are helpful.\nBe brief.\n")
    diff = tree.diff("prompt", old, tree.snapshot("prompt", {"path": "p.md"}))
    assert "  ~ p.md: line endings CRLF -> LF" in diff.lines
    tree.write("p.md", b"You are helpful.\r\nBe brief!\r\n")
    edited = tree.diff("prompt", old, tree.snapshot("prompt", {"path": "p.md"}))
    assert edited.lines and not any("line endings" in line for line in edited.lines)


def test_files_added_and_removed_and_variables_removed(tree: KindTree) -> None:
    tree.write("prompts/a.md", "Hi {name}\n")
    tree.write("prompts/b.md", "Bye\n")
    old = tree.snapshot("prompt", {"paths": ["prompts/*.md"]})
    tree.remove("prompts/a.md")
    tree.write("prompts/c.md", "New\n")
    new = tree.snapshot("prompt", {"paths": ["prompts/*.md"]})
    diff = tree.diff("prompt", old, new)
    assert diff.summary == "1 file added, 1 file removed, +1 -1 lines; variables removed: name"
    changes = [(d["path"], d["change"]) for d in diff.details if d["type"] == "file"]
    assert changes == [("prompts/a.md", "removed"), ("prompts/c.md", "added")]
    assert "--- a/prompts/a.md" in diff.lines and "+++ /dev/null" in diff.lines
    assert "--- /dev/null" in diff.lines and "+++ b/prompts/c.md" in diff.lines
    assert "  - variable name (prompts/a.md)" in diff.lines


def test_added_and_removed_component(tree: KindTree) -> None:
    tree.write("p.md", "Hello {{ who }}\n")
    snap = tree.snapshot("prompt", {"path": "p.md"})
    added = tree.diff("prompt", None, snap)
    assert added.status == "added"
    assert added.summary == "1 file added, +1 -0 lines; variables added: who"
    removed = tree.diff("prompt", snap, None)
    assert removed.status == "removed"
    assert removed.summary == "1 file removed, +0 -1 lines; variables removed: who"


def test_identical_snapshots_are_unchanged(tree: KindTree) -> None:
    tree.write("p.md", "Hello\n")
    first = tree.snapshot("prompt", {"path": "p.md"})
    second = tree.snapshot("prompt", {"path": "p.md"})
    diff = tree.diff("prompt", first, second)
    assert (diff.status, diff.details, diff.lines) == ("unchanged", [], [])


def test_digest_is_stable_across_folders(tree_factory: Callable[[str], KindTree]) -> None:
    digests = set()
    for name in ("one", "two"):
        project = tree_factory(name)
        project.write("prompts/system.md", "Hello {{ customer }}\n")
        project.write("prompts/extra/tone.md", "Be {tone}\n")
        digests.add(project.snapshot("prompt", {"path": "prompts"}).digest)
    assert len(digests) == 1


def test_declaration_change_is_reported(tree: KindTree) -> None:
    tree.write("p.md", "Hello {{ who }} {x}\n")
    old = tree.snapshot("prompt", {"path": "p.md"})
    new = tree.snapshot("prompt", {"path": "p.md", "template": "format"})
    diff = tree.diff("prompt", old, new)
    assert diff.status == "changed"
    assert diff.details[0] == {"type": "spec", "key": "template", "old": None, "new": "format"}
    assert "declaration changed: template" in diff.summary


# ---- template variables ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ name }}", ["name"]),
        ("{{- user.name | upper -}} {{ items[0] }}", ["items", "user"]),
        ("{{ greeting | default('hi', boolean=true) }}", ["greeting"]),
        ("{% for k, v in pairs.items() %}{{ k }}={{ v }}{% endfor %}", ["pairs"]),
        ("{% if vip and not banned %}{{ perk }}{% elif x is defined %}{% endif %}", ["banned", "perk", "vip", "x"]),
        ("{% set n = count + 1 %}{{ n }}{# {{ hidden }} #}", ["count"]),
        ("{{ 'literal {{ x }}' }} {{ loop.index }} {{ range(3) }}", []),
        ("{{ a is not none }}", ["a"]),
        ("{{ 1e5 + b }}", ["b"]),
    ],
)
def test_jinja_variables(text: str, expected: list[str]) -> None:
    assert jinja_variables(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dear {name}, {{not a var}}", ["name"]),
        ("{user.name} {items[0]} {0} {}", ["0", "items", "user"]),
        ("{value:{width}.{precision}f} {x!r}", ["precision", "value", "width", "x"]),
        ('Example: {"json": 1}', []),
    ],
)
def test_format_variables(text: str, expected: list[str]) -> None:
    assert format_variables(text, "p.md") == expected


def test_auto_mode_picks_jinja_when_double_braces_appear() -> None:
    assert template_variables("{{ a }} {b}", "auto", "p.md") == ["a"]
    assert template_variables("{a} {b}", "auto", "p.md") == ["a", "b"]
    assert template_variables("a stray } brace {x}", "auto", "p.md") == []
    assert template_variables("{{ a }} {b}", "format", "p.md") == ["b"]
    assert template_variables("{{ a }} {b}", "none", "p.md") == []


def test_explicit_format_template_with_stray_brace_names_file_and_line(tree: KindTree) -> None:
    tree.write("prompts/p.md", "fine {x}\nalso fine\nbroken } here\n")
    with pytest.raises(ComponentError, match=r"^prompts/p\.md: line 3: invalid format template"):
        tree.snapshot("prompt", {"path": "prompts/p.md", "template": "format"})


def test_not_utf8_prompt_names_file(tree: KindTree) -> None:
    tree.write("p.md", b"\xff\xfe\x00binary")
    with pytest.raises(ComponentError, match=r"^p\.md: not UTF-8 text"):
        tree.snapshot("prompt", {"path": "p.md"})


# ---- bad declarations ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "p.md", "colour": "red"}, r"^tether\.toml: components\.c\.colour: unknown key"),
        ({"path": "p.md", "template": "mustache"}, r"^tether\.toml: components\.c\.template: expected one of"),
        ({"path": "p.md", "paths": ["p.md"]}, r"either 'path' or 'paths'"),
        ({"paths": "p.md"}, r"^tether\.toml: components\.c\.paths: expected a non-empty list"),
        ({"path": 3}, r"^tether\.toml: components\.c\.path: expected a string"),
        ({"path": ""}, r"^tether\.toml: components\.c\.path: expected a non-empty path"),
        ({}, r"missing 'path'"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, object], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("prompt", table)


def test_missing_source_and_empty_glob(tree: KindTree) -> None:
    with pytest.raises(ComponentError, match=r"components\.c\.path: 'prompts/nope\.md' does not exist"):
        tree.snapshot("prompt", {"path": "prompts/nope.md"})
    tree.write("prompts/a.md", "a")
    with pytest.raises(ComponentError, match=r"components\.c\.paths: 'prompts/\*\.txt' matches no files"):
        tree.snapshot("prompt", {"paths": ["prompts/*.txt"]})


@pytest.mark.parametrize("path", ["../secret.md", "prompts/../../secret.md", "/etc/passwd"])
def test_escaping_paths_are_refused(tree: KindTree, path: str) -> None:
    with pytest.raises(PathEscapeError, match=r"components\.c\.path"):
        tree.validate("prompt", {"path": path})
    with pytest.raises(PathEscapeError):  # the working tree refuses them too, validate or not
        tree.ctx.expand([path], "components.c.path")


def test_symlink_outside_is_refused(tree: KindTree, outside_file: Path) -> None:
    tree.write("prompts/ok.md", "fine")
    tree.symlink("prompts/link.md", outside_file)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("prompt", {"path": "prompts/link.md"})
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("prompt", {"path": "prompts"})


# ---- unified diff round trip (property) ------------------------------------------------------

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$")


def apply_unified_diff(old_text: str, diff_lines: list[str]) -> str:
    """Apply a diff from :func:`unified_diff` to ``old_text`` (checking every context line)."""
    if not diff_lines:
        return old_text
    old_lines = split_lines(old_text)
    out: list[str] = []
    pos = 0
    index = 2
    while index < len(diff_lines):
        match = _HUNK.match(diff_lines[index])
        assert match, diff_lines[index]
        start, count = int(match[1]), int(match[2]) if match[2] is not None else 1
        hunk_start = start if count == 0 else start - 1
        out.extend(old_lines[pos:hunk_start])
        pos = hunk_start
        index += 1
        while index < len(diff_lines) and not diff_lines[index].startswith("@@"):
            line = diff_lines[index]
            ends_line = not (index + 1 < len(diff_lines) and diff_lines[index + 1] == NO_NEWLINE)
            text = line[1:] + ("\n" if ends_line else "")
            if line[0] == " ":
                assert old_lines[pos] == text
                out.append(text)
                pos += 1
            elif line[0] == "-":
                assert old_lines[pos] == text
                pos += 1
            elif line[0] == "+":
                out.append(text)
            index += 2 if not ends_line else 1
    out.extend(old_lines[pos:])
    return "".join(out)


_texts = st.builds(
    lambda lines, trailing: "\n".join(lines) + ("\n" if trailing and lines else ""),
    st.lists(st.sampled_from(["a", "b", "c", "", "{tone}", "x\r", "  indented"]), max_size=14),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(old=_texts, new=_texts)
def test_unified_diff_round_trip(old: str, new: str) -> None:
    lines = unified_diff(old, new, "a/p.md", "b/p.md")
    assert apply_unified_diff(old, lines) == new
    added, removed = count_changed_lines(lines)
    matcher = difflib.SequenceMatcher(None, split_lines(old), split_lines(new))
    expected_added = sum(j2 - j1 for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace"))
    expected_removed = sum(i2 - i1 for tag, i1, i2, _, _ in matcher.get_opcodes() if tag in ("delete", "replace"))
    assert (added, removed) == (expected_added, expected_removed)
    assert len(split_lines(old)) - removed + added == len(split_lines(new))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=_texts, new=_texts)
def test_prompt_diff_lines_reproduce_new_text(tree: KindTree, old: str, new: str) -> None:
    tree.write("p.md", old)
    before = tree.snapshot("prompt", {"path": "p.md"})
    tree.write("p.md", new)
    after = tree.snapshot("prompt", {"path": "p.md"})
    diff = tree.diff("prompt", before, after)
    if old == new:
        assert diff.status == "unchanged"
        return
    text_lines = [line for line in diff.lines if not line.startswith(("  + variable", "  - variable"))]
    if text_lines and text_lines[0].startswith("--- "):
        assert apply_unified_diff(old, text_lines) == new
