"""The command-line contract for bad usage: one line on stderr, exit 2, and the error as JSON under --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tether.cli.main import app


def _one_line_error(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    """The single ``tether: error: ...`` line of a failed command (and nothing boxed)."""
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tether: error: "), result.stderr
    assert "Usage:" not in result.stderr and "╭" not in result.stderr
    return lines[0]


# ---- Click usage errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["promote"], "ref"),
        (["promote", "HEAD"], "--to"),
        (["audit", "erase", "X"], "--reason"),
        (["nosuchcmd"], "nosuchcmd"),
        (["log", "-n", "abc"], "--max-count"),
        (["status", "--bogus"], "--bogus"),
        (["--bogus", "status"], "--bogus"),
        (["policy", "nope"], "nope"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(project_dir: ProjectDir, args: list[str], named: str) -> None:
    line = _one_line_error(project_dir.run(*args, code=None))
    assert named in line
    assert project_dir.run(*args, code=None).stdout == ""


@pytest.mark.parametrize("args", [["promote", "--json"], ["audit", "erase", "X", "--json"], ["nosuchcmd", "--json"],
                                  ["log", "-n", "abc", "--json"]])
def test_usage_errors_under_json_print_the_error_on_stdout(project_dir: ProjectDir, args: list[str]) -> None:
    result = project_dir.run(*args, code=None)
    line = _one_line_error(result)
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2
    assert line == f"tether: error: {error['error']}"


def test_usage_errors_name_the_subcommand(project_dir: ProjectDir) -> None:
    line = _one_line_error(project_dir.run("audit", "erase", "X", code=None))
    assert "audit erase" in line and "--help" in line
    # an option missing its value is raised before the subcommand's context exists
    for args, command in ((["log", "-n"], "log"), (["audit", "query", "--at"], "audit query"), (["eval", "run", "HEAD", "--seed"], "eval run")):
        line = _one_line_error(project_dir.run(*args, code=2))
        assert line.startswith(f"tether: error: {command}: option") and f"(see `tether {command} --help`)" in line, line


def test_help_still_shows_help(project_dir: ProjectDir) -> None:
    for args in (["--help"], ["promote", "--help"], ["audit", "erase", "-h"]):
        result = project_dir.run(*args)
        assert "Usage" in result.stdout
    # no command at all still shows the help (as before), not a one-line error
    result = project_dir.runner.invoke(app, [])
    assert "Usage" in result.stdout + result.stderr and "tether: error" not in result.stderr


def _command_paths() -> list[list[str]]:
    import typer.main

    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_help_shows_options_without_type_placeholders(project_dir: ProjectDir) -> None:
    """Flags take no value and show none; values show an uppercase metavar (TEXT, INTEGER, N...)."""
    paths = _command_paths()
    assert len(paths) > 30 and ["audit", "query"] in paths
    for path in paths:
        text = project_dir.run(*path, "--help").stdout
        assert "Usage" in text
        for placeholder in ("<bool>", "<str>", "<int>", "<float>", "<list"):
            assert placeholder not in text, f"tether {' '.join(path)} --help shows {placeholder}:\n{text}"
    rows = {line.split()[1]: line for line in project_dir.run("gc", "--help").stdout.splitlines() if line.startswith("│ --")}
    assert rows["--grace"].split()[2] == "SECONDS"
    for flag in ("--now", "--dry-run", "--json", "--help"):
        assert rows[flag].split()[2 if flag != "--help" else 3] in ("No", "Only", "Machine-readable", "Show"), rows[flag]
    commit = project_dir.run("commit", "--help").stdout
    assert any("--message" in line and " TEXT " in line for line in commit.splitlines())
    assert any("-n" in line and " N " in line for line in project_dir.run("log", "--help").stdout.splitlines())


def test_usage_error_through_the_console_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli.main", "-C", str(tmp_path), "promote", "--json"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert json.loads(result.stdout)["exit_code"] == 2
    assert result.stderr.startswith("tether: error: ") and len(result.stderr.splitlines()) == 1


# ---- small messages ----------------------------------------------------------------------------------
def test_missing_project_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = ProjectDir(missing).run("status", "--json", code=None)
    line = _one_line_error(result)
    assert "does not exist" in line and str(missing) in line and "tether init" not in line
    assert json.loads(result.stdout)["exit_code"] == 2
    assert "does not exist" in _one_line_error(ProjectDir(missing).run("history", "prod", code=None))
    from tether.errors import UsageError
    from tether.project.core import Project

    with pytest.raises(UsageError, match="the folder does not exist"):
        Project.open(missing)


@pytest.mark.parametrize("count", ["-1", "0"])
def test_log_count_must_be_positive(prompt_project: ProjectDir, count: str) -> None:
    prompt_project.run("commit", "-m", "first")
    assert "-n: must be a positive number" in _one_line_error(prompt_project.run("log", "-n", count, code=None))
    assert len(json.loads(prompt_project.run("log", "-n", "1", "--json").stdout)) == 1


def test_head_is_a_reserved_name(prompt_project: ProjectDir) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    line = _one_line_error(prompt_project.run("promote", v1, "--to", "HEAD", code=None))
    assert "HEAD is a reserved reference name" in line and "alias name" in line
    assert "HEAD is a reserved reference name" in _one_line_error(prompt_project.run("branch", "HEAD", code=None))


# ---- branch names that would shadow version IDs ---------------------------------------------------
@pytest.mark.parametrize("name", ["171bbb", "deadbeef", "0123456789abcdef", "ABCDEF12"])
def test_hex_branch_names_are_refused(prompt_project: ProjectDir, name: str) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    line = _one_line_error(prompt_project.run("branch", name, code=None))
    assert f"branch name '{name}'" in line and "version ID" in line
    assert "version ID" in _one_line_error(prompt_project.run("commit", "-m", "x", "--allow-empty", "--branch", name, code=None))
    assert "version ID" in _one_line_error(prompt_project.run("promote", v1, "--to", name, code=None))
    assert name not in json.loads(prompt_project.run("branch", "--json").stdout)["branches"]


def test_branch_shaped_like_a_prefix_no_longer_shadows_the_version(prompt_project: ProjectDir) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.write("prompts/system.md", "Second.\n")
    prompt_project.run("commit", "-m", "second")
    prompt_project.run("branch", v1[:6], code=2)
    assert json.loads(prompt_project.run("log", v1[:6], "--json").stdout)[0]["version_id"] == v1


@pytest.mark.parametrize("name", ["release", "abc12", "v1.2", "feature/171bbb", "171bbb-fix", "ABCDEFG", "cafe"])
def test_other_branch_names_still_work(prompt_project: ProjectDir, name: str) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.run("branch", name)
    assert json.loads(prompt_project.run("show", name, "--json").stdout)["version_id"] == v1


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("template", "--set template: expected key=value"),
        ("=x", "--set =x: expected key=value"),
    ],
)
def test_a_set_syntax_error_is_a_json_error_under_json(prompt_project: ProjectDir, pair: str, message: str) -> None:
    prompt_project.write("x.md", "x\n")
    assert _one_line_error(prompt_project.run("add", "prompt", "s", "x.md", "--set", pair, code=None)) == f"tether: error: {message}"
    result = prompt_project.run("add", "prompt", "s", "x.md", "--set", pair, "--json", code=2)
    assert json.loads(result.stdout) == {"error": message, "exit_code": 2}
    nested = prompt_project.run("add", "prompt", "s", "x.md", "--set", "a=1", "--set", "a.b=2", "--json", code=2)
    assert json.loads(nested.stdout) == {"error": "--set a.b=2: 'a' is already a value, not a table", "exit_code": 2}
    assert "name = \"s\"" not in prompt_project.read("tether.toml") and "[components.s]" not in prompt_project.read("tether.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[components."bad name"]\nkind = "prompt"\npath = "x.md"\n',
         "tether.toml: components.bad name: a component name uses letters, digits, '-' and '_'"),
        ('[components.s]\nkind = 5\npath = "x.md"\n',
         "tether.toml: components.s.kind: expected a string (one of prompt, config, tools, model, index, evalset, "
         "migration, files), got 5"),
    ],
)
def test_a_hand_edited_component_table_error_names_tether_toml(
    prompt_project: ProjectDir, table: str, message: str
) -> None:
    prompt_project.write("x.md", "x\n")
    prompt_project.write("tether.toml", prompt_project.read("tether.toml") + "\n" + table)
    assert _one_line_error(prompt_project.run("status", code=None)) == f"tether: error: {message}"


def test_help_keeps_bracketed_words(project_dir: ProjectDir) -> None:
    """A help text naming a tether.toml table (``[evals] runner``) shows it: rich markup must not eat it."""
    import re

    import typer

    root = typer.main.get_command(app)
    for path in _command_paths():
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
        tables = {table for text in texts for table in re.findall(r"\[[a-z_.]+\]", text)}
        shown = project_dir.run(*path, "--help").stdout
        for table in tables:
            assert table in shown, f"tether {' '.join(path)} --help lost {table}:\n{shown}"
