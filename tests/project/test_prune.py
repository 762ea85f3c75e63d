"""``gc --unreachable``: an abandoned experiment's files go, its record stays, and nothing any
name reaches (branches, HEAD, alias history, rehearsals, audit records) loses a byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tether
from tests.conftest import ProjectDir
from tether.errors import CheckFailedError
from tether.lifecycle import runtime
from tether.project.core import Project

WEIGHTS = "models/w.bin"


class Experiments(ProjectDir):
    """A project whose versions each carry their own 3 MB of weights (stored in parts)."""

    def weights(self) -> None:
        self.write(WEIGHTS, os.urandom(3_000_000))

    def commit(self, message: str) -> str:
        return self.run("commit", "-m", message).stdout.strip()

    def gc(self, *args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
        return json.loads(self.run("gc", "--unreachable", "--now", *args, "--json", code=code).stdout)  # type: ignore[no-any-return]

    def experiment(self, branch: str, count: int = 2) -> list[str]:
        """Commit ``count`` versions on a new branch, go back to main and delete the branch."""
        self.run("branch", branch)
        self.run("checkout", branch)
        versions = []
        for index in range(count):
            self.weights()
            versions.append(self.commit(f"{branch} {index}"))
        self.run("checkout", "main")
        self.run("branch", "-d", branch)
        return versions


@pytest.fixture
def exp(tmp_path: Path) -> Experiments:
    project = Experiments(tmp_path / "proj")
    project.root.mkdir()
    project.write("prompts/system.md", "You are helpful.\n")
    project.weights()
    project.run("init", "--tier", "lite")
    project.run("add", "prompt", "system", "prompts/system.md")
    project.run("add", "model", "m", "models/")
    project.commit("v1")
    return project


def _store_bytes(project: ProjectDir) -> int:
    objects = project.root / ".tether" / "objects"
    return sum(path.stat().st_size for path in objects.rglob("*") if path.is_file())


def test_an_abandoned_experiments_files_go_and_its_records_stay(exp: Experiments) -> None:
    main = exp.run("log", "-n", "1", "--json").stdout
    dropped = exp.experiment("exp")
    before = _store_bytes(exp)
    dry = exp.gc("--dry-run")
    assert [item["version_id"] for item in dry["pruned"]] == dropped and dry["removed"]
    assert _store_bytes(exp) == before  # a dry run touches nothing
    report = exp.gc()
    assert sorted(item["version_id"] for item in report["pruned"]) == sorted(dropped)
    assert [item["message"] for item in report["pruned"]] == ["exp 0", "exp 1"]
    assert before - _store_bytes(exp) > 5_500_000  # both 3 MB weight files
    assert exp.run("log", "-n", "1", "--json").stdout == main
    shown = exp.run("show", dropped[1]).stdout
    assert "removed by gc --unreachable" in shown and "exp 1" in shown
    assert json.loads(exp.run("show", dropped[1], "--json").stdout)["pruned"]
    assert [entry["message"] for entry in json.loads(exp.run("log", dropped[1], "--json").stdout)] == ["exp 1", "exp 0", "v1"]
    fsck = json.loads(exp.run("fsck", "--json").stdout)
    assert fsck["ok"] and fsck["pruned"] == 2 and fsck["versions"] == 3
    assert exp.gc()["pruned"] == []  # once is enough
    exp.run("checkout", "HEAD", "--dir", str(exp.root.parent / "copy"))  # main is whole
    assert (exp.root.parent / "copy" / WEIGHTS).read_bytes() == (exp.root / WEIGHTS).read_bytes()


def test_a_pruned_version_is_refused_wherever_its_content_would_be_used(exp: Experiments) -> None:
    dropped = exp.experiment("exp", count=1)[0]
    exp.gc()
    for args in (
        ("checkout", dropped),
        ("checkout", dropped, "--dir", str(exp.root.parent / "out")),
        ("diff", dropped),
        ("diff", "HEAD", dropped),
        ("branch", "revive", dropped),
        ("promote", dropped, "--to", "prod"),
        ("compose", "HEAD", "--take", f"m={dropped}", "-m", "take the pruned weights"),
    ):
        error = exp.run(*args, code=1).stderr
        assert f"version {dropped[:12]}: its files were removed by `tether gc --unreachable`" in error, args
    assert not (exp.root.parent / "out").exists()
    with pytest.raises(CheckFailedError, match="its files were removed"):
        tether.resolve(dropped, project_dir=exp.root)
    runtime.clear_cache()


def test_every_name_keeps_its_versions_and_their_ancestors(exp: Experiments) -> None:
    kept_by_branch = exp.experiment("keep-ancestor", count=2)  # re-named below: the head keeps its parent
    exp.run("branch", "named", kept_by_branch[1])
    deployed = exp.experiment("deployed", count=1)[0]
    exp.run("promote", deployed, "--to", "staging")
    exp.run("promote", "main", "--to", "staging")  # the alias moved on: its history still keeps it
    rehearsed = exp.experiment("rehearsed", count=1)[0]
    exp.run("rollback", "staging", "--rehearse", "--from", rehearsed)
    approved = exp.experiment("approved", count=1)[0]
    exp.run("approve", approved, "--for", "prod")  # awaiting its promotion
    audited = exp.experiment("audited", count=1)[0]
    with Project.open(exp.root) as project:
        from tether.audit import AuditLog

        with AuditLog.open(project.root, durability="sync") as log, log.record(alias="adhoc", version_id=audited, request_id="r-1"):
            pass
    gone = exp.experiment("gone", count=1)[0]
    detached = exp.experiment("detached", count=1)[0]
    exp.run("checkout", detached)  # HEAD keeps it
    pruned = {item["version_id"] for item in exp.gc()["pruned"]}
    assert pruned == {gone}
    for version in (*kept_by_branch, deployed, rehearsed, approved, audited, detached):
        exp.run("checkout", version, "--dir", str(exp.root.parent / version[:12]))
    assert json.loads(exp.run("fsck", "--json").stdout)["ok"]


def test_young_versions_wait_for_the_grace_period(exp: Experiments) -> None:
    exp.experiment("fresh", count=1)
    report = json.loads(exp.run("gc", "--unreachable", "--json").stdout)  # default grace: an hour
    assert report["pruned"] == []


def test_objects_a_kept_version_shares_are_kept(exp: Experiments) -> None:
    exp.run("branch", "exp")
    exp.run("checkout", "exp")
    exp.write("prompts/system.md", "You are terse.\n")  # the weights stay those of v1
    dropped = exp.commit("terse")
    exp.run("checkout", "main")
    exp.run("branch", "-d", "exp")
    report = exp.gc()
    assert [item["version_id"] for item in report["pruned"]] == [dropped]
    assert len(report["removed"]) == 1  # the terse prompt alone: the weights are main's too
    assert json.loads(exp.run("fsck", "--json").stdout)["ok"]


def test_a_gc_killed_half_way_leaves_a_store_fsck_accepts(exp: Experiments, monkeypatch: pytest.MonkeyPatch) -> None:
    """The versions are marked pruned before any object goes: a crash between two deletions
    leaves versions named as pruned, never versions silently missing files."""
    from tether.store.local import LocalObjectStore

    exp.experiment("exp", count=2)
    deleted = []
    real_delete = LocalObjectStore.delete

    def dies_after_one(self: LocalObjectStore, digest: str) -> None:
        if deleted:
            raise KeyboardInterrupt
        deleted.append(digest)
        real_delete(self, digest)

    monkeypatch.setattr(LocalObjectStore, "delete", dies_after_one)
    with Project.open(exp.root) as project, pytest.raises(KeyboardInterrupt):
        project.gc(grace_seconds=0, unreachable=True)
    monkeypatch.setattr(LocalObjectStore, "delete", real_delete)
    fsck = json.loads(exp.run("fsck", "--json").stdout)
    assert fsck["ok"] and fsck["pruned"] == 2
    assert exp.gc()["removed"]  # the next gc finishes the job
    assert json.loads(exp.run("fsck", "--json").stdout)["ok"]


def _gc_from_another_process(exp: Experiments, ran: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What a concurrent ``gc --unreachable --now`` does at this moment: prune, or be refused
    because a commit (or a name being given) holds the lock."""
    from tether.project import storage

    monkeypatch.setattr(storage, "GC_WAIT_SECONDS", 0.2)
    try:
        with Project.open(exp.root) as other:
            ran.extend(item["version_id"] for item in other.gc(grace_seconds=0, unreachable=True).pruned)
    except CheckFailedError as exc:
        ran.append(f"refused: {exc}")


