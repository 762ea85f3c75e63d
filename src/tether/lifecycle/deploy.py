"""Promote, rollback, rehearse, approve and explain: the deploy lifecycle over a :class:`Project`.

An alias (``prod``, ``staging``...) is what production follows. It moves only here, by
compare-and-swap, and every move is appended to its history with who, when, from, to, why and the
evidence the gates saw. Rollback is a new history entry after a reversibility check; a rehearsal
does everything a rollback does except moving the alias, and is recorded so that ``promote`` can
insist the path back was tried.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.errors import CheckFailedError, ReferenceNotFoundError, UsageError, VerificationError
from tether.lifecycle.gates import (
    FAILED,
    GateContext,
    GateResult,
    evaluate_gates,
    load_hook,
)
from tether.lifecycle.policy import Policy, check_tier_settings, load_policy, recorded_policy, tier_rank
from tether.lifecycle.reversibility import ReversibilityReport, check_reversibility
from tether.meta.lifecycle import (
    AliasConflictError,
    AliasMove,
    AliasState,
    ApprovalRecord,
    RehearsalRecord,
    lifecycle_repository,
)
from tether.project.refs import name_problem


def check_alias_name(name: str, option: str = "--to") -> None:
    """Alias names follow branch-name rules and cannot look like reference syntax (``HEAD``, an ID
    prefix). ``option`` is how the command took the name, so the error names what to fix."""
    problem = name_problem(name)
    if problem:
        raise UsageError(f"{option} {name}: not a valid alias name: {problem}")


@dataclass(frozen=True)
class Governing:
    """The policy a move runs under, and, when it is not the working ``tether.toml``'s, the
    version whose recorded ``tether.toml`` it comes from and why."""

    policy: Policy
    version: str | None = None
    why: str | None = None

    def to_json(self) -> dict[str, Any] | None:
        return {"tier": self.policy.tier, "version": self.version, "why": self.why} if self.why else None

    def explain(self, message: str) -> str:
        """``message`` with why the tier governs, when the working file's does not."""
        return f"{message} ({self.why})" if self.why else message


@dataclass
class PolicyReport:
    """What promoting ``candidate`` to ``alias`` needs under the tier, and what is missing."""

    tier: str
    alias: str
    candidate: str
    current: str | None
    gates: list[GateResult]
    policy: Policy
    governed_by: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return not any(gate.failed for gate in self.gates)

    @property
    def missing(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "alias": self.alias,
            "candidate": self.candidate,
            "current": self.current,
            "ready": self.ready,
            "gates": [gate.to_json() for gate in self.gates],
            "missing": [gate.gate for gate in self.missing],
            "policy": self.policy.to_json(),
            "governed_by": self.governed_by,
        }


@dataclass
class MoveResult:
    """One alias move (promote or rollback) and what was checked on the way."""

    move: AliasMove
    gates: list[GateResult] = field(default_factory=list)
    report: ReversibilityReport | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.move.to_json(),
            "gates": [gate.to_json() for gate in self.gates],
            "reversibility": self.report.to_json() if self.report else None,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class RehearsalResult:
    """A recorded rehearsal with its steps and reversibility report."""

    record: RehearsalRecord
    report: ReversibilityReport
    steps: list[dict[str, Any]]

    @property
    def passed(self) -> bool:
        return self.record.passed

    @property
    def needs_force(self) -> bool:
        return bool(self.report.irreversible)

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "steps": self.steps, "needs_force": self.needs_force}


