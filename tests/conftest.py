"""Shared fixtures: a project folder with files, and the CLI run in-process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app

#: Session services (a throwaway PostgreSQL server, started on first use).
pytest_plugins = ("tests.services",)


class ProjectDir:
    """A temporary project folder with helpers to write files and run tether in it."""

    def __init__(self, root: Path):
        self.root = root
        self.runner = CliRunner()

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")

    def run(self, *args: str, code: int | None = 0):  # type: ignore[no-untyped-def]
        result = self.runner.invoke(app, ["-C", str(self.root), *args], catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (
                f"tether {' '.join(args)} exited {result.exit_code}, expected {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result


@pytest.fixture(autouse=True)
def _stable_author(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_AUTHOR", "Test Author <test@example.com>")


@pytest.fixture
def project_dir(tmp_path: Path) -> ProjectDir:
    root = tmp_path / "proj"
    root.mkdir()
    return ProjectDir(root)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[[str], ProjectDir]:
    def make(name: str) -> ProjectDir:
        root = tmp_path / name
        root.mkdir(parents=True)
        return ProjectDir(root)

    return make


@pytest.fixture
def prompt_project(project_dir: ProjectDir) -> ProjectDir:
    """An initialized project with a prompt and a config declared (not committed)."""
    project_dir.write("prompts/system.md", "You are helpful to {{ customer }}.\n")
    project_dir.write("config/generation.yaml", "temperature: 0.2\nmax_tokens: 256\n")
    project_dir.run("init", "--name", "demo")
    project_dir.run("add", "prompt", "system", "prompts/system.md")
    project_dir.run("add", "config", "generation", "config/generation.yaml")
    return project_dir


os.environ.setdefault("COLUMNS", "200")
