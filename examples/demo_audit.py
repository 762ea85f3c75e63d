"""Demo chapter: the audit trail of the support assistant.

``run_story(root, run)`` is called by ``examples/demo.py`` with the demo project (versions v1..v3 on
``main``) and ``run(*args, check=True)``, which runs one ``tether`` command there and returns its
stdout. The application side (recording requests) is Python, as it is in a real service.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path


def _serving_version(root: Path) -> tuple[str, str]:
    """The version behind ``prod`` if the lifecycle chapter promoted one, else HEAD."""
    from tether import Project
    from tether.errors import ReferenceNotFoundError

    with Project.open(root) as project:
        try:
            return "prod", project.resolve("prod")
        except ReferenceNotFoundError:
            return "HEAD", project.resolve("HEAD")


def run_story(root: Path, run: Callable[..., str]) -> None:
    import tether
    from tether.audit import AuditLog

    print("\n# Audit trail: which version decided each request")
    alias, version_id = _serving_version(root)
    today = _dt.datetime.now(_dt.UTC).date().isoformat()
    requests = [
        ("req-1001", "customer-42", "How long do I have to ask for a refund?", "Within 30 days of purchase."),
        ("req-1002", "customer-7", "When do invoices arrive?", "On the first day of each month."),
    ]
    with AuditLog.open(root, durability="sync"):  # `sync`: each record is durable before it returns
        pass
    # The application follows prod and attributes every response to the exact version it served.
    live = tether.resolve(alias, project_dir=root) if alias != "HEAD" else None
    for request_id, subject, question, answer in requests:
        if live is not None:
            recorder = live.record(request_id=request_id, subject=subject, attributes={"channel": "chat"})
        else:
            recorder = AuditLog.open(root).record(alias="prod", version_id=version_id, request_id=request_id,
                                                  subject=subject, attributes={"channel": "chat"})
        with recorder as rec:
            rec.input(question)
            rec.output(answer)
    print(f"recorded {len(requests) + 1} requests against {alias} = {version_id[:12]}")
    try:
        with (live.record(request_id="req-1003", subject="customer-42") if live is not None else
              AuditLog.open(root).record(alias="prod", version_id=version_id, request_id="req-1003",
                                         subject="customer-42")):
            raise TimeoutError("model provider timed out")
    except TimeoutError:
        pass  # recorded with status error and the exception type
    exported = root.parent / "audit-checkpoint.txt"  # kept outside the operator's reach in real life
    run("audit", "checkpoint", "--export", str(exported))

    print("\n# Which version decided customer 42's case today, and what was in it?")
    run("audit", "query", "--subject", "customer-42", "--at", today)
    run("audit", "query", "--request", "req-1001", "--expand")

    print("\n# A third party checks one request is in the log, with the proof and the public key alone")
    proof = root.parent / "req-1001.proof.json"
    run("audit", "prove", "req-1001", "-o", str(proof))
    key = run("audit", "key")
    run("audit", "verify-inclusion", str(proof), "--key", key, "--checkpoint", str(exported))
    run("audit", "verify", "--against", str(exported))

    print("\n# Someone edits a record in the database. The routine `audit verify` checks what was appended")
    print("# since the last verified checkpoint, so it does not re-read old records; a query proves every")
    print("# record it shows against the signed checkpoint, and `audit verify --full` re-hashes them all")
    database = root / ".tether" / "audit.db"
    conn = sqlite3.connect(database)
    try:
        original = conn.execute("SELECT leaf FROM leaves WHERE request_id = 'req-1002'").fetchone()[0]
        conn.execute("UPDATE leaves SET leaf = ? WHERE request_id = 'req-1002'",
                     (original.replace(b"customer-7", b"customer-8"),))
        conn.commit()
        run("audit", "verify", check=False)
        if "TAMPERED" not in run("audit", "query", "--request", "req-1002", check=False):
            raise SystemExit("demo: `tether audit query` did not flag the edited record")
        report = json.loads(run("audit", "verify", "--full", "--json", check=False))
        if report.get("ok", True):
            raise SystemExit("demo: `tether audit verify --full` did not name the edited record")
        print("\n# Put the record back: the log verifies again against the exported checkpoint")
        conn.execute("UPDATE leaves SET leaf = ? WHERE request_id = 'req-1002'", (original,))
        conn.commit()
    finally:
        conn.close()
    run("audit", "verify", "--against", str(exported))
