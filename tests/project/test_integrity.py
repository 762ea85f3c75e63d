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
