"""The command-line contract: each command end to end, its --json form and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tether.ids import digest_bytes


def test_init_add_commit_prints_version_id(prompt_project: ProjectDir) -> None:
    text = prompt_project.read("tether.toml")
    assert "[components.system]" in text and 'kind = "prompt"' in text
    result = prompt_project.run("commit", "-m", "first")
    version_id = result.stdout.strip()
    assert len(version_id) == 64 and int(version_id, 16) >= 0


def test_init_is_idempotent_and_json(project_dir: ProjectDir) -> None:
    first = json.loads(project_dir.run("init", "--json").stdout)
    second = json.loads(project_dir.run("init", "--json").stdout)
    assert first == second
    assert (project_dir.root / ".tether" / "HEAD").read_text() == "ref: main\n"


def test_init_rejects_unknown_tier(project_dir: ProjectDir) -> None:
    result = project_dir.run("init", "--tier", "gold", code=2)
    assert "--tier" in result.stderr
    assert not (project_dir.root / "tether.toml").exists()


def test_a_first_commit_without_components_exits_1_unless_allow_empty(project_dir: ProjectDir) -> None:
    """It recorded an empty first version (after an `add` that was refused, say)."""
    project_dir.run("init", "--tier", "lite")
    result = project_dir.run("commit", "-m", "first", code=1)
    assert "nothing to commit: no component is declared yet" in result.stderr
    assert project_dir.run("log", "--json", code=None).stdout.count('"version_id"') == 0
    project_dir.run("commit", "-m", "first", "--allow-empty")


def test_commit_with_nothing_changed_exits_1_unless_allow_empty(prompt_project: ProjectDir) -> None:
    first = prompt_project.run("commit", "-m", "first").stdout.strip()
    result = prompt_project.run("commit", "-m", "again", code=1)
    assert "nothing to commit" in result.stderr
    assert prompt_project.run("log", "--json").stdout.count('"version_id"') == 1
    second = prompt_project.run("commit", "-m", "again", "--allow-empty").stdout.strip()
    assert second != first
    shown = json.loads(prompt_project.run("show", second, "--json").stdout)
    assert shown["parents"] == [first]


def test_single_component_change_changes_only_that_snapshot(prompt_project: ProjectDir) -> None:
    first = json.loads(prompt_project.run("commit", "-m", "first", "--json").stdout)
    prompt_project.write("config/generation.yaml", "temperature: 0.7\nmax_tokens: 256\n")
    second = json.loads(prompt_project.run("commit", "-m", "hotter", "--json").stdout)
    assert second["changed"] == ["generation"]
    a = json.loads(prompt_project.run("show", first["version_id"], "--json").stdout)
    b = json.loads(prompt_project.run("show", second["version_id"], "--json").stdout)
    assert a["components"]["system"] == b["components"]["system"]
    assert a["components"]["generation"] != b["components"]["generation"]
    assert a["content_digest"] != b["content_digest"]


def test_content_digest_is_independent_of_path_user_and_time(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    digests, ids = [], []
    for index, name in enumerate(["one/deep/folder", "two"]):
        project = make_project(name)
        monkeypatch.setenv("TETHER_AUTHOR", f"user{index}")
        project.write("prompts/system.md", "Same prompt.\n")
        project.run("init", "--name", f"name{index}")
        project.run("add", "prompt", "system", "prompts/system.md")
        result = json.loads(project.run("commit", "-m", f"message {index}", "--json").stdout)
        digests.append(result["content_digest"])
        ids.append(result["version_id"])
    assert digests[0] == digests[1]
    assert ids[0] != ids[1]


def test_version_id_is_the_digest_of_the_manifest(prompt_project: ProjectDir) -> None:
    from tether.project.core import Project

    version_id = prompt_project.run("commit", "-m", "first").stdout.strip()
    with Project.open(prompt_project.root) as project:
        record = project.meta.get_version(version_id)
        assert record is not None
        assert digest_bytes(record.manifest) == version_id
        manifest = json.loads(record.manifest)
        assert set(manifest) >= {"content_digest", "components", "parents", "message", "author", "time"}


def test_status_reports_each_kind_of_drift(prompt_project: ProjectDir) -> None:
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert {item["state"] for item in status["components"]} == {"added"}
    prompt_project.run("commit", "-m", "first")
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["clean"] is True
    prompt_project.run("status", "--exit-code")

    prompt_project.write("prompts/system.md", "Changed.\n")
    (prompt_project.root / "config/generation.yaml").unlink()
    prompt_project.write("notes.txt", "n\n")
    prompt_project.run("add", "files", "notes", "notes.txt")
    status = json.loads(prompt_project.run("status", "--json").stdout)
    states = {item["name"]: item for item in status["components"]}
    assert states["system"]["state"] == "modified"
    assert states["system"]["files"] == [{"path": "prompts/system.md", "change": "content"}]
    assert states["generation"]["state"] == "missing"
    assert "config/generation.yaml" in states["generation"]["error"]
    assert states["notes"]["state"] == "added"
    prompt_project.run("status", "--exit-code", code=1)
    human = prompt_project.run("status").stdout
    assert "modified" in human and "missing" in human and "system" in human


def test_status_says_invalid_when_the_files_exist_but_are_rejected(project_dir: ProjectDir, tmp_path: Path) -> None:
    """"missing" is for declared paths that are gone; files that are there but rejected are "invalid"."""
    import numpy as np
    from safetensors.numpy import save_file

    project_dir.write("tools/search.json", json.dumps({"name": "search", "parameters": {"type": "object"}}))
    project_dir.write("evals/cases.jsonl", '{"id": "a", "input": "x"}\n')
    project_dir.write("notes.txt", "notes\n")
    project_dir.write("gone.txt", "soon gone\n")
    (project_dir.root / "models").mkdir()
    save_file({"w": np.zeros((4, 4), np.float32)}, str(project_dir.root / "models" / "model.safetensors"))
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "tools", "tools", "tools/search.json")
    project_dir.run("add", "evalset", "evals", "evals/cases.jsonl")
    project_dir.run("add", "files", "notes", "notes.txt")
    project_dir.run("add", "files", "gone", "gone.txt")
    project_dir.run("add", "model", "encoder", "models/")
    project_dir.run("commit", "-m", "first")

    weights = project_dir.root / "models" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    project_dir.write("tools/search.json", '{"name": "search", ')
    project_dir.write("evals/cases.jsonl", '{"id": "a", "input": "x"}\n{"id": "b", \n')
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\n")
    (project_dir.root / "notes.txt").unlink()
    (project_dir.root / "notes.txt").symlink_to(outside)
    (project_dir.root / "gone.txt").unlink()

    status = json.loads(project_dir.run("status", "--json").stdout)
    states = {item["name"]: item for item in status["components"]}
    assert {name: item["state"] for name, item in states.items()} == {
        "tools": "invalid", "evals": "invalid", "notes": "invalid", "gone": "missing", "encoder": "invalid",
    }
    assert "models/model.safetensors" in states["encoder"]["error"]
    assert "tools/search.json" in states["tools"]["error"]
    assert "line 2" in states["evals"]["error"]
    assert "outside the project" in states["notes"]["error"]
    assert "gone.txt" in states["gone"]["error"] and "does not exist" in states["gone"]["error"]
    assert status["settings_changed"] is False
    human = project_dir.run("status").stdout
    assert "invalid   tools (tools)" in human and "missing   gone (files)" in human
    project_dir.run("status", "--exit-code", code=1)


def test_status_of_a_new_component_with_invalid_content_is_invalid(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("evals/cases.jsonl", '{"id": "a"}\n')
    prompt_project.run("add", "evalset", "evals", "evals/cases.jsonl")
    prompt_project.write("evals/cases.jsonl", '{"id": "a"\n')
    status = json.loads(prompt_project.run("status", "--json").stdout)
    states = {item["name"]: item["state"] for item in status["components"]}
    assert states == {"system": "clean", "generation": "clean", "evals": "invalid"}
    assert status["settings_changed"] is False  # the declaration is the drift, not a settings edit


def test_status_reports_removed_component(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    text = prompt_project.read("tether.toml")
    start = text.index("[components.generation]")
    prompt_project.write("tether.toml", text[:start])
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert {item["name"]: item["state"] for item in status["components"]}["generation"] == "removed"


def test_a_settings_only_edit_of_tether_toml_is_drift_and_commits(prompt_project: ProjectDir) -> None:
    """[policy], [audit]... are recorded with the version's tether.toml: an edit there is neither
    "clean" nor "nothing to commit", and checkout protects it until it is committed."""
    first = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.run("status")  # certifies the clean tree for the quick path
    prompt_project.write("tether.toml", prompt_project.read("tether.toml") + "\n[policy]\nrollback_window = 3\n")
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["clean"] is False and status["settings_changed"] is True
    assert "tether.toml (project settings outside the components)" in prompt_project.run("status").stdout
    prompt_project.run("status", "--exit-code", code=1)
    assert "local changes would be lost" in prompt_project.run("checkout", first, code=1).stderr
    committed = prompt_project.run("commit", "-m", "policy: a shorter rollback window")
    assert "changed: tether.toml" in committed.stderr + committed.stdout
    second = committed.stdout.strip().splitlines()[-1]
    assert json.loads(prompt_project.run("show", second, "--json").stdout)["content_digest"] == (
        json.loads(prompt_project.run("show", first, "--json").stdout)["content_digest"]  # behavior: unchanged
    )
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"] is True
    prompt_project.run("checkout", first)
    assert "rollback_window" not in prompt_project.read("tether.toml")
    prompt_project.run("checkout", "main")
    assert "rollback_window = 3" in prompt_project.read("tether.toml")


def test_a_settings_edit_beside_a_component_edit_is_still_shown(prompt_project: ProjectDir) -> None:
    """A [policy] edit made together with a new component is drift of its own; a declaration edit
    of a component whose file is gone is not a settings edit."""
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("notes.md", "notes\n")
    prompt_project.run("add", "prompt", "notes", "notes.md")
    prompt_project.write("tether.toml", prompt_project.read("tether.toml") + "\n[policy]\nrollback_window = 3\n")
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["settings_changed"] is True
    prompt_project.run("commit", "-m", "notes and policy")
    prompt_project.write("tether.toml", prompt_project.read("tether.toml").replace("notes.md", "gone.md"))
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert {item["name"]: item["state"] for item in status["components"]}["notes"] == "missing"
    assert status["settings_changed"] is False


def test_diff_shows_a_settings_edit_of_tether_toml(prompt_project: ProjectDir) -> None:
    """status and commit see a [policy] edit; diff names it too, key by key."""
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.write("tether.toml", prompt_project.read("tether.toml") + "\n[policy]\nrollback_window = 3\n")
    diff = json.loads(prompt_project.run("diff", "HEAD", "--json").stdout)
    assert diff["settings"]["status"] == "changed"
    assert [(d["key"], d["change"], d["new"]) for d in diff["settings"]["details"]] == [
        ("policy.rollback_window", "added", 3)
    ]
    assert "+ policy.rollback_window: 3" in prompt_project.run("diff", "HEAD").stdout
    v2 = prompt_project.run("commit", "-m", "policy").stdout.strip()
    assert "policy.rollback_window" in prompt_project.run("diff", v1, v2).stdout
    assert json.loads(prompt_project.run("diff", v1, v1, "--json").stdout)["settings"] is None
    prompt_project.write("tether.toml", "# a comment\n" + prompt_project.read("tether.toml"))
    assert "formatting only" in json.loads(prompt_project.run("diff", "HEAD", "--json").stdout)["settings"]["summary"]


def test_add_in_a_subfolder_takes_sources_relative_to_it(prompt_project: ProjectDir) -> None:
    """Like `git add`: run in prompts/, `tether add prompt greet greet.md` means prompts/greet.md."""
    prompt_project.write("prompts/greet.md", "Hello {{ name }}\n")
    sub = ProjectDir(prompt_project.root / "prompts")
    sub.run("add", "prompt", "greet", "greet.md")
    sub.run("add", "files", "all", "./*.md", "../config")
    components = tomllib.loads(prompt_project.read("tether.toml"))["components"]
    assert components["greet"]["path"] == "prompts/greet.md"
    assert components["all"]["paths"] == ["prompts/*.md", "config"]
    assert "prompts/greet.md" in sub.run("status").stdout


def test_deleting_a_branch_names_the_version_it_leaves_behind(prompt_project: ProjectDir) -> None:
    """Like a detached checkout: deleting the only name of a version prints its ID (gc would remove it)."""
    prompt_project.run("commit", "-m", "first")
    prompt_project.run("branch", "merged")
    prompt_project.run("branch", "exp")
    prompt_project.run("checkout", "exp")
    prompt_project.write("prompts/system.md", "Experiment.\n")
    exp = prompt_project.run("commit", "-m", "experiment").stdout.strip()
    prompt_project.run("checkout", "main")
    quiet = prompt_project.run("branch", "-d", "merged")
    assert "warning" not in quiet.stderr
    deleted = json.loads(prompt_project.run("branch", "-d", "exp", "--json").stdout)
    assert deleted == {"deleted": "exp", "version_id": exp, "left_behind": exp}
    prompt_project.run("branch", "exp", exp)
    result = prompt_project.run("branch", "-d", "exp")
    assert f"Deleted branch exp (was {exp[:12]})" in result.stdout
    assert f"left version {exp} behind" in result.stderr


def test_log_show_and_diff(prompt_project: ProjectDir) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.write("prompts/system.md", "You are helpful to {{ customer }} in {{ locale }}.\n")
    v2 = prompt_project.run("commit", "-m", "second").stdout.strip()
    log = json.loads(prompt_project.run("log", "--json").stdout)
    assert [entry["version_id"] for entry in log] == [v2, v1]
    assert "HEAD -> main" in log[0]["refs"]
    graph = prompt_project.run("log", "--graph").stdout
    assert graph.index(v2[:12]) < graph.index(v1[:12]) and "*" in graph
    diff = json.loads(prompt_project.run("diff", v1, v2, "--json").stdout)
    changed = {item["name"]: item for item in diff["components"] if item["status"] != "unchanged"}
    assert set(changed) == {"system"}
    assert any("locale" in line for line in changed["system"]["lines"])
    human = prompt_project.run("diff", v1[:8], "HEAD").stdout
    assert "system" in human and "+You are helpful to {{ customer }} in {{ locale }}." in human
    shown = prompt_project.run("show", "HEAD~1").stdout
    assert v1 in shown and "components" in shown


def test_diff_against_working_tree(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    prompt_project.write("config/generation.yaml", "temperature: 0.9\nmax_tokens: 256\n")
    diff = json.loads(prompt_project.run("diff", "HEAD", "--json").stdout)
    assert diff["b"] == "working tree"
    changed = [item for item in diff["components"] if item["status"] == "changed"]
    assert [item["name"] for item in changed] == ["generation"]
    assert any("temperature" in line for line in changed[0]["lines"])


def test_unknown_and_short_references_exit_2(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    assert "no branch, version or alias" in prompt_project.run("show", "nope", code=2).stderr
    assert "at least 6" in prompt_project.run("show", "abc", code=2).stderr
    assert "ancestors" in prompt_project.run("show", "HEAD~5", code=2).stderr
    error = json.loads(prompt_project.run("show", "nope", "--json", code=2).stdout)
    assert error["exit_code"] == 2


def test_checkout_dir_is_byte_identical_and_refuses_non_empty(prompt_project: ProjectDir, tmp_path: Path) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.write("prompts/system.md", "Other.\n")
    prompt_project.run("commit", "-m", "second")
    out = tmp_path / "restored"
    prompt_project.run("checkout", v1[:10], "--dir", str(out))
    assert (out / "prompts/system.md").read_text() == "You are helpful to {{ customer }}.\n"
    assert (out / "config/generation.yaml").read_bytes() == b"temperature: 0.2\nmax_tokens: 256\n"
    assert (out / "tether.toml").exists()
    assert "not an empty folder" in prompt_project.run("checkout", v1, "--dir", str(out), code=2).stderr


def test_checkout_working_tree_moves_head_and_guards_drift(prompt_project: ProjectDir) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.write("prompts/system.md", "Second.\n")
    v2 = prompt_project.run("commit", "-m", "second").stdout.strip()
    prompt_project.run("checkout", v1)
    assert prompt_project.read("prompts/system.md") == "You are helpful to {{ customer }}.\n"
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert (status["head"], status["branch"], status["clean"]) == (v1, None, True)
    prompt_project.write("prompts/system.md", "Local edit.\n")
    assert "--force" in prompt_project.run("checkout", "main", code=1).stderr
    assert prompt_project.read("prompts/system.md") == "Local edit.\n"
    prompt_project.run("checkout", "main", "--force")
    assert prompt_project.read("prompts/system.md") == "Second.\n"
    status = json.loads(prompt_project.run("status", "--json").stdout)
    assert status["branch"] == "main" and status["head"] == v2 and status["clean"]


def test_branch_commit_and_compose(prompt_project: ProjectDir) -> None:
    base = prompt_project.run("commit", "-m", "base").stdout.strip()
    prompt_project.write("prompts/system.md", "Experimental prompt.\n")
    experiment = json.loads(prompt_project.run("commit", "-m", "try", "--branch", "exp/prompt", "--json").stdout)
    assert experiment["branch"] == "exp/prompt"
    branches = json.loads(prompt_project.run("branch", "--json").stdout)
    assert branches["current"] == "exp/prompt"
    assert branches["branches"] == {"main": base, "exp/prompt": experiment["version_id"]}

    prompt_project.run("checkout", "main")
    assert prompt_project.read("prompts/system.md") == "You are helpful to {{ customer }}.\n"
    prompt_project.write("config/generation.yaml", "temperature: 0.5\nmax_tokens: 256\n")
    main_v2 = prompt_project.run("commit", "-m", "config on main").stdout.strip()

    composed = json.loads(
        prompt_project.run("compose", "main", "--take", "system=exp/prompt", "-m", "combine", "--json").stdout
    )
    assert composed["parents"] == [main_v2, experiment["version_id"]]
    assert composed["changed"] == ["system"]
    assert prompt_project.read("prompts/system.md") == "Experimental prompt.\n"
    assert json.loads(prompt_project.run("status", "--json").stdout)["clean"]
    graph = prompt_project.run("log", "--graph").stdout
    assert experiment["version_id"][:12] in graph and base[:12] in graph
    assert "has no component" in prompt_project.run("compose", "main", "--take", "nope=main", "-m", "x", code=2).stderr
    assert "NAME=REF" in prompt_project.run("compose", "main", "--take", "system", "-m", "x", code=2).stderr


def test_branch_create_delete(prompt_project: ProjectDir) -> None:
    v1 = prompt_project.run("commit", "-m", "first").stdout.strip()
    prompt_project.run("branch", "release", "HEAD")
    assert "already exists" in prompt_project.run("branch", "release", code=1).stderr
    assert "branch name" in prompt_project.run("branch", "bad..name", code=2).stderr
    assert json.loads(prompt_project.run("show", "release", "--json").stdout)["version_id"] == v1
    prompt_project.run("branch", "-d", "release")
    assert "checked out" in prompt_project.run("branch", "-d", "main", code=1).stderr


def test_add_errors(prompt_project: ProjectDir) -> None:
    before = prompt_project.read("tether.toml")
    assert "unknown kind" in prompt_project.run("add", "weights", "x", "a.bin", code=2).stderr
    assert "does not exist" in prompt_project.run("add", "prompt", "other", "missing.md", code=2).stderr
    assert "already exists" in prompt_project.run("add", "prompt", "system", "prompts/system.md", code=2).stderr
    assert "key=value" in prompt_project.run("add", "model", "llm", "--set", "provider", code=2).stderr
    assert prompt_project.read("tether.toml") == before


def test_add_keeps_comments(project_dir: ProjectDir) -> None:
    project_dir.run("init")
    project_dir.write("tether.toml", project_dir.read("tether.toml") + "# our notes\n")
    project_dir.write("p.md", "x\n")
    project_dir.run("add", "prompt", "p", "p.md")
    assert "# our notes" in project_dir.read("tether.toml")


def test_floating_model_warns_in_standard_and_refuses_in_regulated(make_project) -> None:  # type: ignore[no-untyped-def]
    standard = make_project("standard")
    standard.run("init")
    result = standard.run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o")
    assert "warning" in result.stderr and "gpt-4o" in result.stderr
    result = standard.run("commit", "-m", "floating")
    assert "warning" in result.stderr

    regulated = make_project("regulated")
    regulated.run("init", "--tier", "regulated")
    before = regulated.read("tether.toml")
    result = regulated.run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o", code=1)
    assert "regulated" in result.stderr
    assert regulated.read("tether.toml") == before
    regulated.run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o-2024-08-06")
    unknown = regulated.run("add", "model", "local", "--set", "provider=acme", "--set", "id=m1")
    assert "cannot tell" in unknown.stderr


def test_a_latest_model_from_an_unruled_provider_floats(make_project) -> None:  # type: ignore[no-untyped-def]
    for provider, model_id in [("mistral", "mistral-large-latest"), ("acme", "foo:latest")]:
        lite = make_project(f"lite-{provider}")
        lite.run("init", "--tier", "lite")
        result = lite.run("add", "model", "llm", "--set", f"provider={provider}", "--set", f"id={model_id}")
        assert "warning" in result.stderr and model_id in result.stderr and "cannot tell" not in result.stderr
        regulated = make_project(f"regulated-{provider}")
        regulated.run("init", "--tier", "regulated")
        before = regulated.read("tether.toml")
        result = regulated.run("add", "model", "llm", "--set", f"provider={provider}", "--set", f"id={model_id}", code=1)
        assert "regulated" in result.stderr and model_id in result.stderr
        assert regulated.read("tether.toml") == before


def test_bad_project_file_is_named(prompt_project: ProjectDir) -> None:
    text = prompt_project.read("tether.toml")
    prompt_project.write("tether.toml", text + "\n[components.extra]\nkind = \"prompt\"\npath = \"prompts/system.md\"\ncolour = 1\n")
    assert "components.extra.colour" in prompt_project.run("status", code=2).stderr
    prompt_project.write("tether.toml", text + "\n[surprise]\n")
    assert "surprise" in prompt_project.run("commit", "-m", "x", code=2).stderr
    prompt_project.write("tether.toml", text + "\n[components.x\n")
    assert "invalid TOML" in prompt_project.run("status", code=2).stderr
    prompt_project.write("tether.toml", text.replace('kind = "config"', 'kind = "conf"'))
    assert "unknown kind" in prompt_project.run("status", code=2).stderr


def test_config_that_does_not_parse_is_named(prompt_project: ProjectDir) -> None:
    prompt_project.write("config/generation.yaml", "temperature: [0.2\n")
    result = prompt_project.run("commit", "-m", "x", code=2)
    assert "config/generation.yaml" in result.stderr


def test_paths_escaping_the_project_are_refused(prompt_project: ProjectDir, tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("secret\n")
    assert "leaves the project" in prompt_project.run("add", "prompt", "a", "../outside.md", code=2).stderr
    assert "absolute" in prompt_project.run("add", "prompt", "b", str(outside), code=2).stderr
    os.symlink(outside, prompt_project.root / "link.md")
    assert "symlink" in prompt_project.run("add", "prompt", "c", "link.md", code=2).stderr


def test_not_a_project(tmp_path: Path) -> None:
    from tests.conftest import ProjectDir

    result = ProjectDir(tmp_path).run("status", code=2)
    assert "not a tether project" in result.stderr


def test_help_and_version_import_no_heavy_libraries() -> None:
    code = (
        "import sys, tether.cli.main as m\n"
        "heavy = [n for n in ('sqlalchemy', 'alembic', 'yaml', 'blake3', 'tether.project.core') if n in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    version = subprocess.run([sys.executable, "-m", "tether.cli.main", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("tether ")


def test_fsck_and_gc_write_nothing_to_stderr_on_success_without_a_tty(project_dir: ProjectDir) -> None:
    """Enough objects for a progress bar on a terminal; piped, stderr stays empty."""
    for index in range(210):
        project_dir.write(f"data/f{index}.txt", f"{index}\n")
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "files", "data", "data")
    project_dir.run("commit", "-m", "many files")
    for args in (["fsck"], ["gc", "--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", "tether.cli.main", "-C", str(project_dir.root), *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", f"tether {' '.join(args)} wrote {result.stderr!r} to stderr"


def test_sizes_are_written_one_way_everywhere(project_dir: ProjectDir) -> None:
    """``show``, ``diff`` and ``gc`` write sizes as the model diff does: decimal units, ``kB``."""
    import re

    project_dir.write("assets/blob.bin", bytes(range(256)) * 6)  # 1,536 bytes, binary
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "files", "assets", "assets")
    project_dir.run("commit", "-m", "first")
    project_dir.write("assets/blob.bin", bytes(range(256)) * 8)  # 2,048 bytes
    shown = project_dir.run("show", "HEAD").stdout
    assert "1 file, 1.5 kB" in shown
    assert "binary, 1.5 kB -> 2.0 kB" in project_dir.run("diff", "HEAD").stdout
    from tether.project.core import Project

    with Project.open(project_dir.root) as project:
        project.store.put_bytes(b"x" * 1536)  # left by a killed commit
    gc = project_dir.run("gc", "--now", "--dry-run").stdout
    assert re.search(r"would remove 1 objects \(1\.5 kB\)", gc), gc
    source = Path(__file__).resolve().parents[2] / "src" / "tether"
    for path in source.rglob("*.py"):
        assert not re.search(r"[\"'(]KB[\"')]|\d KB\b", path.read_text(encoding="utf-8")), f"{path} writes sizes as KB"


def test_dash_c_takes_relative_paths_from_that_folder_like_git(project_dir: ProjectDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-C DIR`` runs as if started in DIR: a relative ``--dir`` lands there, not in the shell's folder."""
    project_dir.write("prompts/system.md", "You are helpful.\n")
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "prompt", "system", "prompts/system.md")
    project_dir.run("commit", "-m", "v1")
    elsewhere = tmp_path / "shell"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    project_dir.run("checkout", "HEAD", "--dir", "copy")
    assert (project_dir.root / "copy" / "prompts" / "system.md").read_text() == "You are helpful.\n"
    assert not (elsewhere / "copy").exists()
    assert os.getcwd() == str(elsewhere)  # the in-process caller's folder is given back
