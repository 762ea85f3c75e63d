"""``tether audit verify``: check the log against its checkpoints, linear in the records added
since the last verified checkpoint (``--full``: recompute the whole tree).

A successful verify remembers "verified through checkpoint N" (:mod:`tether.audit.verified`: the
root and frontier of that tree, HMAC-keyed outside the database). A default (incremental) verify
then trusts nothing from the database about leaves [0, N): it starts from the remembered frontier,
re-hashes only the records N.. and checks, at O(new records + checkpoints + log N):

* the signatures and stored consistency chain of the checkpoints from size N on, and that the
  log's checkpoint of size N still has the remembered root;
* each record from N on exactly as ``--full`` does (parse, index, leaf hash, query columns,
  payloads), and that record N continues the hash chain from the remembered hash of leaf N-1;
* every later checkpoint's (and exported checkpoint's) root against the root recomputed from the
  remembered frontier plus those records: the new tree provably extends the verified one, so any
  insertion, deletion or reordering that moves a record across N, or changes anything from N on,
  fails; a log shorter than N fails;
* an exported checkpoint older than N through an RFC 9162 consistency proof to the remembered root
  (proof nodes read from the database are harmless: the proof is checked against trusted roots).

Because the remembered root is outside the database, a log rewritten *and re-signed* with the
signing key is caught too when it changes the tree verified earlier. Only ``--full`` reads the
records before N, so only it catches an edit, swap or gap confined to records [0, N) (with or
without their stored hashes rewritten), a changed or lost payload or salt of such a record, a
changed cached tree node over them, a changed or removed checkpoint older than N, and what
SQLite's integrity check finds. When the incremental
check finds a problem, the full check runs to name the first bad leaf. A missing or forged state
file (its MAC fails) means a full verify, which writes a new one.

What ``--full`` checks, and what a failure names:

* every stored checkpoint's Ed25519 signature, and the stored consistency proof between each
  checkpoint and the one before it (RFC 9162 2.1.4.2), as a third party would;
* every record: it parses, sits at the index it was written for, still hashes to the leaf hash
  written with it, and agrees with the query columns; kept payloads still match their salted
  digests; an erased payload is reported as erased, never as tampering;
* the root recomputed from the records at each checkpoint's size (and each exported checkpoint's
  size, ``--against``): a record changed, deleted, reordered or inserted changes it. A log that
  was rewritten *and re-signed* is consistent with itself, so only a checkpoint exported before
  the rewrite exposes it; the report then names the narrowest range of leaves it can.

Nothing is repaired: the database is opened as it is and a damaged file is reported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
)
from tether.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from tether.audit.records import FIRST_PREV, PURGE, Record, salted_digest
from tether.audit.store import AuditDataError
from tether.audit.tree import CACHE_LEVEL, TreeView
from tether.audit.verified import VerifiedState, load_state, save_state
from tether.errors import UsageError, VerificationError

if TYPE_CHECKING:
    from tether.audit.log import AuditLog
    from tether.audit.store import AuditStore, CheckpointRow

MAX_LISTED = 20


@dataclass
class Problem:
    message: str
    leaf: int | None = None  # the exact leaf, when the evidence names one
    span: tuple[int, int] | None = None  # else the narrowest range of leaves [low, high) it allows

    def to_json(self) -> dict[str, Any]:
        return {"leaf": self.leaf, "leaves": list(self.span) if self.span else None, "message": self.message}


@dataclass
class VerifyReport:
    tree_size: int = 0
    records: int = 0
    purged_to: int = 0
    checkpoints: int = 0
    latest_checkpoint: int | None = None
    exported: list[dict[str, Any]] = field(default_factory=list)
    payloads_checked: int = 0
    erased: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mode: str = "full"  # "incremental": from the checkpoint verified last; "full": every record
    verified_from: int = 0  # incremental: records before this were verified by an earlier run
    records_read: int = 0  # records re-hashed by this run

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_leaf(self) -> int | None:
        leaves = [problem.leaf for problem in self.problems if problem.leaf is not None]
        return min(leaves) if leaves else None

    @property
    def uncovered(self) -> int:
        return self.tree_size - (self.latest_checkpoint or 0)

    def first_problem(self) -> Problem | None:
        """The problem at the first bad leaf, else at the first bad range, else the first found."""
        first = self.first_bad_leaf
        if first is not None:
            return next(problem for problem in self.problems if problem.leaf == first)
        spans = [problem for problem in self.problems if problem.span is not None]
        if spans:
            return min(spans, key=lambda problem: problem.span)  # type: ignore[arg-type, return-value]
        return self.problems[0] if self.problems else None

    def add(self, message: str, leaf: int | None = None, span: tuple[int, int] | None = None) -> None:
        self.problems.append(Problem(message, leaf, span))

    def bad_leaves(self) -> set[int]:
        return {problem.leaf for problem in self.problems if problem.leaf is not None}

    def to_json(self) -> dict[str, Any]:
        first = self.first_problem()
        return {
            "ok": self.ok,
            "mode": self.mode,
            "verified_from": self.verified_from,
            "records_read": self.records_read,
            "tree_size": self.tree_size,
            "records": self.records,
            "purged_to": self.purged_to,
            "checkpoints": self.checkpoints,
            "latest_checkpoint": self.latest_checkpoint,
            "uncovered_records": self.uncovered,
            "exported": self.exported,
            "payloads_checked": self.payloads_checked,
            "payloads_erased": self.erased,
            "first_bad_leaf": self.first_bad_leaf,
            "first_problem": first.message if first else None,
            "problems": [problem.to_json() for problem in self.problems],
            "warnings": self.warnings,
        }


def _read_exported(path: str, verifier: Verifier, origin: str, report: VerifyReport) -> Checkpoint | None:
    try:
        note = Path(path).read_bytes().decode("utf-8")  # no newline translation: a CRLF note is malformed
    except FileNotFoundError as exc:
        raise UsageError(f"--against {path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--against {path}: cannot read ({exc})") from exc
    try:
        return open_checkpoint(note, verifier, origin)
    except NoteError as exc:
        report.add(f"exported checkpoint {path}: {exc}")
        return None


def verify_log(log: AuditLog, against: list[str], verifier: Verifier | None = None,
               progress: Callable[[str, int, int], None] | None = None, full: bool = False,
               locate: bool = True) -> VerifyReport:
    """Verify incrementally from the remembered checkpoint (or fully: ``full``, or nothing
    remembered). A failed incremental check is followed by a full one that names the first bad
    leaf, unless ``locate`` is false. Success remembers the latest checkpoint verified."""
    state, ignored = load_state(log.dot, log.origin)
    try:
        purged_past = state is not None and not full and state.size < log.store.first_index()
    except AuditDataError:
        purged_past = True  # the full check reports it
    if purged_past:
        state, ignored = None, None  # purged past the remembered checkpoint: the purge frontier takes over
    report = _run(log, against, verifier, progress, state, incremental=state is not None and not full)
    if ignored:
        report.warnings.append(ignored)
    if report.mode == "incremental" and not report.ok and locate:
        located = _run(log, against, verifier, progress, state, incremental=False)
        located.warnings.append("the incremental check failed; the full check below names what is wrong")
        if located.ok:  # the records agree with themselves but not with what was verified before
            located.problems = report.problems
        report = located
    _check_export_policy(log, report)
    return report


def _run(log: AuditLog, against: list[str], verifier: Verifier | None, progress: Callable[[str, int, int], None] | None,
         state: VerifiedState | None, incremental: bool) -> VerifyReport:
    report = VerifyReport(mode="incremental" if incremental else "full")
    verifier = verifier or log.verifier()
    exported = [(path, _read_exported(path, verifier, log.origin, report)) for path in against]
    reached: VerifiedState | None = None
    try:
        reached = _verify(log, verifier, [(path, cp) for path, cp in exported if cp is not None], report, progress,
                          state, incremental)
    except sqlite3.DatabaseError as exc:
        report.add(f"{log.path}: the database is damaged ({exc}); it is not repaired, restore it from a backup")
    except AuditDataError as exc:  # a table holding what tether never writes, where no check could go on
        report.add(str(exc), exc.leaf)
    if report.ok and reached is not None and (state is None or reached.size > state.size):
        try:
            save_state(log.dot, reached)
        except OSError as exc:
            report.warnings.append(f"cannot remember the verified checkpoint ({exc}); the next verify is a full one")
    return report


def _verify(log: AuditLog, verifier: Verifier, exported: list[tuple[str, Checkpoint]], report: VerifyReport,
            progress: Callable[[str, int, int], None] | None = None, state: VerifiedState | None = None,
            incremental: bool = False) -> VerifiedState | None:
    """Check the log into ``report``; returns the state to remember (the latest checkpoint whose
    root was recomputed here), or None."""
    store = log.store
    if not incremental:
        for message in store.integrity_problems()[:MAX_LISTED]:
            report.add(f"{log.path}: SQLite integrity check: {message}")
    report.tree_size = store.size()
    report.purged_to = store.first_index()
    # COUNT(*) walks the whole table: the incremental mode reports the number the tree size implies
    report.records = report.tree_size - report.purged_to if incremental else store.leaf_count()
    origin = log.origin

    # ---- signed checkpoints and the consistency between successive ones -------------------------
    checkpoints = store.checkpoints()
    report.checkpoints = len(checkpoints)
    intact: list[CheckpointRow] = [row for row in checkpoints if row.damage is None]
    report.latest_checkpoint = intact[-1].size if intact else None
    targets: dict[int, list[tuple[str, bytes]]] = {}
    previous: tuple[int, bytes] | None = None
    for number, row in enumerate(checkpoints, start=1):
        if row.damage is not None:
            report.add(f"checkpoint #{number}: {row.damage}")
            continue
        if incremental and state is not None and row.size < state.size:
            continue  # checked by the verify that reached size state.size; --full checks them again
        label = f"checkpoint #{number} (size {row.size})"
        try:
            parsed = open_checkpoint(row.note, verifier, origin)
        except NoteError as exc:
            report.add(f"{label}: {exc}")
            continue
        if parsed.size != row.size or parsed.root != row.root:
            report.add(f"{label}: its size or root column disagrees with its signed note (changed)")
        if previous is not None:
            if row.previous_size != previous[0]:
                report.add(f"{label}: recorded as following size {row.previous_size}, but the checkpoint before it has size {previous[0]} (a checkpoint was removed)")
            try:
                verify_consistency(previous[0], parsed.size, row.consistency, previous[1], parsed.root)
            except ProofError as exc:
                report.add(f"{label}: not consistent with the checkpoint before it (size {previous[0]}): {exc}")
        previous = (parsed.size, parsed.root)
        targets.setdefault(parsed.size, []).append((label, parsed.root))
    for path, checkpoint in exported:
        entry = {"path": path, "size": checkpoint.size, "root": checkpoint.root.hex(), "ok": True}
        report.exported.append(entry)
        for label, root in targets.get(checkpoint.size, []):
            if root != checkpoint.root:
                entry["ok"] = False
                report.add(f"exported checkpoint {path} (size {checkpoint.size}) and the log's {label} have different roots: "
                           "the log was rewritten and re-signed (split view)")
        targets.setdefault(checkpoint.size, []).append((f"exported checkpoint {path} (size {checkpoint.size})", checkpoint.root))
    if state is not None:
        remembered = f"the tree verified earlier through checkpoint size {state.size}"
        if not any(root == state.root for _, root in targets.get(state.size, [])):
            report.add(f"the log has no signed checkpoint of size {state.size} with the root verified earlier: "
                       "checkpoints were removed or the log was rewritten and re-signed")
        targets.setdefault(state.size, []).append((remembered, state.root))
    for size in sorted(targets):
        if size > report.tree_size:
            labels = ", ".join(label for label, _ in targets[size])
            report.add(f"leaf {report.tree_size}: missing: {labels} covers {size} records but the log ends at {report.tree_size} (deleted)",
                       report.tree_size)

    # ---- the retained prefix after a purge, or the tree verified earlier ---------------------------
    start = report.purged_to
    compact: list[tuple[int, bytes]] = []  # (level, hash), leftmost first
    purges = store.purges()
    previous_hash: str | None = None
    if incremental and state is not None:
        start = report.verified_from = state.size
        ranges = state.compact().ranges()
        compact = [((b - a).bit_length() - 1, value) for (a, b), value in zip(ranges, state.frontier, strict=True)]
        previous_hash = state.last_hash.hex() if state.last_hash is not None else None
        _check_older_exports(store, exported, state, report)
    elif start:
        kept = purges[-1].frontier if purges else []
        expected_ranges = CompactRange(start, [b""] * bin(start).count("1")).ranges()
        if [(a, b) for a, b, _ in kept] != expected_ranges:
            report.add(f"the subtrees kept for the purged prefix (leaves 0..{start - 1}) are missing or malformed", 0)
            return
        compact = [((b - a).bit_length() - 1, value) for a, b, value in kept]
    for size in sorted(targets):
        if size < start and not incremental:
            report.warnings.append(
                f"checkpoint size {size} lies in the purged prefix: checked by signature and consistency chain only")

    # ---- every record ---------------------------------------------------------------------------------
    erasures = store.erasures()
    for erasure in erasures.values():
        if erasure.damage is not None:
            if erasure.index >= 0:
                report.add(f"leaf {erasure.index}: its erasure record: {erasure.damage}", erasure.index)
            else:
                report.add(f"an erasure record: {erasure.damage}")
    intact_payloads = []
    for payload in store.iter_payloads(start):
        if payload.damage is None:
            intact_payloads.append(payload)
        elif payload.index >= 0:
            report.add(f"leaf {payload.index}: its stored payload: {payload.damage}", payload.index)
        else:
            report.add(f"a stored payload: {payload.damage}")
    payload_rows = iter(intact_payloads)
    next_payload = next(payload_rows, None)
    matched_size = start  # the largest size whose roots all matched so far
    tree_broken = False
    suspect_block: tuple[int, int] | None = None
    expected = start
    previous_claim: int | None = None
    last_purge_record: Record | None = None

    def compact_root() -> bytes:
        result: bytes | None = None
        for _, value in reversed(compact):
            result = value if result is None else node_hash(value, result)
        return result if result is not None else EMPTY_ROOT

    def check_targets(size: int) -> None:
        nonlocal matched_size, tree_broken
        if size not in targets or tree_broken:
            return
        root = compact_root()
        bad = [label for label, expected_root in targets[size] if expected_root != root]
        if not bad:
            matched_size = size
            return
        tree_broken = True
        if any(low_bound <= leaf < size for leaf in report.bad_leaves() for low_bound in [matched_size]):
            return  # the bad leaves already named explain the different root
        if suspect_block is not None:
            low, high = suspect_block
            where = f"leaves {low}..{high - 1}"
        else:
            low, high = matched_size, size
            where = f"leaves {low}..{high - 1}" if high - low > 1 else f"leaf {low}"
        # A root names no leaf: the narrowest range the evidence allows is reported (one leaf when
        # the two sizes are adjacent), never a guess.
        report.add(f"{where}: the records recomputed do not give the root of {bad[0]}: "
                   "records were changed and their hashes rewritten" + (" (the log was re-signed)" if "exported" in bad[0] else ""),
                   low if high - low == 1 else None, (low, high))

    check_targets(start)
    listed = 0
    latest = report.latest_checkpoint
    reached: VerifiedState | None = None
    if state is not None and latest == state.size:
        reached = state
    for row in store.iter_leaves(start):
        report.records_read += 1
        if listed >= MAX_LISTED:
            break
        bad_leaves = report.bad_leaves()
        index = row.index
        if index != expected:
            report.add(f"leaf {expected}: missing from the log (deleted)" + (f"; leaves {expected}..{index - 1} are gone" if index - expected > 1 else ""), expected)
            tree_broken = True
            listed += 1
            expected = index
        if row.damage is not None:
            report.add(f"leaf {index}: {row.damage}", index)
            listed += 1
        recomputed = leaf_hash(row.leaf)
        try:
            record = Record.from_leaf(row.leaf)
        except ValueError as exc:
            report.add(f"leaf {index}: not a valid audit record ({exc}): changed", index)
            listed += 1
            record = None
        if record is not None:
            if record.index != index:
                if previous_claim is not None and record.index == previous_claim:
                    report.add(f"leaf {index - 1}: inserted (leaves {index - 1} and {index} both hold a record written as leaf {record.index})", index - 1)
                elif record.index > index:
                    report.add(f"leaf {index}: holds the record written as leaf {record.index}: records before it were deleted", index)
                else:
                    report.add(f"leaf {index}: holds the record written as leaf {record.index}: records were reordered or inserted", index)
                listed += 1
            previous_claim = record.index
            if index == 0 and record.prev != FIRST_PREV:
                report.add("leaf 0: does not start the chain of leaf hashes: changed", 0)
                listed += 1
            elif (incremental and 0 < index == start and record.prev != previous_hash and record.index == index):
                report.add(f"leaf {index}: does not continue the hash chain from leaf {index - 1} as verified earlier: "
                           "records were changed, inserted or deleted", index)
                listed += 1
            elif (index > start and previous_hash is not None and record.prev != previous_hash and record.index == index
                  and index - 1 not in bad_leaves):
                report.add(f"leaf {index - 1}: changed: its record and its stored hash were both rewritten "
                           f"(leaf {index} still links to the original)", index - 1)
                listed += 1
            if record.type == PURGE:
                last_purge_record = record
        if recomputed != row.leaf_hash:
            report.add(f"leaf {index}: the record changed after it was written (it no longer hashes to its leaf hash)", index)
            listed += 1
        elif record is not None and (row.request_id, row.subject, row.time, row.version_id or "") != (
                record.request_id, record.subject, record.time, record.version_id):
            report.add(f"leaf {index}: its query columns (request, subject, time, version) disagree with the record: changed", index)
            listed += 1
        # payloads
        while next_payload is not None and next_payload.index < index:
            report.add(f"leaf {next_payload.index}: a stored {next_payload.field} payload has no record", next_payload.index)
            next_payload = next(payload_rows, None)
        kept: dict[str, Any] = {}
        while next_payload is not None and next_payload.index == index:
            kept[next_payload.field] = next_payload
            next_payload = next(payload_rows, None)
        if record is not None:
            for name, salt in (("input", row.input_salt), ("output", row.output_salt)):
                digest = getattr(record, f"{name}_digest")
                erasure = erasures.get((index, name))
                content = kept.get(name)
                if digest is None:
                    if salt is not None or content is not None:
                        report.add(f"leaf {index}: has a {name} payload but its record commits to none", index)
                    continue
                if erasure is not None and erasure.damage is not None:
                    continue  # reported above
                if erasure is not None:
                    report.erased.append({"leaf": index, "field": name, "time": erasure.time, "reason": erasure.reason})
                    if salt is not None or content is not None:
                        report.warnings.append(f"leaf {index}: {name} payload marked erased but its salt or content is still stored")
                    continue
                if salt is None:
                    report.add(f"leaf {index}: the {name} payload's salt is gone without an erasure record (deleted outside `tether audit erase`)", index)
                    continue
                if content is not None:
                    report.payloads_checked += 1
                    if salted_digest(salt, content.content) != digest:
                        report.add(f"leaf {index}: the stored {name} payload does not match its digest: changed", index)
        previous_hash = recomputed.hex()
        # the tree
        compact.append((0, recomputed))
        size = index + 1
        while len(compact) >= 2 and compact[-1][0] == compact[-2][0]:
            level = compact[-1][0]
            right = compact.pop()[1]
            left = compact.pop()[1]
            merged = node_hash(left, right)
            compact.append((level + 1, merged))
            if level + 1 >= CACHE_LEVEL and suspect_block is None:
                node_index = (size >> (level + 1)) - 1
                try:
                    cached = store.get_node(level + 1, node_index)
                except AuditDataError as exc:
                    report.add(str(exc))
                    cached = None
                    suspect_block = (node_index << (level + 1), (node_index + 1) << (level + 1))
                if cached is not None and cached != merged:
                    suspect_block = (node_index << (level + 1), (node_index + 1) << (level + 1))
        check_targets(size)
        if size == latest and matched_size == size and not tree_broken:
            reached = VerifiedState(origin, size, compact_root(), [value for _, value in compact], recomputed)
        expected = index + 1
        if progress is not None and not expected % 8192:
            progress("verifying records", expected - start, report.tree_size - start)
    if listed >= MAX_LISTED:
        report.warnings.append(f"stopped after {MAX_LISTED} bad leaves")
    if suspect_block is not None and not tree_broken:
        report.add(f"the cached tree nodes over leaves {suspect_block[0]}..{suspect_block[1] - 1} disagree with the records (the cache was changed)")
    if start and last_purge_record is not None:
        kept_root = CompactRange(start, [value for _, _, value in purges[-1].frontier]).root().hex()
        if last_purge_record.attributes.get("purged_prefix_root") != kept_root:
            report.add(f"leaf {last_purge_record.index}: the purge record does not match the subtrees kept for the purged prefix", last_purge_record.index)
    return reached


def _check_export_policy(log: AuditLog, report: VerifyReport) -> None:
    """The declared export interval: a problem in tier 'regulated', else a warning. It says
    nothing about the records, so it is checked once, apart from them (a late export never sends
    an incremental verify into a full one)."""
    try:
        overdue = log.export_overdue()
    except AuditDataError as exc:
        report.add(str(exc))
        return
    if overdue:
        if log.settings.tier == "regulated":
            report.add(f"tier 'regulated': {overdue}")
        else:
            report.warnings.append(overdue)


def _check_older_exports(store: AuditStore, exported: list[tuple[str, Checkpoint]], state: VerifiedState,
                         report: VerifyReport) -> None:
    """Exported checkpoints older than the verified tree: an RFC 9162 consistency proof to it.

    The proof's nodes come from the database, but it is checked against the exported root and the
    remembered one, both trusted: a forged node only makes it fail."""
    view = TreeView(store)
    for path, checkpoint in exported:
        if checkpoint.size >= state.size:
            continue
        if checkpoint.size < view.purged_to:
            report.warnings.append(f"exported checkpoint {path} (size {checkpoint.size}) lies in the purged prefix: "
                                   "checked against the log's checkpoint of the same size only")
            continue
        try:
            proof = consistency_proof(checkpoint.size, state.size, view.subtree)
            verify_consistency(checkpoint.size, state.size, proof, checkpoint.root, state.root)
        except (ProofError, VerificationError) as exc:
            report.add(f"exported checkpoint {path} (size {checkpoint.size}) is not consistent with the tree verified "
                       f"earlier (size {state.size}): records before leaf {state.size} were rewritten and re-signed, "
                       f"or the stored tree nodes were changed ({exc})", span=(0, checkpoint.size))
