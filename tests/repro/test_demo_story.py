"""The demo's reproducibility story runs end to end (on the demo assistant without its weights)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectDir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load_story():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("demo_repro_under_test", EXAMPLES / "demo_repro.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_story(project_dir: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_dir
    project.write("prompts/system.md", "You are the support assistant for {{ company }}.\n")
    project.write("config/generation.yaml", "temperature: 0.2\nmax_tokens: 512\n")
    project.write("kb/billing/refunds.md", "# Refunds\nRefunds are issued within 14 days of purchase.\n")
    project.write("kb/billing/invoices.md", "# Invoices\nInvoices are emailed on the first day of each month.\n")
    project.write("kb/account/password.md", "# Password reset\nUse the 'Forgot password' link on the sign-in page.\n")
    project.write("kb/account/delete.md", "# Deleting an account\nAccounts are deleted 30 days after the request.\n")
    project.write("evals/cases.jsonl", "".join(json.dumps(case) + "\n" for case in [
        {"id": "refund-window", "input": "How long do I have to ask for a refund?", "expected": "14 days"},
        {"id": "invoice-date", "input": "When do invoices arrive?", "expected": "first day of each month"},
        {"id": "reset", "input": "I forgot my password", "expected": "Forgot password"},
    ]))
    project.run("init", "--name", "support-bot")
    project.run("add", "prompt", "system", "prompts/system.md")
    project.run("add", "config", "generation", "config/generation.yaml")
    project.run("add", "index", "kb", "kb/**/*.md", "--set", "embedding_model=sentence-transformers/all-MiniLM-L6-v2")
    project.run("add", "evalset", "evals", "evals/cases.jsonl")
    project.run("commit", "-m", "v1")
    project.write("kb/billing/refunds.md", "# Refunds\nRefunds are issued within 30 days of purchase.\n")
    v3 = project.run("commit", "-m", "v3").stdout.strip()
    codes: list[tuple[tuple[str, ...], int]] = []

    def run(*args: str, check: bool = True) -> str:
        result = project.run(*args, code=0 if check else None)
        codes.append((args[:2], result.exit_code))
        return str(result.stdout)

    try:
        _load_story().run_story(project.root, run)
    finally:
        sys.modules.pop("support_runner", None)
    out = capsys.readouterr().out
    assert "Three cases cannot prove anything" in out
    assert [code for args, code in codes if args == ("repro", "check")] == [1, 0]  # INCONCLUSIVE, then REPRODUCED
    assert [code for args, code in codes if args == ("eval", "compare")] == [1]  # NOT REPRODUCED
    assert (project.root.parent / "repro-check.png").read_bytes().startswith(b"\x89PNG")
    assert project.run("status", "--json").stdout.count('"clean"') >= 1
    assert json.loads(project.run("show", "HEAD", "--json").stdout)["version_id"] == v3
    assert len(json.loads(project.run("eval", "list", "--json").stdout)) == 5
