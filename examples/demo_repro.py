"""Demo story: does the support assistant's quality reproduce, and what would make it not?

Called by ``examples/demo.py`` with the demo project (prompt, config, tools, hosted model, weights,
index and a 3-case eval set; versions v1..v3 on ``main``). It installs an offline runner
(``examples/support_runner.py``: deterministic retrieval plus seeded sampling), shows that three
cases cannot prove reproduction, grows the eval set on a branch, shows a different seed reproduces
the quality (while the words differ), then that a hotter sampling temperature does not. It ends
back on ``main`` at v3, with the eval runs kept.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

RUNNER = Path(__file__).resolve().with_name("support_runner.py")
EVALS_TABLE = """
[evals]
runner = "support_runner:answer"   # support_runner.py, next to tether.toml
scorer = "contains"
repeat = 3
margin = 0.02
"""
OPENINGS = (
    "", "Hi, ", "Hello! ", "Quick question: ", "Sorry to bother you, ", "Hey there, ", "Good morning. ",
    "Please help: ", "I have a question. ", "Urgent: ", "Excuse me, ", "Hi team, ", "One more thing: ",
    "Thanks in advance. ", "Dear support, ",
)
TOPICS = {
    "refund": ("30 days of purchase", (
        "How long do I have to ask for a refund?", "What is the refund window?",
        "Can I still get a refund for last week's purchase?", "Until when are refunds issued after a purchase?",
        "Is there a deadline for refunds?",
    )),
    "invoice": ("first day of each month", (
        "When do invoices arrive?", "On which day is the invoice emailed?",
        "I did not get my invoice this month, when is it sent?", "How often are invoices emailed?",
        "What day of the month do invoices come?",
    )),
    "password": ("Forgot password", (
        "I forgot my password", "How do I reset my password?", "I cannot sign in, what now?",
        "Where is the password reset link?", "My password does not work anymore",
    )),
    "delete": ("30 days after the request", (
        "How do I delete my account?", "Can you remove my account and data?",
        "When is a deleted account really gone?", "I want to close my account for good",
        "How long does account deletion take?",
    )),
}


def paraphrased_cases() -> list[dict[str, str]]:
    """300 support questions (4 topics x 5 questions x 15 openings), each with the fact it needs."""
    return [
        {"id": f"{topic}-{q}-{o:02d}", "input": opening + question, "expected": expected}
        for topic, (expected, questions) in TOPICS.items()
        for q, question in enumerate(questions)
        for o, opening in enumerate(OPENINGS)
    ]


def _run_id(output: str) -> str:
    """The run ID from ``tether eval run``'s first line (``eval run <id>``)."""
    return output.splitlines()[0].split()[-1]


def run_story(root: Path, run: Callable[..., str]) -> None:
    print("\n# Reproducibility: is the assistant's quality the same when it runs again?")
    shutil.copyfile(RUNNER, root / "support_runner.py")
    with open(root / "tether.toml", "a", encoding="utf-8") as handle:
        handle.write(EVALS_TABLE)
    print("tether.toml gains an [evals] table:" + EVALS_TABLE)

    run("eval", "run", "HEAD", "--seed", "1")
    print("\n# Three cases cannot prove anything: the check says how many would")
    run("repro", "check", "HEAD", "--seed", "2", check=False)

    print("\n# A real eval set: 300 paraphrased questions, on a branch")
    cases = paraphrased_cases()
    (root / "evals" / "cases.jsonl").write_text("".join(json.dumps(case) + "\n" for case in cases), encoding="utf-8")
    run("commit", "-m", "eval set: 300 paraphrased support questions", "--branch", "repro-demo")
    baseline = _run_id(run("eval", "run", "HEAD", "--seed", "1"))

    print("\n# Another seed: other words, the same quality (REPRODUCED, exit 0)")
    plot = root.parent / "repro-check.png"
    run("repro", "check", "HEAD", "--baseline", baseline[:12], "--seed", "2", "--plot", str(plot))

    print("\n# A hotter sampling temperature changes the quality distribution (NOT REPRODUCED, exit 1)")
    generation = root / "config" / "generation.yaml"
    generation.write_text(generation.read_text(encoding="utf-8").replace("temperature: 0.2", "temperature: 0.9"),
                          encoding="utf-8")
    run("commit", "-m", "hotter sampling")
    hot = _run_id(run("eval", "run", "HEAD", "--seed", "1"))
    run("eval", "compare", baseline[:12], hot[:12], check=False)
    run("eval", "list")
    run("fsck")
    run("checkout", "main")


if __name__ == "__main__":
    sys.exit("demo_repro.py is a part of examples/demo.py: run `make demo`")
