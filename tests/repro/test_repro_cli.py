"""``tether eval run|compare|list`` and ``tether repro check`` end to end on the seeded toy model."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import ProjectDir
from tests.repro.conftest import TOY_EVALS, run_json, toy_cases, write_cases


def test_same_model_other_seed_reproduces_behaviorally_not_bitwise(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(300, 0.99, 0.02))
    baseline = run_json(project, "eval", "run", "HEAD", "--repeat", "3", "--seed", "1")
    assert baseline["summary"]["cases"] == 300 and baseline["summary"]["calls"] == 900
    assert baseline["summary"]["parallel"] == 4  # the toy runner allows 4 threads

    result = project.run("repro", "check", "HEAD", "--seed", "2", code=0)
    assert "behavioral         REPRODUCED" in result.stdout
    report = run_json(project, "repro", "check", "HEAD", "--baseline", baseline["run_id"][:8], "--seed", "3")
    assert report["verdict"] == "REPRODUCED"
    assert report["baseline"] == baseline["run_id"]
    assert report["bitwise"]["share"] < 0.05  # phrasing is sampled: outputs rarely match byte for byte
    assert report["fixed_environment"]["status"] == "NOT APPLICABLE"
    assert report["fixed_environment"]["same_fingerprint"] is True
    behavioral = report["behavioral"]
    assert behavioral["sample_size"]["guard_met"] is True
    assert behavioral["ci95"]["low"] < 0 < behavioral["ci95"]["high"]
    assert report["environment_differences"][0]["cause"] == "seeds"


def test_same_seed_same_environment_is_bitwise_and_fixed_environment_reproduced(
    toy_project: Callable[..., ProjectDir],
) -> None:
    project = toy_project(toy_cases(300, 0.99, 0.02))
    project.run("eval", "run", "HEAD", "--repeat", "2", "--seed", "5")
    report = run_json(project, "repro", "check", "HEAD")  # defaults: the baseline's seed and repeats
    assert report["bitwise"]["share"] == 1.0
    assert report["fixed_environment"]["status"] == "REPRODUCED"
    assert report["verdict"] == "REPRODUCED"
    assert report["environment_differences"] == []


def test_ten_point_drop_on_300_cases_is_not_reproduced(toy_project: Callable[..., ProjectDir], tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = toy_project(toy_cases(300, 0.95, 0.15))
    first = run_json(project, "eval", "run", "HEAD", "--seed", "11")
    project.write("config/model.yaml", "drop: 0.1\n")
    project.run("commit", "-m", "v2: worse model")
    second = run_json(project, "eval", "run", "HEAD", "--seed", "12")
    plot = tmp_path / "compare.png"
    result = project.run("eval", "compare", first["run_id"][:10], second["run_id"][:10], "--plot", str(plot), code=1)
    assert "behavioral         NOT REPRODUCED" in result.stdout
    assert "McNemar exact p" in result.stdout
    assert "the runs are of different versions" in result.stdout
    assert "fixed-environment  NOT APPLICABLE: the runs are of different versions" in result.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")
    report = run_json(project, "eval", "compare", first["run_id"], second["run_id"], code=1)
    behavioral = report["behavioral"]
    assert behavioral["verdict"] == "NOT REPRODUCED"
    assert -0.16 < behavioral["difference"] < -0.04
    assert behavioral["ci95"]["high"] < 0
    assert behavioral["paired_test"]["decisive"] == "mcnemar" and behavioral["paired_test"]["mcnemar"]["p"] < 0.001


def test_ten_cases_with_a_two_point_drop_is_inconclusive_with_cases_needed(
    toy_project: Callable[..., ProjectDir],
) -> None:
    project = toy_project(toy_cases(10, 0.95, 0.15))
    first = run_json(project, "eval", "run", "HEAD", "--seed", "21", "--repeat", "2")
    project.write("config/model.yaml", "drop: 0.02\n")
    project.run("commit", "-m", "v2: slightly worse")
    second = run_json(project, "eval", "run", "HEAD", "--seed", "22", "--repeat", "2")
    result = project.run("eval", "compare", first["run_id"], second["run_id"], code=1)
    assert "behavioral         INCONCLUSIVE" in result.stdout
    report = run_json(project, "eval", "compare", first["run_id"], second["run_id"], code=1)
    size = report["behavioral"]["sample_size"]
    assert report["verdict"] == "INCONCLUSIVE"
    assert size["guard_met"] is False and size["cases_needed"] > 100
    assert f"needs about {size['cases_needed']} cases" in report["behavioral"]["reason"]


def test_identical_outputs_on_few_cases_never_claim_reproduced(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(20, 1.0, 1.0))
    project.run("eval", "run", "HEAD", "--seed", "1")
    report = run_json(project, "repro", "check", "HEAD", code=1)
    assert report["bitwise"]["share"] == 1.0 and report["fixed_environment"]["status"] == "REPRODUCED"
    # 20 agreeing cases cannot rule out that 14% of cases differ: no zero-width interval
    assert report["behavioral"]["equivalence"]["p"] == pytest.approx(0.98**20)
    assert report["behavioral"]["equivalence"]["interval"]["low"] < -0.1
    assert report["verdict"] == "INCONCLUSIVE"
    assert report["behavioral"]["sample_size"]["cases_needed"] > 20


def test_eval_run_stores_outputs_scores_seeds_and_environment(toy_project: Callable[..., ProjectDir]) -> None:
    from tether.project.core import Project
    from tether.repro.runs import load_run

    project = toy_project(toy_cases(8, 0.9, 0.1))
    data = run_json(project, "eval", "run", "HEAD", "--repeat", "2", "--seed", "7", "--parallel", "1")
    summary = data["summary"]
    assert summary["seed"] == 7 and summary["seed_passed"] is True and summary["parallel"] == 1
    assert summary["runner"] == "tests.repro.toy_runner:run" and summary["scorer"] == "contains"
    with Project.open(project.root) as opened:
        run = load_run(opened, data["run_id"][:6])
        case = run.cases[0]
        assert case["key"] == "c0000" and case["line"] == 1
        first = case["results"][0]
        assert first["output"]["type"] == "text" and len(first["output"]["digest"]) == 64
        assert isinstance(first["output"]["content"], str) and first["seconds"] >= 0
        assert first["seed"] != case["results"][1]["seed"]
        env = run.environment
        assert env is not None and env["seeds"]["run"] == 7
        assert env["accelerator"]["frameworks"]["torch"] == {"present": False}
        assert "python" in env and "packages" in env
    listed = json.loads(project.run("eval", "list", "HEAD", "--json").stdout)
    assert [item["run_id"] for item in listed] == [data["run_id"]]
    assert data["run_id"][:12] in project.run("eval", "list").stdout


def test_runner_errors_are_recorded_counted_and_scored_zero(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(20, 1.0, 1.0))
    result = project.run("eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:flaky", "--repeat", "2")
    assert "4 of 40 calls failed (2 cases)" in result.stderr
    assert "RuntimeError: backend timeout on c0007" in result.stderr
    data = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:flaky")
    assert data["summary"]["errors"] == 2 and data["summary"]["errors_by_stage"] == {"runner": 2}
    assert data["summary"]["cases"] == 20
    assert abs(data["summary"]["mean_score"] - 18 / 20) < 1e-9


def test_output_that_is_not_text_or_json_is_an_error_per_call(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    data = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:not_text")
    assert data["summary"]["errors_by_stage"] == {"output": 3}


def test_unseeded_runner_is_recorded_as_not_taking_a_seed(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(5, 1.0, 1.0))
    result = project.run("eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:unseeded")
    assert "(not taken by the runner)" in result.stdout
    data = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:unseeded")
    assert data["summary"]["seed_passed"] is False


def test_callable_scorer_and_out_of_range_scores(toy_project: Callable[..., ProjectDir]) -> None:
    evals = TOY_EVALS.replace('scorer = "contains"', 'scorer = "tests.repro.toy_runner:score_length"')
    project = toy_project(toy_cases(4, 1.0, 1.0), evals=evals)
    data = run_json(project, "eval", "run", "HEAD")
    assert data["summary"]["scorer"] == "tests.repro.toy_runner:score_length" and data["summary"]["errors"] == 0
    text = project.read("tether.toml").replace("score_length", "score_out_of_range")
    project.write("tether.toml", text)
    data = run_json(project, "eval", "run", "HEAD")
    assert data["summary"]["errors_by_stage"] == {"scorer": 4}


def test_runner_next_to_tether_toml_is_importable(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0), evals="")
    project.write("app_runner_for_path_test.py", "def answer(version, case):\n    return case['expected']\n")
    project.write("tether.toml", project.read("tether.toml") + '\n[evals]\nrunner = "app_runner_for_path_test:answer"\n')
    data = run_json(project, "eval", "run", "HEAD")
    assert data["summary"]["mean_score"] == 1.0  # the default scorer is exact


def test_gc_keeps_and_fsck_verifies_eval_run_bodies(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(5, 1.0, 1.0))
    data = run_json(project, "eval", "run", "HEAD")
    gc = run_json(project, "gc", "--now")
    assert data["body"] not in gc["removed"]
    project.run("fsck")
    body = project.root / ".tether" / "objects"
    paths = [path for path in body.rglob("*") if path.is_file() and data["body"] in str(path).replace("/", "")]
    assert paths, "the eval run body is an object of the store"
    paths[0].chmod(0o644)
    paths[0].write_bytes(b"tampered")
    result = project.run("fsck", code=1)
    assert f"eval run {data['run_id'][:12]} body" in result.stderr
    result = project.run("eval", "compare", data["run_id"], data["run_id"], code=1)
    assert "corrupted" in result.stderr


def test_runner_sees_the_version_through_a_read_only_view(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(2, 1.0, 1.0))
    project.write("prompts/system.md", "Be brief.\n")
    project.run("add", "prompt", "system", "prompts/system.md")
    project.run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o-2024-08-06")
    version_id = project.run("commit", "-m", "v2").stdout.strip()
    project.write("prompts/system.md", "Uncommitted edit.\n")  # the runner sees the version, not the working tree
    data = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:describe")
    from tether.project.core import Project
    from tether.repro.runs import load_run

    with Project.open(project.root) as opened:
        output = load_run(opened, data["run_id"]).cases[0]["results"][0]["output"]
    assert output["type"] == "json"
    assert output["content"] == {
        "version_id": version_id,
        "components": {"evals": "evalset", "llm": "model", "model": "config", "system": "prompt"},
        "prompt": "Be brief.\n",
        "config": {"drop": 0.0},
        "model": "gpt-4o-2024-08-06",
        "provider": "openai",
        "evalset_file": "cases.jsonl",
        "outside_project": True,
    }
    data = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:asks_for_missing")
    with Project.open(project.root) as opened:
        error = load_run(opened, data["run_id"]).errors()[0]
    assert error["type"] == "VersionAccessError" and "has no component 'nonexistent'" in error["message"]


def test_eval_show_prints_cases_environment_and_errors(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(12, 1.0, 1.0))
    run = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:flaky", "--seed", "4")
    out = project.run("eval", "show", run["run_id"][:8], "--cases", "8").stdout
    assert out.splitlines()[0] == f"eval run {run['run_id']}"
    import platform

    assert f"Python {platform.python_version()} on" in out and "  accelerator " in out
    assert "c0007" in out and "runner raised RuntimeError: backend timeout on c0007" in out
    assert "c0000" in out and "scores [1.0]" in out
    assert "... and 4 more cases" in out
    data = run_json(project, "eval", "show", run["run_id"])
    assert len(data["cases"]) == 12 and data["environment_capture"]["seeds"]["run"] == 4


def test_plot_without_matplotlib_prints_the_report_then_fails_in_one_line(
    toy_project: Callable[..., ProjectDir], tmp_path, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    import sys

    project = toy_project(toy_cases(20, 0.99, 0.02))
    first = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    second = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    plot = tmp_path / "compare.png"
    result = project.run("eval", "compare", first["run_id"], second["run_id"], "--plot", str(plot), code=2)
    assert "behavioral" in result.stdout  # the report is not lost
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("tether: error: --plot: matplotlib is not available (")
    assert "Traceback" not in result.stderr
    assert not plot.exists()
    report = run_json(project, "eval", "compare", first["run_id"], second["run_id"], "--plot", str(plot), code=2)
    assert report["verdict"] and report["plot"] is None and report["exit_code"] == 2
    assert report["error"].startswith("--plot: matplotlib is not available")


def test_runner_view_is_read_only_and_verified_after_the_run(
    toy_project: Callable[..., ProjectDir], tmp_path, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    project = toy_project(toy_cases(3, 0.99, 0.02))
    run = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:view_modes", "--seed", "1")
    shown = run_json(project, "eval", "show", run["run_id"])
    outputs = {result["output"]["content"] for case in shown["cases"] for result in case["results"]}
    assert outputs == {"555 444"}  # folders 0555, files 0444
    assert list(scratch.iterdir()) == []  # the read-only view was removed afterwards

    result = project.run("eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:tamper", "--seed", "1", code=1)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "config/model.yaml" in errors[0] and "runner changed" in errors[0]
    assert list(scratch.iterdir()) == []
    assert (project.root / "config/model.yaml").read_text(encoding="utf-8") == "drop: 0.0\n"


def test_runs_that_both_take_no_seed_list_no_seed_difference(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(5, 1.0, 1.0))
    first = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:unseeded", "--seed", "3")
    second = run_json(project, "eval", "run", "HEAD", "--runner", "tests.repro.toy_runner:unseeded", "--seed", "3")
    shown = project.run("eval", "compare", first["run_id"], second["run_id"], code=None).stdout
    assert "[seeds]" not in shown, shown  # nothing differs between the two runs
    assert "environment and seeds: identical" in shown
    assert "note: the runner does not take a seed: its randomness is not controlled by tether" in shown
    report = run_json(project, "eval", "compare", first["run_id"], second["run_id"], code=None)
    assert not [item for item in report["environment_differences"] if item["cause"] == "seeds"]
    assert "the runner does not take a seed: its randomness is not controlled by tether" in report["notes"]


def test_one_case_is_counted_in_the_singular(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(1, 1.0, 1.0))
    first = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    second = run_json(project, "eval", "run", "HEAD", "--seed", "1")
    shown = project.run("eval", "show", first["run_id"]).stdout
    shown += project.run("eval", "compare", first["run_id"], second["run_id"], code=None).stdout
    shown += project.run("show", "HEAD").stdout
    assert "1 cases" not in shown, shown
    assert "1 case" in shown


def test_an_edited_runner_is_named_as_the_first_suspect(toy_project: Callable[..., ProjectDir]) -> None:
    """A result that changed because the runner's code changed is not "nondeterminism"."""
    import sys

    project = toy_project(toy_cases(40, 0.9, 0.0))
    runner = "def run(version, case, seed):\n    return case['expected']\n"
    project.write("edited_runner.py", runner)
    try:
        first = run_json(project, "eval", "run", "HEAD", "--runner", "edited_runner:run", "--seed", "3")
        assert first["summary"]["runner_code"]
        project.write("edited_runner.py", runner.replace("return case['expected']", "return case['expected'] + '!'"))
        sys.modules.pop("edited_runner", None)  # a new process would import the edited file
        report = run_json(project, "repro", "check", "HEAD", "--baseline", first["run_id"], code=1)
    finally:
        sys.modules.pop("edited_runner", None)
    assert report["environment_differences"][0]["cause"] == "runner code"
    assert "its source file changed" in report["environment_differences"][0]["line"]
    assert report["fixed_environment"]["reason"] == "the runner's source file changed between the runs"


