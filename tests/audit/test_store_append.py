"""The SQLite store's append: the one-statement fast path, writers that share the file, the WAL."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog
from tether.audit import store as store_module
from tether.audit.records import Payload, make_record
from tether.audit.store import SQLiteAuditStore


def records(project: AuditProject, prefix: str, count: int, keep: bool = False) -> list:  # type: ignore[type-arg]
    return [make_record(alias="prod", version_id=project.v1, request_id=f"{prefix}-{number}",
                        output=Payload.of(f"answer {number}", keep)) for number in range(count)]


def test_two_writers_on_one_file_keep_one_chain(audit_project: AuditProject, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process appending between two groups of the first: the first's next one-statement
    INSERT collides on the index, nothing of it is written, and it appends after the other's."""
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="first")
        path = log.path
    one = SQLiteAuditStore(path, create=False)
    two = SQLiteAuditStore(path, create=False)
    statements: list[str] = []
    one.conn.set_trace_callback(statements.append)
    try:
        one.append(records(audit_project, "a", 3))  # reads the tail: the locked path
        statements.clear()
        one.append(records(audit_project, "b", 3))  # knows the tail: one INSERT, no BEGIN
        assert [s.split()[0] for s in statements] == ["INSERT"]
        two.append(records(audit_project, "c", 2))
        statements.clear()
        late = records(audit_project, "d", 4)
        one.append(late)  # collides, then the locked path after the other writer's leaves
        assert [pending.index for pending in late] == [9, 10, 11, 12]
        assert "BEGIN IMMEDIATE" in statements
        kept = records(audit_project, "e", 2, keep=True)  # payloads to write: the locked path
        one.append(kept)
        assert [payload.index for payload in one.iter_payloads()] == [13, 14]
    finally:
        one.close()
        two.close()
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.checkpoint()
        report = log.verify(full=True)
        assert report.ok, report.problems
        assert [record.request_id for record in log.query(request_id="c-1")] == ["c-1"]
        assert report.tree_size == 15


def test_the_wal_is_checkpointed_in_the_background(audit_project: AuditProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_CHECKPOINT_EVERY", 8)
    with AuditLog.open(audit_project.root, durability="sync") as log:
        path = log.path
    store = SQLiteAuditStore(path, create=False)
    try:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for group in range(6):
            store.append(records(audit_project, f"g{group}", 4))
        assert store._wal_thread is not None and store._wal_thread.is_alive()
        deadline = time.monotonic() + 10
        while not store._wal_frames and time.monotonic() < deadline:  # the checkpointer saw the WAL
            time.sleep(0.01)
        assert store._wal_frames > 0
    finally:
        store.close()
    assert store._wal_thread is not None and not store._wal_thread.is_alive()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM leaves").fetchone()[0] == 24
