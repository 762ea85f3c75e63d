"""`tether audit ...` end to end: output, --json, exit codes, third-party proof checks."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest

from tests.audit.conftest import AuditProject
from tests.conftest import ProjectDir
from tether.audit import AuditLog

T0 = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)


def record_day(project: AuditProject) -> None:
    with AuditLog.open(project.root, durability="sync") as log:
        log.append(alias="prod", version_id=project.v1, request_id="case-1", subject="42", time=T0, output="refund approved")
        log.append(alias="prod", version_id=project.v2, request_id="case-2", subject="42", time=T0 + _dt.timedelta(hours=3))
        log.append(alias="prod", version_id=project.v2, request_id="case-3", subject="7", time=T0 + _dt.timedelta(hours=4))
        log.append(alias="canary", version_id=project.v2, request_id="case-4", subject="42", time=T0 + _dt.timedelta(days=1),
                   status="error", error_type="TimeoutError")


def test_which_version_decided_customer_42_on_a_day_and_what_was_in_it(audit_project: AuditProject) -> None:
    record_day(audit_project)
    text = audit_project.dir.run("audit", "query", "--subject", "42", "--at", "2026-03-01", "--expand").stdout
    assert "case-1" in text and "case-2" in text and "case-4" not in text
    assert audit_project.v1[:12] in text and f"version {audit_project.v1}" in text and "components" in text
    data = json.loads(audit_project.dir.run("audit", "query", "--subject", "42", "--at", "2026-03-01", "--expand", "--json").stdout)
    assert [(r["request_id"], r["version_id"]) for r in data["records"]] == [("case-1", audit_project.v1), ("case-2", audit_project.v2)]
    assert set(data["versions"]) == {audit_project.v1, audit_project.v2}
    assert data["versions"][audit_project.v1]["snapshots"]["llm"]["spec"]["id"] == "gpt-4o-2024-08-06"


def test_query_by_request_range_and_version_reference(audit_project: AuditProject) -> None:
    record_day(audit_project)
    run = audit_project.dir.run
    one = json.loads(run("audit", "query", "--request", "case-4", "--json").stdout)["records"]
    assert one[0]["status"] == "error" and one[0]["error_type"] == "TimeoutError" and one[0]["alias"] == "canary"
    ranged = json.loads(run("audit", "query", "--from", "2026-03-01T10:00:00", "--to", "2026-03-02", "--json").stdout)["records"]
    assert [r["request_id"] for r in ranged] == ["case-2", "case-3", "case-4"]
    by_version = json.loads(run("audit", "query", "--version", "HEAD", "--json").stdout)["records"]
    assert [r["request_id"] for r in by_version] == ["case-2", "case-3", "case-4"]
    by_prefix = json.loads(run("audit", "query", "--version", audit_project.v1[:10], "--json").stdout)["records"]
    assert [r["request_id"] for r in by_prefix] == ["case-1"]
    assert run("audit", "query", "--request", "nothing").stdout.strip() == "no records"


def test_purge_inside_the_retention_period_exits_1_naming_the_setting(audit_project: AuditProject) -> None:
    audit_project.configure('checkpoint_export_interval = "24h"', tier="regulated")
    record_day(audit_project)
    result = audit_project.dir.run("audit", "purge", "--before", "2030-01-01", "--dry-run", code=1)
    limit = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=3650)).date()
    assert result.stderr.startswith(f"tether: error: purge refused: audit.retention_days = 3650 keeps every record for 3650 days: "
                                    f"--before may be at most {limit}T")
    assert len(result.stderr.strip().splitlines()) == 1 and "would purge" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["audit", "query"], "give --request ID"),
    (["audit", "query", "--subject", "42", "--at", "01/03/2026"], "--at '01/03/2026': expected a date"),
    (["audit", "query", "--subject", "42", "--at", "2026-13-01"], "--at '2026-13-01': expected a date YYYY-MM-DD (a UTC day)\n"),
    (["audit", "query", "--subject", "42", "--at", "now"], "--at 'now': expected a date YYYY-MM-DD (a UTC day)\n"),
    (["audit", "query", "--subject", "42", "--at", "2026-03-01", "--from", "2026-03-01"], "not both"),
    (["audit", "query", "--request", "x", "--subject", "42"], "looked up alone"),
    (["audit", "query", "--from", "2026-03-02", "--to", "2026-03-01T00:00:00"], "--to: must be after --from"),
    (["audit", "export", "--jsonl", "-", "--from", "2026-03-02", "--to", "2026-03-01T00:00:00"], "--to: must be after --from"),
    (["audit", "query", "--version", "nosuchbranch"], "nosuchbranch"),
    (["audit", "prove"], "give a REQUEST_ID"),
    (["audit", "verify", "--against", "missing.txt"], "--against missing.txt: no such file"),
    (["audit", "erase", "case-1", "--reason", "x", "--field", "body"], "--field 'body'"),
    (["audit", "purge"], "no retention policy"),
])
def test_bad_usage_exits_2_with_one_line(audit_project: AuditProject, args: list[str], message: str) -> None:
    record_day(audit_project)
    result = audit_project.dir.run(*args, code=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_prove_and_verify_inclusion_as_a_third_party(audit_project: AuditProject, make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    record_day(audit_project)
    run = audit_project.dir.run
    run("audit", "checkpoint", "--export", str(tmp_path / "checkpoint.txt"))
    key = run("audit", "key").stdout.strip()
    proof_path = tmp_path / "proof.json"
    text = run("audit", "prove", "case-2", "-o", str(proof_path)).stdout
    assert "inclusion proof: request case-2, leaf 1 of tree size 4" in text
    outsider: ProjectDir = make_project("outsider")  # no tether project here
    result = outsider.run("audit", "verify-inclusion", str(proof_path), "--key", key, "--checkpoint", str(tmp_path / "checkpoint.txt"))
    assert "inclusion verified: request case-2" in result.stdout
    data = json.loads(outsider.run("audit", "verify-inclusion", str(proof_path), "--key", key, "--json").stdout)
    assert data["ok"] and data["version_id"] == audit_project.v2
    proof = json.loads(proof_path.read_text())
    proof["leaf"] = proof["leaf"].replace('"case-2"', '"case-9"')
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(proof))
    assert "verify-inclusion failed" in outsider.run("audit", "verify-inclusion", str(forged), "--key", key, code=1).stderr
    other_key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    assert "not signed by key" in outsider.run("audit", "verify-inclusion", str(proof_path), "--key", other_key, code=1).stderr
    assert "--key" in outsider.run("audit", "verify-inclusion", str(proof_path), code=2).stderr
    # a proof file is read strictly: no index that only looks like a number, no loose hex
    for field, value, code in (
        ("leaf_index", True, 2), ("leaf_index", "1", 2), ("leaf_index", 1.9, 2), ("leaf_index", 0, 1),
        ("proof", [h.upper() for h in json.loads(proof_path.read_text())["proof"]], 2),
        ("proof", [" ".join([h[:32], h[32:]]) for h in json.loads(proof_path.read_text())["proof"]], 2),
    ):
        loose = json.loads(proof_path.read_text())
        loose[field] = value
        forged.write_text(json.dumps(loose))
        outsider.run("audit", "verify-inclusion", str(forged), "--key", key, code=code)


def test_prove_consistency_and_verify_it(audit_project: AuditProject, tmp_path: Path) -> None:
    record_day(audit_project)
    run = audit_project.dir.run
    old = tmp_path / "old.txt"
    run("audit", "checkpoint", "--export", str(old))
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(10):
            log.append(alias="prod", version_id=audit_project.v2, request_id=f"more-{sample}")
    new = tmp_path / "new.txt"
    checkpoint = json.loads(run("audit", "checkpoint", "--export", str(new), "--json").stdout)
    assert checkpoint["size"] == 14 and checkpoint["created"] is True
    proof = tmp_path / "consistency.json"
    run("audit", "prove", "--since", str(old), "-o", str(proof))
    result = run("audit", "verify-consistency", str(proof), "--old", str(old), "--new", str(new))
    assert "extends tree size 4" in result.stdout
    swapped = run("audit", "verify-consistency", str(proof), "--old", str(new), "--new", str(old), code=1)
    assert "verify-consistency failed" in swapped.stderr


def test_checkpoint_prints_a_c2sp_note(audit_project: AuditProject) -> None:
    record_day(audit_project)
    result = audit_project.dir.run("audit", "checkpoint")
    lines = result.stdout.splitlines()
    assert lines[0] == "tether.local/support-bot/audit" and lines[1] == "4" and lines[3] == ""
    assert lines[4].startswith("\u2014 tether.local/support-bot/audit ")
    assert "unchanged" in audit_project.dir.run("audit", "checkpoint").stderr


def test_erase_purge_and_export_commands(audit_project: AuditProject, tmp_path: Path) -> None:
    audit_project.configure('payloads = "output"')
    record_day(audit_project)
    run = audit_project.dir.run
    assert "erased 1 payload(s) and 1 salt(s) of request case-1" in run("audit", "erase", "case-1", "--reason", "DSR-17").stdout
    verified = run("audit", "verify")
    assert "payload erased: leaf 0 output" in verified.stdout and "(DSR-17)" in verified.stdout
    out = tmp_path / "archive.jsonl"
    assert "exported 4 records" in run("audit", "export", "--jsonl", str(out)).stdout
    assert len(out.read_text().splitlines()) == 4
    purged = json.loads(run("audit", "purge", "--before", "2026-03-02", "--json").stdout)
    assert (purged["purged"], purged["end"]) == (3, 3)
    assert run("audit", "verify").stdout.strip().endswith("ok")
    streamed = run("audit", "export", "--jsonl", "-").stdout.splitlines()
    assert next(json.loads(line)["record"]["request_id"] for line in streamed) == "case-4"


def test_regulated_requires_timely_exports(audit_project: AuditProject, tmp_path: Path) -> None:
    audit_project.configure('checkpoint_export_interval = "1h"', tier="regulated")
    record_day(audit_project)
    result = audit_project.dir.run("audit", "verify", code=1)
    assert "tier 'regulated': no checkpoint was ever exported" in result.stderr
    audit_project.dir.run("audit", "checkpoint", "--export", str(tmp_path / "safe.txt"))
    audit_project.dir.run("audit", "verify")


def test_verify_before_anything_was_recorded(project_dir: ProjectDir) -> None:
    project_dir.run("init")
    assert "no audit log yet" in project_dir.run("audit", "verify").stdout
    assert not (project_dir.root / ".tether" / "audit.db").exists()
    assert (project_dir.root / ".tether" / "keys" / "audit-ed25519").stat().st_mode & 0o777 == 0o600


def test_a_request_id_recorded_twice_is_proved_one_record_at_a_time(audit_project: AuditProject, make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="req-1", time=T0)
        log.append(alias="prod", version_id=audit_project.v2, request_id="req-2", time=T0 + _dt.timedelta(hours=1))
        log.append(alias="prod", version_id=audit_project.v2, request_id="req-1", time=T0 + _dt.timedelta(hours=2))  # a retry
    run = audit_project.dir.run
    run("audit", "checkpoint")
    key = run("audit", "key").stdout.strip()
    proof = tmp_path / "p.json"
    refused = run("audit", "prove", "req-1", "-o", str(proof), code=2)
    assert refused.stderr.strip() == ("tether: error: request 'req-1' matches 2 records (leaves 0, 2): "
                                      "prove one with --index N") and not proof.exists()
    assert json.loads(run("audit", "prove", "req-1", "--json", code=2).stdout)["exit_code"] == 2
    outsider: ProjectDir = make_project("outsider")
    for index in (0, 2):
        run("audit", "prove", "req-1", "--index", str(index), "-o", str(proof))
        result = outsider.run("audit", "verify-inclusion", str(proof), "--key", key)
        assert "inclusion verified: request req-1 " in result.stdout and f"is leaf {index} " in result.stdout
        printed = tmp_path / "printed.json"
        printed.write_text(run("audit", "prove", "--index", str(index), "--json").stdout)
        assert f"is leaf {index} " in outsider.run("audit", "verify-inclusion", str(printed), "--key", key).stdout
    mismatch = run("audit", "prove", "req-1", "--index", "1", code=2)
    assert "leaf 1 is request 'req-2', not 'req-1'" in mismatch.stderr and len(mismatch.stderr.strip().splitlines()) == 1
    # the query shows every record of the request, with the leaf index --index takes
    records = json.loads(run("audit", "query", "--request", "req-1", "--json").stdout)["records"]
    assert [(r["leaf_index"], r["version_id"]) for r in records] == [(0, audit_project.v1), (2, audit_project.v2)]
    table = run("audit", "query", "--request", "req-1").stdout.splitlines()
    assert "leaf" in table[0].split()
    assert [line.split()[0] for line in table[2:]] == ["0", "2"]


@pytest.mark.parametrize("payloads", ["none", "both"])
def test_a_second_erase_is_a_no_op_that_says_when_and_why_the_first_was(audit_project: AuditProject, payloads: str) -> None:
    audit_project.configure(f'payloads = "{payloads}"')
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="req-3", input="my address", output="refund approved")
    run = audit_project.dir.run
    first = run("audit", "erase", "req-3", "--reason", "GDPR art.17").stdout.strip()
    kept = 2 if payloads == "both" else 0  # with payloads = "none" only the salts linking the digests to content are stored
    assert first.startswith(f"erased {kept} payload(s) and 2 salt(s) of request req-3"), first
    erased = json.loads(run("audit", "verify", "--json").stdout)["payloads_erased"]
    assert [(item["field"], item["reason"]) for item in erased] == [("input", "GDPR art.17"), ("output", "GDPR art.17")]
    when = erased[0]["time"]
    second = run("audit", "erase", "req-3", "--reason", "again")
    assert second.stdout.strip() == f"request req-3: already erased on {when}: GDPR art.17"
    data = json.loads(run("audit", "erase", "req-3", "--reason", "again", "--json").stdout)
    assert data["erased"] == [] and (data["payloads_erased"], data["salts_erased"]) == (0, 0)
    assert [(item["time"], item["reason"]) for item in data["already_erased"]] == [(when, "GDPR art.17")] * 2
    after = json.loads(run("audit", "verify", "--json").stdout)
    assert after["ok"] and after["payloads_erased"] == erased  # the first erasure's time and reason stand


@pytest.mark.parametrize("earlier_verify", [False, True])
def test_an_overdue_export_is_named_with_how_overdue_and_the_interval(audit_project: AuditProject, tmp_path: Path,
                                                                      earlier_verify: bool) -> None:
    import sqlite3

    audit_project.configure('checkpoint_export_interval = "1h"', tier="regulated")
    record_day(audit_project)
    run = audit_project.dir.run
    run("audit", "checkpoint", "--export", str(tmp_path / "safe.txt"))
    if earlier_verify:
        run("audit", "verify")  # the next plain verify is incremental
    conn = sqlite3.connect(audit_project.root / ".tether" / "audit.db")
    with conn:  # the export was made 3 hours and 20 minutes ago
        when = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=3, minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        conn.execute("UPDATE exports SET time = ?", (when,))
    conn.close()
    for args in ((), ("--full",)):
        result = run("audit", "verify", *args, code=1)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("tether: error: audit verify failed: tier 'regulated': the last checkpoint export "), last
        assert f"({when})" in last and "is 2h20m overdue" in last and "audit.checkpoint_export_interval is 1h" in last, last
        assert "the full check names what is wrong" not in result.stderr and "incremental check failed" not in result.stderr
    data = json.loads(run("audit", "verify", "--json", code=1).stdout)
    assert "2h20m overdue" in data["first_problem"] and not data["warnings"]
    run("audit", "checkpoint", "--export", str(tmp_path / "safe.txt"))
    run("audit", "verify")
