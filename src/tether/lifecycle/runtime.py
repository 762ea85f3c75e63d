"""The runtime API an application imports: ``tether.resolve("prod")`` and the live version.

``resolve`` materializes the version an alias (or any reference) names into
``.tether/live/<version ID>/``, verifying every file against its digest, and keeps the result in
process. A warm call is a dictionary lookup and a clock read; only once per refresh interval
(default 5 s, ``[policy] refresh_seconds``) does it ask the database where the alias points, so
an alias move (a promote or a rollback) is picked up without a restart. Content that cannot be
verified is never served: ``resolve`` raises :class:`~tether.errors.VerificationError`.

``LiveVersion.guard()`` catches what resolve cannot: the application's own copies of the files
edited in place on a server, and an inference stack that drifted from the one the version was
committed with.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import DriftError, UsageError, VerificationError
from tether.meta.base import MetadataError

if TYPE_CHECKING:
    from tether.audit.log import AsyncRecording, Recording

LIVE_DIR = "live"
_LOG = logging.getLogger("tether")


@dataclass(frozen=True)
class ModelRef:
    """A model component as the application uses it."""

    name: str
    form: str  # hosted | hub | weights
    provider: str | None = None
    id: str | None = None
    hub: str | None = None
    revision: str | None = None
    path: Path | None = None  # materialized weights (file or folder)
    retired: bool = False
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexRef:
    """A retrieval index component: its materialized documents and artifact, and how it was built."""

    name: str
    documents: list[Path]
    embedding_model: str
    chunking: dict[str, Any]
    params: dict[str, Any]
    artifact: Path | None


class LiveVersion:
    """One verified, materialized version, read through its components.

    ``alias`` is the alias it was resolved through (None for another reference); ``version_id``
    is the exact version. Accessors read the materialized files (cached: a version is immutable).
    """

    def __init__(
        self,
        version_id: str,
        root: Path,
        snapshots: dict[str, Any],
        alias: str | None = None,
        project_root: Path | None = None,
        ref: str | None = None,
        environment: dict[str, Any] | None = None,
        pinned_packages: tuple[str, ...] = (),
    ) -> None:
        self.version_id = version_id
        self.alias = alias
        self.ref = ref or alias or version_id
        self.root = Path(root)
        self.project_root = Path(project_root) if project_root else None
        self.snapshots = snapshots
        self.environment = environment  # captured when the version was committed
        self.pinned_packages = pinned_packages  # [policy] pinned_packages: what guard holds to the version
        self._cache: dict[tuple[str, str, str | None], Any] = {}
        self._loaded: set[str] = set()  # components whose files the application read

    def __repr__(self) -> str:
        via = f"{self.alias} -> " if self.alias else ""
        return f"LiveVersion({via}{self.version_id[:12]})"

    @property
    def components(self) -> dict[str, str]:
        """Component name -> kind."""
        return {name: snap.kind for name, snap in self.snapshots.items()}

    # ---- accessors -------------------------------------------------------------------------------
    def _component(self, kind: str, name: str | None) -> tuple[str, Any]:
        if name is None:
            names = [item for item, snap in self.snapshots.items() if snap.kind == kind]
            if len(names) != 1:
                found = ", ".join(sorted(names)) or "none"
                raise UsageError(f"version {self.version_id[:12]}: name the {kind} component (found: {found})")
            name = names[0]
        snap = self.snapshots.get(name)
        if snap is None:
            raise UsageError(f"version {self.version_id[:12]}: no component '{name}'")
        if snap.kind != kind:
            article = "an" if kind[:1] in "aeiou" else "a"
            raise UsageError(f"version {self.version_id[:12]}: component '{name}' is a {snap.kind}, not {article} {kind}")
        return name, snap

    def _file(self, name: str, rel: str) -> Path:
        self._loaded.add(name)
        return self.root / rel

    def path(self, name: str, rel: str | None = None) -> Path:
        """A materialized file of any component (its only file when ``rel`` is omitted)."""
        snap = self.snapshots.get(name)
        if snap is None:
            raise UsageError(f"version {self.version_id[:12]}: no component '{name}'")
        if rel is None:
            if not snap.files:
                raise UsageError(f"component '{name}' ({snap.kind}) has no files: it is described, not stored")
            if len(snap.files) != 1:
                raise UsageError(f"component '{name}' has {len(snap.files)} files; name one")
            rel = snap.files[0].path
        elif snap.file(rel) is None:
            raise UsageError(f"component '{name}' has no file '{rel}'")
        return self._file(name, rel)

    def prompt(self, name: str | None = None, file: str | None = None) -> str:
        """A prompt's text (``file`` picks one when the component has several)."""
        name, snap = self._component("prompt", name)
        key = ("prompt", name, file)
        if key not in self._cache:
            if file is None and len(snap.files) != 1:
                listed = ", ".join(entry.path for entry in snap.files)
                raise UsageError(f"prompt '{name}' has {len(snap.files)} files ({listed}); pass file=")
            rel = file if file is not None else snap.files[0].path
            if snap.file(rel) is None:
                raise UsageError(f"prompt '{name}' has no file '{rel}'")
            self._cache[key] = self._file(name, rel).read_text(encoding="utf-8")
        return self._cache[key]  # type: ignore[no-any-return]

    def config(self, name: str | None = None) -> dict[str, Any]:
        """A config parsed to a dict (YAML, JSON or TOML, as declared)."""
        from tether.components.config import detect_format, parse_config

        name, snap = self._component("config", name)
        key = ("config", name, None)
        if key not in self._cache:
            entry = snap.files[0]
            fmt = detect_format(name, entry.path, snap.spec.get("format"))
            self._cache[key] = parse_config(self._file(name, entry.path).read_bytes(), entry.path, fmt)
        return json.loads(json.dumps(self._cache[key]))  # a copy: callers may mutate theirs

    def model(self, name: str | None = None) -> ModelRef:
        """A model's identity; for weights, ``.path`` is the materialized file or folder."""
        from tether.components.model import model_form

        name, snap = self._component("model", name)
        spec = dict(snap.spec)
        form = model_form(spec)
        path = None
        if form == "weights":
            self._loaded.add(name)
            path = self.root / spec["path"].rstrip("/")
        return ModelRef(
            name=name,
            form=form,
            provider=spec.get("provider"),
            id=spec.get("id"),
            hub=spec.get("hub"),
            revision=spec.get("revision"),
            path=path,
            retired=bool(spec.get("retired", False)),
            spec=spec,
        )

    def tools(self, name: str | None = None) -> list[dict[str, Any]]:
        """The tool schemas as written (one per file, or each list's items), in file order."""
        name, snap = self._component("tools", name)
        key = ("tools", name, None)
        if key not in self._cache:
            tools: list[dict[str, Any]] = []
            for entry in sorted(snap.files, key=lambda item: item.path):
                data = json.loads(self._file(name, entry.path).read_text(encoding="utf-8-sig"))
                tools.extend(data if isinstance(data, list) else [data])
            self._cache[key] = tools
        return json.loads(json.dumps(self._cache[key]))  # type: ignore[no-any-return]

    def index(self, name: str | None = None) -> IndexRef:
        """A retrieval index: materialized documents, artifact, embedding model and chunking."""
        name, snap = self._component("index", name)
        self._loaded.add(name)
        documents = sorted(snap.meta.get("documents", {}))
        artifact = snap.spec.get("artifact")
        return IndexRef(
            name=name,
            documents=[self.root / rel for rel in documents],
            embedding_model=snap.spec["embedding_model"],
            chunking=dict(snap.spec.get("chunking", {})),
            params=dict(snap.spec.get("params", {})),
            artifact=self.root / artifact if artifact else None,
        )

    # ---- audit -----------------------------------------------------------------------------------
    def record(self, request_id: str | None = None, subject: str | None = None, attributes: dict[str, Any] | None = None) -> Recording:
        """One audit record attributed to this exact version: ``with live.record(...) as rec: ...;
        rec.output(x)``. Written to the project's audit log (see :mod:`tether.audit`) even when the
        block raises; in ``sync`` mode durable before the block ends."""
        from tether.audit.log import open_log

        if self.project_root is None:
            raise UsageError("live.record: this live version has no project folder to keep an audit log in")
        return open_log(self.project_root).record(self, request_id=request_id, subject=subject, attributes=attributes)

    def record_async(
        self, request_id: str | None = None, subject: str | None = None, attributes: dict[str, Any] | None = None
    ) -> AsyncRecording:
        """:meth:`record` for coroutines: ``async with live.record_async(...) as rec:``; waiting for
        the record to be durable does not block the event loop."""
        from tether.audit.log import open_log

        if self.project_root is None:
            raise UsageError("live.record_async: this live version has no project folder to keep an audit log in")
        return open_log(self.project_root).record_async(self, request_id=request_id, subject=subject, attributes=attributes)

    # ---- guard -----------------------------------------------------------------------------------
    def guard(self, root: str | os.PathLike[str] | None = None, environment: bool = True) -> GuardReport:
        """Fingerprint what the application loaded and hold the inference stack to the version.

        Checks (1) every file this live version served (re-hashed), (2) the application's own
        copies of the version's files under ``root`` (default: the project folder) and the
        declarations in its ``tether.toml``, and (3) with ``environment``, the pinned packages
        (``[policy] pinned_packages``) and the accelerator against the environment captured with
        the version. Raises :class:`DriftError` naming every difference.
        """
        from tether.ids import digest_file

        report = GuardReport(version_id=self.version_id)
        for name in sorted(self._loaded):
            for entry in self.snapshots[name].files:
                path = self.root / entry.path
                if not path.is_file() or digest_file(path)[0] != entry.digest:
                    report.components.setdefault(name, []).append(f"{entry.path}: served copy changed after verification")
        base = Path(root) if root is not None else self.project_root
        if base is not None:
            self._guard_tree(base.resolve(), report)
        if environment:
            self._guard_environment(report)
        if report.drifted:
            raise GuardDriftError(report)
        return report

    def _guard_tree(self, base: Path, report: GuardReport) -> None:
        from tether.components import get_kind
        from tether.errors import TetherError
        from tether.ids import digest_file
        from tether.project.projectfile import PROJECT_FILE, load_project_file

        for name, snap in sorted(self.snapshots.items()):
            present = [entry for entry in snap.files if (base / entry.path).is_file()]
            if snap.files and not present:
                report.skipped.append(name)  # the application does not keep its own copy
                continue
            report.checked.append(name)
            for entry in snap.files:
                path = base / entry.path
                if not path.is_file():
                    report.components.setdefault(name, []).append(f"{entry.path}: missing")
                elif digest_file(path)[0] != entry.digest:
                    report.components.setdefault(name, []).append(f"{entry.path}: content differs")
        try:
            project_file = load_project_file(base / PROJECT_FILE, validate_components=False)
        except TetherError:
            return  # no project file beside the files: nothing declared to compare
        for name, decl in project_file.components.items():
            snap = self.snapshots.get(name)
            if snap is None or decl.kind != snap.kind:
                continue
            try:
                spec = get_kind(decl.kind).validate(name, dict(decl.spec))
            except Exception:  # an invalid declaration differs from the version by definition
                spec = decl.spec
            if spec != snap.spec:
                report.components.setdefault(name, []).append(f"declaration in {PROJECT_FILE} differs from the version")

    def _guard_environment(self, report: GuardReport) -> None:
        from tether.components.environment import capture_environment, normalize_package

        captured = self.environment
        if captured is None:
            report.environment.append("no environment was captured with this version")
            return
        running_env = capture_environment()
        pinned = [normalize_package(name) for name in self.pinned_packages]
        running = running_env.get("packages", {})
        recorded = captured.get("packages", {})
        for name in pinned:
            before, now = recorded.get(name), running.get(name)
            if before != now:
                report.environment.append(f"package {name}: {before or '(absent)'} in the version, {now or '(absent)'} running")
        old_acc, new_acc = captured.get("accelerator") or {}, running_env.get("accelerator") or {}
        if old_acc.get("present") or new_acc.get("present"):
            for key in ("present", "vendor", "driver"):
                if old_acc.get(key) != new_acc.get(key):
                    report.environment.append(f"accelerator {key}: {old_acc.get(key)} in the version, {new_acc.get(key)} running")
            old_gpus = [gpu.get("name") for gpu in old_acc.get("nvidia_smi", {}).get("gpus", [])]
            new_gpus = [gpu.get("name") for gpu in new_acc.get("nvidia_smi", {}).get("gpus", [])]
            if old_gpus != new_gpus:
                report.environment.append(f"accelerator GPUs: {old_gpus} in the version, {new_gpus} running")
        report.pinned = pinned


