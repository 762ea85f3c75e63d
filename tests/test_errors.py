"""Every failure tether raises is a ``tether.TetherError``, with the exit code the command line gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tests.conftest import ProjectDir
from tether.cli.output import exit_code_for
from tether.meta import BranchConflictError, MetadataError, open_metadata
from tether.meta.lifecycle import AliasConflictError


def test_metadata_errors_are_tether_errors_with_their_exit_codes() -> None:
    assert issubclass(MetadataError, tether.TetherError)
    assert exit_code_for(MetadataError("database unreachable")) == 2
    assert exit_code_for(AliasConflictError("alias 'prod' moved concurrently")) == 2
    assert exit_code_for(BranchConflictError("branch 'main' moved")) == 1  # a lost race, as before


def test_an_unusable_database_url_is_caught_as_a_tether_error(tmp_path: Path) -> None:
    with pytest.raises(tether.TetherError, match="unsupported database URL"):
        open_metadata("mysql://tether@localhost/tether", tmp_path)


def test_a_missing_database_is_still_one_line_and_exit_2(project_dir: ProjectDir) -> None:
    project_dir.run("init")
    (project_dir.root / ".tether" / "meta.db").unlink()
    result = project_dir.run("log", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tether: error: no metadata database at ") and "tether init" in lines[0]


def test_component_and_store_errors_are_tether_errors_with_their_exit_codes(project_dir: ProjectDir) -> None:
    from tether.components import ComponentError
    from tether.store.base import ObjectCorruptError, ObjectMissingError, StoreError

    project_dir.run("init")
    with tether.Project.open(project_dir.root) as project, pytest.raises(tether.UsageError, match="unknown kind 'widget'"):
        project.add("widget", "x", [])  # an application catching tether's errors around Project.add
    assert issubclass(ComponentError, tether.UsageError) and issubclass(StoreError, tether.TetherError)
    assert exit_code_for(ComponentError("bad")) == 2 and exit_code_for(StoreError("bad")) == 2
    assert exit_code_for(ObjectMissingError("gone")) == 1 and exit_code_for(ObjectCorruptError("changed")) == 1
