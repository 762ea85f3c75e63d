"""The test-session services themselves: what happens where PostgreSQL cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import services


@pytest.fixture
def no_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the PostgreSQL binaries (the session's real server, if any, is left alone)."""
    monkeypatch.setattr(services, "_server", None)
    monkeypatch.setattr(services, "_unavailable", None)
    monkeypatch.setattr(services, "_broken", False)
    monkeypatch.setattr(services, "find_postgres_bin", lambda: None)


@pytest.mark.usefixtures("no_postgres")
def test_absent_binaries_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="initdb, pg_ctl"):
        services.postgres()
    with pytest.raises(pytest.skip.Exception, match="initdb, pg_ctl"):  # decided once, not retried
        services.postgres()


@pytest.mark.usefixtures("no_postgres")
def test_absent_binaries_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"cannot run under CI.*initdb, pg_ctl"):
        services.postgres()


@pytest.mark.usefixtures("no_postgres")
def test_binaries_that_do_not_start_a_server_fail_everywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    for tool in ("initdb", "pg_ctl"):
        script = tmp_path / tool
        script.write_text("#!/bin/sh\necho 'broken install' >&2\nexit 3\n")
        script.chmod(0o755)
    monkeypatch.setattr(services, "find_postgres_bin", lambda: tmp_path)
    before = set(Path(tempfile.gettempdir()).glob("tether-pg-*"))
    with pytest.raises(pytest.fail.Exception, match="did not start: initdb exited"):
        services.postgres()
    with pytest.raises(pytest.fail.Exception, match="did not start"):  # a failure, not a skip, every time
        services.postgres()
    assert set(Path(tempfile.gettempdir()).glob("tether-pg-*")) == before  # its folder is removed


def _watchdog(session_pid: int, folder: Path, marker: Path) -> subprocess.Popen[bytes]:
    stop = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    return subprocess.Popen([sys.executable, "-c", services._WATCHDOG, str(session_pid), str(folder), *stop])


def test_watchdog_stops_the_server_of_a_killed_session(tmp_path: Path) -> None:
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    folder, marker = tmp_path / "cluster", tmp_path / "stopped"
    folder.mkdir()
    watchdog = _watchdog(session.pid, folder, marker)
    session.kill()  # the session dies without stopping its server
    session.wait()
    assert watchdog.wait(timeout=20) == 0
    assert marker.exists() and not folder.exists()


def test_watchdog_leaves_after_a_normal_stop(tmp_path: Path) -> None:
    folder, marker = tmp_path / "cluster", tmp_path / "stopped"
    folder.mkdir()
    watchdog = _watchdog(os.getpid(), folder, marker)
    folder.rmdir()  # what PostgresServer.stop does last
    assert watchdog.wait(timeout=20) == 0
    assert not marker.exists()
