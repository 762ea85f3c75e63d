"""The migration kind: up/down scripts, reversibility flags, bad declarations, path escapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether.components.base import ComponentError, PathEscapeError
from tether.components.migration import MigrationKind

from .conftest import KindTree

UP = "ALTER TABLE tickets ADD COLUMN priority INT;\n"
DOWN = "ALTER TABLE tickets DROP COLUMN priority;\n"
DECLARED = {"up": "migrations/002_up.sql", "down": "migrations/002_down.sql", "description": "ticket priority"}


def _write_both(tree: KindTree) -> None:
    tree.write("migrations/002_up.sql", UP)
    tree.write("migrations/002_down.sql", DOWN)


def test_snapshot(tree: KindTree) -> None:
    _write_both(tree)
    snap = tree.snapshot("migration", DECLARED)
    assert snap.spec == DECLARED
    assert snap.meta == {"reversible": True}
    assert sorted(entry.path for entry in snap.files) == ["migrations/002_down.sql", "migrations/002_up.sql"]
    only_up = tree.snapshot("migration", {"up": "migrations/002_up.sql"})
    assert only_up.meta == {"reversible": False}
    assert [entry.path for entry in only_up.files] == ["migrations/002_up.sql"]


def test_round_trip_up_changed(tree: KindTree) -> None:
    _write_both(tree)
    old = tree.snapshot("migration", DECLARED)
    tree.write("migrations/002_up.sql", UP + "CREATE INDEX tickets_priority ON tickets (priority);\n")
    new = tree.snapshot("migration", DECLARED)
    diff = tree.diff("migration", old, new)
    assert (diff.status, diff.summary, diff.flags) == ("changed", "up changed (+1 -0 lines)", [])
    assert diff.lines == [
        "--- a/migrations/002_up.sql",
        "+++ b/migrations/002_up.sql",
        "@@ -1 +1,2 @@",
        " ALTER TABLE tickets ADD COLUMN priority INT;",
        "+CREATE INDEX tickets_priority ON tickets (priority);",
    ]
    (detail,) = diff.details
    assert (detail["type"], detail["role"], detail["change"], detail["added_lines"]) == ("script", "up", "changed", 1)


def test_down_removed_is_irreversible(tree: KindTree) -> None:
    _write_both(tree)
    old = tree.snapshot("migration", DECLARED)
    new = tree.snapshot("migration", {"up": DECLARED["up"], "description": DECLARED["description"]})
    diff = tree.diff("migration", old, new)
    assert diff.flags == ["IRREVERSIBLE"]
    assert diff.summary == "down removed; irreversible (no down)"
    assert [(d["role"], d["change"]) for d in diff.details] == [("down", "removed")]
    assert diff.lines[:2] == ["--- a/migrations/002_down.sql", "+++ /dev/null"]


def test_down_added_becomes_reversible(tree: KindTree) -> None:
    _write_both(tree)
    old = tree.snapshot("migration", {"up": DECLARED["up"]})
    new = tree.snapshot("migration", {"up": DECLARED["up"], "down": DECLARED["down"]})
    diff = tree.diff("migration", old, new)
    assert (diff.flags, diff.summary) == ([], "down added")


def test_added_removed_and_unchanged_flags(tree: KindTree) -> None:
    _write_both(tree)
    irreversible = tree.snapshot("migration", {"up": DECLARED["up"]})
    reversible = tree.snapshot("migration", DECLARED)
    added = tree.diff("migration", None, irreversible)
    assert (added.status, added.flags, added.summary) == ("added", ["IRREVERSIBLE"], "up added; irreversible (no down)")
    assert tree.diff("migration", None, reversible).flags == []
    assert tree.diff("migration", irreversible, None).flags == ["IRREVERSIBLE"]
    assert tree.diff("migration", reversible, None).flags == []
    same = tree.diff("migration", irreversible, tree.snapshot("migration", {"up": DECLARED["up"]}))
    assert (same.status, same.flags, same.lines) == ("unchanged", ["IRREVERSIBLE"], [])


def test_rename_and_description_change(tree: KindTree) -> None:
    _write_both(tree)
    old = tree.snapshot("migration", DECLARED)
    tree.write("migrations/003_up.sql", UP)
    new = tree.snapshot("migration", {**DECLARED, "up": "migrations/003_up.sql", "description": "priority"})
    diff = tree.diff("migration", old, new)
    assert diff.summary == "up renamed migrations/002_up.sql -> migrations/003_up.sql; description changed"
    assert diff.lines == [
        "  ~ migrations/003_up.sql: renamed from migrations/002_up.sql (content unchanged)",
        '  ~ declaration description: "ticket priority" -> "priority"',
    ]
    assert diff.details[0]["old_path"] == "migrations/002_up.sql"
    assert diff.details[1] == {"type": "spec", "key": "description", "old": "ticket priority", "new": "priority"}


def test_digest_is_stable_across_folders(tree_factory: Callable[[str], KindTree]) -> None:
    digests = set()
    for name in ("one", "two"):
        project = tree_factory(name)
        _write_both(project)
        digests.add(project.snapshot("migration", DECLARED).digest)
    assert len(digests) == 1


def test_spec_from_add() -> None:
    kind = MigrationKind()
    assert kind.spec_from_add("m", ["u.sql"], {}) == {"up": "u.sql"}
    assert kind.spec_from_add("m", ["u.sql", "d.sql"], {"description": "x"}) == {
        "up": "u.sql", "down": "d.sql", "description": "x"
    }
    with pytest.raises(ComponentError, match="an up script and an optional down script"):
        kind.spec_from_add("m", ["a", "b", "c"], {})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"down": "d.sql"}, r"^tether\.toml: components\.c: missing required key 'up'"),
        ({"up": "u.sql", "path": "u.sql"}, r"^tether\.toml: components\.c\.path: unknown key"),
        ({"up": "u.sql", "down": "u.sql"}, r"^tether\.toml: components\.c\.down: the same file as 'up'"),
        ({"up": "u.sql", "description": 3}, r"^tether\.toml: components\.c\.description: expected a string"),
        ({"up": ["u.sql"]}, r"^tether\.toml: components\.c\.up: expected a string"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("migration", table)


def test_missing_and_folder_sources(tree: KindTree) -> None:
    tree.write("migrations/002_up.sql", UP)
    with pytest.raises(ComponentError, match=r"components\.c\.down: 'migrations/002_down\.sql' does not exist"):
        tree.snapshot("migration", DECLARED)
    with pytest.raises(ComponentError, match=r"components\.c\.up: 'migrations' is a folder"):
        tree.snapshot("migration", {"up": "migrations/"})


@pytest.mark.parametrize("key", ["up", "down"])
@pytest.mark.parametrize("path", ["../up.sql", "migrations/../../up.sql", "/srv/up.sql"])
def test_escaping_paths(tree: KindTree, key: str, path: str) -> None:
    tree.write("migrations/002_up.sql", UP)
    table = {"up": "migrations/002_up.sql", key: path}
    with pytest.raises(PathEscapeError, match=rf"components\.c\.{key}"):
        tree.validate("migration", table)
    with pytest.raises(PathEscapeError, match=rf"components\.c\.{key}"):
        MigrationKind().snapshot("c", table, tree.ctx)


def test_symlink_outside(tree: KindTree, outside_file: Path) -> None:
    tree.write("migrations/002_up.sql", UP)
    tree.symlink("migrations/002_down.sql", outside_file)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("migration", DECLARED)
