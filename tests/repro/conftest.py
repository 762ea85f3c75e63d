"""Toy projects for the reproducibility tests: a seeded stochastic model and its eval set."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ProjectDir

TOY_EVALS = '\n[evals]\nrunner = "tests.repro.toy_runner:run"\nscorer = "contains"\n'


def toy_cases(n: int, p_easy: float, p_hard: float, share_easy: float = 0.75) -> list[dict[str, Any]]:
    """``n`` cases: the first ``share_easy`` answered right with chance ``p_easy``, the rest ``p_hard``."""
    easy = round(n * share_easy)
    return [
        {"id": f"c{i:04d}", "input": f"question {i}", "expected": f"A{i}", "p": p_easy if i < easy else p_hard}
        for i in range(n)
    ]


def write_cases(project: ProjectDir, cases: list[dict[str, Any]], rel: str = "evals/cases.jsonl") -> None:
    project.write(rel, "".join(json.dumps(case) + "\n" for case in cases))


@pytest.fixture
def toy_project(project_dir: ProjectDir) -> Callable[..., ProjectDir]:
    """A committed toy project (``config/model.yaml`` with the accuracy ``drop``, the eval set, ``[evals]``)."""

    def make(cases: list[dict[str, Any]], drop: float = 0.0, evals: str = TOY_EVALS) -> ProjectDir:
        write_cases(project_dir, cases)
        project_dir.write("config/model.yaml", f"drop: {drop}\n")
        project_dir.run("init", "--name", "toy")
        project_dir.run("add", "config", "model", "config/model.yaml")
        project_dir.run("add", "evalset", "evals", "evals/cases.jsonl")
        if evals:
            with open(project_dir.root / "tether.toml", "a", encoding="utf-8") as handle:
                handle.write(evals)
        project_dir.run("commit", "-m", "v1")
        return project_dir

    return make


def run_json(project: ProjectDir, *args: str, code: int = 0) -> dict[str, Any]:
    result = project.run(*args, "--json", code=code)
    return dict(json.loads(result.stdout))
