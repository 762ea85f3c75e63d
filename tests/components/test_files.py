"""The files kind and the shared per-file diff: text diffs, binary sizes, caps, path escapes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether.components.base import ComponentError, FileEntry, PathEscapeError, SourceMissingError
from tether.components.files import FilesKind
from tether.components.textdiff import TEXT_DIFF_MAX_BYTES, diff_entries, unified_diff

from .conftest import KindTree, MemoryBlobs

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))


def test_snapshot_is_per_file_digests(tree: KindTree) -> None:
    tree.write("assets/a.txt", "alpha\n")
    tree.write("assets/img/logo.png", PNG)
    snap = tree.snapshot("files", {"paths": ["assets/**"]})
    assert snap.spec == {"paths": ["assets/**"]}
    assert snap.meta == {}
    assert [(entry.path, entry.size) for entry in snap.files] == [("assets/a.txt", 6), ("assets/img/logo.png", 80)]


def test_round_trip_diff(tree: KindTree) -> None:
    tree.write("assets/a.txt", "one\ntwo\nthree\n")
    tree.write("assets/gone.txt", "bye\n")
    tree.write("assets/logo.png", PNG)
    old = tree.snapshot("files", {"path": "assets"})
    tree.write("assets/a.txt", "one\n2\nthree\n")
    tree.remove("assets/gone.txt")
    tree.write("assets/logo.png", PNG + b"\x00\x01")
    tree.write("assets/new.txt", "hello")
    new = tree.snapshot("files", {"path": "assets"})
    diff = tree.diff("files", old, new)
    assert diff.status == "changed"
    assert diff.summary == "1 file added, 1 file removed, 2 files changed, +2 -2 lines"
    assert [(d["path"], d["change"], d["binary"]) for d in diff.details] == [
        ("assets/a.txt", "changed", False),
        ("assets/gone.txt", "removed", False),
        ("assets/logo.png", "changed", True),
        ("assets/new.txt", "added", False),
    ]
    logo = diff.details[2]
    assert (logo["old_size"], logo["new_size"]) == (80, 82)
    assert diff.lines == [
        "--- a/assets/a.txt",
        "+++ b/assets/a.txt",
        "@@ -1,3 +1,3 @@",
        " one",
        "-two",
        "+2",
        " three",
        "--- a/assets/gone.txt",
        "+++ /dev/null",
        "@@ -1 +0,0 @@",
        "-bye",
        "  ~ assets/logo.png: binary, 80 B -> 82 B",
        "--- /dev/null",
        "+++ b/assets/new.txt",
        "@@ -0,0 +1 @@",
        "+hello",
        "\\ No newline at end of file",
    ]


def test_binary_added_and_removed(tree: KindTree) -> None:
    tree.write("logo.png", PNG)
    snap = tree.snapshot("files", {"path": "logo.png"})
    assert tree.diff("files", None, snap).lines == ["  + logo.png: binary, 80 B"]
    assert tree.diff("files", snap, None).lines == ["  - logo.png: binary, 80 B"]


def test_long_text_diff_is_capped(tree: KindTree) -> None:
    tree.write("data.txt", "")
    old = tree.snapshot("files", {"path": "data.txt"})
    tree.write("data.txt", "".join(f"row {i}\n" for i in range(500)))
    diff = tree.diff("files", old, tree.snapshot("files", {"path": "data.txt"}))
    assert diff.summary == "1 file changed, +500 -0 lines"
    assert len(diff.lines) == 2 + 200 + 1
    assert diff.lines[-1] == "... (301 more lines)"  # the hunk header and 300 rows
    assert diff.details[0]["added_lines"] == 500


def test_empty_file_added(tree: KindTree) -> None:
    tree.write("empty.txt", "")
    diff = tree.diff("files", None, tree.snapshot("files", {"path": "empty.txt"}))
    assert diff.lines == ["  + empty.txt: empty file"]
    assert diff.summary == "1 file added"


def test_mode_change(tree: KindTree) -> None:
    path = tree.write("run.sh", "echo hi\n")
    old = tree.snapshot("files", {"path": "run.sh"})
    os.chmod(path, 0o755)
    new = tree.snapshot("files", {"path": "run.sh"})
    diff = tree.diff("files", old, new)
    assert diff.status == "changed"
    assert diff.lines == ["  ~ run.sh: mode changed (now executable)"]
    assert diff.summary == "1 file mode changed"


def test_unchanged_and_stable_digest(tree_factory: Callable[[str], KindTree]) -> None:
    snaps = []
    for name in ("one", "two"):
        project = tree_factory(name)
        project.write("assets/a.txt", "alpha\n")
        project.write("assets/b/c.bin", PNG)
        snaps.append(project.snapshot("files", {"path": "assets/"}))
    assert snaps[0].digest == snaps[1].digest
    diff = FilesKind().diff("c", snaps[0], snaps[1], MemoryBlobs())
    assert (diff.status, diff.summary, diff.lines) == ("unchanged", "unchanged", [])


def test_shared_diff_large_and_unreadable_files() -> None:
    reader = MemoryBlobs()
    big_old = FileEntry("big.txt", "a" * 64, TEXT_DIFF_MAX_BYTES + 1)
    big_new = FileEntry("big.txt", "b" * 64, TEXT_DIFF_MAX_BYTES + 2)
    change = diff_entries(big_old, big_new, reader)
    assert change is not None
    assert change.lines == ["  ~ big.txt: 4.2 MB -> 4.2 MB (too large for a text diff)"]  # sizes as everywhere: SI, kB
    missing = diff_entries(FileEntry("x.txt", "c" * 64, 3), FileEntry("x.txt", "d" * 64, 4), reader)
    assert missing is not None and missing.lines == ["  ~ x.txt: 3 B -> 4 B (content not available)"]
    assert diff_entries(big_old, big_old, reader) is None


def test_unified_diff_marks_missing_final_newline() -> None:
    assert unified_diff("a\nb", "a\nc", "a/x", "b/x") == [
        "--- a/x", "+++ b/x", "@@ -1,2 +1,2 @@", " a", "-b", "\\ No newline at end of file", "+c",
        "\\ No newline at end of file",
    ]
    assert unified_diff("same\n", "same\n", "a/x", "b/x") == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "a", "recursive": True}, r"^tether\.toml: components\.c\.recursive: unknown key"),
        ({"path": "a", "paths": ["b"]}, r"either 'path' or 'paths'"),
        ({"paths": [""]}, r"^tether\.toml: components\.c\.paths\[0\]: expected a non-empty path"),
        ({}, r"missing 'path'"),
    ],
)
def test_bad_declarations(tree: KindTree, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        tree.validate("files", table)


def test_missing_source(tree: KindTree) -> None:
    with pytest.raises(ComponentError, match=r"components\.c\.paths: 'assets' does not exist"):
        tree.snapshot("files", {"paths": ["assets"]})
    (tree.root / "empty").mkdir()
    with pytest.raises(ComponentError, match=r"folder 'empty' is empty"):
        tree.snapshot("files", {"path": "empty"})


@pytest.mark.parametrize("path", ["../x", "assets/../../x", "/etc/hosts", "../**/*.txt"])
def test_escaping_paths(tree: KindTree, path: str) -> None:
    with pytest.raises(PathEscapeError, match=r"components\.c\.paths"):
        tree.validate("files", {"paths": ["ok", path]})
    with pytest.raises(PathEscapeError):
        FilesKind().snapshot("c", {"paths": [path]}, tree.ctx)


def test_symlink_outside(tree: KindTree, outside_file: Path) -> None:
    tree.write("assets/a.txt", "a")
    tree.symlink("assets/link.txt", outside_file)
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("files", {"paths": ["assets/*.txt"]})
    with pytest.raises(PathEscapeError, match="symlink pointing outside"):
        tree.snapshot("files", {"path": "assets"})


def test_symlinked_folder_outside(tree: KindTree, outside_file: Path) -> None:
    tree.write("assets/a.txt", "a")
    tree.symlink("assets/ext", outside_file.parent)
    with pytest.raises(PathEscapeError):
        tree.snapshot("files", {"path": "assets"})


def test_a_folder_swapped_for_a_symlink_outside_is_caught_by_a_tree_already_used(tree: KindTree, outside_file: Path) -> None:
    """Real paths are worked out once per folder; a folder replaced by a link is looked at again."""
    import shutil

    tree.write("assets/a.txt", "a")
    tree.write("data/sub/b.txt", "b")
    ctx = tree.ctx
    assert ctx.resolve("assets/a.txt", "f") == tree.root / "assets" / "a.txt"
    assert ctx.resolve("data/sub/b.txt", "f") == tree.root / "data" / "sub" / "b.txt"
    (outside_file.parent / "a.txt").write_text("outside")
    (outside_file.parent / "sub").mkdir()
    (outside_file.parent / "sub" / "b.txt").write_text("outside")
    for folder in ("assets", "data"):  # the file's own folder, and a folder above it
        shutil.rmtree(tree.root / folder)
        tree.symlink(folder, outside_file.parent)
    for rel in ("assets/a.txt", "data/sub/b.txt"):
        with pytest.raises(PathEscapeError, match="symlink pointing outside"):
            ctx.resolve(rel, "f")


@pytest.mark.parametrize("special", ["fifo", "socket"])
def test_special_file_in_folder_is_an_error_not_a_hang(tree: KindTree, special: str) -> None:
    """A FIFO blocked the snapshot forever (opened for reading) and a socket raised a traceback."""
    import socket

    tree.write("assets/a.txt", "a")
    path = tree.root / "assets" / "special"
    if special == "fifo":
        os.mkfifo(path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    kind = 'FIFO' if special == 'fifo' else 'socket'
    with pytest.raises(ComponentError, match=rf"'assets/special' is not a regular file \(a {kind}\)"):
        tree.snapshot("files", {"path": "assets"})
    with pytest.raises(ComponentError, match=r"'assets/special' is not a regular file"):
        tree.snapshot("files", {"paths": ["assets/*"]})


@pytest.mark.parametrize("target", ["..", "../..", "."])
def test_symlink_loop_inside_the_project_is_an_error(tree: KindTree, target: str) -> None:
    """A symlinked folder leading back to a folder it is in was followed until ELOOP (traceback)."""
    tree.write("assets/sub/a.txt", "a")
    tree.symlink("assets/sub/up", Path(target))
    with pytest.raises(ComponentError, match=r"'assets/sub/up' is a symlink loop"):
        tree.snapshot("files", {"path": "assets"})


def test_symlink_cycle_through_two_links_is_an_error(tree: KindTree) -> None:
    tree.write("assets/a/x.txt", "a")
    tree.write("assets/b/y.txt", "b")
    tree.symlink("assets/a/to_b", Path("../b"))
    tree.symlink("assets/b/to_a", Path("../a"))
    with pytest.raises(ComponentError, match=r"symlink loop"):
        tree.snapshot("files", {"path": "assets"})


def test_self_referencing_symlink_is_an_error(tree: KindTree) -> None:
    tree.write("assets/a.txt", "a")
    tree.symlink("assets/self", Path("self"))
    with pytest.raises(ComponentError, match=r"'assets/self' is a symlink loop"):
        tree.snapshot("files", {"path": "assets"})


def test_symlinked_folder_twice_is_no_loop(tree: KindTree) -> None:
    tree.write("assets/real/a.txt", "a")
    tree.symlink("assets/one", Path("real"))
    tree.symlink("assets/two", Path("real"))
    snap = tree.snapshot("files", {"path": "assets"})
    assert [entry.path for entry in snap.files] == ["assets/one/a.txt", "assets/real/a.txt", "assets/two/a.txt"]


def test_dangling_symlink_is_named_as_such(tree: KindTree) -> None:
    """It was reported as "does not exist" (status: the component "missing") while `ls` shows it."""
    tree.write("assets/a.txt", "a")
    tree.symlink("assets/gone", Path("nowhere.txt"))
    with pytest.raises(ComponentError, match=r"'assets/gone' is a dangling symlink \(to 'nowhere.txt', which does not exist\)") as info:
        tree.snapshot("files", {"path": "assets"})
    assert not isinstance(info.value, SourceMissingError)


def test_file_name_that_is_not_utf8_is_an_error(tree: KindTree) -> None:
    """Such a name crashed commit with a UnicodeEncodeError traceback while encoding the snapshot."""
    tree.write("assets/a.txt", "a")
    (tree.root / "assets").joinpath(os.fsdecode(b"bad\xffname.txt")).write_bytes(b"x")
    with pytest.raises(ComponentError, match=r"'assets/bad\\xffname.txt': file name is not valid UTF-8"):
        tree.snapshot("files", {"path": "assets"})


def test_symlink_loop_under_a_recursive_glob_is_an_error(tree: KindTree) -> None:
    """``glob`` followed the loop through every nesting until ELOOP, exponentially with two links."""
    tree.write("assets/real/a.md", "a")
    tree.symlink("assets/linked", Path("real"))
    tree.symlink("assets/real/up", Path(".."))
    with pytest.raises(ComponentError, match=r"is a symlink loop"):
        tree.snapshot("files", {"paths": ["assets/**/*.md"]})


def test_a_file_name_with_a_newline_is_shown_quoted_on_one_line(tree: KindTree) -> None:
    """Unquoted, ``d/new\\nline.txt`` printed over two lines, like two entries."""
    from tether.components.textdiff import quote_path

    tree.write("d/plain.txt", "a")
    old = tree.snapshot("files", {"path": "d"})
    tree.write("d/new\nline.txt", "b")
    diff = tree.diff("files", old, tree.snapshot("files", {"path": "d"}))
    assert all("\n" not in line for line in diff.lines)
    assert any('"b/d/new\\nline.txt"' in line for line in diff.lines)
    assert quote_path("d/plain.txt") == "d/plain.txt"