@dataclass
class GuardReport:
    """What ``guard`` checked and every difference it found."""

    version_id: str
    components: dict[str, list[str]] = field(default_factory=dict)  # component -> differences
    environment: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # components the application keeps no copy of
    pinned: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.components or self.environment)

    def message(self) -> str:
        parts = [f"{name} ({'; '.join(items)})" for name, items in sorted(self.components.items())]
        parts.extend(self.environment)
        return f"drift from version {self.version_id[:12]}: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "drifted": self.drifted,
            "components": self.components,
            "environment": self.environment,
            "checked": self.checked,
            "skipped": self.skipped,
            "pinned": self.pinned,
        }


class GuardDriftError(DriftError):
    """What ``guard`` raises: a :class:`DriftError` carrying the full :class:`GuardReport`."""

    def __init__(self, report: GuardReport):
        super().__init__(report.message())
        self.report = report


# ---- resolve ----------------------------------------------------------------------------------------
@dataclass
class _Entry:
    live: LiveVersion
    deadline: float
    token: Any  # what the cheap check compares: (version ID, moves) for an alias


class _Source:
    """An open project and its lifecycle repository, kept for the cheap re-checks."""

    def __init__(self, project_dir: str | os.PathLike[str] | None):
        from tether.lifecycle.policy import load_policy
        from tether.meta.lifecycle import lifecycle_repository
        from tether.project.core import Project

        self.project = Project.open(project_dir if project_dir is not None else ".")
        self.repo = lifecycle_repository(self.project.meta)
        self.policy = load_policy(self.project.file)
        self.lock = threading.Lock()
        self.verified: set[str] = set()  # version IDs verified by this process
        self.holds: dict[str, int] = {}  # version ID -> its live folder, open under a shared lock

    def locate(self, ref: str) -> tuple[str, str | None, Any]:
        """(version ID, alias name or None, change token) for a reference."""
        from tether.project.refs import split_suffixes

        base, steps = split_suffixes(ref)
        if steps == 0 and "@{" not in base and self.project.meta.get_branch(base) is None:
            state = self.repo.get_alias(base)
            if state is not None:
                return state.version_id, base, (state.version_id, state.moves)
        version_id = self.project.resolve(ref)
        return version_id, None, version_id

    def load(self, version_id: str, alias: str | None, ref: str) -> LiveVersion:
        """Materialize (once per machine) and verify (once per process) a version."""
        snapshots = self.project.version_snapshots(version_id)  # manifest and snapshots verify here
        live_root = self.project.dot / LIVE_DIR
        folder = live_root / version_id
        if version_id not in self.verified:
            for _ in range(3):  # a gc may take the folder away between materializing and holding it
                if not folder.is_dir():
                    self._materialize(version_id, live_root, folder)
                hold = _hold(folder)
                if hold is not None:
                    self.holds[version_id] = hold
                    break
            else:
                raise VerificationError(f"version {version_id[:12]}: {folder} keeps disappearing while it is loaded")
            try:
                _verify_folder(folder, snapshots, version_id)
            except BaseException:
                # release the hold: every retry of a refused copy would otherwise keep one more
                # descriptor (and shared lock) open for the life of the process
                os.close(self.holds.pop(version_id))
                raise
            self.verified.add(version_id)
            with contextlib.suppress(OSError):
                os.utime(folder)  # "last loaded", which gc's grace period counts from
        manifest = self.project.manifest(version_id)
        return LiveVersion(
            version_id,
            folder,
            snapshots,
            alias=alias,
            project_root=self.project.root,
            ref=ref,
            environment=_environment(self.project, manifest.environment),
            pinned_packages=self.policy.pinned_packages,
        )


    def _materialize(self, version_id: str, live_root: Path, folder: Path) -> None:
        staging = live_root / f".staging-{uuid.uuid4().hex}"
        try:
            self.project.checkout(version_id, dest=staging)  # every object verified while copied
            _read_only(staging)
            try:
                os.rename(staging, folder)
            except OSError:
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:
        for hold in self.holds.values():
            with contextlib.suppress(OSError):
                os.close(hold)
        self.holds.clear()
        self.project.close()


