"""Aliases: promote, append-only history, ``ALIAS@{N}``, compare-and-swap, names and errors."""

from __future__ import annotations

import pytest

from tests.lifecycle.conftest import DeployProject
from tether.meta.lifecycle import AliasConflictError, lifecycle_repository
from tether.project.core import Project


def test_promote_records_who_when_from_to_reason_and_evidence(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    moved = deploy.json("promote", v1, "--to", "prod", "--reason", "first launch")
    assert moved["from"] is None and moved["to"] == v1 and moved["seq"] == 1
    history = deploy.history()
    assert history["current"] == v1
    entry = history["moves"][0]
    assert entry["actor"] == "Test Author <test@example.com>"
    assert entry["reason"] == "first launch" and entry["action"] == "promote" and entry["time"].endswith("Z")
    gates = {gate["gate"]: gate["status"] for gate in entry["evidence"]["gates"]}
    assert gates["valid"] == "passed" and gates["pinned-models"] == "passed" and gates["rehearsal"] == "skipped"
    assert entry["evidence"]["tier"] == "standard"


def test_alias_references_resolve_and_show_in_log(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2 prompt\n")
    deploy.run("promote", v1, "--to", "prod")
    deploy.rehearse_and_promote(v2)
    assert deploy.json("show", "prod")["version_id"] == v2
    assert deploy.json("show", "prod@{0}")["version_id"] == v2
    assert deploy.json("show", "prod@{1}")["version_id"] == v1
    assert deploy.json("show", "prod@{1}")["refs"] == []
    assert "alias: prod" in deploy.json("show", v2)["refs"]
    assert "alias: prod" in deploy.run("log").stdout
    error = deploy.run("show", "prod@{2}", code=2).stderr
    assert "alias 'prod' has only 1 previous target" in error
    assert "no alias 'nope'" in deploy.run("show", "nope@{0}", code=2).stderr
    assert "expected ALIAS@{N}" in deploy.run("show", "prod@{x}", code=2).stderr


def test_history_is_append_only_across_promote_and_rollback(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    before = deploy.history()["moves"]
    deploy.rehearse_and_promote(v2)
    deploy.run("rollback", "prod")
    after = deploy.history()["moves"]
    assert after[: len(before)] == before
    assert [(m["action"], m["from"], m["to"]) for m in after] == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
    ]
    assert [m["seq"] for m in after] == [1, 2, 3]


def test_stale_expect_is_refused_and_moves_nothing(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    result = deploy.run("promote", v2, "--to", "prod", "--expect", v2[:12], code=1)
    assert "is at" in result.stderr and "not at" in result.stderr
    assert deploy.history()["current"] == v1
    deploy.run("promote", v2, "--to", "prod", "--expect", v1[:12])
    assert deploy.history()["current"] == v2
    assert "--expect nothere" in deploy.run("promote", v1, "--to", "prod", "--expect", "nothere", code=2).stderr


def test_compare_and_swap_refuses_a_move_based_on_a_stale_read(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    with Project.open(deploy.root) as project:
        repo = lifecycle_repository(project.meta)
        common = dict(action="promote", actor="a", time="2026-01-01T00:00:00Z", reason=None, evidence={})
        repo.move_alias("prod", v1, expected_moves=0, expected_version=None, **common)  # type: ignore[arg-type]
        seen = repo.get_alias("prod")
        assert seen is not None
        repo.move_alias("prod", v2, expected_moves=seen.moves, expected_version=None, **common)  # type: ignore[arg-type]
        with pytest.raises(AliasConflictError, match="moved"):
            repo.move_alias("prod", v1, expected_moves=seen.moves, expected_version=None, **common)  # type: ignore[arg-type]
        with pytest.raises(AliasConflictError):  # a second "first" promotion loses too
            repo.move_alias("prod", v1, expected_moves=0, expected_version=None, **common)  # type: ignore[arg-type]
        assert [move.to_version for move in repo.history("prod")] == [v1, v2]


def test_alias_and_branch_names_must_not_collide(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    assert "a branch of that name exists" in deploy.run("promote", v1, "--to", "main", code=2).stderr
    # policy check agrees with promote instead of calling a promotion it refuses "ready"
    assert "a branch of that name exists" in deploy.run("policy", "check", v1, "--to", "main", code=2).stderr
    deploy.run("promote", v1, "--to", "prod")
    assert "an alias of that name exists" in deploy.run("branch", "prod", code=2).stderr
    assert "an alias of that name exists" in deploy.run("commit", "-m", "x", "--allow-empty", "--branch", "prod", code=2).stderr


@pytest.mark.parametrize("name", ["HEAD", "bad name", "x@{1}", "a~1", "-x"])
def test_bad_alias_names_are_usage_errors(deploy: DeployProject, name: str) -> None:
    v1 = deploy.commit("v1")
    assert "alias name" in deploy.run("promote", v1, "--to", name, code=2).stderr


def test_a_bad_alias_name_is_named_by_the_option_that_gave_it(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    assert deploy.run("approve", v1, "--for", "bad name", code=2).stderr.startswith("tether: error: --for bad name: not a valid alias name")
    result = deploy.run("rollback", "prod@{1}", "--rehearse", "--from", v1, code=2)
    assert result.stderr.startswith("tether: error: ALIAS prod@{1}: not a valid alias name")
    assert deploy.run("policy", "check", v1, "--to", "a~1", code=2).stderr.startswith("tether: error: --to a~1: not a valid")


def test_promote_errors(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    assert "no branch, version or alias" in deploy.run("promote", "nope", "--to", "prod", code=2).stderr
    deploy.run("promote", v1, "--to", "prod")
    assert "already points at" in deploy.run("promote", v1, "--to", "prod", code=1).stderr
    assert "--reason: must not be empty" in deploy.run("promote", v1, "--to", "x", "--reason", " ", code=2).stderr
    assert "no such alias" in deploy.run("history", "staging", code=2).stderr
    error = deploy.json("promote", v1, "--to", "prod", code=1)
    assert error["exit_code"] == 1 and "already points" in error["error"]
