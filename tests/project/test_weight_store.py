"""The weight store end to end: tensor dedup and deltas through commit/checkout, the stat cache
and its quick path, gc against a concurrent commit, fsck of parts, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ProjectDir
from tether.cli.quick import try_quick
from tether.project.core import Project
from tether.project.statcache import RACY_NS
from tether.store.local import LocalObjectStore

MiB = 1024 * 1024


def _settle() -> None:
    """Files written this instant are never trusted to the stat cache (racily clean)."""
    time.sleep(RACY_NS / 1e9 + 0.03)


SHAPE = (512, 512)


def _weights(seed: int = 0, count: int = 8) -> dict[str, np.ndarray]:
    """About 4 MiB of F16 weights: large enough to be stored tensor by tensor."""
    rng = np.random.default_rng(seed)
    return {f"model.layers.{i}.weight": (rng.standard_normal(SHAPE) * 0.05).astype(np.float16) for i in range(count)}


def _save(path: Path, tensors: dict[str, np.ndarray], order: list[str] | None = None) -> Path:
    """Save like a training script: a new file renamed over the old one (new inode and mtime)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if order is None:
        save_file(tensors, str(tmp))
    else:  # the reference writer sorts tensors; write another order by hand
        header: dict[str, object] = {}
        offset = 0
        for name in order:
            header[name] = {"dtype": "F16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + tensors[name].nbytes]}
            offset += tensors[name].nbytes
        raw = json.dumps(header).encode()
        with open(tmp, "wb") as handle:
            handle.write(len(raw).to_bytes(8, "little") + raw)
            for name in order:
                handle.write(tensors[name].tobytes())
    os.replace(tmp, path)
    return path


def _store_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in (root / ".tether" / "objects").rglob("*") if path.is_file())


@pytest.fixture
def weights_project(project_dir: ProjectDir) -> ProjectDir:
    _save(project_dir.root / "models" / "model.safetensors", _weights())
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "model", "llm", "models/")
    return project_dir


def test_fine_tunes_store_only_what_changed_and_check_out_byte_identical(weights_project: ProjectDir, tmp_path: Path) -> None:
    root = weights_project.root
    model = root / "models" / "model.safetensors"
    base = weights_project.run("commit", "-m", "base").stdout.strip()
    base_bytes = model.read_bytes()
    after_base = _store_bytes(root)

    weights = _weights()
    partial = dict(weights, **{"model.layers.5.weight": np.ones(SHAPE, np.float16)})
    _save(model, partial)
    v_partial = weights_project.run("commit", "-m", "partial").stdout.strip()
    assert _store_bytes(root) - after_base <= 1.15 * partial["model.layers.5.weight"].nbytes

    _save(model, partial, order=sorted(partial, reverse=True))
    before = _store_bytes(root)
    reordered = weights_project.run("commit", "-m", "reordered").stdout.strip()
    assert _store_bytes(root) - before < 0.01 * len(base_bytes)

    rng = np.random.default_rng(5)
    full = {name: (value * (1 + 0.01 * rng.standard_normal(value.shape))).astype(np.float16) for name, value in weights.items()}
    _save(model, full)
    before = _store_bytes(root)
    weights_project.run("commit", "-m", "full fine-tune")
    assert _store_bytes(root) - before < 0.8 * len(base_bytes), "a full fine-tune is stored as deltas"

    for version, expected in ((base, base_bytes), (v_partial, None), (reordered, None)):
        out = tmp_path / version[:8]
        weights_project.run("checkout", version, "--dir", str(out))
        if expected is not None:
            assert (out / "models" / "model.safetensors").read_bytes() == expected
    assert json.loads(weights_project.run("fsck", "--json").stdout)["ok"]


