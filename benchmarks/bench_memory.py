"""Flat memory: committing (and checking out) a 4 GiB checkpoint stays under 300 MiB resident.

    make bench-memory
    python benchmarks/bench_memory.py --size-mib 1024     # a smaller run

A LLaMA-like F16 checkpoint is written tensor by tensor, committed with ``tether commit`` in a
child process, changed (the last two layers) and committed again (tensor deltas against the
first), then checked out into a new folder. The peak resident set size of each child is read
from ``getrusage`` (which counts every page the process touched, file-backed ones included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import base_tensor, layout_for, perturbed, write_checkpoint

HERE = Path(__file__).resolve().parent
TETHER = str(HERE.parent / ".venv" / "bin" / "tether")
LIMIT_MIB = 300


_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_mib(args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one tether process, measured by a wrapper whose only child it is."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "TETHER_AUTHOR": "bench <b@e>"},
    )
    elapsed = time.perf_counter() - started
    code, kib = done.stdout.strip().splitlines()[-1].split()
    if int(code) not in ok:
        raise RuntimeError(f"{' '.join(args)} exited {code}: {done.stderr.strip()[-600:]}")
    return elapsed, int(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=4096)
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "memory")
    options = parser.parse_args()
    work = options.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    (work / "project" / "models").mkdir(parents=True)
    project = work / "project"
    layout = layout_for(options.size_mib * 1024 * 1024)
    checkpoint = project / "models" / "model.safetensors"
    print(f"writing a {options.size_mib} MiB checkpoint ({layout.layers} layers) ...", flush=True)
    write_checkpoint(checkpoint, layout.tensors(), base_tensor(0))
    size = checkpoint.stat().st_size
    subprocess.run([TETHER, "init", "--tier", "lite"], cwd=project, check=True, capture_output=True)
    subprocess.run([TETHER, "add", "model", "llm", "models/"], cwd=project, check=True, capture_output=True)
    time.sleep(0.1)
    rows = []
    seconds, peak = peak_rss_mib([TETHER, "commit", "-m", "base"], project)
    rows.append(("commit (new checkpoint)", seconds, peak))
    last_two = {f"model.layers.{i}." for i in (layout.layers - 2, layout.layers - 1)}
    write_checkpoint(checkpoint, layout.tensors(), perturbed(base_tensor(0), 0.01, lambda n: any(n.startswith(p) for p in last_two)))
    time.sleep(0.1)
    seconds, peak = peak_rss_mib([TETHER, "commit", "-m", "tuned"], project)
    rows.append(("commit (last two layers changed, deltas)", seconds, peak))
    seconds, peak = peak_rss_mib([TETHER, "checkout", "HEAD~1", "--dir", str(work / "restored")], project)
    rows.append(("checkout --dir (rebuilt from parts)", seconds, peak))
    seconds, peak = peak_rss_mib([TETHER, "fsck"], project)
    rows.append(("fsck (every part and file re-hashed)", seconds, peak))
    print(f"\ncheckpoint: {size / 2**30:.2f} GiB; limit {LIMIT_MIB} MiB resident")
    print("| operation | seconds | peak RSS (MiB) |")
    print("|---|---|---|")
    for name, secs, mib in rows:
        print(f"| {name} | {secs:.1f} | {mib:.0f} |")
    shutil.rmtree(work)
    worst = max(mib for _, _, mib in rows)
    if worst > LIMIT_MIB:
        sys.exit(f"peak RSS {worst:.0f} MiB is over the {LIMIT_MIB} MiB limit")


if __name__ == "__main__":
    main()