@pytest.mark.slow
def test_a_gc_racing_a_promote_or_branch_never_leaves_a_name_on_pruned_files(
    exp: Experiments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promote or ``branch NAME ID`` checks the version's files, then names it: a gc
    --unreachable in between pruned it, and prod (or the branch) named a version with no files."""
    from tether.lifecycle.deploy import Lifecycle
    from tether.meta.lifecycle import SqlLifecycleRepository
    from tether.meta.sql import SqlMetadataRepository

    ran: list[str] = []
    real_move = SqlLifecycleRepository.move_alias
    real_set = SqlMetadataRepository.set_branch

    def move_after_gc(self: SqlLifecycleRepository, *args: object, **kwargs: object) -> object:
        _gc_from_another_process(exp, ran, monkeypatch)
        return real_move(self, *args, **kwargs)  # type: ignore[arg-type]

    def set_after_gc(self: SqlMetadataRepository, *args: object, **kwargs: object) -> None:
        _gc_from_another_process(exp, ran, monkeypatch)
        real_set(self, *args, **kwargs)  # type: ignore[arg-type]

    promoted = exp.experiment("exp1", count=1)[0]
    monkeypatch.setattr(SqlLifecycleRepository, "move_alias", move_after_gc)
    with Project.open(exp.root) as project:
        Lifecycle(project).promote(promoted, "prod")
    monkeypatch.undo()
    branched = exp.experiment("exp2", count=1)[0]
    monkeypatch.setattr(SqlMetadataRepository, "set_branch", set_after_gc)
    with Project.open(exp.root) as project:
        project.create_branch("revive", branched)
    monkeypatch.undo()
    assert promoted not in ran and branched not in ran, ran
    assert json.loads(exp.run("fsck", "--json").stdout)["pruned"] == 0
    exp.run("checkout", "prod", "--dir", str(exp.root.parent / "prod"))
    exp.run("checkout", "revive", "--dir", str(exp.root.parent / "revive"))


def test_a_compose_racing_gc_refuses_a_source_pruned_meanwhile(exp: Experiments, monkeypatch: pytest.MonkeyPatch) -> None:
    """compose checks its sources' files before it takes the commit lock; a gc --unreachable in
    between pruned one, and the composed version referred to removed objects."""
    dropped = exp.experiment("exp", count=1)[0]
    ran: list[str] = []
    real_check = Project._check_pinning

    def gc_first(self: Project, *args: object) -> object:
        _gc_from_another_process(exp, ran, monkeypatch)
        return real_check(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Project, "_check_pinning", gc_first)
    with Project.open(exp.root) as project, pytest.raises(CheckFailedError, match="its files were removed"):
        project.compose("HEAD", {"m": dropped}, "take the weights")
    monkeypatch.undo()
    assert ran == [dropped]
    fsck = json.loads(exp.run("fsck", "--json").stdout)
    assert fsck["ok"] and fsck["versions"] == 2


def test_fsck_names_a_branch_or_alias_left_on_a_pruned_version(exp: Experiments) -> None:
    """Names never reach a pruned version through tether itself; fsck still checks it (a store
    shared with an older tether, a hand-edited database)."""
    dropped = exp.experiment("exp", count=1)[0]
    exp.gc()
    with Project.open(exp.root) as project:
        project.meta.set_branch("zombie", dropped)
        from tether.meta.lifecycle import lifecycle_repository

        lifecycle_repository(project.meta).move_alias(
            "ghost", dropped, action="promote", expected_moves=0, expected_version=None, actor="t",
            time="2026-11-27T00:00:00Z", reason=None, evidence={},
        )
    problems = json.loads(exp.run("fsck", "--json", code=1).stdout)["problems"]
    assert f"branch zombie: points at version {dropped[:12]}, whose files gc --unreachable removed" in problems
    assert f"alias ghost: serves version {dropped[:12]}, whose files gc --unreachable removed" in problems
