"""``tether``: every command is a few lines over :class:`tether.Project`.

Only Typer is imported at start-up; the project, store, database and Rich are imported by the
commands that use them, so ``tether --help`` and ``tether --version`` answer at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from tether import __version__
from tether.cli.output import click_module, emit_json, fail, handled, usage_failure

if TYPE_CHECKING:
    from tether.project.core import Project

_click = click_module()
_ARGV = "tether.argv"  # the command line as given, kept in the context's meta (is --json among it?)
_SHOWS_HELP: tuple[type[Exception], ...] = tuple(
    cls for cls in (getattr(_click.exceptions, "NoArgsIsHelpError", None),) if cls is not None
)


#: what ``--help`` shows for a value of each type (Typer's own ``<str>`` reads like a placeholder)
_TYPE_METAVARS = {str: "TEXT", int: "INTEGER", float: "FLOAT"}


def _value_metavar(param: TyperOption | TyperArgument, ctx: Any) -> str:
    if param.metavar is not None:
        return str(param.metavar)
    annotation = param.type_descriptor.annotation
    element = get_args(annotation)[0] if get_origin(annotation) is list else annotation
    return _TYPE_METAVARS.get(element) or param.display_type(ctx).strip("<>").upper()


class _HelpOption(TyperOption):
    """An option as ``--help`` shows it: a flag with no placeholder, a value with an uppercase
    metavar (``TEXT``, ``INTEGER``, ``FLOAT`` or its own, like ``N``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return _value_metavar(self, ctx)


class _HelpArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return _value_metavar(self, ctx)


class _HelpContext(_click.Context):
    """Shows ``--help`` with :class:`_HelpOption` and :class:`_HelpArgument`: Typer builds the
    parameters (and the help option, on first use) itself, so their class is switched here, only
    when help is shown."""

    def get_help(self) -> str:
        for param in self.command.get_params(self):
            if type(param) is TyperOption:
                param.__class__ = _HelpOption
            elif type(param) is TyperArgument:
                param.__class__ = _HelpArgument
        return str(super().get_help())


def _natural_help(command: Any) -> None:
    """Every command below ``command`` shows its help through :class:`_HelpContext`."""
    command.context_class = _HelpContext
    for sub in getattr(command, "commands", {}).values():
        _natural_help(sub)


class _RootGroup(TyperGroup):
    """The ``tether`` group: Click's usage errors (a missing argument, a bad value, an unknown
    command or option, at any depth) become tether's one-line error with exit 2, as JSON too
    under ``--json``, instead of Click's boxed usage block. ``--help`` shows options without
    type placeholders (see :class:`_HelpContext`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _natural_help(self)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except _click.exceptions.ClickException as exc:
            if isinstance(exc, _SHOWS_HELP):
                raise
            usage_failure(exc, argv)
        ctx.meta[_ARGV] = argv
        return ctx

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _click.exceptions.ClickException as exc:
            if isinstance(exc, _SHOWS_HELP):
                raise
            usage_failure(exc, ctx.meta.get(_ARGV, ()))


def _wants_json(ctx: Any) -> bool:
    argv: Sequence[str] = ctx.meta.get(_ARGV, ())
    return "--json" in argv


app = typer.Typer(
    name="tether",
    cls=_RootGroup,
    help="Version control for AI systems: one immutable version of the whole behavior.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_state: dict[str, Any] = {"dir": "."}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    directory: Annotated[str, typer.Option("-C", "--project", help="Run as if started in this folder.")] = ".",
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Version control for AI systems."""
    if not os.path.isdir(directory):
        problem = "is not a folder" if os.path.exists(directory) else "does not exist"
        fail(f"-C {directory}: the folder {problem}", 2, _wants_json(ctx))
    _state["dir"] = "."
    if directory != ".":
        # Like git -C: every relative path (--dir, --plot, --jsonl, ...) is taken from there too.
        previous = os.getcwd()
        os.chdir(directory)
        ctx.call_on_close(lambda: os.chdir(previous))


def _open() -> Project:
    from tether.project.core import Project

    return Project.open(_state["dir"])


def _print_findings(findings: list[Any]) -> None:
    from tether.cli.output import notice, warn

    for finding in findings:
        (warn if finding.level == "floating" else notice)(finding.message)


# ---- init / add ---------------------------------------------------------------------------------
@app.command()
def init(
    tier: Annotated[
        str | None, typer.Option(help="Policy tier of a new project: lite, standard (default) or regulated.")
    ] = None,
    store: Annotated[str | None, typer.Option("--store", help="Object store URL (default .tether/objects).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Metadata database URL (default SQLite in .tether/).")] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tether.toml and the .tether/ store in the current folder."""
    with handled(as_json):
        from tether.project.core import Project
        from tether.project.projectfile import check_new_metadata_url

        if db:
            check_new_metadata_url(db, "--db")
        project = Project.init(_state["dir"], tier=tier, store_url=store, db_url=db, name=name)
        try:
            data = {"root": str(project.root), "tier": project.file.tier, "project": project.file.name}
            if as_json:
                emit_json(data)
            else:
                typer.echo(f"Initialized tether project '{project.file.name}' (tier {project.file.tier}) in {project.root}")
        finally:
            project.close()


def _parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value``: values are TOML values when they parse (numbers, booleans, arrays,
    inline tables), else strings; dotted keys make nested tables."""
    import tomllib

    from tether.errors import UsageError

    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {pair}: expected key=value")  # handled() answers (JSON too under --json)
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = settings
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UsageError(f"--set {pair}: '{part}' is already a value, not a table")
        target[parts[-1]] = value
    return settings


def _from_project_root(project: Project, sources: list[str]) -> list[str]:
    """SOURCE paths as given in a subfolder of the project are relative to it (like ``git add``);
    tether.toml records them relative to the project root."""
    here = os.path.realpath(_state["dir"])
    root = os.path.realpath(project.root)
    if here == root:
        return sources
    return [
        source if os.path.isabs(source) else os.path.relpath(os.path.join(here, source), root).replace(os.sep, "/")
        for source in sources
    ]


@app.command()
def add(
    kind: Annotated[str, typer.Argument(help="prompt, config, tools, model, index, evalset, migration or files.")],
    name: Annotated[str, typer.Argument(help="Component name (its table name in tether.toml).")],
    sources: Annotated[list[str] | None, typer.Argument(help="Files, folders or globs.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value, repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare a component in tether.toml."""
    with handled(as_json):
        settings = _parse_settings(set_ or [])
        with _open() as project:
            result = project.add(kind, name, _from_project_root(project, list(sources or [])), settings)
        if as_json:
            emit_json(result.to_json())
            return
        _print_findings(result.findings)
        typer.echo(f"Added {kind} component '{name}' to tether.toml")


# ---- status / commit ------------------------------------------------------------------------------
@app.command()
def status(
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when anything drifted.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every file instead of trusting the stat cache.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Components whose content on disk differs from the current version (drift)."""
    with handled(as_json):
        with _open() as project:
            report = project.status(verify=verify)
        if as_json:
            emit_json(report.to_json())
        else:
            from tether.cli.render import render_status

            render_status(report)
        if exit_code and not report.clean:
            raise typer.Exit(1)


@app.command()
def commit(
    message: Annotated[str, typer.Option("-m", "--message", help="What changed and why.")],
    branch: Annotated[str | None, typer.Option(help="Commit onto this branch (created here) and switch to it.")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Record a version even if nothing changed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot every component into a new version; prints its version ID."""
    with handled(as_json):
        with _open() as project:
            result = project.commit(message, branch=branch, allow_empty=allow_empty)
        if as_json:
            emit_json(result.to_json())
            return
        _print_findings(result.findings)
        from tether.cli.output import err_console

        where = result.branch or "detached HEAD"
        changed = ", ".join(result.changed) if result.changed else "nothing (empty commit)"
        err_console().print(f"[{where}] content {result.content_digest[:12]}; changed: {changed}", markup=False)
        typer.echo(result.version_id)


# ---- history ---------------------------------------------------------------------------------------
@app.command()
def log(
    ref: Annotated[str | None, typer.Argument(help="Start here (default HEAD).")] = None,
    graph: Annotated[bool, typer.Option("--graph", help="Draw the ancestry.")] = False,
    max_count: Annotated[int | None, typer.Option("-n", "--max-count", metavar="N", help="Show at most N versions.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Versions reachable from REF, newest first."""
    if max_count is not None and max_count < 1:
        fail("-n: must be a positive number", 2, as_json)
    with handled(as_json):
        with _open() as project:
            entries = project.log(ref, limit=max_count)
        if as_json:
            emit_json([entry.to_json() for entry in entries])
        else:
            from tether.cli.render import render_log

            render_log(entries, graph)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="A version reference.")] = "HEAD",
    as_json: JsonOpt = False,
) -> None:
    """One version: both digests, parents, message, components and environment."""
    with handled(as_json):
        with _open() as project:
            info, snapshots, environment = project.show(ref)
        if as_json:
            emit_json({
                **info.to_json(),
                "snapshots": {name: snap.to_json() for name, snap in snapshots.items()},
                "environment_capture": environment,
            })
        else:
            from tether.cli.render import render_show

            render_show(info, snapshots, environment)


@app.command()
def diff(
    ref_a: Annotated[str, typer.Argument(help="Old side.")],
    ref_b: Annotated[str | None, typer.Argument(help="New side (default: the working tree).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed, component by component, in each component's own terms."""
    with handled(as_json):
        with _open() as project:
            report = project.diff(ref_a, ref_b)
        if as_json:
            emit_json(report.to_json())
        else:
            from tether.cli.render import render_diff

            render_diff(report)


# ---- materializing and branches ----------------------------------------------------------------
@app.command()
def checkout(
    ref: Annotated[str, typer.Argument(help="A version reference or branch.")],
    dir_: Annotated[str | None, typer.Option("--dir", help="Write into this (new or empty) folder instead.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite uncommitted changes.")] = False,
    link: Annotated[
        bool, typer.Option("--link", help="With --dir: read-only files, hard-linked to the store where possible.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put a version's content back byte for byte (verified)."""
    with handled(as_json):
        with _open() as project:
            result = project.checkout(ref, dest=dir_, force=force, link=link)
        if result.left_behind:
            from tether.cli.output import warn

            warn(f"left version {result.left_behind} behind: no branch or alias reaches it; "
                 f"keep it with `tether branch NAME {result.left_behind}` (`gc --unreachable` may remove its files)")
        if as_json:
            emit_json(result.to_json())
            return
        place = result.destination if dir_ else "the working tree"
        written = f"{result.files_written} file{'' if result.files_written == 1 else 's'} written"
        typer.echo(f"Checked out {result.version_id[:12]} into {place}: {written}"
                   + (f", {result.files_removed} removed" if result.files_removed else ""))


@app.command()
def branch(
    name: Annotated[str | None, typer.Argument(help="New branch name (omit to list).")] = None,
    from_ref: Annotated[str, typer.Argument(help="Start point (default HEAD).")] = "HEAD",
    delete: Annotated[bool, typer.Option("-d", "--delete", help="Delete NAME (its versions stay).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List branches, or create one at a version."""
    with handled(as_json):
        with _open() as project:
            if name is None:
                branches = project.branches()
                current = project.current_branch()
                if as_json:
                    emit_json({"current": current, "branches": branches})
                else:
                    for branch_name, version_id in sorted(branches.items()):
                        mark = "*" if branch_name == current else " "
                        typer.echo(f"{mark} {branch_name:<20} {version_id[:12]}")
                return
            if delete:
                version_id, left_behind = project.delete_branch(name)
                if left_behind:
                    from tether.cli.output import warn

                    warn(f"left version {left_behind} behind: no branch or alias reaches it; "
                         f"keep it with `tether branch NAME {left_behind}` (`gc --unreachable` may remove its files)")
                if as_json:
                    emit_json({"deleted": name, "version_id": version_id, "left_behind": left_behind})
                else:
                    typer.echo(f"Deleted branch {name} (was {version_id[:12]})")
                return
            version_id = project.create_branch(name, from_ref)
        if as_json:
            emit_json({"branch": name, "version_id": version_id})
        else:
            typer.echo(f"Created branch {name} at {version_id[:12]}")


@app.command()
def compose(
    from_ref: Annotated[str, typer.Argument(help="The version to start from.")],
    take: Annotated[list[str], typer.Option("--take", help="NAME=REF: take component NAME from REF (repeatable).")],
    message: Annotated[str, typer.Option("-m", "--message", help="Why this combination.")],
    branch: Annotated[str | None, typer.Option(help="Record on this branch (default: the current one).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite untracked files and uncommitted changes.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recombine whole components from several versions; every source is recorded as a parent."""
    with handled(as_json):
        takes: dict[str, str] = {}
        for item in take:
            component, sep, ref = item.partition("=")
            if not sep or not component or not ref:
                fail(f"--take {item}: expected NAME=REF", 2, as_json)
            takes[component] = ref
        with _open() as project:
            result = project.compose(from_ref, takes, message, branch=branch, force=force)
        if as_json:
            emit_json(result.to_json())
            return
        _print_findings(result.findings)
        typer.echo(result.version_id)


# ---- integrity -----------------------------------------------------------------------------------
@app.command()
def fsck(as_json: JsonOpt = False) -> None:
    """Verify every version, snapshot, reference and object; exit 1 naming each problem."""
    with handled(as_json):
        from tether.cli.output import make_progress

        update, close = make_progress()
        with _open() as project:
            try:
                report = project.fsck(progress=None if as_json else update)
            finally:
                close()
        if as_json:
            emit_json(report.to_json())
        else:
            for problem in report.problems:
                typer.echo(f"error: {problem}", err=True)
            state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
            pruned = f" ({report.pruned} pruned: records only)" if report.pruned else ""
            typer.echo(f"fsck: {report.versions} versions{pruned}, {report.snapshots} snapshots, {report.objects} objects: {state}")
        if not report.ok:
            raise typer.Exit(1)


@app.command()
def gc(
    grace: Annotated[
        float, typer.Option(metavar="SECONDS", help="Keep unreferenced objects younger than this many seconds.")
    ] = 3600.0,
    now: Annotated[bool, typer.Option("--now", help="No grace period.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    unreachable: Annotated[
        bool,
        typer.Option(
            "--unreachable",
            help="Also remove the files of versions no branch, alias history, rehearsal or audit record reaches (their records stay).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove objects that no version refers to (after a grace period)."""
    with handled(as_json):
        if not grace >= 0:  # also refuses nan
            fail(f"--grace: expected 0 or more seconds, got {grace:g}", 2, as_json)
        from tether.cli.output import make_progress

        update, close = make_progress()
        with _open() as project:
            try:
                report = project.gc(
                    grace_seconds=0.0 if now else grace,
                    dry_run=dry_run,
                    progress=None if as_json else update,
                    unreachable=unreachable,
                )
            finally:
                close()
        if as_json:
            emit_json(report.to_json())
        else:
            from tether.sizes import human_bytes

            verb = "would remove" if dry_run else "removed"
            if report.pruned:
                count = len(report.pruned)
                typer.echo(f"gc: {verb} the files of {count} unreachable version{'' if count == 1 else 's'} (records kept):")
                for item in report.pruned:
                    typer.echo(f"  {item['version_id'][:12]}  {item['created_at'][:19]}  {item['message']}")
            typer.echo(f"gc: {verb} {len(report.removed)} objects ({human_bytes(report.bytes_freed)}), kept {report.kept}"
                       + (f", cleaned {report.temporary_removed} temporary files" if report.temporary_removed else ""))
            if report.kept_young:
                count = report.kept_young
                typer.echo(
                    f"gc: kept {count} unreferenced object{'' if count == 1 else 's'} ({human_bytes(report.kept_young_bytes)}): "
                    f"younger than the grace period ({report.grace_seconds:g} seconds)"
                )
            if report.live_removed:
                typer.echo(f"gc: {verb} the live copies of {len(report.live_removed)} version{'' if len(report.live_removed) == 1 else 's'} no alias keeps: "
                           + ", ".join(version_id[:12] for version_id in report.live_removed))
            for alias in sorted({item["alias"] for item in report.protected}):
                kept = [item["version_id"][:12] for item in report.protected if item["alias"] == alias]
                typer.echo(f"gc: protected the last {len(kept)} rollback target(s) of alias {alias}: {', '.join(kept)}")


# ---- feature command groups: each module adds its commands to `app` when imported ----------------
# (one import line per feature, below this comment; the modules import only typer at top level)
from tether.cli import lifecycle as _lifecycle  # noqa: E402, I001
_lifecycle.register(app)
from tether.cli import repro as _repro  # noqa: E402, I001
_repro.register(app)
from tether.cli import audit as _audit  # noqa: E402, I001
_audit.register(app)


def run() -> None:
    """Entry point for ``python -m tether.cli.main`` (the ``tether`` script uses tether.cli.entry)."""
    from tether.cli.entry import run as entry_run

    entry_run()


if __name__ == "__main__":
    run()
