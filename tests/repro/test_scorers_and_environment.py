"""Built-in scorers, the runner's view of a version, and environment differences ranked by cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.errors import UsageError
from tether.repro.environment import capture_run_environment, fingerprint, framework_accelerators, ranked_differences
from tether.repro.scorers import CaseFieldError, make_scorer


def test_exact_and_contains() -> None:
    exact = make_scorer("exact", {}, None, None)
    assert exact.score("14 days", {"expected": "14 days"}) == 1.0
    assert exact.score("14 Days", {"expected": "14 days"}) == 0.0
    assert make_scorer("exact", {"ignore_case": True}, None, None).score("14 Days", {"expected": "14 days"}) == 1.0
    assert exact.score({"a": 1, "b": 2}, {"expected": {"b": 2, "a": 1}}) == 1.0
    contains = make_scorer("contains", {}, None, None)
    assert contains.score("Refunds take 14 days.", {"expected": "14 days"}) == 1.0
    assert contains.score("Refunds take 14 days.", {"expected": ["14 days", "receipt"]}) == 0.5
    with pytest.raises(CaseFieldError, match="missing field 'expected'"):
        contains.check_case({"input": "x"})
    with pytest.raises(CaseFieldError, match="non-empty string or a list"):
        contains.check_case({"expected": 3})


def test_numeric() -> None:
    numeric = make_scorer("numeric", {"tolerance": 0.01}, None, None)
    assert numeric.score("The total is 3.141 dollars", {"expected": 3.14}) == 1.0
    assert numeric.score(3.2, {"expected": 3.14}) == 0.0
    assert numeric.score("no number here", {"expected": 1}) == 0.0
    assert make_scorer("numeric", {"relative_tolerance": 0.1}, None, None).score("105", {"expected": 100}) == 1.0
    with pytest.raises(CaseFieldError, match="must be a number"):
        numeric.check_case({"expected": "ten"})


def test_json_schema(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]}
    scorer = make_scorer("json_schema", {}, None, None)
    case = {"schema": schema}
    scorer.check_case(case)
    assert scorer.score('{"days": 14}', case) == 1.0
    assert scorer.score({"days": "14"}, case) == 0.0
    assert scorer.score("not json", case) == 0.0
    with pytest.raises(CaseFieldError, match="invalid JSON schema"):
        scorer.check_case({"schema": {"type": "no-such-type"}})
    with pytest.raises(CaseFieldError, match="missing field 'schema'"):
        scorer.check_case({})
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "answer.json").write_text(json.dumps(schema), encoding="utf-8")
    from_file = make_scorer("json_schema", {"schema": "schemas/answer.json"}, tmp_path, None)
    from_file.check_case({})
    assert from_file.score('{"days": 3}', {}) == 1.0
    assert from_file.options() == {"schema": "schemas/answer.json"}
    with pytest.raises(UsageError, match=r"evals\.schema: 'schemas/missing\.json' is not in the version"):
        make_scorer("json_schema", {"schema": "schemas/missing.json"}, tmp_path, None)


def test_absent_frameworks_are_recorded_as_absent() -> None:
    frameworks = framework_accelerators()
    assert set(frameworks) == {"torch", "jax", "tensorflow"}
    for name, info in frameworks.items():
        assert info == {"present": False} or info.get("present") is True, name
    environment = capture_run_environment({"run": 3})
    assert environment["seeds"] == {"run": 3}
    assert environment["accelerator"]["frameworks"] == frameworks
    assert fingerprint(environment) == fingerprint({**environment, "seeds": {"run": 4}})


def test_differences_rank_inference_libraries_accelerator_and_seeds_first() -> None:
    old = {
        "python": {"version": "3.11.4"},
        "platform": {"system": "Linux"},
        "packages": {"torch": "2.3.0", "requests": "2.31.0"},
        "accelerator": {"present": True, "driver": "535.1"},
        "env": {},
        "seeds": {"run": 1},
    }
    new = {
        "python": {"version": "3.11.9"},
        "platform": {"system": "Linux"},
        "packages": {"torch": "2.4.0", "requests": "2.32.0"},
        "accelerator": {"present": True, "driver": "550.2"},
        "env": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
        "seeds": {"run": 2},
    }
    causes = [item["cause"] for item in ranked_differences(old, new)]
    assert causes == ["inference library", "accelerator", "seeds", "environment variable", "python", "other package"]
    lines = [item["line"] for item in ranked_differences(old, new)]
    assert lines[0] == "package upgraded: torch 2.3.0 -> 2.4.0 (inference-relevant)"
    assert ranked_differences(old, old) == []
