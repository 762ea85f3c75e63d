"""Throwaway servers for the test session: a private PostgreSQL cluster in a temporary folder.

Loaded as a pytest plugin by ``tests/conftest.py``. The server starts on first use, so a run that
deselects the PostgreSQL tests (``-m "not postgres"``) never starts it, and it is stopped and its
folder removed when the session finishes, whatever the tests did; at interpreter exit, should the
session end some other way; and by a small watchdog process, should the session be killed. It
listens on 127.0.0.1 only, on a free port, with its Unix socket inside its own folder, so it never
meets another PostgreSQL on the machine.

When the PostgreSQL binaries are absent the tests that need them are skipped with the reason, and
under CI (``CI=true``) they fail instead: CI must prove the PostgreSQL backend, not skip it.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    import psycopg

#: The cluster's superuser (trust authentication on loopback).
SUPERUSER = "tether"
#: A role that must give a password (scram-sha-256), for the authentication-failure tests.
PASSWORD_ROLE = "tether_password"
PASSWORD = "correct horse battery staple"
#: The system user that runs the server when the tests run as root (initdb and postgres refuse root).
SERVER_USER = "postgres"
START_TIMEOUT_SECONDS = 30
#: Run beside the test session: once the session's process is gone without stopping the server
#: (killed by a timeout, say), stop the server and remove its folder. Exits as soon as the folder
#: is gone, i.e. after a normal stop. Arguments: session pid, folder, then the stop command.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
pid, folder, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
while alive() and os.path.isdir(folder):
    time.sleep(0.5)
if os.path.isdir(folder):
    subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    shutil.rmtree(folder, ignore_errors=True)
"""
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",  # a throwaway cluster: durability buys nothing here
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "16MB",
    "log_min_messages": "warning",
}


class ServiceUnavailable(Exception):
    """The service cannot be had on this machine (not a test failure outside CI)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest under /usr/lib/postgresql."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def major(folder: Path) -> int:
        name = folder.parent.name
        return int(name) if name.isdigit() else -1

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One private PostgreSQL cluster: ``initdb`` into a temporary folder, ``pg_ctl start``/``stop``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        self._watchdog: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.folder, ignore_errors=True)
                raise ServiceUnavailable(
                    f"running as root needs a '{SERVER_USER}' system user to run PostgreSQL (initdb refuses root)"
                ) from None
            runuser = shutil.which("runuser")
            if runuser is None:
                shutil.rmtree(self.folder, ignore_errors=True)
                raise ServiceUnavailable("running as root needs `runuser` to start PostgreSQL as another user")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_user = [runuser, "-u", SERVER_USER, "--"]

    def _command(self, tool: str, *args: str) -> list[str]:
        return [*self._as_user, str(self.bin_dir / tool), *args]

    def _run(self, tool: str, *args: str) -> None:
        command = self._command(tool, *args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise RuntimeError(f"{tool} exited {done.returncode}: {output}{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
            "--auth=trust", "--no-sync", "--no-instructions",
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
            "local  all  all  trust\n"
            f"host  all  {PASSWORD_ROLE}  127.0.0.1/32  scram-sha-256\n"
            "host  all  all  127.0.0.1/32  trust\n"
        )
        settings = {**_SETTINGS, "unix_socket_directories": f"'{self.folder}'"}
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = _free_port()
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\n".join(f"{key} = {value}" for key, value in {**settings, "port": self.port}.items()))
                conf.write("\n")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", str(START_TIMEOUT_SECONDS), "start")  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2 or "could not bind" not in self._log_tail():
                    raise
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.folder),
             *self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        with self.admin() as connection:
            connection.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection to the maintenance database, as the superuser."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True, connect_timeout=10
        )

    def url(self, database: str, user: str = SUPERUSER) -> str:
        """The SQLAlchemy URL tether is given (``tether init --db ...``)."""
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "tether", owner: str = SUPERUSER) -> str:
        """A new, empty database (one per test keeps tests apart); returns its name."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
            raise ValueError(f"database prefix {prefix!r}: lowercase letters, digits and _ only")
        name = f"{prefix}_{next(self._names)}"
        with self.admin() as connection:
            connection.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def stop(self) -> None:
        """Stop the server at once (nothing in it is worth a clean shutdown) and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._watchdog is not None:  # it sees the folder gone and exits
                try:
                    self._watchdog.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._watchdog.kill()
                    self._watchdog.wait()

    def _kill_postmaster(self) -> None:
        """The fallback when pg_ctl cannot stop it: the postmaster this cluster started, by its pid."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


_server: PostgresServer | None = None
_unavailable: str | None = None  # why no server can be had (decided once per session)
_broken = False  # the binaries are there but the server did not start: a failure everywhere


def _unavailable_outcome(reason: str) -> NoReturn:
    if _broken:
        pytest.fail(reason, pytrace=False)
    if in_ci():
        pytest.fail(f"PostgreSQL tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def postgres() -> PostgresServer:
    """The session's PostgreSQL server, started on first use; skips (fails under CI) without one."""
    global _server, _unavailable, _broken
    if _server is not None:
        return _server
    if _unavailable is not None:
        _unavailable_outcome(_unavailable)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable = "psycopg is not installed (pip install -e '.[test]')"
        _unavailable_outcome(_unavailable)
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        _unavailable = "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin"
        _unavailable_outcome(_unavailable)
    try:
        server = PostgresServer(bin_dir)
    except ServiceUnavailable as exc:
        _unavailable = str(exc)
        _unavailable_outcome(_unavailable)
    atexit.register(server.stop)
    try:
        server.start()
    except BaseException as exc:
        server.stop()
        atexit.unregister(server.stop)
        if not isinstance(exc, Exception):
            raise
        _unavailable, _broken = f"PostgreSQL from {bin_dir} did not start: {exc}", True
        _unavailable_outcome(_unavailable)
    _server = server
    return server


def stop_postgres() -> None:
    global _server
    if _server is not None:
        server, _server = _server, None
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The running PostgreSQL server (tests using it should carry ``@pytest.mark.postgres``)."""
    return postgres()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_postgres()
