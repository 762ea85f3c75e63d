"""Demo chapter: the audit trail of the support assistant.

``run_story(root, run)`` is called by ``examples/demo.py`` with the demo project (versions v1..v3 on
``main``) and ``run(*args, check=True)``, which runs one ``tether`` command there and returns its
stdout. The application side (recording requests) is Python, as it is in a real service.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path


def _serving_version(root: Path) -> tuple[str, str]:
    """The version behind ``prod`` if the lifecycle chapter promoted one, else HEAD labelled ``prod``."""
    from tether import Project
    from tether.errors import ReferenceNotFoundError

    with Project.open(root) as project:
        try:
            return "prod", project.resolve("prod")
        except ReferenceNotFoundError:
            return "prod", project.resolve("HEAD")


def run_story(root: Path, run: Callable[..., str]) -> None:
    from tether.audit import AuditLog

    print("\n# Audit trail: which version decided each request")
    alias, version_id = _serving_version(root)
    today = _dt.datetime.now(_dt.UTC).date().isoformat()
    # The application records each request; `sync` makes every record durable before it returns.
    with AuditLog.open(root, durability="sync") as log:
        with log.record(alias=alias, version_id=version_id, request_id="req-1001", subject="customer-42",
                        attributes={"channel": "chat"}) as rec:
            rec.input("How long do I have to ask for a refund?")
            rec.output("Refunds are issued within 30 days of purchase.")
        with log.record(alias=alias, version_id=version_id, request_id="req-1002", subject="customer-7") as rec:
            rec.input("When do invoices arrive?")
            rec.output("On the first day of each month.")
        try:
            with log.record(alias=alias, version_id=version_id, request_id="req-1003", subject="customer-42"):
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

    print("\n# Someone edits a record in the database: verify names it")
    database = root / ".tether" / "audit.db"
    backup = root.parent / "audit.db.backup"
    shutil.copy(database, backup)
    conn = sqlite3.connect(database)
    try:
        leaf = conn.execute("SELECT leaf FROM leaves WHERE request_id = 'req-1002'").fetchone()[0]
        conn.execute("UPDATE leaves SET leaf = ? WHERE request_id = 'req-1002'", (leaf.replace(b"customer-7", b"customer-8"),))
        conn.commit()
    finally:
        conn.close()
    run("audit", "verify", check=False)
    shutil.copy(backup, database)
    backup.unlink()
    run("audit", "verify", "--against", str(exported))
