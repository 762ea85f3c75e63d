"""Where the audit log lives: a small interface, and the embedded SQLite implementation.

The log is its own database (``.tether/audit.db``), apart from the metadata database, because of
its write rate: stdlib ``sqlite3`` in WAL mode with ``synchronous=FULL``, one transaction (one
fsync) per group of records -- usually a single autocommitted multi-row INSERT after the leaf the
store wrote last, so a group leaves Python once -- and WAL checkpoints on a background connection. The tree's leaves, the cached interior nodes, payloads, signed
checkpoints, purges and exports each have a table; the schema has its own version table.

Nothing read back is trusted to be what was written: a value of another type than tether writes
(text where it writes bytes, a number, NULL, a hash of the wrong length, text that is not UTF-8)
was put there by someone else. Leaves, checkpoints, payloads and erasures read that way come back
marked (their ``damage`` says what is wrong, for ``verify`` to report and the other commands to
refuse); the other tables raise :class:`AuditDataError`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.audit.merkle import HASH_SIZE
from tether.audit.records import FIRST_PREV, SALT_BYTES, PendingRecord
from tether.errors import UsageError, VerificationError

SCHEMA_VERSION = 1


class AuditStoreError(UsageError):
    """The audit database cannot be opened or used (the message names the file)."""

    def __init__(self, message: str, damaged: bool = False):
        super().__init__(message)
        self.damaged = damaged  # the file exists but is not an intact audit log


class AuditDataError(VerificationError):
    """A value in the audit database is not one tether writes there: it was changed outside
    tether. ``leaf`` is the record concerned, when there is one."""

    def __init__(self, message: str, leaf: int | None = None):
        super().__init__(message)
        self.leaf = leaf


@dataclass(frozen=True)
class LeafRow:
    index: int
    leaf: bytes
    leaf_hash: bytes
    request_id: str
    subject: str | None
    time: str
    version_id: str | None
    input_salt: bytes | None
    output_salt: bytes | None
    damage: str | None = None  # what a column holds that tether never writes (the other fields are best-effort)


@dataclass(frozen=True)
class CheckpointRow:
    id: int
    size: int
    root: bytes
    note: str
    time: str
    previous_size: int | None
    consistency: list[bytes]  # proof from previous_size to size, as stored when signed
    damage: str | None = None  # what a column holds that tether never writes (size -1 when it is not a size)


@dataclass(frozen=True)
class PurgeRow:
    id: int
    time: str
    before: str
    start: int
    end: int
    frontier: list[tuple[int, int, bytes]]  # (start, end, hash) of the purged prefix's subtrees
    checkpoint_size: int
    record_index: int | None


@dataclass(frozen=True)
class PayloadRow:
    index: int
    field: str
    encoding: str
    content: bytes
    damage: str | None = None  # what a column holds that tether never writes (index -1 when it is not one)


@dataclass(frozen=True)
class ErasureRow:
    index: int
    field: str
    time: str
    reason: str
    damage: str | None = None  # what a column holds that tether never writes (index -1 when it is not one)


class AuditStore(ABC):
    """What the log needs from a database; the embedded SQLite store is the first backend."""

    @abstractmethod
    def append(self, batch: Sequence[PendingRecord]) -> None:
        """Give each record the next leaf index and write all of them (and their kept payloads) in
        one durable transaction; sets ``index`` on each."""

    @abstractmethod
    def size(self) -> int:
        """The number of leaves ever appended (the tree size), purged ones included."""

    @abstractmethod
    def first_index(self) -> int:
        """The index of the oldest leaf still stored (after purges)."""

    @abstractmethod
    def leaf_count(self) -> int:
        """Stored leaves."""

    @abstractmethod
    def iter_leaves(self, start: int = 0, end: int | None = None, batch: int = 4096) -> Iterator[LeafRow]:
        """Stored leaves in index order."""

    @abstractmethod
    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The stored leaf hashes of [start, end) (as written; verify recomputes them)."""

    @abstractmethod
    def leaves_by_request(self, request_id: str) -> list[LeafRow]: ...

    @abstractmethod
    def find(
        self,
        subject: str | None = None,
        version_id: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        limit: int | None = None,
    ) -> list[LeafRow]:
        """Leaves matching every given condition, oldest first (times as ISO text, end exclusive)."""

    @abstractmethod
    def get_node(self, level: int, index: int) -> bytes | None: ...

    @abstractmethod
    def node_count(self, level: int) -> int:
        """Cached nodes at ``level`` (contiguous from index 0)."""

    @abstractmethod
    def put_nodes(self, nodes: dict[tuple[int, int], bytes]) -> list[tuple[int, int]]:
        """Insert cached nodes; returns those already present with a different hash."""

    @abstractmethod
    def iter_nodes(self, level: int) -> Iterator[tuple[int, bytes]]: ...

    @abstractmethod
    def checkpoints(self) -> list[CheckpointRow]:
        """Every signed checkpoint, oldest first."""

    @abstractmethod
    def latest_checkpoint(self) -> CheckpointRow | None: ...

    @abstractmethod
    def add_checkpoint(self, size: int, root: bytes, note: str, time: str, previous_size: int | None, consistency: list[bytes]) -> None: ...

    @abstractmethod
    def payloads(self, index: int) -> list[PayloadRow]: ...

    @abstractmethod
    def iter_payloads(self, start: int = 0) -> Iterator[PayloadRow]:
        """Kept payloads of leaves ``start`` and up, in leaf order."""

    @abstractmethod
    def erasures(self) -> dict[tuple[object, object], ErasureRow]:
        """(leaf index, field) -> the erasure of every erased payload (a damaged row keeps the
        values it holds as its key)."""

    @abstractmethod
    def erase_payload(self, index: int, field: str, time: str, reason: str) -> tuple[bool, bool]:
        """Delete a payload's content and salt, keeping a tombstone saying when and why; returns
        (content deleted, salt deleted). Writes no tombstone when neither was stored, and never
        replaces one: an erasure already recorded stays as it is (IntegrityError)."""

    @abstractmethod
    def purge_prefix(self, end: int, purge: dict[str, object]) -> None:
        """Delete leaves, payloads and salts below ``end`` and record the purge (with the frontier)."""

    @abstractmethod
    def purges(self) -> list[PurgeRow]: ...

    @abstractmethod
    def add_export(self, time: str, size: int, path: str) -> None: ...

    @abstractmethod
    def last_export(self) -> tuple[str, int, str] | None: ...

    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def version_ids(self) -> dict[int, str]: ...

    @abstractmethod
    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A write transaction that also keeps appenders out (signing, purging, erasing)."""

    @abstractmethod
    def integrity_problems(self) -> list[str]:
        """What the database engine itself finds wrong with its files."""

    @abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (id INTEGER PRIMARY KEY, version_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS leaves (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    request_id TEXT NOT NULL,
    subject TEXT,
    time TEXT NOT NULL,
    version_ref INTEGER,
    input_salt BLOB,
    output_salt BLOB
);
CREATE INDEX IF NOT EXISTS leaves_request ON leaves (request_id);
CREATE INDEX IF NOT EXISTS leaves_subject ON leaves (subject, time) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS leaves_version ON leaves (version_ref, time);
CREATE INDEX IF NOT EXISTS leaves_time ON leaves (time);
CREATE TABLE IF NOT EXISTS payloads (
    idx INTEGER NOT NULL, field TEXT NOT NULL, encoding TEXT NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (idx, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erasures (
    idx INTEGER NOT NULL, field TEXT NOT NULL, time TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (idx, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL,
    time TEXT NOT NULL, previous_size INTEGER, consistency TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, before TEXT NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, frontier TEXT NOT NULL, checkpoint_size INTEGER NOT NULL, record_index INTEGER
);
CREATE TABLE IF NOT EXISTS exports (id INTEGER PRIMARY KEY, time TEXT NOT NULL, size INTEGER NOT NULL, path TEXT NOT NULL);
"""

