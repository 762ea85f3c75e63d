"""Metadata on SQLAlchemy 2 Core: SQLite by default, PostgreSQL with another URL.

The schema is created and upgraded by the Alembic migrations in ``tether/meta/migrations``; the
tables below mirror the newest migration (a test checks they agree). Alembic is imported only
when a migration actually has to run, so opening an up-to-date database stays fast.

Concurrency: on SQLite every write transaction starts with ``BEGIN IMMEDIATE``, so the write
lock is taken before anything is read and a branch compare-and-swap cannot interleave with
another process's. On PostgreSQL the compare-and-swap is a conditional ``UPDATE`` (or an
``INSERT ... ON CONFLICT DO NOTHING``), which is atomic under the default isolation level, and a
schema migration holds a transaction-scoped advisory lock, so concurrent ``tether init`` runs queue.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKeyConstraint,
    Index,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    column,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    table,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from tether.ids import is_digest
from tether.meta.base import (
    INHERITED_HANDLES,
    BranchConflictError,
    MetadataError,
    MetadataRepository,
    VersionRecord,
)

#: Every migration revision, oldest first; the last one is the schema this code reads and writes.
SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002")
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]
#: Alembic's bookkeeping table. Not the default ``alembic_version``: a PostgreSQL database may be
#: shared with an application that runs its own Alembic migrations.
VERSION_TABLE = "tether_schema_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

BUSY_TIMEOUT_SECONDS = 30
_WRITE = "tether_write"
_SNAPSHOT_PAGE = 1000
_HEX_PREFIX = re.compile(r"^[0-9a-f]*$")
#: The PostgreSQL advisory lock key that serializes schema migrations (any fixed 64-bit number).
_MIGRATION_LOCK = 0x7465746865720001

METADATA = MetaData()

VERSIONS = Table(
    "versions",
    METADATA,
    Column("version_id", String(64), nullable=False),
    Column("content_digest", String(64), nullable=False),
    Column("created_at", String(64), nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    PrimaryKeyConstraint("version_id", name="pk_versions"),
    Index("ix_versions_content_digest", "content_digest"),
)

VERSION_PARENTS = Table(
    "version_parents",
    METADATA,
    Column("version_id", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("parent_id", String(64), nullable=False),
    PrimaryKeyConstraint("version_id", "position", name="pk_version_parents"),
    ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_version_parents_version_id"),
    Index("ix_version_parents_parent_id", "parent_id"),
)

SNAPSHOTS = Table(
    "snapshots",
    METADATA,
    Column("digest", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    PrimaryKeyConstraint("digest", name="pk_snapshots"),
)

BRANCHES = Table(
    "branches",
    METADATA,
    Column("name", String(255), nullable=False),
    Column("version_id", String(64), nullable=False),
    PrimaryKeyConstraint("name", name="pk_branches"),
    ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_branches_version_id"),
)

# ---- deploy lifecycle and eval runs (revision 0002) ------------------------------------------
# Written by the lifecycle and reproducibility modules through ``SqlMetadataRepository.transaction``.

ALIASES = Table(
    "aliases",
    METADATA,
    Column("name", String(255), nullable=False),
    Column("version_id", String(64), nullable=False),
    Column("moves", Integer, nullable=False),  # history length: the compare-and-swap token
    Column("updated_at", String(64), nullable=False),
    PrimaryKeyConstraint("name", name="pk_aliases"),
    ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_aliases_version_id"),
)

ALIAS_HISTORY = Table(
    "alias_history",
    METADATA,
    Column("alias", String(255), nullable=False),
    Column("seq", Integer, nullable=False),  # 1, 2, ... per alias; never rewritten
    Column("action", String(32), nullable=False),  # promote | rollback
    Column("from_version", String(64), nullable=True),
    Column("to_version", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("time", String(64), nullable=False),
    Column("reason", Text, nullable=True),
    Column("evidence", LargeBinary, nullable=False),  # canonical JSON: what the gates saw
    Column("forced", Boolean, nullable=False),
    PrimaryKeyConstraint("alias", "seq", name="pk_alias_history"),
    Index("ix_alias_history_to_version", "to_version"),
)

REHEARSALS = Table(
    "rehearsals",
    METADATA,
    Column("id", Integer, nullable=False, autoincrement=True),
    Column("alias", String(255), nullable=False),
    Column("from_version", String(64), nullable=True),
    Column("to_version", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("time", String(64), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("report", LargeBinary, nullable=False),  # canonical JSON
    PrimaryKeyConstraint("id", name="pk_rehearsals"),
    Index("ix_rehearsals_alias_to_version", "alias", "to_version"),
)

APPROVALS = Table(
    "approvals",
    METADATA,
    Column("id", Integer, nullable=False, autoincrement=True),
    Column("version_id", String(64), nullable=False),
    Column("alias", String(255), nullable=False),
    Column("approver", String(255), nullable=False),
    Column("time", String(64), nullable=False),
    Column("reason", Text, nullable=True),
    PrimaryKeyConstraint("id", name="pk_approvals"),
    Index("ix_approvals_version_alias", "version_id", "alias"),
)

EVAL_RUNS = Table(
    "eval_runs",
    METADATA,
    Column("run_id", String(64), nullable=False),  # digest of the canonical run record
    Column("version_id", String(64), nullable=False),
    Column("evalset", String(255), nullable=False),  # component name
    Column("evalset_snapshot", String(64), nullable=False),
    Column("created_at", String(64), nullable=False),
    Column("environment", String(64), nullable=True),  # snapshot digest of the captured environment
    Column("body", String(64), nullable=False),  # object digest: per-case outputs and scores
    Column("summary", LargeBinary, nullable=False),  # canonical JSON: counts, mean score, seeds
    PrimaryKeyConstraint("run_id", name="pk_eval_runs"),
    Index("ix_eval_runs_version_id", "version_id"),
)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Durable, concurrent SQLite: WAL, fsync on every commit, enforced foreign keys."""
    # Autocommit at the driver level: tether emits BEGIN itself (see _sqlite_on_begin), because
    # pysqlite's implicit BEGIN is always DEFERRED.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried while "database is locked".

    Two connections switching a new database at once both hold a read lock that each must
    upgrade; SQLite refuses one of them at once instead of calling the busy handler (it would
    deadlock), so the wait the busy timeout would have given is done here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _sqlite_on_begin(connection: Connection) -> None:
    """Take the write lock up front for write transactions, so read-then-write is race-free."""
    mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE) else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def _require_digest(value: object, what: str) -> None:
    if not isinstance(value, str) or not is_digest(value):
        raise MetadataError(f"{what} {value!r} is not a full lowercase hex digest")


