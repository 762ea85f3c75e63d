"""The environment a version was committed or evaluated in, and what changed between two.

Outputs drift when a package, the interpreter, the platform or the GPU driver moves, even with
identical prompts and weights; recording them makes such drift explainable. Only facts are
recorded (never a guess), machine-specific paths are left out (they are not behavior), and
capture is cheap enough to run on every commit: nothing heavy (torch, ...) is imported.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

from tether.components.base import ComponentDiff, Status
from tether.ids import canonical_json

ENV_VARS = (
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)

#: packages whose version changes model outputs most directly; listed first in a diff
INFERENCE_PACKAGES = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "transformers",
        "tokenizers",
        "sentence-transformers",
        "safetensors",
        "accelerate",
        "peft",
        "bitsandbytes",
        "optimum",
        "vllm",
        "xformers",
        "flash-attn",
        "triton",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorflow",
        "jax",
        "jaxlib",
        "numpy",
        "scipy",
        "scikit-learn",
        "faiss-cpu",
        "faiss-gpu",
        "tiktoken",
        "sentencepiece",
        "llama-cpp-python",
        "ctranslate2",
        "openai",
        "anthropic",
        "google-genai",
        "google-generativeai",
        "mistralai",
        "cohere",
        "litellm",
        "langchain",
        "langchain-core",
        "llama-index",
        "llama-index-core",
    }
)
_INFERENCE_PREFIXES = ("nvidia-",)  # CUDA runtime wheels: nvidia-cublas-cu12, nvidia-cudnn-cu12, ...

_NVIDIA_VERSION_FILE = "/proc/driver/nvidia/version"
_CPUINFO = "/proc/cpuinfo"
_NVIDIA_DRIVER_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")


def normalize_package(name: str) -> str:
    """PEP 503 normalization: ``Sentence_Transformers`` -> ``sentence-transformers``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_inference_package(name: str) -> bool:
    return name in INFERENCE_PACKAGES or name.startswith(_INFERENCE_PREFIXES)


def _header_fields(text: str) -> tuple[str | None, str | None]:
    """Name and Version from a METADATA/PKG-INFO header, without the (slow) email parser."""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith("Name:") and name is None:
            name = line[5:].strip()
        elif line.startswith("Version:") and version is None:
            version = line[8:].strip()
    return name, version


def _packages() -> dict[str, str]:
    """Installed distributions; the first on ``sys.path`` wins, as it does for imports."""
    from importlib import metadata  # imported here: it costs tens of milliseconds

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name, version = _header_fields(text)
        if name is None or version is None:
            name, version = dist.metadata["Name"], dist.version
        if not name:
            continue
        packages.setdefault(normalize_package(name), version or "")
    return dict(sorted(packages.items()))


def _cpu() -> dict[str, Any]:
    processor: str | None = None
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model", "Hardware") and value.strip():
                    processor = value.strip()
                    break
    except OSError:
        pass
    if processor is None and sys.platform == "darwin":
        processor = platform.machine() or None
    return {"processor": processor, "logical": os.cpu_count()}


def _platform() -> dict[str, str]:
    if hasattr(os, "uname"):  # platform.uname() may spawn `uname -p`; os.uname() does not
        uname = os.uname()
        return {"system": uname.sysname, "release": uname.release, "machine": uname.machine}
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine()}


