"""Stored eval runs: the record, its per-case body and its environment, loaded and verified.

Body format (canonical JSON in the object store, ``tether.evalrun.body/1``)::

    {"format": ..., "cases": [
        {"key": "refund-window", "line": 1, "results": [
            {"repeat": 0, "seed": 1234, "seconds": 0.012, "score": 1.0, "error": null,
             "output": {"type": "text", "digest": "<blake3>", "content": "..."}}]}]}

``output`` is null when the runner raised; ``error`` is then ``{"stage": "runner", "type",
"message"}`` (or stage ``output``/``scorer``) and the call scores 0: an error is counted as a
failure of the system, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.errors import ReferenceNotFoundError, UsageError, VerificationError
from tether.ids import digest_bytes, is_digest
from tether.meta.evalruns import EvalRunRecord, EvalRunRepository, eval_runs_of

if TYPE_CHECKING:
    from tether.project.core import Project

BODY_FORMAT = "tether.evalrun.body/1"
MIN_PREFIX = 6


@dataclass
class EvalRun:
    """An eval run with its body and environment loaded."""

    record: EvalRunRecord
    summary: dict[str, Any]
    body: dict[str, Any]
    environment: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def version_id(self) -> str:
        return self.record.version_id

    @property
    def evalset(self) -> str:
        return self.record.evalset

    @property
    def evalset_snapshot(self) -> str:
        return self.record.evalset_snapshot

    @property
    def evalset_from(self) -> str | None:
        """The version whose eval set the run used, when it is not the evaluated version's own."""
        value = self.summary.get("evalset_from")
        return value if isinstance(value, str) else None

    @property
    def created_at(self) -> str:
        return self.record.created_at

    @property
    def cases(self) -> list[dict[str, Any]]:
        return list(self.body["cases"])

    def case_scores(self) -> dict[str, list[float]]:
        """Case key -> scores by repeat (errors score 0)."""
        return {case["key"]: [float(r["score"]) for r in case["results"]] for case in self.body["cases"]}

    def case_outputs(self) -> dict[str, list[str | None]]:
        """Case key -> output digests by repeat (None where the call failed)."""
        return {
            case["key"]: [r["output"]["digest"] if r.get("output") else None for r in case["results"]]
            for case in self.body["cases"]
        }

    def case_seeds(self) -> dict[str, list[int | None]]:
        return {case["key"]: [r.get("seed") for r in case["results"]] for case in self.body["cases"]}

    def errors(self) -> list[dict[str, Any]]:
        """Every failed call: case key, line, repeat and the error."""
        return [
            {"key": case["key"], "line": case.get("line"), "repeat": r["repeat"], **r["error"]}
            for case in self.body["cases"]
            for r in case["results"]
            if r.get("error")
        ]

    def to_json(self, include_cases: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "version_id": self.version_id,
            "evalset": self.evalset,
            "evalset_snapshot": self.evalset_snapshot,
            "created_at": self.created_at,
            "environment": self.record.environment,
            "body": self.record.body,
            "summary": self.summary,
        }
        if include_cases:
            data["cases"] = self.body["cases"]
            data["environment_capture"] = self.environment
        return data


def repository(project: Project) -> EvalRunRepository:
    runs = eval_runs_of(project.meta)
    if runs is None:
        raise VerificationError(f"the metadata backend {project.meta!r} does not store eval runs")
    return runs


def resolve_run_id(project: Project, ref: str) -> str:
    """A full run ID or a unique prefix of 6+ hex characters -> the run ID."""
    runs = repository(project)
    lowered = ref.strip().lower()
    if is_digest(lowered):
        if runs.get_run(lowered) is None:
            raise ReferenceNotFoundError(f"eval run '{ref}': no such eval run")
        return lowered
    if not lowered or any(ch not in "0123456789abcdef" for ch in lowered):
        raise ReferenceNotFoundError(f"eval run '{ref}': expected a run ID or a prefix of it (hex)")
    if len(lowered) < MIN_PREFIX:
        raise ReferenceNotFoundError(f"eval run '{ref}': a run ID prefix needs at least {MIN_PREFIX} hex characters")
    matches = runs.find_runs_by_prefix(lowered, limit=5)
    if not matches:
        raise ReferenceNotFoundError(f"eval run '{ref}': no such eval run")
    if len(matches) > 1:
        raise ReferenceNotFoundError(f"eval run '{ref}' is ambiguous: it matches {', '.join(m[:12] for m in matches)}")
    return matches[0]


def load_run(project: Project, ref: str) -> EvalRun:
    """A stored run by ID or prefix, verified: record digest, body object and environment snapshot."""
    run_id = resolve_run_id(project, ref)
    record = repository(project).get_run(run_id)
    if record is None:
        raise ReferenceNotFoundError(f"eval run '{ref}': no such eval run")
    return load_record(project, record)


def load_record(project: Project, record: EvalRunRecord) -> EvalRun:
    short = record.run_id[:12]
    if record.computed_id() != record.run_id:
        raise VerificationError(f"eval run {short}: its record does not hash to its ID (corrupted metadata)")
    from tether.store import ObjectMissingError

    try:
        raw = project.store.get_bytes(record.body)
    except ObjectMissingError as exc:
        raise VerificationError(f"eval run {short}: body object {record.body[:12]} is missing from the store") from exc
    if digest_bytes(raw) != record.body:
        raise VerificationError(f"eval run {short}: body object {record.body[:12]} is corrupted")
    body = json.loads(raw)
    if body.get("format") != BODY_FORMAT:
        raise VerificationError(f"eval run {short}: unknown body format {body.get('format')!r}")
    environment = None
    if record.environment is not None:
        env_raw = project.meta.get_snapshot(record.environment)
        if env_raw is None or digest_bytes(env_raw) != record.environment:
            raise VerificationError(f"eval run {short}: environment snapshot {record.environment[:12]} is missing or corrupted")
        environment = json.loads(env_raw)
    return EvalRun(record=record, summary=record.summary_json(), body=body, environment=environment)


def list_run_records(project: Project, version_id: str | None = None, evalset: str | None = None) -> list[EvalRunRecord]:
    """Stored runs (records only: cheap), oldest first."""
    return repository(project).list_runs(version_id=version_id, evalset=evalset)


def latest_run(
    project: Project, version_id: str, evalset: str, ref: str | None = None, evalset_snapshot: str | None = None
) -> EvalRun:
    """The newest stored run of a version on an eval set (the default baseline of ``repro check``);
    with ``evalset_snapshot``, only runs over that content count (a run on another version's eval
    set, ``eval run --evalset-from``, has the same name but other cases)."""
    records = list_run_records(project, version_id=version_id, evalset=evalset)
    if evalset_snapshot is not None:
        records = [record for record in records if record.evalset_snapshot == evalset_snapshot]
    if not records:
        shown = ref or version_id[:12]
        raise UsageError(
            f"no eval run of {shown} on eval set '{evalset}' to reproduce: run `tether eval run {shown}` first "
            "or pass --baseline RUN"
        )
    return load_record(project, records[-1])
