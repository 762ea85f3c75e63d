"""The gates a promotion must pass, per tier, and the pluggable eval check.

Each gate returns a :class:`GateResult` (passed, failed, or skipped with the reason it does not
apply), so ``policy check`` can explain what a promotion would need and ``promote`` can record
what the gates saw as the move's evidence.

The eval gate compares the candidate with the alias's current target through an
:class:`EvalCheck`: any callable taking an :class:`EvalGateRequest` and returning an
:class:`EvalVerdict`. The built-in :func:`mean_comparison` compares the metric of the newest
stored eval run of each version; a statistical engine plugs in through
``[policy.eval_gate] check = "module:function"``. Both compare only runs over the same eval set
content (:func:`paired_runs`): scores over other cases say nothing about each other, and a
candidate could otherwise pass by editing its own eval set.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import UsageError, VerificationError

if TYPE_CHECKING:
    from tether.meta.evalruns import EvalRunRecord

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass
class GateResult:
    """One gate's verdict on one promotion."""

    gate: str
    status: str  # passed | failed | skipped
    detail: str
    fix: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "status": self.status, "detail": self.detail, "fix": self.fix, "evidence": self.evidence}


@dataclass(frozen=True)
class EvalGateRequest:
    """What an eval check is asked: may ``candidate`` replace ``baseline`` on ``evalset``?

    ``evalset_snapshot`` is the eval set content both runs must be over: the gate passes the
    candidate's own (None: that of the candidate's newest run on ``evalset``).
    """

    project: Any
    candidate: str
    baseline: str
    evalset: str
    metric: str
    margin: float
    evalset_snapshot: str | None = None


@dataclass
class EvalVerdict:
    """An eval check's answer, with what it compared."""

    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None


class EvalCheck(Protocol):
    """The eval gate's plug-in point (a plain callable works)."""

    def __call__(self, request: EvalGateRequest) -> EvalVerdict: ...


def metric_value(summary: dict[str, Any], metric: str) -> float | None:
    """A number from an eval run summary; ``metric`` may be a dotted path (``scores.mean``)."""
    value: Any = summary
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def paired_runs(request: EvalGateRequest) -> tuple[EvalRunRecord, EvalRunRecord] | EvalVerdict:
    """(candidate's, baseline's) newest eval run records over the same eval set snapshot, or a
    failing verdict naming the ``tether eval run`` command that makes the missing run (the
    baseline on the candidate's eval set: ``--evalset-from``)."""
    from tether.meta.evalruns import eval_runs_of

    repo = eval_runs_of(request.project.meta)
    if repo is None:
        return EvalVerdict(False, "the metadata backend does not store eval runs", {"evalset": request.evalset})
    name = request.evalset
    runs = {role: repo.list_runs(version_id=version_id, evalset=name)
            for role, version_id in (("candidate", request.candidate), ("current target", request.baseline))}
    snapshot = request.evalset_snapshot
    source = request.candidate  # a version whose eval set `name` is `snapshot`
    if snapshot is None and runs["candidate"]:
        newest = runs["candidate"][-1]
        snapshot, source = newest.evalset_snapshot, newest.summary_json().get("evalset_from") or request.candidate
    found: list[EvalRunRecord] = []
    for role, version_id in (("candidate", request.candidate), ("current target", request.baseline)):
        same = [record for record in runs[role] if record.evalset_snapshot == snapshot]
        if same:
            found.append(same[-1])
            continue
        own = request.project.manifest(version_id).components.get(name)
        command = f"tether eval run {version_id[:12]} --evalset {name}"
        where = f"evalset '{name}'"
        if snapshot is not None and own != snapshot:
            command = f"tether eval run {version_id[:12]} --evalset-from {source[:12]} --evalset {name}"
            where = f"the candidate's eval set '{name}' (snapshot {snapshot[:12]})"
        other = ", only on other eval sets, which are not compared" if runs[role] else ""
        return EvalVerdict(
            False,
            f"no eval run of the {role} {version_id[:12]} on {where}{other}",
            {"evalset": name, "evalset_snapshot": snapshot},
            fix=command,
        )
    return found[0], found[1]