def _nvidia_smi(binary: str) -> dict[str, Any]:
    query = "--query-gpu=name,driver_version,memory.total"
    try:
        completed = subprocess.run(
            [binary, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"nvidia-smi failed: {exc}"}
    if completed.returncode != 0:
        message = (completed.stderr or completed.stdout).strip().splitlines()
        return {"error": f"nvidia-smi exited {completed.returncode}: {message[0] if message else ''}".strip()}
    gpus = []
    for line in completed.stdout.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    return {"gpus": gpus}


def _accelerator() -> dict[str, Any]:
    """NVIDIA driver and GPUs where the machine says so; otherwise ``present: false``."""
    info: dict[str, Any] = {}
    try:
        with open(_NVIDIA_VERSION_FILE, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        text = None
    if text is not None:
        info["vendor"] = "nvidia"
        match = _NVIDIA_DRIVER_RE.search(text)
        info["driver"] = match.group(1) if match else None
    binary = shutil.which("nvidia-smi")
    if binary is not None:
        info["vendor"] = "nvidia"
        smi = _nvidia_smi(binary)
        info["nvidia_smi"] = smi
        if info.get("driver") is None and smi.get("gpus"):
            info["driver"] = smi["gpus"][0]["driver"]
    if not info:
        return {"present": False}
    return {"present": True, **info}


def capture_environment(seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Python, platform, CPU, packages, accelerator, relevant env vars and seeds, as JSON-able data."""
    result = {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": _platform(),
        "cpu": _cpu(),
        "packages": _packages(),
        "accelerator": _accelerator(),
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
        "seeds": dict(seeds) if seeds else {},
    }
    canonical_json(result)  # fail here, not at commit time, when a seed is not JSON-able
    return result


# ---- diff ---------------------------------------------------------------------------------


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    """An ordering good enough to say upgraded/downgraded without depending on ``packaging``.

    A local label (``+cu121``) is not ordered: the same release with another label is "changed".
    """
    public = version.split("+", 1)[0]
    match = re.match(r"v?(\d+(?:\.\d+)*)", public)
    if match is None:
        return ((), public)
    release = [int(part) for part in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    rest = public[match.end() :]
    # a pre-release (1.0rc1, 1.0.dev0) sorts before its release, a post-release after
    return (tuple(release), "~" + rest if not rest or rest.startswith((".post", "post", "-")) else rest)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return value
    return canonical_json(value)


def _package_changes(result: ComponentDiff, old: dict[str, str], new: dict[str, str]) -> dict[str, int]:
    counts = {"upgraded": 0, "downgraded": 0, "changed": 0, "added": 0, "removed": 0}
    names = sorted(old.keys() | new.keys(), key=lambda n: (not is_inference_package(n), n))
    for name in names:
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            change, line = "added", f"package added: {name} {after}"
        elif after is None:
            change, line = "removed", f"package removed: {name} {before}"
        else:
            old_key, new_key = _version_key(before), _version_key(after)
            change = "upgraded" if new_key > old_key else "downgraded" if new_key < old_key else "changed"
            line = f"package {change}: {name} {before} -> {after}"
        counts[change] += 1
        relevant = is_inference_package(name)
        result.lines.append(line + (" (inference-relevant)" if relevant else ""))
        result.details.append(
            {
                "change": f"package {change}",
                "package": name,
                "old": before,
                "new": after,
                "inference_relevant": relevant,
            }
        )
    return counts


def diff_environment(old: dict[str, Any] | None, new: dict[str, Any] | None) -> ComponentDiff:
    """What changed between two captured environments; inference-relevant packages first."""
    status: Status
    if old is None and new is None:
        return ComponentDiff("environment", "environment", "unchanged", summary="no environment recorded")
    if old is None or new is None:
        status = "added" if old is None else "removed"
        present = new if new is not None else old
        assert present is not None
        python = present.get("python", {}).get("version", "?")
        count = len(present.get("packages", {}))
        return ComponentDiff(
            "environment", "environment", status, summary=f"{status}: Python {python}, {count} packages"
        )
    if canonical_json(old) == canonical_json(new):
        return ComponentDiff("environment", "environment", "unchanged", summary="unchanged")

    result = ComponentDiff("environment", "environment", "changed")
    parts: list[str] = []
    counts = _package_changes(result, old.get("packages", {}), new.get("packages", {}))
    package_parts = [f"{count} {change}" for change, count in counts.items() if count]
    if package_parts:
        parts.append("packages: " + ", ".join(package_parts))

    for section in ("python", "platform", "accelerator", "cpu", "env", "seeds"):
        flat_old = _flatten(old.get(section) or {}, section) if old.get(section) else {}
        flat_new = _flatten(new.get(section) or {}, section) if new.get(section) else {}
        changed = False
        for key in sorted(flat_old.keys() | flat_new.keys()):
            before, after = flat_old.get(key), flat_new.get(key)
            if before != after:
                changed = True
                result.lines.append(f"{key}: {_show(before)} -> {_show(after)}")
                result.details.append({"change": section, "key": key, "old": before, "new": after})
        if changed:
            if section == "python":
                parts.append(
                    f"python {_show(old.get('python', {}).get('version'))} -> "
                    f"{_show(new.get('python', {}).get('version'))}"
                )
            else:
                parts.append(f"{section} changed")
    result.summary = "; ".join(parts) if parts else "changed"
    return result
