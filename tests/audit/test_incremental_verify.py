"""The default `audit verify` re-hashes only the records after the checkpoint verified last."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.conftest import AuditProject
from tests.audit.test_tamper import db, leaf, verify_fails
from tether.audit import AuditLog
from tether.audit.keys import load_signer
from tether.audit.merkle import leaf_hash
from tether.audit.note import Checkpoint, sign_note
from tether.audit.store import LeafRow, SQLiteAuditStore
from tether.audit.verify import VerifyReport, verify_log

T0 = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)


def add(project: AuditProject, first: int, count: int, checkpoint: bool = True) -> None:
    with AuditLog.open(project.root, durability="sync") as log:
        for sample in range(first, first + count):
            log.append(alias="prod", version_id=project.v1, request_id=f"r{sample}", subject=str(sample % 3),
                       time=T0 + _dt.timedelta(minutes=sample))
        if checkpoint:
            log.checkpoint()


def check(project: AuditProject, full: bool = False, locate: bool = False, against: tuple[str, ...] = ()) -> VerifyReport:
    with AuditLog.open(project.root, create=False) as log:
        return verify_log(log, list(against), full=full, locate=locate)


@pytest.fixture
def verified(audit_project: AuditProject) -> AuditProject:
    """20 records verified through checkpoint 20, then 10 more under checkpoint 30."""
    add(audit_project, 0, 20)
    first = check(audit_project)
    assert first.ok and first.mode == "full"
    add(audit_project, 20, 10)
    return audit_project


@pytest.mark.parametrize("old", [40, 700])
def test_verify_reads_only_the_new_records(audit_project: AuditProject, monkeypatch: pytest.MonkeyPatch, old: int) -> None:
    add(audit_project, 0, old)
    assert check(audit_project).ok
    add(audit_project, old, 25)
    read: list[int] = []
    original = SQLiteAuditStore.iter_leaves

    def counting(self: SQLiteAuditStore, start: int = 0, end: int | None = None, batch: int = 4096) -> Iterator[LeafRow]:
        for row in original(self, start, end, batch):
            read.append(row.index)
            yield row

    monkeypatch.setattr(SQLiteAuditStore, "iter_leaves", counting)
    report = check(audit_project)
    assert report.ok, report.problems
    assert report.mode == "incremental" and report.verified_from == old
    assert sorted(read) == list(range(old, old + 25)) and report.records_read == 25
    read.clear()
    again = check(audit_project)  # now verified through old + 25: nothing new to read
    assert again.ok and again.verified_from == old + 25 and read == []
    full = check(audit_project, full=True)
    assert full.ok and full.mode == "full" and len(read) == old + 25


def test_the_cli_says_which_mode_ran(verified: AuditProject) -> None:
    result = verified.dir.run("audit", "verify")
    assert "incremental: 10 new records re-hashed from checkpoint 20" in result.stdout and result.stdout.strip().endswith("ok")
    data = json.loads(verified.dir.run("audit", "verify", "--full", "--json").stdout)
    assert data["ok"] and data["mode"] == "full" and data["records_read"] == 30


def test_a_new_record_changed_with_its_hash_is_caught_incrementally(verified: AuditProject) -> None:
    with db(verified) as conn:
        forged = leaf(conn, 25).replace(b'"prod"', b'"beta"')
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 25", (forged, leaf_hash(forged)))
    report = check(verified)
    assert report.mode == "incremental" and not report.ok and report.first_bad_leaf == 25
    assert "first bad leaf 25" in verify_fails(verified)


def test_the_first_new_record_must_continue_the_verified_chain(verified: AuditProject) -> None:
    with db(verified) as conn:
        record = json.loads(leaf(conn, 20))
        record["prev"] = "ab" * 32
        forged = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 20", (forged, leaf_hash(forged)))
    report = check(verified)
    assert report.mode == "incremental" and report.first_bad_leaf == 20
    assert "hash chain from leaf 19 as verified earlier" in report.first_problem().message  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["new", "old"])
@pytest.mark.parametrize("how", ["delete-renumber", "insert-renumber", "reorder"])
def test_moves_across_or_after_the_verified_checkpoint_are_caught_incrementally(verified: AuditProject, how: str, where: str) -> None:
    victim = 24 if where == "new" else 4
    with db(verified) as conn:
        if how == "delete-renumber":
            conn.execute("DELETE FROM leaves WHERE idx = ?", (victim,))
            conn.execute("UPDATE leaves SET idx = idx - 1 WHERE idx > ?", (victim,))
        elif how == "insert-renumber":
            for index in range(29, victim - 1, -1):
                conn.execute("UPDATE leaves SET idx = idx + 1 WHERE idx = ?", (index,))
            copy = leaf(conn, victim + 1)
            conn.execute("INSERT INTO leaves (idx, leaf, leaf_hash, request_id, subject, time, version_ref) "
                         "SELECT ?, leaf, leaf_hash, request_id, subject, time, version_ref FROM leaves WHERE idx = ?",
                         (victim, victim + 1))
            assert leaf(conn, victim) == copy
        else:  # one record swapped with a new one: the old one moves across the checkpoint
            a = conn.execute("SELECT leaf, leaf_hash FROM leaves WHERE idx = ?", (victim,)).fetchone()
            b = conn.execute("SELECT leaf, leaf_hash FROM leaves WHERE idx = 27").fetchone()
            conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = ?", (*b, victim))
            conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 27", a)
    report = check(verified)
    assert report.mode == "incremental" and not report.ok, report.to_json()
    assert not check(verified, full=True).ok


@pytest.mark.parametrize("how", ["edit", "swap", "delete"])
def test_changes_confined_to_verified_records_need_full(verified: AuditProject, how: str) -> None:
    """What the incremental mode does not read, it cannot check: --full does."""
    with db(verified) as conn:
        if how == "edit":
            forged = leaf(conn, 5).replace(b'"prod"', b'"beta"')
            conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 5", (forged, leaf_hash(forged)))
        elif how == "swap":
            a = conn.execute("SELECT leaf, leaf_hash FROM leaves WHERE idx = 3").fetchone()
            b = conn.execute("SELECT leaf, leaf_hash FROM leaves WHERE idx = 7").fetchone()
            conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 3", b)
            conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 7", a)
        else:
            conn.execute("DELETE FROM leaves WHERE idx = 7")
    incremental = check(verified)
    assert incremental.ok and incremental.mode == "incremental" and incremental.records_read == 10
    full = check(verified, full=True)
    assert not full.ok and full.first_bad_leaf in (3, 5, 7)
    assert "first bad leaf" in verify_fails(verified, "--full")


def test_a_rewritten_and_resigned_log_is_caught_by_the_remembered_checkpoint(verified: AuditProject) -> None:
    (verified.root / ".tether" / "audit.db").unlink()
    with AuditLog.open(verified.root, durability="sync") as log:  # same key: the new log is consistent with itself
        for sample in range(30):
            version = verified.v2 if sample == 5 else verified.v1
            log.append(alias="prod", version_id=version, request_id=f"r{sample}", subject="0", time=T0 + _dt.timedelta(minutes=sample))
        log.checkpoint()
    report = check(verified)
    assert not report.ok and "root verified earlier" in report.problems[0].message
    located = check(verified, locate=True)
    assert located.mode == "full" and not located.ok


def test_an_older_export_is_checked_by_a_consistency_proof(audit_project: AuditProject, tmp_path: Path) -> None:
    add(audit_project, 0, 5, checkpoint=False)
    with AuditLog.open(audit_project.root) as log:
        log.export_checkpoint(tmp_path / "five.txt")
    add(audit_project, 5, 15)
    assert check(audit_project).ok
    add(audit_project, 20, 3)
    good = check(audit_project, against=(str(tmp_path / "five.txt"),))
    assert good.ok and good.mode == "incremental" and good.records_read == 3
    with AuditLog.open(audit_project.root) as log:  # a split view: size 5 signed with another root
        forged = sign_note(Checkpoint(log.origin, 5, b"\x07" * 32).text(), load_signer(log.dot))
    (tmp_path / "forged.txt").write_text(forged)
    bad = check(audit_project, against=(str(tmp_path / "forged.txt"),))
    assert bad.mode == "incremental" and not bad.ok and bad.records_read == 0
    assert any("not consistent with the tree verified earlier (size 23)" in problem.message for problem in bad.problems)


def test_a_forged_state_file_is_ignored(verified: AuditProject) -> None:
    state = verified.root / ".tether" / "keys" / "audit-verified.json"
    data = json.loads(state.read_text())
    data["body"]["size"] = 30
    state.write_text(json.dumps(data))
    report = check(verified)
    assert report.ok and report.mode == "full" and any("MAC does not verify" in warning for warning in report.warnings)
    assert check(verified).mode == "incremental"  # the full run wrote a valid state again


def test_checkpoints_from_the_verified_one_on_are_checked(audit_project: AuditProject) -> None:
    add(audit_project, 0, 10)
    add(audit_project, 10, 10)
    assert check(audit_project).ok
    add(audit_project, 20, 10)
    with db(audit_project) as conn:
        note = conn.execute("SELECT note FROM checkpoints WHERE size = 10").fetchone()[0]
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = 10", (note.replace("\n10\n", "\n11\n"),))
    assert check(audit_project).ok  # older than the verified checkpoint: only --full reads it again
    full = check(audit_project, full=True)
    assert not full.ok and "signature" in full.problems[0].message
    with db(audit_project) as conn:
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = 10", (note,))
        note = conn.execute("SELECT note FROM checkpoints WHERE size = 30").fetchone()[0]
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = 30", (note.replace("\n30\n", "\n31\n"),))
    report = check(audit_project)
    assert report.mode == "incremental" and not report.ok and "signature" in report.problems[0].message


def test_a_log_cut_back_below_the_verified_checkpoint_fails(verified: AuditProject) -> None:
    """The newest records and every checkpoint deleted: self-consistent, but not what was verified."""
    with db(verified) as conn:
        conn.execute("DELETE FROM leaves WHERE idx >= 15")
        conn.execute("DELETE FROM checkpoints")
    report = check(verified, locate=True)
    assert not report.ok
    messages = " ".join(problem.message for problem in report.problems)
    assert "no signed checkpoint of size 20" in messages and "log ends at 15" in messages
