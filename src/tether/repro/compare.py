"""Comparing two eval runs: three levels of reproduction, never conflated, and what differs.

- **bitwise**: the share of cases whose outputs are byte-identical (same output digests, repeat
  by repeat);
- **fixed-environment**: given an identical environment fingerprint and identical seeds, are the
  outputs identical? (not applicable when the environment or the seeds differ);
- **behavioral**: is the *quality distribution* the same: the difference in mean score with a
  bootstrap CI, a paired test, and a TOST equivalence verdict against the margin with a
  sample-size guard (see :mod:`tether.repro.stats`).

Then what differs between the two runs' environments and seeds, most likely causes first.
:func:`compare_runs` is the engine behind ``tether eval compare`` and ``tether repro check``,
and what a promotion gate calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.components.textdiff import plural
from tether.errors import UsageError
from tether.repro.config import DEFAULT_MARGIN
from tether.repro.environment import fingerprint, ranked_differences
from tether.repro.runs import EvalRun

APPLICABLE = ("REPRODUCED", "NOT REPRODUCED")
NOT_APPLICABLE = "NOT APPLICABLE"


def _run_summary(run: EvalRun) -> dict[str, Any]:
    summary = run.summary
    return {
        "run_id": run.run_id,
        "version_id": run.version_id,
        "created_at": run.created_at,
        "mean_score": summary.get("mean_score"),
        "cases": summary.get("cases"),
        "repeat": summary.get("repeat"),
        "errors": summary.get("errors"),
        "seed": summary.get("seed"),
        "seed_passed": summary.get("seed_passed"),
        "runner": summary.get("runner"),
        "scorer": summary.get("scorer"),
        "environment_fingerprint": fingerprint(run.environment),
        "evalset_from": run.evalset_from,
    }


@dataclass
class ComparisonReport:
    """Everything ``eval compare`` and ``repro check`` report; ``to_json`` for machines and gates."""

    run_a: dict[str, Any]
    run_b: dict[str, Any]
    evalset: str
    evalset_snapshot: str
    bitwise: dict[str, Any]
    fixed_environment: dict[str, Any]
    behavioral: Any  # tether.repro.stats.Behavioral
    environment: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    scores_a: list[float] = field(default_factory=list, repr=False)  # per-case means, for plots
    scores_b: list[float] = field(default_factory=list, repr=False)

    @property
    def verdict(self) -> str:
        """The behavioral verdict: REPRODUCED, NOT REPRODUCED or INCONCLUSIVE."""
        return str(self.behavioral.verdict)

    @property
    def reproduced(self) -> bool:
        return self.verdict == "REPRODUCED"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "run_a": self.run_a,
            "run_b": self.run_b,
            "evalset": self.evalset,
            "evalset_snapshot": self.evalset_snapshot,
            "bitwise": self.bitwise,
            "fixed_environment": self.fixed_environment,
            "behavioral": self.behavioral.to_json(),
            "environment_differences": [
                {"cause": item["cause"], "line": item["line"], **({"detail": item["detail"]} if item["detail"] else {})}
                for item in self.environment
            ],
            "notes": self.notes,
        }

    def lines(self, label_a: str = "A", label_b: str = "B") -> list[str]:
        """The report as a reviewer reads it."""
        b = self.behavioral
        out = [
            f"eval set '{self.evalset}' (snapshot {self.evalset_snapshot[:12]}), {plural(b.cases, 'case')}",
            *(f"  {label}: run {run['run_id'][:12]} of version {run['version_id'][:12]}"
              + (f" (on the eval set of version {run['evalset_from'][:12]})" if run.get("evalset_from") else "")
              + f", {run['repeat']} repeat(s), seed {run['seed']}, mean score {run['mean_score']:.3f}, {run['errors']} error(s)"
              for label, run in ((label_a, self.run_a), (label_b, self.run_b))),
            "",
            f"bitwise            {self.bitwise['share']:.1%} of cases byte-identical "
            f"({self.bitwise['identical_cases']}/{self.bitwise['cases']})",
            f"fixed-environment  {self.fixed_environment['status']}: {self.fixed_environment['reason']}",
            f"behavioral         {b.verdict}: {b.reason}",
            f"  mean score       {b.mean_a:.3f} -> {b.mean_b:.3f}, difference {b.difference:+.4f}, "
            f"95% CI [{b.ci95[0]:+.4f}, {b.ci95[1]:+.4f}] (bootstrap)",
        ]
        paired = f"permutation p = {b.permutation_p:.3g}"
        if b.mcnemar is not None:
            paired += (f"; McNemar exact p = {b.mcnemar['p']:.3g} ({b.mcnemar['only_a_passed']} passed only in {label_a}, "
                       f"{b.mcnemar['only_b_passed']} only in {label_b})")
        out.append(f"  paired test      {paired}")
        out.append(f"  equivalence      TOST against ±{b.margin:g}: p = {b.tost_p:.3g}, "
                   f"{1 - 2 * b.alpha:.0%} CI [{b.tost_interval[0]:+.4f}, {b.tost_interval[1]:+.4f}]")
        size = f"{plural(b.cases, 'case')}; {b.cases_needed} needed to claim equivalence at this margin"
        if b.repeats_needed is not None:
            size += f" (or {b.repeats_needed} repeats per case at {plural(b.cases, 'case')})"
        out.append(f"  sample size      {size}")
        out.append("")
        if self.environment:
            out.append("environment and seed differences (most likely causes first):")
            out.extend(f"  [{item['cause']}] {item['line']}" for item in self.environment[:40])
            if len(self.environment) > 40:
                out.append(f"  ... and {len(self.environment) - 40} more")
        else:
            out.append("environment and seeds: identical")
        out.extend(f"note: {note}" for note in self.notes)
        return out


def _bitwise(outputs_a: dict[str, list[str | None]], outputs_b: dict[str, list[str | None]], keys: list[str]) -> dict[str, Any]:
    identical_cases = identical_calls = calls = 0
    for key in keys:
        pairs = list(zip(outputs_a[key], outputs_b[key], strict=False))
        same = [x is not None and x == y for x, y in pairs]
        calls += len(pairs)
        identical_calls += sum(same)
        identical_cases += bool(pairs) and all(same)
    return {
        "identical_cases": identical_cases,
        "cases": len(keys),
        "share": identical_cases / len(keys),
        "identical_calls": identical_calls,
        "calls": calls,
    }


def _fixed_environment(run_a: EvalRun, run_b: EvalRun, bitwise: dict[str, Any]) -> dict[str, Any]:
    fp_a, fp_b = fingerprint(run_a.environment), fingerprint(run_b.environment)
    same_env = fp_a is not None and fp_a == fp_b
    same_seeds = run_a.case_seeds() == run_b.case_seeds() and run_a.summary.get("repeat") == run_b.summary.get("repeat")
    result: dict[str, Any] = {"same_fingerprint": same_env, "same_seeds": same_seeds,
                              "fingerprint_a": fp_a, "fingerprint_b": fp_b}
    if run_a.version_id != run_b.version_id:
        result["status"] = NOT_APPLICABLE
        result["reason"] = "the runs are of different versions"
    elif run_a.summary.get("runner") != run_b.summary.get("runner"):
        result["status"] = NOT_APPLICABLE
        result["reason"] = "the runs used different runners"
    elif _runner_code_changed(run_a, run_b):
        result["status"] = NOT_APPLICABLE
        result["reason"] = "the runner's source file changed between the runs"
    elif not same_env:
        result["status"] = NOT_APPLICABLE
        result["reason"] = f"the environments differ (fingerprint {str(fp_a)[:12]} vs {str(fp_b)[:12]})"
    elif not same_seeds:
        result["status"] = NOT_APPLICABLE
        result["reason"] = "same environment fingerprint, but the seeds (or repeats) differ"
    elif bitwise["identical_cases"] == bitwise["cases"]:
        result["status"] = "REPRODUCED"
        result["reason"] = "same environment fingerprint and seeds, every output identical"
    else:
        result["status"] = "NOT REPRODUCED"
        differing = bitwise["cases"] - bitwise["identical_cases"]
        result["reason"] = (f"same environment fingerprint and seeds, yet {differing} case(s) differ: the runner is "
                            "nondeterministic beyond its seeds (unseeded sampling, GPU kernels, a hosted model)")
    return result


def _runner_code_changed(run_a: EvalRun, run_b: EvalRun) -> bool:
    """Both runs recorded their runner's source digest, and it differs."""
    code_a, code_b = run_a.summary.get("runner_code"), run_b.summary.get("runner_code")
    return code_a is not None and code_b is not None and code_a != code_b


