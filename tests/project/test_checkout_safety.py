"""Checkout never loses data: untracked files and local changes are refused unless --force, its
own temporary files are never versioned and never outlive it, HEAD stays on the branch when the
user asks for HEAD, and a failed --dir checkout leaves nothing behind."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.components.model_helpers import write_tensors
from tests.conftest import ProjectDir
from tether.store.atomic import is_temporary_name, staging_path
from tether.store.local import LocalObjectStore


def _object_path(root: Path, digest: str) -> Path:
    return root / ".tether" / "objects" / digest[:2] / digest[2:]


@pytest.fixture
def extra_project(prompt_project: ProjectDir) -> ProjectDir:
    """Version A (a prompt and a config), then version B on main adding a model folder ``extra/``."""
    prompt_project.run("commit", "-m", "A")
    write_tensors(prompt_project.root / "extra" / "x.safetensors", {"w": np.arange(4, dtype=np.float32)})
    prompt_project.run("add", "model", "extra", "extra/")
    prompt_project.run("commit", "-m", "B")
    return prompt_project


# ---- 1. untracked files and local changes ----------------------------------------------------------


def test_checkout_refuses_to_overwrite_an_untracked_file(extra_project: ProjectDir) -> None:
    extra_project.run("checkout", "HEAD~1")
    assert not (extra_project.root / "extra" / "x.safetensors").exists()  # B's file went with B
    extra_project.write("extra/x.safetensors", "precious\n")
    assert json.loads(extra_project.run("status", "--json").stdout)["clean"]  # no component declares extra/
    result = extra_project.run("checkout", "main", code=1)
    assert result.stderr.strip() == (
        "tether: error: untracked file would be overwritten by checkout: extra/x.safetensors; move it or use --force"
    )
    assert extra_project.read("extra/x.safetensors") == "precious\n"
    error = json.loads(extra_project.run("checkout", "main", "--json", code=1).stdout)
    assert error == {
        "error": "untracked file would be overwritten by checkout: extra/x.safetensors; move it or use --force",
        "exit_code": 1,
    }
    status = json.loads(extra_project.run("status", "--json").stdout)
    assert status["branch"] is None  # nothing moved: HEAD is still detached at A
    assert "extra" not in extra_project.read("tether.toml")  # tether.toml was not written either
    extra_project.run("checkout", "main", "--force")
    assert (extra_project.root / "extra" / "x.safetensors").read_bytes() != b"precious\n"
    assert json.loads(extra_project.run("status", "--json").stdout)["clean"]


def test_an_untracked_file_holding_the_target_bytes_is_no_conflict(extra_project: ProjectDir) -> None:
    wanted = (extra_project.root / "extra" / "x.safetensors").read_bytes()
    extra_project.run("checkout", "HEAD~1")
    extra_project.write("extra/x.safetensors", wanted)  # extra/ went with its last file
    extra_project.run("checkout", "main")
    assert (extra_project.root / "extra" / "x.safetensors").read_bytes() == wanted


def test_checkout_refused_for_a_local_edit_names_the_file(extra_project: ProjectDir) -> None:
    extra_project.write("prompts/system.md", "Local edit.\n")
    result = extra_project.run("checkout", "HEAD~1", code=1)
    assert result.stderr.strip() == (
        "tether: error: working tree has changes no version records: "
        "system (modified: prompts/system.md); commit them or use --force"
    )
    assert extra_project.read("prompts/system.md") == "Local edit.\n"


def test_checkout_refuses_to_replace_a_folder_holding_untracked_files(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "A")
    prompt_project.write("notes/cfg", "tracked\n")
    prompt_project.run("add", "files", "notes", "notes/")
    prompt_project.run("commit", "-m", "B")
    prompt_project.run("checkout", "HEAD~1")
    prompt_project.write("notes/cfg/mine.txt", "my notes\n")  # a folder where B has a file
    result = prompt_project.run("checkout", "main", code=1)
    assert "untracked file would be overwritten by checkout: notes/cfg/mine.txt" in result.stderr
    assert prompt_project.read("notes/cfg/mine.txt") == "my notes\n"


def test_checkout_refuses_to_overwrite_an_edited_tether_toml(extra_project: ProjectDir) -> None:
    extra_project.write("tether.toml", extra_project.read("tether.toml") + "# my note\n")
    assert json.loads(extra_project.run("status", "--json").stdout)["settings_changed"]  # recorded with the version
    result = extra_project.run("checkout", "HEAD~1", code=1)
    assert "local changes would be lost by checkout: tether.toml; commit them or use --force" in result.stderr
    assert extra_project.read("tether.toml").endswith("# my note\n")
    assert (extra_project.root / "extra" / "x.safetensors").exists()


# ---- 2. tether's own temporary files ----------------------------------------------------------------


def _leftovers(folder: Path, name: str) -> list[Path]:
    """The names a killed checkout left beside ``name`` (older tethers: two per file; now: one)."""
    paths = [
        folder / f"..{name}.k3j_x9q2.tether-tmp.0123456789abcdef.tmp",
        folder / f".{name}.k3j_x9q2.tether-tmp",
        staging_path(folder / name),
    ]
    for path in paths:
        path.write_bytes(b"half a file" if path.suffix == ".tmp" else b"")
    return paths


def test_temporary_names_are_exactly_tethers() -> None:
    assert is_temporary_name("..big.safetensors.k3j_x9q2.tether-tmp.0123456789abcdef.tmp")
    assert is_temporary_name(".big.safetensors.k3j_x9q2.tether-tmp")
    assert is_temporary_name(".big.safetensors.tether-tmp")
    for name in ("big.safetensors", ".big.safetensors.tmp", "x.tether-tmp", ".tether-tmp", ".a.tether-tmp.txt"):
        assert not is_temporary_name(name)


def test_leftover_temporary_files_are_never_versioned(extra_project: ProjectDir) -> None:
    paths = _leftovers(extra_project.root / "extra", "x.safetensors")
    _leftovers(extra_project.root / "prompts", "system.md")
    status = json.loads(extra_project.run("status", "--json").stdout)
    assert status["clean"], status
    extra_project.run("commit", "-m", "nothing", code=1)
    assert all(path.exists() for path in paths)  # status and commit only look past them


def test_a_checkout_removes_leftovers_when_no_tether_process_is_running(extra_project: ProjectDir) -> None:
    paths = _leftovers(extra_project.root / "extra", "x.safetensors")
    extra_project.run("checkout", "HEAD~1")  # extra/ is not in A: its leftovers go too
    assert not any(path.exists() for path in paths)
    paths = _leftovers(extra_project.root / "prompts", "system.md")
    extra_project.run("checkout", "main")
    assert not any(path.exists() for path in paths)
    assert json.loads(extra_project.run("status", "--json").stdout)["clean"]


def test_while_another_tether_process_runs_only_old_leftovers_are_removed(extra_project: ProjectDir) -> None:
    old = _leftovers(extra_project.root / "extra", "x.safetensors")
    fresh = _leftovers(extra_project.root / "extra", "y.safetensors")
    an_hour_ago = time.time() - 3600
    for path in old:
        os.utime(path, (an_hour_ago, an_hour_ago))
    fd = os.open(extra_project.root / ".tether" / "gc.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a commit in flight in another process
        extra_project.run("checkout", "HEAD~1")
    finally:
        os.close(fd)
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in fresh)  # may belong to a checkout still writing
    report = json.loads(extra_project.run("gc", "--now", "--json").stdout)
    assert report["temporary_removed"] >= len(fresh)
    assert not any(path.exists() for path in fresh)


def test_gc_removes_leftovers_anywhere_in_the_tree(extra_project: ProjectDir) -> None:
    extra_project.write("elsewhere/deep/keep.txt", "mine\n")
    paths = _leftovers(extra_project.root / "elsewhere" / "deep", "w.bin")
    extra_project.run("gc", "--dry-run")
    assert all(path.exists() for path in paths)
    extra_project.run("gc")
    assert not any(path.exists() for path in paths)
    assert extra_project.read("elsewhere/deep/keep.txt") == "mine\n"


def test_checkout_stages_each_file_under_one_predictable_name(
    extra_project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra_project.run("checkout", "HEAD~1")
    seen: list[list[str]] = []
    real = LocalObjectStore.materialize

    def watching(self: LocalObjectStore, digest: str, dest: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        real(self, digest, dest, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(sorted(name for name in os.listdir(Path(dest).parent) if is_temporary_name(name)))

    monkeypatch.setattr(LocalObjectStore, "materialize", watching)
    extra_project.run("checkout", "main")
    assert [".x.safetensors.tether-tmp"] in seen  # a kill here leaves this one name, nothing else
    assert all(len(names) == 1 for names in seen)


# ---- 5. HEAD stays on the branch; versions left behind are named ------------------------------------


def test_checkout_head_force_discards_edits_and_keeps_the_branch(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("prompts/system.md", "Scratch.\n")
    prompt_project.run("checkout", "HEAD", "--force")
    assert prompt_project.read("prompts/system.md") == "You are helpful to {{ customer }}.\n"
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["branch"] == "main" and status["clean"]
    prompt_project.write("prompts/system.md", "Kept.\n")
    committed = json.loads(prompt_project.run("commit", "-m", "second", "--json").stdout)
    assert committed["branch"] == "main"
    assert json.loads(prompt_project.run("status", "--json").stdout)["head"] == committed["version_id"]


def test_leaving_a_version_no_branch_reaches_warns_with_its_id(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("prompts/system.md", "Second.\n")
    prompt_project.run("commit", "-m", "second")
    result = prompt_project.run("checkout", "HEAD~1")
    assert "warning" not in result.stderr  # left main, which still reaches it
    result = prompt_project.run("checkout", "main")
    assert "warning" not in result.stderr  # the detached version is main's parent
    prompt_project.run("checkout", "HEAD~1")
    prompt_project.write("prompts/system.md", "Detached work.\n")
    orphan = prompt_project.run("commit", "-m", "on a detached HEAD").stdout.split()[-1]
    assert len(orphan) == 64
    result = prompt_project.run("checkout", "main")
    warning = " ".join(result.stderr.split())
    assert f"left version {orphan} behind" in warning and f"tether branch NAME {orphan}" in warning
    shown = json.loads(prompt_project.run("checkout", orphan, "--json").stdout)
    assert shown["left_behind"] is None  # left main, which a branch holds
    moved = json.loads(prompt_project.run("checkout", "main", "--json").stdout)
    assert moved["left_behind"] == orphan
    prompt_project.run("branch", "keep", orphan)
    prompt_project.run("checkout", orphan)
    assert "warning" not in prompt_project.run("checkout", "main").stderr


def test_moving_to_a_descendant_leaves_nothing_behind(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("prompts/system.md", "Second.\n")
    prompt_project.run("commit", "-m", "second")
    prompt_project.run("checkout", "HEAD~1")
    prompt_project.write("prompts/system.md", "X.\n")
    x = prompt_project.run("commit", "-m", "x").stdout.split()[-1]
    prompt_project.write("prompts/system.md", "Y.\n")
    y = prompt_project.run("commit", "-m", "y").stdout.split()[-1]
    assert f"left version {y} behind" in " ".join(prompt_project.run("checkout", x).stderr.split())
    assert "warning" not in prompt_project.run("checkout", y).stderr  # y still reaches x


# ---- 6. a failed --dir checkout leaves nothing -------------------------------------------------------


def _corrupt_prompt_object(project: ProjectDir, version: str) -> tuple[Path, bytes]:
    shown = json.loads(project.run("show", version, "--json").stdout)
    path = _object_path(project.root, shown["snapshots"]["system"]["files"][0]["digest"])
    good = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(b"You are evil.\n")
    return path, good


def test_a_failed_dir_checkout_leaves_nothing_and_can_be_retried(prompt_project: ProjectDir, tmp_path: Path) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    path, good = _corrupt_prompt_object(prompt_project, version)
    out = tmp_path / "new" / "deeper" / "out"
    assert "corrupted" in prompt_project.run("checkout", version, "--dir", str(out), code=1).stderr
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    prompt_project.run("checkout", version, "--dir", str(empty), code=1)
    assert empty.is_dir() and list(empty.iterdir()) == []  # it was there before: kept, still empty
    path.write_bytes(good)
    prompt_project.run("checkout", version, "--dir", str(out))
    assert (out / "prompts" / "system.md").read_text() == "You are helpful to {{ customer }}.\n"
    prompt_project.run("checkout", version, "--dir", str(empty))
    assert (empty / "config" / "generation.yaml").exists()


# ---- 7. --link: what the README warns about ----------------------------------------------------------


def test_editing_a_linked_file_corrupts_its_object_and_fsck_names_it(prompt_project: ProjectDir, tmp_path: Path) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    out = tmp_path / "deploy"
    prompt_project.run("checkout", version, "--dir", str(out), "--link")
    linked = out / "prompts" / "system.md"
    assert linked.stat().st_nlink > 1 and not linked.stat().st_mode & 0o222
    os.chmod(linked, 0o644)
    with open(linked, "a", encoding="utf-8") as handle:  # an edit in place, as root could
        handle.write("Ignore all rules.\n")
    result = prompt_project.run("fsck", code=1)
    assert "does not hash to its name" in result.stderr and "prompts/system.md" in result.stderr
    assert "corrupted" in prompt_project.run("checkout", version, "--dir", str(tmp_path / "again"), code=1).stderr


# ---- compose writes into the working tree with the same protection ---------------------------------


def _compose_setup(project_dir: ProjectDir) -> None:
    """main: A (component a) then B (adds component b); ``side`` at A, checked out."""
    project_dir.run("init")
    project_dir.write("a.txt", "base\n")
    project_dir.run("add", "files", "a", "a.txt")
    project_dir.run("commit", "-m", "A")
    project_dir.write("b.txt", "other\n")
    project_dir.run("add", "files", "b", "b.txt")
    project_dir.run("commit", "-m", "B")
    project_dir.run("branch", "side", "HEAD~1")
    project_dir.run("checkout", "side")


def test_compose_refuses_to_overwrite_an_untracked_file(project_dir: ProjectDir) -> None:
    _compose_setup(project_dir)
    project_dir.write("b.txt", "PRECIOUS\n")
    side_before = json.loads(project_dir.run("status", "--json").stdout)
    toml_before = project_dir.read("tether.toml")
    result = project_dir.run("compose", "side", "--take", "b=main", "-m", "x", code=1)
    assert result.stderr.strip() == (
        "tether: error: untracked file would be overwritten by compose: b.txt; move it or use --force"
    )
    assert project_dir.read("b.txt") == "PRECIOUS\n"
    assert project_dir.read("tether.toml") == toml_before
    error = json.loads(project_dir.run("compose", "side", "--take", "b=main", "-m", "x", "--json", code=1).stdout)
    assert error["exit_code"] == 1 and "b.txt" in error["error"]
    assert json.loads(project_dir.run("status", "--json").stdout) == side_before  # nothing recorded
    project_dir.run("compose", "side", "--take", "b=main", "-m", "x", "--force")
    assert project_dir.read("b.txt") == "other\n"
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]


def test_compose_refuses_to_lose_a_local_change_to_tether_toml(project_dir: ProjectDir) -> None:
    _compose_setup(project_dir)
    project_dir.write("tether.toml", project_dir.read("tether.toml") + "# mine\n")
    result = project_dir.run("compose", "side", "--take", "b=main", "-m", "x", code=1)
    assert "local changes would be lost by compose: tether.toml" in result.stderr
    assert project_dir.read("tether.toml").endswith("# mine\n")
    assert not (project_dir.root / "b.txt").exists()


def test_compose_writes_a_file_that_already_holds_the_bytes(project_dir: ProjectDir) -> None:
    _compose_setup(project_dir)
    project_dir.write("b.txt", "other\n")  # the same bytes: nothing is lost
    project_dir.run("compose", "side", "--take", "b=main", "-m", "x")
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]


def test_compose_leaves_the_tree_exactly_at_the_new_version(project_dir: ProjectDir) -> None:
    """A component taken from a version with fewer files: the extra file goes, as in checkout."""
    project_dir.write("docs/a.md", "a\n")
    project_dir.write("docs/b.md", "b\n")
    project_dir.run("init")
    project_dir.run("add", "files", "docs", "docs/")
    project_dir.run("commit", "-m", "two docs")
    (project_dir.root / "docs" / "b.md").unlink()
    one = project_dir.run("commit", "-m", "one doc").stdout.strip()
    project_dir.write("docs/b.md", "b, again\n")
    project_dir.run("commit", "-m", "two docs again")
    project_dir.run("compose", "HEAD", "--take", f"docs={one}", "-m", "back to one doc")
    assert not (project_dir.root / "docs" / "b.md").exists()
    assert project_dir.read("docs/a.md") == "a\n"
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]


# ---- 8. file trees at the edges ----------------------------------------------------------------------


def test_a_file_with_a_name_of_the_longest_length_checks_out(prompt_project: ProjectDir, tmp_path: Path) -> None:
    """The staging name (``.NAME.tether-tmp``) outgrew the 255-byte limit: checkout crashed."""
    name = "x" * 251 + ".txt"
    prompt_project.write(f"notes/{name}", "long\n")
    prompt_project.run("add", "files", "notes", "notes/")
    version = prompt_project.run("commit", "-m", "long").stdout.strip()
    out = tmp_path / "out"
    prompt_project.run("checkout", version, "--dir", str(out))
    assert (out / "notes" / name).read_text() == "long\n"
    (prompt_project.root / "notes" / name).write_text("edited\n")
    prompt_project.run("checkout", "HEAD", "--force")
    assert prompt_project.read(f"notes/{name}") == "long\n"
    assert os.listdir(prompt_project.root / "notes") == [name]


def test_staging_names_stay_within_the_name_limit() -> None:
    for length in (1, 200, 243, 244, 255):
        staged = staging_path(Path("/x") / ("é" * (length // 2) + "a" * (length % 2))).name
        assert len(staged.encode()) <= 255 and is_temporary_name(staged)
    assert staging_path("/x/" + "a" * 250) != staging_path("/x/" + "a" * 249 + "b")


def test_checkout_restores_the_executable_bit_of_unchanged_bytes(prompt_project: ProjectDir) -> None:
    """Two versions differing only in a file's mode: checkout kept the mode, the tree drifted."""
    prompt_project.write("bin/run.sh", "#!/bin/sh\necho hi\n")
    prompt_project.run("add", "files", "scripts", "bin/")
    prompt_project.run("commit", "-m", "plain")
    os.chmod(prompt_project.root / "bin" / "run.sh", 0o755)
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["components"][2]["files"] == [{"path": "bin/run.sh", "change": "mode"}]
    prompt_project.run("commit", "-m", "executable")
    prompt_project.run("checkout", "HEAD~1")
    assert not os.access(prompt_project.root / "bin" / "run.sh", os.X_OK)
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"]
    prompt_project.run("checkout", "main")
    assert os.access(prompt_project.root / "bin" / "run.sh", os.X_OK)
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"]


