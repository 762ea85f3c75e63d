"""``tether eval run|compare|list`` and ``tether repro check``: behavioral reproducibility.

Only Typer is imported here at start-up; NumPy, SciPy and Matplotlib are imported by the
commands that need them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli.output import emit_json, handled

if TYPE_CHECKING:
    from tether.repro.compare import ComparisonReport
    from tether.repro.runs import EvalRun

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
PlotOpt = Annotated[str | None, typer.Option("--plot", help="Draw the comparison into FILE.png (or .svg, .pdf).")]
# Typer renders help as rich markup, which drops an unescaped [table]: write it \[table].
MarginOpt = Annotated[
    float | None, typer.Option("--margin", help=r"Equivalence margin on the mean score (default: \[evals] margin, 0.02).")
]
MAX_ERRORS_SHOWN = 5

eval_app = typer.Typer(
    name="eval", help="Run eval sets against versions and compare the runs.", no_args_is_help=True
)
repro_app = typer.Typer(
    name="repro", help="Check that a version's behavior reproduces (bitwise, fixed-environment, behavioral).",
    no_args_is_help=True,
)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 case``, ``2 cases`` (textdiff's, imported when first used)."""
    from tether.components.textdiff import plural as counted

    return counted(count, noun, nouns)


def register(app: typer.Typer) -> None:
    """Add the ``eval`` and ``repro`` command groups to ``tether``."""
    app.add_typer(eval_app, name="eval")
    app.add_typer(repro_app, name="repro")


def _progress() -> tuple[Any, Any]:
    """A Rich progress bar on stderr for the calls of a run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tether.cli.output import err_console

    bar = Progress(
        TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console(), transient=True,
    )
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task("eval", total=total)
        bar.update(state["task"], completed=done, total=total)

    def close() -> None:
        if "task" in state:
            bar.stop()

    return update, close


def _evalset_shown(name: str, snapshot: str, source: str | None, word: str = "from version ") -> str:
    """An eval set as a run used it: name, snapshot, and the version it came from when not the run's own."""
    return f"{name} {snapshot[:12]}" + (f" {word}{source[:12]}" if source else "")


def _run_lines(run: EvalRun) -> list[str]:
    s = run.summary
    seed = f"seed {s['seed']}" + ("" if s.get("seed_passed") else " (not taken by the runner)")
    evalset = _evalset_shown(f"'{run.evalset}'", run.evalset_snapshot, run.evalset_from)
    return [
        f"eval run {run.run_id}",
        f"  version {run.version_id[:12]} · eval set {evalset} · {plural(s['cases'], 'case')} x {s['repeat']} repeat(s) · "
        f"{seed} · {s['parallel']} thread(s)",
        f"  runner {s['runner']} · scorer {s['scorer']}",
        f"  mean score {s['mean_score']:.4f} · {s['errors']} error(s) in {s['calls']} calls · {s['seconds']:.2f} s",
    ]


def _warn_errors(run: EvalRun) -> None:
    from tether.cli.output import warn

    errors = run.errors()
    if not errors:
        return
    warn(f"{len(errors)} of {run.summary['calls']} calls failed ({plural(run.summary['errored_cases'], 'case')}); each scored 0")
    for error in errors[:MAX_ERRORS_SHOWN]:
        warn(f"case {error['key']} (line {error['line']}) repeat {error['repeat']}: {error['stage']} raised "
             f"{error['type']}: {error['message']}")
    if len(errors) > MAX_ERRORS_SHOWN:
        warn(f"... and {len(errors) - MAX_ERRORS_SHOWN} more (see `tether eval show RUN`)")


def _execute(project: Any, ref: str, progress: bool, **options: Any) -> EvalRun:
    from tether.repro.executor import run_eval

    update, close = _progress() if progress else (None, None)
    try:
        return run_eval(project, ref, progress=update, **options)
    finally:
        if close is not None:
            close()


