"""Every promotion gate, each with a test that fails when the gate is removed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lifecycle.conftest import DeployProject
from tether.errors import UsageError
from tether.ids import canonical_bytes, digest_bytes
from tether.lifecycle.gates import EvalGateRequest, mean_comparison, metric_value, same_person
from tether.lifecycle.policy import validate_section
from tether.meta.lifecycle import lifecycle_repository
from tether.project.core import Project


def corrupt_object(root: Path, digest: str) -> None:
    path = root / ".tether" / "objects" / digest[:2] / digest[2:]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def prompt_digest(root: Path, version_id: str) -> str:
    with Project.open(root) as project:
        return project.version_snapshots(version_id)["system"].files[0].digest


# ---- valid ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", ["lite", "standard"])
def test_valid_gate_refuses_a_version_whose_content_does_not_verify(make_deploy: Callable[[str], DeployProject], tier: str) -> None:
    deploy = make_deploy(tier)
    v1 = deploy.prompt_version("unique prompt for the valid gate\n")
    corrupt_object(deploy.root, prompt_digest(deploy.root, v1))
    result = deploy.run("promote", v1, "--to", "prod", code=1)
    assert "refused by the valid gate" in result.stderr and "corrupted" in result.stderr
    assert "no such alias" in deploy.run("history", "prod", code=2).stderr


def test_lite_needs_nothing_beyond_a_valid_version(make_deploy: Callable[[str], DeployProject]) -> None:
    deploy = make_deploy("lite")
    deploy.run("add", "model", "chat", "--set", "provider=openai", "--set", "id=gpt-4o")  # floating: a warning in lite
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    moved = deploy.json("promote", v2, "--to", "prod")  # no rehearsal, floating model: fine in lite
    statuses = {gate["gate"]: gate["status"] for gate in moved["gates"]}
    assert statuses == {
        "valid": "passed",
        "pinned-models": "skipped",
        "retired-models": "skipped",
        "rehearsal": "skipped",
        "eval": "skipped",
        "reason": "skipped",
        "approval": "skipped",
    }


# ---- pinned models -----------------------------------------------------------------------------------
def test_floating_model_is_refused_for_prod_in_standard(deploy: DeployProject) -> None:
    deploy.run("add", "model", "chat", "--set", "provider=openai", "--set", "id=gpt-4o")
    v1 = deploy.commit("v1 with a floating model")
    result = deploy.run("promote", v1, "--to", "prod", code=1)
    assert "refused by the pinned-models gate" in result.stderr and "gpt-4o" in result.stderr
    deploy.run("promote", v1, "--to", "staging")  # not a production alias
    report = deploy.json("policy", "check", v1, "--to", "prod", code=1)
    assert report["missing"] == ["pinned-models"]


def test_production_aliases_are_configurable(deploy: DeployProject) -> None:
    deploy.add_policy('production_aliases = ["prod", "prod-eu"]')
    deploy.run("add", "model", "chat", "--set", "provider=openai", "--set", "id=gpt-4o")
    v1 = deploy.commit("v1")
    assert "pinned-models gate" in deploy.run("promote", v1, "--to", "prod-eu", code=1).stderr


def test_a_retired_model_is_refused_for_prod(deploy: DeployProject) -> None:
    deploy.write("tether.toml", deploy.read("tether.toml").replace("gpt-4o-2024-08-06", "gpt-4-0613"))
    v1 = deploy.commit("v1 on gpt-4-0613")
    deploy.add_policy('retired_models = ["openai:gpt-4-0613"]')
    result = deploy.run("promote", v1, "--to", "prod", code=1)
    assert "refused by the retired-models gate" in result.stderr
    assert "openai:gpt-4-0613 (retired per policy.retired_models in tether.toml)" in result.stderr
    report = deploy.json("policy", "check", v1, "--to", "staging")  # not a production alias
    assert next(g for g in report["gates"] if g["gate"] == "retired-models")["status"] == "skipped"
    deploy.write("tether.toml", deploy.read("tether.toml").replace('id = "gpt-4-0613"', 'id = "gpt-4o-2024-08-06"', 1))
    v2 = deploy.commit("v2 on a model the provider serves")
    deploy.run("promote", v2, "--to", "prod")


# ---- rehearsal ---------------------------------------------------------------------------------------
def test_promote_without_a_rehearsed_path_back_is_refused(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    result = deploy.run("promote", v2, "--to", "prod", code=1)
    assert "refused by the rehearsal gate" in result.stderr
    assert f"tether rollback prod --rehearse --from {v2[:12]}" in result.stderr
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    moved = deploy.json("promote", v2, "--to", "prod")
    rehearsal = next(gate for gate in moved["gates"] if gate["gate"] == "rehearsal")
    assert rehearsal["status"] == "passed" and rehearsal["evidence"]["rehearsal"] >= 1


def test_a_rehearsal_of_another_path_or_a_failed_one_does_not_count(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    v3 = deploy.prompt_version("v3\n")
    deploy.run("promote", v1, "--to", "prod")
    deploy.run("rollback", "prod", "--rehearse", "--from", v3)  # v3 -> v1, not v2 -> v1
    assert "rehearsal gate" in deploy.run("promote", v2, "--to", "prod", code=1).stderr
    with Project.open(deploy.root) as project:
        lifecycle_repository(project.meta).add_rehearsal("prod", v2, v1, "x", _ago(0), False, {"steps": []})
    assert "rehearsal gate" in deploy.run("promote", v2, "--to", "prod", code=1).stderr


def test_a_failed_rehearsal_after_a_passing_one_refuses_the_promotion(deploy: DeployProject) -> None:
    """The newest rehearsal of a path is the one that counts: a failure recorded after a pass
    means the path back no longer works (a smoke check broke, an object was corrupted)."""
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)  # passes
    with Project.open(deploy.root) as project:
        lifecycle_repository(project.meta).add_rehearsal("prod", v2, v1, "x", _ago(0), False, {"steps": []})
    report = deploy.json("policy", "check", v2, "--to", "prod", code=1)
    rehearsal = next(gate for gate in report["gates"] if gate["gate"] == "rehearsal")
    assert rehearsal["status"] == "failed" and "failed" in rehearsal["detail"]
    assert "rehearsal gate" in deploy.run("promote", v2, "--to", "prod", code=1).stderr
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)  # rehearsed again, passing
    deploy.run("promote", v2, "--to", "prod")


def _ago(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_a_rehearsal_older_than_the_tier_limit_no_longer_counts(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    with Project.open(deploy.root) as project:
        lifecycle_repository(project.meta).add_rehearsal("prod", v2, v1, "x", _ago(31), True, {"steps": []})
    result = deploy.run("promote", v2, "--to", "prod", code=1)
    assert "31.0 days old (limit 30 days)" in result.stderr
    deploy.add_policy("rehearsal_max_age_days = 45")
    deploy.run("promote", v2, "--to", "prod")


# ---- eval gate ---------------------------------------------------------------------------------------
def _store_eval_run(
    root: Path, version_id: str, evalset: str, summary: dict, snapshot: str | None = None  # type: ignore[type-arg]
) -> str:
    """A run record as `eval run` stores it, over ``snapshot`` (default: the version's own eval set)."""
    from tether.meta.sql import EVAL_RUNS

    run_id = digest_bytes(canonical_bytes({"version": version_id, "summary": summary, "snapshot": snapshot}))
    with Project.open(root) as project, project.meta.transaction(write=True) as connection:  # type: ignore[attr-defined]
        own = project.manifest(version_id).components.get(evalset, "0" * 64)
        connection.execute(
            EVAL_RUNS.insert().values(
                run_id=run_id,
                version_id=version_id,
                evalset=evalset,
                evalset_snapshot=snapshot or own,
                created_at=_ago(0),
                environment=None,
                body="0" * 64,
                summary=canonical_bytes(summary),
            )
        )
    return run_id


def _eval_project(deploy: DeployProject, gate: str) -> tuple[str, str]:
    deploy.write("evals/cases.jsonl", '{"id": "a", "input": "hi", "expected": "hello"}\n')
    deploy.run("add", "evalset", "evals", "evals/cases.jsonl")
    deploy.add_policy("[policy.eval_gate]\n" + gate)
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    deploy.run("promote", v1, "--to", "prod")
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    return v1, v2


def test_eval_gate_refuses_a_regression_beyond_the_margin(deploy: DeployProject) -> None:
    v1, v2 = _eval_project(deploy, 'evalset = "evals"\nmargin = 0.05')
    missing = deploy.run("promote", v2, "--to", "prod", code=1).stderr
    assert "refused by the eval gate" in missing and f"tether eval run {v2[:12]} --evalset evals" in missing
    _store_eval_run(deploy.root, v1, "evals", {"mean_score": 0.90})
    _store_eval_run(deploy.root, v2, "evals", {"mean_score": 0.80})
    result = deploy.run("promote", v2, "--to", "prod", code=1)
    assert "regression beyond the margin" in result.stderr and "margin 0.05" in result.stderr
    _store_eval_run(deploy.root, v2, "evals", {"mean_score": 0.87, "rerun": True})  # newer run, within the margin
    moved = deploy.json("promote", v2, "--to", "prod")
    evidence = next(gate for gate in moved["gates"] if gate["gate"] == "eval")["evidence"]
    assert evidence["candidate"]["value"] == 0.87 and evidence["baseline"]["value"] == 0.90
    assert evidence["check"] == "mean_comparison"


def test_eval_gate_compares_only_runs_over_the_candidates_eval_set(deploy: DeployProject) -> None:
    """A candidate with another eval set is not compared with the current target's run over the old
    one: the gate asks for the current target's run on the candidate's eval set, and uses it."""
    v1, _ = _eval_project(deploy, 'evalset = "evals"\nmargin = 0.05')
    deploy.write("evals/cases.jsonl", '{"id": "b", "input": "hey", "expected": "hello"}\n')
    v3 = deploy.commit("v3: another eval set")
    deploy.run("rollback", "prod", "--rehearse", "--from", v3)
    with Project.open(deploy.root) as project:
        snapshot = project.manifest(v3).components["evals"]
    _store_eval_run(deploy.root, v1, "evals", {"mean_score": 0.60})
    _store_eval_run(deploy.root, v3, "evals", {"mean_score": 0.80})
    refused = deploy.run("promote", v3, "--to", "prod", code=1).stderr
    assert f"no eval run of the current target {v1[:12]} on the candidate's eval set 'evals' (snapshot {snapshot[:12]}), only on other eval sets" in refused
    assert refused.rstrip().endswith(f"; tether eval run {v1[:12]} --evalset-from {v3[:12]} --evalset evals")
    _store_eval_run(deploy.root, v1, "evals", {"mean_score": 0.95}, snapshot=snapshot)
    assert "mean_score 0.8 vs 0.95" in deploy.run("promote", v3, "--to", "prod", code=1).stderr
    report = deploy.json("policy", "check", v3, "--to", "prod", code=1)
    evidence = next(item for item in report["gates"] if item["gate"] == "eval")["evidence"]
    assert evidence["evalset_snapshot"] == snapshot and evidence["baseline"]["value"] == 0.95


def test_eval_gate_skips_a_current_target_without_the_eval_set(deploy: DeployProject) -> None:
    """The version that introduces the eval set: the target it replaces was never held to it, so
    the gate has nothing to compare against, as for a first target."""
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    deploy.write("evals/cases.jsonl", '{"id": "a", "input": "hi", "expected": "hello"}\n')
    deploy.run("add", "evalset", "evals", "evals/cases.jsonl")
    deploy.add_policy('[policy.eval_gate]\nevalset = "evals"')
    v2 = deploy.commit("v2 with evals")
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    moved = deploy.json("promote", v2, "--to", "prod")
    gate = next(item for item in moved["gates"] if item["gate"] == "eval")
    assert gate["status"] == "skipped"
    assert gate["detail"] == f"the current target {v1[:12]} of 'prod' has no evalset 'evals' to compare against"


def test_eval_gate_check_is_pluggable(deploy: DeployProject) -> None:
    deploy.write(
        "fake_gate_check.py",
        "from tether.lifecycle.gates import EvalVerdict\n"
        "CALLS = []\n"
        "def check(request):\n"
        "    CALLS.append(request)\n"
        "    return EvalVerdict(False, f'fake engine says no to {request.candidate[:6]} on {request.evalset}', {'p': 0.01})\n",
    )
    _v1, v2 = _eval_project(deploy, 'evalset = "evals"\ncheck = "fake_gate_check:check"')
    result = deploy.run("promote", v2, "--to", "prod", code=1)
    assert f"fake engine says no to {v2[:6]} on evals" in result.stderr
    report = deploy.json("policy", "check", v2, "--to", "prod", code=1)
    gate = next(item for item in report["gates"] if item["gate"] == "eval")
    assert gate["evidence"] == {"p": 0.01, "check": "fake_gate_check:check"}


def test_eval_gate_errors(deploy: DeployProject) -> None:
    _v1, v2 = _eval_project(deploy, 'evalset = "nope"\ncheck = "no_such_module_xyz:check"')
    assert "not an evalset component" in deploy.run("promote", v2, "--to", "prod", code=1).stderr


def test_eval_gate_unimportable_check_is_a_usage_error(deploy: DeployProject) -> None:
    _v1, v2 = _eval_project(deploy, 'evalset = "evals"\ncheck = "no_such_module_xyz:check"')
    result = deploy.run("promote", v2, "--to", "prod", code=2)
    assert "policy.eval_gate.check: cannot import 'no_such_module_xyz'" in result.stderr


def test_mean_comparison_and_metric_paths(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    _store_eval_run(deploy.root, v1, "evals", {"scores": {"mean": 0.5}})
    _store_eval_run(deploy.root, v2, "evals", {"scores": {"mean": 0.45}})
    with Project.open(deploy.root) as project:
        ok = mean_comparison(EvalGateRequest(project, v2, v1, "evals", "scores.mean", 0.05))
        bad = mean_comparison(EvalGateRequest(project, v2, v1, "evals", "scores.mean", 0.01))
        absent = mean_comparison(EvalGateRequest(project, v2, v1, "evals", "accuracy", 0.01))
    assert ok.passed and ok.evidence["delta"] == pytest.approx(-0.05)
    assert not bad.passed and "regression" in bad.detail
    assert not absent.passed and "no numeric metric 'accuracy'" in absent.detail
    assert metric_value({"a": {"b": True}}, "a.b") is None


# ---- reason and approval (regulated) ------------------------------------------------------------------
def test_regulated_requires_a_reason_on_every_move(make_deploy: Callable[[str], DeployProject], monkeypatch: pytest.MonkeyPatch) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")
    deploy.run("approve", v1, "--for", "prod")
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")
    assert "refused by the reason gate" in deploy.run("promote", v1, "--to", "prod", code=1).stderr
    deploy.run("promote", v1, "--to", "prod", "--reason", "launch")
    v2 = deploy.prompt_version("v2\n")
    v1_again = deploy.json("show", "prod")["version_id"]
    assert v1_again == v1
    monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")
    deploy.run("approve", v2, "--for", "prod")
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")
    deploy.rehearse_and_promote(v2, "prod", "--reason", "v2")
    assert "requires a reason" in deploy.run("rollback", "prod", code=1).stderr
    deploy.run("rollback", "prod", "--reason", "incident 12")


def test_regulated_requires_a_second_persons_approval(make_deploy: Callable[[str], DeployProject], monkeypatch: pytest.MonkeyPatch) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    result = deploy.run("promote", v1, "--to", "prod", "--reason", "launch", code=1)
    assert "refused by the approval gate" in result.stderr and f"tether approve {v1[:12]} --for prod" in result.stderr
    approved = deploy.run("approve", v1, "--for", "prod")  # the promoter approving their own promotion does not count
    assert "(it counts when someone else promotes)" in approved.stdout
    result = deploy.run("promote", v1, "--to", "prod", "--reason", "launch", code=1)
    assert "cannot approve their own promotion" in result.stderr
    monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")
    deploy.run("approve", v1, "--for", "staging")  # another alias does not count either
    assert "approval gate" in _promote_as_author(deploy, monkeypatch, v1, code=1).stderr
    approval = deploy.json("approve", v1, "--for", "prod", "--reason", "reviewed the diff")
    assert approval["approver"] == "Rita Reviewer <rita@example.com>"
    moved = json.loads(_promote_as_author(deploy, monkeypatch, v1, code=0, as_json=True).stdout)
    gate = next(item for item in moved["gates"] if item["gate"] == "approval")
    assert gate["status"] == "passed" and gate["evidence"]["approver"] == "Rita Reviewer <rita@example.com>"


@pytest.mark.parametrize("promoter", ["Tess <tess@example.com> ", "tess <TESS@example.com>", "Tess T. <Tess@Example.com>"])
def test_an_approval_by_the_promoter_under_another_spelling_does_not_count(
    make_deploy: Callable[[str], DeployProject], monkeypatch: pytest.MonkeyPatch, promoter: str
) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    monkeypatch.setenv("TETHER_AUTHOR", "Tess <tess@example.com>")
    deploy.run("approve", v1, "--for", "prod")
    monkeypatch.setenv("TETHER_AUTHOR", promoter)
    result = deploy.run("promote", v1, "--to", "prod", "--reason", "launch", code=1)
    assert "refused by the approval gate" in result.stderr and "cannot approve their own promotion" in result.stderr


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Tess <tess@example.com>", " tess  <TESS@example.com> ", True),
        ("Tess <tess@example.com>", "Tess Tester <tess@example.com>", True),  # one address, one person
        ("Tess <tess@a.example>", "Tess <tess@b.example>", False),  # two addresses: two people of one name
        ("Tess  Tester", "tess tester", True),  # no address: the name decides
        ("Tess <>", "TESS", True),
        ("Tess <tess@example.com>", "tess@host", False),
    ],
)
def test_identities_compare_by_address_else_by_name(a: str, b: str, same: bool) -> None:
    assert same_person(a, b) is same and same_person(b, a) is same