def test_eval_run_on_another_versions_eval_set(toy_project: Callable[..., ProjectDir]) -> None:
    """The incumbent evaluated on a candidate's new eval set: a run of the old version on the new
    cases that says so, pairs with the candidate's run, and `repro check` re-runs on the same cases."""
    project = toy_project(toy_cases(6, 1.0, 1.0))
    v1 = run_json(project, "show", "HEAD")["version_id"]
    own_v1 = run_json(project, "eval", "run", v1, "--seed", "1")
    write_cases(project, toy_cases(4, 1.0, 1.0))
    v2 = project.run("commit", "-m", "v2: fewer cases").stdout.strip()
    candidate = run_json(project, "eval", "run", v2, "--seed", "1")

    incumbent = run_json(project, "eval", "run", v1, "--evalset-from", v2[:10], "--evalset", "evals", "--seed", "1")
    assert incumbent["version_id"] == v1 and incumbent["summary"]["cases"] == 4
    assert incumbent["evalset_snapshot"] == candidate["evalset_snapshot"] != own_v1["evalset_snapshot"]
    assert incumbent["summary"]["evalset_from"] == v2
    assert "evalset_from" not in own_v1["summary"]  # a run on the version's own eval set, as before
    shown = project.run("eval", "show", incumbent["run_id"]).stdout
    assert f"eval set 'evals' {candidate['evalset_snapshot'][:12]} from version {v2[:12]}" in shown
    listed = project.run("eval", "list", v1).stdout.splitlines()
    assert f"evals {own_v1['evalset_snapshot'][:12]}" in listed[0]
    assert f"evals {candidate['evalset_snapshot'][:12]} from {v2[:12]}" in listed[1]

    report = run_json(project, "eval", "compare", incumbent["run_id"], candidate["run_id"], code=None)
    assert report["evalset_snapshot"] == candidate["evalset_snapshot"] and report["run_a"]["evalset_from"] == v2
    assert f"of version {v1[:12]} (on the eval set of version {v2[:12]})" in project.run(
        "eval", "compare", incumbent["run_id"], candidate["run_id"], code=None).stdout
    project.run("eval", "compare", own_v1["run_id"], candidate["run_id"], code=2)  # different eval sets

    again = run_json(project, "repro", "check", v1, "--baseline", incumbent["run_id"], code=None)  # 4 cases: inconclusive
    assert again["baseline"] == incumbent["run_id"] and again["bitwise"]["share"] == 1.0
    rerun = run_json(project, "eval", "show", again["run"])
    assert rerun["evalset_snapshot"] == candidate["evalset_snapshot"] and rerun["summary"]["evalset_from"] == v2
    default = run_json(project, "repro", "check", v1, code=None)  # the latest run on v1's own eval set
    assert default["baseline"] == own_v1["run_id"]


def test_eval_run_evalset_from_bad_references(toy_project: Callable[..., ProjectDir]) -> None:
    project = toy_project(toy_cases(3, 1.0, 1.0))
    assert "nope" in project.run("eval", "run", "HEAD", "--evalset-from", "nope", code=2).stderr
    result = project.run("eval", "run", "HEAD", "--evalset-from", "HEAD", "--evalset", "model", code=2)
    assert "--evalset model: component 'model'" in result.stderr and "not an evalset" in result.stderr
