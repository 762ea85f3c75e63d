"""The promotion gate backed by the statistical engine: a regression is refused, a peer is not."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import ProjectDir
from tests.repro.conftest import TOY_EVALS, run_json, toy_cases

GATE = '\n[policy.eval_gate]\nevalset = "evals"\nmargin = 0.1\ncheck = "tether.repro.gate:non_inferiority"\n'


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
