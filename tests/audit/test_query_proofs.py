"""`tether audit query` checks every record it shows: its leaf hash, and its inclusion in the latest
signed checkpoint. A record changed after it was checkpointed is flagged TAMPERED (exit 1) even
where the routine, incremental `audit verify` -- which does not re-read verified records -- says ok."""

from __future__ import annotations

import datetime as _dt
import json

import pytest

from tests.audit.conftest import AuditProject
from tests.audit.test_tamper import db, fill, leaf
from tether.audit import AuditLog
from tether.audit.log import TamperedRecordsError
from tether.audit.merkle import leaf_hash

T0 = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)


def add(project: AuditProject, first: int, count: int) -> None:
    """Records appended after the last checkpoint."""
    with AuditLog.open(project.root, durability="sync") as log:
        for sample in range(first, first + count):
            log.append(alias="prod", version_id=project.v1, request_id=f"r{sample}", subject=str(sample % 3),
                       time=T0 + _dt.timedelta(minutes=sample))


def prepared(project: AuditProject, count: int = 20, new: int = 3, payloads: bool = False) -> None:
    """``count`` records under a signed checkpoint, verified (so the plain verify that follows is
    incremental), then ``new`` records after it."""
    fill(project, count=count, payloads=payloads)
    project.dir.run("audit", "verify")
    add(project, count, new)


def proofs(project: AuditProject, *args: str, code: int = 0) -> dict[int, str]:
    """leaf index -> the `proof` field of `audit query ... --json`."""
    data = json.loads(project.dir.run("audit", "query", *args, "--json", code=code).stdout)
    return {record["leaf_index"]: record["proof"] for record in data["records"]}


