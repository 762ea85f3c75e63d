"""The promotion gate backed by the statistical engine: a regression is refused, a peer is not."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import ProjectDir
from tests.repro.conftest import TOY_EVALS, run_json, toy_cases, write_cases

MEAN_GATE = '\n[policy.eval_gate]\nevalset = "evals"\n'
GATE = MEAN_GATE + 'margin = 0.1\ncheck = "tether.repro.gate:non_inferiority"\n'


def _candidate(project: ProjectDir, drop: float) -> str:
    project.write("config/model.yaml", f"drop: {drop:.3f}\n")  # a new version even when the value is equal
    return project.run("commit", "-m", f"drop {drop}").stdout.strip()


def _promote_with_gate(toy_project: Callable[..., ProjectDir], drop: float, code: int) -> dict:  # type: ignore[type-arg]
    project = toy_project(toy_cases(300, 0.9, 0.5), evals=TOY_EVALS + GATE)
    v1 = run_json(project, "show", "HEAD")["version_id"]
    project.run("promote", v1, "--to", "prod")
    project.run("eval", "run", v1, "--seed", "1", "--repeat", "3")
    candidate = _candidate(project, drop)
    project.run("eval", "run", candidate, "--seed", "2", "--repeat", "3")
    project.run("rollback", "prod", "--rehearse", "--from", candidate)
    return run_json(project, "promote", candidate, "--to", "prod", code=code)


# With 300 cases x 3 repeats the standard error of the difference is about 0.02, so a 25-point
# drop is refused and an equal model passes a 10-point margin, whatever the seeds.
def test_a_regression_beyond_the_margin_is_refused_by_the_statistical_gate(toy_project: Callable[..., ProjectDir]) -> None:
    refused = _promote_with_gate(toy_project, drop=0.25, code=1)
    text = str(refused)
    assert "cannot rule out a regression" in text


def test_an_equal_candidate_passes_the_statistical_gate(toy_project: Callable[..., ProjectDir]) -> None:
    moved = _promote_with_gate(toy_project, drop=0.0, code=0)
    assert "non-inferiority" in str(moved)


def _gate_evidence(moved: dict) -> dict:  # type: ignore[type-arg]
    return next(gate for gate in moved["gates"] if gate["gate"] == "eval")["evidence"]  # type: ignore[no-any-return]


def test_a_candidate_that_drops_its_failing_cases_is_judged_against_the_target_on_its_cases(
    toy_project: Callable[..., ProjectDir],
) -> None:
    """The default gate compares means only over the same eval set: the current target's run on the
    old cases says nothing about the candidate's cases, so the gate asks for the target's run on them."""
    old_cases = toy_cases(2, 1.0, 0.0, share_easy=0.5)  # one case every version fails
    project = toy_project(old_cases, evals=TOY_EVALS + MEAN_GATE)
    v1 = run_json(project, "show", "HEAD")["version_id"]
    project.run("promote", v1, "--to", "prod")
    assert run_json(project, "eval", "run", v1)["summary"]["mean_score"] == 0.5
    project.write("config/model.yaml", "drop: 1.0\n")  # answers every old case wrong
    write_cases(project, [old_cases[0], {"id": "easy", "input": "q", "expected": "A", "p": 2.0}])  # and passes this one
    v2 = project.run("commit", "-m", "v2: worse, with an easier eval set").stdout.strip()
    assert run_json(project, "eval", "run", v2)["summary"]["mean_score"] == 0.5  # 0.5 vs 0.5 over other cases
    project.run("rollback", "prod", "--rehearse", "--from", v2)

    refused = project.run("promote", v2, "--to", "prod", code=1).stderr
    assert len(refused.strip().splitlines()) == 1
    assert f"no eval run of the current target {v1[:12]} on the candidate's eval set 'evals'" in refused
    assert f"tether eval run {v1[:12]} --evalset-from {v2[:12]} --evalset evals" in refused
    project.run("eval", "run", v1, "--evalset-from", v2[:12], "--evalset", "evals")
    result = project.run("promote", v2, "--to", "prod", code=1).stderr
    assert "regression beyond the margin: mean_score 0.5 vs 1" in result


def test_the_statistical_gate_compares_on_the_candidates_changed_eval_set(toy_project: Callable[..., ProjectDir]) -> None:
    """A changed eval set no longer blocks the statistical gate for good: the current target is
    evaluated on the candidate's cases, and the two runs over the same cases are compared."""
    project = toy_project(toy_cases(300, 0.9, 0.5), evals=TOY_EVALS + GATE)
    v1 = run_json(project, "show", "HEAD")["version_id"]
    project.run("promote", v1, "--to", "prod")
    project.run("eval", "run", v1, "--seed", "1", "--repeat", "3")
    write_cases(project, toy_cases(300, 0.9, 0.5)[:240])
    v2 = _candidate(project, 0.0)
    project.run("eval", "run", v2, "--seed", "2", "--repeat", "3")
    project.run("rollback", "prod", "--rehearse", "--from", v2)
    refused = project.run("promote", v2, "--to", "prod", code=1).stderr
    assert "cannot be compared" not in refused
    assert f"tether eval run {v1[:12]} --evalset-from {v2[:12]} --evalset evals" in refused
    baseline = run_json(project, "eval", "run", v1, "--evalset-from", v2, "--seed", "3", "--repeat", "3")
    evidence = _gate_evidence(run_json(project, "promote", v2, "--to", "prod"))
    assert evidence["baseline_run"] == baseline["run_id"] and evidence["cases"] == 240


def test_the_statistical_gate_accepts_a_zero_margin(toy_project: Callable[..., ProjectDir]) -> None:
    """The policy allows ``margin = 0`` (no regression at all): the gate then asks for a lower bound
    above 0, so a clearly better candidate passes and an equal one is refused as unproven, instead of
    both being refused as "cannot be compared"."""
    project = toy_project(toy_cases(200, 0.5, 0.3), evals=TOY_EVALS + MEAN_GATE + 'margin = 0\ncheck = "tether.repro.gate:non_inferiority"\n')
    v1 = run_json(project, "show", "HEAD")["version_id"]
    project.run("promote", v1, "--to", "prod")
    project.run("eval", "run", v1, "--seed", "1")
    candidate = _candidate(project, -0.4)  # answers 40 points more cases right
    project.run("eval", "run", candidate, "--seed", "2")
    project.run("rollback", "prod", "--rehearse", "--from", candidate)
    moved = run_json(project, "promote", candidate, "--to", "prod", code=0)
    assert _gate_evidence(moved)["margin"] == 0
