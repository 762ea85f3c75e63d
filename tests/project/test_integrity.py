"""Corruption, crashes and garbage: fsck names problems, checkout refuses them, gc keeps what versions need."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tether.components import FileEntry, Snapshot
from tether.errors import UsageError
from tether.ids import canonical_bytes, digest_bytes
from tether.meta import VersionRecord
from tether.project.core import Project
from tether.project.manifest import Manifest


def _object_path(root: Path, digest: str) -> Path:
    return root / ".tether" / "objects" / digest[:2] / digest[2:]


def _prompt_digest(project_dir: ProjectDir, version: str) -> str:
    shown = json.loads(project_dir.run("show", version, "--json").stdout)
    return shown["snapshots"]["system"]["files"][0]["digest"]


def test_fsck_passes_on_a_healthy_store(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    report = json.loads(prompt_project.run("fsck", "--json").stdout)
    assert report["ok"] and report["versions"] == 1 and report["objects"] >= 3


def test_corrupted_object_is_named_by_fsck_and_refused_by_checkout(prompt_project: ProjectDir, tmp_path: Path) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    digest = _prompt_digest(prompt_project, version)
    path = _object_path(prompt_project.root, digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"You are evil.\n")
    result = prompt_project.run("fsck", code=1)
    assert digest in result.stderr and "prompts/system.md" in result.stderr
    out = tmp_path / "out"
    result = prompt_project.run("checkout", version, "--dir", str(out), code=1)
    assert "corrupted" in result.stderr and "prompts/system.md" in result.stderr
    assert not (out / "prompts/system.md").exists()


def test_missing_object_is_named(prompt_project: ProjectDir) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    digest = _prompt_digest(prompt_project, version)
    _object_path(prompt_project.root, digest).unlink()
    result = prompt_project.run("fsck", code=1)
    assert f"object {digest}: missing" in result.stderr


def test_fsck_names_how_many_versions_need_a_bad_object(prompt_project: ProjectDir) -> None:
    versions = []
    for step in range(5):
        prompt_project.write("config/generation.yaml", f"temperature: 0.{step}\n")
        versions.append(prompt_project.run("commit", "-m", f"step {step}").stdout.strip())
    digest = _prompt_digest(prompt_project, versions[0])
    _object_path(prompt_project.root, digest).unlink()
    text = prompt_project.run("fsck", code=1).stderr
    line = next(line for line in text.splitlines() if digest in line)
    shown = ", ".join(version[:12] for version in versions[:3])
    assert line == (
        f"error: object {digest}: missing (needed by 5 versions: {shown} and 2 more "
        "(component system file prompts/system.md))"
    )
    report = json.loads(prompt_project.run("fsck", "--json", code=1).stdout)
    (problem,) = report["object_problems"]
    assert problem["object"] == digest and problem["problem"] == "missing" and problem["part_of"] == []
    assert problem["needed_by"] == [f"version {version[:12]} component system file prompts/system.md" for version in versions]


def test_corrupted_manifest_is_named_and_refused(prompt_project: ProjectDir) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    import sqlite3

    db = sqlite3.connect(prompt_project.root / ".tether" / "meta.db")
    (body,) = db.execute("select manifest from versions where version_id = ?", (version,)).fetchone()
    tampered = bytes(body).replace(b'"message":"first"', b'"message":"forged"')
    db.execute("update versions set manifest = ? where version_id = ?", (tampered, version))
    db.commit()
    db.close()
    result = prompt_project.run("fsck", code=1)
    assert version[:12] in result.stderr and "does not hash" in result.stderr
    assert "does not hash" in prompt_project.run("show", version, code=1).stderr


def test_checkout_refuses_stored_paths_that_escape(prompt_project: ProjectDir, tmp_path: Path) -> None:
    """A forged (but internally consistent) snapshot with a ``../`` path is never written."""
    prompt_project.run("commit", "-m", "first")
    with Project.open(prompt_project.root) as project:
        digest = project.store.put_bytes(b"pwned\n")
        forged = Snapshot(kind="files", spec={"paths": ["x"]}, files=(FileEntry("../escaped.txt", digest, 6),))
        manifest = Manifest(
            components={"evil": forged.digest}, kinds={"evil": "files"}, parents=(), message="forged",
            author="x", time="2026-01-01T00:00:00Z", tier="lite", project="demo",
        )
        body = manifest.to_bytes()
        project.meta.put_version(
            VersionRecord(digest_bytes(body), manifest.content_digest, manifest.time, body),
            [], {forged.digest: canonical_bytes(forged.to_json())},
        )
        forged_id = digest_bytes(body)
    out = tmp_path / "out"
    result = prompt_project.run("checkout", forged_id, "--dir", str(out), code=1)
    assert "../escaped.txt" in result.stderr
    assert not (tmp_path / "escaped.txt").exists()


def test_gc_removes_only_unreferenced_objects_after_grace(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    with Project.open(prompt_project.root) as project:
        orphan = project.store.put_bytes(b"left by a killed commit")
    report = json.loads(prompt_project.run("gc", "--json").stdout)
    assert report["removed"] == []  # inside the grace period
    report = json.loads(prompt_project.run("gc", "--now", "--dry-run", "--json").stdout)
    assert report["removed"] == [orphan] and _object_path(prompt_project.root, orphan).exists()
    report = json.loads(prompt_project.run("gc", "--now", "--json").stdout)
    assert report["removed"] == [orphan]
    assert not _object_path(prompt_project.root, orphan).exists()
    assert json.loads(prompt_project.run("fsck", "--json").stdout)["ok"]


def test_gc_reports_what_the_grace_period_keeps(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    with Project.open(prompt_project.root) as project:
        orphan = project.store.put_bytes(b"left by a killed commit")
        size = project.store.stored_size(orphan)
    for args in (["--dry-run"], []):
        report = json.loads(prompt_project.run("gc", *args, "--json").stdout)
        assert report["removed"] == [] and report["kept_young"] == 1 and report["kept_young_bytes"] == size
        assert report["grace_seconds"] == 3600
        text = prompt_project.run("gc", *args).stdout
        assert f"gc: kept 1 unreferenced object ({size} B): younger than the grace period (3600 seconds)" in text
    report = json.loads(prompt_project.run("gc", "--now", "--json").stdout)
    assert report["removed"] == [orphan] and report["kept_young"] == 0 and report["kept_young_bytes"] == 0
    assert "younger than the grace period" not in prompt_project.run("gc").stdout


def test_gc_refuses_a_negative_grace(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    with Project.open(prompt_project.root) as project:
        orphan = project.store.put_bytes(b"left by a killed commit")
    for value in ("-5", "nan"):
        result = prompt_project.run("gc", "--grace", value, code=2)
        assert result.stderr.count("\n") == 1 and "--grace" in result.stderr and result.stdout == ""
        result = prompt_project.run("gc", "--grace", value, "--json", code=2)
        assert json.loads(result.stdout)["exit_code"] == 2 and "--grace" in json.loads(result.stdout)["error"]
    assert _object_path(prompt_project.root, orphan).exists()
    with Project.open(prompt_project.root) as project, pytest.raises(UsageError, match="--grace"):
        project.gc(grace_seconds=-1)


_COMMIT_LOOP = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from tether.project.core import Project
    root = Path(sys.argv[1])
    project = Project.open(root)
    step = 0
    while True:
        step += 1
        data = os.urandom(1 << 20) * 4
        (root / "blob.bin").write_bytes(data)
        (root / "prompts" / "system.md").write_text(f"step {step}\\n")
        project.commit(f"step {step}")
        print(step, flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_commits_leaves_a_consistent_store(prompt_project: ProjectDir) -> None:
    prompt_project.write("blob.bin", b"0")
    prompt_project.run("add", "files", "blob", "blob.bin")
    first = prompt_project.run("commit", "-m", "before the crash").stdout.strip()
    env = {**os.environ, "TETHER_AUTHOR": "crash"}
    for delay in (0.35, 0.8, 1.3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _COMMIT_LOOP, str(prompt_project.root)], stdout=subprocess.PIPE, text=True, env=env
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report = json.loads(prompt_project.run("fsck", "--json").stdout)
        assert report["ok"], report["problems"]
        log = json.loads(prompt_project.run("log", "--json").stdout)
        assert log[-1]["version_id"] == first
    out = prompt_project.root.parent / "restored"
    prompt_project.run("checkout", first, "--dir", str(out))
    assert (out / "blob.bin").read_bytes() == b"0"
    prompt_project.run("gc", "--now")
    assert json.loads(prompt_project.run("fsck", "--json").stdout)["ok"]


def test_checkout_refuses_to_write_through_a_symlinked_folder(prompt_project: ProjectDir, tmp_path: Path) -> None:
    version = prompt_project.run("commit", "-m", "first").stdout.strip()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    prompts = prompt_project.root / "prompts"
    for child in prompts.iterdir():
        child.unlink()
    prompts.rmdir()
    os.symlink(outside, prompts)
    result = prompt_project.run("checkout", version, "--force", code=1)
    assert "prompts/system.md" in result.stderr and "symlink" in result.stderr
    assert list(outside.iterdir()) == []
