"""A seeded stochastic toy model: the system under test of the reproducibility tests.

Each case carries ``p``, the chance the model answers it right; the version's ``model`` config
may carry ``drop``, an accuracy drop in points (``p - drop``). The phrasing of every answer is
sampled too, so two runs with different seeds agree in quality while their outputs rarely match
byte for byte, which is exactly what behavioral reproduction has to see through.
"""

from __future__ import annotations

import random
from typing import Any

PHRASES = (
    "The answer is {}.",
    "Answer: {}",
    "It is {}.",
    "{}, I believe.",
    "I'd say {}.",
    "Probably {}.",
    "{} (from the knowledge base)",
    "Short answer: {}",
)

def run(version: Any, case: dict[str, Any], seed: int) -> str:
    rng = random.Random(seed)
    drop = float(version.config("model").get("drop", 0.0))
    p = min(1.0, max(0.0, float(case["p"]) - drop))
    answer = case["expected"] if rng.random() < p else "I don't know"
    return rng.choice(PHRASES).format(answer)


run.parallel = 4  # type: ignore[attr-defined]  # threads it tolerates


def unseeded(version: Any, case: dict[str, Any]) -> str:
    """A runner that takes no seed: deterministic on the case alone."""
    return f"The answer is {case['expected']}."


def flaky(version: Any, case: dict[str, Any], seed: int) -> str:
    """Raises on every case whose id ends in 7 (recorded as errors, never dropped)."""
    if str(case.get("id", "")).endswith("7"):
        raise RuntimeError(f"backend timeout on {case['id']}")
    return run(version, case, seed)


def not_text(version: Any, case: dict[str, Any]) -> object:
    """Returns something that is neither text nor JSON."""
    return object()


def score_length(output: Any, case: dict[str, Any]) -> float:
    """A callable scorer: 1 for short answers."""
    return 1.0 if len(str(output)) < 30 else 0.5


def score_out_of_range(output: Any, case: dict[str, Any]) -> float:
    return 2.0


def describe(version: Any, case: dict[str, Any]) -> dict[str, Any]:
    """What the runner's view of a version offers (as a JSON output)."""
    return {
        "version_id": version.version_id,
        "components": version.components,
        "prompt": version.prompt("system"),
        "config": version.config("model"),
        "model": version.model("llm").id,
        "provider": version.model("llm").provider,
        "evalset_file": version.path("evals").name,
        "outside_project": not (version.root / ".tether").exists(),
    }


def asks_for_missing(version: Any, case: dict[str, Any]) -> str:
    return version.prompt("nonexistent")


def view_modes(version: Any, case: dict[str, Any]) -> str:
    """Reports the permission bits of the view: its root folder and the model config."""
    import os

    config = version.files("model")[0]
    return f"{os.stat(version.root).st_mode & 0o777:o} {os.stat(config).st_mode & 0o777:o}"


def tamper(version: Any, case: dict[str, Any]) -> str:
    """A runner that rewrites the version's model config (root ignores the read-only modes)."""
    import os

    config = version.files("model")[0]
    text = config.read_text(encoding="utf-8")
    try:
        os.chmod(config, 0o644)
        config.write_text("drop: 1.0\n", encoding="utf-8")
    except PermissionError:
        pass
    return text
