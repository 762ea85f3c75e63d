"""Two working copies sharing one metadata database and object store (team mode): a branch can
move under a copy, and a commit must never silently revert what the other copy committed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ProjectDir


@pytest.fixture
def two_copies(tmp_path: Path, make_project: Callable[[str], ProjectDir]) -> tuple[ProjectDir, ProjectDir]:
    alice = make_project("alice")
    alice.write("prompts/system.md", "v1\n")
    alice.write("config/generation.yaml", "temperature: 0.2\n")
    shared = tmp_path / "shared"
    alice.run("init", "--db", f"sqlite:///{shared / 'meta.db'}", "--store", str(shared / "objects"))
    alice.run("add", "prompt", "system", "prompts/system.md")
    alice.run("add", "config", "generation", "config/generation.yaml")
    alice.run("commit", "-m", "v1")
    bob = make_project("bob")
    for rel in ("tether.toml", "prompts/system.md", "config/generation.yaml"):  # a clone of the repository
        (bob.root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(alice.root / rel, bob.root / rel)
    bob.run("init")
    bob.run("checkout", "main", "--force")
    return alice, bob


def test_a_commit_on_a_branch_another_copy_moved_is_refused(two_copies: tuple[ProjectDir, ProjectDir]) -> None:
    alice, bob = two_copies
    bob.write("prompts/system.md", "v2 from bob\n")
    bobs = bob.run("commit", "-m", "bob: v2 prompt").stdout.strip()
    alice.write("config/generation.yaml", "temperature: 0.7\n")  # alice's tree still has v1's prompt
    status = json.loads(alice.run("status", "--json").stdout)
    assert status["synced"] != status["head"] and status["head"] == bobs
    assert "moved" in alice.run("status").stdout
    refused = alice.run("commit", "-m", "alice: warmer", code=1)
    assert "branch 'main' moved to" in refused.stderr and "nothing was recorded" in refused.stderr
    assert json.loads(alice.run("log", "--json").stdout)[0]["version_id"] == bobs  # bob's change stands
    # Alice keeps her work on a branch that forks from what her tree is based on, not from bob's.
    kept = alice.run("commit", "-m", "alice: warmer", "--branch", "alice-warmer").stdout.strip()
    shown = json.loads(alice.run("show", kept, "--json").stdout)
    assert bobs not in shown["parents"]
    # Updating the tree brings bob's prompt; then a commit on main builds on it.
    alice.run("checkout", "main")
    assert alice.read("prompts/system.md") == "v2 from bob\n"
    alice.write("config/generation.yaml", "temperature: 0.7\n")
    on_top = alice.run("commit", "-m", "alice: warmer, on bob's").stdout.strip()
    assert json.loads(alice.run("show", on_top, "--json").stdout)["parents"] == [bobs]


def test_a_branch_deleted_by_another_copy_is_not_committed_to_as_a_new_root(two_copies: tuple[ProjectDir, ProjectDir]) -> None:
    alice, bob = two_copies
    bob.run("branch", "exp")
    alice.run("checkout", "exp")
    bob.run("branch", "exp", "-d")
    alice.write("prompts/system.md", "experiment\n")
    refused = alice.run("commit", "-m", "exp", code=1)
    assert "branch 'exp' was deleted" in refused.stderr


def test_a_branch_delete_racing_a_commit_on_it_deletes_nothing(
    two_copies: tuple[ProjectDir, ProjectDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``branch -d`` read the branch, then deleted it whatever it pointed at by then: a commit
    landing in between lost its only name (and ``-d`` named the old version as the one to keep)."""
    from tether.errors import CheckFailedError
    from tether.meta.sql import SqlMetadataRepository
    from tether.project.core import Project

    alice, bob = two_copies
    bob.run("branch", "exp")
    alice.run("checkout", "exp")
    alice.write("prompts/system.md", "experiment\n")
    real_delete = SqlMetadataRepository.delete_branch
    commits: list[str] = []

    def commit_first(self: SqlMetadataRepository, *args: object, **kwargs: object) -> None:
        commits.append(alice.run("commit", "-m", "exp").stdout.strip())
        real_delete(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlMetadataRepository, "delete_branch", commit_first)
    with Project.open(bob.root) as project, pytest.raises(CheckFailedError, match="nothing was deleted"):
        project.delete_branch("exp")
    monkeypatch.undo()
    assert json.loads(alice.run("log", "exp", "--json").stdout)[0]["version_id"] == commits[0]