class SqlMetadataRepository(MetadataRepository):
    """The metadata repository on any SQLAlchemy URL tether supports (SQLite, PostgreSQL)."""

    def __init__(self, url: str, create: bool = False) -> None:
        try:
            self._url: URL = make_url(url)
        except ArgumentError as exc:
            raise MetadataError(f"storage.metadata: invalid database URL '{url}': {exc}") from None
        self._shown = self._url.render_as_string(hide_password=True)
        self._dialect = self._url.get_backend_name()
        if self._dialect not in ("sqlite", "postgresql"):
            raise MetadataError(
                f"storage.metadata: unsupported database '{self._shown}' (supported: sqlite, postgresql+psycopg)"
            )
        if self._dialect == "postgresql":
            # psycopg 3 is the one PostgreSQL driver tether ships and tests; a bare postgresql://
            # means it too (SQLAlchemy 2.0 alone would pick psycopg2).
            driver = self._url.drivername.partition("+")[2]
            if driver not in ("", "psycopg"):
                raise MetadataError(
                    f"storage.metadata: unsupported PostgreSQL driver '{driver}' in '{self._shown}' "
                    "(use postgresql+psycopg://)"
                )
            self._url = self._url.set(drivername="postgresql+psycopg")
        self._engine = self._make_engine(create)
        try:
            if create:
                self._migrate()
            else:
                self._check_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # -- connections -------------------------------------------------------------------------

    def _make_engine(self, create: bool) -> Engine:
        if self._dialect != "sqlite":
            try:
                return create_engine(self._url, pool_pre_ping=True)
            except ImportError as exc:
                raise MetadataError(
                    f"{self._shown} needs the database driver '{exc.name}': install it with pip install 'tether[postgres]'"
                ) from None
        database = self._url.database or ""
        in_memory = database in ("", ":memory:") or self._url.query.get("mode") == "memory"
        if not in_memory:
            path = Path(database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.is_file():
                raise MetadataError(f"no metadata database at {self._shown}: run `tether init` to create it")
        options: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        }
        if in_memory:
            options["poolclass"] = StaticPool  # one shared connection, or every checkout sees an empty database
        engine = create_engine(self._url, **options)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    def transaction(self, write: bool = False) -> AbstractContextManager[Connection]:
        """A transaction for the feature modules that keep their own tables here (lifecycle,
        eval runs): the same locking (``BEGIN IMMEDIATE`` on SQLite) and error mapping."""
        return self._transaction(write)

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        """One transaction; database failures become :class:`MetadataError` naming the database."""
        try:
            with self._engine.connect() as connection:
                if write:
                    connection.execution_options(**{_WRITE: True})
                with connection.begin():
                    yield connection
        except DBAPIError as exc:
            detail = " ".join(str(exc.orig).split())  # one line: libpq's messages span several
            raise MetadataError(f"metadata database {self._shown}: {detail}") from exc

    def _insert_ignoring_existing(self, target: Table) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` in the dialect's own construct (both support it).

        Its row count says whether the row went in (callers compare-and-swap on it): SQLAlchemy
        keeps an INSERT's count only on request, and psycopg's is gone once the cursor closes.
        """
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(target).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(target).on_conflict_do_nothing().execution_options(preserve_rowcount=True)

    def _upsert_branch(self, connection: Connection, name: str, version_id: str) -> None:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg_statement = pg_insert(BRANCHES).values(name=name, version_id=version_id)
            connection.execute(
                pg_statement.on_conflict_do_update(index_elements=["name"], set_={"version_id": version_id})
            )
            return
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sqlite_statement = sqlite_insert(BRANCHES).values(name=name, version_id=version_id)
        connection.execute(
            sqlite_statement.on_conflict_do_update(index_elements=["name"], set_={"version_id": version_id})
        )

    # -- schema ------------------------------------------------------------------------------

    @staticmethod
    def _schema_revision(connection: Connection) -> str | None:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        rows = connection.execute(select(column("version_num")).select_from(table(VERSION_TABLE))).scalars().all()
        return str(rows[0]) if len(rows) == 1 else None

    def _unknown_schema(self, revision: str) -> MetadataError:
        return MetadataError(
            f"metadata database {self._shown} is at schema {revision}, which this tether does not know "
            f"(it knows up to {SCHEMA_HEAD}): upgrade tether"
        )

    def _check_schema(self) -> None:
        with self._transaction() as connection:
            revision = self._schema_revision(connection)
        if revision is None:
            raise MetadataError(f"no tether metadata in {self._shown}: run `tether init` to create it")
        if revision == SCHEMA_HEAD:
            return
        if revision in SCHEMA_REVISIONS:
            raise MetadataError(
                f"metadata database is at schema {revision}, this tether needs {SCHEMA_HEAD}: "
                "run `tether init` to upgrade"
            )
        raise self._unknown_schema(revision)

    def _migrate(self) -> None:
        """Bring the schema to the newest revision, in one write transaction (concurrent inits wait)."""
        with self._transaction(write=True) as connection:
            if self._dialect == "postgresql":
                # PostgreSQL has no BEGIN IMMEDIATE: concurrent inits queue on a transaction lock.
                connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            revision = self._schema_revision(connection)
            if revision == SCHEMA_HEAD:
                return
            if revision is not None and revision not in SCHEMA_REVISIONS:
                raise self._unknown_schema(revision)
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # -- versions ----------------------------------------------------------------------------

    def put_version(
        self,
        record: VersionRecord,
        parents: list[str],
        snapshots: dict[str, bytes],
        branch: str | None = None,
        expected_branch_target: str | None = None,
    ) -> None:
        _require_digest(record.version_id, "version ID")
        _require_digest(record.content_digest, "content digest")
        for parent in parents:
            _require_digest(parent, "parent version ID")
        for digest in snapshots:
            _require_digest(digest, "snapshot digest")
        if expected_branch_target is not None:
            _require_digest(expected_branch_target, "expected branch target")
        with self._transaction(write=True) as connection:
            if snapshots:
                connection.execute(
                    self._insert_ignoring_existing(SNAPSHOTS),
                    [{"digest": digest, "body": bytes(body)} for digest, body in snapshots.items()],
                )
            connection.execute(
                self._insert_ignoring_existing(VERSIONS),
                {
                    "version_id": record.version_id,
                    "content_digest": record.content_digest,
                    "created_at": record.created_at,
                    "manifest": bytes(record.manifest),
                },
            )
            if parents:
                connection.execute(
                    self._insert_ignoring_existing(VERSION_PARENTS),
                    [
                        {"version_id": record.version_id, "position": position, "parent_id": parent}
                        for position, parent in enumerate(parents)
                    ],
                )
            if branch is not None:
                # Raising here rolls back the snapshots and the version written above.
                self._move_branch(
                    connection,
                    branch,
                    record.version_id,
                    expected=expected_branch_target,
                    create_only=expected_branch_target is None,
                )

    def get_version(self, version_id: str) -> VersionRecord | None:
        with self._transaction() as connection:
            row = connection.execute(select(VERSIONS).where(VERSIONS.c.version_id == version_id)).first()
        if row is None:
            return None
        return VersionRecord(
            version_id=row.version_id,
            content_digest=row.content_digest,
            created_at=row.created_at,
            manifest=bytes(row.manifest),
        )

    def find_versions_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """A primary-key range scan: IDs are lowercase hex, so ``prefix <= id < prefix + 'g'``."""
        if not _HEX_PREFIX.match(prefix) or limit <= 0:
            return []
        statement = (
            select(VERSIONS.c.version_id)
            .where(VERSIONS.c.version_id >= prefix, VERSIONS.c.version_id < prefix + "g")
            .order_by(VERSIONS.c.version_id)
            .limit(limit)
        )
        with self._transaction() as connection:
            return [str(value) for value in connection.execute(statement).scalars()]

    def list_versions(self) -> list[VersionRecord]:
        """Oldest first by ``created_at``; equal timestamps fall back to ID order (portable, if arbitrary)."""
        statement = select(VERSIONS).order_by(VERSIONS.c.created_at, VERSIONS.c.version_id)
        with self._transaction() as connection:
            rows = connection.execute(statement).all()
        return [
            VersionRecord(
                version_id=row.version_id,
                content_digest=row.content_digest,
                created_at=row.created_at,
                manifest=bytes(row.manifest),
            )
            for row in rows
        ]

    def get_parents(self, version_id: str) -> list[str]:
        statement = (
            select(VERSION_PARENTS.c.parent_id)
            .where(VERSION_PARENTS.c.version_id == version_id)
            .order_by(VERSION_PARENTS.c.position)
        )
        with self._transaction() as connection:
            return [str(value) for value in connection.execute(statement).scalars()]

    # -- snapshots ---------------------------------------------------------------------------

    def get_snapshot(self, digest: str) -> bytes | None:
        with self._transaction() as connection:
            body = connection.execute(select(SNAPSHOTS.c.body).where(SNAPSHOTS.c.digest == digest)).scalar()
        return None if body is None else bytes(body)

    def iter_snapshots(self) -> Iterator[tuple[str, bytes]]:
        """Every snapshot, a page at a time, so no read transaction stays open while the caller works."""
        after = ""
        while True:
            statement = (
                select(SNAPSHOTS.c.digest, SNAPSHOTS.c.body)
                .where(SNAPSHOTS.c.digest > after)
                .order_by(SNAPSHOTS.c.digest)
                .limit(_SNAPSHOT_PAGE)
            )
            with self._transaction() as connection:
                page = [(str(row.digest), bytes(row.body)) for row in connection.execute(statement)]
            yield from page
            if len(page) < _SNAPSHOT_PAGE:
                return
            after = page[-1][0]

    # -- branches ----------------------------------------------------------------------------

    def get_branch(self, name: str) -> str | None:
        with self._transaction() as connection:
            return self._branch_target(connection, name)

    @staticmethod
    def _branch_target(connection: Connection, name: str) -> str | None:
        value = connection.execute(select(BRANCHES.c.version_id).where(BRANCHES.c.name == name)).scalar()
        return None if value is None else str(value)

    def list_branches(self) -> dict[str, str]:
        with self._transaction() as connection:
            rows = connection.execute(select(BRANCHES.c.name, BRANCHES.c.version_id).order_by(BRANCHES.c.name))
            return {str(row.name): str(row.version_id) for row in rows}

    def set_branch(self, name: str, version_id: str, expected: str | None = None, create_only: bool = False) -> None:
        _require_digest(version_id, "branch target")
        if expected is not None:
            _require_digest(expected, "expected branch target")
        with self._transaction(write=True) as connection:
            self._move_branch(connection, name, version_id, expected=expected, create_only=create_only)

    def _move_branch(
        self, connection: Connection, name: str, version_id: str, expected: str | None, create_only: bool
    ) -> None:
        """The compare-and-swap itself: one statement whose row count says whether it applied."""
        if not name:
            raise MetadataError("a branch name must not be empty")
        try:
            if create_only:
                result = connection.execute(
                    self._insert_ignoring_existing(BRANCHES).values(name=name, version_id=version_id)
                )
            elif expected is not None:
                result = connection.execute(
                    update(BRANCHES)
                    .where(BRANCHES.c.name == name, BRANCHES.c.version_id == expected)
                    .values(version_id=version_id)
                )
            else:
                self._upsert_branch(connection, name, version_id)
                return
        except IntegrityError as exc:
            raise MetadataError(f"cannot point branch '{name}' at {version_id}: no such version") from exc
        if result.rowcount == 1:
            return
        current = self._branch_target(connection, name)
        if create_only:
            raise BranchConflictError(f"branch '{name}' already exists (at {current})")
        if current is None:
            raise BranchConflictError(f"branch '{name}' does not exist (expected it at {expected})")
        raise BranchConflictError(f"branch '{name}' is at {current}, not at the expected {expected}")

    def delete_branch(self, name: str, expected: str | None = None) -> None:
        with self._transaction(write=True) as connection:
            condition = BRANCHES.c.name == name
            if expected is not None:
                condition = condition & (BRANCHES.c.version_id == expected)
            result = connection.execute(delete(BRANCHES).where(condition))
            if expected is not None and result.rowcount != 1:
                current = self._branch_target(connection, name)
                if current is not None:  # moved meanwhile (a commit landed); gone already is fine
                    raise BranchConflictError(f"branch '{name}' is at {current}, not at the expected {expected}")

    def close(self) -> None:
        self._engine.dispose()

    def forget_inherited_connections(self) -> None:
        INHERITED_HANDLES.append(self._engine.pool)  # its connections stay open, for the parent
        self._engine.dispose(close=False)  # SQLAlchemy's recipe for a forked child: a fresh pool

    def __repr__(self) -> str:
        return f"SqlMetadataRepository({self._shown!r})"
