"""What the project layer adds to the object store: commit/gc exclusion, delta hints, recipe-aware
gc closure and fsck.

Objects are written before the metadata transaction that makes them reachable, so between the
two a commit's objects look like garbage. Two guards keep ``gc`` from taking them: a lock file
in ``.tether/`` that every commit holds *shared* from its first object to its metadata
transaction and ``gc`` holds *exclusive* (so the two never overlap on one machine), and the grace
period (objects younger than it are kept, with everything they are assembled from), which also
covers writers on other machines sharing a store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.components import Snapshot
from tether.errors import CheckFailedError, UsageError
from tether.store import ObjectStore, StoreError, StoreHint

LOCK_FILE = "gc.lock"
WORKTREE_LOCK_FILE = "worktree.lock"
#: how long gc waits for in-flight commits before refusing
GC_WAIT_SECONDS = 30.0
#: stores at least this large report fsck/gc progress in bytes (a bar on the terminal)
LARGE_STORE_BYTES = 64 * 1024 * 1024

Progress = Callable[[str, int, int], None]


@contextlib.contextmanager
def _locked(dot: Path, mode: int, wait_seconds: float | None) -> Iterator[None]:
    dot.mkdir(parents=True, exist_ok=True)
    fd = os.open(dot / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if wait_seconds is None:
            fcntl.flock(fd, mode)
        else:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CheckFailedError(
                            f"gc: a commit is in flight in {dot.parent} (lock {dot / LOCK_FILE} is held); "
                            "nothing was removed, run gc again when it has finished"
                        ) from None
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def commit_lock(dot: Path) -> contextlib.AbstractContextManager[None]:
    """Held (shared) by a commit from its first stored object until its version is recorded."""
    return _locked(dot, fcntl.LOCK_SH, None)


def gc_lock(dot: Path, wait_seconds: float | None = None) -> contextlib.AbstractContextManager[None]:
    """Held (exclusive) by gc: waits for in-flight commits (:data:`GC_WAIT_SECONDS`), then refuses
    with exit 1."""
    return _locked(dot, fcntl.LOCK_EX, GC_WAIT_SECONDS if wait_seconds is None else wait_seconds)


@contextlib.contextmanager
def checkout_lock(dot: Path, clean: Callable[[bool], object]) -> Iterator[None]:
    """Held (shared) by a checkout while it stages files in the working tree, so gc (which holds
    the lock exclusively and then removes every tether temporary file in the tree) never takes a
    staging file still being written.

    First ``clean(alone)`` runs: ``alone`` is True when no other tether process held the lock (a
    commit, gc or another checkout), so every tether temporary file in the tree is a leftover of a
    killed process; otherwise only old ones are.
    """
    dot.mkdir(parents=True, exist_ok=True)
    fd = os.open(dot / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        clean(alone)
        fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive to shared, or wait for a running gc
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def worktree_lock(dot: Path) -> Iterator[None]:
    """Held (exclusive) by a command that reads HEAD and then changes it, the tree's base or the
    working tree (commit, checkout into the tree, compose, branch -d): two of them in one working
    copy take turns, so neither records a base or switches HEAD from a state the other has just
    changed. It waits; a killed holder's lock goes with its process."""
    dot.mkdir(parents=True, exist_ok=True)
    fd = os.open(dot / WORKTREE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def store_hints(snapshots: dict[str, Snapshot], parent: dict[str, Snapshot]) -> dict[str, StoreHint]:
    """Per file digest: the parent version's file at the same path (a delta base candidate), the
    parent's other safetensors files of the same component (where a re-shard moved tensors),
    the tensor digests the snapshot already computed, and the path for warnings."""
    previous = {entry.path: entry.digest for snap in parent.values() for entry in snap.files}
    hints: dict[str, StoreHint] = {}
    for name, snap in snapshots.items():
        old_snap = parent.get(name)
        shards = [entry for entry in old_snap.files if entry.path.lower().endswith(".safetensors")] if old_snap else []
        tables = snap.meta.get("safetensors") if isinstance(snap.meta, dict) else None
        for entry in snap.files:
            table = tables.get(entry.path) if isinstance(tables, dict) else None
            tensors = table.get("tensors") if isinstance(table, dict) else None
            old = previous.get(entry.path)
            hints[entry.digest] = StoreHint(
                previous=old if old != entry.digest else None,
                tensors=tensors if isinstance(tensors, dict) else None,
                label=entry.path,
                related=tuple(shard.digest for shard in shards if shard.path != entry.path),
            )
    return hints


def keep_closure(store: ObjectStore, roots: Iterable[str], grace_seconds: float) -> set[str]:
    """Every object gc must keep: the roots, every object younger than the grace period (a commit
    in flight elsewhere may need it), and everything those are assembled from."""
    keep, _ = grace_closure(store, roots, grace_seconds)
    return keep


def grace_closure(store: ObjectStore, roots: Iterable[str], grace_seconds: float) -> tuple[set[str], set[str]]:
    """(keep, young): what :func:`keep_closure` keeps, and the part of it kept only for the grace
    period (unreferenced objects younger than it, and what they alone are assembled from)."""
    referenced = _parts_closure(store, set(roots))
    young: set[str] = set()
    for digest in store.iter_digests():
        if digest not in referenced:
            with contextlib.suppress(StoreError):
                if store.age_seconds(digest) < grace_seconds:
                    young.add(digest)
    young = _parts_closure(store, young) - referenced
    return referenced | young, young


def _parts_closure(store: ObjectStore, keep: set[str]) -> set[str]:
    """``keep`` with everything its objects are assembled from."""
    pending = list(keep)
    while pending:
        digest = pending.pop()
        try:
            parts = store.parts(digest)
        except StoreError:
            continue  # a broken recipe: fsck names it; its parts age out like any garbage
        for part in parts:
            if part not in keep:
                keep.add(part)
                pending.append(part)
    return keep


#: users named in a problem's text; ``--json`` lists every one
SHOWN_USERS = 3


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def needed_by_text(users: list[tuple[str, str]]) -> str:
    """Who needs an object, for one line: the user when there is one, else how many and the first
    few (``needed by 3 versions: a, b, c (component m file w)``). ``users`` are (who, what)
    pairs: (``version e8d927561ad6``, ``component m file w``), (``eval run 1a2b3c4d5e6f``, ``body``)."""
    if not users:
        return ""
    whos = list(dict.fromkeys(who for who, _ in users))
    whats = list(dict.fromkeys(what for _, what in users))
    if len(whos) == 1:
        shown = ", ".join(whats[:SHOWN_USERS]) + (f" and {len(whats) - SHOWN_USERS} more" if len(whats) > SHOWN_USERS else "")
        return f"needed by {whos[0]} {shown}"
    counts: dict[str, int] = {}
    for who in whos:
        noun, _, _ = who.rpartition(" ")
        counts[noun] = counts.get(noun, 0) + 1
    nouns = " and ".join(_plural(count, noun) for noun, count in counts.items())
    names = [who.rpartition(" ")[2] if len(counts) == 1 else who for who in whos]
    listed = ", ".join(names[:SHOWN_USERS]) + (f" and {len(names) - SHOWN_USERS} more" if len(names) > SHOWN_USERS else "")
    what = f" ({whats[0]})" if len(whats) == 1 else f" ({whats[0]} and {len(whats) - 1} more)"
    return f"needed by {nouns}: {listed}{what}"


@dataclass
class ObjectProblem:
    """A missing or corrupt object, the files it is a part of, and everything that needs it."""

    digest: str
    problem: str
    users: list[tuple[str, str]]  # (who, what), as in :func:`needed_by_text`
    part_of: list[str]  # the stored files assembled from it

    @property
    def message(self) -> str:
        notes = []
        if self.part_of:
            wholes = ", ".join(digest[:12] for digest in self.part_of[:SHOWN_USERS])
            more = f" and {len(self.part_of) - SHOWN_USERS} more" if len(self.part_of) > SHOWN_USERS else ""
            notes.append(f"part of {wholes}{more}" if len(self.part_of) == 1 else f"part of {len(self.part_of)} files: {wholes}{more}")
        if self.users:
            notes.append(needed_by_text(self.users))
        return f"object {self.digest}: {self.problem}" + (f" ({'; '.join(notes)})" if notes else "")

    def to_json(self) -> dict[str, object]:
        return {
            "object": self.digest,
            "problem": self.problem,
            "part_of": list(self.part_of),
            "needed_by": [f"{who} {what}" for who, what in self.users],
        }


def verify_store(
    store: ObjectStore, needed: dict[str, list[tuple[str, str]]], progress: Progress | None = None
) -> tuple[int, list[ObjectProblem]]:
    """Re-hash every stored object (a file stored in parts is rebuilt and checked whole, after its
    parts were checked one by one); name every corrupt or missing object and who needs it.

    ``needed`` maps each digest a version (or eval run) refers to to its users, (who, what) pairs.
    Returns (objects stored, problems). Progress is reported in bytes for large stores.
    """
    try:
        stored = list(store.iter_digests())
    except PermissionError as exc:
        raise UsageError(f"{exc.filename}: permission denied (the object store cannot be listed)") from None
    stored_set = set(stored)
    problems: list[ObjectProblem] = []
    sizes: dict[str, int] = {}
    for digest in stored:
        try:
            sizes[digest] = store.size(digest)
        except (StoreError, OSError):
            sizes[digest] = 0
    total = sum(sizes.values())
    by_bytes = total >= LARGE_STORE_BYTES
    done = 0
    wholes: dict[str, list[str]] = {}  # part -> the stored files assembled from it
    for digest in stored:
        try:
            for part in store.parts(digest):
                wholes.setdefault(part, [])
                if digest not in wholes[part]:
                    wholes[part].append(digest)
        except (StoreError, OSError):
            continue  # a recipe that does not parse or cannot be read: verify below names it

    def problem(digest: str, what: str) -> ObjectProblem:
        part_of = wholes.get(digest, [])
        users = dict.fromkeys(needed.get(digest, []))
        for whole in part_of:
            users.update(dict.fromkeys(needed.get(whole, [])))
        return ObjectProblem(digest, what, list(users), part_of)

    for index, digest in enumerate(stored, start=1):
        try:
            found = store.check(digest)
        except StoreError as exc:
            problems.append(problem(digest, str(exc)))
        except OSError as exc:
            problems.append(problem(digest, f"cannot be read ({exc.strerror})"))
        else:
            if found is not None:
                problems.append(problem(digest, found))
        done += sizes.get(digest, 0)
        if progress:
            if by_bytes:
                progress("verifying objects (bytes)", done, total)
            else:
                progress("verifying objects", index, len(stored))
    for digest in dict.fromkeys([*needed, *wholes]):
        if digest not in stored_set:
            problems.append(problem(digest, "missing"))
    return len(stored), problems
