"""The public Python API: a :class:`Project` opened from a folder.

Every command of the CLI (and later the server) is a thin layer over these methods. A version
becomes visible only after all of its objects are stored: objects first, then one metadata
transaction that writes the snapshots, the version and the branch move together.
"""

from __future__ import annotations

import datetime as _dt
import functools
import getpass
import heapq
import importlib
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from tether.components import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    FileEntry,
    PinningFinding,
    Snapshot,
    SourceMissingError,
    get_kind,
)
from tether.components.base import is_posix_relative
from tether.errors import (
    CheckFailedError,
    DriftError,
    NothingToCommitError,
    PinningError,
    ReferenceNotFoundError,
    TetherError,
    UsageError,
    VerificationError,
)
from tether.ids import canonical_bytes, digest_bytes, digest_file, is_digest
from tether.meta import BranchConflictError, MetadataRepository, VersionRecord, open_metadata
from tether.project.manifest import Manifest
from tether.project.projectfile import (
    PROJECT_FILE,
    TIERS,
    ComponentDecl,
    ProjectFile,
    append_component,
    check_component_name,
    load_project_file,
    parse_component,
    render_new_project,
    settings_diff,
    settings_value,
)
from tether.project.refs import name_problem, resolve_ref
from tether.project.results import (
    AddResult,
    CheckoutResult,
    CommitResult,
    ComponentStatus,
    DiffReport,
    FsckReport,
    GcReport,
    StatusReport,
    VersionInfo,
)
from tether.project.statcache import StatCache
from tether.project.worktree import WorkingTree, is_within
from tether.store import ObjectCorruptError, ObjectMissingError, ObjectStore, StoreError, open_store
from tether.store.atomic import atomic_write_bytes, is_temporary_name, staging_path

DOT_DIR = ".tether"
DEFAULT_BRANCH = "main"
WORKING_TREE = "working tree"

Progress = Callable[[str, int, int], None]  # (phase, done, total)


#: the version the working tree was last committed from or checked out at (see Project.synced)
WORKTREE_FILE = "WORKTREE"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _author() -> str:
    """Who commits: ``TETHER_AUTHOR``, else Git's user, else user@host."""
    explicit = os.environ.get("TETHER_AUTHOR")
    if explicit:
        return explicit
    with suppress(OSError, subprocess.SubprocessError):
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=2).stdout.strip()
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=2).stdout.strip()
        if name:
            return f"{name} <{email}>" if email else name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class StoreReader(BlobReader):
    """Reads snapshot files from the object store, falling back to the working tree for content
    that is not committed yet (a diff against the working tree)."""

    def __init__(self, store: ObjectStore, tree: WorkingTree | None = None):
        self.store = store
        self.tree = tree

    def open(self, entry: FileEntry) -> BinaryIO:
        try:
            return self.store.open(entry.digest)
        except ObjectMissingError:
            if self.tree is None:
                raise
        path = self.tree.resolve(entry.path, entry.path)
        try:
            return open(path, "rb")
        except PermissionError:
            raise UsageError(f"{entry.path}: permission denied") from None


def _import_in_background(module: str) -> None:
    """Start importing ``module`` on a daemon thread (a later import waits for it to finish).

    Loading SQLAlchemy costs a fifth of a second of CPU; a commit spends that long hashing on
    threads that release the GIL, so the two overlap. Only third-party modules are loaded this
    way: they cannot take part in an import cycle with tether's own.
    """
    import sys
    import threading

    if module in sys.modules:
        return

    def load() -> None:
        with suppress(Exception):  # the real import reports any failure
            importlib.import_module(module)

    threading.Thread(target=load, name=f"import {module}", daemon=True).start()


