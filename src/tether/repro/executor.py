"""Running an eval set against a version and storing the run.

The version is checked out (verified) into a temporary folder and shown to the runner through a
:class:`~tether.repro.version.VersionView`; every case runs ``repeat`` times, in a thread pool
when the runner allows it. Seeds: the run has one seed (``--seed``, ``[evals] seed`` or a fresh
random one, always recorded); each call gets ``seed = derive(run seed, case key, repeat)``,
passed as ``seed=`` when the runner accepts it (the record says whether it did). tether never
seeds global random generators itself: that would race between threads and hide what the
runner really depends on.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import UsageError, VerificationError
from tether.ids import canonical_bytes, canonical_json, digest_bytes
from tether.meta.evalruns import EvalRunRecord
from tether.repro.cases import EvalCase, load_cases
from tether.repro.config import EvalSettings, check_callable_spec
from tether.repro.environment import capture_run_environment, fingerprint
from tether.repro.loading import accepts_keyword, load_callable
from tether.repro.runs import BODY_FORMAT, EvalRun, load_record, repository
from tether.repro.scorers import CaseFieldError, Scorer, make_scorer
from tether.repro.version import VersionView

if TYPE_CHECKING:
    from tether.project.core import Project

#: (calls done, calls in total)
Progress = Callable[[int, int], None]
SEED_DERIVATION = "blake3('<run seed>:<case key>:<repeat>') first 8 bytes >> 1"


def derive_seed(run_seed: int, key: str, repeat: int) -> int:
    """A per-call seed in [0, 2**63): stable under reordering of cases, distinct per repeat."""
    digest = digest_bytes(f"{run_seed}:{key}:{repeat}".encode())
    return int(digest[:16], 16) >> 1


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def evalset_settings(project: Project) -> EvalSettings:
    """The working tree's ``[evals]`` table with defaults."""
    return EvalSettings.from_section(project.file.sections.get("evals"))


def choose_evalset(project: Project, version_id: str, wanted: str | None) -> tuple[str, str]:
    """(component name, snapshot digest) of the eval set to run: ``wanted``, else the only one."""
    manifest = project.manifest(version_id)
    evalsets = sorted(name for name, kind in manifest.kinds.items() if kind == "evalset")
    short = version_id[:12]
    if wanted is not None:
        if wanted not in manifest.components:
            listed = ", ".join(evalsets) or "none"
            raise UsageError(f"--evalset {wanted}: version {short} has no component of that name (eval sets: {listed})")
        if manifest.kinds[wanted] != "evalset":
            raise UsageError(f"--evalset {wanted}: component '{wanted}' of version {short} is a {manifest.kinds[wanted]}, not an evalset")
        return wanted, manifest.components[wanted]
    if not evalsets:
        raise UsageError(f"version {short} has no evalset component; declare one with `tether add evalset NAME FILE.jsonl`")
    if len(evalsets) > 1:
        raise UsageError(
            f"version {short} has several eval sets ({', '.join(evalsets)}): choose one with --evalset or [evals] evalset"
        )
    return evalsets[0], manifest.components[evalsets[0]]


@dataclass
class _Call:
    """One runner call: which case, which repeat, and the seed it gets (None: the runner takes none)."""

    index: int  # position of the case
    repeat: int
    seed: int | None


