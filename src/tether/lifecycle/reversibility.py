"""The reversibility check that runs before every rollback (and in every rehearsal).

Going from the alias's current version back to a target is safe only when the target can still be
served and nothing the current version did outside the project is one-way. Per changed component:

- objects: every object of the target is present and still hashes to its name (``blocking``:
  no flag overrides serving content that cannot be verified);
- migration: a migration of the current version that the target does not have (or has in another
  form) must be undone; without a ``down`` script that is ``irreversible``;
- tools: a breaking contract change on the way back (callers built against the newer contract
  break) is a ``warning``;
- index: a changed embedding model or chunking means the index must be rebuilt (``warning``);
- model: a hosted model the target names that is marked retired cannot be served (``irreversible``).

Any ``irreversible`` finding refuses a rollback unless it is forced with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.components import Snapshot, get_kind
from tether.errors import VerificationError

OK = "ok"
WARNING = "warning"
IRREVERSIBLE = "irreversible"
BLOCKING = "blocking"


@dataclass
class Finding:
    """One thing the check found about one component."""

    check: str  # objects | migration | tools | index | model
    level: str  # ok | warning | irreversible | blocking
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "message": self.message}


@dataclass
class ComponentCheck:
    """The findings for one component between the current version and the target."""

    name: str
    kind: str
    change: str  # changed | added | removed | unchanged (the target relative to the current version)
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> str:
        order = [OK, WARNING, IRREVERSIBLE, BLOCKING]
        return max((finding.level for finding in self.findings), key=order.index, default=OK)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "change": self.change,
            "level": self.level,
            "findings": [finding.to_json() for finding in self.findings],
        }


@dataclass
class ReversibilityReport:
    """The whole check: one entry per changed component (plus any unchanged one with a finding)."""

    from_version: str | None
    to_version: str
    components: list[ComponentCheck] = field(default_factory=list)
    objects_checked: int = 0
    verified: bool = True  # objects re-hashed, not only checked for presence

    def findings(self, level: str) -> list[tuple[str, Finding]]:
        return [(item.name, finding) for item in self.components for finding in item.findings if finding.level == level]

    @property
    def irreversible(self) -> list[tuple[str, Finding]]:
        return self.findings(IRREVERSIBLE)

    @property
    def blocking(self) -> list[tuple[str, Finding]]:
        return self.findings(BLOCKING)

    @property
    def warnings(self) -> list[tuple[str, Finding]]:
        return self.findings(WARNING)

    @property
    def verdict(self) -> str:
        if self.blocking:
            return "unavailable"
        if self.irreversible:
            return "irreversible"
        return "reversible"

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.from_version,
            "to": self.to_version,
            "verdict": self.verdict,
            "objects_checked": self.objects_checked,
            "objects_verified": self.verified,
            "components": [item.to_json() for item in self.components],
        }


def model_identity(spec: dict[str, Any]) -> str | None:
    """``provider:id`` of a hosted model spec, None for weights or a hub reference."""
    if "provider" in spec and "id" in spec:
        return f"{spec['provider']}:{spec['id']}"
    return None


def retired_identities(project: Any, policy: Any, *snapshot_sets: dict[str, Snapshot]) -> dict[str, str]:
    """Hosted model identities (``provider:id``) known to be retired, each with where it says so:
    the policy's ``retired_models``, a model marked ``retired = true`` in the working
    ``tether.toml``, or in any of the given versions' snapshots."""
    retired: dict[str, str] = {}
    for item in policy.retired_models:
        retired.setdefault(item, "policy.retired_models in tether.toml")
    for name, decl in project.file.components.items():
        if decl.kind == "model" and decl.spec.get("retired") is True:
            identity = model_identity(decl.spec)
            if identity:
                retired.setdefault(identity, f"components.{name}.retired in tether.toml")
    for snapshots in snapshot_sets:
        for name, snap in snapshots.items():
            if snap.kind == "model" and snap.spec.get("retired") is True:
                identity = model_identity(snap.spec)
                if identity:
                    retired.setdefault(identity, f"component {name} of a recorded version")
    return retired


