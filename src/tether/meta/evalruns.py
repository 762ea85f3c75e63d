"""Eval runs in the metadata database (the ``eval_runs`` table of schema 0002).

A row is the canonical *run record* (its ``run_id`` is the digest of that record); the per-case
body lives in the object store under the ``body`` digest, and the captured environment is a row
of ``snapshots`` (inserted if absent, in the same transaction as the run), exactly as a commit
stores its environment. So a run is visible only once its body object and environment exist.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Table, select

from tether.ids import canonical_bytes, digest_bytes, is_digest
from tether.meta.base import MetadataError, MetadataRepository
from tether.meta.sql import EVAL_RUNS, SNAPSHOTS, SqlMetadataRepository

RUN_FORMAT = "tether.evalrun/1"
_HEX_PREFIX = re.compile(r"^[0-9a-f]*$")


@dataclass(frozen=True)
class EvalRunRecord:
    """One stored eval run: the row of ``eval_runs``."""

    run_id: str
    version_id: str
    evalset: str
    evalset_snapshot: str
    created_at: str
    environment: str | None  # snapshot digest of the captured environment
    body: str  # object digest of the per-case body
    summary: bytes  # canonical JSON

    @staticmethod
    def record_json(
        version_id: str,
        evalset: str,
        evalset_snapshot: str,
        created_at: str,
        environment: str | None,
        body: str,
        summary: dict[str, Any],
    ) -> dict[str, Any]:
        """The canonical run record whose digest is the run ID."""
        return {
            "format": RUN_FORMAT,
            "version_id": version_id,
            "evalset": evalset,
            "evalset_snapshot": evalset_snapshot,
            "created_at": created_at,
            "environment": environment,
            "body": body,
            "summary": summary,
        }

    @classmethod
    def create(
        cls,
        version_id: str,
        evalset: str,
        evalset_snapshot: str,
        created_at: str,
        environment: str | None,
        body: str,
        summary: dict[str, Any],
    ) -> EvalRunRecord:
        record = cls.record_json(version_id, evalset, evalset_snapshot, created_at, environment, body, summary)
        return cls(
            run_id=digest_bytes(canonical_bytes(record)),
            version_id=version_id,
            evalset=evalset,
            evalset_snapshot=evalset_snapshot,
            created_at=created_at,
            environment=environment,
            body=body,
            summary=canonical_bytes(summary),
        )

    def summary_json(self) -> dict[str, Any]:
        return dict(json.loads(self.summary))

    def computed_id(self) -> str:
        """The digest of the record as stored (differs from ``run_id`` when a row was altered)."""
        record = self.record_json(
            self.version_id,
            self.evalset,
            self.evalset_snapshot,
            self.created_at,
            self.environment,
            self.body,
            self.summary_json(),
        )
        return digest_bytes(canonical_bytes(record))


class EvalRunRepository(ABC):
    """Stored eval runs: append-only (a run is never changed once written)."""

    @abstractmethod
    def put_run(self, record: EvalRunRecord, environment: tuple[str, bytes] | None) -> None:
        """Store a run and (when given, if absent) its environment snapshot, in one transaction."""

    @abstractmethod
    def get_run(self, run_id: str) -> EvalRunRecord | None:
        """The run with this exact ID, or None."""

    @abstractmethod
    def find_runs_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Run IDs starting with ``prefix`` (at most ``limit``)."""

    @abstractmethod
    def list_runs(self, version_id: str | None = None, evalset: str | None = None) -> list[EvalRunRecord]:
        """Runs, oldest first, optionally of one version and/or one eval set."""


class SqlEvalRunRepository(EvalRunRepository):
    """Eval runs on the SQL metadata repository's database (SQLite or PostgreSQL)."""

    def __init__(self, meta: SqlMetadataRepository) -> None:
        self.meta = meta

    def _insert_if_absent(self, target: Table) -> Insert:
        if self.meta.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(target).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(target).on_conflict_do_nothing()

    def put_run(self, record: EvalRunRecord, environment: tuple[str, bytes] | None) -> None:
        for value, what in (
            (record.run_id, "run ID"),
            (record.version_id, "version ID"),
            (record.evalset_snapshot, "eval set snapshot"),
            (record.body, "body digest"),
        ):
            if not is_digest(value):
                raise MetadataError(f"eval run {what} {value!r} is not a full lowercase hex digest")
        if record.computed_id() != record.run_id:
            raise MetadataError(f"eval run {record.run_id[:12]}: the ID is not the digest of the run record")
        with self.meta.transaction(write=True) as connection:
            if environment is not None:
                digest, body = environment
                if digest_bytes(body) != digest or digest != record.environment:
                    raise MetadataError(f"eval run {record.run_id[:12]}: environment does not hash to its digest")
                connection.execute(self._insert_if_absent(SNAPSHOTS), {"digest": digest, "body": bytes(body)})
            connection.execute(
                self._insert_if_absent(EVAL_RUNS),
                {
                    "run_id": record.run_id,
                    "version_id": record.version_id,
                    "evalset": record.evalset,
                    "evalset_snapshot": record.evalset_snapshot,
                    "created_at": record.created_at,
                    "environment": record.environment,
                    "body": record.body,
                    "summary": bytes(record.summary),
                },
            )

    @staticmethod
    def _record(row: Any) -> EvalRunRecord:
        return EvalRunRecord(
            run_id=str(row.run_id),
            version_id=str(row.version_id),
            evalset=str(row.evalset),
            evalset_snapshot=str(row.evalset_snapshot),
            created_at=str(row.created_at),
            environment=None if row.environment is None else str(row.environment),
            body=str(row.body),
            summary=bytes(row.summary),
        )

    def get_run(self, run_id: str) -> EvalRunRecord | None:
        with self.meta.transaction() as connection:
            row = connection.execute(select(EVAL_RUNS).where(EVAL_RUNS.c.run_id == run_id)).first()
        return None if row is None else self._record(row)

    def find_runs_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        if not _HEX_PREFIX.match(prefix) or limit <= 0:
            return []
        statement = (
            select(EVAL_RUNS.c.run_id)
            .where(EVAL_RUNS.c.run_id >= prefix, EVAL_RUNS.c.run_id < prefix + "g")
            .order_by(EVAL_RUNS.c.run_id)
            .limit(limit)
        )
        with self.meta.transaction() as connection:
            return [str(value) for value in connection.execute(statement).scalars()]

    def list_runs(self, version_id: str | None = None, evalset: str | None = None) -> list[EvalRunRecord]:
        statement = select(EVAL_RUNS).order_by(EVAL_RUNS.c.created_at, EVAL_RUNS.c.run_id)
        if version_id is not None:
            statement = statement.where(EVAL_RUNS.c.version_id == version_id)
        if evalset is not None:
            statement = statement.where(EVAL_RUNS.c.evalset == evalset)
        with self.meta.transaction() as connection:
            return [self._record(row) for row in connection.execute(statement)]


def eval_runs_of(meta: MetadataRepository) -> EvalRunRepository | None:
    """The eval-run repository on the same database as ``meta`` (None for a backend without one)."""
    if isinstance(meta, SqlMetadataRepository):
        return SqlEvalRunRepository(meta)
    return None