def _promote_as_author(deploy: DeployProject, monkeypatch: pytest.MonkeyPatch, ref: str, code: int, as_json: bool = False):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")
    try:
        return deploy.run("promote", ref, "--to", "prod", "--reason", "launch", *(["--json"] if as_json else []), code=code)
    finally:
        monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")


def test_policy_check_explains_what_is_missing(make_deploy: Callable[[str], DeployProject]) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    result = deploy.run("policy", "check", v1, code=1)
    assert "tier regulated" in result.stdout
    assert "ready: no (missing: reason, approval)" in result.stdout
    assert "fix: another person runs: tether approve" in result.stdout
    report = deploy.json("policy", "check", v1, "--reason", "launch", code=1)
    assert report["missing"] == ["approval"] and report["policy"]["rollback_window"] == 10
    assert deploy.run("history", "prod", code=2)  # policy check moved nothing


# ---- the tier of a move: never looser than the tether.toml the versions recorded --------------------------
def _approve(deploy: DeployProject, monkeypatch: pytest.MonkeyPatch, version_id: str) -> None:
    monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")
    deploy.run("approve", version_id, "--for", "prod")
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")


def _lower_tier(deploy: DeployProject, new: str = 'tier = "lite"') -> None:
    deploy.write("tether.toml", deploy.read("tether.toml").replace('tier = "regulated"', new))