def test_resharding_a_fine_tune_stores_nothing_new(weights_project: ProjectDir, tmp_path: Path) -> None:
    """Tensors stored as deltas are found by name in every file of the parent version, so moving
    them into differently named shards (a re-shard) reuses the deltas instead of storing them whole."""
    root = weights_project.root
    model = root / "models" / "model.safetensors"
    weights_project.run("commit", "-m", "base")
    rng = np.random.default_rng(7)
    tuned = {name: (value * (1 + 0.01 * rng.standard_normal(value.shape))).astype(np.float16) for name, value in _weights().items()}
    _save(model, tuned)
    weights_project.run("commit", "-m", "full fine-tune")
    tuned_bytes = model.read_bytes()

    model.unlink()
    names = sorted(tuned)
    _save(root / "models" / "model-00001-of-00002.safetensors", {name: tuned[name] for name in names[:4]})
    _save(root / "models" / "model-00002-of-00002.safetensors", {name: tuned[name] for name in names[4:]})
    before = _store_bytes(root)
    weights_project.run("commit", "-m", "re-shard")
    assert _store_bytes(root) - before < 0.01 * len(tuned_bytes)

    out = tmp_path / "tuned"
    weights_project.run("checkout", "HEAD~1", "--dir", str(out))
    assert (out / "models" / "model.safetensors").read_bytes() == tuned_bytes
    assert json.loads(weights_project.run("fsck", "--json").stdout)["ok"]


def test_deltas_can_be_turned_off(weights_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_DELTAS", "0")
    weights_project.run("commit", "-m", "base")
    model = weights_project.root / "models" / "model.safetensors"
    _save(model, {name: (value * 1.01).astype(np.float16) for name, value in _weights().items()})
    before = _store_bytes(weights_project.root)
    weights_project.run("commit", "-m", "full")
    assert _store_bytes(weights_project.root) - before >= model.stat().st_size - 4096


def test_lying_header_in_a_files_component_is_stored_in_chunks_with_a_warning(project_dir: ProjectDir, tmp_path: Path) -> None:
    data = (2**62).to_bytes(8, "little") + os.urandom(3 * MiB)
    project_dir.write("assets/odd.safetensors", data)
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "files", "assets", "assets/")
    result = project_dir.run("commit", "-m", "odd file")
    assert "assets/odd.safetensors" in result.stderr and "chunks" in result.stderr
    project_dir.run("checkout", "HEAD", "--dir", str(tmp_path / "out"))
    assert (tmp_path / "out" / "assets" / "odd.safetensors").read_bytes() == data
    # the same file as a model's weights is bad input the user must see
    project_dir.write("models/odd.safetensors", data)
    project_dir.run("add", "model", "llm", "models/", code=2)


