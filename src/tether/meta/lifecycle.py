"""Deploy-lifecycle metadata: aliases with their append-only history, rehearsals and approvals.

The tables live in schema revision 0002 (see :mod:`tether.meta.sql`). Every alias move is a
compare-and-swap on the alias row's ``moves`` counter (the history length): the write
transaction (``BEGIN IMMEDIATE`` on SQLite) re-reads the row, and the ``UPDATE ... WHERE moves =
expected`` (or the ``INSERT ... ON CONFLICT DO NOTHING`` of a new alias) applies only when nobody
moved the alias since the caller looked, which is atomic on PostgreSQL too. The history row is
written in the same transaction, so the alias and its history never disagree. No method updates
or deletes history: it is never rewritten.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from tether.ids import canonical_bytes
from tether.meta.base import MetadataError, MetadataRepository


class AliasConflictError(MetadataError):
    """The alias is not where the caller expected it (a concurrent move, or a stale ``--expect``)."""


@dataclass(frozen=True)
class AliasState:
    """Where an alias points now, and how many moves its history holds (the CAS token)."""

    name: str
    version_id: str
    moves: int
    updated_at: str


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's history."""

    alias: str
    seq: int
    action: str  # promote | rollback
    from_version: str | None
    to_version: str
    actor: str
    time: str
    reason: str | None
    evidence: dict[str, Any]
    forced: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "seq": self.seq,
            "action": self.action,
            "from": self.from_version,
            "to": self.to_version,
            "actor": self.actor,
            "time": self.time,
            "reason": self.reason,
            "forced": self.forced,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RehearsalRecord:
    """A recorded dry run of a rollback from ``from_version`` to ``to_version``."""

    id: int
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    time: str
    passed: bool
    report: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "actor": self.actor,
            "time": self.time,
            "passed": self.passed,
            "report": self.report,
        }


@dataclass(frozen=True)
class ApprovalRecord:
    """A second person's approval of promoting a version to an alias."""

    id: int
    version_id: str
    alias: str
    approver: str
    time: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version_id": self.version_id,
            "alias": self.alias,
            "approver": self.approver,
            "time": self.time,
            "reason": self.reason,
        }


class LifecycleRepository(ABC):
    """Aliases, history, rehearsals and approvals; every backend implements the same contract."""

    @abstractmethod
    def get_alias(self, name: str) -> AliasState | None:
        """The alias's current state, or None when it was never promoted."""

    @abstractmethod
    def list_aliases(self) -> dict[str, AliasState]:
        """Every alias by name."""

    @abstractmethod
    def history(self, name: str) -> list[AliasMove]:
        """The alias's moves, oldest first."""

    @abstractmethod
    def move_alias(
        self,
        name: str,
        version_id: str,
        *,
        action: str,
        expected_moves: int,
        expected_version: str | None,
        actor: str,
        time: str,
        reason: str | None,
        evidence: dict[str, Any],
        forced: bool = False,
    ) -> AliasMove:
        """Compare-and-swap: move the alias and append the history entry, in one transaction.

        The alias must still have ``expected_moves`` moves (0: must not exist yet) and, when
        ``expected_version`` is given, point there; otherwise :class:`AliasConflictError`.
        """

    @abstractmethod
    def add_rehearsal(
        self,
        alias: str,
        from_version: str | None,
        to_version: str,
        actor: str,
        time: str,
        passed: bool,
        report: dict[str, Any],
    ) -> RehearsalRecord:
        """Record one rehearsal."""

    @abstractmethod
    def rehearsals(self, alias: str) -> list[RehearsalRecord]:
        """The alias's rehearsals, oldest first."""

    @abstractmethod
    def add_approval(self, version_id: str, alias: str, approver: str, time: str, reason: str | None) -> ApprovalRecord:
        """Record one approval."""

    @abstractmethod
    def approvals(self, version_id: str, alias: str) -> list[ApprovalRecord]:
        """Approvals of promoting ``version_id`` to ``alias``, oldest first."""

    @abstractmethod
    def approved_versions(self) -> set[str]:
        """Every version with at least one approval (``gc --unreachable`` keeps their files)."""

    @abstractmethod
    def latest_eval_summary(self, version_id: str, evalset: str) -> tuple[str, dict[str, Any]] | None:
        """(run ID, summary) of the newest stored eval run of a version on an eval set, or None."""


