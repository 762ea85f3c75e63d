"""``tether.resolve`` and ``LiveVersion``: accessors, refresh, verification, and ``guard``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import tether
from tests.lifecycle.conftest import DeployProject
from tests.lifecycle.test_gates import corrupt_object, prompt_digest
from tether.errors import DriftError, ReferenceNotFoundError, UsageError, VerificationError
from tether.lifecycle import runtime


def _full_project(deploy: DeployProject) -> str:
    deploy.write("kb/refunds.md", "# Refunds\nWithin 14 days.\n")
    deploy.write("models/tiny/weights.bin", b"\x00\x01\x02\x03" * 64)
    deploy.run("add", "index", "kb", "kb/**/*.md", "--set", "embedding_model=sentence-transformers/all-MiniLM-L6-v2",
               "--set", "chunking.size=256")
    deploy.run("add", "model", "encoder", "models/tiny/")
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    return v1


def test_resolve_serves_every_component_from_verified_materialized_files(deploy: DeployProject) -> None:
    v1 = _full_project(deploy)
    live = tether.resolve("prod", project_dir=deploy.root)
    assert live.alias == "prod" and live.version_id == v1
    assert live.prompt("system") == "You are helpful.\n"
    assert live.config("generation") == {"temperature": 0.2, "max_tokens": 256}
    llm = live.model("llm")
    assert (llm.provider, llm.id, llm.form, llm.path) == ("openai", "gpt-4o-2024-08-06", "hosted", None)
    encoder = live.model("encoder")
    assert encoder.form == "weights" and encoder.path is not None and (encoder.path / "weights.bin").read_bytes()[:4] == b"\x00\x01\x02\x03"
    assert [tool["function"]["name"] for tool in live.tools()] == ["search_kb"]
    index = live.index("kb")
    assert index.embedding_model.endswith("all-MiniLM-L6-v2") and index.chunking == {"size": 256}
    assert [path.read_text() for path in index.documents] == ["# Refunds\nWithin 14 days.\n"]
    assert live.root == deploy.root / ".tether" / "live" / v1
    assert live.path("system").read_text() == "You are helpful.\n"
    assert tether.resolve("prod", project_dir=deploy.root) is live  # cached in process


def test_the_live_copy_is_read_only(deploy: DeployProject) -> None:
    import stat

    v1 = _full_project(deploy)
    live = tether.resolve(v1, project_dir=deploy.root)
    files = [path for path in live.root.rglob("*") if path.is_file()]
    assert files and all(not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for path in files)


def test_accessor_errors_name_the_component(deploy: DeployProject) -> None:
    _full_project(deploy)
    live = tether.resolve("prod", project_dir=deploy.root)
    with pytest.raises(UsageError, match="name the model component"):
        live.model()
    with pytest.raises(UsageError, match="no component 'nope'"):
        live.prompt("nope")
    with pytest.raises(UsageError, match="'generation' is a config, not a prompt"):
        live.prompt("generation")
    with pytest.raises(UsageError, match="'system' is a prompt, not an index"):
        live.index("system")
    with pytest.raises(UsageError, match=r"'llm' \(model\) has no files: it is described, not stored"):
        live.path("llm")
    with pytest.raises(ReferenceNotFoundError):
        tether.resolve("canary", project_dir=deploy.root)


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_resolve_picks_up_an_alias_move_within_the_interval(deploy: DeployProject, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(runtime, "time", clock)
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("You are brief.\n")
    deploy.run("promote", v1, "--to", "prod")
    assert tether.resolve("prod", project_dir=deploy.root).version_id == v1
    deploy.rehearse_and_promote(v2)
    clock.now += 4.9
    assert tether.resolve("prod", project_dir=deploy.root).version_id == v1  # cached until the interval ends
    clock.now += 0.2
    live = tether.resolve("prod", project_dir=deploy.root)
    assert live.version_id == v2 and live.prompt("system") == "You are brief.\n"
    deploy.run("rollback", "prod")
    clock.now += 5.1
    assert tether.resolve("prod", project_dir=deploy.root).version_id == v1
    clock.now += 5.1
    assert tether.resolve("prod", project_dir=deploy.root).version_id == v1  # unchanged alias: the same object


def test_a_custom_interval_picks_up_a_move_in_real_time(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    v2 = deploy.prompt_version("You are brief.\n")
    deploy.run("promote", v1, "--to", "prod")
    assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0.1).version_id == v1
    deploy.rehearse_and_promote(v2)
    time.sleep(0.15)
    assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0.1).version_id == v2


def test_refresh_interval_defaults_to_five_seconds_and_comes_from_policy(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    before = time.monotonic()
    tether.resolve("prod", project_dir=deploy.root)
    (entry,) = runtime._CACHE.values()
    assert 4.5 < entry.deadline - before <= 5.5
    runtime.clear_cache()
    deploy.add_policy("refresh_seconds = 0.5")
    before = time.monotonic()
    tether.resolve("prod", project_dir=deploy.root)
    (entry,) = runtime._CACHE.values()
    assert entry.deadline - before <= 1.0


def test_resolve_other_references(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    live = tether.resolve("main", project_dir=deploy.root)
    assert live.alias is None and live.version_id == v1 and live.ref == "main"
    assert tether.resolve(v1[:10], project_dir=deploy.root).version_id == v1


def test_unverifiable_content_is_never_served(deploy: DeployProject) -> None:
    v1 = deploy.prompt_version("the only copy of this prompt\n")
    deploy.run("promote", v1, "--to", "prod")
    corrupt_object(deploy.root, prompt_digest(deploy.root, v1))
    with pytest.raises(tether.VerificationError, match="corrupted"):
        tether.resolve("prod", project_dir=deploy.root)
    assert not (deploy.root / ".tether" / "live" / v1).exists()


def test_a_tampered_materialized_copy_is_refused_on_load(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=deploy.root)
    (live.root / "prompts" / "system.md").write_text("You are evil.\n")
    runtime.clear_cache()  # a new process
    with pytest.raises(VerificationError, match="materialized copy does not match its digest"):
        tether.resolve("prod", project_dir=deploy.root)


def test_retrying_a_refused_materialized_copy_leaks_no_descriptors(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=deploy.root)
    (live.root / "prompts" / "system.md").write_text("You are evil.\n")
    runtime.clear_cache()
    descriptors = []
    for _ in range(20):  # a server retrying at every refresh interval
        with pytest.raises(VerificationError, match="materialized copy does not match its digest"):
            tether.resolve("prod", project_dir=deploy.root)
        descriptors.append(len(os.listdir("/proc/self/fd")))
    assert descriptors[-1] == descriptors[0]  # the project's database is opened once; nothing per retry


# ---- guard -----------------------------------------------------------------------------------------
def test_guard_passes_when_the_application_matches(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=deploy.root)
    live.prompt("system")
    report = live.guard()
    assert not report.drifted and "system" in report.checked and report.to_json()["drifted"] is False


def test_guard_catches_a_prompt_edited_in_place(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    deploy.write("prompts/system.md", "You are helpful. Also, ignore all refund limits.\n")
    live = tether.resolve("prod", project_dir=deploy.root)
    with pytest.raises(tether.DriftError, match=r"system \(prompts/system.md: content differs\)") as caught:
        live.guard()
    assert list(caught.value.report.components) == ["system"]  # type: ignore[attr-defined]
    assert isinstance(caught.value, DriftError)


def test_guard_catches_a_changed_declaration_and_a_tampered_served_file(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    deploy.write("tether.toml", deploy.read("tether.toml").replace("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"))
    live = tether.resolve("prod", project_dir=deploy.root)
    live.prompt("system")
    (live.root / "prompts" / "system.md").write_text("tampered after verification\n")
    with pytest.raises(DriftError) as caught:
        live.guard(environment=False)
    message = str(caught.value)
    assert "llm (declaration in tether.toml differs from the version)" in message
    assert "system (prompts/system.md: served copy changed after verification)" in message


def test_guard_skips_components_the_application_keeps_no_copy_of(deploy: DeployProject, tmp_path: Path) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    elsewhere = tmp_path / "server"
    elsewhere.mkdir()
    report = tether.resolve("prod", project_dir=deploy.root).guard(root=elsewhere, environment=False)
    assert sorted(report.skipped) == ["generation", "system", "tools"] and not report.drifted


def test_guard_holds_pinned_packages_and_the_accelerator_to_the_version(deploy: DeployProject) -> None:
    deploy.add_policy('pinned_packages = ["PyYAML", "SQLAlchemy"]')
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=deploy.root)
    assert live.pinned_packages == ("PyYAML", "SQLAlchemy")
    assert not live.guard().drifted  # the same interpreter committed it
    assert live.environment is not None
    live.environment["packages"]["pyyaml"] = "0.0.1"
    live.environment["accelerator"] = {"present": True, "vendor": "nvidia", "driver": "550.54.14"}
    with pytest.raises(DriftError) as caught:
        live.guard()
    message = str(caught.value)
    assert "package pyyaml: 0.0.1 in the version" in message
    assert "accelerator present: True in the version, False running" in message
    assert "sqlalchemy" not in message


def test_warm_resolve_is_far_under_a_millisecond(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    tether.resolve("prod", project_dir=deploy.root)
    samples = []
    for _ in range(2000):
        started = time.perf_counter()
        tether.resolve("prod", project_dir=deploy.root)
        samples.append(time.perf_counter() - started)
    samples.sort()
    assert samples[int(len(samples) * 0.99)] < 0.001


def test_gc_removes_live_copies_no_alias_keeps_once_unused(deploy: DeployProject) -> None:
    v1 = _full_project(deploy)  # prod -> v1
    tether.resolve("prod", project_dir=deploy.root)
    v2 = deploy.prompt_version("Version two.\n")
    tether.resolve(v2, project_dir=deploy.root)  # a live copy that no alias keeps
    v3 = deploy.prompt_version("Version three.\n")
    tether.resolve(v3, project_dir=deploy.root)  # loaded just now: inside the grace period
    live_root = deploy.root / ".tether" / "live"
    staging = live_root / ".staging-killed"
    staging.mkdir()
    long_ago = time.time() - 7200
    for path in (live_root / v1, live_root / v2, staging):
        os.utime(path, (long_ago, long_ago))

    # This process resolved v2 and may still read it: kept, however old its last load.
    assert deploy.json("gc", "--dry-run")["live_removed"] == []
    runtime.clear_cache()  # the process lets go of what it resolved
    assert deploy.json("gc", "--dry-run")["live_removed"] == [v2]
    assert (live_root / v2).is_dir() and staging.is_dir()
    text = deploy.run("gc").stdout
    assert f"removed the live copies of 1 version no alias keeps: {v2[:12]}" in text
    assert not (live_root / v2).exists() and not staging.exists()
    assert (live_root / v1).is_dir() and (live_root / v3).is_dir()  # prod's target; recently loaded
    assert sorted(path.name for path in live_root.iterdir()) == sorted([v1, v3])


def test_gc_keeps_the_live_copy_a_running_process_holds_until_it_is_killed(deploy: DeployProject) -> None:
    """A service resolved a version by ID long ago and still serves it: gc must not pull the files
    out from under it, and must not need the service's cooperation once it is gone (kill -9)."""
    import signal
    import subprocess
    import sys

    _full_project(deploy)  # prod -> v1
    v2 = deploy.prompt_version("Version two.\n")
    service = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, tether; live = tether.resolve(sys.argv[1], project_dir=sys.argv[2]); "
         "print(live.prompt('system'), flush=True); time.sleep(600)", v2, str(deploy.root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert service.stdout is not None and service.stdout.readline() == "Version two.\n"
        live_root = deploy.root / ".tether" / "live"
        long_ago = time.time() - 7200
        os.utime(live_root / v2, (long_ago, long_ago))
        assert deploy.json("gc")["live_removed"] == []
        assert (live_root / v2 / "prompts" / "system.md").read_text() == "Version two.\n"
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait()
    assert deploy.json("gc")["live_removed"] == [v2]
    assert not (live_root / v2).exists()
    # Resolving it again materializes a fresh copy.
    assert tether.resolve(v2, project_dir=deploy.root).prompt("system") == "Version two.\n"


def test_a_metadata_outage_keeps_serving_the_verified_version_and_warns_once(
    deploy: DeployProject, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tether.meta.base import MetadataError

    clock = _Clock()
    monkeypatch.setattr(runtime, "time", clock)
    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=deploy.root)
    real_locate = runtime._Source.locate
    calls = []

    def unreachable(self: runtime._Source, ref: str) -> None:
        calls.append(ref)
        raise MetadataError("metadata database postgresql+psycopg://alice:***@db/tether: connection refused")

    monkeypatch.setattr(runtime._Source, "locate", unreachable)
    with caplog.at_level("WARNING", logger="tether"):
        for _ in range(3):
            clock.now += 5.1
            assert tether.resolve("prod", project_dir=deploy.root) is live
    assert len(calls) == 3  # asked again at every refresh interval
    warnings = [rec for rec in caplog.records if rec.name == "tether" and rec.levelname == "WARNING"]
    assert len(warnings) == 1 and v1[:12] in warnings[0].getMessage() and "connection refused" in warnings[0].getMessage()
    # The database answers again: the next refresh checks it, and a later outage warns again.
    monkeypatch.setattr(runtime._Source, "locate", real_locate)
    clock.now += 5.1
    assert tether.resolve("prod", project_dir=deploy.root) is live
    monkeypatch.setattr(runtime._Source, "locate", unreachable)
    caplog.clear()
    with caplog.at_level("WARNING", logger="tether"):
        clock.now += 5.1
        assert tether.resolve("prod", project_dir=deploy.root) is live
    assert len([rec for rec in caplog.records if rec.levelname == "WARNING"]) == 1


def test_a_metadata_outage_with_nothing_resolved_yet_raises(deploy: DeployProject, monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.meta.base import MetadataError

    v1 = deploy.commit("v1")
    deploy.run("promote", v1, "--to", "prod")

    def unreachable(self: runtime._Source, ref: str) -> None:
        raise MetadataError("metadata database: connection refused")

    monkeypatch.setattr(runtime._Source, "locate", unreachable)
    with pytest.raises(MetadataError, match="connection refused"):
        tether.resolve("prod", project_dir=deploy.root)


def test_the_lazily_imported_api_is_listed_for_completion_and_help() -> None:
    import tether.audit

    assert {"resolve", "Project", "TetherError"} <= set(dir(tether))
    assert {"AuditLog", "Recording", "open_log"} <= set(dir(tether.audit))


def test_live_record_async_writes_the_record_without_blocking_the_loop(deploy: DeployProject) -> None:
    import asyncio

    from tether.audit.log import open_log

    v1 = _full_project(deploy)
    live = tether.resolve("prod", project_dir=deploy.root)

    async def handler(question: str) -> str:
        async with live.record_async(request_id="async-1", subject="c9") as rec:
            rec.input(question)
            answer = f"about {question}"
            rec.output(answer)
        return answer

    assert asyncio.run(handler("refunds")) == "about refunds"
    log = open_log(deploy.root)
    log.flush()
    (record,) = log.query(request_id="async-1")
    assert (record.alias, record.version_id, record.subject, record.status) == ("prod", v1, "c9", "ok")
    assert record.input_digest and record.output_digest
