"""The lifecycle tables on every metadata backend (SQLite and PostgreSQL): one contract."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.conftest import MetadataHarness, metadata_backend  # noqa: F401  (the backend fixture)
from tether.ids import canonical_bytes, digest_bytes
from tether.meta import MetadataError, VersionRecord
from tether.meta.lifecycle import AliasConflictError, LifecycleRepository, lifecycle_repository
from tether.meta.sql import EVAL_RUNS


@pytest.fixture
def repo(metadata_backend: MetadataHarness) -> Iterator[tuple[Any, LifecycleRepository, list[str]]]:  # noqa: F811
    meta = metadata_backend.open(create=True)
    ids = []
    for label in ("v1", "v2", "v3"):
        manifest = canonical_bytes({"label": label})
        record = VersionRecord(digest_bytes(manifest), digest_bytes(manifest + b"c"), "2026-01-01T00:00:00Z", manifest)
        meta.put_version(record, [], {})
        ids.append(record.version_id)
    try:
        yield meta, lifecycle_repository(meta), ids
    finally:
        meta.close()


def _move(repo: LifecycleRepository, target: str, moves: int, expected: str | None = None, **extra: Any) -> Any:
    return repo.move_alias(
        "prod",
        target,
        action=extra.pop("action", "promote"),
        expected_moves=moves,
        expected_version=expected,
        actor=extra.pop("actor", "dana"),
        time=extra.pop("time", f"2026-01-0{moves + 1}T00:00:00Z"),
        reason=extra.pop("reason", None),
        evidence=extra.pop("evidence", {"gates": []}),
        **extra,
    )


def test_moves_history_and_compare_and_swap(repo: tuple[Any, LifecycleRepository, list[str]]) -> None:
    _meta, lifecycle, (v1, v2, v3) = repo
    assert lifecycle.get_alias("prod") is None and lifecycle.history("prod") == []
    first = _move(lifecycle, v1, 0, reason="launch", evidence={"gates": [{"gate": "valid"}], "n": 1.5})
    assert (first.seq, first.from_version, first.to_version) == (1, None, v1)
    _move(lifecycle, v2, 1, expected=v1, action="promote")
    third = _move(lifecycle, v1, 2, action="rollback", forced=True)
    assert third.from_version == v2 and third.forced
    state = lifecycle.get_alias("prod")
    assert state is not None and (state.version_id, state.moves) == (v1, 3)
    history = lifecycle.history("prod")
    assert [(m.seq, m.action, m.from_version, m.to_version) for m in history] == [
        (1, "promote", None, v1),
        (2, "promote", v1, v2),
        (3, "rollback", v2, v1),
    ]
    assert history[0].evidence == {"gates": [{"gate": "valid"}], "n": 1.5} and history[0].reason == "launch"
    assert history[2].forced and not history[1].forced
    with pytest.raises(AliasConflictError, match="moved while"):
        _move(lifecycle, v3, 2)
    with pytest.raises(AliasConflictError, match="not at the expected"):
        _move(lifecycle, v3, 3, expected=v2)
    with pytest.raises(AliasConflictError):
        _move(lifecycle, v3, 0)
    assert len(lifecycle.history("prod")) == 3
    assert set(lifecycle.list_aliases()) == {"prod"}


def test_an_alias_must_point_at_a_stored_version(repo: tuple[Any, LifecycleRepository, list[str]]) -> None:
    _meta, lifecycle, _ids = repo
    with pytest.raises(MetadataError):
        _move(lifecycle, "f" * 64, 0)
    assert lifecycle.get_alias("prod") is None and lifecycle.history("prod") == []


def test_rehearsals_approvals_and_eval_summaries(repo: tuple[Any, LifecycleRepository, list[str]]) -> None:
    meta, lifecycle, (v1, v2, _v3) = repo
    first = lifecycle.add_rehearsal("prod", v2, v1, "dana", "2026-01-02T00:00:00Z", True, {"needs_force": False})
    second = lifecycle.add_rehearsal("prod", v2, v1, "dana", "2026-01-03T00:00:00Z", False, {"steps": [1]})
    assert second.id > first.id
    assert [(r.id, r.passed, r.report) for r in lifecycle.rehearsals("prod")] == [
        (first.id, True, {"needs_force": False}),
        (second.id, False, {"steps": [1]}),
    ]
    assert lifecycle.rehearsals("staging") == []
    approval = lifecycle.add_approval(v2, "prod", "rita", "2026-01-02T00:00:00Z", "looks right")
    assert approval.id >= 1
    assert [(a.approver, a.reason) for a in lifecycle.approvals(v2, "prod")] == [("rita", "looks right")]
    assert lifecycle.approvals(v2, "staging") == [] and lifecycle.approvals(v1, "prod") == []
    assert lifecycle.approved_versions() == {v2}
    assert lifecycle.latest_eval_summary(v1, "evals") is None
    with meta.transaction(write=True) as connection:
        for created, score in (("2026-01-01T00:00:00Z", 0.5), ("2026-01-02T00:00:00Z", 0.75)):
            connection.execute(
                EVAL_RUNS.insert().values(
                    run_id=digest_bytes(created.encode()), version_id=v1, evalset="evals", evalset_snapshot="0" * 64,
                    created_at=created, environment=None, body="0" * 64, summary=canonical_bytes({"mean_score": score}),
                )
            )
    found = lifecycle.latest_eval_summary(v1, "evals")
    assert found is not None and found[1] == {"mean_score": 0.75}


def test_concurrent_moves_from_one_state_have_one_winner(repo: tuple[Any, LifecycleRepository, list[str]]) -> None:
    meta, lifecycle, (v1, v2, v3) = repo
    _move(lifecycle, v1, 0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contender(target: str) -> None:
        mine = lifecycle_repository(meta)
        barrier.wait()
        try:
            _move(mine, target, 1)
            outcomes.append("won")
        except AliasConflictError:
            outcomes.append("lost")

    threads = [threading.Thread(target=contender, args=(target,)) for target in (v2, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "won"]
    assert len(lifecycle.history("prod")) == 2
