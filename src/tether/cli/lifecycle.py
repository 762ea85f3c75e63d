"""``promote``, ``rollback``, ``history``, ``approve`` and ``policy check``: the deploy lifecycle.

Thin over :class:`tether.lifecycle.deploy.Lifecycle`; only Typer is imported at start-up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli.output import emit_json, handled

if TYPE_CHECKING:
    from tether.lifecycle.deploy import Lifecycle
    from tether.lifecycle.reversibility import ReversibilityReport
    from tether.project.core import Project

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_LEVEL_MARK = {"ok": "ok", "warning": "WARNING", "irreversible": "IRREVERSIBLE", "blocking": "UNAVAILABLE"}


def _open(ctx: typer.Context) -> tuple[Project, Lifecycle]:
    """The project of ``-C DIR`` (read from the root command, so this works under ``python -m``
    too, where the main module is imported twice) and its lifecycle."""
    from tether.lifecycle.deploy import Lifecycle
    from tether.project.core import Project

    directory = ctx.find_root().params.get("directory") or "."
    project = Project.open(directory)
    try:
        return project, Lifecycle(project)
    except BaseException:
        project.close()
        raise


def _short(version_id: str | None) -> str:
    return version_id[:12] if version_id else "(none)"


def print_reversibility(report: ReversibilityReport) -> None:
    """The per-component report a rollback (or rehearsal) shows before it acts."""
    echo = typer.echo
    echo(f"Reversibility check {_short(report.from_version)} -> {_short(report.to_version)}: {report.verdict}")
    if not report.components:
        echo("  no component differs")
    for item in report.components:
        echo(f"  {item.name} ({item.kind}, {item.change})")
        for finding in item.findings:
            echo(f"    {_LEVEL_MARK.get(finding.level, finding.level):<12} {finding.check}: {finding.message}")
    state = "present and verified" if report.verified else "present"
    problems = len(report.blocking)
    echo(f"  objects of the target: {report.objects_checked} checked" + (f", {problems} problem(s)" if problems else f", all {state}"))


def _refused(exc: Any, as_json: bool) -> None:
    """A refused rollback: the report, then the one-line error, exit 1."""
    if as_json:
        emit_json({"error": str(exc), "exit_code": 1, "reversibility": exc.report.to_json()})
    else:
        print_reversibility(exc.report)
    sys.stderr.write(f"tether: error: {exc}\n")
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to ``app``."""

    @app.command(rich_help_panel="Deploy")
    def promote(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="The version to promote.")],
        to: Annotated[str, typer.Option("--to", help="The alias to move (prod, staging, ...).")],
        reason: Annotated[str | None, typer.Option("--reason", help="Why (required in the regulated tier).")] = None,
        expect: Annotated[
            str | None, typer.Option("--expect", help="Refuse unless the alias points here now (compare-and-swap).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Move an alias to a version once every gate of the tier passes."""
        with handled(as_json):
            project, lifecycle = _open(ctx)
            with project:
                result = lifecycle.promote(ref, to, reason=reason, expect=expect)
            if as_json:
                emit_json(result.to_json())
                return
            _print_governed_by(result.move.evidence.get("governed_by"))
            for gate in result.gates:
                typer.echo(f"  {gate.status:<8} {gate.gate:<14} {gate.detail}")
            for warning in result.warnings:
                from tether.cli.output import warn

                warn(warning)
            move = result.move
            typer.echo(f"Promoted {to}: {_short(move.from_version)} -> {_short(move.to_version)} (move #{move.seq})")

    @app.command(rich_help_panel="Deploy")
    def rollback(
        ctx: typer.Context,
        alias: Annotated[str, typer.Argument(help="The alias to move back.")],
        to: Annotated[str | None, typer.Option("--to", help="Roll back to a version this alias served before (default: the previous target).")] = None,
        rehearse: Annotated[
            bool, typer.Option("--rehearse", help="Do everything except moving the alias, and record it.")
        ] = False,
        from_: Annotated[
            str | None,
            typer.Option("--from", help="With --rehearse: rehearse the path back from this candidate (before promoting it)."),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Override irreversible findings (needs --reason).")] = False,
        reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded in the history.")] = None,
        expect: Annotated[
            str | None, typer.Option("--expect", help="Refuse unless the alias points here now (compare-and-swap).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Return an alias to its previous target (or --to REF) after a reversibility check."""
        from tether.errors import UsageError

        with handled(as_json):
            if from_ is not None and not rehearse:
                raise UsageError("--from: only with --rehearse (a rollback always starts where the alias points)")
            if rehearse and (force or expect):
                raise UsageError("--rehearse: --force and --expect apply to a real rollback only")
            project, lifecycle = _open(ctx)
            with project:
                if rehearse:
                    _rehearse(lifecycle, alias, to, from_, as_json)
                    return
                from tether.lifecycle.deploy import RollbackRefusedError

                try:
                    result = lifecycle.rollback(alias, to, force=force, reason=reason, expect=expect)
                except RollbackRefusedError as exc:
                    _refused(exc, as_json)
            if as_json:
                emit_json(result.to_json())
                return
            assert result.report is not None
            _print_governed_by(result.move.evidence.get("governed_by"))
            print_reversibility(result.report)
            move = result.move
            forced = " (forced: irreversible findings overridden)" if move.forced else ""
            typer.echo(
                f"Rolled back {alias}: {_short(move.from_version)} -> {_short(move.to_version)} "
                f"(move #{move.seq}, {result.seconds:.3f} s){forced}"
            )

    @app.command(rich_help_panel="Deploy")
    def history(
        ctx: typer.Context,
        alias: Annotated[str, typer.Argument(help="An alias.")],
        as_json: JsonOpt = False,
    ) -> None:
        """Every move of an alias (who, when, from, to, why, evidence) and its rehearsals."""
        with handled(as_json):
            project, lifecycle = _open(ctx)
            with project:
                report = lifecycle.history(alias)
            if as_json:
                emit_json(report.to_json())
                return
            _print_history(report)

    @app.command(rich_help_panel="Deploy")
    def approve(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="The version to approve.")],
        for_: Annotated[str, typer.Option("--for", help="The alias it may be promoted to.")],
        reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Approve promoting a version to an alias (regulated: someone other than the promoter)."""
        with handled(as_json):
            project, lifecycle = _open(ctx)
            with project:
                record = lifecycle.approve(ref, for_, reason=reason)
            if as_json:
                emit_json(record.to_json())
                return
            typer.echo(
                f"Approved {_short(record.version_id)} for {record.alias} by {record.approver} "
                "(it counts when someone else promotes)"
            )

    policy_app = typer.Typer(help="The tier's gates: what a promotion needs.", no_args_is_help=True)
    app.add_typer(policy_app, name="policy", rich_help_panel="Deploy")

    @policy_app.command("check")
    def policy_check(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="The candidate version (default HEAD).")] = "HEAD",
        to: Annotated[str | None, typer.Option("--to", help="The alias (default: the first production alias).")] = None,
        reason: Annotated[str | None, typer.Option("--reason", help="The reason you would give.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Explain what promoting REF would need under the tier and what is missing (exit 1 if anything is)."""
        with handled(as_json):
            project, lifecycle = _open(ctx)
            with project:
                alias = to or lifecycle.policy.production_aliases[0]
                report = lifecycle.plan(ref, alias, reason=reason)
            if as_json:
                emit_json(report.to_json())
            else:
                typer.echo(
                    f"policy check: promote {_short(report.candidate)} to {alias} "
                    f"(tier {report.tier}; {alias} is at {_short(report.current)})"
                )
                _print_governed_by(report.governed_by)
                for gate in report.gates:
                    mark = "FAILED" if gate.failed else gate.status
                    typer.echo(f"  {mark:<8} {gate.gate:<14} {gate.detail}")
                    if gate.failed and gate.fix:
                        typer.echo(f"  {'':<8} {'':<14} fix: {gate.fix}")
                missing = ", ".join(gate.gate for gate in report.missing)
                typer.echo("ready: yes" if report.ready else f"ready: no (missing: {missing})")
            if not report.ready:
                raise typer.Exit(1)


def _print_governed_by(governed_by: dict[str, Any] | None) -> None:
    """Why a move runs under a tier other than the working tether.toml's (a version's recorded one)."""
    if governed_by:
        typer.echo(f"  {governed_by['why']}")


def _rehearse(lifecycle: Lifecycle, alias: str, to: str | None, from_: str | None, as_json: bool) -> None:
    result = lifecycle.rehearse(alias, to_ref=to, from_ref=from_)
    if as_json:
        emit_json(result.to_json())
    else:
        record = result.record
        typer.echo(f"Rehearsal #{record.id} of {alias}: {_short(record.from_version)} -> {_short(record.to_version)}")
        for step in result.steps:
            typer.echo(f"  {'ok' if step['ok'] else 'FAILED':<7} {step['step']:<14} {step['detail']}")
        print_reversibility(result.report)
        if result.passed and result.needs_force:
            typer.echo("rehearsal passed; a real rollback will need --force --reason (irreversible findings above)")
        else:
            typer.echo("rehearsal passed" if result.passed else "rehearsal FAILED")
    if not result.passed:
        raise typer.Exit(1)


def _print_history(report: Any) -> None:
    """Moves and rehearsals, oldest first; each move labelled ``ALIAS@{N}`` as references name it."""
    from tether.meta.lifecycle import AliasMove

    alias, current = report.alias, report.current
    where = f"-> {_short(current.version_id)} ({current.moves} moves)" if current else "(never promoted)"
    typer.echo(f"alias {alias} {where}")
    total = len(report.moves)
    pad = " " * 17
    for _, item in report.events():
        if isinstance(item, AliasMove):
            label = f"{alias}@{{{total - item.seq}}}"
            flags = "  FORCED" if item.forced else ""
            typer.echo(
                f"{label:<12} #{item.seq:<3} {item.time}  {item.action:<9} "
                f"{_short(item.from_version)} -> {_short(item.to_version)}  by {item.actor}{flags}"
            )
            if item.reason:
                typer.echo(f"{pad} reason: {item.reason}")
            governed_by = item.evidence.get("governed_by")
            if governed_by:
                typer.echo(f"{pad} {governed_by['why']}")
            gates = [gate for gate in item.evidence.get("gates", []) if gate.get("status") != "skipped"]
            if gates:
                typer.echo(f"{pad} gates: " + ", ".join(f"{gate['gate']} {gate['status']}" for gate in gates))
            reversibility = item.evidence.get("reversibility")
            if reversibility:
                typer.echo(f"{pad} reversibility: {reversibility.get('verdict')}")
            for text in item.evidence.get("overridden", []):
                typer.echo(f"{pad} overridden: {text}")
        else:
            verdict = "passed" if item.passed else "FAILED"
            needs = " (a rollback will need --force)" if item.report.get("needs_force") else ""
            typer.echo(
                f"{'rehearsal':<12} #{item.id:<3} {item.time}  {verdict:<9} "
                f"{_short(item.from_version)} -> {_short(item.to_version)}  by {item.actor}{needs}"
            )