@pytest.mark.parametrize(("edit", "working"), [('tier = "lite"', "lite"), ("", "standard")])  # "": the default tier
def test_an_uncommitted_tier_downgrade_does_not_loosen_a_move(
    make_deploy: Callable[[str], DeployProject], edit: str, working: str
) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    _lower_tier(deploy, edit)
    why = f"tier 'regulated' governs: the target {v1[:12]} recorded it, stricter than the working tether.toml's '{working}'"
    result = deploy.run("promote", v1, "--to", "prod", code=1)
    assert "refused by the reason gate" in result.stderr and result.stderr.strip().endswith(f"({why})")
    report = deploy.json("policy", "check", v1, "--to", "prod", "--reason", "launch", code=1)
    assert (report["tier"], report["missing"]) == ("regulated", ["approval"])
    assert report["governed_by"] == {"tier": "regulated", "version": v1, "why": why}
    assert why in deploy.run("policy", "check", v1, "--to", "prod", code=1).stdout


def test_a_damaged_recorded_tether_toml_falls_back_to_the_manifests_tier(make_deploy: Callable[[str], DeployProject]) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    _lower_tier(deploy)
    with Project.open(deploy.root) as project:
        corrupt_object(deploy.root, project.manifest(v1).project_file)  # type: ignore[arg-type]
    report = deploy.json("policy", "check", v1, "--to", "prod", code=1)
    assert report["tier"] == "regulated" and report["missing"] == ["reason", "approval"]


