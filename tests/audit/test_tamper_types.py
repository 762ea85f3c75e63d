"""Tampering that changes what a column holds (text for bytes, NULL, a number, a short hash) is
caught like any other change: `audit verify` names the leaf, other commands fail with one line,
and nothing ends in a traceback."""

from __future__ import annotations

import json

import pytest

from tests.audit.conftest import AuditProject
from tests.audit.test_tamper import db, fill, verify_fails

# Each statement stores in leaf 6 something tether never writes there.
LEAF_EDITS = {
    "replace() returns text": """UPDATE leaves SET leaf = replace(leaf, '"status":"ok"', '"status":"XX"') WHERE idx = 6""",
    "the same bytes as text": "UPDATE leaves SET leaf = CAST(leaf AS TEXT) WHERE idx = 6",
    "text that is not UTF-8": "UPDATE leaves SET leaf = CAST(X'FF00FF' AS TEXT) WHERE idx = 6",
    "a number for the leaf": "UPDATE leaves SET leaf = 42 WHERE idx = 6",
    "the hash as hex text": "UPDATE leaves SET leaf_hash = hex(leaf_hash) WHERE idx = 6",
    "a short hash": "UPDATE leaves SET leaf_hash = substr(leaf_hash, 1, 16) WHERE idx = 6",
    "a number for the hash": "UPDATE leaves SET leaf_hash = 0 WHERE idx = 6",
    "the salt as text": "UPDATE leaves SET output_salt = hex(output_salt) WHERE idx = 6",
    "a number for the salt": "UPDATE leaves SET output_salt = 7 WHERE idx = 6",
    "a short salt": "UPDATE leaves SET output_salt = substr(output_salt, 1, 4) WHERE idx = 6",
    "the request ID as bytes": "UPDATE leaves SET request_id = CAST(request_id AS BLOB) WHERE idx = 6",
    "a request ID that is not UTF-8": "UPDATE leaves SET request_id = CAST(X'72FF36' AS TEXT) WHERE idx = 6",
    "the time as bytes": "UPDATE leaves SET time = CAST(time AS BLOB) WHERE idx = 6",
    "the subject as bytes": "UPDATE leaves SET subject = CAST(subject AS BLOB) WHERE idx = 6",
    "the version as text": "UPDATE leaves SET version_ref = 'v1' WHERE idx = 6",
}
PAYLOAD_EDITS = {
    "the payload as text": "UPDATE payloads SET content = CAST(content AS TEXT) WHERE idx = 6",
    "the payload as a number": "UPDATE payloads SET content = 6 WHERE idx = 6",
    "the payload's encoding changed": "UPDATE payloads SET encoding = 'pickle' WHERE idx = 6",
    "the payload's field changed": "UPDATE payloads SET field = 'outcome' WHERE idx = 6",
}


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("edit", [*LEAF_EDITS.values(), *PAYLOAD_EDITS.values()], ids=[*LEAF_EDITS, *PAYLOAD_EDITS])
def test_a_column_holding_what_tether_never_writes_is_named(audit_project: AuditProject, edit: str) -> None:
    audit_project.configure('payloads = "output"')
    fill(audit_project, payloads=True)
    with db(audit_project) as conn:
        conn.execute(edit)
    run = audit_project.dir.run
    for args in ((), ("--full",)):
        line = verify_fails(audit_project, *args)
        assert "first bad leaf 6: " in line and "leaf 6: leaf 6" not in line, line
    data = json.loads(run("audit", "verify", "--json", code=1).stdout)
    assert data["ok"] is False and data["first_bad_leaf"] == 6
    assert "leaf 6: " in one_line(run("audit", "export", "--jsonl", "-", "--payloads", code=1))
    if edit in PAYLOAD_EDITS.values():  # the record itself is intact: queries show it
        assert "r6" in run("audit", "query", "--request", "r6").stdout
        return
    # a query that reaches leaf 6 fails with one line naming it; one that looks it up by the
    # column that was changed no longer finds it (as with any change to a query column: verify names it)
    for args in (("--request", "r6"), ("--subject", "0", "--at", "2026-03-01"), ("--from", "2026-03-01")):
        result = run("audit", "query", *args, code=None)
        if result.exit_code == 0:
            assert " r6 " not in result.stdout and "r6" not in result.stdout.split(), (args, result.stdout)
        else:
            assert result.exit_code == 1 and "leaf 6: " in one_line(result), (args, result.stderr)
    assert "leaf 6: " in one_line(run("audit", "export", "--jsonl", "-", code=1))


