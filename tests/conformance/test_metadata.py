"""Metadata repository conformance: what every backend must do, tested through the interface."""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

from tether.ids import canonical_bytes, digest_bytes, digest_json
from tether.meta import BranchConflictError, MetadataError, MetadataRepository, VersionRecord, open_metadata
from tether.meta.sql import METADATA, MIGRATIONS_DIR, SCHEMA_HEAD, VERSION_TABLE

if TYPE_CHECKING:
    from .conftest import MetadataHarness


def snapshot(text_value: str) -> tuple[str, bytes]:
    """A snapshot's (digest, canonical JSON bytes), as the component kinds produce them."""
    body = canonical_bytes({"kind": "prompt", "text": text_value})
    return digest_bytes(body), body


def make_record(label: str, created_at: str = "2024-11-27T10:00:00Z", parents: tuple[str, ...] = ()) -> VersionRecord:
    """A version whose ID really is the digest of its canonical manifest."""
    components = {"system": snapshot(label)[0]}
    manifest = canonical_bytes(
        {"components": components, "created_at": created_at, "message": label, "parents": list(parents)}
    )
    return VersionRecord(
        version_id=digest_bytes(manifest),
        content_digest=digest_json(components),
        created_at=created_at,
        manifest=manifest,
    )


def commit(
    meta: MetadataRepository,
    label: str,
    parents: tuple[str, ...] = (),
    created_at: str = "2024-11-27T10:00:00Z",
    branch: str | None = None,
    expected: str | None = None,
) -> VersionRecord:
    record = make_record(label, created_at, parents)
    meta.put_version(record, list(parents), dict([snapshot(label)]), branch=branch, expected_branch_target=expected)
    return record


# -- versions -------------------------------------------------------------------------------------


def test_put_and_get_version(meta: MetadataRepository) -> None:
    record = make_record("first")
    digest, body = snapshot("first")
    meta.put_version(record, [], {digest: body})
    assert meta.get_version(record.version_id) == record
    assert meta.get_version(make_record("other").version_id) is None
    assert meta.list_versions() == [record]
    assert meta.get_parents(record.version_id) == []
    assert meta.get_snapshot(digest) == body
    assert list(meta.iter_snapshots()) == [(digest, body)]
    # Storing the same version again changes nothing.
    meta.put_version(record, [], {digest: body})
    assert meta.list_versions() == [record]


def test_parents_keep_their_order(meta: MetadataRepository) -> None:
    a = commit(meta, "a")
    b = commit(meta, "b")
    composed = commit(meta, "composed", parents=(b.version_id, a.version_id))
    assert meta.get_parents(composed.version_id) == [b.version_id, a.version_id]
    other = commit(meta, "other order", parents=(a.version_id, b.version_id))
    assert meta.get_parents(other.version_id) == [a.version_id, b.version_id]
    assert meta.get_parents(a.version_id) == []


def test_list_versions_oldest_first(meta: MetadataRepository) -> None:
    late = commit(meta, "late", created_at="2024-11-27T12:00:00Z")
    early = commit(meta, "early", created_at="2024-11-27T09:00:00Z")
    middle = commit(meta, "middle", created_at="2024-11-27T10:30:00Z")
    assert [record.version_id for record in meta.list_versions()] == [
        early.version_id,
        middle.version_id,
        late.version_id,
    ]


def test_snapshots(meta: MetadataRepository) -> None:
    shared_digest, shared_body = snapshot("shared")
    first = make_record("one")
    meta.put_version(first, [], {shared_digest: shared_body})
    second = make_record("two")
    many = dict(snapshot(f"prompt {index}") for index in range(1205))  # more than one page
    meta.put_version(second, [first.version_id], {shared_digest: shared_body, **many})
    assert meta.get_snapshot(shared_digest) == shared_body
    assert meta.get_snapshot(snapshot("never")[0]) is None
    listed = list(meta.iter_snapshots())
    assert len(listed) == len(many) + 1
    assert dict(listed) == {shared_digest: shared_body, **many}


