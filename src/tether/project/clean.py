"""The clean-tree certificate: answer "did anything change?" without snapshotting anything.

Whenever a full snapshot of the working tree is taken (``status``, ``commit``), tether records
what it consulted: every file's stat signature and digest, every path expansion (folders,
globs) with the files it found, the ``tether.toml`` signature, and the resulting component ->
snapshot digest map. :func:`check_clean` then proves the tree still matches the current version
with a few ``stat`` calls, a directory walk and one indexed read of the metadata database, with
no import of SQLAlchemy or the component kinds. A file whose signature moved is re-hashed (all
cores) and compared with its recorded digest: a byte-identical re-save is still clean, and the
stat cache learns the new signature. Anything else unexpected returns None, and the caller runs
the full snapshot, which is always right: the certificate can only make a clean answer faster.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.project.statcache import RACY_NS, StatCache, settled, signature
from tether.store.atomic import atomic_write_bytes

CERT_FORMAT = "tether.clean/3"  # 2: certified only when tether.toml also matches the version's copy; 3: signatures hold the mode
CERT_PATH = Path("cache") / "clean.json"


@dataclass(frozen=True)
class CleanTree:
    """A proven-clean working tree: where HEAD is and the components it holds (in declared order)."""

    branch: str | None
    head: str
    components: list[tuple[str, str]]  # (name, kind)
    tier: str


def _tether_version() -> str:
    from tether import __version__

    return __version__


def invalidate(dot: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (dot / CERT_PATH).unlink()


def record(
    dot: Path,
    project_path: Path,
    project_raw: bytes,
    observed: dict[str, dict[str, Any]],
    expansions: list[tuple[list[str], str, list[str]]],
    components: list[tuple[str, str, str]],
    metadata_url: str,
    tier: str,
) -> bool:
    """Write the certificate for a tree whose snapshots gave ``components`` (name, kind, digest).

    Nothing is written (and an older certificate is removed) when any consulted file is too
    fresh to trust its signature, or ``tether.toml`` is no longer the one the snapshots used.
    """
    now = time.time_ns()
    try:
        toml_st = project_path.stat()
        same_file = project_path.read_bytes() == project_raw
    except OSError:
        same_file = False
    files: dict[str, dict[str, Any]] = {}
    for rel, seen in observed.items():
        sig = seen["sig"]
        if max(sig[1], sig[3]) >= now - RACY_NS:
            same_file = False
            break
        files[rel] = {"sig": sig, "digest": seen.get("digest")}
    if not same_file or not settled(toml_st, now):
        invalidate(dot)
        return False
    body = {
        "format": CERT_FORMAT,
        "tether": _tether_version(),
        "toml": signature(toml_st),
        "metadata": metadata_url,
        "tier": tier,
        "components": [[name, kind, digest] for name, kind, digest in components],
        "files": files,
        "expansions": [[patterns, field, found] for patterns, field, found in expansions],
    }
    atomic_write_bytes(dot / CERT_PATH, json.dumps(body, separators=(",", ":")).encode("utf-8"), durable=False)
    return True


def _head(dot: Path) -> tuple[str | None, str | None]:
    """(branch, detached version ID) as ``.tether/HEAD`` says."""
    try:
        text = (dot / "HEAD").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return "main", None
    if text.startswith("ref: "):
        return text[len("ref: ") :], None
    return None, text or None


def check_clean(root: Path, project_file: str = "tether.toml") -> CleanTree | None:
    """The current version, when the certificate proves the tree matches it; else None."""
    dot = root / ".tether"
    try:
        cert = json.loads((dot / CERT_PATH).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(cert, dict) or cert.get("format") != CERT_FORMAT or cert.get("tether") != _tether_version():
        return None
    try:
        if signature((root / project_file).stat()) != cert["toml"]:
            return None
    except OSError:
        return None
    head = _current_version(root, dot, cert["metadata"])
    if head is None:
        return None
    branch, version_id, manifest_components = head
    components = [(str(name), str(kind), str(digest)) for name, kind, digest in cert["components"]]
    if manifest_components != {name: digest for name, _, digest in components}:
        return None
    if not _tree_unchanged(root, dot, cert, project_file):
        return None
    return CleanTree(branch, version_id, [(name, kind) for name, kind, _ in components], str(cert["tier"]))


def _current_version(root: Path, dot: Path, metadata_url: str) -> tuple[str | None, str, dict[str, str]] | None:
    """(branch, version ID, component -> snapshot digest) of HEAD, read without SQLAlchemy."""
    from tether.ids import digest_bytes
    from tether.meta.base import MetadataError
    from tether.meta.sqlite_reader import SqliteReader, sqlite_path

    path = sqlite_path(metadata_url, root)
    if path is None:
        return None
    branch, detached = _head(dot)
    try:
        reader = SqliteReader(path)
    except MetadataError:
        return None
    try:
        version_id = reader.get_branch(branch) if branch is not None else detached
        record = reader.get_version(version_id) if version_id else None
    except MetadataError:
        return None
    finally:
        reader.close()
    if record is None or digest_bytes(record.manifest) != record.version_id:
        return None
    manifest = json.loads(record.manifest)
    components = {name: item["snapshot"] for name, item in manifest.get("components", {}).items()}
    return branch, record.version_id, components


def _tree_unchanged(root: Path, dot: Path, cert: dict[str, Any], project_file: str) -> bool:
    """Every expansion finds the same files and every file holds the same bytes."""
    from tether.components.base import ComponentError
    from tether.ids import digest_file
    from tether.project.worktree import WorkingTree

    tree = WorkingTree(root, None, project_file)
    try:
        for patterns, field, found in cert["expansions"]:
            if tree.expand(patterns, field) != found:
                return False
        resaved: dict[str, tuple[os.stat_result, str]] = {}
        for rel, info in cert["files"].items():
            path, st = tree.checked(rel, rel)
            if signature(st) == info["sig"]:
                continue
            if info.get("digest") is None or st.st_size != info["sig"][0]:
                return False
            if info["sig"][4:] != [st.st_mode]:  # same bytes, new permissions: a change (chmod +x)
                return False
            digest, _ = digest_file(path)
            if signature(os.stat(path)) != signature(st):
                return False
            if digest != info["digest"]:
                _remember(dot, rel, st, digest)  # the full snapshot that follows need not hash it again
                return False
            resaved[rel] = (st, digest)
    except (ComponentError, OSError):
        return False
    if resaved:
        _learn(dot, cert, resaved)
    return True


def _remember(dot: Path, rel: str, st: os.stat_result, digest: str) -> None:
    cache = StatCache(dot / "cache" / "stat.json")
    cache.put(rel, st, "digest", digest)
    cache.save()


def _learn(dot: Path, cert: dict[str, Any], resaved: dict[str, tuple[os.stat_result, str]]) -> None:
    """Byte-identical re-saves: move the cached values and the certificate to the new signatures."""
    cache = StatCache(dot / "cache" / "stat.json")
    now = time.time_ns()
    for rel, (st, digest) in resaved.items():
        cache.carry_over(rel, st, digest)
        if settled(st, now):
            cert["files"][rel]["sig"] = signature(st)
    cache.save()
    atomic_write_bytes(dot / CERT_PATH, json.dumps(cert, separators=(",", ":")).encode("utf-8"), durable=False)


def certify(project: Any, tree: Any, components: list[tuple[str, str, str]]) -> bool:
    """Record the certificate after ``project`` snapshotted ``tree`` into ``components``
    (name, kind, snapshot digest, in declared order); False when nothing could be recorded."""
    from tether.project.projectfile import PROJECT_FILE

    return record(
        project.dot,
        project.root / PROJECT_FILE,
        project.file.raw,
        tree.observed,
        tree.expansions,
        components,
        project.file.metadata_url,
        project.file.tier,
    )