def _json(body: bytes | None) -> dict[str, Any]:
    if not body:
        return {}
    value = json.loads(bytes(body))
    return value if isinstance(value, dict) else {"value": value}


class SqlLifecycleRepository(LifecycleRepository):
    """The lifecycle tables over the same engine as :class:`~tether.meta.sql.SqlMetadataRepository`."""

    def __init__(self, meta: Any) -> None:
        self._meta = meta

    def get_alias(self, name: str) -> AliasState | None:
        from tether.meta.sql import ALIASES

        with self._meta.transaction() as connection:
            row = connection.execute(select(ALIASES).where(ALIASES.c.name == name)).first()
        return None if row is None else AliasState(str(row.name), str(row.version_id), int(row.moves), str(row.updated_at))

    def list_aliases(self) -> dict[str, AliasState]:
        from tether.meta.sql import ALIASES

        with self._meta.transaction() as connection:
            rows = connection.execute(select(ALIASES).order_by(ALIASES.c.name)).all()
        return {str(row.name): AliasState(str(row.name), str(row.version_id), int(row.moves), str(row.updated_at)) for row in rows}

    def history(self, name: str) -> list[AliasMove]:
        from tether.meta.sql import ALIAS_HISTORY

        statement = select(ALIAS_HISTORY).where(ALIAS_HISTORY.c.alias == name).order_by(ALIAS_HISTORY.c.seq)
        with self._meta.transaction() as connection:
            rows = connection.execute(statement).all()
        return [
            AliasMove(
                alias=str(row.alias),
                seq=int(row.seq),
                action=str(row.action),
                from_version=None if row.from_version is None else str(row.from_version),
                to_version=str(row.to_version),
                actor=str(row.actor),
                time=str(row.time),
                reason=row.reason,
                evidence=_json(row.evidence),
                forced=bool(row.forced),
            )
            for row in rows
        ]

    def move_alias(
        self,
        name: str,
        version_id: str,
        *,
        action: str,
        expected_moves: int,
        expected_version: str | None,
        actor: str,
        time: str,
        reason: str | None,
        evidence: dict[str, Any],
        forced: bool = False,
    ) -> AliasMove:
        from tether.meta.sql import ALIAS_HISTORY, ALIASES

        body = canonical_bytes(evidence)
        with self._meta.transaction(write=True) as connection:
            current = connection.execute(select(ALIASES).where(ALIASES.c.name == name)).first()
            self._check_expected(name, current, expected_moves, expected_version)
            previous = None if current is None else str(current.version_id)
            if expected_moves == 0:
                result = connection.execute(
                    self._insert_if_absent(ALIASES).values(name=name, version_id=version_id, moves=1, updated_at=time)
                )
            else:
                result = connection.execute(
                    update(ALIASES)
                    .where(ALIASES.c.name == name, ALIASES.c.moves == expected_moves)
                    .values(version_id=version_id, moves=expected_moves + 1, updated_at=time)
                )
            if result.rowcount != 1:
                raise AliasConflictError(f"alias '{name}' moved concurrently; nothing was recorded, look again and retry")
            connection.execute(
                insert(ALIAS_HISTORY).values(
                    alias=name,
                    seq=expected_moves + 1,
                    action=action,
                    from_version=previous,
                    to_version=version_id,
                    actor=actor,
                    time=time,
                    reason=reason,
                    evidence=body,
                    forced=forced,
                )
            )
        return AliasMove(name, expected_moves + 1, action, previous, version_id, actor, time, reason, evidence, forced)

    def _insert_if_absent(self, target: Any) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING``: a new alias is created by exactly one writer, and
        the row count says which (SQLAlchemy keeps an INSERT's count only when asked to)."""
        if self._meta.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(target).on_conflict_do_nothing().execution_options(preserve_rowcount=True)

    @staticmethod
    def _check_expected(name: str, current: Any, expected_moves: int, expected_version: str | None) -> None:
        at = "nowhere (never promoted)" if current is None else str(current.version_id)
        if expected_version is not None and (current is None or str(current.version_id) != expected_version):
            raise AliasConflictError(f"alias '{name}' is at {at[:12]}, not at the expected {expected_version[:12]}")
        moves = 0 if current is None else int(current.moves)
        if moves != expected_moves:
            raise AliasConflictError(
                f"alias '{name}' moved while this command ran (now at {at[:12]}, move {moves}); "
                "nothing was recorded, look again and retry"
            )

    def add_rehearsal(
        self,
        alias: str,
        from_version: str | None,
        to_version: str,
        actor: str,
        time: str,
        passed: bool,
        report: dict[str, Any],
    ) -> RehearsalRecord:
        from tether.meta.sql import REHEARSALS

        with self._meta.transaction(write=True) as connection:
            result = connection.execute(
                insert(REHEARSALS).values(
                    alias=alias,
                    from_version=from_version,
                    to_version=to_version,
                    actor=actor,
                    time=time,
                    passed=passed,
                    report=canonical_bytes(report),
                )
            )
            key = result.inserted_primary_key
        return RehearsalRecord(int(key[0]) if key else 0, alias, from_version, to_version, actor, time, passed, report)

    def rehearsals(self, alias: str) -> list[RehearsalRecord]:
        from tether.meta.sql import REHEARSALS

        statement = select(REHEARSALS).where(REHEARSALS.c.alias == alias).order_by(REHEARSALS.c.time, REHEARSALS.c.id)
        with self._meta.transaction() as connection:
            rows = connection.execute(statement).all()
        return [
            RehearsalRecord(
                int(row.id),
                str(row.alias),
                None if row.from_version is None else str(row.from_version),
                str(row.to_version),
                str(row.actor),
                str(row.time),
                bool(row.passed),
                _json(row.report),
            )
            for row in rows
        ]

    def add_approval(self, version_id: str, alias: str, approver: str, time: str, reason: str | None) -> ApprovalRecord:
        from tether.meta.sql import APPROVALS

        with self._meta.transaction(write=True) as connection:
            result = connection.execute(
                insert(APPROVALS).values(version_id=version_id, alias=alias, approver=approver, time=time, reason=reason)
            )
            key = result.inserted_primary_key
        return ApprovalRecord(int(key[0]) if key else 0, version_id, alias, approver, time, reason)

    def approvals(self, version_id: str, alias: str) -> list[ApprovalRecord]:
        from tether.meta.sql import APPROVALS

        statement = (
            select(APPROVALS)
            .where(APPROVALS.c.version_id == version_id, APPROVALS.c.alias == alias)
            .order_by(APPROVALS.c.time, APPROVALS.c.id)
        )
        with self._meta.transaction() as connection:
            rows = connection.execute(statement).all()
        return [
            ApprovalRecord(int(row.id), str(row.version_id), str(row.alias), str(row.approver), str(row.time), row.reason)
            for row in rows
        ]

    def approved_versions(self) -> set[str]:
        from tether.meta.sql import APPROVALS

        with self._meta.transaction() as connection:
            rows = connection.execute(select(APPROVALS.c.version_id).distinct()).all()
        return {str(row.version_id) for row in rows}

    def latest_eval_summary(self, version_id: str, evalset: str) -> tuple[str, dict[str, Any]] | None:
        from tether.meta.sql import EVAL_RUNS

        statement = (
            select(EVAL_RUNS.c.run_id, EVAL_RUNS.c.summary)
            .where(EVAL_RUNS.c.version_id == version_id, EVAL_RUNS.c.evalset == evalset)
            .order_by(EVAL_RUNS.c.created_at.desc(), EVAL_RUNS.c.run_id)
            .limit(1)
        )
        with self._meta.transaction() as connection:
            row = connection.execute(statement).first()
        return None if row is None else (str(row.run_id), _json(row.summary))


def lifecycle_repository(meta: MetadataRepository) -> LifecycleRepository:
    """The lifecycle repository over the same database as ``meta``."""
    from tether.meta.sql import SqlMetadataRepository

    if isinstance(meta, SqlMetadataRepository):
        return SqlLifecycleRepository(meta)
    raise MetadataError(f"{type(meta).__name__}: no lifecycle tables for this metadata backend")
