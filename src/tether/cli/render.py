"""Human-readable output of status, log, show and diff (Rich)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from tether.cli.output import console
from tether.components import ComponentDiff, Snapshot
from tether.components.textdiff import plural, quote_path
from tether.project.results import DiffReport, StatusReport, VersionInfo
from tether.sizes import human_bytes

_STATE_STYLE = {
    "clean": "green", "modified": "yellow", "added": "cyan", "removed": "red", "missing": "red", "invalid": "magenta",
}
_FLAG_STYLE = "bold red"


def short(version_id: str | None) -> str:
    return version_id[:12] if version_id else "(none)"


def render_status(report: StatusReport) -> None:
    out = console()
    where = f"on branch {report.branch}" if report.branch else "HEAD detached"
    out.print(f"{where}, at version {short(report.head)}")
    if report.branch and report.synced and report.synced != report.head:
        moved = f"moved to {short(report.head)}" if report.head else "was deleted"
        out.print(
            f"[yellow]note:[/yellow] branch {escape(report.branch)} {moved} since this working tree was at "
            f"{short(report.synced)} (another working copy committed); the drift below is against "
            f"{short(report.head)}; `tether checkout {escape(report.branch)}` updates the tree"
        )
    if report.clean:
        out.print("[green]clean:[/green] every component matches the current version")
        return
    out.print("drift (changes no version records):")
    for item in report.components:
        if item.state == "clean":
            continue
        style = _STATE_STYLE.get(item.state, "white")
        out.print(f"  [{style}]{item.state:<9}[/{style}] {escape(item.name)} ({item.kind})")
        if item.spec_changed:
            out.print("             declaration changed in tether.toml")
        for change in item.files:
            out.print(f"             {change['change']}: {escape(quote_path(change['path']))}")
        if item.error:
            out.print(f"             {escape(item.error)}")
    if report.settings_changed:
        style = _STATE_STYLE.get("modified", "white")
        out.print(f"  [{style}]{'modified':<9}[/{style}] tether.toml (project settings outside the components)")


def graph_rows(entries: list[VersionInfo]) -> list[tuple[str, VersionInfo | None]]:
    """Lanes for ``log --graph``: one row per version, plus connector rows where lines fork or join."""
    rows: list[tuple[str, VersionInfo | None]] = []
    lanes: list[str | None] = []
    for entry in entries:
        if entry.version_id not in lanes:
            if None in lanes:
                lanes[lanes.index(None)] = entry.version_id
            else:
                lanes.append(entry.version_id)
        column = lanes.index(entry.version_id)
        merging = [index for index, lane in enumerate(lanes) if lane == entry.version_id and index != column]
        row = " ".join("*" if index == column else ("|" if lane else " ") for index, lane in enumerate(lanes))
        rows.append((row, entry))
        for index in merging:
            lanes[index] = None
        if merging:
            rows.append((" ".join("/" if index in merging else ("|" if lane else " ") for index, lane in enumerate(lanes)), None))
        parents = list(entry.parents)
        lanes[column] = parents[0] if parents else None
        extra = [parent for parent in parents[1:] if parent not in lanes]
        if extra:
            for parent in extra:
                lanes.append(parent)
            connector = " ".join("|" if lane else " " for lane in lanes[: column + 1])
            connector += "\\" if len(lanes) > column + 1 else ""
            rows.append((connector, None))
        while lanes and lanes[-1] is None:
            lanes.pop()
    return rows


def render_log(entries: list[VersionInfo], graph: bool) -> None:
    out = console()
    rows = graph_rows(entries) if graph else [("", entry) for entry in entries]
    for prefix, entry in rows:
        lead = f"{prefix} " if prefix else ""
        if entry is None:
            out.print(lead.rstrip())
            continue
        refs = f" [bold cyan]({escape(', '.join(entry.refs))})[/bold cyan]" if entry.refs else ""
        first_line = entry.message.splitlines()[0] if entry.message else ""
        if graph:
            out.print(f"{lead}[yellow]{short(entry.version_id)}[/yellow]{refs} {escape(first_line)}"
                      f" [dim]- {escape(entry.author)}, {entry.time[:19]}Z[/dim]")
            continue
        out.print(f"[yellow]version {entry.version_id}[/yellow]{refs}")
        out.print(f"content: {entry.content_digest}")
        if len(entry.parents) > 1:
            out.print("parents: " + " ".join(short(parent) for parent in entry.parents))
        out.print(f"author:  {escape(entry.author)}")
        out.print(f"date:    {entry.time}")
        out.print("")
        for line in entry.message.splitlines():
            out.print(f"    {escape(line)}")
        out.print("")


def snapshot_summary(snap: Snapshot) -> str:
    """One line describing a snapshot's content, whatever its kind."""
    spec = snap.spec
    if snap.kind == "model" and "provider" in spec:
        return f"hosted {spec['provider']}:{spec['id']}"
    if snap.kind == "model" and "hub" in spec:
        return f"hub {spec['hub']}@{spec.get('revision', '(no revision)')}"
    total = sum(entry.size for entry in snap.files)
    parts = [f"{len(snap.files)} file{'s' if len(snap.files) != 1 else ''}, {human_bytes(total)}"]
    tensors = sum(len(table.get("tensors", {})) for table in snap.meta.get("safetensors", {}).values())
    if tensors:
        parts.append(f"{tensors} tensors")
    if snap.kind == "evalset" and "count" in snap.meta:
        parts.append(plural(snap.meta["count"], "case"))
    if snap.kind == "tools" and "tools" in snap.meta:
        parts.append("tools: " + ", ".join(sorted(snap.meta["tools"])))
    if snap.kind == "index":
        parts.append(f"embedding {spec.get('embedding_model')}")
    if snap.kind == "migration":
        parts.append("reversible" if snap.meta.get("reversible") else "IRREVERSIBLE (no down)")
    return "; ".join(parts)