@eval_app.command("run")
def eval_run(
    ref: Annotated[str, typer.Argument(help="The version to evaluate.")],
    evalset: Annotated[str | None, typer.Option("--evalset", help="The evalset component (when there are several).")] = None,
    evalset_from: Annotated[
        str | None,
        typer.Option("--evalset-from", metavar="REF", help="Use this version's eval set (e.g. the current target on a candidate's cases)."),
    ] = None,
    runner: Annotated[str | None, typer.Option("--runner", help=r"module:function (default: \[evals] runner).")] = None,
    repeat: Annotated[int | None, typer.Option("--repeat", help="Run every case K times.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=r"Run seed (default: \[evals] seed, else random).")] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", help="Worker threads (if the runner allows).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every case of the version's eval set and store the run (outputs, scores, seeds, environment)."""
    from tether.cli.main import _open

    with handled(as_json):
        with _open() as project:
            run = _execute(project, ref, not as_json, evalset=evalset, evalset_from=evalset_from, runner=runner,
                           repeat=repeat, seed=seed, parallel=parallel)
        if as_json:
            emit_json(run.to_json())
            return
        _warn_errors(run)
        for line in _run_lines(run):
            typer.echo(line)


@eval_app.command("list")
def eval_list(
    ref: Annotated[str | None, typer.Argument(help="Only runs of this version.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stored eval runs, oldest first."""
    from tether.cli.main import _open
    from tether.repro.runs import list_run_records

    with handled(as_json):
        with _open() as project:
            version_id = project.resolve(ref) if ref else None
            records = list_run_records(project, version_id=version_id)
        if as_json:
            emit_json([
                {"run_id": r.run_id, "version_id": r.version_id, "evalset": r.evalset,
                 "evalset_snapshot": r.evalset_snapshot, "created_at": r.created_at, "summary": r.summary_json()}
                for r in records
            ])
            return
        if not records:
            typer.echo("no eval runs" + (f" of {version_id[:12]}" if version_id else ""))
            return
        for record in records:
            s = record.summary_json()
            evalset = _evalset_shown(record.evalset, record.evalset_snapshot, s.get("evalset_from"), "from ")
            typer.echo(f"{record.run_id[:12]}  version {record.version_id[:12]}  {record.created_at[:19]}  "
                       f"{evalset}  {s['cases']}x{s['repeat']}  mean {s['mean_score']:.4f}  "
                       f"errors {s['errors']}  seed {s['seed']}")


def _environment_lines(run: EvalRun) -> list[str]:
    env = run.environment or {}
    python = env.get("python", {})
    system = env.get("platform", {})
    accelerator = env.get("accelerator", {})
    frameworks = accelerator.get("frameworks", {})
    present = [name for name, info in frameworks.items() if info.get("present")]
    device = f"{accelerator.get('vendor', 'present')} driver {accelerator.get('driver')}" if accelerator.get("present") else "none"
    variables = ", ".join(f"{key}={value}" for key, value in sorted(env.get("env", {}).items())) or "none set"
    return [
        f"  environment {run.summary.get('environment_fingerprint', '')[:12]}: Python {python.get('version')} on "
        f"{system.get('system')} {system.get('machine')}, {len(env.get('packages', {}))} packages",
        f"  accelerator {device}; frameworks {', '.join(present) or 'none installed'}; variables {variables}",
    ]


@eval_app.command("show")
def eval_show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run ID or a 6+ hex prefix.")],
    cases: Annotated[int, typer.Option("--cases", help="Show at most N cases (0: none).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """One stored run: its summary, environment and per-case outputs, scores and errors."""
    from tether.cli.main import _open
    from tether.repro.runs import load_run

    with handled(as_json):
        with _open() as project:
            run = load_run(project, run_ref)
        if as_json:
            emit_json(run.to_json(include_cases=True))
            return
        for line in [*_run_lines(run), *_environment_lines(run)]:
            typer.echo(line)
        for case in run.cases[: max(0, cases)]:
            scores = [result["score"] for result in case["results"]]
            first = case["results"][0]
            if first.get("error"):
                shown = f"{first['error']['stage']} raised {first['error']['type']}: {first['error']['message']}"
            else:
                content = first["output"]["content"]
                shown = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            shown = " ".join(shown.split())
            typer.echo(f"  {case['key'][:24]:<24} line {case['line']:<5} scores {scores}  {shown[:70]}")
        if len(run.cases) > max(0, cases):
            more = plural(len(run.cases) - max(0, cases), "more case", "more cases")
            typer.echo(f"  ... and {more} (--cases N, or --json for all)")


def _margin(project: Any, margin: float | None) -> float:
    from tether.errors import UsageError
    from tether.repro.executor import evalset_settings

    if margin is None:
        return evalset_settings(project).margin
    if not 0 < margin < 1:
        raise UsageError(f"--margin {margin}: expected a number between 0 and 1 (exclusive)")
    return margin


def _report_out(report: ComparisonReport, as_json: bool, plot: str | None, extra: dict[str, Any],
                labels: tuple[str, str]) -> None:
    plotted = None
    plot_error = None
    if plot:
        from tether.repro.plot import plot_comparison

        try:
            plotted = str(plot_comparison(report, plot, *labels))
        except ImportError as exc:  # the report is still printed; the missing plot fails the command
            plot_error = f"--plot: matplotlib is not available ({exc})"
    if as_json:
        document = {**extra, **report.to_json(), "plot": plotted}
        if plot_error:
            document.update({"error": plot_error, "exit_code": 2})
        emit_json(document)
    else:
        for line in report.lines(*labels):
            typer.echo(line)
        if plotted:
            typer.echo(f"plot: {plotted}")
    if plot_error:
        sys.stderr.write(f"tether: error: {plot_error}\n")
        raise typer.Exit(2)
    if not report.reproduced:
        raise typer.Exit(1)


def _check_plot(plot: str | None) -> None:
    """Refuse an unwritable --plot path before any work is done."""
    if plot:
        from tether.repro.plot import check_plot_path

        check_plot_path(plot)


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[str, typer.Argument(help="The baseline run (ID or 6+ hex prefix).")],
    run_b: Annotated[str, typer.Argument(help="The run compared against it.")],
    plot: PlotOpt = None,
    margin: MarginOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two runs: bitwise, fixed-environment and behavioral; exit 0 only for REPRODUCED."""
    from tether.cli.main import _open

    with handled(as_json):
        _check_plot(plot)
        from tether.repro.compare import compare_runs
        from tether.repro.runs import load_run

        with _open() as project:
            chosen = _margin(project, margin)
            first, second = load_run(project, run_a), load_run(project, run_b)
        report = compare_runs(first, second, margin=chosen)
        _report_out(report, as_json, plot, {}, ("A", "B"))


@repro_app.command("check")
def repro_check(
    ref: Annotated[str, typer.Argument(help="The version to check.")],
    baseline: Annotated[str | None, typer.Option("--baseline", help="The run to reproduce (default: the latest run of REF).")] = None,
    evalset: Annotated[str | None, typer.Option("--evalset", help="The evalset component (when there are several).")] = None,
    runner: Annotated[str | None, typer.Option("--runner", help="module:function (default: the baseline's runner).")] = None,
    repeat: Annotated[int | None, typer.Option("--repeat", help="Repeats (default: the baseline's).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Run seed (default: the baseline's).")] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", help="Worker threads (if the runner allows).")] = None,
    plot: PlotOpt = None,
    margin: MarginOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the eval set of REF again and compare with a baseline run; exit 0 only for REPRODUCED."""
    from tether.cli.main import _open

    with handled(as_json):
        _check_plot(plot)
        from tether.repro.compare import compare_runs
        from tether.repro.executor import choose_evalset, evalset_settings
        from tether.repro.runs import latest_run, load_run

        with _open() as project:
            chosen = _margin(project, margin)
            version_id = project.resolve(ref)
            if baseline is not None:
                base = load_run(project, baseline)
                if evalset is not None and evalset != base.evalset:
                    from tether.errors import UsageError

                    raise UsageError(f"--baseline {baseline}: the run is over eval set '{base.evalset}', not '{evalset}'")
                # the baseline's eval set: REF's own, or the version it was taken from (--evalset-from)
                name, snapshot = choose_evalset(project, base.evalset_from or version_id, base.evalset)
                if snapshot != base.evalset_snapshot:
                    from tether.errors import UsageError

                    raise UsageError(
                        f"--baseline {baseline}: the run is over another eval set (snapshot {base.evalset_snapshot[:12]}) "
                        f"than version {version_id[:12]}'s '{name}' ({snapshot[:12]}); refusing to compare"
                    )
            else:
                name, snapshot = choose_evalset(project, version_id, evalset or evalset_settings(project).evalset)
                base = latest_run(project, version_id, name, ref, evalset_snapshot=snapshot)
            again = _execute(
                project, version_id, not as_json, evalset=base.evalset, evalset_from=base.evalset_from,
                runner=runner or base.summary["runner"],
                repeat=repeat if repeat is not None else base.summary["repeat"],
                seed=seed if seed is not None else base.summary["seed"],
                parallel=parallel, scorer=base.summary["scorer"], scorer_options=_scorer_options(base),
            )
        if not as_json:
            _warn_errors(again)
            typer.echo(f"repro check of version {version_id[:12]}: new run {again.run_id[:12]} against baseline "
                       f"{base.run_id[:12]}")
        report = compare_runs(base, again, margin=chosen)
        _report_out(report, as_json, plot, {"baseline": base.run_id, "run": again.run_id}, ("baseline", "new"))


def _scorer_options(run: EvalRun) -> dict[str, Any]:
    """The baseline's scorer options in ``[evals]`` form (so the new run is scored the same way)."""
    return dict(run.summary.get("scorer_options") or {})