def test_find_versions_by_prefix(meta: MetadataRepository) -> None:
    records: dict[str, VersionRecord] = {}
    ambiguous: tuple[VersionRecord, VersionRecord] | None = None
    index = 0
    while ambiguous is None:
        record = make_record(f"candidate {index}")
        index += 1
        earlier = records.get(record.version_id[:2])
        if earlier is not None:
            ambiguous = (earlier, record)
        records[record.version_id[:2]] = record
    for record in records.values():
        meta.put_version(record, [], {})
    meta.put_version(ambiguous[0], [], {})

    one, two = ambiguous
    common = one.version_id[:2]
    assert meta.find_versions_by_prefix(common) == sorted([one.version_id, two.version_id])
    assert len(meta.find_versions_by_prefix(common, limit=1)) == 1
    assert meta.find_versions_by_prefix(one.version_id) == [one.version_id]
    distinct = next(n for n in range(3, 64) if one.version_id[:n] != two.version_id[:n])
    assert meta.find_versions_by_prefix(one.version_id[:distinct]) == [one.version_id]
    assert meta.find_versions_by_prefix(two.version_id[:distinct]) == [two.version_id]
    absent = next(f"{n:02x}" for n in range(256) if f"{n:02x}" not in records)
    assert meta.find_versions_by_prefix(absent) == []
    assert meta.find_versions_by_prefix(one.version_id[:6].upper()) == []
    assert meta.find_versions_by_prefix("%") == []
    assert meta.find_versions_by_prefix(one.version_id + "0") == []


def test_malformed_ids_are_refused(meta: MetadataRepository) -> None:
    record = make_record("x")
    bad = VersionRecord("not-a-digest", record.content_digest, record.created_at, record.manifest)
    with pytest.raises(MetadataError, match="not-a-digest"):
        meta.put_version(bad, [], {})
    with pytest.raises(MetadataError):
        meta.put_version(record, ["../HEAD"], {})
    with pytest.raises(MetadataError):
        meta.put_version(record, [], {"ZZ": b"{}"})
    assert meta.list_versions() == []


# -- branches -------------------------------------------------------------------------------------


def test_branch_compare_and_swap(meta: MetadataRepository) -> None:
    v1 = commit(meta, "v1").version_id
    v2 = commit(meta, "v2", parents=(v1,)).version_id
    v3 = commit(meta, "v3", parents=(v2,)).version_id
    assert meta.get_branch("main") is None

    meta.set_branch("main", v1, create_only=True)
    assert meta.get_branch("main") == v1
    with pytest.raises(BranchConflictError, match="main"):
        meta.set_branch("main", v2, create_only=True)
    assert meta.get_branch("main") == v1

    with pytest.raises(BranchConflictError, match="main"):
        meta.set_branch("main", v3, expected=v2)
    assert meta.get_branch("main") == v1
    meta.set_branch("main", v2, expected=v1)
    assert meta.get_branch("main") == v2

    with pytest.raises(BranchConflictError, match="feature"):
        meta.set_branch("feature", v3, expected=v1)  # expected a branch that does not exist
    assert meta.get_branch("feature") is None

    meta.set_branch("feature", v3)  # unconditional: creates
    meta.set_branch("feature", v1)  # unconditional: moves
    assert meta.list_branches() == {"feature": v1, "main": v2}

    meta.delete_branch("feature")
    meta.delete_branch("feature")
    assert meta.list_branches() == {"main": v2}
    assert meta.get_version(v3) is not None  # the branch's versions stay


def test_branch_must_point_at_a_stored_version(meta: MetadataRepository) -> None:
    with pytest.raises(MetadataError):
        meta.set_branch("main", make_record("never stored").version_id)
    assert meta.list_branches() == {}


def test_put_version_moves_branch(meta: MetadataRepository) -> None:
    v1 = commit(meta, "v1", branch="main")
    assert meta.get_branch("main") == v1.version_id
    v2 = commit(meta, "v2", parents=(v1.version_id,), branch="main", expected=v1.version_id)
    assert meta.get_branch("main") == v2.version_id


