"""``tether init``: re-running it on an existing project, and what each tier writes."""

from __future__ import annotations

import json

from tests.conftest import ProjectDir


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
