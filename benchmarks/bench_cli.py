"""Start-up of the command line: ``tether --version``, ``tether --help`` and ``status`` of a clean tree.

Every command a person types pays Python's start-up plus what ``tether`` imports before it can
answer, so heavy libraries (SQLAlchemy, NumPy, Rich tables) are imported only by the commands
that need them. This prints the median and p90 of repeated runs of each command, side by side
with ``python -c pass`` (the floor any Python CLI pays) and ``git --version`` for orientation.

    python benchmarks/bench_cli.py [--runs 20] [--strict]

Targets (DESIGN.md): ``--version`` and ``--help`` under 250 ms; ``status`` of an unchanged 100 MB
model under 50 ms more than ``--version``. ``--strict`` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TETHER = str(Path(sys.executable).with_name("tether"))
TARGET_STARTUP = 0.250
TARGET_STATUS_EXTRA = 0.050


def timed(command: list[str], cwd: Path, runs: int) -> list[float]:
    """Wall times of ``runs`` runs (after one warm-up run that fills the page cache)."""
    subprocess.run(command, cwd=cwd, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def build_project(root: Path) -> None:
    """A project with a prompt and a 100 MB weights file, committed (so status has work to skip)."""
    (root / "prompts").mkdir(parents=True)
    (root / "prompts/system.md").write_text("You are helpful.\n", encoding="utf-8")
    (root / "models").mkdir()
    with open(root / "models/blob.bin", "wb") as handle:
        for _ in range(100):
            handle.write(os.urandom(1 << 20))
    env = {**os.environ, "TETHER_AUTHOR": "bench"}
    for args in (["init", "--tier", "lite"], ["add", "prompt", "system", "prompts/system.md"],
                 ["add", "files", "weights", "models/blob.bin"], ["commit", "-m", "v1"]):
        subprocess.run([TETHER, *args], cwd=root, capture_output=True, check=True, env=env)
    time.sleep(0.1)  # past the racy-clean window, so the stat cache may vouch for the files
    subprocess.run([TETHER, "status"], cwd=root, capture_output=True, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-cli-") as tmp:
        root = Path(tmp)
        build_project(root)
        rows = {
            "python -c pass": timed([sys.executable, "-c", "pass"], root, args.runs),
            "git --version": timed(["git", "--version"], root, args.runs),
            "tether --version": timed([TETHER, "--version"], root, args.runs),
            "tether --help": timed([TETHER, "--help"], root, args.runs),
            "tether status (100 MB unchanged)": timed([TETHER, "status"], root, args.runs),
        }
    print(f"{'command':<36} {'median ms':>10} {'p90 ms':>8}")
    for name, times in rows.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:<36} {statistics.median(times) * 1000:>10.1f} {p90 * 1000:>8.1f}")
    version = statistics.median(rows["tether --version"])
    help_ = statistics.median(rows["tether --help"])
    status_extra = statistics.median(rows["tether status (100 MB unchanged)"]) - version
    checks = [
        (f"--version {version * 1000:.0f} ms < {TARGET_STARTUP * 1000:.0f} ms", version < TARGET_STARTUP),
        (f"--help {help_ * 1000:.0f} ms < {TARGET_STARTUP * 1000:.0f} ms", help_ < TARGET_STARTUP),
        (f"status - --version {status_extra * 1000:.0f} ms < {TARGET_STATUS_EXTRA * 1000:.0f} ms",
         status_extra < TARGET_STATUS_EXTRA),
    ]
    print()
    for text, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    return 1 if args.strict and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