def test_put_version_with_stale_branch_writes_nothing(meta: MetadataRepository) -> None:
    v1 = commit(meta, "v1", branch="main", created_at="2024-11-27T10:00:00Z")
    v2 = commit(meta, "v2", (v1.version_id,), "2024-11-27T11:00:00Z", branch="main", expected=v1.version_id)
    stale = make_record("stale", parents=(v1.version_id,))
    stale_digest, stale_body = snapshot("stale")

    with pytest.raises(BranchConflictError, match="main"):
        meta.put_version(stale, [v1.version_id], {stale_digest: stale_body}, "main", v1.version_id)
    with pytest.raises(BranchConflictError, match="main"):
        meta.put_version(stale, [v1.version_id], {stale_digest: stale_body}, "main", None)  # must not exist

    assert meta.get_version(stale.version_id) is None
    assert meta.get_parents(stale.version_id) == []
    assert meta.get_snapshot(stale_digest) is None
    assert meta.find_versions_by_prefix(stale.version_id[:8]) == []
    assert [record.version_id for record in meta.list_versions()] == [v1.version_id, v2.version_id]
    assert meta.get_branch("main") == v2.version_id


# -- forks ----------------------------------------------------------------------------------------


def test_forgetting_inherited_connections_keeps_them_open_and_reads_through_new_ones(meta: MetadataRepository) -> None:
    """What a forked child does first (``os.register_at_fork``): the parent's handles are kept,
    open and unused, and every read goes through a connection of the child's own."""
    from tether.meta.base import INHERITED_HANDLES

    record = commit(meta, "v1", branch="main")
    assert meta.get_branch("main") == record.version_id  # a connection is open and pooled now
    kept = len(INHERITED_HANDLES)
    meta.forget_inherited_connections()
    assert len(INHERITED_HANDLES) == kept + 1
    inherited = INHERITED_HANDLES[-1]
    assert meta.get_branch("main") == record.version_id
    assert meta.get_version(record.version_id) is not None
    if hasattr(inherited, "status"):  # a SQLAlchemy pool: its connections were never closed
        assert inherited.checkedin() >= 1


def test_the_read_only_reader_forgets_its_inherited_connection_too(tmp_path: Path) -> None:
    from tether.meta.base import INHERITED_HANDLES
    from tether.meta.sqlite_reader import SqliteReader

    path = tmp_path / "meta.db"
    writer = open_metadata(f"sqlite:///{path}", tmp_path, create=True)
    record = commit(writer, "v1", branch="main")
    writer.close()
    reader = SqliteReader(path)
    old = reader._db
    reader.forget_inherited_connections()
    assert INHERITED_HANDLES[-1] is old and reader._db is not old
    assert old.execute("SELECT 1").fetchone() == (1,)  # still open: the parent's to use and close
    assert reader.get_branch("main") == record.version_id
    reader.close()


# -- lifecycle ------------------------------------------------------------------------------------


def test_reopen_existing_database(metadata_backend: MetadataHarness) -> None:
    first = metadata_backend.open(create=True)
    try:
        record = commit(first, "kept", branch="main")
    finally:
        first.close()
    for create in (False, True):
        again = metadata_backend.open(create=create)
        try:
            assert again.get_version(record.version_id) == record
            assert again.get_branch("main") == record.version_id
        finally:
            again.close()


def test_missing_database_without_create(metadata_backend: MetadataHarness) -> None:
    with pytest.raises(MetadataError, match="absent"):
        open_metadata(metadata_backend.missing_url, metadata_backend.base)
    assert not (metadata_backend.base / "absent").exists()