def _seed_differences(run_a: EvalRun, run_b: EvalRun) -> list[dict[str, Any]]:
    """Seed differences not already in the environments (per-call seeds follow the run seed)."""
    items = []
    seed_a, seed_b = run_a.summary.get("seed"), run_b.summary.get("seed")
    passed_a, passed_b = run_a.summary.get("seed_passed"), run_b.summary.get("seed_passed")
    env_seeds_differ = (run_a.environment or {}).get("seeds") != (run_b.environment or {}).get("seeds")
    if seed_a != seed_b and not env_seeds_differ:
        items.append({"cause": "seeds", "line": f"run seed: {seed_a} -> {seed_b}", "detail": {}})
    if bool(passed_a) != bool(passed_b):  # both not taking one is no difference: a note says so
        which = "A" if not passed_a else "B"
        items.append({"cause": "seeds", "line": f"run {which}'s runner does not take a seed: its randomness is not "
                      "controlled by tether", "detail": {}})
    return items


def compare_runs(run_a: EvalRun, run_b: EvalRun, margin: float = DEFAULT_MARGIN, alpha: float = 0.05,
                 n_resamples: int = 9999) -> ComparisonReport:
    """Compare run B against run A (B - A) over the same eval set; refuses runs of different eval sets
    or scored differently, since their scores do not pair up."""
    from tether.repro.stats import compare_scores

    if not 0 <= margin < 1:  # 0: the promotion gate's "no regression at all" (policy allows it)
        raise UsageError(f"margin {margin!r}: expected a number in [0, 1)")
    if run_a.evalset_snapshot != run_b.evalset_snapshot:
        raise UsageError(
            f"run {run_b.run_id[:12]} is over eval set '{run_b.evalset}' (snapshot {run_b.evalset_snapshot[:12]}), "
            f"run {run_a.run_id[:12]} over '{run_a.evalset}' (snapshot {run_a.evalset_snapshot[:12]}): "
            "refusing to compare runs of different eval sets"
        )
    scorer_a = (run_a.summary.get("scorer"), run_a.summary.get("scorer_options"))
    scorer_b = (run_b.summary.get("scorer"), run_b.summary.get("scorer_options"))
    if scorer_a != scorer_b:
        raise UsageError(
            f"runs {run_a.run_id[:12]} and {run_b.run_id[:12]} were scored differently "
            f"({scorer_a[0]} {scorer_a[1]} vs {scorer_b[0]} {scorer_b[1]}): their scores are not comparable"
        )
    scores_a, scores_b = run_a.case_scores(), run_b.case_scores()
    keys = [case["key"] for case in run_a.cases]
    if set(keys) != set(scores_b):
        raise UsageError(f"runs {run_a.run_id[:12]} and {run_b.run_id[:12]} do not cover the same cases")
    seed = int(run_a.run_id[:8], 16) ^ int(run_b.run_id[:8], 16)  # the same two runs give the same report
    behavioral = compare_scores([scores_a[k] for k in keys], [scores_b[k] for k in keys], margin, alpha,
                                n_resamples=n_resamples, seed=seed)
    bitwise = _bitwise(run_a.case_outputs(), run_b.case_outputs(), keys)
    notes = []
    if run_a.version_id != run_b.version_id:
        notes.append(f"the runs are of different versions ({run_a.version_id[:12]} and {run_b.version_id[:12]})")
    if run_a.summary.get("runner") != run_b.summary.get("runner"):
        notes.append(f"the runners differ ({run_a.summary.get('runner')} and {run_b.summary.get('runner')})")
    if run_a.summary.get("repeat") != run_b.summary.get("repeat"):
        notes.append(f"the repeats differ ({run_a.summary.get('repeat')} and {run_b.summary.get('repeat')}); "
                     "bitwise compares the repeats both have")
    if not run_a.summary.get("seed_passed") and not run_b.summary.get("seed_passed"):
        notes.append("the runner does not take a seed: its randomness is not controlled by tether")
    for run, label in ((run_a, "A"), (run_b, "B")):
        if run.summary.get("errors"):
            notes.append(f"run {label} ({run.run_id[:12]}) has {run.summary['errors']} failed call(s), scored 0")
    environment = ranked_differences(run_a.environment, run_b.environment)
    if _runner_code_changed(run_a, run_b):  # the first suspect: the code that produced the outputs
        runner = run_b.summary.get("runner")
        environment.insert(0, {"cause": "runner code", "line": f"runner {runner}: its source file changed "
                               f"({str(run_a.summary['runner_code'])[:12]} -> {str(run_b.summary['runner_code'])[:12]})",
                               "detail": {"a": run_a.summary["runner_code"], "b": run_b.summary["runner_code"]}})
    extra = _seed_differences(run_a, run_b)
    position = next((i for i, item in enumerate(environment) if item["cause"] not in ("inference library", "accelerator")),
                    len(environment))
    environment[position:position] = extra
    return ComparisonReport(
        run_a=_run_summary(run_a),
        run_b=_run_summary(run_b),
        evalset=run_a.evalset,
        evalset_snapshot=run_a.evalset_snapshot,
        bitwise=bitwise,
        fixed_environment=_fixed_environment(run_a, run_b, bitwise),
        behavioral=behavioral,
        environment=environment,
        notes=notes,
        scores_a=[sum(scores_a[k]) / len(scores_a[k]) for k in keys],
        scores_b=[sum(scores_b[k]) / len(scores_b[k]) for k in keys],
    )
