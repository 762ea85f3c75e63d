"""Every mistake a user can make with eval runs: one line naming it, exit 2 (nothing stored)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tests.repro.conftest import TOY_EVALS, run_json, toy_cases, write_cases
from tether.errors import UsageError
from tether.repro.cases import load_cases


def _runs(project: ProjectDir) -> list[dict[str, object]]:
    return list(json.loads(project.run("eval", "list", "--json").stdout))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1, "expected": "x"', "line 2: truncated JSON (expecting ',' delimiter at column 26, past the end of the line)"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"id": 0, "expected": "again"}', "line 2: duplicate case '0' (first on line 1)"),
        ('{"id": true}', "line 2: 'id' must be a string or an integer"),
        ('{"id": 2, "x": NaN}', "line 2: invalid JSON"),
    ],
)
def test_malformed_eval_set_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"id": 0, "expected": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="^evals/cases.jsonl: " + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_cases(path, "evals/cases.jsonl")


def test_empty_eval_set_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UsageError, match="has no cases"):
        load_cases(path, "cases.jsonl")


def test_case_the_scorer_cannot_judge_names_its_line(toy_project: Callable[..., ProjectDir]) -> None:
    cases = toy_cases(4, 1.0, 1.0)
    del cases[2]["expected"]
    project = toy_project(cases)
    result = project.run("eval", "run", "HEAD", code=2)
    assert result.stderr.strip() == (
        "tether: error: evals/cases.jsonl: line 3: missing field 'expected' (the contains scorer looks for it in the output)"
    )
    assert _runs(project) == []


@pytest.mark.parametrize(
    ("runner", "message"),
    [
        ("no_such_module_xyz:run", "--runner: cannot import 'no_such_module_xyz:run': no module named 'no_such_module_xyz'"),
        ("tests.repro.toy_runner:missing", "--runner: module 'tests.repro.toy_runner' has no attribute 'missing'"),
        ("tests.repro.toy_runner:PHRASES", "--runner: 'tests.repro.toy_runner:PHRASES' is a tuple, not a function"),
        ("just-a-name", "--runner: expected 'package.module:function', got 'just-a-name'"),
    ],
)
def test_runner_that_cannot_be_imported(toy_project: Callable[..., ProjectDir], runner: str, message: str) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    result = project.run("eval", "run", "HEAD", "--runner", runner, code=2)
    assert result.stderr.strip() == f"tether: error: {message}"
    assert _runs(project) == []


def test_runner_module_that_fails_on_import(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    project.write("broken_runner_for_test.py", "raise RuntimeError('needs an API key')\n")
    result = project.run("eval", "run", "HEAD", "--runner", "broken_runner_for_test:run", code=2)
    assert "importing 'broken_runner_for_test' failed: RuntimeError: needs an API key" in result.stderr


def test_no_runner_configured(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0), evals="")
    result = project.run("eval", "run", "HEAD", code=2)
    assert 'no runner: set [evals] runner = "module:function"' in result.stderr


def test_baseline_from_another_eval_set_is_refused(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(5, 1.0, 1.0))
    old = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    write_cases(project, toy_cases(6, 1.0, 1.0))
    project.run("commit", "-m", "v2: one more case")
    result = project.run("repro", "check", "HEAD", "--baseline", old["run_id"][:8], code=2)
    assert "the run is over another eval set" in result.stderr and "refusing to compare" in result.stderr
    new = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    result = project.run("eval", "compare", old["run_id"], new["run_id"], code=2)
    assert "refusing to compare runs of different eval sets" in result.stderr
    assert len(_runs(project)) == 2  # the refused check ran nothing


def test_runs_scored_differently_are_refused(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(5, 1.0, 1.0))
    first = run_json(project, "eval", "run", "HEAD")
    project.write("tether.toml", project.read("tether.toml").replace('scorer = "contains"', 'scorer = "exact"'))
    second = run_json(project, "eval", "run", "HEAD")
    result = project.run("eval", "compare", first["run_id"], second["run_id"], code=2)
    assert "were scored differently" in result.stderr


def test_repro_check_without_a_baseline(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    result = project.run("repro", "check", "HEAD", code=2)
    assert "no eval run of HEAD on eval set 'evals' to reproduce" in result.stderr


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("abc", "a run ID prefix needs at least 6 hex characters"),
        ("zzzzzzzz", "expected a run ID or a prefix of it"),
        ("0123456789", "no such eval run"),
    ],
)
def test_unknown_run_references(toy_project: Callable[..., ProjectDir], ref: str, message: str) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    run = run_json(project, "eval", "run", "HEAD")
    result = project.run("eval", "compare", ref, run["run_id"], code=2)
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "run", "HEAD", "--repeat", "0"), "--repeat 0: expected at least 1"),
        (("eval", "run", "HEAD", "--seed", "-1"), "--seed -1: expected a whole number of at least 0"),
        (("eval", "run", "HEAD", "--parallel", "0"), "--parallel 0: expected at least 1"),
        (("eval", "run", "HEAD", "--evalset", "model"), "component 'model' of version"),
        (("eval", "run", "HEAD", "--evalset", "nope"), "--evalset nope: version"),
        (("eval", "run", "nosuchbranch"), "reference 'nosuchbranch'"),
        (("repro", "check", "HEAD", "--plot", "out.jpg"), "--plot out.jpg: expected a file ending in .png"),
        (("repro", "check", "HEAD", "--margin", "0"), "--margin 0.0: expected a number between 0 and 1"),
    ],
)
def test_bad_arguments(toy_project: Callable[..., ProjectDir], args: tuple[str, ...], message: str) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    result = project.run(*args, code=2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_several_eval_sets_need_a_choice(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    write_cases(project, toy_cases(2, 1.0, 1.0), "evals/more.jsonl")
    project.run("add", "evalset", "more", "evals/more.jsonl")
    project.run("commit", "-m", "two eval sets")
    result = project.run("eval", "run", "HEAD", code=2)
    assert "has several eval sets (evals, more): choose one with --evalset" in result.stderr
    data = run_json(project, "eval", "run", "HEAD", "--evalset", "more")
    assert data["evalset"] == "more" and data["summary"]["cases"] == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("runnr = 'a:b'", "tether.toml: evals.runnr: unknown key"),
        ("runner = 'nocolon'", "tether.toml: evals.runner: expected 'package.module:function'"),
        ("scorer = 'fuzzy'", "tether.toml: evals.scorer: expected one of exact, contains, numeric, json_schema"),
        ("margin = 1.5", "tether.toml: evals.margin: expected a number between 0 and 1"),
        ("repeat = 0", "tether.toml: evals.repeat: expected a whole number of at least 1"),
        ("parallel = true", "tether.toml: evals.parallel: expected a whole number of at least 1"),
        ("tolerance = -1", "tether.toml: evals.tolerance: expected a number of at least 0"),
        ("ignore_case = 'yes'", "tether.toml: evals.ignore_case: expected true or false"),
        ("evalset = ''", "tether.toml: evals.evalset: expected a non-empty string"),
        ("seed = -3", "tether.toml: evals.seed: expected a whole number of at least 0"),
    ],
)
def test_evals_table_is_strict(project_dir: ProjectDir, table: str, message: str) -> None:
    project_dir.run("init", "--name", "strict")
    project_dir.write("tether.toml", project_dir.read("tether.toml") + f"\n[evals]\n{table}\n")
    result = project_dir.run("status", code=2)
    assert message in result.stderr


def test_json_errors_keep_stdout_machine_readable(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    result = project.run("eval", "run", "HEAD", "--runner", "nope_module_q:run", "--json", code=2)
    assert json.loads(result.stdout)["exit_code"] == 2


def test_evals_toml_defaults_apply(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(4, 1.0, 1.0), evals=TOY_EVALS + "repeat = 3\nseed = 99\nparallel = 2\nmargin = 0.05\n")
    data = run_json(project, "eval", "run", "HEAD")
    assert (data["summary"]["repeat"], data["summary"]["seed"], data["summary"]["parallel"]) == (3, 99, 2)