class Project:
    """A tether project: ``tether.toml``, its working tree, and the version graph in ``.tether/``."""

    def __init__(
        self,
        root: Path,
        project_file: ProjectFile,
        store: ObjectStore,
        meta: MetadataRepository | Callable[[], MetadataRepository],
    ):
        """``meta`` may be a factory: the database is then opened on first use, so a commit
        hashes its files while the database layer is still being imported (see :meth:`open`)."""
        self.root = root
        self.dot = root / DOT_DIR
        self.file = project_file
        self.store = store
        self._meta: MetadataRepository | None = None if callable(meta) else meta
        self._open_meta = meta if callable(meta) else None
        self.cache = StatCache(self.dot / "cache" / "stat.json")
        self.tree = WorkingTree(root, self.cache, PROJECT_FILE)

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str] = ".",
        tier: str | None = None,
        store_url: str | None = None,
        db_url: str | None = None,
        name: str | None = None,
    ) -> Project:
        """Create ``tether.toml`` (unless present) and ``.tether/``; re-running is safe.

        ``tier`` defaults to ``standard`` for a new project. On an existing ``tether.toml`` (a
        re-run, or a teammate's clone) every option left out keeps what the file says, and one
        that differs from it is refused: the file is where a project's tier, name and storage change.
        """
        if tier is not None and tier not in TIERS:
            raise UsageError(f"--tier: '{tier}' is not one of {', '.join(TIERS)}")
        root = Path(path).resolve()
        if not root.is_dir():
            raise UsageError(f"{root}: not a folder")
        project_path = root / PROJECT_FILE
        wrote_project_file = not project_path.exists()
        if wrote_project_file:
            raw = render_new_project(name or root.name or "project", tier or "standard", store_url, db_url)
            atomic_write_bytes(project_path, raw)
        elif tier or name or store_url or db_url:
            existing = load_project_file(project_path, validate_components=False)
            if tier and tier != existing.tier:
                needs = " (regulated also needs [audit] checkpoint_export_interval)" if tier == "regulated" else ""
                raise UsageError(
                    f"{PROJECT_FILE}: already initialized at tier '{existing.tier}'; "
                    f"to change the tier, edit [project] tier in {PROJECT_FILE}{needs}"
                )
            if name and name != existing.name:
                raise UsageError(
                    f"{PROJECT_FILE}: already initialized as project '{existing.name}'; "
                    f"to rename it, edit [project] name in {PROJECT_FILE}"
                )
            if (store_url and store_url != existing.objects_url) or (db_url and db_url != existing.metadata_url):
                raise UsageError(f"{PROJECT_FILE}: already initialized with other storage; edit its [storage] table instead")
        dot = root / DOT_DIR
        made_dot = not dot.exists()
        dot.mkdir(exist_ok=True)
        atomic_write_bytes(dot / ".gitignore", b"*\n")
        if not (dot / "HEAD").exists():
            atomic_write_bytes(dot / "HEAD", f"ref: {DEFAULT_BRANCH}\n".encode())
        project_file = load_project_file(project_path, validate_components=False)
        try:
            store = open_store(project_file.objects_url, root)
            meta = open_metadata(project_file.metadata_url, root, create=True)
        except BaseException:
            # An unreachable or mistyped --db/--store must not leave a tether.toml that pins it,
            # nor a .tether/ that makes the folder look initialized.
            if wrote_project_file:
                project_path.unlink(missing_ok=True)
            if made_dot:
                shutil.rmtree(dot, ignore_errors=True)
            raise
        from tether.audit.keys import create_key_at_init

        create_key_at_init(dot, project_file)  # the audit log's signing key, kept outside any database
        return cls(root, project_file, store, meta)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".", search_parents: bool = True) -> Project:
        """Open the project at ``path`` (or the nearest folder above it holding ``tether.toml``)."""
        start = Path(path).resolve()
        if not start.exists():
            raise UsageError(f"{start}: the folder does not exist")
        candidates = [start, *start.parents] if search_parents else [start]
        for folder in candidates:
            if (folder / PROJECT_FILE).is_file() and (folder / DOT_DIR).is_dir():
                project_file = load_project_file(folder / PROJECT_FILE, validate_components=False)
                store = open_store(project_file.objects_url, folder)
                _import_in_background("sqlalchemy")
                return cls(folder, project_file, store, functools.partial(open_metadata, project_file.metadata_url, folder))
        raise UsageError(f"{start}: not a tether project (no {PROJECT_FILE} with {DOT_DIR}/ here or above); run `tether init`")

    @property
    def meta(self) -> MetadataRepository:
        if self._meta is None:
            assert self._open_meta is not None
            self._meta = self._open_meta()
        return self._meta

    def close(self) -> None:
        self.cache.save()
        if self._meta is not None:
            self._meta.close()

    def forget_inherited_connections(self) -> None:
        """In a forked child: leave the parent's database connections alone and open new ones."""
        if self._meta is not None:
            self._meta.forget_inherited_connections()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload(self) -> ProjectFile:
        """Re-read and fully validate ``tether.toml`` (every component through its kind)."""
        self.file = load_project_file(self.root / PROJECT_FILE)
        return self.file

    # ---- HEAD and references -----------------------------------------------------------------
    def _head_text(self) -> str:
        try:
            return (self.dot / "HEAD").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return f"ref: {DEFAULT_BRANCH}"

    def current_branch(self) -> str | None:
        """The checked-out branch, or None when HEAD is detached at a version."""
        text = self._head_text()
        return text[len("ref: "):] if text.startswith("ref: ") else None

    def head(self) -> str | None:
        """The current version ID (None before the first commit)."""
        text = self._head_text()
        if text.startswith("ref: "):
            return self.meta.get_branch(text[len("ref: "):])
        return text or None

    def _set_head(self, branch: str | None, version_id: str | None = None) -> None:
        content = f"ref: {branch}\n" if branch else f"{version_id}\n"
        atomic_write_bytes(self.dot / "HEAD", content.encode())

    def synced(self) -> str | None:
        """The version this working tree was last committed from or checked out at. With metadata
        shared by several working copies, a branch can move under a copy; this says what the
        tree is actually based on (None before the first commit or checkout that records it)."""
        try:
            text = (self.dot / WORKTREE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text if is_digest(text) else None

    def _mark_synced(self, version_id: str) -> None:
        atomic_write_bytes(self.dot / WORKTREE_FILE, f"{version_id}\n".encode())

    def _moved_under_us(self, current: str | None, head: str | None) -> str | None:
        """The tree's base when the checked-out branch moved (or vanished) since this working
        copy last synced with it, e.g. after a commit from another copy sharing the metadata."""
        synced = self.synced()
        if current is None or synced is None or synced == head or self.meta.get_version(synced) is None:
            return None
        return synced

    def resolve(self, ref: str) -> str:
        """The version ID a reference names (see DESIGN.md: ID, prefix, HEAD, branch, ``~N``)."""
        return resolve_ref(ref, self.meta, self.head)

    def manifest(self, version_id: str) -> Manifest:
        record = self.meta.get_version(version_id)
        if record is None:
            raise ReferenceNotFoundError(f"version {version_id}: not found")
        return Manifest.from_bytes(record.manifest, expected_id=version_id)

    def snapshot(self, digest: str) -> Snapshot:
        """A stored snapshot, verified against its digest."""
        body = self.meta.get_snapshot(digest)
        if body is None:
            raise VerificationError(f"snapshot {digest[:12]}: missing from the metadata database")
        if digest_bytes(body) != digest:
            raise VerificationError(f"snapshot {digest[:12]}: content does not hash to its digest (corrupted metadata)")
        return Snapshot.from_json(json.loads(body))

    def version_snapshots(self, version_id: str) -> dict[str, Snapshot]:
        manifest = self.manifest(version_id)
        return {name: self.snapshot(digest) for name, digest in manifest.components.items()}

    def require_files(self, version_id: str) -> None:
        """Refuse (exit 1) to use the content of a version ``gc --unreachable`` pruned: its record
        stays for log, show and audit, but its files are gone and nothing may depend on them."""
        pruned = self.store.pruned().get(version_id)
        if pruned is not None:
            when = f" on {pruned['time']}" if isinstance(pruned.get("time"), str) else ""
            raise CheckFailedError(
                f"version {version_id[:12]}: its files were removed by `tether gc --unreachable`{when} "
                "(no branch or alias reached it); its record stays (log, show), its content is gone"
            )

    @contextmanager
    def naming(self, version_id: str) -> Iterator[None]:
        """Hold the commit lock (shared) while a branch or alias is pointed at ``version_id``.

        ``gc --unreachable`` decides what no name reaches, and removes it, under the exclusive
        lock: checked again in here, the version's files are either still there and named before
        gc looks, or already pruned and refused, never named after gc removed them.
        """
        from tether.project.storage import commit_lock

        with commit_lock(self.dot):
            self.require_files(version_id)
            yield

    def info(self, version_id: str, refs: dict[str, list[str]] | None = None) -> VersionInfo:
        manifest = self.manifest(version_id)
        return VersionInfo(
            version_id=version_id,
            content_digest=manifest.content_digest,
            parents=list(manifest.parents),
            message=manifest.message,
            author=manifest.author,
            time=manifest.time,
            tier=manifest.tier,
            components={name: {"kind": manifest.kinds[name], "snapshot": d} for name, d in manifest.components.items()},
            environment=manifest.environment,
            refs=(refs or {}).get(version_id, []),
        )

    def refs_by_version(self) -> dict[str, list[str]]:
        """Version ID -> names pointing at it (``HEAD -> main``, other branches)."""
        names: dict[str, list[str]] = {}
        current = self.current_branch()
        for branch, version_id in sorted(self.meta.list_branches().items()):
            label = f"HEAD -> {branch}" if branch == current else branch
            names.setdefault(version_id, []).append(label)
        from tether.meta.lifecycle import lifecycle_repository

        for alias, state in lifecycle_repository(self.meta).list_aliases().items():
            names.setdefault(state.version_id, []).append(f"alias: {alias}")
        if current is None:
            head = self.head()
            if head:
                names.setdefault(head, []).insert(0, "HEAD")
        for labels in names.values():
            labels.sort(key=lambda label: not label.startswith("HEAD"))
        return names

    # ---- declaring ----------------------------------------------------------------------------
    def add(
        self,
        kind: str,
        name: str,
        sources: list[str] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> AddResult:
        """Declare a component in ``tether.toml`` after checking it snapshots cleanly."""
        check_component_name(name)  # the NAME argument, before tether.toml is read
        current = self.reload()
        if name in current.components:
            raise UsageError(f"{PROJECT_FILE}: components.{name} already exists; edit it there")
        kind_impl = get_kind(kind)
        table = kind_impl.spec_from_add(name, list(sources or []), dict(settings or {}))
        decl = parse_component(self.root / PROJECT_FILE, name, {"kind": kind, **table})
        kind_impl.snapshot(name, decl.spec, self.tree)  # the sources must exist and parse
        findings = self._check_pinning({name: decl})
        append_component(self.root / PROJECT_FILE, name, kind, table)
        self.reload()
        self.cache.save()
        return AddResult(name=name, kind=kind, table=table, findings=findings)

    def _check_pinning(self, decls: dict[str, ComponentDecl]) -> list[PinningFinding]:
        """Floating identities: warnings in ``lite``/``standard``, refused in ``regulated``."""
        findings: list[PinningFinding] = []
        for name, decl in decls.items():
            findings.extend(get_kind(decl.kind).check_pinning(name, decl.spec))
        floating = [finding for finding in findings if finding.level == "floating"]
        if floating and self.file.tier == "regulated":
            raise PinningError(f"{PROJECT_FILE}: tier 'regulated' refuses floating identities: {floating[0].message}")
        return findings

    # ---- snapshots of the working tree --------------------------------------------------------
    def working_snapshots(self) -> dict[str, Snapshot]:
        """Every declared component snapshotted from disk; errors propagate (bad input)."""
        decls = self.reload().components
        snapshots = {name: get_kind(decl.kind).snapshot(name, decl.spec, self.tree) for name, decl in decls.items()}
        self.cache.save()
        return snapshots

    def status(self, verify: bool = False) -> StatusReport:
        """Drift: each component whose content on disk differs from the current version, and how.

        ``verify`` re-hashes every file instead of trusting the stat cache (for filesystems
        whose timestamps can lie, or a tree written by a tool that restores mtimes).
        """
        tree = WorkingTree(self.root, None, PROJECT_FILE) if verify else self.tree
        decls = self.reload().components
        head = self.head()
        committed = self.version_snapshots(head) if head else {}
        items: list[ComponentStatus] = []
        for name, decl in decls.items():
            old = committed.get(name)
            try:
                new = get_kind(decl.kind).snapshot(name, decl.spec, tree)
            except ComponentError as exc:
                # "missing": a declared path is gone; "invalid": the paths are there, their content
                # (or the declaration) is rejected. A new component whose paths are gone is "added".
                state = ("missing" if old else "added") if isinstance(exc, SourceMissingError) else "invalid"
                items.append(ComponentStatus(name, decl.kind, state, error=str(exc)))
                continue
            if old is None:
                items.append(ComponentStatus(name, decl.kind, "added", [{"path": e.path, "change": "added"} for e in new.files]))
            elif old.digest == new.digest:
                items.append(ComponentStatus(name, decl.kind, "clean"))
            else:
                items.append(
                    ComponentStatus(name, decl.kind, "modified", _file_changes(old, new), spec_changed=old.spec != new.spec)
                )
        for name, old in committed.items():
            if name not in decls:
                items.append(ComponentStatus(name, old.kind, "removed"))
        self.cache.save()
        declarations_drifted = any(
            item.spec_changed or item.state in ("added", "removed", "missing", "invalid") or item.name not in committed
            for item in items
        )
        settings_changed = bool(head) and self._settings_changed(head, declarations_drifted)
        report = StatusReport(
            branch=self.current_branch(), head=head, components=items, settings_changed=settings_changed, synced=self.synced()
        )
        if report.clean and head:
            from tether.project.clean import certify

            certify(self, tree, [(name, decl.kind, committed[name].digest) for name, decl in decls.items()])
        return report

    def _settings_changed(self, head: str, declarations_drifted: bool = False) -> bool:
        """Whether ``tether.toml`` on disk differs from the copy ``head`` recorded ([policy],
        [audit], [evals]... are versioned with it, so an edit there is a change to commit).

        With ``declarations_drifted`` (a component's declaration changed, or its files are gone or
        rejected), differing bytes count only when the settings outside ``[components]`` differ too.
        """
        recorded = self.manifest(head).project_file
        if recorded is None or digest_bytes(self.file.raw) == recorded:
            return False
        if not declarations_drifted:
            return True
        return settings_value(self.store.get_bytes(recorded)) != settings_value(self.file.raw)

    def _project_file_bytes(self, version_id: str) -> bytes | None:
        """The ``tether.toml`` a version recorded (None for versions that recorded none)."""
        recorded = self.manifest(version_id).project_file
        return self.store.get_bytes(recorded) if recorded else None

    # ---- committing ---------------------------------------------------------------------------
    def commit(self, message: str, branch: str | None = None, allow_empty: bool = False) -> CommitResult:
        """Snapshot every component and record a new version on the current branch (or ``branch``)."""
        if not message or not message.strip():
            raise UsageError("-m/--message: a commit needs a message")
        from tether.project.storage import worktree_lock

        with worktree_lock(self.dot):  # another commit or a checkout in this copy goes before or after
            return self._commit(message, branch, allow_empty)

    def _commit(self, message: str, branch: str | None, allow_empty: bool) -> CommitResult:
        current = self.current_branch()
        if branch is not None and branch != current:
            self._check_branch_name(branch)
        # Files first: hashing them needs no database, which may still be loading (see open()).
        decls = self.reload().components
        snapshots = {name: get_kind(decl.kind).snapshot(name, decl.spec, self.tree) for name, decl in decls.items()}
        head = self.head()
        target_branch = branch or current
        expected = head
        base = self._moved_under_us(current, head)
        if base is not None and (branch is None or branch == current):
            moved = f"moved to {head[:12]}" if head else "was deleted"
            raise CheckFailedError(
                f"branch '{current}' {moved} since this working tree was at {base[:12]} (from another working copy); "
                "nothing was recorded: commit to a new branch with --branch NAME, or update the tree with "
                f"`tether checkout {current if head else base[:12]}`"
            )
        if branch is not None and branch != current:
            expected = self.meta.get_branch(branch)
            if expected is not None and expected != head:
                raise CheckFailedError(
                    f"--branch {branch}: branch is at {expected[:12]}, not at the current version; "
                    f"run `tether checkout {branch}` first"
                )
        head = base or head  # a new branch forks from what the tree is based on
        findings = self._check_pinning(decls)
        components = {name: snap.digest for name, snap in sorted(snapshots.items())}
        before = self.manifest(head).components if head else {}
        settings_changed = bool(head) and self._settings_changed(head)  # type: ignore[arg-type]
        if head and before == components and not settings_changed and not allow_empty:
            raise NothingToCommitError("nothing to commit: every component matches the current version (use --allow-empty)")
        if not head and not components and not allow_empty:
            raise NothingToCommitError(
                "nothing to commit: no component is declared yet (`tether add KIND NAME SOURCE`, or use --allow-empty)"
            )
        changed = sorted(name for name in set(components) | set(before) if before.get(name) != components.get(name))
        if settings_changed and not changed:
            changed = [PROJECT_FILE]
        return self._record_version(
            snapshots=snapshots,
            parents=[head] if head else [],
            message=message,
            branch=target_branch,
            expected=expected,
            changed=changed,
            findings=findings,
            store_from_tree=True,
            switch_to=branch if branch != current else None,
        )

    def _store_files(self, snapshots: dict[str, Snapshot], progress: Progress | None = None) -> None:
        """Put every file of the working tree's snapshots into the object store (streamed).

        Each file is hinted with the same path in the current version (changed tensors may be
        stored as deltas against it) and with the tensor digests its snapshot already read.
        """
        from tether.project.clean import certify
        from tether.project.storage import store_hints

        certify(self, self.tree, [(name, snap.kind, snap.digest) for name, snap in snapshots.items()])
        entries = {entry.digest: entry for snap in snapshots.values() for entry in snap.files}
        missing = [entry for entry in entries.values() if not self.store.has(entry.digest)]
        head = self.head() if missing else None
        hints = store_hints(snapshots, self.version_snapshots(head) if head else {})
        total = len(entries)
        for done, entry in enumerate(missing, start=total - len(missing) + 1):
            path = self.tree.resolve(entry.path, entry.path)
            try:
                self.store.put_file(path, expected_digest=entry.digest, hint=hints.get(entry.digest))
            except StoreError as exc:
                raise CheckFailedError(str(exc) if entry.path in str(exc) else f"{entry.path}: {exc}") from exc
            if progress:
                progress("storing", done, total)

    def _record_version(self, *args: Any, **kwargs: Any) -> CommitResult:
        """Record a version holding the commit lock (shared): gc never runs between a commit's
        first stored object and the metadata transaction that makes its objects reachable."""
        from tether.project.storage import commit_lock

        with commit_lock(self.dot):
            for parent in kwargs.get("parents", ()):  # compose's sources: a gc may have pruned one since they were checked
                self.require_files(parent)
            return self._record_version_locked(*args, **kwargs)

    def _record_version_locked(
        self,
        snapshots: dict[str, Snapshot],
        parents: list[str],
        message: str,
        branch: str | None,
        expected: str | None,
        changed: list[str],
        findings: list[PinningFinding],
        store_from_tree: bool,
        switch_to: str | None = None,
        project_file_digest: str | None = None,
    ) -> CommitResult:
        from tether.components.environment import capture_environment

        if store_from_tree:
            self._store_files(snapshots)
            project_file_digest = self.store.put_bytes(self.file.raw)
        environment = capture_environment()
        environment_bytes = canonical_bytes(environment)
        environment_digest = digest_bytes(environment_bytes)
        components = {name: snap.digest for name, snap in sorted(snapshots.items())}
        manifest = Manifest(
            components=components,
            kinds={name: snap.kind for name, snap in snapshots.items()},
            parents=tuple(parents),
            message=message.strip(),
            author=_author(),
            time=_now(),
            tier=self.file.tier,
            project=self.file.name,
            environment=environment_digest,
            project_file=project_file_digest,
        )
        body = manifest.to_bytes()
        record = VersionRecord(version_id=digest_bytes(body), content_digest=manifest.content_digest, created_at=manifest.time, manifest=body)
        snapshot_bodies = {snap.digest: canonical_bytes(snap.to_json()) for snap in snapshots.values()}
        snapshot_bodies[environment_digest] = environment_bytes
        try:
            self.meta.put_version(record, list(parents), snapshot_bodies, branch=branch, expected_branch_target=expected)
        except BranchConflictError as exc:
            raise CheckFailedError(f"branch '{branch}' moved while committing ({exc}); nothing was recorded, try again") from exc
        if branch is None:
            self._set_head(None, record.version_id)
        elif switch_to is not None:
            self._set_head(switch_to)
        if store_from_tree:
            self._mark_synced(record.version_id)
        self.cache.save()
        return CommitResult(
            version_id=record.version_id,
            content_digest=record.content_digest,
            branch=branch,
            parents=list(parents),
            changed=changed,
            findings=findings,
        )

    # ---- history -------------------------------------------------------------------------------
    def log(self, ref: str | None = None, limit: int | None = None) -> list[VersionInfo]:
        """Ancestors of ``ref`` (default HEAD), children before parents, newest first."""
        start = self.resolve(ref or "HEAD")
        refs = self.refs_by_version()
        infos: dict[str, VersionInfo] = {}
        children_left: dict[str, int] = {}
        stack = [start]
        while stack:
            version_id = stack.pop()
            if version_id in infos:
                continue
            infos[version_id] = self.info(version_id, refs)
            for parent in infos[version_id].parents:
                children_left[parent] = children_left.get(parent, 0) + 1
                stack.append(parent)
        ready: list[tuple[str, str]] = [(_neg_time(infos[start].time), start)]
        ordered: list[VersionInfo] = []
        while ready and (limit is None or len(ordered) < limit):
            _, version_id = heapq.heappop(ready)
            ordered.append(infos[version_id])
            for parent in infos[version_id].parents:
                children_left[parent] -= 1
                if children_left[parent] == 0:
                    heapq.heappush(ready, (_neg_time(infos[parent].time), parent))
        return ordered

    def show(self, ref: str = "HEAD") -> tuple[VersionInfo, dict[str, Snapshot], dict[str, Any] | None]:
        """A version, its snapshots and its captured environment."""
        version_id = self.resolve(ref)
        info = self.info(version_id, self.refs_by_version())
        pruned = self.store.pruned().get(version_id)
        if pruned is not None:
            info.pruned = str(pruned.get("time") or "an unrecorded time")
        snapshots = self.version_snapshots(version_id)
        environment = None
        if info.environment:
            body = self.meta.get_snapshot(info.environment)
            environment = json.loads(body) if body else None
        return info, snapshots, environment

    def diff(self, ref_a: str, ref_b: str | None = None) -> DiffReport:
        """What changed from ``ref_a`` to ``ref_b`` (default: the working tree), per component."""
        id_a = self.resolve(ref_a)
        self.require_files(id_a)
        old = self.version_snapshots(id_a)
        environment_diff: ComponentDiff | None = None
        if ref_b is None:
            new = self.working_snapshots()
            label_b = WORKING_TREE
        else:
            id_b = self.resolve(ref_b)
            self.require_files(id_b)
            new = self.version_snapshots(id_b)
            label_b = id_b
            from tether.components.environment import diff_environment

            env_a, env_b = self.manifest(id_a).environment, self.manifest(id_b).environment
            if env_a != env_b:
                environment_diff = diff_environment(self._environment(env_a), self._environment(env_b))
        reader = StoreReader(self.store, self.tree)
        diffs: list[ComponentDiff] = []
        for name in sorted(set(old) | set(new)):
            before, after = old.get(name), new.get(name)
            if before is not None and after is not None and before.kind != after.kind:
                diffs.append(get_kind(before.kind).diff(name, before, None, reader))
                diffs.append(get_kind(after.kind).diff(name, None, after, reader))
                continue
            kind = get_kind((after or before).kind)  # type: ignore[union-attr]
            if before is not None and after is not None and before.digest == after.digest:
                diffs.append(ComponentDiff(name=name, kind=kind.name, status="unchanged"))
            else:
                diffs.append(kind.diff(name, before, after, reader))
        raw_a = self._project_file_bytes(id_a)
        raw_b = self.file.raw if ref_b is None else self._project_file_bytes(label_b)
        settings = None
        if raw_a is not None and raw_b is not None:
            settings = settings_diff(raw_a, raw_b, any(item.status != "unchanged" for item in diffs))
        return DiffReport(a=id_a, b=label_b, components=diffs, environment=environment_diff, settings=settings)

    def _environment(self, digest: str | None) -> dict[str, Any] | None:
        if digest is None:
            return None
        body = self.meta.get_snapshot(digest)
        return json.loads(body) if body else None

    # ---- materializing -----------------------------------------------------------------------
    def checkout(
        self, ref: str, dest: str | os.PathLike[str] | None = None, force: bool = False, link: bool = False
    ) -> CheckoutResult:
        """Put a version's content back byte for byte: into ``dest``, or into the working tree.

        Every object is verified while it is copied to a staging file; nothing at the destination
        changes unless every file verified. ``link`` (only with ``dest``) asks for read-only
        files, hard-linked to the store's objects where possible (no copy at all).
        """
        if link and dest is None:
            raise UsageError("--link: read-only hard-linked files are only written to a --dir checkout")
        version_id = self.resolve(ref)
        self.require_files(version_id)
        manifest = self.manifest(version_id)
        snapshots = self.version_snapshots(version_id)
        wanted: dict[str, FileEntry] = {}
        for snap in snapshots.values():
            for entry in snap.files:
                wanted[entry.path] = entry
        if manifest.project_file:
            wanted.setdefault(PROJECT_FILE, FileEntry(PROJECT_FILE, manifest.project_file, 0))
        if dest is not None:
            return self._checkout_into(Path(dest), str(dest), version_id, wanted, link)
        from tether.project.storage import worktree_lock

        with worktree_lock(self.dot):  # a commit in this copy records the tree before or after, never half
            return self._checkout_tree(ref, version_id, wanted, force)

    def _checkout_tree(self, ref: str, version_id: str, wanted: dict[str, FileEntry], force: bool) -> CheckoutResult:
        """``checkout`` into the working tree, holding the working-copy lock."""
        head = self.head()
        current: dict[str, FileEntry] = {}  # what the current version records, path by path
        if head:
            for snap in self.version_snapshots(head).values():
                current.update((entry.path, entry) for entry in snap.files)
        stale = set(current) - set(wanted)
        if head:
            head_file = self.manifest(head).project_file
            if head_file:
                current.setdefault(PROJECT_FILE, FileEntry(PROJECT_FILE, head_file, 0))
        if not force:
            drift = self.status().drifted
            if drift:
                names = ", ".join(_drift_label(item) for item in drift)
                raise DriftError(f"working tree has changes no version records: {names}; commit them or use --force")
            self._refuse_overwrites(wanted, stale, current)
        previous_branch = self.current_branch()
        stale_folders = [(self.root / rel).parent for rel in stale if is_posix_relative(rel)]
        # --force also replaces an untracked file standing where one of the version's folders goes
        replaceable = stale | _files_where_folders_go(self.root, wanted) if force else stale
        written = self._materialize(self.root, wanted, clean_folders=stale_folders, replaceable=replaceable)
        removed = self._remove_stale(stale)
        # "HEAD" (say, `checkout HEAD --force` to discard edits) keeps the current branch checked out.
        branch = previous_branch if ref == "HEAD" else (ref if self.meta.get_branch(ref) == version_id else None)
        left_behind = None
        if previous_branch is None and head and head != version_id and not self._reachable_by_name(head, version_id):
            left_behind = head
        self._set_head(branch, version_id)
        self._mark_synced(version_id)
        self.reload()
        return CheckoutResult(version_id, str(self.root), written, removed, branch or version_id, left_behind)

    def _checkout_into(self, target_root: Path, label: str, version_id: str, wanted: dict[str, FileEntry], link: bool) -> CheckoutResult:
        """``checkout --dir``: into a new or empty folder; a failure leaves nothing behind (the
        files and folders this checkout created are removed, nothing that was there before)."""
        target_root = target_root.resolve()
        try:
            if target_root.exists() and (not target_root.is_dir() or any(target_root.iterdir())):
                raise UsageError(f"--dir {label}: exists and is not an empty folder")
        except PermissionError:
            raise UsageError(f"--dir {label}: permission denied") from None
        created = _missing_folders(target_root)
        try:
            target_root.mkdir(parents=True, exist_ok=True)
            written = self._materialize(target_root, wanted, link=link)
        except BaseException:
            for folder in reversed(created):  # deepest first; only folders this checkout made
                with suppress(OSError):
                    folder.rmdir()
            raise
        return CheckoutResult(version_id, str(target_root), written, 0, None)

    def _refuse_overwrites(
        self, wanted: dict[str, FileEntry], stale: set[str], current: dict[str, FileEntry], verb: str = "checkout"
    ) -> None:
        """Refuse a checkout that would overwrite or remove a file whose bytes the current version
        does not record: an untracked file where the target has one, or a local change. A file
        that already holds the target's bytes is left alone, so it is no conflict."""
        untracked: list[str] = []
        changed: list[str] = []

        def judge(rel: str) -> None:
            recorded = current.get(rel)
            if recorded is None:
                if rel == PROJECT_FILE:
                    return  # the current version predates recording tether.toml
                untracked.append(rel)
                return
            try:
                same = self.tree.file_entry(rel).digest == recorded.digest
            except (OSError, TetherError, ComponentError):
                same = False
            if not same:
                changed.append(rel)

        for rel in sorted(set(wanted) | stale):
            if not is_posix_relative(rel):
                continue  # refused with its own message when it is written
            path = self.root / rel
            if not os.path.lexists(path):
                continue
            if rel in wanted and path.is_file() and not path.is_symlink() and self._holds(self.root, rel, wanted[rel], mode=False):
                continue
            if path.is_dir() and not path.is_symlink():
                if rel in wanted:  # a folder where the target has a file: every file in it would go
                    for dirpath, _, filenames in os.walk(path):
                        for name in sorted(filenames):
                            if not is_temporary_name(name):
                                judge((Path(dirpath) / name).relative_to(self.root).as_posix())
                continue
            judge(rel)
        problems = []
        if untracked:
            noun, it = ("untracked file would", "it") if len(untracked) == 1 else ("untracked files would", "them")
            problems.append(f"{noun} be overwritten by {verb}: {_name_some(untracked)}; move {it} or use --force")
        if changed:
            problems.append(f"local changes would be lost by {verb}: {_name_some(changed)}; commit them or use --force")
        if problems:
            raise DriftError("; ".join(problems))

    def _reachable_by_name(self, version_id: str, new_head: str) -> bool:
        """True when a branch, an alias or the new HEAD reaches ``version_id`` (it is one of them
        or an ancestor of one)."""
        from tether.meta.lifecycle import lifecycle_repository

        pending = [new_head, *self.meta.list_branches().values()]
        pending += [state.version_id for state in lifecycle_repository(self.meta).list_aliases().values()]
        seen: set[str] = set()
        while pending:
            candidate = pending.pop()
            if candidate == version_id:
                return True
            if candidate in seen:
                continue
            seen.add(candidate)
            pending.extend(self.meta.get_parents(candidate))
        return False

    def _remove_stale(self, stale: set[str]) -> int:
        """Remove the current version's files the new one does not have, then the folders that
        leaves empty (as Git does; a folder holding anything else stays). Returns how many went,
        counting a file the checkout already replaced with a folder."""
        removed = 0
        emptied: set[Path] = set()
        for rel in sorted(stale):
            path = self.root / rel
            if not is_posix_relative(rel):
                continue
            if path.is_file():
                path.unlink()
                removed += 1
                emptied.add(path.parent)
            elif path.is_dir() and not path.is_symlink():
                removed += 1  # a file in the way of the new version's folder, removed when placing
        for folder in sorted(emptied, key=lambda item: len(item.parts), reverse=True):
            while folder != self.root and folder.is_relative_to(self.root) and not folder.is_symlink():
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty (or not ours to remove): the folders above it stay too
                folder = folder.parent
        return removed

    def _materialize(
        self,
        target_root: Path,
        entries: dict[str, FileEntry],
        link: bool = False,
        clean_folders: list[Path] | None = None,
        replaceable: set[str] | None = None,
    ) -> int:
        """Stage every entry (verified) next to its destination, then move them all into place.

        The store clones (reflink) or writes with large sequential writes; ``link`` asks for
        read-only files hard-linked to the store (executables are copied, read-only too). Each
        file is staged under one predictable name (``.NAME.tether-tmp``): in the working tree,
        the leftovers of a killed checkout in the folders written to (and ``clean_folders``) are
        removed first, holding the checkout lock so gc never takes a staging file in use.
        ``replaceable`` are files the checkout removes anyway (checked by the caller): one in the
        way of an entry's folder (a file that became a folder) is removed when placing.
        """
        if target_root != self.root:
            return self._stage_and_place(target_root, entries, link, undo_placed=True)
        from tether.project.storage import checkout_lock
        from tether.project.worktree import STALE_TEMPORARY_SECONDS, remove_temporaries

        folders = [(self.root / rel).parent for rel in entries if is_posix_relative(rel)] + list(clean_folders or [])

        def clean(alone: bool) -> None:
            remove_temporaries(folders, None if alone else STALE_TEMPORARY_SECONDS)

        with checkout_lock(self.dot, clean):
            return self._stage_and_place(target_root, entries, link, undo_placed=False, replaceable=replaceable)

    def _stage_and_place(
        self,
        target_root: Path,
        entries: dict[str, FileEntry],
        link: bool,
        undo_placed: bool,
        replaceable: set[str] | None = None,
    ) -> int:
        """Stage, then rename into place. On failure the staging files and the folders created
        for them are removed; with ``undo_placed`` (a new --dir) so are the files already placed.
        An entry whose folder is a ``replaceable`` file is staged beside that file, which is
        removed only when placing (nothing changes unless every file verified)."""
        staged: list[tuple[Path, Path, FileEntry, Path | None]] = []
        created: list[Path] = []
        placed: list[Path] = []
        destination = _SafeDestinations(target_root)
        try:
            for rel, entry in sorted(entries.items()):
                final = destination(rel)
                if final.is_file() and not final.is_symlink() and self._holds(target_root, rel, entry):
                    continue
                created.extend(_missing_folders(final.parent))
                staging = staging_path(final)
                blocker = None
                try:
                    final.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError) as exc:
                    blocker = _file_in_the_way(target_root, rel, replaceable or set())
                    if blocker is None:
                        raise CheckFailedError(f"{rel}: a file is in the way of its folder; nothing was changed") from exc
                    staging = staging_path(blocker.parent / f"{blocker.name}~{digest_bytes(rel.encode())[:16]}")
                except PermissionError as exc:
                    raise UsageError(f"{self._shown(exc.filename or final.parent)}: permission denied") from exc
                try:
                    self.store.materialize(entry.digest, staging, link=link and not entry.executable, staged=True)
                except ObjectMissingError as exc:
                    raise VerificationError(f"{rel}: object {entry.digest[:12]} is missing from the store") from exc
                except ObjectCorruptError as exc:
                    raise VerificationError(f"{rel}: object {entry.digest[:12]} is corrupted (it no longer hashes to its name)") from exc
                except FileExistsError as exc:
                    raise CheckFailedError(
                        f"{self._shown(staging)}: another checkout is writing {rel} (its staging file exists); "
                        "nothing was changed, try again when it has finished"
                    ) from exc
                except StoreError as exc:
                    raise UsageError(f"{rel}: {exc}") from exc
                except PermissionError as exc:
                    raise UsageError(f"{self._shown(exc.filename or final)}: permission denied") from exc
                staged.append((staging, final, entry, blocker))
                if link:
                    if entry.executable:
                        os.chmod(staging, 0o555)
                else:
                    os.chmod(staging, 0o755 if entry.executable else 0o644)
            for staging, final, _, blocker in staged:
                if blocker is not None:
                    if os.path.lexists(blocker) and not blocker.is_dir():
                        blocker.unlink()
                    created.extend(_missing_folders(final.parent))
                    final.parent.mkdir(parents=True, exist_ok=True)
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                os.replace(staging, final)
                placed.append(final)
        except BaseException:
            for staging, _, _, _ in staged:
                with suppress(FileNotFoundError):
                    staging.unlink()
            if undo_placed:
                for final in placed:
                    with suppress(FileNotFoundError):
                        final.unlink()
            for folder in reversed(created):
                with suppress(OSError):
                    folder.rmdir()  # only when empty: never what was there before
            raise
        return len(staged)

    def _shown(self, path: str | os.PathLike[str] | bytes) -> str:
        """A path for a message: relative to the project when inside it."""
        text = os.fsdecode(path)
        try:
            return Path(text).relative_to(self.root).as_posix()
        except ValueError:
            return text

    def _holds(self, target_root: Path, rel: str, entry: FileEntry, mode: bool = True) -> bool:
        """True when the destination file already has the entry's bytes (stat-cached in the tree)
        and, with ``mode``, its executable bit: a file whose mode alone differs is written again."""
        try:
            if target_root == self.root:
                found = self.tree.file_entry(rel)
                return found.digest == entry.digest and (not mode or found.executable == entry.executable)
            st = (target_root / rel).stat()
            if (entry.size and st.st_size != entry.size) or (mode and bool(st.st_mode & stat.S_IXUSR) != entry.executable):
                return False
            return digest_file(target_root / rel)[0] == entry.digest
        except (OSError, ComponentError, TetherError):  # unreadable or odd: it is not proven to hold them
            return False

    # ---- branches ------------------------------------------------------------------------------
    def _check_branch_name(self, name: str) -> None:
        problem = name_problem(name)
        if problem:
            raise UsageError(f"branch name '{name}': {problem}")
        from tether.meta.lifecycle import lifecycle_repository

        if lifecycle_repository(self.meta).get_alias(name) is not None:
            raise UsageError(f"branch name '{name}': an alias of that name exists; branch and alias names must not collide")

    def branches(self) -> dict[str, str]:
        return self.meta.list_branches()

    def create_branch(self, name: str, from_ref: str = "HEAD") -> str:
        self._check_branch_name(name)
        version_id = self.resolve(from_ref)
        self.require_files(version_id)  # a name for a version makes it one whose files everything may use
        try:
            with self.naming(version_id):
                self.meta.set_branch(name, version_id, create_only=True)
        except BranchConflictError as exc:
            raise CheckFailedError(f"branch '{name}' already exists") from exc
        return version_id

    def delete_branch(self, name: str) -> tuple[str, str | None]:
        """Delete a branch: ``(the version it pointed at, that version again if no other branch,
        alias or HEAD reaches it)``, so the caller can say how to keep it before gc removes it."""
        from tether.project.storage import worktree_lock

        with worktree_lock(self.dot):  # a commit --branch or checkout here may not switch to it meanwhile
            return self._delete_branch(name)

    def _delete_branch(self, name: str) -> tuple[str, str | None]:
        version_id = self.meta.get_branch(name)
        if version_id is None:
            raise ReferenceNotFoundError(f"branch '{name}': no such branch")
        if name == self.current_branch():
            raise CheckFailedError(f"branch '{name}' is checked out; check out another first")
        try:
            self.meta.delete_branch(name, expected=version_id)
        except BranchConflictError as exc:
            raise CheckFailedError(f"branch '{name}' moved while deleting it ({exc}); nothing was deleted") from exc
        head = self.head()
        left_behind = None if head and self._reachable_by_name(version_id, head) else version_id
        return version_id, left_behind

    # ---- compose ---------------------------------------------------------------------------------
    def compose(
        self, from_ref: str, takes: dict[str, str], message: str, branch: str | None = None, force: bool = False
    ) -> CommitResult:
        """A new version: ``from_ref``'s components with the named ones taken from other versions.

        Every source version is a parent (``from_ref`` first). Components are taken whole, never
        merged: weights are opaque. When the new version lands on the checked-out branch its
        files are written into the working tree, refused (like checkout) where that would
        overwrite an untracked file or a local change, unless ``force``.
        """
        if not takes:
            raise UsageError("--take: name at least one component to take (NAME=REF)")
        if not message or not message.strip():
            raise UsageError("-m/--message: compose needs a message")
        from tether.project.storage import worktree_lock

        with worktree_lock(self.dot):
            return self._compose(from_ref, takes, message, branch, force)

    def _compose(self, from_ref: str, takes: dict[str, str], message: str, branch: str | None, force: bool) -> CommitResult:
        base_id = self.resolve(from_ref)
        self.require_files(base_id)
        snapshots = self.version_snapshots(base_id)
        parents = [base_id]
        for name, ref in takes.items():
            source_id = self.resolve(ref)
            self.require_files(source_id)
            source = self.version_snapshots(source_id)
            if name not in source:
                raise UsageError(f"--take {name}={ref}: version {source_id[:12]} has no component '{name}'")
            snapshots[name] = source[name]
            if source_id not in parents:
                parents.append(source_id)
        decls = {name: ComponentDecl(name, snap.kind, snap.spec) for name, snap in snapshots.items()}
        findings = self._check_pinning(decls)
        base_manifest = self.manifest(base_id)
        changed = sorted(name for name, snap in snapshots.items() if base_manifest.components.get(name) != snap.digest)
        target = branch or self.current_branch()
        if target is None:
            raise UsageError("compose: HEAD is detached; give --branch")
        self._check_branch_name(target)
        current_tip = self.meta.get_branch(target)
        on_checked_out = target == self.current_branch()
        if on_checked_out and current_tip is not None and changed and not force:
            drift = {item.name for item in self.status().drifted}
            if drift & set(changed):
                raise DriftError(f"compose: uncommitted changes in {', '.join(sorted(drift & set(changed)))}; commit them first")
        project_file_digest = self._compose_project_file(snapshots, base_manifest)
        entries: dict[str, FileEntry] = {}
        stale: set[str] = set()
        if on_checked_out:
            # The tree becomes the new version, as after a checkout of it: every file it records
            # (those already in place are left alone) and none of the current version's others.
            entries = {entry.path: entry for snap in snapshots.values() for entry in snap.files}
            if project_file_digest:
                entries[PROJECT_FILE] = FileEntry(PROJECT_FILE, project_file_digest, 0)
            current: dict[str, FileEntry] = {}
            head = self.head()
            if head:
                for snap in self.version_snapshots(head).values():
                    current.update((entry.path, entry) for entry in snap.files)
                head_file = self.manifest(head).project_file
                if head_file:
                    current.setdefault(PROJECT_FILE, FileEntry(PROJECT_FILE, head_file, 0))
            stale = set(current) - set(entries)
            if not force:  # refuse before anything is recorded or written, as checkout does
                self._refuse_overwrites(entries, stale, current, verb="compose")
        result = self._record_version(
            snapshots=snapshots,
            parents=parents,
            message=message,
            branch=target,
            expected=current_tip,
            changed=changed,
            findings=findings,
            store_from_tree=False,
            project_file_digest=project_file_digest,
        )
        if on_checked_out:
            stale_folders = [(self.root / rel).parent for rel in stale if is_posix_relative(rel)]
            self._materialize(self.root, entries, clean_folders=stale_folders, replaceable=stale)
            self._remove_stale(stale)
            self.reload()
            self._mark_synced(result.version_id)
        return result

    def _compose_project_file(self, snapshots: dict[str, Snapshot], base: Manifest) -> str | None:
        """The composed version's ``tether.toml``: the base's project table with each component's
        declaration as its snapshot records it."""
        import tomli_w

        data: dict[str, Any] = {"project": {"name": self.file.name, "tier": self.file.tier}}
        if base.project_file:
            from tether.project.projectfile import parse_text

            previous = parse_text(self.store.get_bytes(base.project_file), self.root / PROJECT_FILE)
            data = {key: value for key, value in previous.items() if key != "components"}
        data["components"] = {name: {"kind": snap.kind, **snap.spec} for name, snap in sorted(snapshots.items())}
        return self.store.put_bytes(tomli_w.dumps(data).encode("utf-8"))

    # ---- integrity -------------------------------------------------------------------------------
    def referenced_objects(self, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[tuple[str, str]]:
        """(object digest, who needs it) for every object any version (but those in ``skip``) refers to."""
        for digest, who, what in self.object_users(skip):
            yield digest, f"{who} {what}"

    def object_users(self, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[tuple[str, str, str]]:
        """(object digest, who, what) for every use of an object by a version or an eval run:
        ``("version e8d927561ad6", "component m file w.safetensors")``, ``("eval run 1a2b3c4d5e6f", "body")``.

        Pruned versions (``gc --unreachable``) and those in ``skip`` need nothing any more."""
        skip = set(skip) | set(self.store.pruned())
        for record in self.meta.list_versions():
            if record.version_id in skip:
                continue
            try:
                manifest = Manifest.from_bytes(record.manifest, expected_id=record.version_id)
            except VerificationError:
                continue
            who = f"version {record.version_id[:12]}"
            if manifest.project_file:
                yield manifest.project_file, who, PROJECT_FILE
            for name, digest in manifest.components.items():
                try:
                    snap = self.snapshot(digest)
                except VerificationError:
                    continue
                for entry in snap.files:
                    yield entry.digest, who, f"component {name} file {entry.path}"
        from tether.meta.evalruns import eval_runs_of

        eval_runs = eval_runs_of(self.meta)
        for run in eval_runs.list_runs() if eval_runs is not None else []:
            yield run.body, f"eval run {run.run_id[:12]}", "body"

    def fsck(self, progress: Progress | None = None) -> FsckReport:
        """Verify every manifest, snapshot, reference and object; name each problem."""
        report = FsckReport()
        versions = self.meta.list_versions()
        known_ids = {record.version_id for record in versions}
        report.versions = len(versions)
        seen_snapshots: set[str] = set()
        for record in versions:
            short = record.version_id[:12]
            try:
                manifest = Manifest.from_bytes(record.manifest, expected_id=record.version_id)
            except (VerificationError, ValueError, KeyError) as exc:
                report.problems.append(f"version {short}: {exc}")
                continue
            for parent in manifest.parents:
                if parent not in known_ids:
                    report.problems.append(f"version {short}: parent {parent[:12]} is missing")
            digests = [*manifest.components.values(), *([manifest.environment] if manifest.environment else [])]
            for digest in digests:
                if digest in seen_snapshots:
                    continue
                seen_snapshots.add(digest)
                body = self.meta.get_snapshot(digest)
                if body is None:
                    report.problems.append(f"version {short}: snapshot {digest[:12]} is missing")
                elif digest_bytes(body) != digest:
                    report.problems.append(f"version {short}: snapshot {digest[:12]} does not hash to its digest")
        report.snapshots = len(seen_snapshots)
        pruned = set(self.store.pruned())
        report.pruned = len(pruned & known_ids)
        for name, version_id in self.meta.list_branches().items():
            if version_id not in known_ids:
                report.problems.append(f"branch {name}: points at missing version {version_id[:12]}")
            elif version_id in pruned:
                report.problems.append(f"branch {name}: points at version {version_id[:12]}, whose files gc --unreachable removed")
        if pruned:
            from tether.meta.lifecycle import lifecycle_repository

            for alias, state in sorted(lifecycle_repository(self.meta).list_aliases().items()):
                if state.version_id in pruned:
                    report.problems.append(
                        f"alias {alias}: serves version {state.version_id[:12]}, whose files gc --unreachable removed"
                    )
        users: dict[str, dict[tuple[str, str], None]] = {}  # insertion-ordered sets
        for digest, who, what in self.object_users():
            users.setdefault(digest, {})[(who, what)] = None
        needed = {digest: list(uses) for digest, uses in users.items()}
        from tether.project.storage import verify_store

        # Every object re-hashed (never trusting a stat), files stored in parts rebuilt and checked.
        report.objects, problems = verify_store(self.store, needed, progress)
        report.problems.extend(problem.message for problem in problems)
        report.object_problems.extend(problem.to_json() for problem in problems)
        return report

    def gc(
        self, grace_seconds: float = 3600.0, dry_run: bool = False, progress: Progress | None = None, unreachable: bool = False
    ) -> GcReport:
        """Remove objects no version refers to, once older than the grace period (so an in-flight
        commit's fresh objects are never taken), temporary files of killed writers (in the store
        and, for a killed checkout, in the working tree), and the
        ``tether.resolve`` copies of versions no alias keeps that nothing loaded within it.

        With ``unreachable``, also the files of versions no name reaches any more (see
        :mod:`tether.project.prune`); their records stay.

        Never while a commit is in flight (gc waits for the commit lock, then refuses); the parts
        of every file kept are kept.
        """
        if not grace_seconds >= 0:  # also refuses NaN
            raise UsageError(f"--grace: expected 0 or more seconds, got {grace_seconds:g}")
        from tether.project.storage import gc_lock

        with gc_lock(self.dot):
            return self._gc_locked(grace_seconds, dry_run, progress, unreachable)

    def _gc_locked(self, grace_seconds: float, dry_run: bool, progress: Progress | None, unreachable: bool = False) -> GcReport:
        from tether.project.storage import grace_closure

        report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds)
        pruning = []
        if unreachable:
            from tether.project.prune import unreachable_versions

            pruning = unreachable_versions(self, grace_seconds)
            report.pruned = [
                {"version_id": record.version_id, "created_at": record.created_at, "message": self.manifest(record.version_id).message}
                for record in pruning
            ]
        needed = {digest for digest, _ in self.referenced_objects(skip={record.version_id for record in pruning})}
        from tether.lifecycle.deploy import protected_objects

        report.protected, rollback_objects = protected_objects(self)  # each alias's last rollback_window targets
        needed |= rollback_objects
        needed, young = grace_closure(self.store, needed, grace_seconds)
        if not dry_run:
            when = _now()
            for record in pruning:  # before any of their objects go: a killed gc leaves them named
                self.store.mark_pruned(record.version_id, {"time": when, "by": "gc --unreachable"})
        stored = list(self.store.iter_digests())
        for index, digest in enumerate(stored, start=1):
            if progress:
                progress("collecting garbage", index, len(stored))
            if digest in needed and digest not in young:
                report.kept += 1
                continue
            if digest in young or self.store.age_seconds(digest) < grace_seconds:
                # unreferenced, but younger than the grace period (an in-flight commit may need it)
                report.kept += 1
                report.kept_young += 1
                with suppress(StoreError):
                    report.kept_young_bytes += self.store.stored_size(digest)
                continue
            report.removed.append(digest)
            report.bytes_freed += self.store.stored_size(digest)
        if not dry_run:
            # Files stored in parts before the parts: a gc killed in between leaves orphaned
            # parts (whole objects the next gc takes), never a file that names a missing part.
            for digest in sorted(report.removed, key=lambda digest: not self.store.parts(digest)):
                self.store.delete(digest)
            report.temporary_removed = self.store.clean_temporary(grace_seconds)
            from tether.project.worktree import project_folders, remove_temporaries

            # Staging files a killed checkout left in the working tree: gc holds the lock every
            # checkout holds while staging, so none of them is still being written.
            report.temporary_removed += len(remove_temporaries(project_folders(self.root), None))
        from tether.lifecycle.runtime import clean_live

        kept_live = {item["version_id"] for item in report.protected}
        report.live_removed = clean_live(self.dot, kept_live, grace_seconds, dry_run)
        return report


def _neg_time(time: str) -> str:
    """Heap key ordering ISO timestamps newest first."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in time)


def _file_changes(old: Snapshot, new: Snapshot) -> list[dict[str, str]]:
    """Files added, removed, with other bytes (``content``) or only another mode (``mode``: the
    executable bit, which the snapshot records too)."""
    old_files = {entry.path: entry for entry in old.files}
    new_files = {entry.path: entry for entry in new.files}
    changes = []
    for path in sorted(set(old_files) | set(new_files)):
        if path not in new_files:
            changes.append({"path": path, "change": "removed"})
        elif path not in old_files:
            changes.append({"path": path, "change": "added"})
        elif old_files[path].digest != new_files[path].digest:
            changes.append({"path": path, "change": "content"})
        elif old_files[path].executable != new_files[path].executable:
            changes.append({"path": path, "change": "mode"})
    return changes


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, outermost first (what mkdir creates)."""
    missing: list[Path] = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.insert(0, folder)
        folder = folder.parent
    return missing


def _files_where_folders_go(root: Path, rels: Iterable[str]) -> set[str]:
    """The folders of ``rels`` (project-relative) that exist as something other than a folder."""
    folders: set[str] = set()
    for rel in rels:
        parts = rel.split("/")[:-1]
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return {folder for folder in folders if os.path.lexists(root / folder) and not (root / folder).is_dir()}


def _file_in_the_way(root: Path, rel: str, replaceable: set[str]) -> Path | None:
    """The file (not folder) that stands where a folder of ``rel`` must go, when it is one the
    checkout removes anyway (in ``replaceable``); None when nothing, or something else, is there."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        path = root / folder
        if path.is_dir():
            continue
        return path if os.path.lexists(path) and folder in replaceable else None
    return None


def _drift_label(item: ComponentStatus) -> str:
    """``system (modified: prompts/system.md)``: a refused checkout names the files at stake, not
    only their component, so the user knows what to commit or move."""
    paths = [entry["path"] for entry in item.files if entry.get("path")]
    return f"{item.name} ({item.state}: {_name_some(paths)})" if paths else f"{item.name} ({item.state})"


def _name_some(paths: list[str], limit: int = 5) -> str:
    """Up to ``limit`` paths, then how many more."""
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


class _SafeDestinations:
    """``root/rel`` for each stored path of one checkout, refused when the path or a symlinked
    folder would leave ``root``; each folder's real path is worked out once, not once per file."""

    def __init__(self, root: Path):
        self.root = root
        self._real_root = os.path.realpath(root)
        self._folders: dict[str, bool] = {}  # folder -> inside the root

    def __call__(self, rel: str) -> Path:
        if not is_posix_relative(rel):
            raise VerificationError(f"stored path '{rel}' is not a relative path inside the project; refusing to write it")
        final = self.root / rel
        folder = os.path.dirname(final)
        inside = self._folders.get(folder)
        if inside is None:
            real = os.path.realpath(folder) if os.path.exists(folder) else folder
            inside = self._folders[folder] = is_within(real, self._real_root)
        if not inside:
            raise VerificationError(f"{rel}: its folder is a symlink leading outside {self.root}; refusing to write it")
        return final


