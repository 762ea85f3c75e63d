"""Recording, durability modes, queries, payload policy, checkpoints, purge and export."""

from __future__ import annotations

import asyncio
import datetime as _dt
import io
import json
import threading

import pytest

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog, AuditRecordError
from tether.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from tether.audit.note import open_checkpoint
from tether.errors import CheckFailedError, ReferenceNotFoundError, UsageError

DAY = _dt.datetime(2026, 3, 1, 10, 0, tzinfo=_dt.UTC)


class Live:
    """What tether.resolve returns, as far as recording needs."""

    def __init__(self, alias: str | None, version_id: str, ref: str | None = None):
        self.alias, self.version_id, self.ref = alias, version_id, ref


def test_context_manager_records_success_and_error_with_exception_type(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        with log.record(Live("prod", audit_project.v1), request_id="r-1", subject="42", attributes={"channel": "chat"}) as rec:
            rec.input("What is the refund window?")
            rec.output("14 days")
        assert rec.index == 0
        with pytest.raises(KeyError), log.record(alias="prod", version_id=audit_project.v1, request_id="r-2") as rec:
            raise KeyError("boom")
        ok, failed = log.query(request_id="r-1")[0], log.query(request_id="r-2")[0]
    assert (ok.status, ok.subject, ok.alias, ok.version_id, ok.attributes) == ("ok", "42", "prod", audit_project.v1, {"channel": "chat"})
    assert ok.input_digest and ok.output_digest and ok.latency_us >= 0
    assert ok.time.endswith("Z")
    assert (failed.status, failed.error_type, failed.output_digest) == ("error", "KeyError", None)


def test_a_payload_without_canonical_form_is_refused_while_the_request_can_still_fail(audit_project: AuditProject) -> None:
    """rec.output(object()) used to pass, then fail at the end of the block: the answer was given
    and no record written. It is refused at once; the record is written, as an error."""
    from tether.audit.records import AuditRecordError

    with AuditLog.open(audit_project.root, durability="sync") as log:
        answered = []
        with pytest.raises(AuditRecordError), log.record(alias="prod", version_id=audit_project.v1, request_id="r-obj") as rec:
            rec.output(object())
            answered.append("sent")
        with pytest.raises(AuditRecordError), log.record(alias="prod", version_id=audit_project.v1, request_id="r-set") as rec:
            rec.set(model=object())
        records = {record.request_id: record for record in log.query()}
    assert answered == []
    assert (records["r-obj"].status, records["r-obj"].error_type) == ("error", "tether.audit.records.AuditRecordError")
    assert records["r-set"].status == "error" and records["r-set"].attributes == {}


def test_a_query_by_a_version_prefix_is_refused_not_answered_empty(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="r-1")
        assert [record.request_id for record in log.query(version_id=audit_project.v1)] == ["r-1"]
        for wrong in (audit_project.v1[:12], "prod"):
            with pytest.raises(UsageError, match="must be a full version ID"):
                log.query(version_id=wrong)


def test_plain_function_and_decorator_forms(audit_project: AuditProject) -> None:
    live = Live("prod", audit_project.v2)
    with AuditLog.open(audit_project.root, durability="sync") as log:
        index = log.append(live, request_id="p-1", subject="7", output={"answer": 1}, latency_ms=12.5, time=DAY)
        assert index == 0

        @log.recorded(lambda: live, request_id=lambda question, customer: f"d-{customer}", subject=lambda question, customer: customer)
        def answer(question: str, customer: str) -> str:
            if question == "fail":
                raise RuntimeError("model down")
            return f"answer to {question}"

        assert answer("refunds?", customer="9") == "answer to refunds?"
        with pytest.raises(RuntimeError):
            answer("fail", "10")

        @log.recorded(live)
        async def answer_async(question: str) -> object:
            return object()  # no canonical form: recorded without an output digest

        asyncio.run(answer_async("x"))
        records = {record.request_id: record for record in log.query(start=DAY - _dt.timedelta(days=1))}
    assert records["p-1"].latency_us == 12500 and records["p-1"].time == "2026-03-01T10:00:00.000000Z"
    assert records["d-9"].subject == "9" and records["d-9"].input_digest and records["d-9"].output_digest
    assert records["d-10"].status == "error" and records["d-10"].error_type == "RuntimeError"
    generated = [record for rid, record in records.items() if rid not in ("p-1", "d-9", "d-10")]
    assert len(generated) == 1 and generated[0].output_digest is None and generated[0].input_digest


def test_a_live_version_without_alias_is_labelled_by_its_reference(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(Live(None, audit_project.v1, ref="HEAD"), request_id="h-1")
        assert log.query(request_id="h-1")[0].alias == "HEAD"


def test_bad_records_get_clear_errors_and_nothing_is_written(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        with pytest.raises(AuditRecordError, match="alias is required"):
            log.append(version_id=audit_project.v1, request_id="x")
        with pytest.raises(AuditRecordError, match="request_id is required"):
            log.append(alias="prod", version_id=audit_project.v1, request_id=None)
        with pytest.raises(AuditRecordError, match="no such version in this project"):
            log.append(alias="prod", version_id="cd" * 32, request_id="x")
        with pytest.raises(AuditRecordError, match="latency_ms"):
            log.append(alias="prod", version_id=audit_project.v1, request_id="x", latency_ms=-1)
        with pytest.raises(AuditRecordError, match="no canonical form"):
            log.append(alias="prod", version_id=audit_project.v1, request_id="x", output=object())
        ran = []
        # refused before the request runs
        with pytest.raises(AuditRecordError, match="subject must be"), log.record(
                alias="prod", version_id=audit_project.v1, request_id="x", subject=["42"]):
            ran.append(True)
        assert ran == []
        assert log.store.size() == 0


def test_bad_arguments_are_tether_errors_not_bare_builtins_or_sqlite(audit_project: AuditProject) -> None:
    """Each used to escape as OverflowError, ValueError, AttributeError or sqlite3.ProgrammingError."""
    log = AuditLog.open(audit_project.root, durability="sync")
    fields = {"alias": "prod", "version_id": audit_project.v1, "request_id": "x"}
    for latency in (float("inf"), float("nan")):
        with pytest.raises(AuditRecordError, match="latency_ms must be a finite"):
            log.append(**fields, latency_ms=latency)
        with pytest.raises(AuditRecordError, match="latency_ms must be a finite"):
            asyncio.run(log.append_async(**fields, latency_ms=latency))
    with pytest.raises(AuditRecordError, match="time: a timezone-aware datetime is required, got str"):
        log.append(**fields, time="2026-03-01T10:00:00Z")  # type: ignore[arg-type]
    index = log.append(**fields, input="q")
    with pytest.raises(UsageError, match="field_name must be 'input' or 'output'"):
        log.matches(index, "inputs", "q")
    assert log.matches(index, "input", "q") is True
    log.close()
    log.close()  # closing twice is harmless
    for read in (lambda: log.query(request_id="x"), lambda: log.prove("x"), log.checkpoint):
        with pytest.raises(UsageError, match="the audit log is closed"):
            read()


def test_a_decorated_function_with_a_bad_subject_is_refused_before_it_runs(audit_project: AuditProject) -> None:
    ran: list[str] = []
    with AuditLog.open(audit_project.root, durability="sync") as log:

        @log.recorded(alias="prod", version_id=audit_project.v1, subject=lambda question, customer: customer)
        def answer(question: str, customer: str) -> str:
            ran.append(question)
            return "refund approved"

        with pytest.raises(AuditRecordError, match="subject must be at most 1024"):
            answer("refund?", customer="c" * 2000)
        assert answer("refund?", customer="42") == "refund approved"
        assert [record.subject for record in log.query()] == ["42"]
    assert ran == ["refund?"]  # the refused call never ran: no answer went out unrecorded


def test_group_commit_8_writers_every_record_durable_and_in_one_tree(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        indexes: list[int] = []
        lock = threading.Lock()

        def writer(number: int) -> None:
            for sample in range(40):
                with log.record(alias="prod", version_id=audit_project.v1, request_id=f"w{number}-{sample}") as rec:
                    rec.output(sample)
                with lock:
                    indexes.append(rec.index)  # type: ignore[arg-type]

        threads = [threading.Thread(target=writer, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(indexes) == list(range(320))
        log.checkpoint()
        assert log.verify().ok
    with AuditLog.open(audit_project.root) as reopened:
        assert reopened.store.leaf_count() == 320


def test_batched_mode_returns_at_once_and_flushes_on_close(audit_project: AuditProject) -> None:
    log = AuditLog.open(audit_project.root, durability="batched")
    for sample in range(500):
        assert log.append(alias="prod", version_id=audit_project.v1, request_id=f"b-{sample}") is None
    log.close()
    with AuditLog.open(audit_project.root) as reopened:
        assert reopened.store.leaf_count() == 500
        assert [r.request_id for r in reopened.query(request_id="b-499")] == ["b-499"]


def test_a_batched_log_answers_a_query_with_what_it_queued(audit_project: AuditProject) -> None:
    """Read your own writes: the queue is written before a query reads the database."""
    with AuditLog.open(audit_project.root, durability="batched") as log:
        assert log.append(alias="prod", version_id=audit_project.v1, request_id="a1") is None
        assert [record.request_id for record in log.query(request_id="a1")] == ["a1"]


def test_batched_queue_is_bounded(audit_project: AuditProject) -> None:
    audit_project.configure('durability = "batched"\nbatch_size = 16\nbatch_interval_ms = 5000')
    log = AuditLog.open(audit_project.root)
    for sample in range(40):
        log.append(alias="prod", version_id=audit_project.v1, request_id=f"q-{sample}")
    assert log._queue.qsize() < 16  # a full queue was written by the caller, not left to grow
    log.close()


def test_queries_by_request_subject_day_range_and_version(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for hour, (subject, version) in enumerate([("42", audit_project.v1), ("42", audit_project.v2), ("7", audit_project.v2)]):
            log.append(alias="prod", version_id=version, request_id=f"r{hour}", subject=subject, time=DAY + _dt.timedelta(hours=hour))
        log.append(alias="prod", version_id=audit_project.v2, request_id="next-day", subject="42", time=DAY + _dt.timedelta(days=1))
        day = DAY.replace(hour=0)
        on_day = log.query(subject="42", start=day, end=day + _dt.timedelta(days=1))
        assert [(r.request_id, r.version_id) for r in on_day] == [("r0", audit_project.v1), ("r1", audit_project.v2)]
        assert [r.request_id for r in log.query(version_id=audit_project.v1)] == ["r0"]
        assert [r.request_id for r in log.query(start=DAY + _dt.timedelta(hours=1), end=DAY + _dt.timedelta(hours=3))] == ["r1", "r2"]
        assert log.query(request_id="missing") == []
        assert len(log.query(subject="42", limit=2)) == 2


@pytest.mark.parametrize(("policy", "kept"), [("none", set()), ("output", {"output"}), ("both", {"input", "output"})])
def test_payload_policy_keeps_content_only_where_asked(audit_project: AuditProject, policy: str, kept: set[str]) -> None:
    audit_project.configure(f'payloads = "{policy}"')
    with AuditLog.open(audit_project.root, durability="sync") as log:
        index = log.append(alias="prod", version_id=audit_project.v1, request_id="r", input="question", output="answer")
        stored = log.payloads(index)
        assert set(stored) == kept
        if "output" in kept:
            assert stored["output"]["content"] == "answer"
        assert log.matches(index, "output", "answer") is True
        assert log.matches(index, "output", "another answer") is False


def test_erasing_a_payload_keeps_every_proof_and_verify_says_erased(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "both"')
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(5):
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"r{sample}", subject="42", input="my address", output="ok")
        before = log.checkpoint()
        proof_before = log.prove("r2")[0]
        erased = log.erase("r2", reason="DSR-2026-17")
        assert {item["field"] for item in erased.erased} == {"input", "output"} and not erased.already_erased
        assert (erased.payloads, erased.salts) == (2, 2)
        assert log.payloads(2)["input"]["reason"] == "DSR-2026-17"
        assert log.matches(2, "input", "my address") is None  # unlinkable now
        assert log.checkpoint().created is False and log.prove("r2")[0] == proof_before
        report = log.verify()
    assert report.ok, report.problems
    assert [(item["leaf"], item["field"]) for item in report.erased] == [(2, "input"), (2, "output")]
    assert before.size == 5
    with pytest.raises(UsageError, match="--reason"):
        AuditLog.open(audit_project.root).erase("r1", reason=" ")


def test_checkpoints_and_proofs_verify_as_a_third_party_would(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(300):  # past one cached block of 256 leaves
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"r{sample}")
        first = log.checkpoint()
        assert first.created and log.checkpoint().created is False
        for sample in range(300, 700):
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"r{sample}")
        second = log.checkpoint()
        verifier = log.verifier()
        for rid in ("r0", "r255", "r256", "r299", "r699"):
            proof = log.prove(rid)[0]
            signed = open_checkpoint(proof["checkpoint"], verifier)
            assert signed.size == 700
            verify_inclusion(proof["leaf_index"], signed.size, leaf_hash(proof["leaf"].encode()),
                             [bytes.fromhex(item) for item in proof["proof"]], signed.root)
        consistency = log.prove_consistency(first.note)
        verify_consistency(300, 700, [bytes.fromhex(item) for item in consistency["proof"]], first.root, second.root)
        stored = log.store.checkpoints()
        assert [row.size for row in stored] == [300, 700] and stored[1].previous_size == 300
        with pytest.raises(ReferenceNotFoundError, match="no record"):
            log.prove("nope")
        log.append(alias="prod", version_id=audit_project.v1, request_id="late")
        with pytest.raises(CheckFailedError, match="not covered by a signed checkpoint"):
            log.prove("late")


def test_a_checkpoint_inconsistent_with_the_last_one_is_never_signed(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(10):
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"r{sample}")
        log.checkpoint()
        log.append(alias="prod", version_id=audit_project.v1, request_id="r10")
        # rewrite an already-checkpointed record, hash included: the old root no longer follows
        row = next(log.store.iter_leaves(3, 4))
        forged = row.leaf.replace(b'"prod"', b'"beta"')
        log.store.conn.execute("UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = 3", (forged, leaf_hash(forged)))
        with pytest.raises(CheckFailedError, match=r"refusing to sign.*not consistent"):
            log.checkpoint()
        assert len(log.store.checkpoints()) == 1


def test_purge_keeps_the_tree_verifiable_and_records_itself(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(300):
            log.append(alias="prod", version_id=audit_project.v1, request_id=f"old{sample}", subject="42",
                       time=DAY - _dt.timedelta(days=4000) + _dt.timedelta(seconds=sample))
        for sample in range(20):
            log.append(alias="prod", version_id=audit_project.v2, request_id=f"new{sample}", subject="42")
        dry = log.purge(before=DAY - _dt.timedelta(days=3000), dry_run=True)
        assert (dry.purged, log.store.leaf_count()) == (300, 320)
        report = log.purge(before=DAY - _dt.timedelta(days=3000))
        assert (report.purged, report.start, report.end, report.checkpoint_size, report.record_index) == (300, 0, 300, 320, 320)
        assert log.store.leaf_count() == 21 and log.query(request_id="old5") == []
        log.append(alias="prod", version_id=audit_project.v2, request_id="after")
        log.checkpoint()
        report_verify = log.verify()
        assert report_verify.ok, report_verify.problems
        assert report_verify.purged_to == 300 and report_verify.tree_size == 322
        proof = log.prove("after")[0]
        signed = open_checkpoint(proof["checkpoint"], log.verifier())
        verify_inclusion(proof["leaf_index"], signed.size, leaf_hash(proof["leaf"].encode()),
                         [bytes.fromhex(item) for item in proof["proof"]], signed.root)
        assert log.purge(before=DAY - _dt.timedelta(days=3000)).purged == 0


def test_purge_uses_the_retention_policy(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log, pytest.raises(UsageError, match="retention"):
        log.purge()
    audit_project.configure("retention_days = 30")
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="old", time=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=31))
        log.append(alias="prod", version_id=audit_project.v1, request_id="new")
        assert log.purge().purged == 1


@pytest.mark.parametrize(("audit_toml", "tier", "days"), [
    ('checkpoint_export_interval = "24h"', "regulated", 3650),  # the tier's default retention
    ("retention_days = 30", None, 30),
])
def test_purge_before_a_date_inside_the_retention_period_is_refused(
    audit_project: AuditProject, audit_toml: str, tier: str | None, days: int
) -> None:
    audit_project.configure(audit_toml, tier=tier)
    now = _dt.datetime.now(_dt.UTC)
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="old", time=now - _dt.timedelta(days=days + 1))
        log.append(alias="prod", version_id=audit_project.v1, request_id="today")
        for dry_run in (True, False):
            with pytest.raises(CheckFailedError, match=rf"purge refused: audit.retention_days = {days} keeps every record "
                               rf"for {days} days: --before may be at most {(now - _dt.timedelta(days=days)).date()}T"):
                log.purge(before=_dt.datetime(2030, 1, 1, tzinfo=_dt.UTC), dry_run=dry_run)
        assert log.store.leaf_count() == 2
        assert log.purge(before=now - _dt.timedelta(days=days, minutes=1)).purged == 1  # past retention: purged


def test_jsonl_export_holds_reverifiable_leaves(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "output"')
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="r0", output="hello", time=DAY)
        log.append(alias="prod", version_id=audit_project.v1, request_id="r1", time=DAY + _dt.timedelta(days=2))
        out = io.StringIO()
        assert log.export_jsonl(out, include_payloads=True) == 2
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert leaf_hash(lines[0]["leaf"].encode()).hex() == lines[0]["leaf_hash"]
        assert lines[0]["record"]["request_id"] == "r0" and lines[0]["payloads"]["output"]["content"] == "hello"
        ranged = io.StringIO()
        assert log.export_jsonl(ranged, start=DAY + _dt.timedelta(days=1)) == 1


def test_origin_is_fixed_when_the_log_is_created(audit_project: AuditProject) -> None:
    AuditLog.open(audit_project.root).close()
    audit_project.configure('origin = "example.com/other"')
    with pytest.raises(UsageError, match=r"audit\.origin"):
        AuditLog.open(audit_project.root)


def test_batched_write_failures_are_retried_not_dropped(audit_project: AuditProject, monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.audit.log import AuditWriteError

    log = AuditLog.open(audit_project.root, durability="batched")
    real_append = log.store.append
    failures = {"left": 1}

    def flaky(batch):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk full")
        return real_append(batch)

    monkeypatch.setattr(log.store, "append", flaky)
    log.append(alias="prod", version_id=audit_project.v1, request_id="kept")
    with pytest.raises(AuditWriteError, match="1 queued audit records could not be written"):
        log.flush()
    assert isinstance(log.write_error, OSError)
    log.flush()  # the retry succeeds
    assert log.write_error is None and [r.request_id for r in log.query(request_id="kept")] == ["kept"]
    log.close()


def test_sync_write_failure_reaches_the_writer(audit_project: AuditProject, monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.audit.log import AuditWriteError

    with AuditLog.open(audit_project.root, durability="sync") as log:
        monkeypatch.setattr(log.store, "append", lambda batch: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(AuditWriteError, match="audit record r-1: not written"):
            log.append(alias="prod", version_id=audit_project.v1, request_id="r-1")
        with pytest.raises(ZeroDivisionError) as caught, log.record(alias="prod", version_id=audit_project.v1, request_id="r-2"):
            raise ZeroDivisionError
        assert any("audit record of request r-2 was not written" in note for note in caught.value.__notes__)
        monkeypatch.undo()


def test_async_recording_group_commits_without_blocking_the_loop(audit_project: AuditProject) -> None:
    async def scenario(log: AuditLog) -> list[int]:
        async def writer(number: int) -> list[int]:
            indexes = []
            for sample in range(25):
                async with log.record_async(alias="prod", version_id=audit_project.v1, request_id=f"a{number}-{sample}",
                                            subject="42") as rec:
                    rec.output(sample)
                indexes.append(rec.index)
            return indexes

        results = await asyncio.gather(*(writer(number) for number in range(8)))
        with pytest.raises(LookupError):
            async with log.record_async(alias="prod", version_id=audit_project.v1, request_id="failing"):
                raise LookupError
        index = await log.append_async(alias="prod", version_id=audit_project.v2, request_id="plain", latency_ms=3)
        return [i for indexes in results for i in indexes] + [index]

    with AuditLog.open(audit_project.root, durability="sync") as log:
        indexes = asyncio.run(scenario(log))
        assert sorted(indexes) == [*range(200), 201]
        assert log.query(request_id="failing")[0].status == "error"
        with pytest.raises(TypeError, match="unexpected arguments"):
            asyncio.run(log.append_async(alias="prod", version_id=audit_project.v1, request_id="x", colour="red"))


def test_erasing_again_keeps_the_first_erasure(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "output"')
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.append(alias="prod", version_id=audit_project.v1, request_id="req-3", input="my address", output="ok")
        first = log.erase("req-3", reason="GDPR art.17", fields=("output",))
        assert [(item["field"], item["content"], item["salt"]) for item in first.erased] == [("output", True, True)]
        when = first.erased[0]["time"]
        again = log.erase("req-3", reason="again")  # the output is erased already; the input salt is not
        assert [(item["field"], item["content"], item["salt"]) for item in again.erased] == [("input", False, True)]
        assert again.already_erased == [{"leaf_index": 0, "field": "output", "time": when, "reason": "GDPR art.17"}]
        third = log.erase("req-3", reason="once more")
        assert third.erased == [] and [(item["field"], item["reason"]) for item in third.already_erased] == [("input", "again"), ("output", "GDPR art.17")]
        assert log.payloads(0)["output"] == {"erased": when, "reason": "GDPR art.17"}
        report = log.verify()
    assert report.ok, report.problems
    assert [(item["field"], item["reason"]) for item in report.erased] == [("input", "again"), ("output", "GDPR art.17")]
