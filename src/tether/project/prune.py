"""``gc --unreachable``: the versions no name reaches any more, whose files may go.

Versions are never deleted: an abandoned experiment's record (manifest, snapshots, eval runs)
stays, so ``log``, ``show`` and every audit answer about it keep working. Its files are what
costs: a fine-tune's weights. A version keeps its files while it is, or is an ancestor of:

- a branch head, or this working copy's HEAD or tree base;
- any version an alias ever pointed at, or a rehearsal or an approval named (the deploy history);
- a version an audit record of this working copy names (an investigation may need its content).

Everything else, once older than the grace period, is pruned: its files are removed and the
store records that it was (``ObjectStore.mark_pruned``), so fsck and checkout name it instead of
reporting missing objects.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

from tether.meta.base import VersionRecord

if TYPE_CHECKING:
    from tether.project.core import Project


def roots(project: Project) -> dict[str, str]:
    """Version ID -> why it is kept (a name for it), before following parents."""
    kept: dict[str, str] = {}
    for name, version_id in sorted(project.meta.list_branches().items()):
        kept.setdefault(version_id, f"branch {name}")
    for label, version_id in (("HEAD", project.head()), ("the working tree's base", project.synced())):
        if version_id:
            kept.setdefault(version_id, label)
    from tether.meta.lifecycle import lifecycle_repository

    lifecycle = lifecycle_repository(project.meta)
    for alias in sorted(lifecycle.list_aliases()):
        for move in lifecycle.history(alias):
            for version_id in (move.to_version, move.from_version):
                if version_id:
                    kept.setdefault(version_id, f"alias {alias} history")
        for rehearsal in lifecycle.rehearsals(alias):
            for version_id in (rehearsal.to_version, rehearsal.from_version):
                if version_id:
                    kept.setdefault(version_id, f"a rehearsal of alias {alias}")
    for version_id in sorted(lifecycle.approved_versions()):
        kept.setdefault(version_id, "an approval")
    for version_id in _audited(project):
        kept.setdefault(version_id, "an audit record")
    return kept


def _audited(project: Project) -> list[str]:
    """Every version this working copy's audit log names (none when it has no log)."""
    from tether.audit.log import AUDIT_DB
    from tether.audit.store import SQLiteAuditStore

    path = project.dot / AUDIT_DB
    if not path.is_file():
        return []
    store = SQLiteAuditStore(path, create=False)
    try:
        return list(store.version_ids().values())
    finally:
        store.close()


def reachable(project: Project) -> set[str]:
    """Every kept version and all its ancestors."""
    seen: set[str] = set()
    stack = list(roots(project))
    while stack:
        version_id = stack.pop()
        if version_id in seen:
            continue
        seen.add(version_id)
        stack.extend(project.meta.get_parents(version_id))  # none for an unknown version
    return seen


def unreachable_versions(project: Project, grace_seconds: float) -> list[VersionRecord]:
    """Versions to prune: unreachable, not pruned yet, and older than the grace period."""
    keep = reachable(project)
    done = project.store.pruned()
    cutoff = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=grace_seconds)
    found = []
    for record in project.meta.list_versions():
        if record.version_id in keep or record.version_id in done:
            continue
        if _created(record) > cutoff:
            continue  # a commit this young may be about to get a name
        found.append(record)
    return found


def _created(record: VersionRecord) -> _dt.datetime:
    try:
        created = _dt.datetime.fromisoformat(record.created_at.replace("Z", "+00:00"))
    except ValueError:
        return _dt.datetime.now(_dt.UTC)  # unreadable: treat as young, keep it
    return created if created.tzinfo else created.replace(tzinfo=_dt.UTC)
