"""An eval runner for the demo's support assistant: deterministic retrieval plus seeded sampling.

It stands in for a call to a hosted model so the demo runs offline: it retrieves the knowledge-base
article sharing the most words with the question (deterministic), then "samples" the answer with
the version's generation config: the phrasing always varies with the seed, and with probability
``0.25 * temperature**2`` the assistant answers without the fact (a hallucination). A change of
temperature therefore changes the quality distribution; a change of seed only changes the words.

tether calls ``answer(version, case, seed=...)`` once per case and repeat (``[evals] runner =
"support_runner:answer"``); ``version`` is a read-only view of the version being evaluated.
"""

from __future__ import annotations

import random
import re
import threading
from pathlib import Path
from typing import Any

OPENERS = ("Sure!", "Happy to help.", "Good question.", "Thanks for asking.", "Of course.", "Here you go:")
CLOSERS = ("", " Anything else?", " Hope that helps.", " Let me know if you need more.")
_WORD = re.compile(r"[a-z]+")
_cache: dict[Path, list[tuple[str, set[str], str]]] = {}
_lock = threading.Lock()


def _articles(root: Path) -> list[tuple[str, set[str], str]]:
    """(article path, its words, its fact line) of every knowledge-base article, read once per version."""
    with _lock:
        if root not in _cache:
            articles = []
            for path in sorted((root / "kb").rglob("*.md")):
                lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                fact = next((line for line in lines if not line.startswith("#")), "")
                articles.append((path.relative_to(root).as_posix(), set(_WORD.findall(" ".join(lines).lower())), fact))
            _cache[root] = articles
        return _cache[root]


def answer(version: Any, case: dict[str, Any], seed: int) -> str:
    """The assistant's reply to ``case["input"]``."""
    rng = random.Random(seed)
    words = set(_WORD.findall(str(case["input"]).lower()))
    article, _, fact = max(_articles(version.root), key=lambda item: len(words & item[1]))
    temperature = float(version.config("generation").get("temperature", 0.0))
    if rng.random() < 0.25 * temperature**2:
        body = "I believe this is covered in our help center, but I could not find the details."
    else:
        body = f"{fact} (source: {article})"
    return f"{rng.choice(OPENERS)} {body}{rng.choice(CLOSERS)}"


answer.parallel = 4  # type: ignore[attr-defined]  # tether may call it from 4 threads at once