def mean_comparison(request: EvalGateRequest) -> EvalVerdict:
    """The candidate passes unless its metric is below the baseline's by more than the margin.

    Reads the newest stored eval run of each version over the same eval set (:func:`paired_runs`).
    """
    pair = paired_runs(request)
    if isinstance(pair, EvalVerdict):
        return pair
    values: dict[str, float] = {}
    runs: dict[str, str] = {}
    for role, record in zip(("candidate", "baseline"), pair, strict=True):
        run_id, summary = record.run_id, record.summary_json()
        value = metric_value(summary, request.metric)
        if value is None:
            return EvalVerdict(
                False,
                f"eval run {run_id[:12]} of the {role} has no numeric metric '{request.metric}'",
                {"evalset": request.evalset, "run": run_id},
            )
        values[role], runs[role] = value, run_id
    delta = values["candidate"] - values["baseline"]
    evidence = {
        "evalset": request.evalset,
        "evalset_snapshot": pair[0].evalset_snapshot,
        "metric": request.metric,
        "margin": request.margin,
        "candidate": {"run": runs["candidate"], "value": values["candidate"]},
        "baseline": {"run": runs["baseline"], "value": values["baseline"]},
        "delta": delta,
        "method": "mean comparison",
    }
    shown = f"{request.metric} {values['candidate']:.4g} vs {values['baseline']:.4g} (delta {delta:+.4g}, margin {request.margin:g})"
    if delta < -request.margin:
        return EvalVerdict(False, f"regression beyond the margin: {shown}", evidence)
    return EvalVerdict(True, shown, evidence)


def load_hook(spec: str, root: Path, what: str) -> Callable[..., Any]:
    """Import ``module:function`` (the project folder is importable, as users expect)."""
    module_name, _, function_name = spec.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"tether.toml: {what}: cannot import '{module_name}' ({exc})") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"tether.toml: {what}: '{module_name}' has no callable '{function_name}'")
    return function  # type: ignore[no-any-return]


@dataclass
class GateContext:
    """Everything the gates look at for one promotion."""

    project: Any
    repo: Any
    policy: Any
    alias: str
    candidate: str
    current: str | None  # the alias's current target
    actor: str
    reason: str | None
    now: _dt.datetime


def parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def gate_valid(ctx: GateContext) -> GateResult:
    """Every tier: the manifest, snapshots and objects of the candidate verify."""
    try:
        snapshots = ctx.project.version_snapshots(ctx.candidate)
    except VerificationError as exc:
        return GateResult("valid", FAILED, str(exc))
    count = 0
    for name, snap in sorted(snapshots.items()):
        for entry in snap.files:
            count += 1
            if not ctx.project.store.has(entry.digest):
                return GateResult("valid", FAILED, f"component {name}: {entry.path}: object {entry.digest[:12]} is missing")
            if not ctx.project.store.verify(entry.digest):
                return GateResult("valid", FAILED, f"component {name}: {entry.path}: object {entry.digest[:12]} is corrupted")
    plural = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731
    detail = f"manifest, {plural(len(snapshots), 'snapshot')} and {plural(count, 'object')} verify"
    return GateResult("valid", PASSED, detail, evidence={"objects": count})


def _model_gate_skipped(ctx: GateContext, gate: str, what: str) -> GateResult | None:
    """Why a model-identity gate does not apply here (a tier without it, a non-production
    alias), or None when it does."""
    if not ctx.policy.requires_pinned_models:
        return GateResult(gate, SKIPPED, f"tier '{ctx.policy.tier}' does not {what}")
    if ctx.alias not in ctx.policy.production_aliases:
        shown = ", ".join(ctx.policy.production_aliases)
        return GateResult(gate, SKIPPED, f"'{ctx.alias}' is not a production alias ({shown})")
    return None


def gate_pinned(ctx: GateContext) -> GateResult:
    """``standard``/``regulated``: no floating model identity on a production alias."""
    skipped = _model_gate_skipped(ctx, "pinned-models", "require pinned models")
    if skipped is not None:
        return skipped
    from tether.components import get_kind

    floating: list[str] = []
    for name, snap in sorted(ctx.project.version_snapshots(ctx.candidate).items()):
        if snap.kind != "model":
            continue
        for finding in get_kind("model").check_pinning(name, snap.spec):
            if finding.level == "floating":
                floating.append(f"{name}: {finding.message}")
    if floating:
        return GateResult(
            "pinned-models",
            FAILED,
            f"floating model identity refused for '{ctx.alias}': {floating[0]}",
            fix="pin a dated/versioned model ID (or a hub commit hash) and commit a new version",
            evidence={"floating": floating},
        )
    return GateResult("pinned-models", PASSED, "every model identity is pinned")


