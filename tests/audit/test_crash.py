"""A killed writer loses nothing that `sync` acknowledged; `batched` flushes on exit and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog

WRITER = textwrap.dedent("""
    import sys, threading
    from tether.audit import AuditLog
    root, version_id, mode, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = AuditLog.open(root, durability=mode)
    lock = threading.Lock()

    def work(number):
        sample = 0
        while True:
            request_id = f"t{number}-{sample}"
            log.append(alias="prod", version_id=version_id, request_id=request_id)
            with lock:  # acknowledged: printed only after append returned
                sys.stdout.write(request_id + "\\n")
                sys.stdout.flush()
            sample += 1
            if mode == "batched" and sample == 300:
                sys.stdout.write("queued\\n")
                sys.stdout.flush()
                threading.Event().wait()

    for number in range(threads):
        threading.Thread(target=work, args=(number,), daemon=True).start()
    threading.Event().wait()
""")


def start_writer(project: AuditProject, mode: str, threads: int) -> subprocess.Popen[str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(project.root), project.v1, mode, str(threads)],
                            stdout=subprocess.PIPE, text=True, env=env)


def read_until(process: subprocess.Popen[str], done: callable, timeout: float = 60) -> list[str]:  # type: ignore[valid-type]
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        lines.append(line.strip())
        if done(lines):  # type: ignore[operator]
            break
    return lines


@pytest.mark.slow
def test_sigkill_loses_nothing_sync_acknowledged(audit_project: AuditProject) -> None:
    process = start_writer(audit_project, "sync", threads=4)
    try:
        acknowledged = read_until(process, lambda lines: len(lines) >= 200)
        process.kill()  # SIGKILL: no cleanup of any kind
        process.wait(timeout=30)
        acknowledged += [line.strip() for line in process.stdout.read().splitlines() if line.strip()]  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
    assert len(acknowledged) >= 200
    with AuditLog.open(audit_project.root) as log:
        stored = {row.request_id for row in log.store.iter_leaves()}
        assert set(acknowledged) <= stored
        log.checkpoint()
        report = log.verify()
    assert report.ok, report.problems


@pytest.mark.slow
def test_batched_queue_is_flushed_on_sigterm(audit_project: AuditProject) -> None:
    audit_project.configure("batch_interval_ms = 60000")  # the background writer would wait a minute
    process = start_writer(audit_project, "batched", threads=1)
    try:
        lines = read_until(process, lambda lines: lines[-1] == "queued")
        assert lines[-1] == "queued"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    with AuditLog.open(audit_project.root) as log:
        assert log.store.leaf_count() == 300


MULTI = textwrap.dedent("""
    import sys
    from tether.audit import AuditLog
    root, version_id, name = sys.argv[1], sys.argv[2], sys.argv[3]
    with AuditLog.open(root, durability="sync") as log:
        for sample in range(150):
            log.append(alias="prod", version_id=version_id, request_id=f"{name}-{sample}")
""")


def test_several_processes_append_to_one_log(audit_project: AuditProject) -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    processes = [subprocess.Popen([sys.executable, "-c", MULTI, str(audit_project.root), audit_project.v1, f"p{number}"], env=env)
                 for number in range(3)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    with AuditLog.open(audit_project.root) as log:
        assert log.store.leaf_count() == 450
        log.checkpoint()
        report = log.verify()
    assert report.ok, report.problems
