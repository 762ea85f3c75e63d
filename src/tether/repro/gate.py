"""The promotion gate's statistical check: ``[policy.eval_gate] check = "tether.repro.gate:non_inferiority"``.

The lifecycle's built-in eval gate compares two means; this one asks the question a promotion
really needs answered with the same engine as ``tether eval compare``: is the candidate's quality
*not worse* than the current target's by more than the margin? It passes when the lower bound of
the one-sided 95% interval of (candidate - current) lies above ``-margin`` (the TOST lower test),
and refuses otherwise, reporting the comparison as the gate's evidence.
"""

from __future__ import annotations

from typing import Any

from tether.components.textdiff import plural
from tether.errors import UsageError
from tether.lifecycle.gates import EvalGateRequest, EvalVerdict, paired_runs


def non_inferiority(request: EvalGateRequest) -> EvalVerdict:
    """Non-inferiority of the candidate's newest eval run against the current target's, both over
    the same eval set (:func:`~tether.lifecycle.gates.paired_runs`)."""
    from tether.repro.compare import compare_runs
    from tether.repro.runs import load_record

    pair = paired_runs(request)
    if isinstance(pair, EvalVerdict):
        return pair
    candidate, baseline = (load_record(request.project, record) for record in pair)
    try:
        report = compare_runs(baseline, candidate, margin=request.margin)
    except UsageError as exc:
        return EvalVerdict(False, f"the two eval runs cannot be compared: {exc}", {"evalset": request.evalset})
    behavioral = report.behavioral
    lower = behavioral.tost_interval[0]
    evidence: dict[str, Any] = {
        "method": "non-inferiority (one-sided TOST bound, tether eval compare)",
        "evalset": request.evalset,
        "evalset_snapshot": report.evalset_snapshot,
        "margin": request.margin,
        "baseline_run": report.run_a["run_id"],
        "candidate_run": report.run_b["run_id"],
        "difference": behavioral.difference,
        "lower_bound": lower,
        "cases": behavioral.cases,
        "verdict": report.verdict,
    }
    shown = (f"mean score {behavioral.mean_a:.3f} -> {behavioral.mean_b:.3f} (difference {behavioral.difference:+.4f}, "
             f"one-sided 95% lower bound {lower:+.4f}, margin {request.margin:g}, {plural(behavioral.cases, 'case')})")
    if lower > -request.margin:
        return EvalVerdict(True, f"not worse beyond the margin: {shown}", evidence)
    return EvalVerdict(
        False,
        f"cannot rule out a regression beyond the margin: {shown}",
        evidence,
        fix="evaluate more cases or repeats (`tether eval run REF --repeat K`), or fix the regression",
    )
