"""Several tether processes on one working copy at once (a team's scripts, CI jobs): commits and
checkouts take turns, so HEAD, the tree's base and the files on disk always agree."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ProjectDir
from tether.project.core import Project


def _start(project: ProjectDir, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TETHER_AUTHOR": "Racer <race@example.com>"}
    return subprocess.Popen(
        [sys.executable, "-m", "tether.cli.main", "-C", str(project.root), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


@pytest.mark.slow
def test_a_commit_to_a_new_branch_racing_a_commit_on_main_leaves_head_and_base_agreeing(
    prompt_project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commit --branch feat`` switched HEAD to feat while a commit on main recorded the tree's
    base as main's new version: status then said another working copy had moved feat, and every
    commit on feat was refused until a checkout."""
    prompt_project.run("commit", "-m", "v1")
    prompt_project.write("prompts/system.md", "v2\n")
    real_record = Project._record_version_locked
    other: list[subprocess.Popen[str]] = []

    def other_commits_first(self: Project, *args: object, **kwargs: object) -> object:
        other.append(_start(prompt_project, "commit", "-m", "to feat", "--branch", "feat"))
        with contextlib.suppress(subprocess.TimeoutExpired):
            other[0].wait(timeout=8)  # without turns it lands here; with them it waits for this commit
        return real_record(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Project, "_record_version_locked", other_commits_first)
    with Project.open(prompt_project.root) as project:
        project.commit("on main")
    monkeypatch.undo()
    _, stderr = other[0].communicate(timeout=60)
    assert other[0].returncode in (0, 1) and "Traceback" not in stderr, stderr
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["synced"] == status["head"], status
    prompt_project.write("prompts/system.md", "v3\n")
    prompt_project.run("commit", "-m", "v3")