@dataclass
class HistoryReport:
    """An alias's moves and rehearsals."""

    alias: str
    current: AliasState | None
    moves: list[AliasMove]
    rehearsals: list[RehearsalRecord]

    def events(self) -> list[tuple[str, AliasMove | RehearsalRecord]]:
        """Moves and rehearsals interleaved by time, oldest first."""
        items: list[tuple[str, str, int, AliasMove | RehearsalRecord]] = [
            (move.time, "move", move.seq, move) for move in self.moves
        ]
        items.extend((record.time, "rehearsal", record.id, record) for record in self.rehearsals)
        items.sort(key=lambda item: (item[0], item[1], item[2]))
        return [(kind, item) for _, kind, _, item in items]

    def to_json(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "current": self.current.version_id if self.current else None,
            "moves": [move.to_json() for move in self.moves],
            "rehearsals": [record.to_json() for record in self.rehearsals],
        }


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class Lifecycle:
    """The deploy lifecycle of one opened project."""

    def __init__(self, project: Any) -> None:
        self.project = project
        self.repo = lifecycle_repository(project.meta)
        self.policy = load_policy(project.file)

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def actor() -> str:
        from tether.project.core import _author

        return _author()

    @staticmethod
    def now() -> str:
        from tether.project.core import _now

        return _now()

    def state(self, alias: str) -> AliasState:
        state = self.repo.get_alias(alias)
        if state is None:
            raise ReferenceNotFoundError(f"alias '{alias}': no such alias (promote a version to it first)")
        return state

    def _expect(self, expect: str | None, alias: str) -> str | None:
        if expect is None:
            return None
        from tether.project.refs import split_suffixes

        if split_suffixes(expect)[0] == alias:
            raise UsageError(
                f"--expect {expect}: names the alias being moved, so it would always match; "
                f"give the version ID you expect '{alias}' to be at"
            )
        try:
            return self.project.resolve(expect)
        except ReferenceNotFoundError as exc:
            raise UsageError(f"--expect {expect}: {exc}") from exc

    def governing(self, alias: str, current: str | None, target: str) -> Governing:
        """The policy a move of ``alias`` from ``current`` to ``target`` runs under: the strictest
        tier among the working ``tether.toml`` and the copies those two versions recorded (ties go
        to the working file, then to the current version). Editing the tier in the working file,
        committed or not, so cannot loosen a move off or onto a version committed under a stricter
        tier: lowering a tier takes one move under the old rules, as that version recorded them."""
        governing = Governing(self.policy)
        for version_id, which in ((current, f"{alias}'s current version"), (target, "the target")):
            if version_id is None:
                continue
            recorded = recorded_policy(self.project, version_id)
            if tier_rank(recorded.tier) > tier_rank(governing.policy.tier):
                why = (
                    f"tier '{recorded.tier}' governs: {which} {version_id[:12]} recorded it, "
                    f"stricter than the working tether.toml's '{self.policy.tier}'"
                )
                governing = Governing(recorded, version_id, why)
        return governing

    @staticmethod
    def _evidence(governing: Governing, **items: Any) -> dict[str, Any]:
        evidence = {"tier": governing.policy.tier, **items}
        if governing.why:
            evidence["governed_by"] = governing.to_json()
        return evidence

    def _context(
        self, alias: str, candidate: str, current: str | None, reason: str | None, policy: Policy
    ) -> GateContext:
        return GateContext(
            project=self.project,
            repo=self.repo,
            policy=policy,
            alias=alias,
            candidate=candidate,
            current=current,
            actor=self.actor(),
            reason=reason,
            now=_utcnow(),
        )

    def _check_new_alias(self, alias: str) -> None:
        check_alias_name(alias)
        if self.project.meta.get_branch(alias) is not None:
            raise UsageError(f"--to {alias}: a branch of that name exists; alias and branch names must not collide")

    # ---- policy check and promote ------------------------------------------------------------------
    def plan(self, ref: str, alias: str, reason: str | None = None) -> PolicyReport:
        """``policy check``: every gate's verdict on promoting ``ref`` to ``alias``, nothing moved.
        A new alias's name is checked as ``promote`` checks it, so a promotion it refuses is never "ready"."""
        check_alias_name(alias)
        check_tier_settings(self.project.file)
        candidate = self.project.resolve(ref)
        state = self.repo.get_alias(alias)
        if state is None:
            self._check_new_alias(alias)
        current = state.version_id if state else None
        governing = self.governing(alias, current, candidate)
        gates = evaluate_gates(self._context(alias, candidate, current, reason, governing.policy))
        return PolicyReport(governing.policy.tier, alias, candidate, current, gates, governing.policy, governing.to_json())

    def promote(self, ref: str, alias: str, reason: str | None = None, expect: str | None = None) -> MoveResult:
        """Move ``alias`` to ``ref`` when every gate of the tier passes (compare-and-swap)."""
        started = time.perf_counter()
        if reason is not None and not reason.strip():
            raise UsageError("--reason: must not be empty")
        check_tier_settings(self.project.file)
        state = self.repo.get_alias(alias)
        if state is None:
            self._check_new_alias(alias)
        candidate = self.project.resolve(ref)
        self.project.require_files(candidate)
        expected = self._expect(expect, alias)
        current = state.version_id if state else None
        if expected is not None and expected != current:
            where = current[:12] if current else "nowhere (never promoted)"
            raise CheckFailedError(f"--expect {expect}: alias '{alias}' is at {where}, not at {expected[:12]}; nothing moved")
        if candidate == current:
            raise CheckFailedError(f"alias '{alias}' already points at {candidate[:12]}; nothing moved")
        governing = self.governing(alias, current, candidate)
        gates = evaluate_gates(self._context(alias, candidate, current, reason, governing.policy))
        failed = [gate for gate in gates if gate.status == FAILED]
        if failed:
            first = failed[0]
            more = f" (and {len(failed) - 1} more: {', '.join(g.gate for g in failed[1:])})" if len(failed) > 1 else ""
            fix = f"; {first.fix}" if first.fix else ""
            raise CheckFailedError(governing.explain(f"promote refused by the {first.gate} gate: {first.detail}{fix}{more}"))
        evidence = self._evidence(governing, current=current, gates=[gate.to_json() for gate in gates])
        move = self._move(alias, candidate, "promote", state, expected, reason, evidence)
        warnings = [
            f"rolling back from {candidate[:12]} will need --force --reason: the rehearsal found irreversible changes"
            for gate in gates
            if gate.gate == "rehearsal" and gate.evidence.get("needs_force")
        ]
        return MoveResult(move, gates=gates, warnings=warnings, seconds=time.perf_counter() - started)

    def _move(
        self,
        alias: str,
        target: str,
        action: str,
        state: AliasState | None,
        expected: str | None,
        reason: str | None,
        evidence: dict[str, Any],
        forced: bool = False,
    ) -> AliasMove:
        try:
            with self.project.naming(target):
                return self.repo.move_alias(
                    alias,
                    target,
                    action=action,
                    expected_moves=state.moves if state else 0,
                    expected_version=expected,
                    actor=self.actor(),
                    time=self.now(),
                    reason=reason.strip() if reason else None,
                    evidence=evidence,
                    forced=forced,
                )
        except AliasConflictError as exc:
            raise CheckFailedError(f"{exc}") from exc

    def approve(self, ref: str, alias: str, reason: str | None = None) -> ApprovalRecord:
        """Record the current user's approval of promoting ``ref`` to ``alias``."""
        check_alias_name(alias, "--for")
        version_id = self.project.resolve(ref)
        state = self.repo.get_alias(alias)
        if state is not None and state.version_id == version_id:
            raise CheckFailedError(f"alias '{alias}' already points at {version_id[:12]}; nothing to approve")
        return self.repo.add_approval(version_id, alias, self.actor(), self.now(), reason.strip() if reason else None)

    # ---- rollback and rehearsal ---------------------------------------------------------------------
    def previous_target(self, alias: str) -> str:
        """What a plain ``rollback`` returns to: the target the current one replaced when it was
        promoted. Promotions stack up and rollbacks unwind the stack, so rolling back twice goes
        two steps back and never forward again to the version the first rollback left."""
        stack = deploy_stack(self.repo.history(alias))
        if len(stack) < 2:
            raise CheckFailedError(f"alias '{alias}' has no previous target to roll back to; give --to REF")
        return stack[-2]

    def rollback(
        self,
        alias: str,
        to_ref: str | None = None,
        force: bool = False,
        reason: str | None = None,
        expect: str | None = None,
    ) -> MoveResult:
        """Return ``alias`` to its previous target (or ``to_ref``) after the reversibility check."""
        started = time.perf_counter()
        if force and not (reason and reason.strip()):
            raise UsageError("--force needs --reason R: an override is recorded with why")
        if reason is not None and not reason.strip():
            raise UsageError("--reason: must not be empty")
        state = self.state(alias)
        expected = self._expect(expect, alias)
        if expected is not None and expected != state.version_id:
            raise CheckFailedError(
                f"--expect {expect}: alias '{alias}' is at {state.version_id[:12]}, not at {expected[:12]}; nothing moved"
            )
        target = self.project.resolve(to_ref) if to_ref else self.previous_target(alias)
        if target == state.version_id:
            raise CheckFailedError(f"alias '{alias}' already points at {target[:12]}; nothing to roll back")
        if to_ref is not None:
            self._check_served(alias, to_ref, target)
        governing = self.governing(alias, state.version_id, target)
        policy = governing.policy
        if policy.requires_reason and not reason:
            raise CheckFailedError(
                governing.explain("rollback refused: tier 'regulated' requires a reason on every move; add --reason R")
            )
        report = check_reversibility(self.project, policy, state.version_id, target)
        if report.blocking:
            component, finding = report.blocking[0]
            raise RollbackRefusedError(
                f"rollback refused: the target {target[:12]} cannot be served: {component}: {finding.message}", report
            )
        overridden = [f"{component}: {finding.message}" for component, finding in report.irreversible]
        if overridden and not force:
            raise RollbackRefusedError(
                f"rollback refused: irreversible: {overridden[0]}"
                + (f" (and {len(overridden) - 1} more)" if len(overridden) > 1 else "")
                + "; override with --force --reason R",
                report,
            )
        evidence = self._evidence(governing, reversibility=report.to_json(), overridden=overridden if force else [])
        move = self._move(alias, target, "rollback", state, expected, reason, evidence, forced=force and bool(overridden))
        warnings = [f"{component}: {finding.message}" for component, finding in report.warnings]
        return MoveResult(move, report=report, warnings=warnings, seconds=time.perf_counter() - started)

    def _check_served(self, alias: str, to_ref: str, target: str) -> None:
        """Refuse ``rollback --to`` a version the alias never served: a rollback runs no promotion
        gate (approval, pinned or retired model, eval, rehearsal), so only a version that went
        through them for this alias may be returned to; anything else is a promotion."""
        if any(move.to_version == target for move in self.repo.history(alias)):
            return
        raise CheckFailedError(
            f"rollback --to {to_ref}: {alias} never served {target[:12]}; a rollback goes back to an earlier "
            f"target of {alias}: promote a new version with `tether promote {target[:12]} --to {alias}` (it runs the gates)"
        )

    def rehearse(self, alias: str, to_ref: str | None = None, from_ref: str | None = None) -> RehearsalResult:
        """Everything a rollback does except moving the alias; the result is recorded."""
        check_alias_name(alias, "ALIAS")
        state = self.repo.get_alias(alias)
        if from_ref is not None:
            source = self.project.resolve(from_ref)
        elif state is not None:
            source = state.version_id
        else:
            raise ReferenceNotFoundError(f"alias '{alias}': no such alias; give --from REF to rehearse a path back")
        if to_ref is not None:
            target = self.project.resolve(to_ref)
        elif state is not None and source != state.version_id:
            target = state.version_id  # the path back from a candidate to what the alias serves now
        elif state is not None:
            target = self.previous_target(alias)
        else:
            raise UsageError(f"alias '{alias}' has no target yet: give --to REF")
        if source == target:
            raise UsageError(f"nothing to rehearse: from and to are the same version {source[:12]}")
        steps: list[dict[str, Any]] = []
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tether-rehearsal-") as tmp:
            folder = Path(tmp) / "version"
            ok = self._step(steps, "materialize", lambda: self._materialize(target, folder))
            ok = ok and self._step(steps, "verify", lambda: self._verify_folder(target, folder))
            if ok and self.policy.smoke:
                ok = self._step(steps, "smoke", lambda: self._smoke(alias, target, folder))
            elif ok:
                steps.append({"step": "smoke", "ok": True, "detail": "skipped: no policy.smoke declared", "seconds": 0.0})
        report = check_reversibility(self.project, self.policy, source, target, verify_objects=False)
        blocking = [f"{component}: {finding.message}" for component, finding in report.blocking]
        if blocking:
            detail = f"{report.verdict}: {blocking[0]}"
        elif report.irreversible:
            component, finding = report.irreversible[0]
            detail = f"possible with --force --reason only (irreversible: {component}: {finding.message})"
        else:
            detail = report.verdict
        steps.append({"step": "reversibility", "ok": not blocking, "detail": detail, "seconds": 0.0})
        passed = ok and not blocking
        body = {
            "steps": steps,
            "reversibility": report.to_json(),
            "needs_force": bool(report.irreversible),
            "seconds": round(time.perf_counter() - started, 4),
        }
        record = self.repo.add_rehearsal(alias, source, target, self.actor(), self.now(), passed, body)
        return RehearsalResult(record, report, steps)

    @staticmethod
    def _step(steps: list[dict[str, Any]], name: str, action: Any) -> bool:
        begun = time.perf_counter()
        try:
            detail = action()
            ok = True
        except (VerificationError, CheckFailedError, OSError) as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # a smoke check is user code: any failure is a failed rehearsal
            detail, ok = f"{type(exc).__name__}: {exc}", False
        steps.append({"step": name, "ok": ok, "detail": str(detail), "seconds": round(time.perf_counter() - begun, 4)})
        return ok

    def _materialize(self, target: str, folder: Path) -> str:
        result = self.project.checkout(target, dest=folder)
        return f"{result.files_written} files written to a temporary folder"

    def _verify_folder(self, target: str, folder: Path) -> str:
        from tether.ids import digest_file

        count = 0
        for name, snap in self.project.version_snapshots(target).items():
            for entry in snap.files:
                digest, _ = digest_file(folder / entry.path)
                if digest != entry.digest:
                    raise VerificationError(f"component {name}: {entry.path}: materialized bytes do not match {entry.digest[:12]}")
                count += 1
        return f"{count} files re-hashed and verified"

    def _smoke(self, alias: str, target: str, folder: Path) -> str:
        from tether.lifecycle.runtime import LiveVersion

        assert self.policy.smoke is not None
        hook = load_hook(self.policy.smoke, self.project.root, "policy.smoke")
        live = LiveVersion(target, folder, self.project.version_snapshots(target), alias=alias, project_root=self.project.root)
        outcome = hook(live)
        if outcome is False:
            raise CheckFailedError(f"smoke check {self.policy.smoke} returned False")
        return f"{self.policy.smoke} passed"

    # ---- history and protection ----------------------------------------------------------------------
    def history(self, alias: str) -> HistoryReport:
        state = self.repo.get_alias(alias)
        moves = self.repo.history(alias)
        rehearsals = self.repo.rehearsals(alias)
        if state is None and not rehearsals:
            raise ReferenceNotFoundError(f"alias '{alias}': no such alias")
        return HistoryReport(alias, state, moves, rehearsals)

    def protected_versions(self) -> dict[str, list[str]]:
        """Per alias, its last ``rollback_window`` distinct targets (newest first): what gc keeps."""
        window = self.policy.rollback_window
        protected: dict[str, list[str]] = {}
        for name in self.repo.list_aliases():
            targets: list[str] = []
            for move in reversed(self.repo.history(name)):
                if move.to_version not in targets:
                    targets.append(move.to_version)
                if len(targets) >= window:
                    break
            protected[name] = targets
        return protected