def test_a_file_changing_while_committed_is_refused(weights_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import tether.store.local as local

    real = local._signature
    calls = {"n": 0}

    def moving(st: os.stat_result) -> tuple[int, int]:
        calls["n"] += 1
        size, mtime = real(st)
        return size, mtime + calls["n"]  # as if a writer touched the file during the read

    monkeypatch.setattr(local, "_signature", moving)
    result = weights_project.run("commit", "-m", "torn", code=1)
    assert "models/model.safetensors" in result.stderr and "changed while it was being stored" in result.stderr
    assert "no version yet" in weights_project.run("show", "HEAD", code=2).stderr


def test_a_file_changing_while_snapshotted_is_refused(weights_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read path (no lease): a write between the first and the last byte moves size and mtime."""
    import tether.ids.fileview as fileview

    monkeypatch.setattr(fileview, "MAP_MIN_BYTES", 1 << 62)  # an in-process writer would wait on our own lease
    real = fileview.FileBlocks.digest

    def digest_then_write(self: fileview.FileBlocks) -> str:
        digest = real(self)
        with open(weights_project.root / "models" / "model.safetensors", "ab") as handle:
            handle.write(b"\0" * 8)
        return digest

    monkeypatch.setattr(fileview.FileBlocks, "digest", digest_then_write)
    _save(weights_project.root / "models" / "model.safetensors", _weights())  # not in the stat cache
    result = weights_project.run("commit", "-m", "torn", code=1)
    assert "models/model.safetensors: changed while it was being read" in result.stderr


def test_status_verify_catches_what_a_lying_stat_cache_hides(prompt_project: ProjectDir) -> None:
    prompt_project.run("commit", "-m", "first")
    path = prompt_project.root / "prompts" / "system.md"
    _settle()
    prompt_project.run("status")  # caches the digest under the current signature
    cache_path = prompt_project.root / ".tether" / "cache" / "stat.json"
    old_values = json.loads(cache_path.read_text())["prompts/system.md"]["values"]
    old = path.stat()
    path.write_text("You are hostile to {{ customer }}.\n"[: old.st_size].ljust(old.st_size), encoding="utf-8")
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size, same mtime
    assert path.stat().st_size == old.st_size and path.stat().st_mtime_ns == old.st_mtime_ns
    # the signature also holds ctime and inode, so plain status is not fooled by mtime alone
    assert not json.loads(prompt_project.run("status", "--json").stdout)["clean"]
    # a cache that lies outright (a filesystem whose ctime does not move): only --verify sees it
    cache = json.loads(cache_path.read_text())
    new = path.stat()
    cache["prompts/system.md"] = {
        "sig": [new.st_size, new.st_mtime_ns, new.st_ino, new.st_ctime_ns, new.st_mode],
        "values": old_values,
    }
    cache_path.write_text(json.dumps(cache))
    lied = json.loads(prompt_project.run("status", "--json").stdout)
    assert lied["clean"], (lied, cache)
    verified = json.loads(prompt_project.run("status", "--verify", "--json").stdout)
    assert not verified["clean"]
    assert verified["components"][0]["files"] == [{"path": "prompts/system.md", "change": "content"}]


def test_a_permission_only_change_is_seen_and_committed(project_dir: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    """``chmod +x`` keeps the bytes: neither the clean-tree certificate (the quick path) nor the
    stat cache may call the tree clean, and commit records the new mode."""
    root = project_dir.root
    project_dir.run("init")
    project_dir.write("a/run.sh", "#!/bin/sh\necho hi\n")
    project_dir.run("add", "files", "a", "a/")
    project_dir.run("commit", "-m", "A")
    _settle()
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]  # records the certificate
    assert _quick(root, "status", capsys=capsys)[0] == 0  # certified clean
    (root / "a" / "run.sh").chmod(0o755)
    assert _quick(root, "status", capsys=capsys)[0] is None  # not provably clean: the full status decides
    assert _quick(root, "commit", "-m", "B", capsys=capsys)[0] is None
    status = json.loads(project_dir.run("status", "--json").stdout)
    assert not status["clean"]
    assert [(c["name"], c["state"]) for c in status["components"]] == [("a", "modified")]
    project_dir.run("commit", "-m", "B")
    assert "mode changed (now executable)" in project_dir.run("diff", "HEAD~1", "HEAD").stdout
    _settle()
    assert json.loads(project_dir.run("status", "--json").stdout)["clean"]
    assert _quick(root, "status", capsys=capsys)[0] == 0


def test_fsck_catches_a_same_size_same_mtime_object_change(weights_project: ProjectDir) -> None:
    weights_project.run("commit", "-m", "base")
    store = LocalObjectStore(weights_project.root / ".tether" / "objects")
    part = next(d for d in store.iter_digests() if store.stored_size(d) > 100_000)
    path = weights_project.root / ".tether" / "objects" / part[:2] / part[2:]
    old = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    result = weights_project.run("fsck", code=1)
    assert part in result.stderr and "models/model.safetensors" in result.stderr


def test_fsck_names_the_missing_part_of_a_file_stored_in_parts(weights_project: ProjectDir) -> None:
    weights_project.run("commit", "-m", "base")
    store = LocalObjectStore(weights_project.root / ".tether" / "objects")
    recipe = next(d for d in store.iter_digests() if store.recipe(d) is not None)
    part = next(p for p in store.recipe(recipe).parts if p.tensor == "model.layers.3.weight")  # type: ignore[union-attr]
    (weights_project.root / ".tether" / "objects" / part.digest[:2] / part.digest[2:]).unlink()
    text = weights_project.run("fsck", code=1).stderr
    assert "does not hash" not in text
    whole = next(line for line in text.splitlines() if line.startswith(f"error: object {recipe}"))
    assert whole.startswith(f"error: object {recipe}: its part {part.digest} (tensor model.layers.3.weight) is missing")
    assert "models/model.safetensors" in whole
    missing = next(line for line in text.splitlines() if line.startswith(f"error: object {part.digest}"))
    assert missing.startswith(f"error: object {part.digest}: missing (part of {recipe[:12]}; needed by version ")
    report = json.loads(weights_project.run("fsck", "--json", code=1).stdout)
    problems = {item["object"]: item for item in report["object_problems"]}
    assert problems[part.digest]["part_of"] == [recipe]
    assert problems[recipe]["problem"] == f"its part {part.digest} (tensor model.layers.3.weight) is missing"


def test_racily_clean_files_are_not_cached(prompt_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    prompt_project.write("prompts/system.md", "written just now\n")
    # However long the machine takes to get to the status, the file is as fresh as can be.
    monkeypatch.setattr("tether.project.statcache.RACY_NS", 3600 * 10**9)
    with Project.open(prompt_project.root) as project:
        project.status()
        assert project.cache.get("prompts/system.md", (prompt_project.root / "prompts/system.md").stat(), "digest") is None
    monkeypatch.undo()
    _settle()
    with Project.open(prompt_project.root) as project:
        project.status()
        assert project.cache.get("prompts/system.md", (prompt_project.root / "prompts/system.md").stat(), "digest")


# ---- the quick path -------------------------------------------------------------------------------------


def _quick(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int | None, str, str]:
    capsys.readouterr()
    code = try_quick(["-C", str(root), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quick_status_and_commit_match_the_full_commands(weights_project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    root = weights_project.root
    assert _quick(root, "status", capsys=capsys)[0] is None  # nothing committed, no certificate
    weights_project.run("commit", "-m", "base")
    _settle()
    full_text = weights_project.run("status").stdout
    full_json = weights_project.run("status", "--json").stdout
    code, out, _ = _quick(root, "status", capsys=capsys)
    assert (code, out) == (0, full_text)
    code, out, _ = _quick(root, "status", "--json", capsys=capsys)
    assert (code, json.loads(out)) == (0, json.loads(full_json))
    expected = weights_project.run("commit", "-m", "again", code=1).stderr
    code, _, err = _quick(root, "commit", "-m", "again", capsys=capsys)
    assert (code, err) == (1, expected)
    assert _quick(root, "commit", "-m", "again", "--allow-empty", capsys=capsys)[0] is None
    assert _quick(root, "status", "--verify", capsys=capsys)[0] is None


def test_quick_path_learns_identical_resaves_and_defers_on_real_changes(
    weights_project: ProjectDir, capsys: pytest.CaptureFixture[str]
) -> None:
    root = weights_project.root
    model = root / "models" / "model.safetensors"
    weights_project.run("commit", "-m", "base")
    _settle()
    weights_project.run("status")
    _save(model, _weights())  # byte-identical re-save: new inode and mtime
    _settle()
    assert _quick(root, "status", capsys=capsys)[0] == 0
    with Project.open(root) as project:  # the stat cache learned the new signature: no re-hash
        assert project.cache.get("models/model.safetensors", model.stat(), "safetensors") is not None
    _save(model, _weights(seed=1))
    _settle()
    assert _quick(root, "status", capsys=capsys)[0] is None
    assert not json.loads(weights_project.run("status", "--json").stdout)["clean"]
    _save(model, _weights())
    (root / "models" / "extra.safetensors").write_bytes(model.read_bytes())
    _settle()
    assert _quick(root, "status", capsys=capsys)[0] is None  # a new file in a tracked folder
    assert not json.loads(weights_project.run("status", "--json").stdout)["clean"]


def test_quick_status_imports_no_sqlalchemy(weights_project: ProjectDir) -> None:
    weights_project.run("commit", "-m", "base")
    _settle()
    weights_project.run("status")
    code = (
        "import sys\n"
        "from tether.cli.quick import try_quick\n"
        f"code = try_quick(['-C', {str(weights_project.root)!r}, 'status'])\n"
        "heavy = [n for n in ('sqlalchemy', 'alembic', 'tether.project.core', 'typer') if n in sys.modules]\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip() == "0 []"


# ---- checkout, gc, fsck ---------------------------------------------------------------------------------


def test_checkout_link_writes_read_only_files(weights_project: ProjectDir, tmp_path: Path) -> None:
    weights_project.write("prompts/system.md", "be brief\n")
    weights_project.run("add", "prompt", "system", "prompts/system.md")
    weights_project.run("commit", "-m", "base")
    out = tmp_path / "ro"
    weights_project.run("checkout", "HEAD", "--dir", str(out), "--link")
    for rel in ("prompts/system.md", "models/model.safetensors"):
        source, copy = weights_project.root / rel, out / rel
        assert copy.read_bytes() == source.read_bytes()
        assert not os.access(copy, os.W_OK) or os.geteuid() == 0
        assert copy.stat().st_mode & 0o222 == 0
    assert (out / "prompts/system.md").stat().st_nlink == 2  # a whole object: hard-linked
    assert "--link" in weights_project.run("checkout", "HEAD", "--link", code=2).stderr
    assert json.loads(weights_project.run("fsck", "--json").stdout)["ok"]


def test_gc_keeps_parts_of_kept_files_and_removes_orphans(weights_project: ProjectDir, tmp_path: Path) -> None:
    weights_project.run("commit", "-m", "base")
    root = weights_project.root
    orphan_weights = dict(_weights(), **{"model.layers.0.weight": np.full(SHAPE, 3, np.float16)})
    orphan = _save(tmp_path / "orphan.safetensors", orphan_weights)
    with Project.open(root) as project:
        orphan_digest, _ = project.store.put_file(orphan)
        orphan_parts = set(project.store.parts(orphan_digest))
    report = json.loads(weights_project.run("gc", "--now", "--json").stdout)
    removed = set(report["removed"])
    assert orphan_digest in removed
    assert removed - {orphan_digest} <= orphan_parts and len(removed) == 2  # the recipe and the changed tensor (the header is shared)
    assert json.loads(weights_project.run("fsck", "--json").stdout)["ok"]
    weights_project.run("checkout", "HEAD", "--dir", str(tmp_path / "out"))


_SLOW_COMMIT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tether.project.core import Project
    root = Path(sys.argv[1])
    project = Project.open(root)
    real = project.meta.put_version
    def slow(*args, **kwargs):
        (root / "stored").write_text("objects are stored, version not yet recorded")
        time.sleep(1.5)
        return real(*args, **kwargs)
    project.meta.put_version = slow
    print(project.commit("concurrent").version_id, flush=True)
    project.close()
    """
)


@pytest.mark.slow
def test_gc_never_runs_while_a_commit_is_in_flight(weights_project: ProjectDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tether.project.storage as storage

    weights_project.run("commit", "-m", "base")
    _save(weights_project.root / "models" / "model.safetensors", _weights(seed=9))
    _settle()
    env = {**os.environ, "TETHER_AUTHOR": "concurrent"}
    commit = subprocess.Popen([sys.executable, "-c", _SLOW_COMMIT, str(weights_project.root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (weights_project.root / "stored").exists():
            assert commit.poll() is None and time.monotonic() < deadline, "the commit did not get to its objects"
            time.sleep(0.02)
        monkeypatch.setattr(storage, "GC_WAIT_SECONDS", 0.2)
        refused = weights_project.run("gc", "--now", code=1)
        assert "a commit is in flight" in refused.stderr
        monkeypatch.setattr(storage, "GC_WAIT_SECONDS", 60)
        report = json.loads(weights_project.run("gc", "--now", "--json").stdout)  # waits for the commit
        version = commit.communicate(timeout=60)[0].strip()
    finally:
        if commit.poll() is None:
            commit.kill()
    assert commit.returncode == 0
    assert not any(digest in report["removed"] for digest in LocalObjectStore(weights_project.root / ".tether/objects").iter_digests())
    assert json.loads(weights_project.run("fsck", "--json").stdout)["ok"]
    out = tmp_path / "out"
    weights_project.run("checkout", version, "--dir", str(out))
    assert (out / "models" / "model.safetensors").read_bytes() == (weights_project.root / "models" / "model.safetensors").read_bytes()