def gate_retired(ctx: GateContext) -> GateResult:
    """``standard``/``regulated``: no hosted model known to be retired on a production alias
    (its provider no longer serves it: every request would fail)."""
    skipped = _model_gate_skipped(ctx, "retired-models", "check model retirement")
    if skipped is not None:
        return skipped
    from tether.lifecycle.reversibility import model_identity, retired_identities

    snapshots = ctx.project.version_snapshots(ctx.candidate)
    retired = retired_identities(ctx.project, ctx.policy, snapshots)
    found = [
        f"{name}: {identity} (retired per {retired[identity]})"
        for name, snap in sorted(snapshots.items())
        if snap.kind == "model" and (identity := model_identity(snap.spec)) in retired
    ]
    if found:
        return GateResult(
            "retired-models",
            FAILED,
            f"retired model refused for '{ctx.alias}': {found[0]}",
            fix="move the component to a model the provider still serves and commit a new version",
            evidence={"retired": found},
        )
    return GateResult("retired-models", PASSED, "no model the candidate names is known to be retired")


def latest_rehearsal(ctx: GateContext) -> Any | None:
    """The newest rehearsal of this path back (candidate -> current), passed or not: a failure
    recorded after a pass means the path no longer works, whatever the older record said."""
    for record in reversed(ctx.repo.rehearsals(ctx.alias)):
        if record.from_version == ctx.candidate and record.to_version == ctx.current:
            return record
    return None


def gate_rehearsal(ctx: GateContext) -> GateResult:
    """``standard``/``regulated``: the latest rehearsal of rolling back from the candidate passed, recently."""
    if not ctx.policy.requires_rehearsal:
        return GateResult("rehearsal", SKIPPED, f"tier '{ctx.policy.tier}' does not require rehearsed rollbacks")
    if ctx.current is None:
        return GateResult("rehearsal", SKIPPED, f"first target of '{ctx.alias}': there is nothing to roll back to")
    latest = latest_rehearsal(ctx)
    fix = f"tether rollback {ctx.alias} --rehearse --from {ctx.candidate[:12]}"
    path = f"{ctx.alias} {ctx.candidate[:12]} -> {ctx.current[:12]}"
    if latest is None:
        detail = f"no passing rehearsal of rolling {ctx.alias} back from {ctx.candidate[:12]} to {ctx.current[:12]}"
        return GateResult("rehearsal", FAILED, detail, fix=fix)
    if not latest.passed:
        detail = f"the latest rehearsal of {path} (#{latest.id} at {latest.time}) failed"
        return GateResult("rehearsal", FAILED, detail, fix=fix, evidence={"rehearsal": latest.id, "time": latest.time})
    age = (ctx.now - parse_time(latest.time)).total_seconds() / 86400
    if age > ctx.policy.rehearsal_max_age_days:
        detail = f"the passing rehearsal of {path} is {age:.1f} days old (limit {ctx.policy.rehearsal_max_age_days:g} days)"
        return GateResult("rehearsal", FAILED, detail, fix=fix)
    needs_force = bool(latest.report.get("needs_force"))
    detail = f"rehearsal #{latest.id} at {latest.time} passed"
    if needs_force:
        detail += "; rolling back will need --force --reason (irreversible findings)"
    return GateResult(
        "rehearsal",
        PASSED,
        detail,
        evidence={"rehearsal": latest.id, "time": latest.time, "needs_force": needs_force},
    )


