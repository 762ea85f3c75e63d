"""Environment capture (facts only, fast) and environment diffs."""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tether.components import environment
from tether.components.environment import capture_environment, diff_environment, normalize_package


def test_capture_has_the_documented_keys() -> None:
    env = capture_environment({"torch": 1234, "python_random": 7})
    assert set(env) == {"python", "platform", "cpu", "packages", "accelerator", "env", "seeds"}
    assert env["python"] == {"version": platform.python_version(), "implementation": platform.python_implementation()}
    assert set(env["platform"]) == {"system", "release", "machine"}
    assert env["cpu"]["logical"] >= 1
    assert env["packages"]["numpy"] == metadata.version("numpy")
    assert env["packages"]["blake3"] == metadata.version("blake3")
    assert env["seeds"] == {"torch": 1234, "python_random": 7}
    assert capture_environment()["seeds"] == {}
    text = json.dumps(env)
    assert sys.executable not in text  # machine-specific paths are not behavior
    assert "torch" not in sys.modules


def test_capture_is_fast() -> None:
    capture_environment()
    start = time.perf_counter()
    capture_environment()
    assert time.perf_counter() - start < 0.15


def test_accelerator_absent_is_recorded_not_guessed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(environment, "_NVIDIA_VERSION_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert capture_environment()["accelerator"] == {"present": False}


def test_nvidia_driver_and_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    version_file = tmp_path / "version"
    version_file.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  (dvs-builder@U16)\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 550.54.14, 81559 MiB'\n")
    smi.chmod(0o755)
    monkeypatch.setattr(environment, "_NVIDIA_VERSION_FILE", str(version_file))
    monkeypatch.setenv("PATH", str(smi.parent))
    accelerator = capture_environment()["accelerator"]
    assert accelerator == {
        "present": True,
        "vendor": "nvidia",
        "driver": "550.54.14",
        "nvidia_smi": {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.14", "memory": "81559 MiB"}]},
    }


def test_failing_nvidia_smi_is_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    smi.chmod(0o755)
    monkeypatch.setattr(environment, "_NVIDIA_VERSION_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    accelerator = capture_environment()["accelerator"]
    assert accelerator["present"] is True
    assert accelerator["nvidia_smi"] == {"error": "nvidia-smi exited 9: NVIDIA-SMI has failed"}


def test_env_vars_of_interest_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setenv("HOME_SECRET_TOKEN", "x")
    assert capture_environment()["env"] == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def test_normalize_package() -> None:
    assert normalize_package("Sentence_Transformers") == "sentence-transformers"
    assert normalize_package("zope.interface") == "zope-interface"


def _env(**packages: str) -> dict[str, Any]:
    return {
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "platform": {"system": "Linux", "release": "6.1", "machine": "x86_64"},
        "cpu": {"processor": "AMD EPYC", "logical": 2},
        "packages": {"numpy": "1.26.4", "requests": "2.31.0", "rich": "13.0.0", **packages},
        "accelerator": {"present": False},
        "env": {},
        "seeds": {},
    }


def test_diff_lists_package_changes_inference_relevant_first() -> None:
    old = _env(torch="2.2.0", zzz="1.0")
    del old["packages"]["numpy"]
    new = _env(torch="2.3.1", numpy="1.26.4", requests="2.32.0", rich="12.0.0", anthropic="0.30.0")
    diff = diff_environment(old, new)
    assert (diff.name, diff.kind, diff.status) == ("environment", "environment", "changed")
    assert diff.lines == [
        "package added: anthropic 0.30.0 (inference-relevant)",
        "package added: numpy 1.26.4 (inference-relevant)",
        "package upgraded: torch 2.2.0 -> 2.3.1 (inference-relevant)",
        "package upgraded: requests 2.31.0 -> 2.32.0",
        "package downgraded: rich 13.0.0 -> 12.0.0",
        "package removed: zzz 1.0",
    ]
    assert diff.summary == "packages: 2 upgraded, 1 downgraded, 2 added, 1 removed"
    torch = next(detail for detail in diff.details if detail["package"] == "torch")
    assert torch == {
        "change": "package upgraded",
        "package": "torch",
        "old": "2.2.0",
        "new": "2.3.1",
        "inference_relevant": True,
    }


def test_diff_python_platform_accelerator_env_and_seeds() -> None:
    old = _env()
    new = copy.deepcopy(old)
    new["python"]["version"] = "3.12.1"
    new["platform"]["release"] = "6.8"
    new["accelerator"] = {"present": True, "vendor": "nvidia", "driver": "550.54.14"}
    new["env"] = {"PYTHONHASHSEED": "0"}
    new["seeds"] = {"torch": 1}
    diff = diff_environment(old, new)
    assert diff.lines == [
        "python.version: 3.11.7 -> 3.12.1",
        "platform.release: 6.1 -> 6.8",
        "accelerator.driver: (unset) -> 550.54.14",
        "accelerator.present: false -> true",
        "accelerator.vendor: (unset) -> nvidia",
        "env.PYTHONHASHSEED: (unset) -> 0",
        "seeds.torch: (unset) -> 1",
    ]
    assert diff.summary == "python 3.11.7 -> 3.12.1; platform changed; accelerator changed; env changed; seeds changed"


def test_diff_edge_cases() -> None:
    env = _env()
    assert diff_environment(env, copy.deepcopy(env)).status == "unchanged"
    assert diff_environment(None, None).status == "unchanged"
    added = diff_environment(None, env)
    assert (added.status, added.summary) == ("added", "added: Python 3.11.7, 3 packages")
    assert diff_environment(env, None).status == "removed"
    real = capture_environment()
    assert diff_environment(real, capture_environment()).status == "unchanged"


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [
        ("1.0", "1.0.1", "upgraded"),
        ("1.9", "1.10", "upgraded"),
        ("2.0rc1", "2.0", "upgraded"),
        ("2.0", "2.0.post1", "upgraded"),
        ("2.0.0", "2.0", "changed"),
        ("2.2.0+cu121", "2.2.0+cpu", "changed"),
        ("3", "2.9", "downgraded"),
    ],
)
def test_version_ordering(old: str, new: str, change: str) -> None:
    diff = diff_environment(_env(pkg=old), _env(pkg=new))
    assert diff.details[0]["change"] == f"package {change}"
