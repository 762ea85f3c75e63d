"""The audit log of one project: record requests, sign checkpoints, prove, query, purge.

Recording is built so that it does not depend on how the application found its version: any
object with ``.alias`` and ``.version_id`` (``tether.resolve(...)``'s live version) or the two
given explicitly.

Durability:

* ``sync`` -- ``record`` returns only once the record is fsynced. Writers hand records to one
  committer thread per log through a lock-free queue and sleep on a lock of their own; the
  committer writes everything queued meanwhile as one transaction (*group commit*: concurrent
  writers share an fsync) and wakes exactly the writers of that group.
* ``batched`` -- the committer gathers records for ``batch_interval_ms`` before writing; a queue
  longer than ``batch_size`` makes the caller wait for a flush (back-pressure, nothing dropped).
  The queue is flushed by :meth:`AuditLog.close`, at interpreter exit, and on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as _dt
import functools
import inspect
import json
import math
import os
import queue
import signal
import threading
import time as _time
import uuid
import weakref
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from tether.audit.config import AuditSettings, resolve_settings
from tether.audit.keys import ensure_signing_key, key_paths, load_signer, load_verifier
from tether.audit.merkle import (
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
)
from tether.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint, sign_note
from tether.audit.records import (
    PURGE,
    AuditRecordError,
    Checked,
    Payload,
    PendingRecord,
    Record,
    check_attributes,
    check_fields,
    decode_payload,
    encode_payload,
    format_time,
    make_record,
    salted_digest,
    utc_now,
)
from tether.audit.store import AuditDataError, AuditStore, CheckpointRow, LeafRow, SQLiteAuditStore
from tether.audit.tree import PathView, TreeView, extend_nodes, frontier, recomputed_leaf_hashes
from tether.audit.verified import load_state
from tether.errors import CheckFailedError, ReferenceNotFoundError, UsageError, VerificationError
from tether.ids import is_digest

AUDIT_DB = "audit.db"
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = object()


class AuditWriteError(CheckFailedError):
    """Records could not be made durable (the database refused the write)."""


# What AuditLog.query found when it checked a record (Record.proof)
PROOF_OK = "ok"  # its leaf hash, and its audit path to the latest signed checkpoint's root, verify
PROOF_NEW = "new"  # appended after the latest signed checkpoint: its leaf hash verifies (all there is to check)
PROOF_TAMPERED = "tampered"  # a check failed (Record.proof_problem says which)
MAX_NAMED = 3  # tampered records named in the error line


class TamperedRecordsError(VerificationError):
    """:meth:`AuditLog.query` found records that fail their check. ``records`` holds every record
    the query found, each marked in ``proof``; ``tampered`` those that failed."""

    def __init__(self, message: str, records: list[Record]):
        super().__init__(message)
        self.records = records
        self.tampered = [record for record in records if record.proof == PROOF_TAMPERED]


@dataclass(frozen=True)
class _Anchor:
    """What one query checks its records against."""

    size: int  # the latest signed checkpoint's tree size (0: none)
    root: bytes  # its root, from the signed note
    problem: str | None  # why no record can be vouched for (the checkpoint does not verify)
    verified: int  # the size `audit verify` remembers verifying (0: none)


def _duration(seconds: float) -> str:
    """``2h20m``, ``1d``, ``45s``: the largest unit and the next one, truncated."""
    units = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    left = max(0, int(seconds))
    for position, (name, size) in enumerate(units):
        if left >= size or size == 1:
            text = f"{left // size}{name}"
            if position + 1 < len(units):
                next_name, next_size = units[position + 1]
                if (left % size) // next_size:
                    text += f"{(left % size) // next_size}{next_name}"
            return text
    return "0s"


def _request_scope() -> contextlib.AbstractContextManager[None]:
    from tether.lifecycle.runtime import request_scope

    return request_scope()


def _check_latency(latency_ms: Any) -> None:
    """A finite, non-negative number (infinity or NaN would fail deep in the write as a bare
    OverflowError or ValueError)."""
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float) or not 0 <= latency_ms < math.inf:
        raise AuditRecordError(f"audit record: latency_ms must be a finite, non-negative number, got {latency_ms!r}")


def _target_fields(target: Any, alias: Any, version_id: Any) -> tuple[Any, Any]:
    """Alias and version ID from explicit arguments, else from ``target`` (a live version)."""
    if target is not None:
        if callable(target) and not hasattr(target, "version_id"):
            target = target()
        # a live version resolved through a branch or an ID has no alias: its reference labels it
        alias = alias if alias is not None else (getattr(target, "alias", None) or getattr(target, "ref", None))
        version_id = version_id if version_id is not None else getattr(target, "version_id", None)
    if alias is None:
        raise AuditRecordError("audit record: alias is required (give alias=... or an object with .alias)")
    if version_id is None:
        raise AuditRecordError("audit record: version_id is required (give version_id=... or an object with .version_id)")
    return alias, version_id


@dataclass
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    time: str
    created: bool

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root.hex(), "time": self.time, "created": self.created, "note": self.note}


@dataclass
class PurgeReport:
    before: str
    purged: int
    start: int
    end: int
    checkpoint_size: int
    dry_run: bool
    record_index: int | None = None
    kept_older: int = 0  # older records kept because a newer one precedes them in the log

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EraseReport:
    """What :meth:`AuditLog.erase` deleted now, and what an earlier erasure had (left as it was)."""

    request_id: str
    erased: list[dict[str, Any]] = field(default_factory=list)  # leaf_index, field, time, content, salt (deleted now)
    already_erased: list[dict[str, Any]] = field(default_factory=list)  # leaf_index, field, time, reason (the first erasure)

    @property
    def payloads(self) -> int:
        """Stored contents deleted now (none are kept under ``payloads = "none"``)."""
        return sum(1 for item in self.erased if item["content"])

    @property
    def salts(self) -> int:
        """Salts deleted now: the digests they salted can no longer be linked to any content."""
        return sum(1 for item in self.erased if item["salt"])

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "erased": self.erased, "already_erased": self.already_erased,
                "payloads_erased": self.payloads, "salts_erased": self.salts}


class _Marker:
    """A flush or stop request, queued behind the records it must wait for."""

    __slots__ = ("error", "stop", "unwritten", "waiter")

    def __init__(self, stop: bool = False):
        self.stop = stop
        self.error: BaseException | None = None
        self.unwritten = 0
        self.waiter = _allocate_lock()
        self.waiter.acquire()


class Recording:
    """One request being recorded: ``with log.record(...) as rec: ...; rec.output(x)``.

    The record is written when the block ends, whether it returns or raises (then with status
    ``error`` and the exception's type); the exception is never swallowed.
    """

    def __init__(self, log: AuditLog, alias: Any, version_id: Any, request_id: Any, subject: Any, attributes: Any,
                 checked: Checked | None = None):
        self._log = log
        self._checked = checked  # the fields as validated by AuditLog.record (None: validate when written)
        self.alias = alias
        self.version_id = version_id
        self.request_id = request_id if request_id is not None else str(uuid.uuid4())
        self.subject = subject
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._input: Any = _MISSING
        self._output: Any = _MISSING
        self._time: _dt.datetime | None = None
        self._start = 0.0
        self.index: int | None = None

    def input(self, value: Any) -> None:
        """The request's input: a salted digest always, the content where the policy keeps inputs.

        A value without a canonical form is refused here (:class:`AuditRecordError`), while the
        request can still fail, not when the block ends and the answer has already been given."""
        if self.strict:
            encode_payload(value)
        self._input = value

    def output(self, value: Any) -> None:
        """The response: a salted digest always, the content where the policy keeps outputs
        (refused at once, like :meth:`input`, when it has no canonical form)."""
        if self.strict:
            encode_payload(value)
        self._output = value

    def set(self, **attributes: Any) -> None:
        """Add free attributes to the record (checked at once, like :meth:`output`)."""
        check_attributes({**self.attributes, **attributes})
        self.attributes.update(attributes)
        self._checked = None

    def __enter__(self) -> Recording:
        self._time = utc_now()
        self._start = _time.perf_counter()
        return self

    strict = True  # explicit inputs/outputs must have a canonical form

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # None, not bool: the block's exception is never swallowed, and type checkers only know
        # that when __exit__ cannot return True (else code after a `return` inside looks reachable).
        latency = int((_time.perf_counter() - self._start) * 1_000_000)
        error_type = None
        if exc_type is not None:
            error_type = exc_type.__qualname__ if exc_type.__module__ == "builtins" else f"{exc_type.__module__}.{exc_type.__qualname__}"
        try:
            self.index = self._log._write(
                alias=self.alias, version_id=self.version_id, request_id=self.request_id, subject=self.subject,
                attributes=self.attributes, time=self._time, latency_us=latency,
                status="error" if exc_type is not None else "ok", error_type=error_type,
                input=self._input, output=self._output, strict_payloads=self.strict, checked=self._checked,
            )
        except Exception as failure:
            if exc is None:
                raise
            exc.add_note(f"tether: the audit record of request {self.request_id} was not written: {failure}")


class AsyncRecording(Recording):
    """``async with log.record_async(...) as rec:`` -- the same record, awaited without blocking."""

    async def __aenter__(self) -> AsyncRecording:
        self.__enter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        latency = int((_time.perf_counter() - self._start) * 1_000_000)
        error_type = None
        if exc_type is not None:
            error_type = exc_type.__qualname__ if exc_type.__module__ == "builtins" else f"{exc_type.__module__}.{exc_type.__qualname__}"
        try:
            pending = self._log._prepare(
                alias=self.alias, version_id=self.version_id, request_id=self.request_id, subject=self.subject,
                attributes=self.attributes, time=self._time, latency_us=latency,
                status="error" if exc_type is not None else "ok", error_type=error_type,
                input=self._input, output=self._output, strict_payloads=self.strict, checked=self._checked,
            )
            self.index = await self._log.submit_async(pending)
        except Exception as failure:
            if exc is None:
                raise
            exc.add_note(f"tether: the audit record of request {self.request_id} was not written: {failure}")


def _settle_futures(records: list[PendingRecord], error: BaseException | None) -> None:
    """Wake the coroutines waiting on these records: one callback per event loop per group."""
    by_loop: dict[Any, list[PendingRecord]] = {}
    for pending in records:
        if pending.future is not None:
            by_loop.setdefault(pending.future[0], []).append(pending)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, waiting, error)


def _settle(waiting: list[PendingRecord], error: BaseException | None) -> None:
    for pending in waiting:
        future = pending.future[1]
        if future.done():
            continue
        if error is None:
            future.set_result(pending.index)
        else:
            failure = AuditWriteError(f"audit record {pending.request_id}: not written ({error})")
            failure.__cause__ = error
            future.set_exception(failure)


class _Registry:
    """Open logs, flushed at interpreter exit and (in batched mode) on SIGTERM."""

    logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()
    installed = False
    lock = threading.Lock()

    signal_installed = False

    @classmethod
    def add(cls, log: AuditLog) -> None:
        with cls.lock:
            cls.logs.add(log)
            if not cls.installed:
                cls.installed = True
                atexit.register(cls.close_all)
            if log.settings.durability != "batched" or cls.signal_installed:
                return
            cls.signal_installed = True
            if threading.current_thread() is threading.main_thread():
                try:
                    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                        signal.signal(signal.SIGTERM, cls._on_sigterm)
                except (ValueError, OSError):  # not the main interpreter, or no signals here
                    pass

    @staticmethod
    def _on_sigterm(signum: int, frame: Any) -> None:
        # Unwind like an exit so `finally` blocks run and atexit flushes every queue.
        raise SystemExit(128 + signum)

    @classmethod
    def close_all(cls) -> None:
        for log in list(cls.logs):
            try:
                log.close()
            except Exception as exc:  # at exit there is no caller left to raise to
                import sys

                sys.stderr.write(f"tether: error: audit log {log.path}: {exc}\n")


class AuditLog:
    """The append-only, tamper-evident audit log of a project (``.tether/audit.db``)."""

    def __init__(
        self,
        root: Path,
        settings: AuditSettings,
        store: AuditStore,
        metadata_url: str | None = None,
        check_versions: bool = True,
    ):
        self.root = root
        self.dot = root / ".tether"
        self.path = self.dot / AUDIT_DB
        self.settings = settings
        self.store = store
        self._metadata_url = metadata_url
        self._meta: Any = None
        self._meta_lock = threading.Lock()
        self._check_versions = check_versions and metadata_url is not None
        self._known_versions: set[str] = set()
        self._verified_notes: dict[str, Checkpoint] = {}  # the latest checkpoint note verified by query
        self._version_info: dict[str, dict[str, Any]] = {}
        self.sinks: list[Callable[[Record], None]] = []
        # group commit: one committer thread per log and process
        self._lock = threading.Lock()
        self._closed = False
        self._write_error: BaseException | None = None
        self._check_origin()
        self._start_committer()
        _Registry.add(self)
        if settings.otel:
            from tether.audit.otel import SpanEmitter

            self.sinks.append(SpanEmitter(describe=self.describe_version))

    # ---- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        project_dir: str | os.PathLike[str] = ".",
        durability: str | None = None,
        check_versions: bool = True,
        create: bool = True,
    ) -> AuditLog:
        """The audit log of the project at ``project_dir`` (or the nearest one above it).

        ``create=False`` (queries, verification) refuses to create a missing log rather than
        starting an empty one where one may have been deleted.
        """
        from tether.project.core import DOT_DIR
        from tether.project.projectfile import PROJECT_FILE, load_project_file

        start = Path(project_dir).resolve()
        for folder in [start, *start.parents]:
            if (folder / PROJECT_FILE).is_file() and (folder / DOT_DIR).is_dir():
                break
        else:
            raise UsageError(f"{start}: not a tether project (no {PROJECT_FILE} with {DOT_DIR}/ here or above); run `tether init`")
        project_file = load_project_file(folder / PROJECT_FILE, validate_components=False)
        settings = resolve_settings(project_file.sections.get("audit"), project_file.tier, project_file.name, folder / PROJECT_FILE)
        if durability is not None:
            if durability not in ("sync", "batched"):
                raise UsageError(f"durability: '{durability}' is not one of sync, batched")
            settings = AuditSettings(**{**settings.__dict__, "durability": durability})
        if not create:
            settings = AuditSettings(**{**settings.__dict__, "durability": "sync", "otel": False})
        store = SQLiteAuditStore(folder / DOT_DIR / AUDIT_DB, create=create, origin=settings.origin)
        return cls(folder, settings, store, project_file.metadata_url, check_versions=check_versions)

    def _check_origin(self) -> None:
        stored = self.store.get_meta("origin")
        if stored is None:
            from tether.audit.store import AuditStoreError

            raise AuditStoreError(f"{self.path}: the log's origin is missing from its meta table (the database was damaged)", damaged=True)
        if stored != self.settings.origin:
            raise UsageError(
                f"tether.toml: audit.origin: '{self.settings.origin}' differs from the log's origin '{stored}' "
                "(an origin is fixed when the log is created)"
            )
        if not key_paths(self.dot)[0].exists() and self.store.latest_checkpoint() is None:
            ensure_signing_key(self.dot, self.origin)

    @property
    def origin(self) -> str:
        return self.store.get_meta("origin") or self.settings.origin

    # ---- versions ------------------------------------------------------------------------------------
    def _metadata(self) -> Any:
        if self._meta is None:
            from tether.meta import open_metadata

            self._meta = open_metadata(self._metadata_url or "", self.root)
        return self._meta

    def _check_version(self, version_id: str) -> None:
        if not self._check_versions or version_id in self._known_versions:
            return
        with self._meta_lock:
            if self._metadata().get_version(version_id) is None:
                raise AuditRecordError(f"audit record: version_id {version_id[:12]}: no such version in this project")
            self._known_versions.add(version_id)

    def describe_version(self, version_id: str) -> dict[str, Any]:
        """The models of a version, for span attributes: ``{"models": [{"provider", "model"}]}``."""
        cached = self._version_info.get(version_id)
        if cached is not None:
            return cached
        info: dict[str, Any] = {"models": []}
        if self._metadata_url is not None:
            from tether.components import Snapshot
            from tether.project.manifest import Manifest

            with self._meta_lock:
                meta = self._metadata()
                record = meta.get_version(version_id)
                if record is not None:
                    manifest = Manifest.from_bytes(record.manifest, expected_id=version_id)
                    for name, digest in sorted(manifest.components.items()):
                        if manifest.kinds.get(name) != "model":
                            continue
                        body = meta.get_snapshot(digest)
                        if body is None:
                            continue
                        spec = Snapshot.from_json(json.loads(body)).spec
                        if "provider" in spec:
                            info["models"].append({"component": name, "provider": spec["provider"], "model": spec["id"]})
                        elif "hub" in spec:
                            info["models"].append({"component": name, "provider": "huggingface", "model": spec["hub"]})
        self._version_info[version_id] = info
        return info

    # ---- recording --------------------------------------------------------------------------------------
    def record(
        self,
        target: Any = None,
        *,
        alias: str | None = None,
        version_id: str | None = None,
        request_id: str | None = None,
        subject: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Recording:
        """A context manager that writes one record when its block ends (even when it raises)."""
        return Recording(self, *self._recording_fields(target, alias, version_id, request_id, subject, attributes))

    def record_async(
        self,
        target: Any = None,
        *,
        alias: str | None = None,
        version_id: str | None = None,
        request_id: str | None = None,
        subject: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> AsyncRecording:
        """``async with log.record_async(...) as rec:``: :meth:`record` for coroutines (ASGI apps);
        waiting for the fsync does not block the event loop."""
        return AsyncRecording(self, *self._recording_fields(target, alias, version_id, request_id, subject, attributes))

    def _recording_fields(
        self,
        target: Any,
        alias: str | None,
        version_id: str | None,
        request_id: str | None,
        subject: str | None,
        attributes: dict[str, Any] | None,
    ) -> tuple[Any, ...]:
        """The fields of one recording, checked before the request runs, not after (they are
        checked again when written)."""
        alias, version_id = _target_fields(target, alias, version_id)
        checked = check_fields(alias, version_id, request_id, subject, attributes)
        self._check_version(version_id)
        return alias, version_id, request_id, subject, attributes, checked

    async def append_async(self, target: Any = None, **fields: Any) -> int | None:
        """:meth:`append` for coroutines."""
        alias, version_id = _target_fields(target, fields.pop("alias", None), fields.pop("version_id", None))
        latency_ms = fields.pop("latency_ms", 0.0)
        _check_latency(latency_ms)
        unknown = set(fields) - {"request_id", "subject", "attributes", "input", "output", "status", "error_type", "time"}
        if unknown:
            raise TypeError(f"append_async: unexpected arguments {', '.join(sorted(unknown))}")
        pending = self._prepare(
            alias=alias, version_id=version_id, request_id=fields.get("request_id"), subject=fields.get("subject"),
            attributes=fields.get("attributes"), time=fields.get("time"), latency_us=round(latency_ms * 1000),
            status=fields.get("status", "ok"), error_type=fields.get("error_type"), input=fields.get("input", _MISSING),
            output=fields.get("output", _MISSING), strict_payloads=True,
        )
        return await self.submit_async(pending)

    def append(
        self,
        target: Any = None,
        *,
        alias: str | None = None,
        version_id: str | None = None,
        request_id: str | None = None,
        subject: str | None = None,
        attributes: dict[str, Any] | None = None,
        input: Any = _MISSING,
        output: Any = _MISSING,
        latency_ms: float = 0.0,
        status: str = "ok",
        error_type: str | None = None,
        time: _dt.datetime | None = None,
    ) -> int | None:
        """The plain function form: write one finished request. Returns its leaf index (sync mode)."""
        alias, version_id = _target_fields(target, alias, version_id)
        _check_latency(latency_ms)
        return self._write(
            alias=alias, version_id=version_id, request_id=request_id, subject=subject, attributes=attributes,
            time=time, latency_us=round(latency_ms * 1000), status=status, error_type=error_type,
            input=input, output=output, strict_payloads=True,
        )

    def recorded(
        self,
        target: Any = None,
        *,
        alias: str | None = None,
        version_id: str | None = None,
        request_id: Callable[..., Any] | None = None,
        subject: Callable[..., Any] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Callable[[F], F]:
        """Decorator form: each call is a request; its arguments are the input, its return value
        the output. ``request_id``/``subject`` are callables over the call's arguments; ``target``
        may be a callable returning the live version (called per request, so alias moves show;
        the function's own ``tether.resolve`` of that reference then returns the same version)."""

        def decorate(function: F) -> F:
            signature = inspect.signature(function)

            def fields(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
                found_alias, found_version = _target_fields(target, alias, version_id)
                rid = request_id(*args, **kwargs) if request_id else None
                subj = subject(*args, **kwargs) if subject else None
                return found_alias, found_version, rid, subj

            def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError:
                    return _MISSING
                return {name: value for name, value in bound.arguments.items() if name not in ("self", "cls")}

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with _request_scope():
                        found_alias, found_version, rid, subj = fields(args, kwargs)
                        with self._recording(found_alias, found_version, rid, subj, attributes, arguments(args, kwargs)) as rec:
                            result = await function(*args, **kwargs)
                            rec._output = result
                            return result

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with _request_scope():
                    found_alias, found_version, rid, subj = fields(args, kwargs)
                    with self._recording(found_alias, found_version, rid, subj, attributes, arguments(args, kwargs)) as rec:
                        result = function(*args, **kwargs)
                        rec._output = result
                        return result

            return wrapper  # type: ignore[return-value]

        return decorate

    def _recording(self, alias: Any, version_id: Any, request_id: Any, subject: Any, attributes: Any, value: Any) -> Recording:
        # checked before the decorated function runs, as record() does: a bad subject or request ID
        # must refuse the call, not surface after it ran (its result lost, nothing recorded)
        rec = _LenientRecording(self, *self._recording_fields(None, alias, version_id, request_id, subject, attributes))
        rec._input = value
        return rec

    def _payload(self, value: Any, keep: bool, strict: bool) -> Payload | None:
        if value is _MISSING:
            return None
        try:
            return Payload.of(value, keep)
        except AuditRecordError:
            if strict:
                raise
            return None  # a decorated function's argument or result without a canonical form

    def _write(self, *, alias: Any, version_id: Any, request_id: Any, subject: Any, attributes: Any, time: Any,
               latency_us: int, status: str, error_type: str | None, input: Any, output: Any,
               strict_payloads: bool, checked: Checked | None = None) -> int | None:
        return self.submit(self._prepare(
            alias=alias, version_id=version_id, request_id=request_id, subject=subject, attributes=attributes,
            time=time, latency_us=latency_us, status=status, error_type=error_type, input=input, output=output,
            strict_payloads=strict_payloads, checked=checked,
        ))

    def _prepare(self, *, alias: Any, version_id: Any, request_id: Any, subject: Any, attributes: Any, time: Any,
                 latency_us: int, status: str, error_type: str | None, input: Any, output: Any,
                 strict_payloads: bool, checked: Checked | None = None) -> PendingRecord:
        pending = make_record(
            alias=alias, version_id=version_id, request_id=request_id, subject=subject, attributes=attributes,
            time=time, latency_us=latency_us, status=status, error_type=error_type,
            input=self._payload(input, self.settings.keeps_input, strict_payloads),
            output=self._payload(output, self.settings.keeps_output, strict_payloads), checked=checked,
        )
        if checked is None:
            self._check_version(pending.fields["version_id"])
        return pending

    def submit(self, pending: PendingRecord) -> int | None:
        """Queue a validated record; in sync mode wait until it is durable and return its index."""
        if self.settings.durability == "sync":
            waiter = _allocate_lock()
            waiter.acquire()
            pending.waiter = waiter
            pending.writer = _get_ident()
            self._put(pending)
            waiter.acquire()  # released by the committer once the group holding it is fsynced
            if pending.error is not None:
                raise AuditWriteError(f"audit record {pending.request_id}: not written ({pending.error})") from pending.error
            return pending.index
        self._put(pending)
        if self._queue.qsize() >= self.settings.batch_size:
            self.flush()  # back-pressure: a full queue is written by the caller's wait, never dropped
        return None

    async def submit_async(self, pending: PendingRecord) -> int | None:
        """:meth:`submit` for coroutines: waits for durability without blocking the event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self.settings.durability != "sync":
            self._put(pending)
            if self._queue.qsize() >= self.settings.batch_size:
                await loop.run_in_executor(None, self.flush)
            return None
        future = loop.create_future()
        pending.future = (loop, future)
        task = asyncio.current_task()
        pending.writer = id(task) if task is not None else _get_ident()
        self._put(pending)
        return await future

    def _put(self, item: PendingRecord | _Marker) -> None:
        with self._lock:
            if self._closed:
                raise UsageError(f"{self.path}: the audit log is closed")
            if self._pid != os.getpid():  # forked: the parent's thread and connection are not ours
                from tether.meta.base import INHERITED_HANDLES

                INHERITED_HANDLES.append(self.store)  # the parent's: never closed from here
                self.store = SQLiteAuditStore(self.path, create=False)
                self._start_committer()
            self._queue.put(item)
        need = self._gate_need
        if need and self._queue.qsize() >= need:
            self._gate_need = 0
            with contextlib.suppress(RuntimeError):  # another writer opened it first
                self._gate.release()

    def _after_fork_in_child(self) -> None:
        """Fresh locks (another thread may have held one at the fork) and the parent's database
        connections left alone: the first record in the child starts its own committer and
        connection (see ``_put``); queued records stay the parent's to write."""
        self._lock = threading.Lock()
        self._meta_lock = threading.Lock()
        if self._meta is not None:
            self._meta.forget_inherited_connections()

    def _start_committer(self) -> None:
        self._writers: dict[int, float] = {}  # writer thread -> when its last record was committed
        self._writers_reset = 0.0
        self._last_commit = 0.0
        self._gate = _allocate_lock()  # held by the committer; opened by the writer completing a group
        self._gate.acquire()
        self._gate_need = 0
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue[PendingRecord | _Marker] = queue.SimpleQueue()
        self._committer = threading.Thread(target=self._run, name="tether-audit-committer", daemon=True)
        self._committer.start()

    def _gather(self, first: PendingRecord | _Marker) -> list[PendingRecord | _Marker]:
        """The group to write: what is queued now (sync), or what arrives within the interval (batched).

        Sync: writers whose records were just committed are still waking up when the next group
        starts, so without a pause the writers split into two alternating half-groups. The
        committer therefore waits for the writers it saw in the last second, but never longer
        than the last commit took (so a writer that stopped costs at most one commit's time).
        """
        items = [first]
        if self.settings.durability == "sync" and not isinstance(first, _Marker):
            now = _time.monotonic()
            writers = self._writers
            if len(writers) > 64 or now - self._writers_reset > 1.0:
                writers = self._writers = {ident: seen for ident, seen in writers.items() if now - seen < 1.0}
                self._writers_reset = now
            expected = len(writers)
            self._drain(items)
            missing = expected - len(items)
            if missing > 0 and not any(isinstance(item, _Marker) for item in items):
                # Sleep on the gate, not on the queue: the writer whose record completes the group
                # opens it, so the committer wakes (and takes the GIL) once per group, not per record.
                self._gate_need = missing
                if self._queue.qsize() < missing:
                    self._gate.acquire(timeout=self._last_commit)
                self._gate_need = 0
                self._gate.acquire(blocking=False)  # closed again, whoever opened it and when
        if self.settings.durability == "batched" and not isinstance(first, _Marker):
            deadline = _time.monotonic() + self.settings.batch_interval_ms / 1000.0
            while (remaining := deadline - _time.monotonic()) > 0:
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                items.append(item)
                if isinstance(item, _Marker):
                    break
        self._drain(items)
        return items

    def _drain(self, items: list[PendingRecord | _Marker]) -> None:
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _run(self) -> None:
        """The committer: each group of records is one transaction and one fsync."""
        retry: list[PendingRecord] = []
        while True:
            try:
                first = self._queue.get(timeout=0.5) if retry else self._queue.get()
            except queue.Empty:
                first = _Marker()
            items = self._gather(first)
            records = retry + [item for item in items if not isinstance(item, _Marker)]
            markers = [item for item in items if isinstance(item, _Marker)]
            retry = []
            error: BaseException | None = None
            if records:
                began = _time.monotonic()
                try:
                    self.store.append(records)
                except BaseException as exc:
                    error = exc
                finished = _time.monotonic()
                self._last_commit = min(finished - began, 0.002)
                writers = self._writers
                for pending in records:
                    if pending.writer:
                        writers[pending.writer] = finished
            if error is None:
                self._write_error = None
                for pending in records:
                    pending.done = True
                    if pending.waiter is not None:
                        pending.waiter.release()
                _settle_futures(records, None)
                if self.sinks and records:
                    self._emit(records)
            elif self.settings.durability == "batched":
                retry = records  # kept, in order, for the next attempt; nothing is dropped
                self._write_error = error
            else:
                for pending in records:
                    pending.error = error
                    if pending.waiter is not None:
                        pending.waiter.release()
                _settle_futures(records, error)
            stop = False
            for marker in markers:
                marker.error = error
                marker.unwritten = len(retry)
                stop = stop or marker.stop
                marker.waiter.release()
            if stop:
                return

    def _emit(self, batch: list[PendingRecord]) -> None:
        for pending in batch:
            record = Record.from_leaf(pending.leaf_bytes)  # type: ignore[arg-type]
            for sink in self.sinks:
                try:
                    sink(record)
                except Exception as exc:  # telemetry never breaks the audit trail
                    import sys

                    sys.stderr.write(f"tether: warning: audit sink {sink!r} failed: {exc}\n")

    @property
    def write_error(self) -> BaseException | None:
        """Batched mode: why queued records are waiting to be retried (None while writes succeed)."""
        return self._write_error

    def flush(self) -> None:
        """Write everything queued so far; raises :class:`AuditWriteError` if it cannot be written."""
        marker = _Marker()
        with self._lock:
            if self._closed or self._pid != os.getpid():
                return  # closed, or a forked child that queued nothing of its own (no committer runs)
            self._queue.put(marker)
        marker.waiter.acquire()
        if marker.error is not None:
            raise AuditWriteError(f"{self.path}: {marker.unwritten} queued audit records could not be written ({marker.error})")

    def close(self) -> None:
        """Write what is queued, stop the committer and release the database."""
        marker = _Marker(stop=True)
        with self._lock:
            if self._closed:
                return
            self._closed = True  # no new records from here on
            self._queue.put(marker)
        try:
            if self._pid == os.getpid() and self._committer.is_alive():
                marker.waiter.acquire(timeout=120)
                self._committer.join(timeout=10)
        finally:
            if self._pid == os.getpid():  # a forked child that wrote nothing has only the parent's
                self.store.close()
            if self._meta is not None:
                self._meta.close()
        if marker.error is not None:
            raise AuditWriteError(f"{self.path}: {marker.unwritten} audit records could not be written before closing ({marker.error})")

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def verifier(self) -> Verifier:
        return load_verifier(self.dot)

    def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint of the whole log unless the latest one already covers it.

        Never signs a tree inconsistent with the last signed checkpoint: the consistency proof is
        computed and verified before signing, and stored beside the new checkpoint.
        """
        self.flush()
        size = self.store.size()
        latest = self.store.latest_checkpoint()
        if latest is not None and latest.size == size:
            return SignedCheckpoint(latest.size, latest.root, latest.note, latest.time, False)
        nodes = extend_nodes(self.store, size)  # the slow part, outside the write lock
        signer = load_signer(self.dot)
        with self.store.exclusive():
            latest = self.store.latest_checkpoint()
            if latest is not None and latest.size >= size:
                return SignedCheckpoint(latest.size, latest.root, latest.note, latest.time, False)
            conflicts = self.store.put_nodes(nodes)
            if conflicts:
                level, index = conflicts[0]
                raise VerificationError(
                    f"refusing to sign: cached tree node (level {level}, index {index}) disagrees with the records below it; "
                    "run `tether audit verify`"
                )
            view = TreeView(self.store, leaves=recomputed_leaf_hashes(self.store))  # sign only what was rehashed
            root = view.root(size)
            proof: list[bytes] = []
            if latest is not None:
                verifier = signer.verifier()
                try:
                    previous = open_checkpoint(latest.note, verifier, self.origin)
                except NoteError as exc:
                    raise VerificationError(f"refusing to sign: the last checkpoint (size {latest.size}) does not verify: {exc}") from exc
                proof = consistency_proof(previous.size, size, view.subtree)
                try:
                    verify_consistency(previous.size, size, proof, previous.root, root)
                except ProofError as exc:
                    raise VerificationError(
                        f"refusing to sign: the log of size {size} is not consistent with the last signed checkpoint "
                        f"(size {previous.size}): {exc}; run `tether audit verify`"
                    ) from exc
            note = sign_note(Checkpoint(self.origin, size, root).text(), signer)
            now = format_time(utc_now())
            self.store.add_checkpoint(size, root, note, now, latest.size if latest else None, proof)
        return SignedCheckpoint(size, root, note, now, True)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self.store.latest_checkpoint()

    def export_checkpoint(self, destination: str | os.PathLike[str]) -> SignedCheckpoint:
        """Sign (if needed) and write the latest checkpoint to a file kept outside the operator's reach."""
        signed = self.checkpoint()
        target = Path(destination)
        if target.is_dir():
            raise UsageError(f"--export {destination}: is a folder; give a file name")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(signed.note)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise UsageError(f"--export {destination}: cannot write ({exc.strerror or exc})") from exc
        with self.store.exclusive():
            self.store.add_export(format_time(utc_now()), signed.size, str(target.resolve()))
        return signed

    def export_overdue(self) -> str | None:
        """Why the declared export interval is not met, or None."""
        interval = self.settings.checkpoint_export_interval
        if interval is None or self.store.size() == 0:
            return None
        last = self.store.last_export()
        if last is None:
            return (f"no checkpoint was ever exported (audit.checkpoint_export_interval is {_duration(interval)}); "
                    "run `tether audit checkpoint --export FILE`")
        try:
            when = _dt.datetime.strptime(last[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
        except ValueError as exc:
            raise AuditDataError(f"the last checkpoint export: its time {last[0][:40]!r} is not a time tether writes "
                                 "(changed outside tether)") from exc
        age = (utc_now() - when).total_seconds()
        if age > interval:
            return (f"the last checkpoint export ({last[0]}) is {_duration(age - interval)} overdue: "
                    f"audit.checkpoint_export_interval is {_duration(interval)}; run `tether audit checkpoint --export FILE`")
        return None

    # ---- proofs ---------------------------------------------------------------------------------------------
    def _covering_checkpoint(self, index: int) -> CheckpointRow:
        latest = self.store.latest_checkpoint()
        if latest is None or latest.size <= index:
            raise CheckFailedError(f"leaf {index} is not covered by a signed checkpoint yet; run `tether audit checkpoint`")
        return latest

    def prove(self, request_id: str | None = None, index: int | None = None, single: bool = False) -> list[dict[str, Any]]:
        """Inclusion proofs (RFC 9162 2.1.3) against the latest checkpoint, one per matching leaf.

        A request ID may have been recorded more than once (a retry is a new record): ``single``
        refuses such an ID, naming its leaves, rather than prove several. With both ``index`` and
        ``request_id``, the leaf must hold that request."""
        if index is not None:
            rows = list(self.store.iter_leaves(index, index + 1))
            if not rows:
                raise ReferenceNotFoundError(f"leaf {index}: not in the audit log")
            if request_id is not None and rows[0].request_id != request_id:
                raise UsageError(f"leaf {index} is request '{rows[0].request_id}', not '{request_id}'")
        else:
            if not request_id:
                raise UsageError("prove: give a request ID")
            rows = self.store.leaves_by_request(request_id)
            if not rows:
                raise ReferenceNotFoundError(f"request '{request_id}': no record in the audit log")
            if single and len(rows) > 1:
                listed = ", ".join(str(row.index) for row in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
                raise UsageError(f"request '{request_id}' matches {len(rows)} records (leaves {listed}): prove one with --index N")
        proofs = []
        for row in rows:
            self._record(row)
            checkpoint = self._covering_checkpoint(row.index)
            view = TreeView(self.store)
            path = inclusion_proof(row.index, checkpoint.size, view.subtree)
            proofs.append({
                "type": "tether.inclusion-proof/1",
                "request_id": row.request_id,
                "leaf_index": row.index,
                "tree_size": checkpoint.size,
                "leaf": row.leaf.decode("utf-8"),
                "leaf_hash": row.leaf_hash.hex(),
                "proof": [item.hex() for item in path],
                "checkpoint": checkpoint.note,
            })
        return proofs

    def prove_consistency(self, old_note: str, verifier: Verifier | None = None) -> dict[str, Any]:
        """A consistency proof (RFC 9162 2.1.4) from an earlier checkpoint to the latest one."""
        verifier = verifier or self.verifier()
        try:
            old = open_checkpoint(old_note, verifier)
        except NoteError as exc:
            raise UsageError(f"--since: {exc}") from exc
        if old.origin != self.origin:
            raise UsageError(f"--since: checkpoint is for log '{old.origin}', not '{self.origin}'")
        latest = self.store.latest_checkpoint()
        if latest is None or latest.size < old.size:
            raise CheckFailedError(f"--since: the log has no signed checkpoint of size {old.size} or more; run `tether audit checkpoint`")
        if old.size < self.store.first_index():
            raise CheckFailedError(f"--since: size {old.size} is inside the purged prefix (purged up to {self.store.first_index()})")
        view = TreeView(self.store)
        path = consistency_proof(old.size, latest.size, view.subtree)
        return {
            "type": "tether.consistency-proof/1",
            "old_size": old.size,
            "new_size": latest.size,
            "proof": [item.hex() for item in path],
            "old_checkpoint": old_note,
            "new_checkpoint": latest.note,
        }

    # ---- queries -------------------------------------------------------------------------------------------------
    @staticmethod
    def _record(row: LeafRow) -> Record:
        """The record of a leaf row; a row or record that is not what tether wrote is refused,
        naming the leaf, rather than shown or used."""
        if row.damage is not None:
            raise AuditDataError(f"leaf {row.index}: {row.damage}; run `tether audit verify`", row.index)
        try:
            return Record.from_leaf(row.leaf)
        except ValueError as exc:
            raise AuditDataError(f"leaf {row.index}: {exc}; run `tether audit verify`", row.index) from exc

    def query(
        self,
        request_id: str | None = None,
        subject: str | None = None,
        version_id: str | None = None,
        start: _dt.datetime | None = None,
        end: _dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records by request ID, or matching subject / version / time range (end exclusive),
        each checked before it is returned (see :meth:`_check`). When one fails, raises
        :class:`TamperedRecordsError` naming it and holding every record found, each marked.

        ``version_id`` is a full version ID (a prefix or an alias matches nothing, so it is refused:
        ``tether.resolve(ref).version_id`` gives the ID)."""
        if version_id is not None and not is_digest(version_id):
            raise UsageError(
                f"query: version_id must be a full version ID (64 hex characters), got '{version_id}'; "
                "tether.resolve(REF).version_id gives it"
            )
        if self.settings.durability == "batched":
            self.flush()  # read your own writes: what this log queued is written before it is asked for
        if request_id is not None:
            rows = self.store.leaves_by_request(request_id)
        else:
            rows = self.store.find(
                subject=subject,
                version_id=version_id,
                start_time=format_time(start) if start else None,
                end_time=format_time(end) if end else None,
                limit=limit,
            )
        records = self._check(rows)
        tampered = [record for record in records if record.proof == PROOF_TAMPERED]
        if tampered:
            named = "; ".join(f"leaf {record.index}: {record.proof_problem}" for record in tampered[:MAX_NAMED])
            more = f"; and {len(tampered) - MAX_NAMED} more" if len(tampered) > MAX_NAMED else ""
            what = "1 record" if len(records) == 1 else f"{len(tampered)} of the {len(records)} records"
            raise TamperedRecordsError(
                f"audit query: {what} shown failed the check ({named}{more}); "
                "run `tether audit verify --full` to check every record", records)
        return records

    def _check(self, rows: list[LeafRow]) -> list[Record]:
        """The records of ``rows`` (purge records left out), each checked at the point of use and
        marked in ``proof``, at O(log n) per record rather than the whole log:

        * its leaf hash is recomputed from the stored record bytes and must equal the stored one,
          the record must sit at the leaf it was written for, and the query columns it was found
          by must agree with it;
        * a record inside the latest signed checkpoint must also be included in that checkpoint's
          signed root: an RFC 9162 audit path (as ``prove`` builds it, from the stored tree
          nodes) from the recomputed leaf hash; records of a block whose path already proved
          need only their hash at their place in it (:class:`PathView`). The checkpoint's
          signature is verified once per query (a note verified before in this process is not
          verified again), and a checkpoint of the size ``audit verify`` remembers must have the
          root it remembers;
        * a record after it is ``new``: nothing signed covers it yet. Unless ``audit verify``
          remembers verifying a checkpoint that covered it: then checkpoints were removed.

        A row or record that is not what tether writes raises :class:`AuditDataError`, as before.
        """
        found = []
        for row in rows:
            record = self._record(row)
            if record.type != PURGE:
                found.append((row, record))
        if not found:
            return []
        anchor = self._anchor()
        view: PathView | None = None
        records = []
        for row, record in found:
            hashed = leaf_hash(row.leaf)
            problem = None
            if hashed != row.leaf_hash:
                problem = "the record no longer hashes to its stored leaf hash: it was changed after it was written"
            elif record.index != row.index:
                problem = f"the record written as leaf {record.index} sits at leaf {row.index}: records were moved, inserted or deleted"
            elif (row.request_id, row.subject, row.time, row.version_id or "") != (
                    record.request_id, record.subject, record.time, record.version_id):
                problem = "its query columns (request, subject, time, version) disagree with the record: changed"
            elif anchor.problem is not None:
                problem = anchor.problem
            elif row.index < anchor.size:
                if view is None:
                    view = PathView(self.store, anchor.size, anchor.root)
                try:
                    view.check_inclusion(row.index, hashed)
                except ProofError:
                    problem = (f"its audit path does not lead to the root of the signed checkpoint of size {anchor.size}: "
                               "the record was rewritten with its leaf hash, or leaf hashes or tree nodes stored on its path were changed")
                except VerificationError as exc:  # AuditDataError too: a leaf or node on the path holds what tether never writes
                    problem = f"its audit path to the signed checkpoint of size {anchor.size} cannot be built: {exc}"
            elif row.index < anchor.verified:
                problem = (f"`tether audit verify` verified a signed checkpoint of size {anchor.verified} covering it, but the "
                           f"log's latest signed checkpoint has size {anchor.size}: checkpoints were removed")
            status = PROOF_TAMPERED if problem else (PROOF_OK if row.index < anchor.size else PROOF_NEW)
            records.append(dataclasses.replace(record, proof=status, proof_problem=problem))
        return records

    def _anchor(self) -> _Anchor:
        """The latest signed checkpoint, its signature verified (once per note and process: a
        note is immutable text, so one that verified keeps verifying), and what ``audit verify``
        remembers (:mod:`tether.audit.verified`, kept outside the database)."""
        state, _ = load_state(self.dot, self.origin)
        verified = state.size if state is not None else 0
        latest = self.store.latest_checkpoint()  # a damaged row raises AuditDataError, naming it
        if latest is None:
            return _Anchor(0, b"", None, verified)
        checkpoint = self._verified_notes.get(latest.note)
        if checkpoint is None:
            try:
                checkpoint = open_checkpoint(latest.note, self.verifier(), self.origin)
            except NoteError as exc:
                return _Anchor(latest.size, b"", f"the latest signed checkpoint (size {latest.size}) does not verify: {exc}", verified)
            self._verified_notes = {latest.note: checkpoint}
        if state is not None and state.size == checkpoint.size and state.root != checkpoint.root:
            return _Anchor(checkpoint.size, checkpoint.root, f"the latest signed checkpoint (size {checkpoint.size}) has another root "
                           "than the one `tether audit verify` verified: the log was rewritten and re-signed", verified)
        return _Anchor(checkpoint.size, checkpoint.root, None, verified)

    def payloads(self, index: int) -> dict[str, Any]:
        """The kept content of a record's input/output, or how it was erased."""
        out: dict[str, Any] = {}
        for row in self.store.payloads(index):
            if row.damage is not None:
                raise AuditDataError(f"leaf {index}: its stored payload: {row.damage}; run `tether audit verify`", index)
            try:
                out[row.field] = {"content": decode_payload(row.encoding, row.content), "encoding": row.encoding}
            except ValueError as exc:
                raise AuditDataError(f"leaf {index}: its stored {row.field} payload is not {row.encoding} ({exc}); "
                                     "run `tether audit verify`", index) from exc
        for erasure in self.store.erasures().values():
            if erasure.index == index:
                if erasure.damage is not None:
                    raise AuditDataError(f"leaf {index}: its erasure record: {erasure.damage}; run `tether audit verify`", index)
                out[erasure.field] = {"erased": erasure.time, "reason": erasure.reason}
        return out

    def matches(self, index: int, field_name: str, value: Any) -> bool | None:
        """Whether ``value`` is the input/output a record committed to (None once erased)."""
        from tether.audit.records import encode_payload

        if field_name not in ("input", "output"):
            raise UsageError(f"matches: field_name must be 'input' or 'output', got {field_name!r}")
        rows = list(self.store.iter_leaves(index, index + 1))
        if not rows:
            raise ReferenceNotFoundError(f"leaf {index}: not in the audit log")
        row = rows[0]
        salt = row.input_salt if field_name == "input" else row.output_salt
        digest = getattr(self._record(row), f"{field_name}_digest")
        if salt is None or digest is None:
            return None
        return salted_digest(salt, encode_payload(value)[1]) == digest

    # ---- retention -------------------------------------------------------------------------------------------------
    def erase(self, request_id: str, reason: str, fields: tuple[str, ...] = ("input", "output")) -> EraseReport:
        """Erase the payloads (content and salt) of a request for a data-subject request.

        The leaf keeps its digest, so every proof stays valid; ``verify`` shows "payload erased".
        A payload erased before stays as it was, with the time and reason of that first erasure
        (reported in ``already_erased``): erasing again changes nothing.
        """
        if not reason or not reason.strip():
            raise UsageError("--reason: say why the payload is erased (e.g. a data-subject request reference)")
        rows = self.store.leaves_by_request(request_id)
        if not rows:
            raise ReferenceNotFoundError(f"request '{request_id}': no record in the audit log")
        report = EraseReport(request_id)
        now = format_time(utc_now())
        with self.store.exclusive():
            earlier = self.store.erasures()  # read in the write transaction: a concurrent erase is seen
            for row in rows:
                record = self._record(row)
                for name in fields:
                    if getattr(record, f"{name}_digest") is None:
                        continue
                    first = earlier.get((row.index, name))
                    if first is not None:
                        if first.damage is not None:
                            raise AuditDataError(f"leaf {row.index}: its erasure record: {first.damage}; run `tether audit verify`", row.index)
                        report.already_erased.append({"leaf_index": row.index, "field": name, "time": first.time, "reason": first.reason})
                        continue
                    content, salt = self.store.erase_payload(row.index, name, now, reason.strip())
                    if content or salt:
                        report.erased.append({"leaf_index": row.index, "field": name, "time": now, "content": content, "salt": salt})
        return report

    def purge(self, before: _dt.datetime | None = None, dry_run: bool = False) -> PurgeReport:
        """Delete the oldest records (older than ``before``, default: the retention policy).

        Only a prefix of the log can go: the subtrees covering it are kept (so every later proof
        and root still computes), a checkpoint covering it is signed first, and the purge itself is
        appended to the log as a record. Where a retention is set, ``before`` may not reach into it
        (a dry run included): records younger than ``retention_days`` are kept, whatever date is given.
        """
        days = self.settings.retention_days
        limit = utc_now() - _dt.timedelta(days=days) if days is not None else None
        if before is None:
            if limit is None:
                raise UsageError("purge: no retention policy (set audit.retention_days in tether.toml or give --before)")
            before = limit
        cutoff = format_time(before)
        if limit is not None and before > limit:
            raise CheckFailedError(
                f"purge refused: audit.retention_days = {days} keeps every record for {days} days: "
                f"--before may be at most {limit.strftime('%Y-%m-%dT%H:%M:%SZ')} (only older records may be purged)"
            )
        self.flush()
        start = self.store.first_index()
        end = start
        for row in self.store.iter_leaves(start):
            if row.damage is not None:
                self._record(row)  # refused: the purge would keep a frontier over what it cannot trust
            if row.time >= cutoff:
                break
            end = row.index + 1
        kept_older = sum(1 for row in self.store.find(end_time=cutoff) if row.index >= end)
        report = PurgeReport(cutoff, end - start, start, end, 0, dry_run, kept_older=kept_older)
        if dry_run or end == start:
            latest = self.store.latest_checkpoint()
            report.checkpoint_size = latest.size if latest else 0
            return report
        signed = self.checkpoint()  # a signed checkpoint covering the purged prefix, kept for good
        report.checkpoint_size = signed.size
        kept = frontier(TreeView(self.store), end)
        prefix_root = CompactRange(end, [value for _, _, value in kept]).root()
        pending = make_record(
            alias="", version_id="", request_id=f"purge-{uuid.uuid4()}", record_type=PURGE,
            attributes={"purged_from": start, "purged_to": end, "before": cutoff, "checkpoint_size": signed.size,
                        "purged_prefix_root": prefix_root.hex()},
        )
        with self.store.exclusive():
            if self.store.first_index() != start:
                raise CheckFailedError("purge: another purge ran at the same time; nothing was purged, try again")
            self.store.append([pending])
            self.store.purge_prefix(end, {
                "time": format_time(utc_now()), "before": cutoff, "start": start, "frontier": kept,
                "checkpoint_size": signed.size, "record_index": pending.index,
            })
        report.record_index = pending.index
        return report

    # ---- export --------------------------------------------------------------------------------------------------------
    def iter_records(self, start: _dt.datetime | None = None, end: _dt.datetime | None = None) -> Iterator[tuple[LeafRow, Record]]:
        low = format_time(start) if start else None
        high = format_time(end) if end else None
        for row in self.store.iter_leaves(self.store.first_index()):
            if (low and row.time < low) or (high and row.time >= high):
                continue
            yield row, self._record(row)

    def export_jsonl(self, out: IO[str], start: _dt.datetime | None = None, end: _dt.datetime | None = None,
                     include_payloads: bool = False) -> int:
        """One JSON object per line: the canonical leaf, its hash and index (re-verifiable), and,
        when asked, kept payloads. Returns the number of lines."""
        count = 0
        for row, record in self.iter_records(start, end):
            line: dict[str, Any] = {"leaf_index": row.index, "leaf_hash": row.leaf_hash.hex(), "leaf": row.leaf.decode("utf-8"),
                                    "record": record.to_json()}
            if include_payloads:
                payloads = {}
                for payload in self.store.payloads(row.index):
                    if payload.damage is not None:
                        raise AuditDataError(f"leaf {row.index}: its stored payload: {payload.damage}; run `tether audit verify`", row.index)
                    try:
                        content = payload.content.decode("utf-8") if payload.encoding != "bytes" else payload.content.hex()
                    except UnicodeDecodeError as exc:
                        raise AuditDataError(f"leaf {row.index}: its stored {payload.field} payload is not {payload.encoding} "
                                             "(not UTF-8); run `tether audit verify`", row.index) from exc
                    payloads[payload.field] = {"encoding": payload.encoding, "content": content}
                line["payloads"] = payloads
            out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
        return count

    # ---- verification ----------------------------------------------------------------------------------------------------
    def verify(self, against: list[str] | None = None, verifier: Verifier | None = None,
               progress: Callable[[str, int, int], None] | None = None, full: bool = False) -> Any:
        """Check the log from the checkpoint verified last (``full``: recompute the whole tree);
        see :func:`tether.audit.verify.verify_log`."""
        from tether.audit.verify import verify_log

        return verify_log(self, against or [], verifier, progress, full=full)


class _LenientRecording(Recording):
    """The decorator's recording: arguments or results without a canonical form get no digest."""

    strict = False


@dataclass
class _OpenLogs:
    """One log per project folder for :func:`open_log` (the runtime's ``live.record``)."""

    logs: dict[Path, AuditLog] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_OPEN = _OpenLogs()


def _after_fork_in_child() -> None:
    _Registry.lock = threading.Lock()
    _OPEN.lock = threading.Lock()
    for log in list(_Registry.logs):
        log._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_log(project_dir: str | os.PathLike[str] = ".") -> AuditLog:
    """The shared, open audit log of a project (opened once per process)."""
    key = Path(project_dir).resolve()
    with _OPEN.lock:
        log = _OPEN.logs.get(key)
        if log is None or log._closed:
            log = AuditLog.open(key)
            _OPEN.logs[key] = log
        return log