def test_the_tester_s_edit_is_named_after_an_earlier_verify_too(audit_project: AuditProject) -> None:
    fill(audit_project)
    audit_project.dir.run("audit", "verify")  # remembers checkpoint 20: the default verify reads nothing older
    with db(audit_project) as conn:
        conn.execute(LEAF_EDITS["replace() returns text"])
    line = verify_fails(audit_project, "--full")
    assert "first bad leaf 6: the leaf column holds text" in line, line
    result = audit_project.dir.run("audit", "query", "--request", "r6", code=1)
    assert result.stderr.startswith("tether: error: leaf 6: the leaf column holds text") and len(result.stderr.splitlines()) == 1
    proved = audit_project.dir.run("audit", "prove", "r6", code=1)
    assert "leaf 6: " in proved.stderr and len(proved.stderr.splitlines()) == 1


# Statements on the other tables; each must give exit 1 with one line, never a traceback.
OTHER_EDITS = {
    "checkpoint root as text": ("UPDATE checkpoints SET root = hex(root)", "checkpoint #1"),
    "checkpoint size as text": ("UPDATE checkpoints SET size = 'twenty'", "checkpoint #1"),
    "checkpoint note as bytes": ("UPDATE checkpoints SET note = CAST(note AS BLOB)", "checkpoint #1"),
    "checkpoint proof not JSON": ("UPDATE checkpoints SET consistency = 'nonsense'", "checkpoint #1"),
    "cached node as text": ("UPDATE nodes SET hash = hex(hash)", "cached tree node (level 8, index 0)"),
    "cached node shortened": ("UPDATE nodes SET hash = substr(hash, 1, 31)", "cached tree node (level 8, index 0)"),
    "erasure time as bytes": ("UPDATE erasures SET time = CAST(time AS BLOB)", "leaf 3: its erasure record"),
    "erasure leaf as text": ("UPDATE erasures SET idx = 'three'", "erasure record"),
    "payload leaf as text": ("UPDATE payloads SET idx = 'nine' WHERE idx = 9", "payload"),
    "purged_to not a number": ("UPDATE meta SET value = 'lots' WHERE key = 'purged_to'", "purged_to"),
    "origin as bytes": ("UPDATE meta SET value = CAST(value AS BLOB) WHERE key = 'origin'", "audit verify failed: meta 'origin'"),
    "version ID as bytes": ("UPDATE versions SET version_id = CAST(version_id AS BLOB)", "leaf 1: "),
    "export time not a time": ("UPDATE exports SET time = 'yesterday'", "export"),
    "purge frontier not JSON": ("UPDATE purges SET frontier = 'nonsense'", "purge #1"),
}


@pytest.mark.parametrize(("edit", "named"), OTHER_EDITS.values(), ids=list(OTHER_EDITS))
def test_other_tables_holding_what_tether_never_writes(audit_project: AuditProject, tmp_path, edit: str, named: str) -> None:  # type: ignore[no-untyped-def]
    audit_project.configure('payloads = "output"\ncheckpoint_export_interval = "1h"')
    fill(audit_project, count=300, payloads=True)
    run = audit_project.dir.run
    run("audit", "erase", "r3", "--reason", "DSR-3")
    run("audit", "purge", "--before", "2026-03-01T09:01:00")  # purges leaf 0 (a purge record and a frontier)
    run("audit", "checkpoint", "--export", str(tmp_path / "checkpoint.txt"))
    with db(audit_project) as conn:
        conn.execute(edit)
    for args in ((), ("--full",), ("--json",)):
        result = run("audit", "verify", *args, code=1)
        assert named in result.stderr.strip().splitlines()[-1], result.stderr
    for args in (("query", "--request", "r9"), ("prove", "r9"), ("checkpoint",), ("export", "--jsonl", "-"),
                 ("erase", "r9", "--reason", "x"), ("purge", "--before", "2026-03-01T09:02:00", "--dry-run")):
        result = run("audit", *args, code=None)  # some need the damaged table, some do not
        assert result.exit_code in (0, 1), (args, result.stdout, result.stderr)
        if result.exit_code:
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_no_record_is_chained_after_a_last_leaf_hash_that_is_not_a_hash(audit_project: AuditProject) -> None:
    from tether.audit import AuditLog
    from tether.audit.log import AuditWriteError

    fill(audit_project, checkpoint=False)
    with db(audit_project) as conn:
        conn.execute("UPDATE leaves SET leaf_hash = hex(leaf_hash) WHERE idx = 19")
    with AuditLog.open(audit_project.root, durability="sync") as log, pytest.raises(AuditWriteError, match="leaf 19: the leaf_hash column holds text"):
        log.append(alias="prod", version_id=audit_project.v1, request_id="after")
    assert "first bad leaf 19: the leaf_hash column" in verify_fails(audit_project)
