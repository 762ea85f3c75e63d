"""Eval-run storage behaves the same on every metadata backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from tether.ids import canonical_bytes, digest_bytes
from tether.meta import MetadataRepository
from tether.meta.base import MetadataError
from tether.meta.evalruns import EvalRunRecord, eval_runs_of


def _record(label: str, version: str = "a", created_at: str = "2025-01-01T00:00:00Z") -> EvalRunRecord:
    environment = digest_bytes(canonical_bytes({"env": label}))
    return EvalRunRecord.create(
        version_id=digest_bytes(f"version {version}".encode()),
        evalset="evals",
        evalset_snapshot=digest_bytes(b"evalset"),
        created_at=created_at,
        environment=environment,
        body=digest_bytes(f"body {label}".encode()),
        summary={"cases": 3, "mean_score": 0.5, "label": label},
    )


def test_put_get_list_and_prefix(meta: MetadataRepository) -> None:
    runs = eval_runs_of(meta)
    assert runs is not None
    first = _record("one", created_at="2025-01-01T00:00:00Z")
    second = _record("two", version="b", created_at="2025-01-02T00:00:00Z")
    for record, label in ((second, "two"), (first, "one")):
        env = canonical_bytes({"env": label})
        runs.put_run(record, (digest_bytes(env), env))
    runs.put_run(first, (first.environment or "", canonical_bytes({"env": "one"})))  # idempotent
    assert runs.get_run(first.run_id) == first
    assert runs.get_run("0" * 64) is None
    assert [r.run_id for r in runs.list_runs()] == [first.run_id, second.run_id]
    assert [r.run_id for r in runs.list_runs(version_id=second.version_id)] == [second.run_id]
    assert runs.list_runs(evalset="other") == []
    assert runs.find_runs_by_prefix(first.run_id[:8]) == [first.run_id]
    assert runs.find_runs_by_prefix("not-hex") == []
    assert meta.get_snapshot(first.environment or "") == canonical_bytes({"env": "one"})
    assert first.summary_json()["label"] == "one" and first.computed_id() == first.run_id


def test_altered_records_and_environments_are_refused(meta: MetadataRepository) -> None:
    runs = eval_runs_of(meta)
    assert runs is not None
    record = _record("x")
    forged = EvalRunRecord(**{**record.__dict__, "summary": canonical_bytes({"cases": 99})})
    with pytest.raises(MetadataError, match="not the digest of the run record"):
        runs.put_run(forged, None)
    with pytest.raises(MetadataError, match="environment does not hash"):
        runs.put_run(record, (record.environment or "", b"other bytes"))
    assert runs.list_runs() == []