def check_reversibility(
    project: Any,
    policy: Any,
    current_id: str | None,
    target_id: str,
    verify_objects: bool = True,
) -> ReversibilityReport:
    """Check going from ``current_id`` (None: nothing deployed) back to ``target_id``."""
    from tether.project.core import StoreReader

    report = ReversibilityReport(from_version=current_id, to_version=target_id, verified=verify_objects)
    try:
        target = project.version_snapshots(target_id)
    except VerificationError as exc:
        report.components.append(ComponentCheck("(manifest)", "version", "changed", [Finding("objects", BLOCKING, str(exc))]))
        return report
    current = project.version_snapshots(current_id) if current_id else {}
    retired = retired_identities(project, policy, current, target)
    reader = StoreReader(project.store)
    for name in sorted(set(target) | set(current)):
        before, after = current.get(name), target.get(name)
        if before is None:
            change = "added"
        elif after is None:
            change = "removed"
        else:
            change = "unchanged" if before.digest == after.digest else "changed"
        kind = (after or before).kind  # type: ignore[union-attr]
        item = ComponentCheck(name, kind, change)
        if after is not None:
            report.objects_checked += len(after.files)
            item.findings.extend(_object_findings(project, after, verify_objects))
        if change != "unchanged":
            if kind == "migration" or (before is not None and before.kind == "migration"):
                item.findings.extend(_migration_findings(before, after))
            if kind == "tools" and before is not None and after is not None:
                item.findings.extend(_diff_flag_findings(name, before, after, reader, "tools", "BREAKING"))
            elif kind == "tools" and after is None:
                item.findings.append(Finding("tools", WARNING, "the target has no tools component: callers of these tools break"))
            if kind == "index" and before is not None and after is not None and before.kind == after.kind:
                item.findings.extend(_diff_flag_findings(name, before, after, reader, "index", "REBUILD REQUIRED"))
        if after is not None and after.kind == "model":
            identity = model_identity(after.spec)
            if identity in retired:
                level = IRREVERSIBLE if change != "unchanged" else WARNING
                note = "" if change != "unchanged" else " (the current version serves it too)"
                item.findings.append(
                    Finding("model", level, f"hosted model {identity} is retired ({retired[identity]}): it cannot be served{note}")
                )
        if change != "unchanged" or (item.findings and item.level != OK):
            if not item.findings:
                item.findings.append(Finding("content", OK, "content differs; nothing one-way"))
            report.components.append(item)
    return report


def _object_findings(project: Any, snap: Snapshot, verify: bool) -> list[Finding]:
    findings: list[Finding] = []
    for entry in snap.files:
        if not project.store.has(entry.digest):
            findings.append(Finding("objects", BLOCKING, f"{entry.path}: object {entry.digest[:12]} is missing from the store"))
        elif verify and not project.store.verify(entry.digest):
            findings.append(
                Finding("objects", BLOCKING, f"{entry.path}: object {entry.digest[:12]} no longer hashes to its name (corrupted)")
            )
    if not findings and snap.files:
        state = "present and verified" if verify else "present"
        findings.append(Finding("objects", OK, f"{len(snap.files)} file(s) {state}"))
    return findings


def _migration_findings(before: Snapshot | None, after: Snapshot | None) -> list[Finding]:
    findings: list[Finding] = []
    if before is not None and before.kind == "migration":
        if before.meta.get("reversible") or "down" in before.spec:
            findings.append(Finding("migration", OK, f"run the current version's down script {before.spec.get('down')} to undo it"))
        else:
            findings.append(
                Finding(
                    "migration",
                    IRREVERSIBLE,
                    f"the current version's migration (up {before.spec.get('up')}) has no down: its external change cannot be undone",
                )
            )
    if after is not None and after.kind == "migration":
        findings.append(Finding("migration", WARNING, f"the target needs its migration applied (up {after.spec.get('up')})"))
    return findings


def _diff_flag_findings(name: str, before: Snapshot, after: Snapshot, reader: Any, check: str, flag: str) -> list[Finding]:
    diff = get_kind(after.kind).diff(name, before, after, reader)
    if flag not in diff.flags:
        return [Finding(check, OK, diff.summary or "changed")]
    if check == "tools":
        return [Finding(check, WARNING, f"breaking contract change on the way back: {diff.summary}")]
    return [Finding(check, WARNING, f"the index needs a rebuild to match the target: {diff.summary}")]