class RollbackRefusedError(CheckFailedError):
    """A rollback the reversibility check refused; carries the report so it can be printed."""

    def __init__(self, message: str, report: ReversibilityReport):
        super().__init__(message)
        self.report = report


def protected_objects(project: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """For ``gc``: the rollback targets each alias keeps, and every object they need."""
    lifecycle = Lifecycle(project)
    entries: list[dict[str, Any]] = []
    digests: set[str] = set()
    for alias, targets in sorted(lifecycle.protected_versions().items()):
        for version_id in targets:
            entries.append({"alias": alias, "version_id": version_id})
            try:
                manifest = project.manifest(version_id)
                snapshots = project.version_snapshots(version_id)
            except (VerificationError, ReferenceNotFoundError):
                continue  # fsck names it; what a readable version needs is kept through referenced_objects
            if manifest.project_file:
                digests.add(manifest.project_file)
            for snap in snapshots.values():
                digests.update(entry.digest for entry in snap.files)
    return entries, digests


def deploy_stack(history: list[AliasMove]) -> list[str]:
    """The targets a chain of rollbacks would return through, oldest first, the current last.

    A promotion pushes its target. A rollback pops the version it left, then unwinds to its
    target when that is further down the stack (its nearest entry: a version promoted twice
    returns to what its latest promotion replaced), or else pushes it (a rollback to a version
    the alias never served in this line).
    """
    stack: list[str] = []
    for move in history:
        if move.action == "rollback":
            if stack and stack[-1] == move.from_version:
                stack.pop()
            if move.to_version in stack:
                del stack[len(stack) - stack[::-1].index(move.to_version) :]
                continue
        if not stack or stack[-1] != move.to_version:
            stack.append(move.to_version)
    return stack
