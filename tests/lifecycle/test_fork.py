"""Pre-fork servers: a worker forked after ``tether.resolve`` (gunicorn ``--preload``) works on
its own, with nothing to call, and leaves the parent's connections and locks alone."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.lifecycle.conftest import DeployProject
from tests.services import PostgresServer
from tether.audit.log import open_log
from tether.lifecycle import runtime

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(action: Callable[[], None], timeout: float = 30.0) -> int:
    """Run ``action`` in a forked child; its exit code (0: it returned), -9 when it hung."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


def _source(root: Path) -> Any:
    return runtime._SOURCES[str(root.resolve())]


def _handle(meta: Any) -> Any:
    """The database handle a metadata repository queries through (a connection or a pool)."""
    return meta._db if hasattr(meta, "_db") else meta._engine.pool


def _promoted(deploy: DeployProject) -> str:
    version = deploy.commit("v1")
    deploy.run("promote", version, "--to", "prod")
    return version


def test_a_forked_child_resolves_through_connections_of_its_own(deploy: DeployProject) -> None:
    version = _promoted(deploy)
    assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).version_id == version
    inherited = _handle(_source(deploy.root).project.meta)

    def child() -> None:
        assert _handle(_source(deploy.root).project.meta) is not inherited
        assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).version_id == version
        runtime.clear_cache()  # closes the child's connections only

    assert _in_child(child) == 0
    assert _handle(_source(deploy.root).project.meta) is inherited
    assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).version_id == version


def _held_across_fork(lock: Any, action: Callable[[], None]) -> int:
    """Fork while another thread of the parent holds ``lock``; run ``action`` in the child."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    try:
        return _in_child(action, timeout=20)
    finally:
        release.set()
        holder.join()


def test_a_lock_held_by_another_thread_at_the_fork_does_not_hang_the_child(deploy: DeployProject) -> None:
    version = _promoted(deploy)
    tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0)

    def child() -> None:
        assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).version_id == version

    assert _held_across_fork(_source(deploy.root).lock, child) == 0
    assert _held_across_fork(runtime._LOCK, child) == 0


def test_a_forked_child_records_to_the_audit_log_beside_its_parent(deploy: DeployProject) -> None:
    _promoted(deploy)
    live = tether.resolve("prod", project_dir=deploy.root)
    with live.record(request_id="before-fork", subject="c1") as rec:
        rec.output("a")
    log = open_log(deploy.root)

    def child() -> None:
        log.flush()  # nothing of the child's is queued yet, and no committer runs here: no wait
        with live.record(request_id="in-child", subject="c2") as rec:
            rec.output("b")
        log.close()

    assert _held_across_fork(log._lock, child) == 0
    with live.record(request_id="after-fork", subject="c3") as rec:
        rec.output("c")
    log.close()
    shown = [deploy.json("audit", "query", "--subject", subject)["records"] for subject in ("c1", "c2", "c3")]
    assert [[record["request_id"] for record in records] for records in shown] == [["before-fork"], ["in-child"], ["after-fork"]]
    deploy.run("audit", "verify", "--full")


@pytest.mark.postgres
def test_a_forked_child_never_closes_the_parents_postgresql_session(
    deploy: DeployProject, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url(postgres_server.create_database("tether_fork"))
    team = DeployProject(tmp_path / "team")
    team.write("prompts/system.md", "You are helpful.\n")
    team.run("init", "--db", url, "--name", "bot")
    team.run("add", "prompt", "system", "prompts/system.md")
    version = _promoted(team)
    assert tether.resolve("prod", project_dir=team.root, refresh_seconds=0).version_id == version
    engine = _source(team.root).project.meta._engine

    def backend() -> int:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    session = backend()

    def child() -> None:
        assert tether.resolve("prod", project_dir=team.root, refresh_seconds=0).version_id == version
        assert backend() != session  # a connection of its own
        runtime.clear_cache()

    assert _in_child(child) == 0
    assert backend() == session  # the parent's session survived the child (no reconnect)
