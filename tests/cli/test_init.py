"""``tether init``: re-running it on an existing project, and what each tier writes."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator

import pytest

import tether
from tests.conftest import ProjectDir


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    from tether.lifecycle import runtime

    runtime.clear_cache()
    yield
    runtime.clear_cache()


def _error_line(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tether: error: "), result.stderr
    return lines[0]


# ---- re-running init ---------------------------------------------------------------------------------
def test_init_refuses_another_tier_on_an_initialized_project(project_dir: ProjectDir) -> None:
    project_dir.run("init")
    before = project_dir.read("tether.toml")
    line = _error_line(project_dir.run("init", "--tier", "regulated", code=None))
    assert "already initialized at tier 'standard'" in line and "[project] tier" in line and "tether.toml" in line
    error = json.loads(project_dir.run("init", "--tier", "lite", "--json", code=2).stdout)
    assert error["exit_code"] == 2 and "already initialized at tier 'standard'" in error["error"]
    assert project_dir.read("tether.toml") == before


def test_init_refuses_another_name_on_an_initialized_project(project_dir: ProjectDir) -> None:
    project_dir.run("init", "--name", "demo")
    line = _error_line(project_dir.run("init", "--name", "other", code=None))
    assert "'demo'" in line and "[project] name" in line


def test_init_rerun_with_no_options_or_the_same_ones_still_works(project_dir: ProjectDir) -> None:
    first = json.loads(project_dir.run("init", "--tier", "lite", "--name", "demo", "--json").stdout)
    assert json.loads(project_dir.run("init", "--json").stdout) == first
    assert json.loads(project_dir.run("init", "--tier", "lite", "--name", "demo", "--json").stdout) == first
    assert first["tier"] == "lite"


def test_init_on_a_cloned_project_file_keeps_its_tier(project_dir: ProjectDir) -> None:
    """A teammate's clone has tether.toml (with [storage]) but no .tether/: plain init sets it up."""
    project_dir.write(
        "tether.toml",
        '[project]\nname = "shared"\ntier = "lite"\n\n[storage]\nobjects = ".tether/objects"\n',
    )
    result = json.loads(project_dir.run("init", "--json").stdout)
    assert (result["tier"], result["project"]) == ("lite", "shared")
    assert (project_dir.root / ".tether" / "HEAD").exists()
    assert "tier 'lite'" in project_dir.run("init", "--tier", "standard", code=2).stderr


# ---- regulated: what the tier requires is written at init -----------------------------------------------
def test_init_regulated_writes_the_audit_settings_the_tier_requires(project_dir: ProjectDir) -> None:
    from tether.audit.config import resolve_settings
    from tether.project.projectfile import load_project_file

    project_dir.run("init", "--tier", "regulated", "--name", "bank-bot")
    text = project_dir.read("tether.toml")
    assert tomllib.loads(text)["audit"]["checkpoint_export_interval"] == "24h"
    assert "required in tier 'regulated'" in text  # the default is explained where it is written
    parsed = load_project_file(project_dir.root / "tether.toml")
    settings = resolve_settings(parsed.sections.get("audit"), parsed.tier, parsed.name)
    assert settings.checkpoint_export_interval == 86400
    standard = ProjectDir(project_dir.root.parent / "plain")
    standard.root.mkdir()
    standard.run("init")
    assert "audit" not in tomllib.loads(standard.read("tether.toml"))


def test_new_regulated_project_records_requests_after_promotion(
    project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_dir.write("prompts/system.md", "You are careful.\n")
    project_dir.run("init", "--tier", "regulated", "--name", "bank-bot")
    project_dir.run("add", "prompt", "system", "prompts/system.md")
    v1 = project_dir.run("commit", "-m", "v1").stdout.strip()
    monkeypatch.setenv("TETHER_AUTHOR", "Rita Reviewer <rita@example.com>")
    project_dir.run("approve", v1, "--for", "prod")
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")
    assert json.loads(project_dir.run("policy", "check", v1, "--reason", "launch", "--json").stdout)["ready"]
    project_dir.run("promote", v1, "--to", "prod", "--reason", "launch")

    live = tether.resolve("prod", project_dir=project_dir.root)
    with live.record(request_id="r-1", subject="42") as rec:
        rec.output("ok")
    from tether.audit import AuditLog
    from tether.audit.log import open_log

    open_log(project_dir.root).close()
    with AuditLog.open(project_dir.root) as log:
        assert log.query(request_id="r-1")[0].version_id == v1


def test_regulated_promotion_without_audit_settings_is_refused_before_production(project_dir: ProjectDir) -> None:
    """A hand-written regulated tether.toml without [audit] is caught by policy check and promote."""
    project_dir.write("prompts/system.md", "You are careful.\n")
    project_dir.run("init", "--name", "bank-bot")
    project_dir.write("tether.toml", project_dir.read("tether.toml").replace('tier = "standard"', 'tier = "regulated"'))
    project_dir.run("add", "prompt", "system", "prompts/system.md")
    v1 = project_dir.run("commit", "-m", "v1").stdout.strip()
    line = _error_line(project_dir.run("policy", "check", v1, "--reason", "launch", code=None))
    assert "audit.checkpoint_export_interval" in line and "required in tier 'regulated'" in line
    line = _error_line(project_dir.run("promote", v1, "--to", "prod", "--reason", "launch", code=None))
    assert "audit.checkpoint_export_interval" in line
    assert "no such alias" in project_dir.run("history", "prod", code=2).stderr


# ---- a password in the metadata URL ----------------------------------------------------------------
def test_init_refuses_a_metadata_url_with_a_password_without_showing_it(project_dir: ProjectDir) -> None:
    url = "postgresql+psycopg://alice:S3cretPW@db.example/tether"
    result = project_dir.run("init", "--db", url, code=None)
    line = _error_line(result)
    assert line == (
        "tether: error: --db: the URL contains a password, which tether.toml (versioned) would keep forever; "
        "use PGPASSWORD or ~/.pgpass"
    )
    error = json.loads(project_dir.run("init", "--db", url, "--json", code=2).stdout)
    assert error["exit_code"] == 2 and "S3cretPW" not in json.dumps(error)
    assert not (project_dir.root / "tether.toml").exists()


def test_a_project_file_with_a_password_in_its_metadata_url_warns_once(
    project_dir: ProjectDir, caplog: pytest.LogCaptureFixture
) -> None:
    from tether.project import projectfile

    path = project_dir.write(
        "tether.toml",
        '[project]\nname = "demo"\n\n[storage]\nmetadata = "postgresql+psycopg://alice:S3cretPW@db.example/tether"\n',
    )
    with caplog.at_level("WARNING", logger="tether"):
        for _ in range(2):
            loaded = projectfile.load_project_file(path)
    warnings = [rec.getMessage() for rec in caplog.records if rec.name == "tether"]
    assert len(warnings) == 1 and "storage.metadata: the URL contains a password" in warnings[0]
    assert "S3cretPW" not in warnings[0]
    assert loaded.metadata_url.endswith("@db.example/tether")  # still loaded: a warning, not a refusal


@pytest.mark.parametrize(
    ("url", "has"),
    [
        ("postgresql+psycopg://alice:pw@host/db", True),
        ("postgresql://alice:@host/db", False),
        ("postgresql+psycopg://alice@host/db", False),
        ("postgresql+psycopg://host/db?user=a@b", False),
        ("sqlite:///.tether/meta.db", False),
    ],
)
def test_url_has_password(url: str, has: bool) -> None:
    from tether.project.projectfile import url_has_password

    assert url_has_password(url) is has
