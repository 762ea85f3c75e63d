"""Audit queries at scale: by request ID, and by subject and day, over 10 million records.

    python benchmarks/bench_audit_query.py [--records 10000000] [--dir PATH] [--keep] [--queries 1000]

The data set generator writes real records (canonical leaves, hash chain, indexes) straight through
the store in large transactions, as a year of traffic: 1 million customers, UUID request IDs, a
few versions. It takes minutes for 10 million records (and ~6 GB of disk); with ``--dir`` and
``--keep`` a generated set is reused by the next run. Then it times ``AuditLog.query`` — what
``tether audit query --request`` / ``--subject --at`` run — and prints p50/p99/max.

Target (DESIGN.md): under 10 ms at 10 million records.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

TARGET_MS = 10.0
START = _dt.datetime(2025, 3, 1, tzinfo=_dt.UTC)
SPAN = _dt.timedelta(days=365)
CUSTOMERS = 1_000_000
BATCH = 20_000


def make_project(root: Path) -> list[str]:
    """A project with three versions; the records are attributed to them."""
    os.environ.setdefault("TETHER_AUTHOR", "Bench <bench@example.com>")
    from tether.project.core import Project

    (root / "prompts").mkdir(parents=True)
    versions = []
    with Project.init(root, name="bench") as project:
        for number in range(3):
            (root / "prompts" / "system.md").write_text(f"You are a support assistant, revision {number}.\n", encoding="utf-8")
            if number == 0:
                project.add("prompt", "system", ["prompts/system.md"])
            versions.append(project.commit(f"revision {number}").version_id)
    return versions


def generate(root: Path, records: int, versions: list[str], samples: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """Write ``records`` records; returns (request ID, subject, day) of a random sample of them."""
    from tether.audit.log import AuditLog
    from tether.audit.records import Payload, make_record

    rng = random.Random(seed)
    log = AuditLog.open(root, durability="sync", check_versions=False)
    store = log.store
    store.conn.execute("PRAGMA synchronous = OFF")  # generation only: a crash here just means regenerating
    store.conn.execute("PRAGMA cache_size = -2000000")
    sample_every = max(1, records // samples)
    picked: list[tuple[str, str, str]] = []
    step = SPAN / records
    started = time.perf_counter()
    written = store.size()
    while written < records:
        count = min(BATCH, records - written)
        batch = []
        for offset in range(count):
            number = written + offset
            moment = START + step * number
            request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            subject = f"customer-{rng.randrange(CUSTOMERS)}"
            failed = rng.random() < 0.01
            batch.append(make_record(
                alias="prod" if rng.random() < 0.95 else "canary",
                version_id=versions[min(len(versions) - 1, number * len(versions) // records)],
                request_id=request_id, subject=subject, time=moment, latency_us=rng.randrange(50_000, 2_000_000),
                status="error" if failed else "ok", error_type="TimeoutError" if failed else None,
                attributes={"channel": rng.choice(("chat", "email", "voice"))},
                input=Payload.of(f"question {number}", False), output=Payload.of(f"answer {number}", False),
            ))
            if number % sample_every == 0:
                picked.append((request_id, subject, moment.date().isoformat()))
        store.append(batch)
        written += count
        if written % 500_000 < BATCH or written == records:
            rate = written / (time.perf_counter() - started)
            print(f"  generated {written:,} records ({rate:,.0f}/s)", flush=True)
    print("  signing a checkpoint (builds the tree's node cache)...", flush=True)
    began = time.perf_counter()
    log.checkpoint()
    print(f"  checkpoint of {written:,} leaves in {time.perf_counter() - began:.1f}s", flush=True)
    log.close()
    return picked


def resample(root: Path, samples: int, seed: int = 11) -> list[tuple[str, str, str]]:
    """Random (request ID, subject, day) triples from an existing data set."""
    from tether.audit.log import AuditLog
    from tether.audit.records import Record

    rng = random.Random(seed)
    with AuditLog.open(root, create=False, check_versions=False) as log:
        size = log.store.size()
        picked = []
        for _ in range(samples):
            row = next(log.store.iter_leaves(rng.randrange(size), size, batch=1))
            record = Record.from_leaf(row.leaf)
            picked.append((record.request_id, record.subject or "", record.time[:10]))
    return picked


def timed(function, arguments: list) -> list[float]:  # type: ignore[no-untyped-def, type-arg]
    values = []
    for argument in arguments:
        began = time.perf_counter()
        result = function(argument)
        values.append((time.perf_counter() - began) * 1000)
        assert result, f"no record found for {argument}"
    return values


def report(name: str, values: list[float]) -> bool:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"{name:<22} {len(values):>7} {statistics.median(values):>8.2f} ms {p99:>8.2f} ms {ordered[-1]:>8.2f} ms")
    return p99 < TARGET_MS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dir", help="where the data set lives (reused when it already holds one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data set")
    parser.add_argument("--strict", action="store_true", help="exit 1 when p99 misses the target")
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tether-bench-audit-query-"))
    root = base / "project"
    try:
        from tether.audit.log import AuditLog

        if (root / ".tether" / "audit.db").exists():
            with AuditLog.open(root, create=False, check_versions=False) as log:
                existing = log.store.size()
            print(f"reusing {existing:,} records in {root}")
            picked = resample(root, args.queries)
        else:
            print(f"generating {args.records:,} records in {root}")
            versions = make_project(root)
            picked = generate(root, args.records, versions, args.queries)
        from tether.audit.log import AuditLog

        log = AuditLog.open(root, create=False, check_versions=False)
        size = log.store.size()
        by_request = [request_id for request_id, _, _ in picked]
        by_day = [(subject, day) for _, subject, day in picked]

        def subject_on_day(item: tuple[str, str]) -> list:  # type: ignore[type-arg]
            subject, day = item
            start = _dt.datetime.fromisoformat(day).replace(tzinfo=_dt.UTC)
            return log.query(subject=subject, start=start, end=start + _dt.timedelta(days=1))

        for warm in by_request[:20]:
            log.query(request_id=warm)
        print(f"\n{size:,} records; {'query':<13} {'count':>7} {'p50':>11} {'p99':>11} {'max':>11}")
        ok = report("by request ID", timed(lambda rid: log.query(request_id=rid), by_request))
        ok &= report("by subject and day", timed(subject_on_day, by_day))
        log.close()
        print(f"target: under {TARGET_MS:.0f} ms (p99): {'met' if ok else 'NOT met'}")
        return 0 if ok or not args.strict else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
