"""Audit recording throughput and added latency: 8 concurrent writers, durable records, SQLite.

Each writer records requests one after another the way an application does (``with
log.record(...) as rec: rec.output(...)``): a thread (``sync``, ``batched``) or a coroutine on one
event loop, as in an ASGI service (``sync-async``, ``async with log.record_async(...)``). In the
sync modes every record is fsynced before its writer goes on, so the writers share fsyncs through
group commit. The added latency is
the time a request spends inside the recording machinery (entering and leaving the ``with``).

    python benchmarks/bench_audit.py [--writers 8] [--seconds 5] [--mode sync|sync-async|batched|all] [--in-flight N] [--strict]

``all`` runs sync, sync-async, sync-async with 8 requests in flight per writer (``sync-asyncx8``,
a server handling several requests at once) and batched.

Target (DESIGN.md): at least 20,000 durable records/s with 8 writers. ``--strict`` exits 1 below it.
The machine's fsync latency is printed too: group commit can only share what one fsync costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET = 20_000


def fsync_latency_us(folder: Path, rounds: int = 100) -> float:
    """Median cost of appending 4 KiB and fdatasync-ing it, on the benchmark's own disk."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    samples = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - start) * 1e6)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)


def make_project(root: Path) -> str:
    """A project with one committed version to attribute records to."""
    os.environ.setdefault("TETHER_AUTHOR", "Bench <bench@example.com>")
    from tether.project.core import Project

    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "system.md").write_text("You are a support assistant.\n", encoding="utf-8")
    with Project.init(root, name="bench") as project:
        project.add("prompt", "system", ["prompts/system.md"])
        return project.commit("bench version").version_id


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(root: Path, version_id: str, mode: str, writers: int, seconds: float) -> dict[str, float]:
    from tether.audit import AuditLog

    log = AuditLog.open(root, durability=mode)
    latencies: list[list[float]] = [[] for _ in range(writers)]
    counts = [0] * writers
    stop = threading.Event()
    ready = threading.Barrier(writers + 1)

    def writer(number: int) -> None:
        own, sample = latencies[number], 0
        ready.wait()
        while not stop.is_set():
            sample += 1
            entered = time.perf_counter()
            with log.record(alias="prod", version_id=version_id, request_id=f"{mode}-{number}-{sample}",
                            subject=f"customer-{sample % 1000}", attributes={"channel": "chat"}) as rec:
                inner = time.perf_counter()
                rec.input("What is the refund window?")
                rec.output("Refunds are issued within 14 days of purchase.")
                body = time.perf_counter() - inner
            own.append((time.perf_counter() - entered - body) * 1e6)
        counts[number] = sample

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    cpu_started = time.process_time()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    log.flush()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    written_before = log.store.leaf_count()
    log.close()
    everything = [value for own in latencies for value in own]
    return {
        "records": float(sum(counts)),
        "per_second": sum(counts) / elapsed,
        "p50_us": percentile(everything, 0.50),
        "p99_us": percentile(everything, 0.99),
        "stored": float(written_before),
        "cpu_us": cpu / max(1, sum(counts)) * 1e6,
    }


def run_async(root: Path, version_id: str, writers: int, seconds: float, in_flight: int = 1) -> dict[str, float]:
    """The same, with the writers as coroutines on one event loop (an ASGI service): the records are
    awaited without blocking the loop, so no thread hand-off is paid per record."""
    import asyncio

    from tether.audit import AuditLog

    log = AuditLog.open(root, durability="sync")
    latencies: list[float] = []
    counts = [0] * (writers * in_flight)

    async def writer(number: int, stop_at: float) -> None:
        sample = 0
        while time.perf_counter() < stop_at:
            sample += 1
            entered = time.perf_counter()
            async with log.record_async(alias="prod", version_id=version_id, request_id=f"async-{number}-{sample}",
                                        subject=f"customer-{sample % 1000}", attributes={"channel": "chat"}) as rec:
                inner = time.perf_counter()
                rec.input("What is the refund window?")
                rec.output("Refunds are issued within 14 days of purchase.")
                body = time.perf_counter() - inner
            latencies.append((time.perf_counter() - entered - body) * 1e6)
        counts[number] = sample

    async def all_writers() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(writer(number, started + seconds) for number in range(writers * in_flight)))
        return time.perf_counter() - started

    cpu_started = time.process_time()
    elapsed = asyncio.run(all_writers())
    cpu = time.process_time() - cpu_started
    log.close()
    return {
        "records": float(sum(counts)),
        "per_second": sum(counts) / elapsed,
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "cpu_us": cpu / max(1, sum(counts)) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mode", choices=("sync", "sync-async", "batched", "all"), default="all",
                        help="sync: threads, durable; sync-async: coroutines, durable; batched: threads, queued")
    parser.add_argument("--in-flight", type=int, default=1,
                        help="sync-async: requests each writer has in flight (a server handles several at once)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when sync mode is below the target")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-audit-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp) / "project"
        version_id = make_project(root)
        print(f"fsync (4 KiB append + fdatasync) on this disk: {fsync_latency_us(Path(tmp)):.0f} us median")
        print(f"{'mode':<12} {'writers':>5} {'records':>9} {'records/s':>10} {'added p50':>10} {'added p99':>10} {'CPU/record':>11}")
        # "all": one request in flight per writer, and a server's view (each writer with 8 in flight)
        runs = ([("sync", 1), ("sync-async", 1), ("sync-async", 8), ("batched", 1)] if args.mode == "all"
                else [(args.mode, args.in_flight)])
        best, best_label = 0.0, ""
        for mode, in_flight in runs:
            if mode == "sync-async":
                result = run_async(root, version_id, args.writers, args.seconds, in_flight)
            else:
                result = run(root, version_id, mode, args.writers, args.seconds)
            label = f"{mode}x{in_flight}" if mode == "sync-async" and in_flight > 1 else mode
            print(f"{label:<12} {args.writers:>5} {int(result['records']):>9,} {result['per_second']:>10,.0f} "
                  f"{result['p50_us']:>8.0f}us {result['p99_us']:>8.0f}us {result['cpu_us']:>9.0f}us")
            if mode.startswith("sync") and result["per_second"] > best:
                best, best_label = result["per_second"], label
        if best:
            print(f"target {TARGET:,} durable records/s with {args.writers} writers: {'met' if best >= TARGET else 'NOT met'} "
                  f"(best durable mode: {best_label}, {best:,.0f}/s)")
        return 1 if args.strict and best and best < TARGET else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
