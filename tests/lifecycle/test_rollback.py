"""Rollback with its reversibility check, rehearsals, and gc's protection of rollback targets."""

from __future__ import annotations

import json
import time

import pytest

from tests.lifecycle.conftest import SEARCH_TOOL, DeployProject
from tests.lifecycle.test_gates import corrupt_object, prompt_digest
from tether.project.core import Project


def _promote_pair(deploy: DeployProject, v1: str, v2: str) -> None:
    deploy.run("promote", v1, "--to", "prod")
    deploy.rehearse_and_promote(v2)


def test_rollback_returns_to_the_previous_target_fast_and_prints_the_report(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    _promote_pair(deploy, v1, v2)
    started = time.perf_counter()
    result = deploy.run("rollback", "prod")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"rollback took {elapsed:.2f} s"
    assert f"Reversibility check {v2[:12]} -> {v1[:12]}: reversible" in result.stdout
    assert "system (prompt, changed)" in result.stdout
    assert f"Rolled back prod: {v2[:12]} -> {v1[:12]} (move #3" in result.stdout
    assert deploy.history()["current"] == v1


def test_rolling_back_twice_goes_further_back_never_forward_again(deploy: DeployProject) -> None:
    """A retried or repeated rollback must not re-deploy the version the first one left."""
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    v3 = deploy.prompt_version("v3\n")
    _promote_pair(deploy, v1, v2)
    deploy.rehearse_and_promote(v3)
    assert deploy.json("rollback", "prod")["to"] == v2
    assert deploy.json("rollback", "prod")["to"] == v1  # not back to v3
    assert "no previous target" in deploy.run("rollback", "prod", code=1).stderr
    assert [move["to"] for move in deploy.history()["moves"]] == [v1, v2, v3, v2, v1]


def test_the_deploy_stack_unwinds_rollbacks() -> None:
    from tether.lifecycle.deploy import deploy_stack
    from tether.meta.lifecycle import AliasMove

    def move(action: str, source: str | None, target: str) -> AliasMove:
        return AliasMove("prod", 0, action, source, target, "a", "t", None, {}, False)

    promote = [move("promote", None, "a"), move("promote", "a", "b"), move("promote", "b", "c")]
    assert deploy_stack(promote) == ["a", "b", "c"]
    assert deploy_stack([*promote, move("rollback", "c", "b")]) == ["a", "b"]
    assert deploy_stack([*promote, move("rollback", "c", "a")]) == ["a"]  # rollback --to a
    # A rollback to a version this line never served replaces the one it left.
    assert deploy_stack([*promote, move("rollback", "c", "z")]) == ["a", "b", "z"]
    # Promoting again after a rollback stacks on top of where the rollback landed.
    assert deploy_stack([*promote, move("rollback", "c", "b"), move("promote", "b", "d")]) == ["a", "b", "d"]
    # A version served twice: a rollback to it lands on its latest promotion, so the next
    # rollback returns to what that promotion replaced (c), not to what the first one did (a).
    again = [*promote, move("promote", "c", "b"), move("promote", "b", "d")]
    assert deploy_stack([*again, move("rollback", "d", "b")]) == ["a", "b", "c", "b"]
    assert deploy_stack([*again, move("rollback", "d", "b"), move("rollback", "b", "c")]) == ["a", "b", "c"]


def test_rollback_to_a_reference_and_errors(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    v3 = deploy.prompt_version("v3\n")
    deploy.run("promote", v1, "--to", "prod")
    assert "no previous target" in deploy.run("rollback", "prod", code=1).stderr
    deploy.rehearse_and_promote(v2)
    deploy.run("rollback", "prod", "--rehearse", "--from", v3)
    deploy.run("promote", v3, "--to", "prod")
    moved = deploy.json("rollback", "prod", "--to", "prod@{2}", "--reason", "back to the first")
    assert moved["to"] == v1 and moved["action"] == "rollback" and moved["reason"] == "back to the first"
    assert "already points at" in deploy.run("rollback", "prod", "--to", v1, code=1).stderr
    assert "no such alias" in deploy.run("rollback", "canary", code=2).stderr
    assert "--force needs --reason" in deploy.run("rollback", "prod", "--force", code=2).stderr
    assert "--from: only with --rehearse" in deploy.run("rollback", "prod", "--from", v1, code=2).stderr
    assert "is at" in deploy.run("rollback", "prod", "--expect", v2, code=1).stderr
    # The alias itself always "matches": refused instead of silently checking nothing.
    assert "would always match" in deploy.run("rollback", "prod", "--expect", "prod", code=2).stderr
    assert "would always match" in deploy.run("promote", v2, "--to", "prod", "--expect", "prod~1", code=2).stderr


def test_rollback_to_a_version_the_alias_never_served_is_refused(deploy: DeployProject) -> None:
    """``--to`` goes back through the alias's history; a version new to it must pass the gates."""
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    _promote_pair(deploy, v1, v2)
    deploy.run("branch", "experiment")
    deploy.run("checkout", "experiment")
    deploy.write("tether.toml", deploy.read("tether.toml").replace("gpt-4o-2024-08-06", "gpt-4o"))
    floating = deploy.commit("a floating model, never promoted")
    result = deploy.run("rollback", "prod", "--to", floating, "--reason", "sneak it in", code=1)
    assert result.stderr.strip() == (
        f"tether: error: rollback --to {floating}: prod never served {floating[:12]}; "
        f"a rollback goes back to an earlier target of prod: promote a new version with "
        f"`tether promote {floating[:12]} --to prod` (it runs the gates)"
    )
    assert deploy.history()["current"] == v2 and len(deploy.history()["moves"]) == 2
    assert deploy.json("rollback", "prod", "--to", v1)["to"] == v1  # served before: a rollback
    assert deploy.json("rollback", "prod", "--to", v2)["to"] == v2  # so was the version the last one left


def test_irreversible_migration_refuses_a_plain_rollback_and_force_is_recorded(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.write("migrations/002_up.sql", "ALTER TABLE tickets ADD COLUMN priority int;\n")
    deploy.run("add", "migration", "schema_v2", "migrations/002_up.sql")
    v2 = deploy.commit("v2 adds a column, no down")
    _promote_pair(deploy, v1, v2)
    refused = deploy.run("rollback", "prod", code=1)
    assert "IRREVERSIBLE" in refused.stdout and "schema_v2 (migration, removed)" in refused.stdout
    assert "rollback refused: irreversible: schema_v2" in refused.stderr and "--force --reason" in refused.stderr
    as_json = deploy.json("rollback", "prod", code=1)
    assert as_json["reversibility"]["verdict"] == "irreversible"
    assert deploy.history()["current"] == v2
    forced = deploy.json("rollback", "prod", "--force", "--reason", "incident 7: drop the column by hand")
    assert forced["forced"] is True and forced["to"] == v1
    assert forced["evidence"]["overridden"][0].startswith("schema_v2: the current version's migration")
    text = deploy.run("history", "prod").stdout
    assert "FORCED" in text and "overridden: schema_v2" in text and "incident 7" in text


def test_a_migration_with_a_down_script_is_reversible(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.write("migrations/002_up.sql", "ALTER TABLE t ADD c int;\n")
    deploy.write("migrations/002_down.sql", "ALTER TABLE t DROP c;\n")
    deploy.run("add", "migration", "schema_v2", "migrations/002_up.sql", "migrations/002_down.sql")
    v2 = deploy.commit("v2")
    _promote_pair(deploy, v1, v2)
    result = deploy.run("rollback", "prod")
    assert "run the current version's down script migrations/002_down.sql" in result.stdout


def test_missing_target_objects_refuse_even_a_forced_rollback(deploy: DeployProject) -> None:
    v1 = deploy.prompt_version("a prompt only v1 has\n")
    v2 = deploy.prompt_version("v2\n")
    _promote_pair(deploy, v1, v2)
    digest = prompt_digest(deploy.root, v1)
    (deploy.root / ".tether" / "objects" / digest[:2] / digest[2:]).unlink()
    result = deploy.run("rollback", "prod", "--force", "--reason", "try anyway", code=1)
    assert "cannot be served" in result.stderr and "missing from the store" in result.stderr
    assert "UNAVAILABLE" in result.stdout
    assert deploy.history()["current"] == v2


def test_corrupted_target_objects_refuse_the_rollback(deploy: DeployProject) -> None:
    v1 = deploy.prompt_version("another prompt only v1 has\n")
    v2 = deploy.prompt_version("v2\n")
    _promote_pair(deploy, v1, v2)
    corrupt_object(deploy.root, prompt_digest(deploy.root, v1))
    assert "corrupted" in deploy.run("rollback", "prod", code=1).stderr


@pytest.mark.parametrize("how", ["policy", "add"])
def test_retired_model_is_irreversible_from_policy_or_a_flag_on_add(deploy: DeployProject, how: str) -> None:
    deploy.write("tether.toml", deploy.read("tether.toml").replace("gpt-4o-2024-08-06", "gpt-4-0613"))
    v1 = deploy.commit("v1 on gpt-4-0613")
    deploy.write("tether.toml", deploy.read("tether.toml").replace("gpt-4-0613", "gpt-4o-2024-08-06"))
    v2 = deploy.commit("v2 on gpt-4o")
    _promote_pair(deploy, v1, v2)
    if how == "policy":
        deploy.add_policy('retired_models = ["openai:gpt-4-0613"]')
    else:
        deploy.run("add", "model", "old_llm", "--set", "provider=openai", "--set", "id=gpt-4-0613", "--set", "retired=true")
    result = deploy.run("rollback", "prod", code=1)
    assert "hosted model openai:gpt-4-0613 is retired" in result.stdout
    assert "rollback refused: irreversible: llm" in result.stderr


def test_breaking_tools_and_index_rebuild_are_reported(deploy: DeployProject) -> None:
    deploy.write("kb/a.md", "# A\n")
    deploy.run("add", "index", "kb", "kb/**/*.md", "--set", "embedding_model=sentence-transformers/all-MiniLM-L6-v2")
    v1 = deploy.commit("v1")
    tool = json.loads(json.dumps(SEARCH_TOOL))
    tool["function"]["parameters"]["properties"]["limit"] = {"type": "integer"}
    deploy.write("tools/search_kb.json", json.dumps(tool))
    deploy.write("tether.toml", deploy.read("tether.toml").replace("all-MiniLM-L6-v2", "all-mpnet-base-v2"))
    v2 = deploy.commit("v2: new tool parameter, new embedding model")
    _promote_pair(deploy, v1, v2)
    moved = deploy.json("rollback", "prod")
    findings = {item["name"]: item["findings"] for item in moved["reversibility"]["components"]}
    assert any(f["check"] == "tools" and f["level"] == "warning" and "breaking" in f["message"] for f in findings["tools"])
    assert any(f["check"] == "index" and "needs a rebuild" in f["message"] for f in findings["kb"])
    assert moved["reversibility"]["verdict"] == "reversible"
    assert any("breaking contract change" in warning for warning in moved["warnings"])


# ---- rehearsal ------------------------------------------------------------------------------------------
def test_rehearsal_materializes_verifies_and_is_recorded(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    _promote_pair(deploy, v1, v2)
    result = deploy.json("rollback", "prod", "--rehearse")
    assert result["passed"] is True and result["from"] == v2 and result["to"] == v1
    steps = {step["step"]: step for step in result["steps"]}
    assert steps["materialize"]["ok"] and "files re-hashed and verified" in steps["verify"]["detail"]
    assert steps["smoke"]["detail"].startswith("skipped")
    assert deploy.history()["current"] == v2  # nothing moved
    rehearsals = deploy.history()["rehearsals"]
    assert [(r["from"], r["to"], r["passed"]) for r in rehearsals] == [(v2, v1, True), (v2, v1, True)]
    assert "rehearsal    #2" in deploy.run("history", "prod").stdout


def test_rehearsal_runs_the_declared_smoke_check(deploy: DeployProject) -> None:
    deploy.write(
        "smoke_rehearsal_check.py",
        "def smoke(live):\n"
        "    assert 'helpful' in live.prompt('system'), 'the system prompt lost its tone'\n"
        "    assert live.config('generation')['temperature'] < 1\n",
    )
    deploy.add_policy('smoke = "smoke_rehearsal_check:smoke"')
    v1 = deploy.prompt_version("You are helpful.\n", "v1")
    v2 = deploy.prompt_version("You are terse.\n", "v2")
    v3 = deploy.prompt_version("You are helpful and brief.\n", "v3")
    deploy.run("promote", v2, "--to", "prod")
    failed = deploy.run("rollback", "prod", "--rehearse", "--to", v2, "--from", v1, code=1)
    assert "FAILED  smoke" in failed.stdout  # v2 is the target: its prompt is not "helpful"
    assert "the system prompt lost its tone" in failed.stdout and "rehearsal FAILED" in failed.stdout
    passed = deploy.json("rollback", "prod", "--rehearse", "--to", v3)
    assert {step["step"]: step["ok"] for step in passed["steps"]}["smoke"] is True


def test_rehearsal_of_corrupted_target_fails_and_does_not_count(deploy: DeployProject) -> None:
    v1 = deploy.prompt_version("a v1-only prompt for rehearsal\n")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    corrupt_object(deploy.root, prompt_digest(deploy.root, v1))
    result = deploy.run("rollback", "prod", "--rehearse", "--from", v2, code=1)
    assert "FAILED  materialize" in result.stdout and "corrupted" in result.stdout
    assert "rehearsal gate" in deploy.run("promote", v2, "--to", "prod", code=1).stderr


def test_rehearsal_errors(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    assert "no such alias" in deploy.run("rollback", "prod", "--rehearse", code=2).stderr
    deploy.run("promote", v1, "--to", "prod")
    assert "no previous target" in deploy.run("rollback", "prod", "--rehearse", code=1).stderr
    assert "same version" in deploy.run("rollback", "prod", "--rehearse", "--to", v1, code=2).stderr
    assert "--force and --expect" in deploy.run("rollback", "prod", "--rehearse", "--force", code=2).stderr


# ---- gc --------------------------------------------------------------------------------------------------
def test_gc_protects_and_reports_the_rollback_window(deploy: DeployProject) -> None:
    deploy.add_policy("rollback_window = 2")
    versions = [deploy.commit("v0")]
    deploy.run("promote", versions[0], "--to", "prod")
    for index in range(1, 4):
        versions.append(deploy.prompt_version(f"v{index}\n"))
        deploy.rehearse_and_promote(versions[-1])
    report = deploy.json("gc", "--dry-run")
    assert report["protected"] == [
        {"alias": "prod", "version_id": versions[3]},
        {"alias": "prod", "version_id": versions[2]},
    ]
    text = deploy.run("gc", "--now").stdout
    assert f"protected the last 2 rollback target(s) of alias prod: {versions[3][:12]}, {versions[2][:12]}" in text
    with Project.open(deploy.root) as project:
        for version_id in versions[2:]:
            for snap in project.version_snapshots(version_id).values():
                assert all(project.store.has(entry.digest) for entry in snap.files)
    deploy.run("rollback", "prod")