def test_checkout_where_a_file_became_a_folder(prompt_project: ProjectDir) -> None:
    """A tracked file in the way of the target's folder was refused ("a file is in the way")."""
    prompt_project.write("data/table", "a file\n")
    prompt_project.run("add", "files", "data", "data/")
    prompt_project.run("commit", "-m", "file")
    (prompt_project.root / "data" / "table").unlink()
    prompt_project.write("data/table/part1.csv", "1\n")
    prompt_project.write("data/table/sub/part2.csv", "2\n")
    prompt_project.run("commit", "-m", "folder")
    prompt_project.run("checkout", "HEAD~1")
    assert prompt_project.read("data/table") == "a file\n"
    prompt_project.run("checkout", "main")
    assert prompt_project.read("data/table/part1.csv") == "1\n"
    assert prompt_project.read("data/table/sub/part2.csv") == "2\n"
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"]


def test_a_file_in_the_way_with_local_changes_is_refused(prompt_project: ProjectDir) -> None:
    prompt_project.write("data/table", "a file\n")
    prompt_project.run("add", "files", "data", "data/")
    prompt_project.run("commit", "-m", "file")
    (prompt_project.root / "data" / "table").unlink()
    prompt_project.write("data/table/part1.csv", "1\n")
    prompt_project.run("commit", "-m", "folder")
    prompt_project.run("checkout", "HEAD~1")
    prompt_project.write("data/table", "edited\n")
    prompt_project.run("checkout", "main", code=1)
    assert prompt_project.read("data/table") == "edited\n"


