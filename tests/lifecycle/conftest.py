"""A deployable project: prompt, config, tools and a hosted model, with versions to promote."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tether.lifecycle import runtime

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_kb",
        "description": "Search the knowledge base.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


class DeployProject(ProjectDir):
    """A project with helpers to commit versions and read the alias state."""

    def commit(self, message: str) -> str:
        return self.run("commit", "-m", message).stdout.strip()

    def prompt_version(self, text: str, message: str | None = None) -> str:
        self.write("prompts/system.md", text)
        return self.commit(message or text.strip())

    def add_policy(self, body: str) -> None:
        with open(self.root / "tether.toml", "a", encoding="utf-8") as handle:
            handle.write("\n[policy]\n" + body + "\n")

    def json(self, *args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
        return json.loads(self.run(*args, "--json", code=code).stdout)  # type: ignore[no-any-return]

    def history(self, alias: str = "prod") -> dict:  # type: ignore[type-arg]
        return self.json("history", alias)

    def rehearse_and_promote(self, candidate: str, alias: str = "prod", *extra: str) -> dict:  # type: ignore[type-arg]
        self.run("rollback", alias, "--rehearse", "--from", candidate)
        return self.json("promote", candidate, "--to", alias, *extra)


def build_deploy_project(root: Path, tier: str) -> None:
    """Init a project and declare its components (what every test starts from)."""
    project = DeployProject(root)
    project.write("prompts/system.md", "You are helpful.\n")
    project.write("config/generation.yaml", "temperature: 0.2\nmax_tokens: 256\n")
    project.write("tools/search_kb.json", json.dumps(SEARCH_TOOL, indent=2) + "\n")
    project.run("init", "--tier", tier, "--name", "bot")
    project.run("add", "prompt", "system", "prompts/system.md")
    project.run("add", "config", "generation", "config/generation.yaml")
    project.run("add", "tools", "tools", "tools/")
    project.run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o-2024-08-06")


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """One declared project per tier, built once per session and copied by each test."""
    built: dict[str, Path] = {}

    def template(tier: str) -> Path:
        if tier not in built:
            root = tmp_path_factory.mktemp(f"template-{tier}") / "bot"
            root.mkdir()
            build_deploy_project(root, tier)
            built[tier] = root
        return built[tier]

    return template


@pytest.fixture
def make_deploy(tmp_path: Path, _templates: Callable[[str], Path]) -> Callable[[str], DeployProject]:
    def make(tier: str) -> DeployProject:
        root = tmp_path / f"bot-{tier}"
        shutil.copytree(_templates(tier), root, symlinks=True)
        return DeployProject(root)

    return make


@pytest.fixture
def deploy(make_deploy: Callable[[str], DeployProject]) -> DeployProject:
    """A standard-tier project, nothing committed yet."""
    return make_deploy("standard")


@pytest.fixture(autouse=True)
def _fresh_runtime_cache() -> Iterator[None]:
    """``tether.resolve`` caches per process; every test starts and ends without it."""
    runtime.clear_cache()
    yield
    runtime.clear_cache()
