"""The environment an eval run ran in, its fingerprint, and its differences ranked by likely cause.

On top of what every commit captures (``tether.components.environment``), an eval run asks the
installed ML frameworks what accelerator they see (CUDA/cuDNN versions, devices): these are
imported only here, where the run is about to pay for them anyway. A framework that is not
installed is recorded as ``{"present": false}``; nothing is ever guessed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from tether.components.environment import capture_environment, diff_environment
from tether.ids import digest_json

#: most likely causes of a behavioral difference first (lower ranks first)
CAUSE_RANKS = {
    "inference library": 0,
    "accelerator": 1,
    "seeds": 2,
    "environment variable": 3,
    "python": 4,
    "platform": 5,
    "cpu": 6,
    "other package": 7,
}


def _torch() -> dict[str, Any]:
    import torch  # type: ignore[import-not-found]

    info: dict[str, Any] = {
        "present": True,
        "version": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
    }
    cudnn = getattr(torch.backends, "cudnn", None)
    info["cudnn"] = cudnn.version() if cudnn is not None and cudnn.is_available() else None
    if info["cuda_available"]:
        info["devices"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        info["mps_available"] = bool(mps.is_available())
    info["deterministic_algorithms"] = bool(torch.are_deterministic_algorithms_enabled())
    return info


def _jax() -> dict[str, Any]:
    import jax  # type: ignore[import-not-found]

    return {
        "present": True,
        "version": str(jax.__version__),
        "backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
    }


def _tensorflow() -> dict[str, Any]:
    import tensorflow as tf  # type: ignore[import-not-found]

    build = dict(tf.sysconfig.get_build_info())
    return {
        "present": True,
        "version": str(tf.__version__),
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


_PROBES = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow}


def framework_accelerators() -> dict[str, Any]:
    """What each installed framework reports about the accelerator; absent frameworks as absent."""
    result: dict[str, Any] = {}
    for name, probe in _PROBES.items():
        if importlib.util.find_spec(name) is None:
            result[name] = {"present": False}
            continue
        try:
            result[name] = probe()
        except Exception as exc:  # a broken install is a fact worth recording, not a crash
            result[name] = {"present": True, "error": f"{type(exc).__name__}: {exc}"}
    return result


def capture_run_environment(seeds: dict[str, Any]) -> dict[str, Any]:
    """The commit-time capture plus the frameworks' view of the accelerator, and the run's seeds."""
    environment = capture_environment(seeds=seeds)
    environment["accelerator"] = {**environment["accelerator"], "frameworks": framework_accelerators()}
    return environment


def fingerprint(environment: dict[str, Any] | None) -> str | None:
    """The digest of everything but the seeds: equal fingerprints mean the same software and hardware."""
    if environment is None:
        return None
    return digest_json({key: value for key, value in environment.items() if key != "seeds"})


def _cause(detail: dict[str, Any]) -> str:
    change = str(detail.get("change", ""))
    if change.startswith("package"):
        return "inference library" if detail.get("inference_relevant") else "other package"
    if change == "env":
        return "environment variable"
    return change if change in CAUSE_RANKS else "platform"


def ranked_differences(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each difference between two environments with its likely cause, most likely first."""
    diff = diff_environment(old, new)
    if diff.status in ("added", "removed"):
        return [{"cause": "platform", "line": f"environment {diff.summary}", "detail": {}}]
    ranked = [
        {"cause": _cause(detail), "line": line, "detail": detail}
        for line, detail in zip(diff.lines, diff.details, strict=True)
    ]
    ranked.sort(key=lambda item: CAUSE_RANKS[item["cause"]])
    return ranked