def _race_worker(
    url: str,
    base: str,
    record: VersionRecord,
    parent: str,
    barrier: Any,
    results: Any,
) -> None:
    """One of two processes racing to move ``main`` from ``parent`` and to create ``release``."""
    try:
        meta = open_metadata(url, Path(base))
        try:
            digest, body = snapshot(record.version_id)
            barrier.wait(timeout=60)
            try:
                meta.put_version(record, [parent], {digest: body}, branch="main", expected_branch_target=parent)
                moved = "won"
            except BranchConflictError:
                moved = "lost"
            barrier.wait(timeout=60)
            try:
                meta.set_branch("release", parent, create_only=True)
                created = "won"
            except BranchConflictError:
                created = "lost"
        finally:
            meta.close()
        results.put((record.version_id, moved, created))
    except BaseException as exc:
        results.put((record.version_id, "error", repr(exc)))


def test_concurrent_compare_and_swap_across_processes(metadata_backend: MetadataHarness) -> None:
    meta = metadata_backend.open(create=True)
    try:
        base_version = commit(meta, "base", branch="main")
    finally:
        meta.close()
    contenders = [make_record(f"contender {n}", parents=(base_version.version_id,)) for n in range(2)]

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(contenders))
    results = context.Queue()
    processes = [
        context.Process(
            target=_race_worker,
            args=(metadata_backend.url, str(metadata_backend.base), record, base_version.version_id, barrier, results),
        )
        for record in contenders
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        for _ in processes:
            outcomes.append(results.get(timeout=90))
    except queue.Empty:
        pytest.fail(f"a racing process did not report; got {outcomes}")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert all(outcome[1] != "error" for outcome in outcomes), outcomes
    assert sorted(outcome[1] for outcome in outcomes) == ["lost", "won"]
    assert sorted(outcome[2] for outcome in outcomes) == ["lost", "won"]

    winner = next(outcome[0] for outcome in outcomes if outcome[1] == "won")
    loser = next(outcome[0] for outcome in outcomes if outcome[1] == "lost")
    meta = metadata_backend.open()
    try:
        assert meta.get_branch("main") == winner
        assert meta.get_branch("release") == base_version.version_id
        assert meta.get_version(winner) is not None
        assert meta.get_version(loser) is None
        assert meta.get_snapshot(snapshot(loser)[0]) is None
    finally:
        meta.close()


def _init_worker(url: str, base: str, barrier: Any, results: Any) -> None:
    """One of two processes creating the same new database at once (two `tether init`s)."""
    try:
        barrier.wait(timeout=60)
        open_metadata(url, Path(base), create=True).close()
        results.put("ok")
    except BaseException as exc:
        results.put(repr(exc))


def test_concurrent_create_across_processes(metadata_backend: MetadataHarness) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(target=_init_worker, args=(metadata_backend.url, str(metadata_backend.base), barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        for _ in processes:
            outcomes.append(results.get(timeout=90))
    except queue.Empty:
        pytest.fail(f"an initializing process did not report; got {outcomes}")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert outcomes == ["ok", "ok"]
    meta = metadata_backend.open()
    try:
        record = commit(meta, "after both inits", branch="main")
        assert meta.get_branch("main") == record.version_id
    finally:
        meta.close()


# -- SQL schema and migrations (every metadata backend is SQLAlchemy-based) -------------------------


def _absolute_url(harness: MetadataHarness) -> str:
    prefix = "sqlite:///"
    if harness.url.startswith(prefix) and not harness.url.startswith(prefix + "/"):
        return f"{prefix}{(harness.base / harness.url[len(prefix) :]).resolve()}"
    return harness.url


def test_migrations_match_the_tables(metadata_backend: MetadataHarness) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD

    metadata_backend.open(create=True).close()
    engine = create_engine(_absolute_url(metadata_backend))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert context.get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(context, METADATA) == []
    finally:
        engine.dispose()


def test_schema_from_a_newer_tether_is_refused(metadata_backend: MetadataHarness) -> None:
    metadata_backend.open(create=True).close()
    engine = create_engine(_absolute_url(metadata_backend))
    try:
        with engine.begin() as connection:
            connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        engine.dispose()
    for create in (False, True):
        with pytest.raises(MetadataError, match="9999"):
            metadata_backend.open(create=create)
