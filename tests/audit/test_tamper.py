"""Tampering with the audit database is caught by `tether audit verify`, naming the first bad leaf."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog
from tether.audit.merkle import leaf_hash

T0 = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)


def fill(project: AuditProject, count: int = 20, checkpoint: bool = True, payloads: bool = False) -> None:
    with AuditLog.open(project.root, durability="sync") as log:
        for sample in range(count):
            log.append(alias="prod", version_id=project.v1, request_id=f"r{sample}", subject=str(sample % 3),
                       time=T0 + _dt.timedelta(minutes=sample), **({"output": f"answer {sample}"} if payloads else {}))
        if checkpoint:
            log.checkpoint()


@contextmanager
def db(project: AuditProject) -> Iterator[sqlite3.Connection]:
    """A raw connection to the audit database, closed (WAL folded into the file) afterwards."""
    conn = sqlite3.connect(project.root / ".tether" / "audit.db", isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def restore(project: AuditProject) -> None:
    target = project.root / ".tether" / "audit.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(project.root / "pristine.db", target)


def leaf(conn: sqlite3.Connection, index: int) -> bytes:
    return bytes(conn.execute("SELECT leaf FROM leaves WHERE idx = ?", (index,)).fetchone()[0])


def verify_fails(project: AuditProject, *args: str) -> str:
    result = project.dir.run("audit", "verify", *args, code=1)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("tether: error: audit verify failed"), result.stderr
    return lines[-1]


def test_an_untouched_log_verifies(audit_project: AuditProject) -> None:
    fill(audit_project)
    result = audit_project.dir.run("audit", "verify")
    assert "20 records (tree size 20), 1 checkpoint (latest checkpoint 20)" in result.stdout and result.stdout.strip().endswith("ok")


def test_a_changed_record_is_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET leaf = ? WHERE idx = 5", (leaf(conn, 5).replace(b'"prod"', b'"beta"'),))
    line = verify_fails(audit_project)
    assert "first bad leaf 5" in line and "changed after it was written" in line


def test_a_record_rewritten_with_its_hash_is_named_by_the_chain(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        forged = leaf(conn, 5).replace(b'"prod"', b'"beta"')
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 5", (forged, leaf_hash(forged)))
    line = verify_fails(audit_project)
    assert "first bad leaf 5" in line and "both rewritten" in line


def test_a_deleted_record_is_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        conn.execute("DELETE FROM leaves WHERE idx = 7")
    assert "first bad leaf 7: missing" in verify_fails(audit_project)


def test_deleting_the_newest_records_is_caught_by_the_checkpoint(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        conn.execute("DELETE FROM leaves WHERE idx >= 17")
    line = verify_fails(audit_project)
    assert "first bad leaf 17" in line and "covers 20 records but the log ends at 17" in line


def test_deleting_a_record_and_renumbering_is_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        conn.execute("DELETE FROM leaves WHERE idx = 4")
        conn.execute("UPDATE leaves SET idx = idx - 1 WHERE idx > 4")
    line = verify_fails(audit_project)
    assert "first bad leaf 4" in line and "written as leaf 5" in line


def test_reordered_records_are_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        three, seven = conn.execute("SELECT leaf, leaf_hash FROM leaves WHERE idx = 3").fetchone(), conn.execute(
            "SELECT leaf, leaf_hash FROM leaves WHERE idx = 7").fetchone()
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 3", seven)
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 7", three)
    line = verify_fails(audit_project)
    assert "first bad leaf 3" in line and "holds the record written as leaf 7" in line


def test_an_inserted_record_is_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        original = leaf(conn, 5)
        previous_hash = bytes(conn.execute("SELECT leaf_hash FROM leaves WHERE idx = 4").fetchone()[0]).hex()
        record = json.loads(original)
        record.update(request_id="forged", prev=previous_hash)
        forged = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        for index in range(19, 4, -1):
            conn.execute("UPDATE leaves SET idx = idx + 1 WHERE idx = ?", (index,))
        conn.execute("INSERT INTO leaves (idx, leaf, leaf_hash, request_id, subject, time, version_ref) "
                     "SELECT 5, ?, ?, 'forged', subject, time, version_ref FROM leaves WHERE idx = 6",
                     (forged, leaf_hash(forged)))
    line = verify_fails(audit_project)
    assert "first bad leaf 5" in line and "inserted" in line


def test_a_rewritten_and_resigned_log_is_caught_against_exported_checkpoints(audit_project: AuditProject, tmp_path: Path) -> None:
    exports = []
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(20):
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"r{sample}", subject="42", time=T0 + _dt.timedelta(minutes=sample))
            if sample + 1 in (5, 6, 20):
                exports.append(str(tmp_path / f"checkpoint-{sample + 1}.txt"))
                log.export_checkpoint(exports[-1])
    # The operator rewrites history: a new log, record 5 attributed to another version, re-signed
    # with the same key so it is consistent with itself.
    (audit_project.root / ".tether" / "audit.db").unlink()
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(20):
            version = audit_project.v2 if sample == 5 else audit_project.v1
            log.append(alias="prod", version_id=version, request_id=f"r{sample}", subject="42", time=T0 + _dt.timedelta(minutes=sample))
        log.checkpoint()
    audit_project.dir.run("audit", "verify")  # consistent with itself...
    line = verify_fails(audit_project, *[arg for path in exports for arg in ("--against", path)])
    assert "first bad leaf 5" in line and "re-signed" in line  # ...but not with what was exported
    only_last = verify_fails(audit_project, "--against", exports[-1])
    assert "leaves 0..19" in only_last and "re-signed" in only_last


def test_the_node_cache_and_payloads_and_checkpoints_are_checked(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "output"')
    fill(audit_project, count=300, payloads=True)
    shutil.copy(audit_project.root / ".tether" / "audit.db", audit_project.root / "pristine.db")
    with db(audit_project) as conn:
        conn.execute("UPDATE nodes SET hash = ? WHERE level = 8 AND idx = 0", (b"\x00" * 32,))
    assert "cached tree nodes over leaves 0..255 disagree" in verify_fails(audit_project)

    restore(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE payloads SET content = ? WHERE idx = 9", (b"another answer",))
    line = verify_fails(audit_project)
    assert "first bad leaf 9" in line and "payload does not match its digest" in line

    restore(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET output_salt = NULL WHERE idx = 11")
    line = verify_fails(audit_project)
    assert "first bad leaf 11" in line and "salt is gone without an erasure record" in line

    restore(audit_project)
    with db(audit_project) as conn:
        note = conn.execute("SELECT note FROM checkpoints").fetchone()[0]
        conn.execute("UPDATE checkpoints SET note = ?", (note.replace("\n300\n", "\n301\n"),))
    assert "signature by" in verify_fails(audit_project)


def test_a_damaged_database_is_reported_and_never_repaired(audit_project: AuditProject) -> None:
    fill(audit_project)
    path = audit_project.root / ".tether" / "audit.db"
    with db(audit_project) as conn:
        conn.execute("DROP TABLE checkpoints")
    line = verify_fails(audit_project)
    assert "table 'checkpoints' is missing" in line
    with db(audit_project) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'checkpoints'").fetchone()[0] == 0
    raw = bytearray(path.read_bytes())
    raw[0:16] = b"garbage garbage!"
    path.write_bytes(bytes(raw))
    assert "damaged or not a database" in verify_fails(audit_project)
    assert path.read_bytes()[:16] == b"garbage garbage!"


@pytest.mark.parametrize("missing", ["record", "checkpoint"])
def test_verify_json_names_the_first_bad_leaf(audit_project: AuditProject, missing: str) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        if missing == "record":
            conn.execute("DELETE FROM leaves WHERE idx = 2")
        else:
            conn.execute("UPDATE checkpoints SET root = ?", (b"\x01" * 32,))
    data = json.loads(audit_project.dir.run("audit", "verify", "--json", code=1).stdout)
    assert data["ok"] is False
    if missing == "record":
        assert data["first_bad_leaf"] == 2
    else:
        assert "disagrees with its signed note" in data["first_problem"]


def test_a_changed_query_column_is_named(audit_project: AuditProject) -> None:
    fill(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET subject = 'someone-else' WHERE idx = 12")
    line = verify_fails(audit_project)
    assert "first bad leaf 12" in line and "query columns" in line
