"""A project with two committed versions to attribute audit records to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ProjectDir


@dataclass
class AuditProject:
    dir: ProjectDir
    v1: str
    v2: str

    @property
    def root(self) -> Path:
        return self.dir.root

    def configure(self, audit_toml: str, tier: str | None = None) -> None:
        """Append an [audit] table (and optionally change the tier) in tether.toml."""
        text = self.dir.read("tether.toml")
        if tier:
            text = text.replace('tier = "standard"', f'tier = "{tier}"')
        self.dir.write("tether.toml", text + "\n[audit]\n" + audit_toml + "\n")


@pytest.fixture
def audit_project(project_dir: ProjectDir) -> AuditProject:
    from tether.project.core import Project

    project_dir.write("prompts/system.md", "You are helpful.\n")
    with Project.init(project_dir.root, name="support-bot") as project:
        project.add("prompt", "system", ["prompts/system.md"])
        project.add("model", "llm", [], {"provider": "openai", "id": "gpt-4o-2024-08-06"})
        v1 = project.commit("v1").version_id
        project_dir.write("prompts/system.md", "You are helpful and brief.\n")
        v2 = project.commit("v2").version_id
    return AuditProject(project_dir, v1, v2)