def _read_only(folder: Path) -> None:
    """Drop the write bits of every file of a live copy: it is served as the version, and an
    edit in place would only make the next verification refuse it."""
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):  # a checkout writes regular files only; never follow a link
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)


def _hold(folder: Path) -> int | None:
    """Open ``folder`` under a shared lock for as long as this process may read it (gc removes
    only folders it can lock exclusively; the kernel drops the lock when the process ends).
    None when the folder at that path is no longer the one locked (a gc renamed it away)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a gc holds it exclusively
        if os.path.samestat(os.fstat(fd), os.stat(folder)):
            return fd
    except FileNotFoundError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _environment(project: Any, digest: str | None) -> dict[str, Any] | None:
    body = project.meta.get_snapshot(digest) if digest else None
    return json.loads(body) if body else None


def _verify_folder(folder: Path, snapshots: dict[str, Any], version_id: str) -> None:
    from tether.ids import digest_file

    for name, snap in snapshots.items():
        for entry in snap.files:
            path = folder / entry.path
            try:
                digest = digest_file(path)[0]
            except OSError as exc:
                raise VerificationError(
                    f"version {version_id[:12]}: component {name}: {entry.path}: materialized copy unreadable ({exc.strerror}); "
                    f"remove {folder} to re-materialize"
                ) from exc
            if digest != entry.digest:
                raise VerificationError(
                    f"version {version_id[:12]}: component {name}: {entry.path}: materialized copy does not match its digest; "
                    f"refusing to serve it (remove {folder} to re-materialize)"
                )


_CACHE: dict[tuple[str, str, Any, Any], _Entry] = {}
_SOURCES: dict[str, _Source] = {}
_OUTAGES: set[tuple[str, str, Any, Any]] = set()  # keys served from cache while the database is unreachable
_LOCK = threading.Lock()


#: inside :func:`request_scope`: what each reference resolved to first in this request
_REQUEST: ContextVar[dict[tuple[str, str, Any], LiveVersion] | None] = ContextVar("tether_request", default=None)


@contextlib.contextmanager
def request_scope() -> Iterator[None]:
    """Within: every reference resolves once, and later ``resolve`` calls of it get that version.

    The audit middleware and ``AuditLog.recorded`` resolve their target before the handler runs.
    Were the handler's own ``tether.resolve("prod")`` to refresh in between while the alias moves,
    the record would name one version and another would answer. Scopes nest (the outer one holds);
    the context reaches threads the handler is run on (``contextvars`` are copied there).
    """
    if _REQUEST.get() is not None:
        yield
        return
    token = _REQUEST.set({})
    try:
        yield
    finally:
        _REQUEST.reset(token)


def resolve(
    alias_or_ref: str,
    project_dir: str | os.PathLike[str] | None = None,
    refresh_seconds: float | None = None,
) -> LiveVersion:
    """The live version ``alias_or_ref`` names, verified; cached, re-checked every refresh interval
    (within one :func:`request_scope`, the version it named first)."""
    request = _REQUEST.get()
    if request is not None:
        pin = (os.getcwd(), alias_or_ref, project_dir)
        live = request.get(pin)
        if live is None:
            live = request[pin] = _resolve(alias_or_ref, project_dir, refresh_seconds)
        return live
    return _resolve(alias_or_ref, project_dir, refresh_seconds)


def _resolve(alias_or_ref: str, project_dir: str | os.PathLike[str] | None, refresh_seconds: float | None) -> LiveVersion:
    key = (os.getcwd(), alias_or_ref, project_dir, refresh_seconds)
    entry = _CACHE.get(key)
    if entry is not None and time.monotonic() < entry.deadline:
        return entry.live
    return _refresh(key, alias_or_ref, project_dir, refresh_seconds, entry)


def _refresh(
    key: tuple[str, str, Any, Any],
    ref: str,
    project_dir: str | os.PathLike[str] | None,
    refresh_seconds: float | None,
    entry: _Entry | None,
) -> LiveVersion:
    source_key = str(Path(project_dir if project_dir is not None else ".").resolve())
    with _LOCK:
        source = _SOURCES.get(source_key)
        if source is None:
            source = _Source(project_dir)
            _SOURCES[source_key] = source
    interval = source.policy.refresh_seconds if refresh_seconds is None else refresh_seconds
    with source.lock:
        try:
            version_id, alias, token = source.locate(ref)
        except (MetadataError, OSError) as exc:
            if entry is None:
                raise  # nothing verified to fall back on
            # The previous version is immutable and was verified: keep serving it through the
            # outage, and ask again at the next interval.
            if key not in _OUTAGES:
                _OUTAGES.add(key)
                _LOG.warning(
                    "tether.resolve(%r): cannot check where it points (%s); serving %s until the metadata "
                    "database answers again",
                    ref,
                    exc,
                    entry.live.version_id[:12],
                )
            _CACHE[key] = _Entry(entry.live, time.monotonic() + interval, entry.token)
            return entry.live
        if key in _OUTAGES:
            _OUTAGES.discard(key)
            _LOG.info("tether.resolve(%r): the metadata database answers again", ref)
        unchanged = entry is not None and entry.token == token
        live = entry.live if unchanged and entry is not None else source.load(version_id, alias, ref)
        _CACHE[key] = _Entry(live, time.monotonic() + interval, token)
    return live


def _after_fork_in_child() -> None:
    """A forked child (a pre-fork server's worker) keeps what the parent resolved and verified,
    with fresh locks (another thread may have held one at the fork) and database connections
    of its own: the parent's are left open and untouched. The live copies stay locked against
    gc through the descriptors the child inherited."""
    global _LOCK
    _LOCK = threading.Lock()
    for source in _SOURCES.values():
        source.lock = threading.Lock()
        source.project.forget_inherited_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def clear_cache() -> None:
    """Forget every resolved version and close the projects (tests; a process that wants to
    drop what it resolved). A forked child needs no call: see :func:`_after_fork_in_child`."""
    with _LOCK:
        _CACHE.clear()
        _OUTAGES.clear()
        for source in _SOURCES.values():
            source.close()
        _SOURCES.clear()


def clean_live(dot: Path, keep: set[str], grace_seconds: float, dry_run: bool = False) -> list[str]:
    """Remove the live copies (``.tether/live/<version>``) of versions no alias keeps, once no
    process has loaded them for ``grace_seconds`` and no running process holds them, and
    staging folders of killed loaders.

    A copy is locked exclusively (a process that resolved it holds a shared lock until it
    ends), renamed away, then deleted, so a concurrent ``resolve`` sees either the whole folder
    or none (and materializes it again). Returns the version IDs removed.
    """
    from tether.ids import is_digest

    root = dot / LIVE_DIR
    if not root.is_dir():
        return []
    cutoff = time.time() - grace_seconds
    removed: list[str] = []
    for child in sorted(root.iterdir()):
        try:
            old = child.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if not old:
            continue
        if child.name.startswith((".staging-", ".removing-")):
            if not dry_run:
                shutil.rmtree(child, ignore_errors=True)
            continue
        if not is_digest(child.name) or child.name in keep:
            continue
        try:
            fd = os.open(child, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running process resolved this version and may still read it
            if not dry_run:
                doomed = root / f".removing-{uuid.uuid4().hex}"
                try:
                    os.rename(child, doomed)
                except OSError:
                    continue
                shutil.rmtree(doomed, ignore_errors=True)
            removed.append(child.name)
        finally:
            os.close(fd)
    return removed
