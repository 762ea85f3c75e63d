"""What the :class:`~tether.project.core.Project` operations return: plain data with ``to_json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tether.components import ComponentDiff, PinningFinding


def _findings_json(findings: list[PinningFinding]) -> list[dict[str, Any]]:
    return [asdict(finding) for finding in findings]


@dataclass
class ComponentStatus:
    """Drift of one component: ``clean``, ``modified``, ``added``, ``removed``, ``missing`` (a declared
    path is gone) or ``invalid`` (the paths are there but their content is rejected; ``error`` says why)."""

    name: str
    kind: str
    state: str
    files: list[dict[str, str]] = field(default_factory=list)  # {"path", "change"}
    spec_changed: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StatusReport:
    branch: str | None
    head: str | None
    components: list[ComponentStatus]
    settings_changed: bool = False  # tether.toml differs from the version's beyond any declaration
    synced: str | None = None  # the version the tree was last committed from or checked out at

    @property
    def drifted(self) -> list[ComponentStatus]:
        return [item for item in self.components if item.state != "clean"]

    @property
    def clean(self) -> bool:
        return not self.drifted and not self.settings_changed

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "head": self.head,
            "clean": self.clean,
            "components": [item.to_json() for item in self.components],
            "settings_changed": self.settings_changed,
            "synced": self.synced,
        }


@dataclass
class CommitResult:
    version_id: str
    content_digest: str
    branch: str | None
    parents: list[str]
    changed: list[str]
    findings: list[PinningFinding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "content_digest": self.content_digest,
            "branch": self.branch,
            "parents": self.parents,
            "changed": self.changed,
            "warnings": _findings_json(self.findings),
        }


@dataclass
class AddResult:
    name: str
    kind: str
    table: dict[str, Any]
    findings: list[PinningFinding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "declaration": self.table, "warnings": _findings_json(self.findings)}


@dataclass
class VersionInfo:
    """A version as commands show it."""

    version_id: str
    content_digest: str
    parents: list[str]
    message: str
    author: str
    time: str
    tier: str
    components: dict[str, dict[str, str]]  # name -> {"kind", "snapshot"}
    environment: str | None
    refs: list[str] = field(default_factory=list)
    pruned: str | None = None  # (show) when gc --unreachable removed its files

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DiffReport:
    a: str
    b: str  # a version ID or "working tree"
    components: list[ComponentDiff]
    environment: ComponentDiff | None = None
    settings: ComponentDiff | None = None  # tether.toml outside [components] ([policy], [evals]...)

    @property
    def changed(self) -> list[ComponentDiff]:
        return [item for item in self.components if item.status != "unchanged"]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "components": [item.to_json() for item in self.components],
            "environment": self.environment.to_json() if self.environment else None,
            "settings": self.settings.to_json() if self.settings else None,
        }


@dataclass
class CheckoutResult:
    version_id: str
    destination: str
    files_written: int
    files_removed: int
    head: str | None  # branch name or detached ID after a working-tree checkout
    #: the detached version this checkout moved away from when no branch or alias reaches it
    #: (keep it with ``tether branch NAME ID``)
    left_behind: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FsckReport:
    versions: int = 0
    snapshots: int = 0
    objects: int = 0
    pruned: int = 0  # versions whose files gc --unreachable removed (their objects are not checked)
    problems: list[str] = field(default_factory=list)
    #: each missing or corrupt object: {"object", "problem", "part_of": [file digests],
    #: "needed_by": [every "version ID component NAME file PATH" / "eval run ID body" needing it]}
    object_problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept: int = 0  # every object kept, including those below
    kept_young: int = 0  # unreferenced objects kept only because they are younger than the grace period
    kept_young_bytes: int = 0
    grace_seconds: float = 0.0
    temporary_removed: int = 0
    dry_run: bool = False
    protected: list[dict[str, str]] = field(default_factory=list)  # {"alias", "version_id"}: rollback targets kept
    live_removed: list[str] = field(default_factory=list)  # versions whose tether.resolve copy was removed
    #: with --unreachable: {"version_id", "created_at", "message"} of each version whose files went
    pruned: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
