"""Team mode: a project whose metadata lives in PostgreSQL, driven through the command line.

Two working copies share one PostgreSQL database and one object-store folder, as a team would
(the object store stays local here; tether.toml names both). Every command runs in-process
against the session's throwaway server (``tests/services.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tests.services import PASSWORD, PASSWORD_ROLE, PostgresServer

PROMPT_V1 = "You are helpful to {{ customer }}.\n"
PROMPT_V2 = "You are friendly and helpful to {{ customer }} in {{ language }}.\n"
CONFIG = "temperature: 0.2\nmax_tokens: 256\n"


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.url(postgres_server.create_database("tether_project"))


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tether: error: ")
    return lines[0]


def _tables_in(server: PostgresServer, url: str) -> dict[str, int]:
    """Row counts straight from PostgreSQL: proof the metadata is there, not in a local file."""
    import psycopg

    database = url.rsplit("/", 1)[1]
    with psycopg.connect(host="127.0.0.1", port=server.port, user="tether", dbname=database) as connection:
        return {
            table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("versions", "snapshots", "branches")
        }


@pytest.mark.postgres
def test_project_on_postgres_end_to_end(
    make_project: Callable[[str], ProjectDir], postgres_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    objects = tmp_path / "shared-objects"
    alice = make_project("alice")
    alice.write("prompts/system.md", PROMPT_V1)
    alice.write("config/generation.yaml", CONFIG)
    alice.run("init", "--db", pg_url, "--store", str(objects))
    assert f'metadata = "{pg_url}"' in alice.read("tether.toml")
    assert not (alice.root / ".tether" / "meta.db").exists()  # no SQLite database on the side
    alice.run("add", "prompt", "system", "prompts/system.md")
    alice.run("add", "config", "generation", "config/generation.yaml")

    v1 = json.loads(alice.run("commit", "-m", "first", "--json").stdout)["version_id"]
    alice.write("prompts/system.md", PROMPT_V2)
    second = json.loads(alice.run("commit", "-m", "friendlier", "--json").stdout)
    v2 = second["version_id"]
    assert second["parents"] == [v1] and second["changed"] == ["system"]
    assert _tables_in(postgres_server, pg_url) == {"versions": 2, "snapshots": 4, "branches": 1}

    assert [entry["version_id"] for entry in json.loads(alice.run("log", "--json").stdout)] == [v2, v1]
    assert v1[:12] in alice.run("log").stdout
    diff = json.loads(alice.run("diff", v1[:8], "HEAD", "--json").stdout)
    assert {item["name"]: item["status"] for item in diff["components"]} == {
        "generation": "unchanged",
        "system": "changed",
    }
    assert "friendly" in alice.run("diff", "HEAD~1", "HEAD").stdout

    out = tmp_path / "v1"
    alice.run("checkout", "HEAD~1", "--dir", str(out))
    assert (out / "prompts" / "system.md").read_text() == PROMPT_V1
    assert (out / "config" / "generation.yaml").read_text() == CONFIG
    fsck = json.loads(alice.run("fsck", "--json").stdout)
    assert fsck["ok"] and fsck["versions"] == 2

    # A teammate's copy of the repository (tether.toml included): `tether init` with no flags
    # joins the same database and store, and sees the same history and a clean tree.
    bob = make_project("bob")
    bob.write("tether.toml", alice.read("tether.toml"))
    bob.write("prompts/system.md", PROMPT_V2)
    bob.write("config/generation.yaml", CONFIG)
    bob.run("init")
    assert [entry["version_id"] for entry in json.loads(bob.run("log", "--json").stdout)] == [v2, v1]
    assert json.loads(bob.run("status", "--json").stdout)["clean"]
    bob.write("config/generation.yaml", CONFIG.replace("0.2", "0.7"))
    v3 = bob.run("commit", "-m", "hotter").stdout.strip()
    assert json.loads(alice.run("log", "-n", "1", "--json").stdout)[0]["version_id"] == v3
    alice.run("checkout", "main", "--dir", str(tmp_path / "v3"))
    assert (tmp_path / "v3" / "config" / "generation.yaml").read_text() == CONFIG.replace("0.2", "0.7")
    assert json.loads(alice.run("fsck", "--json").stdout)["versions"] == 3


@pytest.mark.postgres
def test_init_on_a_missing_database_leaves_nothing_pinned(
    project_dir: ProjectDir, postgres_server: PostgresServer, pg_url: str
) -> None:
    missing = postgres_server.url("no_such_database")
    error = _one_line_error(project_dir.run("init", "--db", missing, code=2).stderr)
    assert 'database "no_such_database" does not exist' in error
    assert not (project_dir.root / "tether.toml").exists()
    assert not (project_dir.root / ".tether").exists()  # nothing makes the folder look initialized
    project_dir.run("init", "--db", pg_url)  # the corrected URL is accepted on the next try
    assert pg_url in project_dir.read("tether.toml")


@pytest.mark.postgres
def test_init_against_a_port_nobody_listens_on(project_dir: ProjectDir) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago, and is closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://tether@127.0.0.1:{port}/tether"
    error = _one_line_error(project_dir.run("init", "--db", url, code=2).stderr)
    assert f"port {port}" in error and "refused" in error


@pytest.mark.postgres
def test_password_role_needs_its_password(
    project_dir: ProjectDir,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = postgres_server.create_database("tether_password_db", owner=PASSWORD_ROLE)
    url = postgres_server.url(database, user=PASSWORD_ROLE)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(project_dir.root / "no-pgpass"))
    error = _one_line_error(project_dir.run("init", "--db", url, code=2).stderr)
    assert "password" in error

    wrong = url.replace(f"{PASSWORD_ROLE}@", f"{PASSWORD_ROLE}:not-the-password@")
    error = _one_line_error(project_dir.run("init", "--db", wrong, code=2).stderr)
    assert "--db: the URL contains a password" in error and "PGPASSWORD" in error  # never written to tether.toml
    assert "not-the-password" not in error
    assert not (project_dir.root / "tether.toml").exists()
    # A tether.toml written by hand with one: warned about, and the URL is shown with its password hidden.
    project_dir.write("tether.toml", f'[project]\nname = "demo"\n\n[storage]\nmetadata = "{wrong}"\n')
    with caplog.at_level("WARNING", logger="tether"):
        error = _one_line_error(project_dir.run("init", code=2).stderr)
    assert "password authentication failed" in error and "not-the-password" not in error
    assert any("storage.metadata: the URL contains a password" in rec.getMessage() for rec in caplog.records)
    assert not any("not-the-password" in rec.getMessage() for rec in caplog.records)
    (project_dir.root / "tether.toml").unlink()

    # libpq's own environment supplies the password, so tether.toml never has to hold it.
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    project_dir.write("prompts/system.md", PROMPT_V1)
    project_dir.run("init", "--db", url)
    project_dir.run("add", "prompt", "system", "prompts/system.md")
    project_dir.run("commit", "-m", "first")
    assert PASSWORD not in project_dir.read("tether.toml")


@pytest.mark.postgres
def test_database_without_tether_schema(
    make_project: Callable[[str], ProjectDir], postgres_server: PostgresServer, pg_url: str
) -> None:
    project = make_project("project")
    project.run("init", "--db", pg_url)
    # A bare postgresql:// URL means psycopg 3 too.
    empty = postgres_server.url(postgres_server.create_database("tether_empty")).replace("+psycopg", "")
    project.write("tether.toml", project.read("tether.toml").replace(pg_url, empty))
    error = _one_line_error(project.run("log", code=2).stderr)
    assert "no tether metadata" in error and "tether init" in error
    project.run("init")  # creates the schema there
    assert json.loads(project.run("fsck", "--json").stdout) == {
        "versions": 0, "snapshots": 0, "objects": 0, "pruned": 0, "problems": [], "object_problems": [], "ok": True
    }


def test_other_postgresql_drivers_are_refused(project_dir: ProjectDir) -> None:
    error = _one_line_error(
        project_dir.run("init", "--db", "postgresql+asyncpg://tether@127.0.0.1:5432/tether", code=2).stderr
    )
    assert "asyncpg" in error and "postgresql+psycopg://" in error
    assert not (project_dir.root / "tether.toml").exists()


def test_missing_driver_names_the_extra(project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    error = _one_line_error(
        project_dir.run("init", "--db", "postgresql+psycopg://tether@127.0.0.1:5432/tether", code=2).stderr
    )
    assert "psycopg" in error and "tether[postgres]" in error