def tampered(project: AuditProject, *args: str) -> tuple[list[str], str]:
    """The table rows of a query that fails its check, and its one error line."""
    result = project.dir.run("audit", "query", *args, code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tether: error: audit query: "), result.stderr
    assert "`tether audit verify --full`" in lines[0]
    return result.stdout.splitlines(), lines[0]


def row_of(table: list[str], request_id: str) -> list[str]:
    """The cells of the table row of a request: leaf, time, request, subject, alias, ..., proof."""
    return next([cell.strip() for cell in line.split("│")] for line in table if f" {request_id} " in f" {line} ")


def plain_verify_says_ok(project: AuditProject) -> None:
    out = project.dir.run("audit", "verify").stdout
    assert "incremental" in out and out.strip().endswith(": ok"), out


def test_untouched_records_are_ok_and_records_after_the_checkpoint_are_new(audit_project: AuditProject) -> None:
    prepared(audit_project)
    assert proofs(audit_project, "--from", "2026-03-01") == {**{index: "ok" for index in range(20)}, 20: "new", 21: "new", 22: "new"}
    data = json.loads(audit_project.dir.run("audit", "query", "--request", "r4", "--json").stdout)
    assert (data["records"][0]["proof"], data["records"][0]["proof_problem"]) == ("ok", None) and "error" not in data
    table = audit_project.dir.run("audit", "query", "--subject", "1", "--at", "2026-03-01").stdout.splitlines()
    assert table[0].split()[-1] == "proof"
    assert row_of(table, "r4")[-1] == "ok" and row_of(table, "r22")[-1] == "new"
    audit_project.dir.run("audit", "checkpoint")
    assert set(proofs(audit_project, "--from", "2026-03-01").values()) == {"ok"}


def test_a_log_without_a_checkpoint_shows_every_record_as_new(audit_project: AuditProject) -> None:
    fill(audit_project, count=5, checkpoint=False)
    assert proofs(audit_project, "--from", "2026-03-01") == dict.fromkeys(range(5), "new")


def test_a_record_changed_after_it_was_checkpointed_is_flagged(audit_project: AuditProject) -> None:
    prepared(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET leaf = ? WHERE idx = 5", (leaf(conn, 5).replace(b'"prod"', b'"beta"'),))
    plain_verify_says_ok(audit_project)  # it does not re-read records it verified before
    table, line = tampered(audit_project, "--subject", "2", "--at", "2026-03-01")
    assert row_of(table, "r5")[-1] == "TAMPERED" and row_of(table, "r5")[4] == "beta"  # shown, flagged
    assert row_of(table, "r2")[-1] == "ok" and row_of(table, "r20")[-1] == "new"  # the others still check out
    assert "1 of the 7 records shown failed the check (leaf 5: the record no longer hashes to its stored leaf hash" in line
    data = json.loads(audit_project.dir.run("audit", "query", "--request", "r5", "--json", code=1).stdout)
    assert data["records"][0]["proof"] == "tampered" and "stored leaf hash" in data["records"][0]["proof_problem"]
    assert data["exit_code"] == 1 and "leaf 5: " in data["error"]
    assert "first bad leaf 5" in audit_project.dir.run("audit", "verify", "--full", code=1).stderr


def test_a_record_rewritten_with_its_leaf_hash_fails_its_inclusion_proof(audit_project: AuditProject) -> None:
    prepared(audit_project, count=600)  # three blocks of 256 leaves: nodes over the first two are cached
    with db(audit_project) as conn:
        forged = leaf(conn, 5).replace(b'"prod"', b'"beta"')
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 5", (forged, leaf_hash(forged)))
    plain_verify_says_ok(audit_project)
    table, line = tampered(audit_project, "--request", "r5")
    assert row_of(table, "r5")[-1] == "TAMPERED"
    assert "leaf 5: its audit path does not lead to the root of the signed checkpoint of size 600" in line
    # a path is built from the leaf hashes stored in its record's block of 256 leaves, so the
    # records sharing leaf 5's block fail with it; records in other blocks still prove
    assert proofs(audit_project, "--request", "r300") == {300: "ok"}
    assert proofs(audit_project, "--request", "r599") == {599: "ok"}
    assert proofs(audit_project, "--request", "r600") == {600: "new"}
    assert proofs(audit_project, "--request", "r17", code=1) == {17: "tampered"}


def test_a_query_over_many_records_checks_each_block_once_and_each_record_in_it(audit_project: AuditProject) -> None:
    prepared(audit_project, count=600)
    window = ("--from", "2026-03-01T13:10:00", "--to", "2026-03-01T17:40:00")  # leaves 250..519
    assert proofs(audit_project, *window) == dict.fromkeys(range(250, 520), "ok")
    with db(audit_project) as conn:
        forged = leaf(conn, 300).replace(b'"prod"', b'"beta"')
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 300", (forged, leaf_hash(forged)))
    # leaf 300's block (256..511) no longer hashes to the node on the signed paths; the blocks around it still do
    expected = {**dict.fromkeys(range(250, 256), "ok"), **dict.fromkeys(range(256, 512), "tampered"), **dict.fromkeys(range(512, 520), "ok")}
    assert proofs(audit_project, *window, code=1) == expected


def test_a_proven_block_admits_only_the_hashes_it_holds(audit_project: AuditProject) -> None:
    from tether.audit.merkle import ProofError
    from tether.audit.tree import PathView

    fill(audit_project, count=600)
    with AuditLog.open(audit_project.root, create=False) as log:
        checkpoint = log.latest_checkpoint()
        assert checkpoint is not None
        view = PathView(log.store, checkpoint.size, checkpoint.root)
        hashes = log.store.leaf_hashes(256, 512)
        view.check_inclusion(256, hashes[0])  # proves the block of leaves 256..511
        view.check_inclusion(300, hashes[44])
        for index, wrong in ((300, b"\x00" * 32), (300, hashes[45]), (256, hashes[1])):
            with pytest.raises(ProofError):
                view.check_inclusion(index, wrong)


def test_a_changed_tree_node_fails_the_proofs_through_it(audit_project: AuditProject) -> None:
    prepared(audit_project, count=600)
    with db(audit_project) as conn:
        conn.execute("UPDATE nodes SET hash = ? WHERE level = 8 AND idx = 0", (b"\x07" * 32,))  # over leaves 0..255
    plain_verify_says_ok(audit_project)
    table, line = tampered(audit_project, "--request", "r300")  # its path uses the node over leaves 0..255
    assert row_of(table, "r300")[-1] == "TAMPERED" and "leaf 300: its audit path does not lead to the root" in line
    assert proofs(audit_project, "--request", "r5") == {5: "ok"}  # the node is leaf 5's ancestor, never read for it
    assert "cached tree nodes over leaves 0..255 disagree" in audit_project.dir.run("audit", "verify", "--full", code=1).stderr


def test_a_node_that_is_not_a_hash_fails_the_proofs_through_it(audit_project: AuditProject) -> None:
    prepared(audit_project, count=300)
    with db(audit_project) as conn:
        conn.execute("UPDATE nodes SET hash = hex(hash) WHERE level = 8 AND idx = 0")
    _, line = tampered(audit_project, "--request", "r290")
    assert "leaf 290: its audit path to the signed checkpoint of size 300 cannot be built: cached tree node (level 8, index 0)" in line


def test_erased_payloads_still_prove(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "output"')
    prepared(audit_project, payloads=True)
    audit_project.dir.run("audit", "erase", "r5", "--reason", "DSR-5")
    audit_project.dir.run("audit", "erase", "r21", "--reason", "DSR-21")
    assert proofs(audit_project, "--subject", "2", "--at", "2026-03-01") == {2: "ok", 5: "ok", 8: "ok", 11: "ok", 14: "ok", 17: "ok", 20: "new"}
    assert proofs(audit_project, "--request", "r21") == {21: "new"}


def test_records_prove_after_a_purge(audit_project: AuditProject) -> None:
    prepared(audit_project, count=300)
    audit_project.dir.run("audit", "purge", "--before", "2026-03-01T09:03:00")  # leaves 0..2: their block is cut
    assert proofs(audit_project, "--request", "r5") == {5: "ok"}  # a path through the subtrees kept of the purged prefix
    assert proofs(audit_project, "--request", "r290") == {290: "ok"}
    assert proofs(audit_project, "--request", "r300") == {300: "ok"}  # covered by the checkpoint the purge signed


def test_a_changed_query_column_is_flagged(audit_project: AuditProject) -> None:
    prepared(audit_project)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET subject = '42' WHERE idx = 12")  # leaf 12 now shows up as customer 42's
    table, line = tampered(audit_project, "--subject", "42")
    assert row_of(table, "r12")[-1] == "TAMPERED" and "leaf 12: its query columns" in line


def test_records_moved_after_the_checkpoint_are_flagged(audit_project: AuditProject) -> None:
    prepared(audit_project)
    with db(audit_project) as conn:  # rows 21 and 22 swapped, hashes and all: no leaf hash changes
        conn.execute("UPDATE leaves SET idx = -1 WHERE idx = 21")
        conn.execute("UPDATE leaves SET idx = 21 WHERE idx = 22")
        conn.execute("UPDATE leaves SET idx = 22 WHERE idx = -1")
    _, line = tampered(audit_project, "--request", "r21")
    assert "leaf 21: the record written as leaf 21 sits at leaf 22" in line


def test_a_changed_checkpoint_note_flags_every_record(audit_project: AuditProject) -> None:
    prepared(audit_project)
    with db(audit_project) as conn:
        note = conn.execute("SELECT note FROM checkpoints").fetchone()[0]
        conn.execute("UPDATE checkpoints SET note = ?", (note.replace("\n20\n", "\n21\n"),))
    _, line = tampered(audit_project, "--request", "r3")
    assert "the latest signed checkpoint (size 20) does not verify: signature by" in line
    assert proofs(audit_project, "--from", "2026-03-01", code=1) == dict.fromkeys(range(23), "tampered")


def test_removed_checkpoints_do_not_turn_verified_records_into_new_ones(audit_project: AuditProject) -> None:
    prepared(audit_project)  # `audit verify` remembers checkpoint 20, outside the database
    with db(audit_project) as conn:
        conn.execute("DELETE FROM checkpoints")
    _, line = tampered(audit_project, "--request", "r3")
    assert "verified a signed checkpoint of size 20 covering it, but the log's latest signed checkpoint has size 0" in line
    assert proofs(audit_project, "--request", "r21") == {21: "new"}


def test_a_log_rewritten_and_resigned_at_the_verified_size_is_flagged(audit_project: AuditProject) -> None:
    from tether.audit.keys import load_signer
    from tether.audit.merkle import root_from_leaf_hashes
    from tether.audit.note import Checkpoint, sign_note

    prepared(audit_project)  # `audit verify` remembers the root of checkpoint 20, outside the database
    with db(audit_project) as conn:  # leaf 5 rewritten, and the checkpoint re-signed with the log's own key
        forged = leaf(conn, 5).replace(b'"prod"', b'"beta"')
        conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 5", (forged, leaf_hash(forged)))
        root = root_from_leaf_hashes([bytes(row[0]) for row in conn.execute("SELECT leaf_hash FROM leaves WHERE idx < 20 ORDER BY idx")])
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        note = sign_note(Checkpoint(origin, 20, root).text(), load_signer(audit_project.root / ".tether"))
        conn.execute("UPDATE checkpoints SET root = ?, note = ?", (root, note))
    _, line = tampered(audit_project, "--request", "r3")  # leaf 3 proves against the re-signed root, but that root is not the verified one
    assert "has another root than the one `tether audit verify` verified: the log was rewritten and re-signed" in line


def test_the_python_api_raises_holding_every_record_marked(audit_project: AuditProject) -> None:
    prepared(audit_project)
    with AuditLog.open(audit_project.root, create=False) as log:
        assert [(r.index, r.proof) for r in log.query(subject="0", start=T0 + _dt.timedelta(minutes=15))] == [(15, "ok"), (18, "ok"), (21, "new")]
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET leaf = ? WHERE idx = 18", (leaf(conn, 18).replace(b'"prod"', b'"beta"'),))
    with AuditLog.open(audit_project.root, create=False) as log, pytest.raises(TamperedRecordsError, match="leaf 18: ") as caught:
        log.query(subject="0", start=T0 + _dt.timedelta(minutes=15))
    assert [(r.index, r.proof) for r in caught.value.records] == [(15, "ok"), (18, "tampered"), (21, "new")]
    assert [r.index for r in caught.value.tampered] == [18]
