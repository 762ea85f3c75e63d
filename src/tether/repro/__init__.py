"""Behavioral reproducibility: eval runs, their environment, and statistical comparison.

```python
from tether import Project
from tether.repro import compare_runs, load_run, run_eval

with Project.open(".") as project:
    baseline = load_run(project, "3fa2c1")            # a stored run, by ID prefix
    again = run_eval(project, "HEAD", seed=baseline.summary["seed"])
    report = compare_runs(baseline, again, margin=0.02)
    report.verdict                                     # REPRODUCED | NOT REPRODUCED | INCONCLUSIVE
    report.to_json()
```

Names are imported lazily: ``tether.repro.config`` is read on every ``tether.toml`` load with an
``[evals]`` table, and must not pull in NumPy or SciPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.repro.compare import ComparisonReport, compare_runs
    from tether.repro.executor import run_eval
    from tether.repro.runs import EvalRun, load_run
    from tether.repro.version import ModelRef, VersionView

__all__ = ["ComparisonReport", "EvalRun", "ModelRef", "VersionView", "compare_runs", "load_run", "run_eval"]

_WHERE = {
    "ComparisonReport": "tether.repro.compare",
    "compare_runs": "tether.repro.compare",
    "run_eval": "tether.repro.executor",
    "EvalRun": "tether.repro.runs",
    "load_run": "tether.repro.runs",
    "ModelRef": "tether.repro.version",
    "VersionView": "tether.repro.version",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tether.repro' has no attribute {name!r}")