def test_a_committed_tier_downgrade_takes_one_move_under_the_old_rules(
    make_deploy: Callable[[str], DeployProject], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = make_deploy("regulated")
    deploy.add_policy("rollback_window = 4")
    v1 = deploy.commit("v1")
    _approve(deploy, monkeypatch, v1)
    deploy.run("promote", v1, "--to", "prod", "--reason", "launch")
    _lower_tier(deploy)
    deploy.write("tether.toml", deploy.read("tether.toml").replace("rollback_window = 4", "rollback_window = 2"))
    v2 = deploy.commit("v2: tier lite")
    why = f"tier 'regulated' governs: prod's current version {v1[:12]} recorded it, stricter than the working tether.toml's 'lite'"
    result = deploy.run("promote", v2, "--to", "prod", code=1)
    assert "refused by the rehearsal gate" in result.stderr and why in result.stderr
    report = deploy.json("policy", "check", v2, "--to", "prod", code=1)
    assert (report["tier"], report["policy"]["rollback_window"]) == ("regulated", 4)  # the recorded policy
    assert report["missing"] == ["rehearsal", "reason", "approval"]
    _approve(deploy, monkeypatch, v2)
    deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    promoted = deploy.run("promote", v2, "--to", "prod", "--reason", "lower the tier")
    assert why in promoted.stdout and why in deploy.run("history", "prod").stdout
    moved = deploy.history()["moves"][-1]
    assert moved["evidence"]["tier"] == "regulated"
    assert moved["evidence"]["governed_by"] == {"tier": "regulated", "version": v1, "why": why}
    v3 = deploy.prompt_version("v3\n")
    moved = deploy.json("promote", v3, "--to", "prod")  # lite from now on: no reason, approval or rehearsal
    assert moved["evidence"]["tier"] == "lite" and "governed_by" not in moved["evidence"]


def test_a_rollback_after_an_uncommitted_tier_downgrade_still_needs_a_reason(
    make_deploy: Callable[[str], DeployProject], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = make_deploy("regulated")
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("v2\n")
    for version_id in (v1, v2):
        _approve(deploy, monkeypatch, version_id)
    deploy.run("promote", v1, "--to", "prod", "--reason", "launch")
    deploy.rehearse_and_promote(v2, "prod", "--reason", "v2")
    _lower_tier(deploy)
    why = f"tier 'regulated' governs: prod's current version {v2[:12]} recorded it, stricter than the working tether.toml's 'lite'"
    result = deploy.run("rollback", "prod", code=1)
    assert "requires a reason" in result.stderr and why in result.stderr
    moved = deploy.json("rollback", "prod", "--reason", "incident 7")
    assert moved["evidence"]["tier"] == "regulated" and moved["evidence"]["governed_by"]["version"] == v2


# ---- the [policy] table ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"bogus": 1}, "policy.bogus: unknown key"),
        ({"rollback_window": 0}, "policy.rollback_window: expected a whole number"),
        ({"rollback_window": True}, "policy.rollback_window: expected a whole number"),
        ({"rehearsal_max_age_days": 0}, "policy.rehearsal_max_age_days: expected a number of days"),
        ({"refresh_seconds": -1}, "policy.refresh_seconds: expected a number of seconds"),
        ({"pinned_packages": "torch"}, "policy.pinned_packages: expected a list of package names"),
        ({"production_aliases": []}, "policy.production_aliases: expected a non-empty list of alias names"),
        ({"retired_models": ["gpt-4"]}, "policy.retired_models: 'gpt-4': expected 'provider:id'"),
        ({"smoke": "not a callable"}, "policy.smoke: expected 'module:function'"),
        ({"eval_gate": {"metric": "x"}}, "policy.eval_gate: missing 'evalset'"),
        ({"eval_gate": {"evalset": "e", "margin": -1}}, "policy.eval_gate.margin: expected a number >= 0"),
        ({"eval_gate": {"evalset": "e", "runner": "x:y"}}, "policy.eval_gate.runner: unknown key"),
    ],
)
def test_policy_table_is_strict(table: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("'", "'")):
        validate_section(table, Path("tether.toml"))


def test_a_bad_policy_table_is_exit_2_naming_the_key(deploy: DeployProject) -> None:
    deploy.add_policy("rollback_widow = 3")
    result = deploy.run("history", "prod", code=2)
    assert "tether.toml: policy.rollback_widow: unknown key" in result.stderr


def test_no_production_aliases_is_refused_not_a_crash_or_a_switched_off_gate(deploy: DeployProject) -> None:
    """An empty list would skip the pinned/retired-model gates everywhere and crash `policy check`."""
    deploy.add_policy("production_aliases = []")
    result = deploy.run("policy", "check", code=2)
    assert result.stderr.strip() == (
        "tether: error: tether.toml: policy.production_aliases: expected a non-empty list of alias names, got []"
    )
