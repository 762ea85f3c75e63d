"""Demo story: the deploy lifecycle of the support assistant that ``examples/demo.py`` builds.

``run_story(root, run)`` is called by the main demo with the project folder (v1..v3 committed on
``main``) and a ``run(*args, check=True)`` that runs one ``tether`` command there and returns its
stdout. It walks what a team lives through: v1 to prod, v2 promoted after a rehearsal, an
incident and a rollback with its reversibility report, the application resolving ``prod`` and
guarding against a prompt edited on a server, a version with an irreversible migration refused a
plain rollback and accepted with ``--force --reason``, and ``history prod`` showing every step.

Run on its own (``python examples/demo_lifecycle.py``) it builds a smaller project first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _versions(run: Callable[..., str]) -> tuple[str, str, str]:
    """The first three versions on main (oldest first): v1, v2, v3."""
    entries = json.loads(run("log", "main", "--json"))
    oldest = [entry["version_id"] for entry in reversed(entries)]
    return oldest[0], oldest[1], oldest[2]


def run_story(root: Path, run: Callable[..., str]) -> None:
    """The deploy story, on the demo project in ``root``."""
    import tether
    from tether.errors import DriftError

    v1, v2, v3 = _versions(run)
    print("\n# Deploy: v1 goes to prod")
    run("promote", v1[:12], "--to", "prod", "--reason", "launch")

    print("\n# v2 needs a rehearsed way back before it may replace v1 (tier standard)")
    run("policy", "check", v2[:12], "--to", "prod", check=False)
    run("rollback", "prod", "--rehearse", "--from", v2[:12])
    run("promote", v2[:12], "--to", "prod", "--reason", "friendlier prompt", "--expect", v1[:12])

    print("\n# The application follows prod (cached in process, re-checked every 5 s)")
    live = tether.resolve("prod", project_dir=root, refresh_seconds=0)
    print(f"resolve('prod') -> {live.version_id[:12]}; model {live.model('llm').id}; "
          f"temperature {live.config('generation')['temperature']}")
    print(f"system prompt: {live.prompt('system').splitlines()[0]}")

    print("\n# A server whose prompt was edited in place is caught at start-up")
    with tempfile.TemporaryDirectory(prefix="tether-server-") as tmp:
        server = Path(tmp) / "app"
        run("checkout", "prod", "--dir", str(server))
        prompt = server / "prompts" / "system.md"
        prompt.write_text(prompt.read_text(encoding="utf-8") + "Always approve refunds.\n", encoding="utf-8")
        try:
            live.guard(root=server)
            print("guard: no drift (unexpected)")
        except DriftError as exc:
            print(f"guard: DriftError: {exc}")

    print("\n# Incident: v2 misbehaves. Roll prod back; the report comes first")
    run("rollback", "prod", "--reason", "incident 42: wrong refund answers")
    print(f"resolve('prod') -> {tether.resolve('prod', project_dir=root, refresh_seconds=0).version_id[:12]} (v1)")

    print("\n# v4: v3 plus a database migration with no down script")
    (root / "migrations").mkdir(exist_ok=True)
    (root / "migrations" / "004_refund_state_up.sql").write_text(
        "ALTER TABLE tickets ADD COLUMN refund_state text;\n", encoding="utf-8"
    )
    run("add", "migration", "refund_state", "migrations/004_refund_state_up.sql")
    v4 = run("commit", "-m", f"v4: track refund state on top of {v3[:12]} (no down migration)")
    run("rollback", "prod", "--rehearse", "--from", v4[:12])
    run("promote", v4[:12], "--to", "prod", "--reason", "refund tracking")

    print("\n# Rolling back past an irreversible migration is refused ...")
    run("rollback", "prod", check=False)
    print("\n# ... unless forced, with the reason recorded")
    run("rollback", "prod", "--force", "--reason", "incident 43: the DBA drops the column by hand")

    print("\n# Every step, in the alias's history; gc keeps the rollback targets")
    run("history", "prod")
    run("show", "prod@{1}")
    run("gc", "--dry-run")


def _standalone() -> None:
    tether_bin = str(Path(sys.executable).with_name("tether"))
    with tempfile.TemporaryDirectory(prefix="tether-lifecycle-demo-") as tmp:
        root = Path(tmp) / "support-bot"
        (root / "prompts").mkdir(parents=True)
        (root / "config").mkdir()

        def run(*args: str, check: bool = True) -> str:
            print(f"\n$ tether {' '.join(args)}", flush=True)
            env = {**os.environ, "TETHER_AUTHOR": os.environ.get("TETHER_AUTHOR", "Dana Demo <dana@example.com>")}
            result = subprocess.run([tether_bin, *args], cwd=root, capture_output=True, text=True, env=env)
            for stream in (result.stdout, result.stderr):
                if stream:
                    print(stream.rstrip(), flush=True)
            if check and result.returncode != 0:
                raise SystemExit(f"demo: `tether {' '.join(args)}` exited {result.returncode}")
            return result.stdout.strip()

        (root / "config/generation.yaml").write_text("temperature: 0.2\nmax_tokens: 512\n", encoding="utf-8")
        run("init", "--tier", "standard", "--name", "support-bot")
        for index, text in enumerate(["You are the support assistant.", "Be brief.", "Cite the article."], start=1):
            with open(root / "prompts/system.md", "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            if index == 1:
                run("add", "prompt", "system", "prompts/system.md")
                run("add", "config", "generation", "config/generation.yaml")
                run("add", "model", "llm", "--set", "provider=openai", "--set", "id=gpt-4o-2024-08-06")
            run("commit", "-m", f"v{index}")
        run_story(root, run)
        print("\ndemo: ok")


if __name__ == "__main__":
    _standalone()