def render_show(info: VersionInfo, snapshots: dict[str, Snapshot], environment: dict[str, Any] | None) -> None:
    out = console()
    refs = f" [bold cyan]({escape(', '.join(info.refs))})[/bold cyan]" if info.refs else ""
    out.print(f"[yellow]version {info.version_id}[/yellow]{refs}")
    out.print(f"content  {info.content_digest}")
    out.print("parents  " + (" ".join(short(parent) for parent in info.parents) or "(none: first version)"))
    out.print(f"author   {escape(info.author)}")
    out.print(f"date     {info.time}")
    out.print(f"tier     {info.tier}")
    if info.pruned:
        out.print(f"files    [red]removed by gc --unreachable on {escape(info.pruned)}[/red] (this record stays)")
    out.print("")
    for line in info.message.splitlines():
        out.print(f"    {escape(line)}")
    out.print("")
    table = Table(title="components", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("name")
    table.add_column("kind")
    table.add_column("snapshot")
    table.add_column("content")
    for name, snap in sorted(snapshots.items()):
        table.add_row(escape(name), snap.kind, short(snap.digest), escape(snapshot_summary(snap)))
    out.print(table)
    if environment:
        python = environment.get("python", {})
        platform = environment.get("platform", {})
        packages = environment.get("packages", {})
        accelerator = environment.get("accelerator", {})
        accel = "none" if not accelerator.get("present") else escape(str(accelerator.get("driver_version", "present")))
        out.print(
            f"\nenvironment  Python {python.get('version', '?')} on {platform.get('system', '?')} "
            f"{platform.get('machine', '')}; {len(packages)} packages; accelerator {accel}"
        )


def _render_component_diff(item: ComponentDiff) -> None:
    out = console()
    flags = "".join(f" [{_FLAG_STYLE}]{escape(flag)}[/{_FLAG_STYLE}]" for flag in item.flags)
    style = {"added": "cyan", "removed": "red", "changed": "yellow"}.get(item.status, "white")
    summary = f": {escape(item.summary)}" if item.summary else ""
    out.print(f"[{style}]{item.status:<8}[/{style}] [bold]{escape(item.name)}[/bold] ({item.kind}){flags}{summary}")
    for line in item.lines:
        line_style = ""
        if line.startswith("+") and not line.startswith("+++"):
            line_style = "green"
        elif line.startswith("-") and not line.startswith("---"):
            line_style = "red"
        elif line.startswith("@@"):
            line_style = "cyan"
        elif "BREAKING" in line or "REBUILD REQUIRED" in line or "IRREVERSIBLE" in line:
            line_style = _FLAG_STYLE
        text = escape(line)
        out.print(f"    [{line_style}]{text}[/{line_style}]" if line_style else f"    {text}")


def render_diff(report: DiffReport) -> None:
    out = console()
    target = "the working tree" if report.b == "working tree" else short(report.b)
    changed = report.changed
    out.print(f"diff {short(report.a)} -> {target}: {len(changed)} component(s) changed")
    for item in changed:
        out.print("")
        _render_component_diff(item)
    if report.settings is not None:
        out.print("")
        _render_component_diff(report.settings)
    if report.environment and report.environment.status != "unchanged":
        out.print("")
        _render_component_diff(report.environment)