def _encode_output(output: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(output record, error): text as is, anything else as canonical JSON."""
    if isinstance(output, str):
        data = output.encode("utf-8", errors="surrogatepass")
        return {"type": "text", "digest": digest_bytes(data), "content": output}, None
    try:
        text = canonical_json(output)
    except ValueError as exc:
        return None, {"stage": "output", "type": type(output).__name__, "message": f"output is neither text nor JSON: {exc}"}
    return {"type": "json", "digest": digest_bytes(text.encode("utf-8")), "content": output}, None


def _error(stage: str, exc: BaseException) -> dict[str, Any]:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"stage": stage, "type": type(exc).__name__, "message": message[:500]}


class _Executor:
    """Runs one call and scores it; every failure becomes a per-call error record, never an exception."""

    def __init__(
        self,
        runner: Callable[..., Any],
        scorer: Scorer,
        view: VersionView,
        cases: list[EvalCase],
        pass_seed: bool,
    ) -> None:
        self.runner = runner
        self.scorer = scorer
        self.view = view
        self.cases = cases
        self.pass_seed = pass_seed

    def call(self, call: _Call) -> dict[str, Any]:
        case = self.cases[call.index]
        result: dict[str, Any] = {"repeat": call.repeat, "seed": call.seed, "output": None, "score": 0.0, "error": None}
        started = time.perf_counter()
        try:
            data = copy.deepcopy(case.data)  # a runner that mutates its case cannot change later calls
            output = self.runner(self.view, data, seed=call.seed) if self.pass_seed else self.runner(self.view, data)
        except Exception as exc:
            result["seconds"] = round(time.perf_counter() - started, 6)
            result["error"] = _error("runner", exc)
            return result
        result["seconds"] = round(time.perf_counter() - started, 6)
        encoded, problem = _encode_output(output)
        if problem is not None:
            result["error"] = problem
            return result
        result["output"] = encoded
        try:
            score = self.scorer.score(output, copy.deepcopy(case.data))
            if not math.isfinite(score) or not 0.0 <= score <= 1.0:
                raise ValueError(f"score {score!r} is not in [0, 1]")
            result["score"] = float(score)
        except Exception as exc:
            result["error"] = _error("scorer", exc)
        return result


def run_eval(
    project: Project,
    ref: str,
    *,
    evalset: str | None = None,
    evalset_from: str | None = None,
    runner: str | None = None,
    repeat: int | None = None,
    seed: int | None = None,
    parallel: int | None = None,
    scorer: str | None = None,
    scorer_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> EvalRun:
    """Run the eval set of ``ref`` (every case ``repeat`` times) and store the run.

    ``evalset_from`` runs ``ref``'s system on another version's eval set instead (how an incumbent
    is judged on a candidate's new cases); the run records the eval set snapshot it used and,
    when that is not ``ref``'s own, the version it came from (summary ``evalset_from``).
    """
    settings = evalset_settings(project)
    version_id = project.resolve(ref)
    source_id = version_id if evalset_from is None else project.resolve(evalset_from)
    evalset_name, evalset_snapshot = choose_evalset(project, source_id, evalset or settings.evalset)
    foreign = project.manifest(version_id).components.get(evalset_name) != evalset_snapshot
    runner_spec = runner or settings.runner
    if runner_spec is None:
        raise UsageError('no runner: set [evals] runner = "module:function" in tether.toml or pass --runner')
    where = "--runner" if runner else "evals.runner"
    check_callable_spec(runner_spec, where)
    repeat = settings.repeat if repeat is None else repeat
    if repeat < 1:
        raise UsageError(f"--repeat {repeat}: expected at least 1")
    if seed is not None and seed < 0:
        raise UsageError(f"--seed {seed}: expected a whole number of at least 0")
    if parallel is not None and parallel < 1:
        raise UsageError(f"--parallel {parallel}: expected at least 1")
    run_seed = seed if seed is not None else settings.seed if settings.seed is not None else secrets.randbelow(2**31)
    scorer_name = scorer or settings.scorer
    options = settings.scorer_options if scorer_options is None else scorer_options

    function = load_callable(runner_spec, where, project.root)
    pass_seed = accepts_keyword(function, "seed")
    workers = parallel or settings.parallel or _runner_parallel(function)

    tmp = Path(tempfile.mkdtemp(prefix="tether-eval-"))
    try:
        root = tmp / "version"
        project.checkout(version_id, dest=root)
        snapshots = project.version_snapshots(version_id)
        scorer_impl = make_scorer(scorer_name, options, root, project.root)
        if foreign:
            spec_path, cases_file = _materialize_evalset(project, evalset_snapshot, tmp)
        else:
            spec_path = snapshots[evalset_name].spec["path"]
            cases_file = root / spec_path
        cases = load_cases(cases_file, spec_path)
        for case in cases:
            try:
                scorer_impl.check_case(case.data)
            except CaseFieldError as exc:
                raise UsageError(f"{spec_path}: line {case.line}: {exc}") from exc
        view = VersionView(version_id, root, snapshots)
        seeds = {
            "run": run_seed,
            "per_call": SEED_DERIVATION,
            "passed_to_runner": pass_seed,
        }
        environment = capture_run_environment(seeds)
        created_at = _now()
        calls = [
            _Call(index, r, derive_seed(run_seed, case.key, r) if pass_seed else None)
            for index, case in enumerate(cases)
            for r in range(repeat)
        ]
        executor = _Executor(function, scorer_impl, view, cases, pass_seed)
        expected = _view_digests(project, version_id, snapshots)
        _make_read_only(root)
        started = time.perf_counter()
        results = _execute(executor, calls, workers, progress)
        wall = time.perf_counter() - started
        _verify_view(root, expected, version_id)
    finally:
        _make_writable(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    per_case: list[list[dict[str, Any]]] = [[] for _ in cases]
    for call, result in zip(calls, results, strict=True):
        per_case[call.index].append(result)
    body = {
        "format": BODY_FORMAT,
        "cases": [
            {"key": case.key, "line": case.line, "results": sorted(per_case[i], key=lambda r: r["repeat"])}
            for i, case in enumerate(cases)
        ],
    }
    errors = [r["error"] for rs in per_case for r in rs if r["error"]]
    case_means = [sum(r["score"] for r in rs) / len(rs) for rs in per_case]
    summary = {
        "cases": len(cases),
        "repeat": repeat,
        "calls": len(calls),
        "errors": len(errors),
        "errors_by_stage": {stage: sum(1 for e in errors if e["stage"] == stage) for stage in sorted({e["stage"] for e in errors})},
        "errored_cases": sum(1 for rs in per_case if any(r["error"] for r in rs)),
        "mean_score": sum(case_means) / len(case_means),
        "runner": runner_spec,
        "runner_code": runner_code_digest(function),
        "scorer": scorer_name,
        "scorer_options": scorer_impl.options(),
        "seed": run_seed,
        "seed_passed": pass_seed,
        "parallel": workers,
        "seconds": round(wall, 6),
        "environment_fingerprint": fingerprint(environment),
    }
    if foreign:
        summary["evalset_from"] = source_id
    body_bytes = canonical_bytes(body)
    body_digest = project.store.put_bytes(body_bytes)
    environment_bytes = canonical_bytes(environment)
    environment_digest = digest_bytes(environment_bytes)
    record = EvalRunRecord.create(
        version_id=version_id,
        evalset=evalset_name,
        evalset_snapshot=evalset_snapshot,
        created_at=created_at,
        environment=environment_digest,
        body=body_digest,
        summary=summary,
    )
    repository(project).put_run(record, (environment_digest, environment_bytes))
    return load_record(project, record)


def _materialize_evalset(project: Project, snapshot_digest: str, tmp: Path) -> tuple[str, Path]:
    """(path in its version, verified copy) of another version's eval set file: outside the
    runner's view, which shows the evaluated version alone."""
    from tether.store import StoreError

    snapshot = project.snapshot(snapshot_digest)
    spec_path = snapshot.spec["path"]
    entry = snapshot.file(spec_path)
    if entry is None:
        raise VerificationError(f"eval set snapshot {snapshot_digest[:12]}: no file {spec_path}")
    target = tmp / "evalset.jsonl"
    try:
        project.store.materialize(entry.digest, target)
    except StoreError as exc:
        raise VerificationError(f"eval set snapshot {snapshot_digest[:12]}: {spec_path}: {exc}") from exc
    return spec_path, target


def _view_digests(project: Project, version_id: str, snapshots: dict[str, Any]) -> dict[str, str]:
    """Path -> digest of every file materialized for the runner (``tether.toml`` included)."""
    from tether.project.projectfile import PROJECT_FILE

    expected = {entry.path: entry.digest for snap in snapshots.values() for entry in snap.files}
    project_file = project.manifest(version_id).project_file
    if project_file:
        expected.setdefault(PROJECT_FILE, project_file)
    return expected


def _make_read_only(root: Path) -> None:
    """The runner's view: files 0444, folders 0555 (a write raises PermissionError for non-root)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o444)
        os.chmod(folder, 0o555)


def _make_writable(tmp: Path) -> None:
    """Undo :func:`_make_read_only` so the temporary folder can be removed."""
    if not tmp.exists():
        return
    for folder, _, files in os.walk(tmp):  # top-down: a folder is writable before its entries go
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)


def _verify_view(root: Path, expected: dict[str, str], version_id: str) -> None:
    """Refuse the run if the runner changed, removed or added a file of the version's view."""
    from tether.ids import digest_file

    for rel in sorted(expected):
        path = root / rel
        try:
            changed = path.is_symlink() or not path.is_file() or digest_file(path)[0] != expected[rel]
        except OSError:
            changed = True
        if changed:
            raise VerificationError(
                f"version {version_id[:12]}: {rel}: the runner changed the read-only view of the version; "
                "run not stored"
            )
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            rel = Path(folder, name).relative_to(root).as_posix()
            if rel not in expected:
                raise VerificationError(
                    f"version {version_id[:12]}: {rel}: the runner added a file to the read-only view of the version; "
                    "run not stored"
                )


def runner_code_digest(function: Callable[..., Any]) -> str | None:
    """BLAKE3 of the source file that defines the runner (None when it has none, e.g. a
    builtin): an edited runner explains a changed result better than nondeterminism does."""
    import inspect

    from tether.ids import digest_file

    try:
        source = inspect.getsourcefile(inspect.unwrap(function))
        return digest_file(source)[0] if source else None
    except (TypeError, OSError):
        return None


def _runner_parallel(function: Callable[..., Any]) -> int:
    """The runner's own ``parallel`` attribute (threads it tolerates), else 1 (sequential)."""
    value = getattr(function, "parallel", 1)
    if value is True:
        return 4
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def _execute(executor: _Executor, calls: list[_Call], workers: int, progress: Progress | None) -> list[dict[str, Any]]:
    total = len(calls)
    if progress:
        progress(0, total)
    if workers <= 1:
        results = []
        for done, call in enumerate(calls, start=1):
            results.append(executor.call(call))
            if progress:
                progress(done, total)
        return results
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tether-eval") as pool:
        futures = [pool.submit(executor.call, call) for call in calls]
        ordered: list[dict[str, Any]] = []
        for done, future in enumerate(futures, start=1):
            ordered.append(future.result())
            if progress:
                progress(done, total)
    return ordered