def gate_eval(ctx: GateContext) -> GateResult:
    """``standard``/``regulated`` with a declared ``[policy.eval_gate]``: no regression beyond the margin."""
    config = ctx.policy.eval_gate
    if not ctx.policy.requires_eval_gate:
        why = "no [policy.eval_gate] declared" if config is None else f"tier '{ctx.policy.tier}' has no eval gate"
        return GateResult("eval", SKIPPED, why)
    if ctx.current is None:
        return GateResult("eval", SKIPPED, f"first target of '{ctx.alias}': no current version to compare against")
    manifest = ctx.project.manifest(ctx.candidate)
    if manifest.kinds.get(config.evalset) != "evalset":
        return GateResult(
            "eval",
            FAILED,
            f"policy.eval_gate.evalset '{config.evalset}' is not an evalset component of {ctx.candidate[:12]}",
        )
    if ctx.project.manifest(ctx.current).kinds.get(config.evalset) != "evalset":
        # The candidate introduces the eval set: the current target was never held to it, so (as
        # for a first target) there is no bar to compare against.
        detail = f"the current target {ctx.current[:12]} of '{ctx.alias}' has no evalset '{config.evalset}' to compare against"
        return GateResult("eval", SKIPPED, detail)
    check: EvalCheck = mean_comparison
    if config.check:
        check = load_hook(config.check, ctx.project.root, "policy.eval_gate.check")
    snapshot = manifest.components[config.evalset]  # the candidate's own eval set is the one judged on
    request = EvalGateRequest(ctx.project, ctx.candidate, ctx.current, config.evalset, config.metric, config.margin, snapshot)
    verdict = check(request)
    evidence = {**verdict.evidence, "check": config.check or "mean_comparison"}
    return GateResult("eval", PASSED if verdict.passed else FAILED, verdict.detail, verdict.fix, evidence)


def gate_reason(ctx: GateContext) -> GateResult:
    """``regulated``: every move says why."""
    if not ctx.policy.requires_reason:
        return GateResult("reason", SKIPPED, f"tier '{ctx.policy.tier}' does not require a reason")
    if not ctx.reason or not ctx.reason.strip():
        return GateResult("reason", FAILED, "tier 'regulated' requires a reason on every move", fix="add --reason R")
    return GateResult("reason", PASSED, "reason given")


_IDENTITY = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>]*)>\s*$", re.DOTALL)


def _identity(author: str) -> tuple[str, str]:
    """``(name, e-mail)`` of ``Name <e-mail>``, whitespace-normalized and case-folded ("" when absent)."""
    match = _IDENTITY.match(author)
    name, email = (match.group("name"), match.group("email")) if match else (author, "")
    return " ".join(name.split()).casefold(), email.strip().casefold()


def same_person(a: str, b: str) -> bool:
    """Whether two author strings name one person: by e-mail address when both have one, else by
    name. ``TETHER_AUTHOR`` is typed by hand, so case and spacing must not make the promoter
    "someone else" who may approve their own promotion."""
    (name_a, email_a), (name_b, email_b) = _identity(a), _identity(b)
    if email_a and email_b:
        return email_a == email_b
    return name_a == name_b


def gate_approval(ctx: GateContext) -> GateResult:
    """``regulated``: a second person approved this version for this alias."""
    if not ctx.policy.requires_approval:
        return GateResult("approval", SKIPPED, f"tier '{ctx.policy.tier}' does not require an approval")
    approvals = ctx.repo.approvals(ctx.candidate, ctx.alias)
    others = [item for item in approvals if not same_person(item.approver, ctx.actor)]
    fix = f"another person runs: tether approve {ctx.candidate[:12]} --for {ctx.alias}"
    if not others:
        detail = f"no approval of {ctx.candidate[:12]} for '{ctx.alias}' by someone other than {ctx.actor}"
        if approvals:
            detail += " (the promoter cannot approve their own promotion)"
        return GateResult("approval", FAILED, detail, fix=fix)
    latest = others[-1]
    return GateResult(
        "approval",
        PASSED,
        f"approved by {latest.approver} at {latest.time}",
        evidence={"approval": latest.id, "approver": latest.approver, "time": latest.time},
    )


GATES: tuple[Callable[[GateContext], GateResult], ...] = (
    gate_valid,
    gate_pinned,
    gate_retired,
    gate_rehearsal,
    gate_eval,
    gate_reason,
    gate_approval,
)


def evaluate_gates(ctx: GateContext) -> list[GateResult]:
    """Every gate's verdict, in order (all are evaluated, so a report names everything missing)."""
    return [gate(ctx) for gate in GATES]
