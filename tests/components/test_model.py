"""The model kind: declarations, snapshots of the three forms, pinning and tensor-level diffs."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from tether.components import model as model_module
from tether.components.base import ComponentError, Snapshot
from tether.components.model import ModelKind, human_bytes
from tether.components.registry import get_kind
from tether.ids import digest_file
from tether.project.statcache import RACY_NS, StatCache
from tether.project.worktree import WorkingTree

from .model_helpers import (
    DigestReader,
    copy_minilm,
    minilm_folder,
    raw_safetensors,
    snapshot_model,
    write_tensors,
)

KIND = ModelKind()
COMMIT = "c5ee24cb16019beea0893ab7796b1df96625c6b8"


def _diff(old: Snapshot | None, new: Snapshot | None, reader: DigestReader | None = None) -> Any:
    return KIND.diff("m", old, new, reader or DigestReader())


def _hosted(model_id: str, provider: str = "openai", **extra: Any) -> Snapshot:
    spec = KIND.validate("llm", {"provider": provider, "id": model_id, **extra})
    return KIND.snapshot("llm", spec, WorkingTree("."))


# ---- declarations --------------------------------------------------------------------------


def test_registry_serves_the_model_kind() -> None:
    assert isinstance(get_kind("model"), ModelKind)


@pytest.mark.parametrize(
    "table",
    [
        {"provider": "openai", "id": "gpt-4o-2024-08-06"},
        {"provider": "openai", "id": "gpt-4o-2024-08-06", "description": "main LLM", "retired": False},
        {"hub": "cross-encoder/ms-marco-MiniLM-L-6-v2"},
        {"hub": "org/x", "revision": COMMIT},
        {"path": "models/minilm/"},
        {"path": "models/minilm/", "retired": True},
    ],
)
def test_valid_declarations(table: dict[str, Any]) -> None:
    assert KIND.validate("m", dict(table)) == table


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "give exactly one of"),
        ({"description": "x"}, "give exactly one of"),
        ({"provider": "openai"}, "'provider' and 'id' go together \\(missing 'id'\\)"),
        ({"id": "gpt-4o"}, "missing 'provider'"),
        ({"revision": COMMIT}, "'revision' needs 'hub'"),
        ({"provider": "openai", "id": "gpt-4o", "path": "m/"}, "mixes the hosted and weights forms"),
        ({"hub": "org/x", "path": "m/"}, "mixes the hub and weights forms"),
        ({"provider": "openai", "id": "x", "hub": "org/x"}, "mixes the hosted and hub forms"),
        ({"path": "m/", "weights": "x"}, "components.m.weights: unknown key"),
        ({"provider": "openai", "id": 4}, "components.m.id: expected a string"),
        ({"provider": "", "id": "x"}, "components.m.provider: must not be empty"),
        ({"hub": "no-org"}, "components.m.hub: expected a repo id 'org/name'"),
        ({"hub": "a/b/c"}, "expected a repo id"),
        ({"path": "m/", "retired": "yes"}, "components.m.retired: expected true or false"),
        ({"path": ["a", "b"]}, "components.m.path: expected a string"),
    ],
)
def test_invalid_declarations(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message) as error:
        KIND.validate("m", table)
    assert str(error.value).startswith("tether.toml: components.m")


def test_spec_from_add() -> None:
    assert KIND.spec_from_add("enc", ["models/minilm/"], {}) == {"path": "models/minilm/"}
    hosted = KIND.spec_from_add("llm", [], {"provider": "openai", "id": "gpt-4o-2024-08-06"})
    assert KIND.validate("llm", hosted) == {"provider": "openai", "id": "gpt-4o-2024-08-06"}
    hub = KIND.spec_from_add("r", [], {"hub": "org/x", "revision": 1234567, "retired": "true"})
    assert hub == {"hub": "org/x", "revision": "1234567", "retired": True}
    with pytest.raises(ComponentError, match="one weights file or folder"):
        KIND.spec_from_add("enc", ["a", "b"], {})


# ---- hosted and hub ------------------------------------------------------------------------


def test_hosted_snapshot_has_no_files_and_describes_the_identity() -> None:
    snap = _hosted("gpt-4o-2024-08-06")
    assert snap.files == ()
    assert snap.meta == {"form": "hosted", "provider": "openai", "id": "gpt-4o-2024-08-06"}
    assert snap.digest == _hosted("gpt-4o-2024-08-06").digest
    assert snap.digest != _hosted("gpt-4o-2024-05-13").digest


def test_hosted_diff_names_the_id_change() -> None:
    diff = _diff(_hosted("gpt-4o-2024-05-13"), _hosted("gpt-4o-2024-08-06"))
    assert diff.status == "changed"
    assert diff.lines == ["id: gpt-4o-2024-05-13 -> gpt-4o-2024-08-06"]
    assert diff.summary == "id: gpt-4o-2024-05-13 -> gpt-4o-2024-08-06"
    assert diff.details == [{"change": "field", "field": "id", "old": "gpt-4o-2024-05-13", "new": "gpt-4o-2024-08-06"}]
    switched = _diff(_hosted("gpt-4o-2024-08-06"), _hosted("claude-sonnet-4-6", provider="anthropic"))
    assert switched.lines == ["provider: openai -> anthropic", "id: gpt-4o-2024-08-06 -> claude-sonnet-4-6"]
    retired = _diff(_hosted("gpt-4o-2024-08-06"), _hosted("gpt-4o-2024-08-06", retired=True))
    assert retired.lines == ["retired: (unset) -> true"]
    assert _diff(_hosted("x-1"), _hosted("x-1")).status == "unchanged"


def test_added_and_removed_models() -> None:
    added = _diff(None, _hosted("gpt-4o-2024-08-06"))
    assert added.status == "added"
    assert added.summary == "added: hosted openai gpt-4o-2024-08-06"
    removed = _diff(_hosted("gpt-4o-2024-08-06"), None)
    assert removed.status == "removed"
    assert removed.lines == ["provider: openai", "id: gpt-4o-2024-08-06"]


def test_hub_snapshot_and_diff() -> None:
    old = KIND.snapshot("r", KIND.validate("r", {"hub": "org/x", "revision": "main"}), WorkingTree("."))
    new = KIND.snapshot("r", KIND.validate("r", {"hub": "org/x", "revision": COMMIT}), WorkingTree("."))
    assert new.files == ()
    assert new.meta == {"form": "hub", "hub": "org/x", "revision": COMMIT}
    diff = _diff(old, new)
    assert diff.lines == [f"revision: main -> {COMMIT}"]
    moved = KIND.snapshot("r", KIND.validate("r", {"hub": "org/y", "revision": COMMIT}), WorkingTree("."))
    assert _diff(new, moved).lines == ["hub: org/x -> org/y"]


def test_switching_form_is_an_identity_change(tmp_path: Path) -> None:
    write_tensors(tmp_path / "w" / "model.safetensors", {"a": np.zeros(3, np.float32)})
    weights = snapshot_model(tmp_path, {"path": "w"})
    diff = _diff(_hosted("gpt-4o-2024-08-06"), weights)
    size = (tmp_path / "w" / "model.safetensors").stat().st_size
    assert diff.lines == [f"identity: hosted openai gpt-4o-2024-08-06 -> weights w (1 file, {size} B)"]
    assert diff.details[0]["change"] == "identity"


def test_check_pinning() -> None:
    assert KIND.check_pinning("llm", {"provider": "openai", "id": "gpt-4o-2024-08-06"}) == []
    (finding,) = KIND.check_pinning("llm", {"provider": "openai", "id": "gpt-4o"})
    assert finding.component == "llm"
    assert finding.level == "floating"
    assert finding.message.startswith("provider 'openai' model 'gpt-4o' is floating: ")
    (finding,) = KIND.check_pinning("llm", {"provider": "anthropic", "id": "claude-3-5-sonnet-latest"})
    assert finding.level == "floating"
    (unknown,) = KIND.check_pinning("llm", {"provider": "acme", "id": "big-1"})
    assert unknown.level == "unknown"
    assert unknown.message == "tether cannot tell whether provider 'acme' model 'big-1' is pinned"
    (hub,) = KIND.check_pinning("r", {"hub": "org/x", "revision": "main"})
    assert hub.message == "hub reference 'org/x' is floating: revision 'main' is a branch name, not a commit hash"
    (bare,) = KIND.check_pinning("r", {"hub": "org/x"})
    assert "no revision" in bare.message
    assert KIND.check_pinning("r", {"hub": "org/x", "revision": COMMIT}) == []
    assert KIND.check_pinning("w", {"path": "models/"}) == []


# ---- weights -------------------------------------------------------------------------------


def _pair(tmp_path: Path, old: dict[str, np.ndarray], new: dict[str, np.ndarray], **kw: Any) -> tuple[Any, Any, Any]:
    write_tensors(tmp_path / "a" / "w" / "model.safetensors", old, kw.get("old_meta"))
    write_tensors(tmp_path / "b" / "w" / "model.safetensors", new, kw.get("new_meta"))
    before = snapshot_model(tmp_path / "a", {"path": "w"})
    after = snapshot_model(tmp_path / "b", {"path": "w"})
    reader = DigestReader(seekable=kw.get("seekable", True))
    reader.register(tmp_path / "a", before).register(tmp_path / "b", after)
    return before, after, _diff(before, after, reader)


def test_weights_snapshot_meta(tmp_path: Path) -> None:
    write_tensors(tmp_path / "w" / "model.safetensors", {"a": np.arange(6, dtype=np.float32).reshape(2, 3)})
    (tmp_path / "w" / "config.json").write_text("{}")
    snap = snapshot_model(tmp_path, {"path": "w"})
    assert [entry.path for entry in snap.files] == ["w/config.json", "w/model.safetensors"]
    assert snap.meta["form"] == "weights"
    assert snap.meta["files"] == {"count": 2, "bytes": sum(entry.size for entry in snap.files)}
    table = snap.meta["safetensors"]["w/model.safetensors"]
    assert table["tensors"]["a"]["shape"] == [2, 3]
    assert table["tensors"]["a"]["digest"] == blake3.blake3(np.arange(6, dtype=np.float32).tobytes()).hexdigest()
    json.dumps(snap.to_json())
    single = snapshot_model(tmp_path, {"path": "w/model.safetensors"})
    assert list(single.meta["safetensors"]) == ["w/model.safetensors"]


def test_corrupt_weights_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "bad.safetensors").write_bytes(
        raw_safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
    )
    with pytest.raises(ComponentError, match=r"^w/bad\.safetensors: .*run past the end"):
        snapshot_model(tmp_path, {"path": "w"})


def test_missing_weights_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match=re.escape("components.m.path: 'nope' does not exist")):
        snapshot_model(tmp_path, {"path": "nope"})


def test_unchanged_big_file_table_comes_from_the_stat_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tensors(tmp_path / "w" / "model.safetensors", {"a": np.zeros(10, np.float32)})
    time.sleep(RACY_NS / 1e9 + 0.02)  # a file written this instant is never trusted to the cache
    cache = StatCache(tmp_path / "cache.json")
    calls: list[str] = []
    real = model_module.table_from_blocks

    def counting(blocks: Any, name: str, *args: Any) -> dict[str, Any]:
        calls.append(name)
        return real(blocks, name, *args)

    monkeypatch.setattr(model_module, "table_from_blocks", counting)
    spec = KIND.validate("m", {"path": "w"})
    first = KIND.snapshot("m", spec, WorkingTree(tmp_path, cache))
    second = KIND.snapshot("m", spec, WorkingTree(tmp_path, cache))
    assert len(calls) == 1
    assert first.digest == second.digest
    entry = first.files[0]
    assert entry.digest == digest_file(tmp_path / "w" / "model.safetensors")[0]  # one pass gives the real digest


def test_tensors_added_removed_reshaped_retyped(tmp_path: Path) -> None:
    old = {
        "keep": np.ones(4, np.float32),
        "gone": np.ones(2, np.float32),
        "shape": np.ones((2, 3), np.float32),
        "type": np.ones(3, np.float32),
    }
    new = {
        "keep": np.ones(4, np.float32),
        "fresh": np.zeros((5, 2), np.int8),
        "shape": np.ones((3, 2), np.float32),
        "type": np.ones(3, np.float16),
    }
    _, _, diff = _pair(tmp_path, old, new)
    assert diff.status == "changed"
    lines = set(diff.lines)
    assert "w/model.safetensors: tensor added: fresh I8 [5, 2] (10 B)" in lines
    assert "w/model.safetensors: tensor removed: gone F32 [2] (8 B)" in lines
    assert "w/model.safetensors: tensor reshaped: shape [2, 3] -> [3, 2] (F32)" in lines
    assert "w/model.safetensors: tensor retyped: type F32 -> F16" in lines
    assert not any("keep" in line for line in lines)
    assert diff.summary == "w/model.safetensors: 0 tensors changed, 1 added, 1 removed, 1 reshaped, 1 retyped"
    kinds = sorted(detail["change"] for detail in diff.details)
    assert kinds == ["tensor added", "tensor removed", "tensor reshaped", "tensor retyped"]


@pytest.mark.parametrize("seekable", [True, False])
def test_changed_tensor_reports_exact_differing_bytes(tmp_path: Path, seekable: bool) -> None:
    rng = np.random.default_rng(3)
    base = {name: rng.standard_normal(1000).astype(np.float32) for name in ("a", "b", "c")}
    changed = {name: value.copy() for name, value in base.items()}
    changed["c"][10:20] = 0.0  # 10 floats = 40 bytes, all non-zero before
    changed["a"][999] = -changed["a"][999]  # sign bit: exactly one byte differs
    _, _, diff = _pair(tmp_path, base, changed, seekable=seekable)
    assert diff.summary == "w/model.safetensors: 2 tensors changed (8.0 kB, 41 bytes differ), 0 added, 0 removed"
    assert "w/model.safetensors: tensor changed: a F32 [1000] 4.0 kB, 1 of 4,000 bytes differ" in diff.lines
    assert "w/model.safetensors: tensor changed: c F32 [1000] 4.0 kB, 40 of 4,000 bytes differ" in diff.lines
    counts = {d["tensor"]: d["bytes_differ"] for d in diff.details}
    assert counts == {"a": 1, "c": 40}


def test_exact_counts_are_capped_per_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "MAX_COUNTED_TENSORS", 3)
    old = {f"t{i:02d}": np.zeros(4, np.uint8) for i in range(5)}
    new = {f"t{i:02d}": np.ones(4, np.uint8) for i in range(5)}
    _, _, diff = _pair(tmp_path, old, new)
    counted = [d["bytes_differ"] for d in diff.details]
    assert counted.count(None) == 2
    assert sum(c for c in counted if c is not None) == 12
    assert "12 bytes differ in the 3 of 5 tensors counted" in diff.summary
    assert sum("bytes not compared" in line for line in diff.lines) == 2


def test_default_cap_is_64_tensors(tmp_path: Path) -> None:
    old = {f"t{i:03d}": np.zeros(2, np.uint8) for i in range(70)}
    new = {f"t{i:03d}": np.ones(2, np.uint8) for i in range(70)}
    _, _, diff = _pair(tmp_path, old, new)
    assert sum(d["bytes_differ"] is not None for d in diff.details) == 64
    assert "128 bytes differ in the 64 of 70 tensors counted" in diff.summary


def _shards(tmp_path: Path, old: dict[str, dict[str, np.ndarray]], new: dict[str, dict[str, np.ndarray]]) -> Any:
    """Diff two weights folders given as file name -> tensors (a sharded checkpoint)."""
    for folder, files in (("a", old), ("b", new)):
        for name, tensors in files.items():
            write_tensors(tmp_path / folder / "w" / name, tensors)
    before = snapshot_model(tmp_path / "a", {"path": "w"})
    after = snapshot_model(tmp_path / "b", {"path": "w"})
    reader = DigestReader().register(tmp_path / "a", before).register(tmp_path / "b", after)
    return _diff(before, after, reader)


def test_tensors_moved_between_shards_are_not_added_and_removed(tmp_path: Path) -> None:
    """A re-split keeps every tensor: the diff says which moved where, not that they were removed."""
    a, b, c = (np.full(4, value, np.float32) for value in (1, 2, 3))
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    diff = _shards(tmp_path, {first: {"a": a, "b": b}, second: {"c": c}}, {first: {"a": a}, second: {"b": b, "c": c}})
    assert not any("tensor added" in line or "tensor removed" in line for line in diff.lines)
    assert f"w/{second}: 1 tensor moved in from w/{first}, identical (16 B)" in diff.lines
    assert "1 tensor moved between files, identical" in diff.summary
    moved = [d for d in diff.details if d["change"] == "tensor moved"]
    assert moved == [{"change": "tensor moved", "file": f"w/{second}", "tensor": "b", "from": f"w/{first}", "identical": True}]


def test_a_reshard_into_new_files_names_the_one_changed_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    weights = {name: rng.standard_normal(1000).astype(np.float32) for name in ("a", "b", "c")}
    tuned = dict(weights, b=weights["b"].copy())
    tuned["b"][:10] = 0.0
    differ = int((weights["b"].view(np.uint8) != tuned["b"].view(np.uint8)).sum())
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    diff = _shards(
        tmp_path,
        {"model.safetensors": weights},
        {first: {"a": tuned["a"], "b": tuned["b"]}, second: {"c": tuned["c"]}},
    )
    assert f"w/{first}: tensor changed: b F32 [1000] 4.0 kB, {differ} of 4,000 bytes differ (moved from w/model.safetensors)" in diff.lines
    assert f"w/{first}: 1 tensor moved in from w/model.safetensors, identical (4.0 kB)" in diff.lines
    assert f"w/{second}: 1 tensor moved in from w/model.safetensors, identical (4.0 kB)" in diff.lines
    assert diff.summary.startswith(f"3 tensors moved between files, 1 changed ({differ} bytes differ); ")


def test_a_huge_metadata_value_is_cut_in_the_diff_lines(tmp_path: Path) -> None:
    """A 3 MB value printed whole, twice, on one line; the JSON details keep it whole."""
    tensors = {"a": np.ones(2, np.float32)}
    old, new = "z" * 3_000_000, "y" * 3_000_000 + "\nend"
    _, _, diff = _pair(tmp_path, tensors, tensors, old_meta={"blob": old}, new_meta={"blob": new})
    (line,) = [line for line in diff.lines if "__metadata__.blob" in line]
    assert len(line) < 400 and "(3,000,000 characters)" in line and "(3,000,004 characters)" in line
    assert {"change": "metadata", "file": "w/model.safetensors", "key": "blob", "old": old, "new": new} in diff.details


def test_metadata_and_layout_changes(tmp_path: Path) -> None:
    tensors = {"a": np.ones(2, np.float32)}
    _, _, diff = _pair(tmp_path, tensors, tensors, old_meta={"format": "pt"}, new_meta={"format": "np", "x": "1"})
    assert "w/model.safetensors: __metadata__.format: pt -> np" in diff.lines
    assert "w/model.safetensors: __metadata__.x: (unset) -> 1" in diff.lines
    assert diff.summary.endswith(", metadata changed")

    header = {
        "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},
    }
    swapped = {
        "a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
    }
    for folder, head, data in (("c", header, b"AABB"), ("d", swapped, b"BBAA")):
        (tmp_path / folder / "w").mkdir(parents=True)
        (tmp_path / folder / "w" / "model.safetensors").write_bytes(raw_safetensors(head, data))
    layout = _diff(snapshot_model(tmp_path / "c", {"path": "w"}), snapshot_model(tmp_path / "d", {"path": "w"}))
    assert layout.summary == "w/model.safetensors: tensors identical, file layout changed"


def test_other_files_added_removed_changed(tmp_path: Path) -> None:
    for folder, config, extra in (("a", "{}", "old.txt"), ("b", '{"x": 1}', "new.txt")):
        write_tensors(tmp_path / folder / "w" / "model.safetensors", {"a": np.zeros(1, np.float32)})
        (tmp_path / folder / "w" / "config.json").write_text(config)
        (tmp_path / folder / "w" / extra).write_text("x")
    diff = _diff(snapshot_model(tmp_path / "a", {"path": "w"}), snapshot_model(tmp_path / "b", {"path": "w"}))
    assert diff.lines == [
        "file removed: w/old.txt (1 B)",
        "file added: w/new.txt (1 B)",
        "file changed: w/config.json (2 B -> 8 B)",
    ]
    assert diff.summary == "1 file added; 1 file removed; 1 file changed"


def test_moved_weights_folder_diffs_by_content(tmp_path: Path) -> None:
    write_tensors(tmp_path / "models" / "v1" / "model.safetensors", {"a": np.zeros(1, np.float32)})
    shutil.copytree(tmp_path / "models" / "v1", tmp_path / "models" / "v2")
    diff = _diff(snapshot_model(tmp_path, {"path": "models/v1"}), snapshot_model(tmp_path, {"path": "models/v2"}))
    assert diff.lines == ["path: models/v1 -> models/v2"]


def test_a_changed_config_beside_the_weights_shows_its_text_diff(tmp_path: Path) -> None:
    """Never "binary files differ" for a text file: a changed config.json shows the lines."""
    tensors = {"a": np.zeros(4, np.float32)}
    for side, vocab in (("a", 30522), ("b", 30528)):
        write_tensors(tmp_path / side / "w" / "model.safetensors", tensors)
        (tmp_path / side / "w" / "config.json").write_text(json.dumps({"hidden": 384, "vocab_size": vocab}, indent=1))
        (tmp_path / side / "w" / "blob.bin").write_bytes(bytes([0, 1, 2, 255]) * (4 if side == "a" else 5))
    before, after = snapshot_model(tmp_path / "a", {"path": "w"}), snapshot_model(tmp_path / "b", {"path": "w"})
    diff = _diff(before, after, DigestReader().register(tmp_path / "a", before).register(tmp_path / "b", after))
    assert "file changed: w/config.json (40 B -> 40 B), +1 -1 lines" in diff.lines
    assert '    - "vocab_size": 30522' in diff.lines and '    + "vocab_size": 30528' in diff.lines
    assert "file changed: w/blob.bin (16 B -> 20 B)" in diff.lines  # binary: sizes only
    assert not any("blob.bin" in line and "binary" in line for line in diff.lines)


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 90_868_376, 10**13)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 MB",
        "90.9 MB",
        "10.0 TB",
    ]


# ---- the real MiniLM checkpoint --------------------------------------------------------------


def test_minilm_snapshot_and_single_tensor_diff(tmp_path: Path) -> None:
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    copy_minilm(old_root / "models" / "minilm")
    before = snapshot_model(old_root, {"path": "models/minilm"}, name="encoder")
    rel = "models/minilm/model.safetensors"
    table = before.meta["safetensors"][rel]
    with safe_open(str(old_root / rel), "np") as handle:
        assert set(handle.keys()) == set(table["tensors"])
        for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            view = handle.get_slice(name)
            info = table["tensors"][name]
            assert (info["dtype"], info["shape"]) == (view.get_dtype(), list(view.get_shape()))
            assert info["digest"] == blake3.blake3(handle.get_tensor(name).tobytes()).hexdigest()
    assert before.file(rel) is not None
    assert before.meta["files"]["count"] == len(before.files) >= 5

    # change 1,000 bytes of one tensor in place, spread across it
    shutil.copytree(old_root, new_root)
    target = "encoder.layer.3.attention.self.query.weight"
    begin, end = table["tensors"][target]["offsets"]
    start = 8 + table["header_size"] + begin
    with open(new_root / rel, "r+b") as handle:
        for index in range(1000):
            handle.seek(start + index * ((end - begin) // 1000))
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0x5A]))
    after = snapshot_model(new_root, {"path": "models/minilm"}, name="encoder")
    reader = DigestReader().register(old_root, before).register(new_root, after)
    diff = KIND.diff("encoder", before, after, reader)
    nbytes = end - begin
    assert diff.status == "changed"
    assert diff.details == [
        {
            "change": "tensor changed",
            "file": rel,
            "tensor": target,
            "dtype": "F32",
            "shape": [384, 384],
            "nbytes": nbytes,
            "bytes_differ": 1000,
        }
    ]
    assert diff.summary == (f"{rel}: 1 tensor changed ({human_bytes(nbytes)}, 1,000 bytes differ), 0 added, 0 removed")


def test_minilm_resaved_with_numpy_reports_only_the_edited_tensor(tmp_path: Path) -> None:
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    rel = "enc/model.safetensors"
    (old_root / "enc").mkdir(parents=True)
    shutil.copyfile(minilm_folder() / "model.safetensors", old_root / rel)
    before = snapshot_model(old_root, {"path": "enc"})
    tensors = load_file(str(old_root / rel))
    with safe_open(str(old_root / rel), "np") as handle:
        metadata = handle.metadata()
    target = "pooler.dense.bias"
    tensors[target] = tensors[target].copy()
    tensors[target][:7] += 1.0
    write_tensors(new_root / rel, tensors, metadata)
    after = snapshot_model(new_root, {"path": "enc"})
    reader = DigestReader().register(old_root, before).register(new_root, after)
    diff = KIND.diff("enc", before, after, reader)
    changed = [detail for detail in diff.details if detail["change"] != "layout"]
    assert [(d["change"], d["tensor"]) for d in changed] == [("tensor changed", target)]
    old_bytes = np.frombuffer(load_file(str(old_root / rel))[target].tobytes(), np.uint8)
    new_bytes = np.frombuffer(tensors[target].tobytes(), np.uint8)
    assert changed[0]["bytes_differ"] == int(np.count_nonzero(old_bytes != new_bytes)) > 0