_ENCODINGS = ("text", "bytes", "json")
_FIELDS = ("input", "output")


class _Undecodable(str):
    """TEXT that is not UTF-8 (tether writes none), read as text with its bytes kept."""


def _lenient_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw.decode("utf-8", "surrogateescape"))


def _held(value: object, quote: bool = True) -> str:
    """What a stored value is, in words (short text quoted unless ``quote`` is false)."""
    if value is None:
        return "NULL"
    if isinstance(value, _Undecodable):
        return "text that is not UTF-8"
    if isinstance(value, str):
        return f"the text {value!r}" if quote and len(value) <= 24 else "text"
    if isinstance(value, bytes):
        return "1 byte" if len(value) == 1 else f"{len(value)} bytes"
    if isinstance(value, int):
        return f"the integer {value}" if quote else "an integer"
    if isinstance(value, float):
        return f"the real number {value}" if quote else "a real number"
    return type(value).__name__


def _wrong(column: str, value: object, expected: str, quote: bool = True) -> str:
    return f"the {column} column holds {_held(value, quote)} where tether writes {expected}"


def _changed(wrong: list[str]) -> str:
    return "; ".join(wrong) + " (changed outside tether)"


def _bytes_of(value: object) -> bytes:
    """The bytes of a value that should have been a BLOB, for re-hashing it anyway."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else str(value).encode()


def _text_of(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _is_hash(value: object) -> bool:
    return type(value) is bytes and len(value) == HASH_SIZE


def _is_salt(value: object) -> bool:
    return value is None or (type(value) is bytes and len(value) == SALT_BYTES)


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _hashes_of(text: object) -> list[bytes] | None:
    """The hashes of a stored JSON list of hex hashes, or None when it is not one."""
    if type(text) is not str:
        return None
    try:
        items = json.loads(text)
    except ValueError:
        return None
    if not isinstance(items, list) or not all(type(item) is str and len(item) == 2 * HASH_SIZE for item in items):
        return None
    try:
        return [bytes.fromhex(item) for item in items]
    except ValueError:
        return None


_TABLES = ("audit_schema", "meta", "versions", "leaves", "payloads", "erasures", "nodes", "checkpoints", "purges", "exports")
_LEAF_COLUMNS = "l.idx, l.leaf, l.leaf_hash, l.request_id, l.subject, l.time, l.version_ref, v.version_id, l.input_salt, l.output_salt"
_LEAF_FROM = "leaves l LEFT JOIN versions v ON v.id = l.version_ref"


_ROWS_PER_INSERT = 500  # 500 rows x 9 columns stays far below SQLite's limit on parameters
_CHECKPOINT_EVERY = 1024  # records appended between two background WAL checkpoints
_WAL_LIMIT = 16384  # WAL frames (~64 MiB) past which the appender checkpoints in line, as SQLite would


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, columns: int, rows: int) -> str:
    one = "(" + ", ".join("?" * columns) + ")"
    return f"INSERT INTO {table} VALUES " + ", ".join([one] * rows)


def _row(row: tuple) -> LeafRow:  # type: ignore[type-arg]
    index, leaf, hashed, request_id, subject, time, ref, version_id, input_salt, output_salt = row
    if (type(leaf) is bytes and type(hashed) is bytes and len(hashed) == HASH_SIZE and type(request_id) is str
            and type(time) is str and (subject is None or type(subject) is str)
            and ((ref is None and version_id is None) or (type(ref) is int and type(version_id) is str))
            and _is_salt(input_salt) and _is_salt(output_salt)):
        return LeafRow(index, leaf, hashed, request_id, subject, time, version_id, input_salt, output_salt)
    return _damaged_row(row)


def _damaged_row(row: tuple) -> LeafRow:  # type: ignore[type-arg]
    """A leaf row holding what tether never writes: named in ``damage``, the rest best-effort."""
    index, leaf, hashed, request_id, subject, time, ref, version_id, input_salt, output_salt = row
    wrong = []
    if type(leaf) is not bytes:
        wrong.append(_wrong("leaf", leaf, "bytes"))
    if not _is_hash(hashed):
        wrong.append(_wrong("leaf_hash", hashed, f"a {HASH_SIZE}-byte hash"))
    for name, value, optional in (("request_id", request_id, False), ("subject", subject, True), ("time", time, False)):
        if type(value) is not str and not (optional and value is None):
            wrong.append(_wrong(name, value, "text" + (" or NULL" if optional else "")))
    if ref is not None and type(ref) is not int:
        wrong.append(_wrong("version_ref", ref, "the number of a stored version"))
    elif ref is not None and version_id is None:
        wrong.append(f"its version_ref {ref} names no stored version")
    elif ref is not None and type(version_id) is not str:
        wrong.append(f"the versions table holds {_held(version_id)} for its version ID where tether writes text")
    for name, value in (("input_salt", input_salt), ("output_salt", output_salt)):
        if not _is_salt(value):
            wrong.append(_wrong(name, value, f"a {SALT_BYTES}-byte salt or NULL", quote=False))
    return LeafRow(
        index, _bytes_of(leaf), _bytes_of(hashed), _text_of(request_id), None if subject is None else _text_of(subject),
        _text_of(time), version_id if type(version_id) is str else None,
        None if input_salt is None else _bytes_of(input_salt), None if output_salt is None else _bytes_of(output_salt),
        _changed(wrong),
    )


class SQLiteAuditStore(AuditStore):
    """The embedded store. One connection, guarded by a lock; writers serialize in SQLite itself
    (``BEGIN IMMEDIATE``), so several processes may append to the same file."""

    def __init__(self, path: Path, create: bool = True, origin: str | None = None):
        """Open the log at ``path``; a new one is created only when ``create`` (with ``origin``).

        An existing database is never altered to fit: a missing table is reported, not recreated.
        """
        self.path = path
        if not path.exists() and not create:
            raise AuditStoreError(f"{path}: no audit log yet (nothing was recorded in this project)")
        self._version_refs: dict[str, int] = {}
        self._lock = threading.RLock()
        self._tail: tuple[int, str] | None = None  # (next index, hash hex of the last leaf) this store wrote
        self._appended = 0  # records since the last background checkpoint request
        self._wal_frames = 0  # the WAL's length as the last checkpoint found it
        self._wal_wake = threading.Event()
        self._wal_stop = False
        self._wal_thread: threading.Thread | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 60000")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise AuditStoreError(f"{path}: cannot switch the audit log to WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA cache_size = -65536")
            # WAL checkpoints (copying the WAL into the database, with its own fsync) run on a
            # background connection, not inside the group commit that happens to cross the limit.
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._create_if_empty(origin)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise AuditStoreError(f"{path}: cannot open the audit log; the file is damaged or not a database ({exc})", damaged=True) from exc

    def _create_if_empty(self, origin: str | None) -> None:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                tables = self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                if tables == 0:
                    for statement in _SCHEMA.split(";"):  # executescript would commit the transaction
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute("INSERT INTO audit_schema (version) VALUES (?)", (SCHEMA_VERSION,))
                    if origin is not None:
                        self.conn.execute("INSERT INTO meta (key, value) VALUES ('origin', ?)", (origin,))
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _check_schema(self) -> None:
        names = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in _TABLES:
            if table not in names:
                raise AuditStoreError(f"{self.path}: table '{table}' is missing: the audit log was damaged (it is never recreated)", damaged=True)
        row = self.conn.execute("SELECT MAX(version) FROM audit_schema").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise AuditStoreError(f"{self.path}: audit log schema {row[0] if row else None} is not the supported {SCHEMA_VERSION}")

    def _fetch(self, sql: str, params: Sequence[object] = (), one: bool = False) -> Any:
        """Rows of a query. Text that is not UTF-8 (which tether never writes) makes sqlite3 fail
        the whole read; it is then read again with such text marked, for the caller to report."""
        with self._lock:
            try:
                cursor = self.conn.execute(sql, params)
                return cursor.fetchone() if one else cursor.fetchall()
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
            self.conn.text_factory = _lenient_text
            try:
                cursor = self.conn.execute(sql, params)
                return cursor.fetchone() if one else cursor.fetchall()
            finally:
                self.conn.text_factory = str

    # ---- appending -----------------------------------------------------------------------------
    def _version_ref(self, version_id: str) -> int:
        ref = self._version_refs.get(version_id)
        if ref is None:
            self.conn.execute("INSERT OR IGNORE INTO versions (version_id) VALUES (?)", (version_id,))
            ref = self.conn.execute("SELECT id FROM versions WHERE version_id = ?", (version_id,)).fetchone()[0]
            self._version_refs[version_id] = ref
        return ref

    def _rows(self, batch: Sequence[PendingRecord], start: int, prev: str) -> tuple[list[object], list[tuple[object, ...]], str]:
        """The flattened leaf rows of ``batch`` from leaf ``start`` on (after the leaf hashed
        ``prev``), the payload rows, and the hash (hex) of the last leaf."""
        values: list[object] = []
        payload_rows: list[tuple[object, ...]] = []
        refs = self._version_refs
        index = start
        for pending in batch:
            leaf = pending.leaf(index, prev)
            hashed = hashlib.sha256(b"\x00" + leaf).digest()  # merkle.leaf_hash, inlined
            prev = hashed.hex()
            pending.leaf_bytes = leaf
            fields = pending.fields
            version = fields["version_id"]
            ref = (refs.get(version) or self._version_ref(version)) if version else None
            given, answer = pending.input, pending.output
            values += (index, leaf, hashed, fields["request_id"], fields["subject"], fields["time"], ref,
                       given.salt if given is not None else None, answer.salt if answer is not None else None)
            if given is not None and given.content is not None:
                payload_rows.append((index, "input", given.encoding, given.content))
            if answer is not None and answer.content is not None:
                payload_rows.append((index, "output", answer.encoding, answer.content))
            index += 1
        return values, payload_rows, prev

    def _fast_append(self, batch: Sequence[PendingRecord]) -> bool:
        """One autocommitted INSERT (one transaction, one fsync, one trip out of Python) after the
        leaf this store wrote last. False, with nothing written, when that cannot be used: the
        group needs more than one statement, or another writer appended meanwhile (its leaf
        takes the index, so the INSERT fails on the primary key and rolls back)."""
        tail = self._tail
        if tail is None or len(batch) > _ROWS_PER_INSERT:
            return False
        refs = self._version_refs
        for pending in batch:
            version = pending.fields["version_id"]
            if (version and version not in refs) or (pending.input is not None and pending.input.content is not None) or (
                    pending.output is not None and pending.output.content is not None):
                return False
        values, _, last = self._rows(batch, tail[0], tail[1])
        self._tail = None  # until the INSERT is known to be durable
        try:
            self.conn.execute(_insert_sql("leaves", 9, len(batch)), values)
        except sqlite3.IntegrityError:
            return False
        self._tail = (tail[0] + len(batch), last)
        for offset, pending in enumerate(batch):
            pending.index = tail[0] + offset
        return True

    def append(self, batch: Sequence[PendingRecord]) -> None:
        with self._lock:
            conn = self.conn
            own = not conn.in_transaction  # inside exclusive() the caller commits
            if own and self._fast_append(batch):
                self._after_append(len(batch))
                return
            self._tail = None
            if own:
                conn.execute("BEGIN IMMEDIATE")
            try:
                last = self._fetch("SELECT idx, leaf_hash FROM leaves ORDER BY idx DESC LIMIT 1", one=True)
                if last is not None and not _is_hash(last[1]):
                    raise AuditDataError(f"leaf {last[0]}: {_changed([_wrong('leaf_hash', last[1], f'a {HASH_SIZE}-byte hash')])}: "
                                         "no record can be chained after it; run `tether audit verify`", last[0])
                start, prev = (last[0] + 1, last[1].hex()) if last else (0, FIRST_PREV)
                values, payload_rows, prev = self._rows(batch, start, prev)
                # Multi-row INSERTs: one statement step per chunk rather than one per record, so the
                # committer gives up and retakes the GIL a few times per group, not once per row.
                step = _ROWS_PER_INSERT * 9
                for first in range(0, len(values), step):
                    chunk = values[first:first + step]
                    conn.execute(_insert_sql("leaves", 9, len(chunk) // 9), chunk)
                for first in range(0, len(payload_rows), _ROWS_PER_INSERT):
                    rows = payload_rows[first:first + _ROWS_PER_INSERT]
                    conn.execute(_insert_sql("payloads", 4, len(rows)), [value for row in rows for value in row])
                if own:
                    conn.execute("COMMIT")
                    self._tail = (start + len(batch), prev)
            except BaseException:
                self._version_refs.clear()
                if own and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            for offset, pending in enumerate(batch):
                pending.index = start + offset
            self._after_append(len(batch))

    def _after_append(self, count: int) -> None:
        """Ask the background checkpointer to fold the WAL in now and then; checkpoint here only
        when it fell far behind (the WAL restarts only after a checkpoint that caught up)."""
        if not self.conn.in_transaction and self._wal_frames > _WAL_LIMIT:
            self._wal_frames = 0
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._appended += count
        if self._appended < _CHECKPOINT_EVERY:
            return
        self._appended = 0
        if self._wal_thread is None:
            self._wal_thread = threading.Thread(target=self._checkpointer, name="tether-audit-wal", daemon=True)
            self._wal_thread.start()
        self._wal_wake.set()

    def _checkpointer(self) -> None:
        conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._wal_wake.wait()
                self._wal_wake.clear()
                if self._wal_stop:
                    return
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # the next request tries again; the appender's limit bounds the WAL
                    continue
                self._wal_frames = row[1] if row else 0
        finally:
            conn.close()

    # ---- reading ---------------------------------------------------------------------------------
    def size(self) -> int:
        with self._lock:
            top = self.conn.execute("SELECT MAX(idx) FROM leaves").fetchone()[0]
            floor = self.first_index()
        return max(floor, top + 1 if top is not None else 0)

    def first_index(self) -> int:
        value = self.get_meta("purged_to")
        if value is None:
            return 0
        if not (value.isascii() and value.isdigit()):
            raise AuditDataError(f"meta 'purged_to': {_changed([_wrong('value', value, 'a leaf index')])}")
        return int(value)

    def leaf_count(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT COUNT(*) FROM leaves").fetchone()[0]

    def iter_leaves(self, start: int = 0, end: int | None = None, batch: int = 4096) -> Iterator[LeafRow]:
        position = start
        limit = end if end is not None else 1 << 62
        while position < limit:
            rows = self._fetch(
                f"SELECT {_LEAF_COLUMNS} FROM {_LEAF_FROM} WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx LIMIT ?",
                (position, limit, batch),
            )
            if not rows:
                return
            for row in rows:
                yield _row(row)
            position = rows[-1][0] + 1

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._fetch("SELECT idx, leaf_hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end))
        if len(rows) != end - start or (rows and (rows[0][0] != start or rows[-1][0] != end - 1)):
            missing = sorted(set(range(start, end)) - {row[0] for row in rows})
            raise VerificationError(f"leaf {missing[0] if missing else start}: missing from the audit log (deleted)")
        for index, value in rows:
            if not _is_hash(value):
                raise AuditDataError(f"leaf {index}: {_changed([_wrong('leaf_hash', value, f'a {HASH_SIZE}-byte hash')])}", index)
        return [row[1] for row in rows]

    def leaves_by_request(self, request_id: str) -> list[LeafRow]:
        rows = self._fetch(f"SELECT {_LEAF_COLUMNS} FROM {_LEAF_FROM} WHERE l.request_id = ? ORDER BY l.idx", (request_id,))
        return [_row(row) for row in rows]

    def find(
        self,
        subject: str | None = None,
        version_id: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        limit: int | None = None,
    ) -> list[LeafRow]:
        where, params = ["l.version_ref IS NOT NULL"], []
        if subject is not None:
            where.append("l.subject = ?")
            params.append(subject)
        if version_id is not None:
            with self._lock:
                ref = self.conn.execute("SELECT id FROM versions WHERE version_id = ?", (version_id,)).fetchone()
            if ref is None:
                return []
            where.append("l.version_ref = ?")
            params.append(ref[0])
        if start_time is not None:
            where.append("l.time >= ?")
            params.append(start_time)
        if end_time is not None:
            where.append("l.time < ?")
            params.append(end_time)
        sql = f"SELECT {_LEAF_COLUMNS} FROM {_LEAF_FROM} WHERE {' AND '.join(where)} ORDER BY l.time, l.idx"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._fetch(sql, params)
        return [_row(row) for row in rows]

    # ---- tree nodes --------------------------------------------------------------------------------
    @staticmethod
    def _node_hash(level: int, index: object, value: object) -> bytes:
        if not _is_hash(value) or not _is_index(index):
            wrong = [] if _is_index(index) else [_wrong("idx", index, "a node index")]
            wrong += [] if _is_hash(value) else [_wrong("hash", value, f"a {HASH_SIZE}-byte hash")]
            raise AuditDataError(f"cached tree node (level {level}, index {_text_of(index)}): {_changed(wrong)}")
        return value  # type: ignore[return-value]

    def get_node(self, level: int, index: int) -> bytes | None:
        row = self._fetch("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index), one=True)
        return self._node_hash(level, index, row[0]) if row else None

    def node_count(self, level: int) -> int:
        row = self._fetch("SELECT MAX(idx) FROM nodes WHERE level = ?", (level,), one=True)
        if row is None or row[0] is None:
            return 0
        if not _is_index(row[0]):
            raise AuditDataError(f"cached tree nodes (level {level}): {_changed([_wrong('idx', row[0], 'a node index')])}")
        return row[0] + 1

    def put_nodes(self, nodes: dict[tuple[int, int], bytes]) -> list[tuple[int, int]]:
        conflicts = []
        with self._lock:
            for (level, index), value in nodes.items():
                existing = self._fetch("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index), one=True)
                if existing is None:
                    self.conn.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, index, value))
                elif existing[0] != value:  # a value of another type than tether writes differs too
                    conflicts.append((level, index))
        return conflicts

    def iter_nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        rows = self._fetch("SELECT idx, hash FROM nodes WHERE level = ? ORDER BY idx", (level,))
        for index, value in rows:
            yield index, self._node_hash(level, index, value)

    # ---- checkpoints -------------------------------------------------------------------------------
    @staticmethod
    def _checkpoint(row: tuple) -> CheckpointRow:  # type: ignore[type-arg]
        ident, size, root, note, time, previous_size, consistency = row
        proof = _hashes_of(consistency)
        if (_is_index(size) and _is_hash(root) and type(note) is str and type(time) is str
                and (previous_size is None or _is_index(previous_size)) and proof is not None):
            return CheckpointRow(ident, size, root, note, time, previous_size, proof)
        wrong = []
        if not _is_index(size):
            wrong.append(_wrong("size", size, "a tree size"))
        if not _is_hash(root):
            wrong.append(_wrong("root", root, f"a {HASH_SIZE}-byte hash"))
        for name, value in (("note", note), ("time", time)):
            if type(value) is not str:
                wrong.append(_wrong(name, value, "text"))
        if previous_size is not None and not _is_index(previous_size):
            wrong.append(_wrong("previous_size", previous_size, "a tree size or NULL"))
        if proof is None:
            wrong.append(_wrong("consistency", consistency, "a JSON list of hex hashes"))
        return CheckpointRow(ident, size if _is_index(size) else -1, _bytes_of(root), _text_of(note), _text_of(time),
                             previous_size if _is_index(previous_size) else None, proof or [], _changed(wrong))

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._fetch("SELECT id, size, root, note, time, previous_size, consistency FROM checkpoints ORDER BY id")
        return [self._checkpoint(row) for row in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self._lock:
            row = self._fetch("SELECT id, size, root, note, time, previous_size, consistency FROM checkpoints ORDER BY id DESC LIMIT 1",
                              one=True)
            if row is None:
                return None
            checkpoint = self._checkpoint(row)
            if checkpoint.damage is not None:
                number = self.conn.execute("SELECT COUNT(*) FROM checkpoints WHERE id <= ?", (row[0],)).fetchone()[0]
                raise AuditDataError(f"checkpoint #{number} (the latest): {checkpoint.damage}; run `tether audit verify`")
        return checkpoint

    def add_checkpoint(self, size: int, root: bytes, note: str, time: str, previous_size: int | None, consistency: list[bytes]) -> None:
        with self._lock:
            self.conn.execute(
                "INSERT INTO checkpoints (size, root, note, time, previous_size, consistency) VALUES (?, ?, ?, ?, ?, ?)",
                (size, root, note, time, previous_size, json.dumps([item.hex() for item in consistency])),
            )

    # ---- payloads ------------------------------------------------------------------------------------
    @staticmethod
    def _payload(row: tuple) -> PayloadRow:  # type: ignore[type-arg]
        index, field, encoding, content = row
        if _is_index(index) and field in _FIELDS and encoding in _ENCODINGS and type(content) is bytes:
            return PayloadRow(index, field, encoding, content)
        wrong = []
        if not _is_index(index):
            wrong.append(_wrong("idx", index, "a leaf index"))
        if field not in _FIELDS:
            wrong.append(_wrong("field", field, "input or output"))
        if encoding not in _ENCODINGS:
            wrong.append(_wrong("encoding", encoding, "text, bytes or json"))
        if type(content) is not bytes:
            wrong.append(_wrong("content", content, "bytes", quote=False))
        return PayloadRow(index if _is_index(index) else -1, _text_of(field), _text_of(encoding), _bytes_of(content), _changed(wrong))

    def payloads(self, index: int) -> list[PayloadRow]:
        rows = self._fetch("SELECT idx, field, encoding, content FROM payloads WHERE idx = ? ORDER BY field", (index,))
        return [self._payload(row) for row in rows]

    def iter_payloads(self, start: int = 0) -> Iterator[PayloadRow]:
        rows = self._fetch("SELECT idx, field, encoding, content FROM payloads WHERE idx >= ? ORDER BY idx, field", (start,))
        for row in rows:
            yield self._payload(row)

    def erasures(self) -> dict[tuple[object, object], ErasureRow]:
        out = {}
        for index, field, time, reason in self._fetch("SELECT idx, field, time, reason FROM erasures"):
            damage = None
            if not (_is_index(index) and field in _FIELDS and type(time) is str and type(reason) is str):
                wrong = [] if _is_index(index) else [_wrong("idx", index, "a leaf index")]
                wrong += [] if field in _FIELDS else [_wrong("field", field, "input or output")]
                wrong += [_wrong(name, value, "text") for name, value in (("time", time), ("reason", reason)) if type(value) is not str]
                damage = _changed(wrong)
            out[(index, field)] = ErasureRow(index if _is_index(index) else -1, _text_of(field), _text_of(time), _text_of(reason), damage)
        return out

    def erase_payload(self, index: int, field: str, time: str, reason: str) -> tuple[bool, bool]:
        column = {"input": "input_salt", "output": "output_salt"}[field]
        with self._lock:
            content = self.conn.execute("DELETE FROM payloads WHERE idx = ? AND field = ?", (index, field)).rowcount > 0
            salt = self.conn.execute(f"UPDATE leaves SET {column} = NULL WHERE idx = ? AND {column} IS NOT NULL", (index,)).rowcount > 0
            if content or salt:  # a tombstone for nothing would hide a salt deleted outside tether
                self.conn.execute("INSERT INTO erasures VALUES (?, ?, ?, ?)", (index, field, time, reason))
        return content, salt

    # ---- purges and exports ----------------------------------------------------------------------------
    def purge_prefix(self, end: int, purge: dict[str, object]) -> None:
        with self._lock:
            self.conn.execute("DELETE FROM payloads WHERE idx < ?", (end,))
            self.conn.execute("DELETE FROM erasures WHERE idx < ?", (end,))
            self.conn.execute("DELETE FROM leaves WHERE idx < ?", (end,))
            frontier = json.dumps([[start, stop, value.hex()] for start, stop, value in purge["frontier"]])  # type: ignore[attr-defined]
            self.conn.execute(
                'INSERT INTO purges (time, before, start, "end", frontier, checkpoint_size, record_index) VALUES (?, ?, ?, ?, ?, ?, ?)',
                (purge["time"], purge["before"], purge["start"], end, frontier, purge["checkpoint_size"], purge.get("record_index")),
            )
            self.set_meta("purged_to", str(end))

    def purges(self) -> list[PurgeRow]:
        rows = self._fetch('SELECT id, time, before, start, "end", frontier, checkpoint_size, record_index FROM purges ORDER BY id')
        out = []
        for number, (ident, time, before, start, end, kept, checkpoint_size, record_index) in enumerate(rows, start=1):
            frontier = self._frontier(kept)
            wrong = [_wrong(name, value, "text") for name, value in (("time", time), ("before", before)) if type(value) is not str]
            wrong += [_wrong(name, value, "a leaf index") for name, value in (("start", start), ("end", end), ("checkpoint_size", checkpoint_size))
                      if not _is_index(value)]
            if record_index is not None and not _is_index(record_index):
                wrong.append(_wrong("record_index", record_index, "a leaf index or NULL"))
            if frontier is None:
                wrong.append(_wrong("frontier", kept, "a JSON list of [start, end, hex hash]"))
            if wrong:
                raise AuditDataError(f"purge #{number}: {_changed(wrong)}")
            out.append(PurgeRow(ident, time, before, start, end, frontier, checkpoint_size, record_index))  # type: ignore[arg-type]
        return out

    @staticmethod
    def _frontier(text: object) -> list[tuple[int, int, bytes]] | None:
        if type(text) is not str:
            return None
        try:
            items = json.loads(text)
            if not isinstance(items, list):
                return None
            frontier = []
            for start, end, value in items:
                if not (_is_index(start) and _is_index(end) and type(value) is str and len(value) == 2 * HASH_SIZE):
                    return None
                frontier.append((start, end, bytes.fromhex(value)))
        except (ValueError, TypeError):
            return None
        return frontier

    def add_export(self, time: str, size: int, path: str) -> None:
        with self._lock:
            self.conn.execute("INSERT INTO exports (time, size, path) VALUES (?, ?, ?)", (time, size, path))

    def last_export(self) -> tuple[str, int, str] | None:
        row = self._fetch("SELECT time, size, path FROM exports ORDER BY id DESC LIMIT 1", one=True)
        if row is None:
            return None
        time, size, path = row
        wrong = [_wrong(name, value, "text") for name, value in (("time", time), ("path", path)) if type(value) is not str]
        wrong += [] if _is_index(size) else [_wrong("size", size, "a tree size")]
        if wrong:
            raise AuditDataError(f"the last checkpoint export: {_changed(wrong)}")
        return time, size, path

    # ---- metadata ----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._fetch("SELECT value FROM meta WHERE key = ?", (key,), one=True)
        if row is not None and type(row[0]) is not str:
            raise AuditDataError(f"meta '{key}': {_changed([_wrong('value', row[0], 'text')])}")
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def version_ids(self) -> dict[int, str]:
        rows = self._fetch("SELECT id, version_id FROM versions")
        for ident, version_id in rows:
            if type(version_id) is not str:
                raise AuditDataError(f"version #{ident}: {_changed([_wrong('version_id', version_id, 'text')])}")
        return dict(rows)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._version_refs.clear()
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def integrity_problems(self) -> list[str]:
        with self._lock:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        return [row[0] for row in rows if row[0] != "ok"]

    def close(self) -> None:
        thread = self._wal_thread
        if thread is not None:
            self._wal_stop = True
            self._wal_wake.set()
            thread.join(timeout=60)
        with self._lock:
            self.conn.close()
            self.conn = _ClosedConnection(self.path)  # type: ignore[assignment]


class _ClosedConnection:
    """A closed store's connection: using it is a :class:`UsageError` naming the log, not
    sqlite3's ``ProgrammingError: Cannot operate on a closed database``; closing again is a no-op."""

    in_transaction = False

    def __init__(self, path: Path):
        self._path = path

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise UsageError(f"{self._path}: the audit log is closed")
