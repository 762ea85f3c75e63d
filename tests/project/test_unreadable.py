"""Files and folders tether may not read: a one-line error naming them (exit 2), never a traceback,
and never a folder silently skipped.

The tests run as root, who reads a ``chmod 000`` file anyway, so the refusal an ordinary user gets
is simulated: the file is ``chmod 000`` (its stat signature moves, as for a user) and opening or
listing it raises PermissionError.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ProjectDir


def _deny(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Opening (or listing) any of ``paths`` fails as it does for a user without permission."""
    denied = {os.path.abspath(path) for path in paths}
    for path in paths:
        os.chmod(path, 0o000)

    def check(target: Any) -> None:
        if isinstance(target, int):
            return
        name = os.path.abspath(os.fsdecode(target))
        if name in denied:
            raise PermissionError(errno.EACCES, "Permission denied", name)

    def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(target: Any = ".", *args: Any, **kwargs: Any) -> Any:
            check(target)
            return real(target, *args, **kwargs)

        return call

    open_ = guarded(builtins.open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", guarded(os.open))
    monkeypatch.setattr(os, "scandir", guarded(os.scandir))


@pytest.fixture
def cfg_project(project_dir: ProjectDir) -> ProjectDir:
    project_dir.write("m/cfg.json", '{"temperature": 0.2}\n')
    project_dir.write("m/sub/extra.json", '{"top_p": 0.9}\n')
    project_dir.write("prompts/system.md", "Hello.\n")
    project_dir.run("init")
    project_dir.run("add", "config", "cfg", "m/cfg.json")
    project_dir.run("add", "files", "m", "m/")
    project_dir.run("add", "prompt", "system", "prompts/*.md")
    project_dir.run("commit", "-m", "first")
    return project_dir


@pytest.mark.parametrize("command", [["status"], ["status", "--verify"], ["commit", "-m", "x"], ["diff", "HEAD"]])
def test_an_unreadable_file_is_named(cfg_project: ProjectDir, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    _deny(monkeypatch, cfg_project.root / "m" / "cfg.json")
    result = cfg_project.run(*command, code=2)
    assert result.stderr.strip() == "tether: error: m/cfg.json: permission denied"
    error = json.loads(cfg_project.run(*command, "--json", code=2).stdout)
    assert error == {"error": "m/cfg.json: permission denied", "exit_code": 2}


def test_an_unreadable_folder_is_named_not_called_empty(cfg_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    _deny(monkeypatch, cfg_project.root / "m")
    result = cfg_project.run("status", code=2)
    assert "m/: permission denied" in result.stderr and "empty" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreadable_subfolder_is_never_skipped(cfg_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    _deny(monkeypatch, cfg_project.root / "m" / "sub")
    for command in (["status"], ["commit", "-m", "x"]):
        result = cfg_project.run(*command, code=2)
        assert result.stderr.strip() == "tether: error: m/sub/: permission denied (folder cannot be read)"


def test_an_unreadable_folder_under_a_glob_is_named(project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    project_dir.write("kb/a.md", "A\n")
    project_dir.write("kb/deep/b.md", "B\n")
    project_dir.write("kb/.hidden/c.md", "C\n")  # ``**`` does not descend into hidden folders
    project_dir.run("init")
    project_dir.run("add", "prompt", "kb", "kb/**/*.md")
    project_dir.run("commit", "-m", "first")
    _deny(monkeypatch, project_dir.root / "kb" / ".hidden")
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]
    monkeypatch.undo()
    _deny(monkeypatch, project_dir.root / "kb" / "deep")
    result = project_dir.run("status", code=2)
    assert result.stderr.strip() == "tether: error: kb/deep/: permission denied (folder cannot be read)"


def test_unreadable_objects_are_named_by_fsck_and_checkout(
    cfg_project: ProjectDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shown = json.loads(cfg_project.run("show", "HEAD", "--json").stdout)
    digest = shown["snapshots"]["cfg"]["files"][0]["digest"]
    obj = cfg_project.root / ".tether" / "objects" / digest[:2] / digest[2:]
    _deny(monkeypatch, obj)
    result = cfg_project.run("fsck", code=1)
    assert f"object {digest}" in result.stderr and "permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "out"
    result = cfg_project.run("checkout", "HEAD", "--dir", str(out), code=2)
    assert result.stderr.strip() == f"tether: error: .tether/objects/{digest[:2]}/{digest[2:]}: permission denied"
    assert not out.exists()
    cfg_project.write("m/cfg.json", '{"temperature": 0.3}\n')
    result = cfg_project.run("checkout", "HEAD", "--force", code=2)
    assert "permission denied" in result.stderr
    assert cfg_project.read("m/cfg.json") == '{"temperature": 0.3}\n'  # nothing was changed