def test_force_replaces_an_untracked_file_where_a_folder_goes(prompt_project: ProjectDir) -> None:
    """Without --force it is refused, naming the file; --force means the user gave it up."""
    prompt_project.write("data/a.csv", "a\n")
    prompt_project.run("add", "files", "data", "data/")
    prompt_project.run("commit", "-m", "v1")
    prompt_project.write("data/x/y.csv", "y\n")
    prompt_project.run("commit", "-m", "v2")
    prompt_project.run("checkout", "HEAD~1")
    prompt_project.write("data/x", "mine\n")  # untracked, where v2's folder goes
    assert "data/x" in prompt_project.run("checkout", "main", code=1).stderr
    assert prompt_project.read("data/x") == "mine\n"
    prompt_project.run("checkout", "main", "--force")
    assert prompt_project.read("data/x/y.csv") == "y\n"
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"]


def test_checkout_removes_folders_it_emptied(prompt_project: ProjectDir) -> None:
    """Files of a removed component went, their (now empty) folders stayed behind."""
    prompt_project.run("commit", "-m", "A")
    prompt_project.write("kb/a/b/doc.md", "# doc\n")
    prompt_project.write("kb/keep/mine.txt", "untracked\n")
    prompt_project.run("add", "files", "kb", "kb/a")
    prompt_project.run("commit", "-m", "B")
    prompt_project.run("checkout", "HEAD~1")
    assert sorted(os.listdir(prompt_project.root / "kb")) == ["keep"]
    assert prompt_project.read("kb/keep/mine.txt") == "untracked\n"


def test_checkout_never_writes_through_a_folder_symlinked_outside(project_dir: ProjectDir, tmp_path: Path) -> None:
    project_dir.write("docs/sub/a.txt", "a\n")
    project_dir.write("docs/b.txt", "b\n")
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "files", "docs", "docs")
    version = project_dir.run("commit", "-m", "v1").stdout.strip()
    outside = tmp_path / "outside"
    outside.mkdir()
    for rel in ("docs/sub/a.txt", "docs/sub"):
        path = project_dir.root / rel
        path.unlink() if path.is_file() else path.rmdir()
    (project_dir.root / "docs" / "sub").symlink_to(outside)
    error = project_dir.run("checkout", version, "--force", code=1).stderr
    assert "docs/sub/a.txt: its folder is a symlink leading outside" in error
    assert list(outside.iterdir()) == []
