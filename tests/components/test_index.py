"""The index kind: declaration, snapshot, rebuild flags and stale-artifact detection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tether.components.base import ComponentError, Snapshot
from tether.components.index import IndexKind
from tether.components.registry import get_kind
from tether.project.worktree import WorkingTree

from .model_helpers import DigestReader

KIND = IndexKind()
BASE: dict[str, Any] = {
    "documents": ["kb/**/*.md"],
    "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
    "chunking": {"size": 512, "overlap": 64},
    "artifact": "index/kb.faiss",
}


def _project(root: Path, docs: dict[str, str], artifact: bytes | None = b"FAISS-1") -> Path:
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if artifact is not None:
        (root / "index").mkdir(parents=True, exist_ok=True)
        (root / "index" / "kb.faiss").write_bytes(artifact)
    return root


def _snap(root: Path, **changes: Any) -> Snapshot:
    table = {**BASE, **changes}
    table = {key: value for key, value in table.items() if value is not None}
    spec = KIND.validate("kb", table)
    return KIND.snapshot("kb", spec, WorkingTree(root))


DOCS = {"kb/a.md": "alpha", "kb/sub/b.md": "beta"}


def test_registry_serves_the_index_kind() -> None:
    assert isinstance(get_kind("index"), IndexKind)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"embedding_model": "m"}, "missing required key 'documents'"),
        ({"documents": ["kb/*.md"]}, "missing required key 'embedding_model'"),
        ({"documents": [], "embedding_model": "m"}, "documents: expected a non-empty list"),
        ({"documents": "kb/*.md", "embedding_model": "m"}, "documents: expected a non-empty list"),
        ({"documents": ["kb"], "embedding_model": ""}, "embedding_model: must not be empty"),
        ({"documents": ["kb"], "embedding_model": "m", "chunking": 512}, "chunking: expected a table"),
        ({"documents": ["kb"], "embedding_model": "m", "params": {"x": float("nan")}}, "params"),
        ({"documents": ["kb"], "embedding_model": "m", "artifact": 3}, "artifact: expected a string"),
        ({"documents": ["kb"], "embedding_model": "m", "index": "x"}, "components.kb.index: unknown key"),
    ],
)
def test_invalid_declarations(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        KIND.validate("kb", table)


def test_spec_from_add() -> None:
    table = KIND.spec_from_add("kb", ["kb/**/*.md"], {"embedding_model": "m"})
    assert KIND.validate("kb", table) == {"documents": ["kb/**/*.md"], "embedding_model": "m"}


def test_snapshot_meta_and_files(tmp_path: Path) -> None:
    snap = _snap(_project(tmp_path, DOCS))
    assert sorted(snap.meta["documents"]) == ["kb/a.md", "kb/sub/b.md"]
    assert snap.meta["artifact"] == "index/kb.faiss"
    assert [entry.path for entry in snap.files] == ["index/kb.faiss", "kb/a.md", "kb/sub/b.md"]
    assert snap.meta["documents"]["kb/a.md"] == snap.file("kb/a.md").digest  # type: ignore[union-attr]
    without = _snap(tmp_path, artifact=None)
    assert without.meta["artifact"] is None
    assert [entry.path for entry in without.files] == ["kb/a.md", "kb/sub/b.md"]


def test_missing_documents_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match=re.escape("components.kb.documents: 'kb/**/*.md' matches no files")):
        _snap(tmp_path)


def test_embedding_model_change_requires_a_rebuild(tmp_path: Path) -> None:
    root = _project(tmp_path, DOCS)
    diff = KIND.diff("kb", _snap(root), _snap(root, embedding_model="BAAI/bge-small-en-v1.5"), DigestReader())
    assert diff.flags == ["REBUILD REQUIRED"]
    assert diff.lines[0] == (
        "REBUILD REQUIRED: embedding_model changed: sentence-transformers/all-MiniLM-L6-v2 -> BAAI/bge-small-en-v1.5"
    )
    assert "artifact index/kb.faiss unchanged while embedding_model changed: stale index?" in diff.lines
    assert diff.summary.startswith("embedding_model changed")  # the flag names the rebuild, once


def test_the_rebuild_flag_is_shown_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tether.cli.render import _render_component_diff

    root = _project(tmp_path, DOCS)
    diff = KIND.diff("kb", _snap(root), _snap(root, embedding_model="BAAI/bge-small-en-v1.5"), DigestReader())
    capsys.readouterr()
    _render_component_diff(diff)
    header = capsys.readouterr().out.splitlines()[0]
    assert header.count("REBUILD REQUIRED") == 1, header
    assert header.startswith("changed  kb (index) REBUILD REQUIRED: embedding_model changed"), header


def test_chunking_change_requires_a_rebuild_and_params_are_listed(tmp_path: Path) -> None:
    root = _project(tmp_path, DOCS)
    old = _snap(root, params={"nlist": 100, "metric": "ip"})
    new = _snap(root, chunking={"size": 256, "overlap": 64}, params={"nlist": 200, "metric": "ip", "nprobe": 8})
    diff = KIND.diff("kb", old, new, DigestReader())
    assert diff.flags == ["REBUILD REQUIRED"]
    assert 'REBUILD REQUIRED: chunking changed: {"overlap":64,"size":512} -> {"overlap":64,"size":256}' in diff.lines
    assert "params.nlist: 100 -> 200" in diff.lines
    assert "params.nprobe: (unset) -> 8" in diff.lines
    assert not any("metric" in line for line in diff.lines)


def test_document_changes_and_a_stale_artifact(tmp_path: Path) -> None:
    old_root = _project(tmp_path / "old", DOCS)
    new_root = _project(tmp_path / "new", {"kb/a.md": "alpha v2", "kb/c.md": "gamma"})
    diff = KIND.diff("kb", _snap(old_root), _snap(new_root), DigestReader())
    assert diff.flags == []
    assert diff.lines == [
        "document added: kb/c.md",
        "document removed: kb/sub/b.md",
        "document changed: kb/a.md",
        "artifact index/kb.faiss unchanged while documents changed: stale index?",
    ]
    assert diff.summary == "documents: 1 changed, 1 added, 1 removed; artifact unchanged: stale index?"


def test_rebuilt_artifact_is_not_stale(tmp_path: Path) -> None:
    old_root = _project(tmp_path / "old", DOCS)
    new_root = _project(tmp_path / "new", {**DOCS, "kb/a.md": "alpha v2"}, artifact=b"FAISS-2")
    diff = KIND.diff("kb", _snap(old_root), _snap(new_root), DigestReader())
    assert diff.lines == ["document changed: kb/a.md", "artifact index/kb.faiss rebuilt"]
    assert not any("stale" in line for line in diff.lines)


def test_added_unchanged_removed(tmp_path: Path) -> None:
    snap = _snap(_project(tmp_path, DOCS))
    assert KIND.diff("kb", snap, snap, DigestReader()).status == "unchanged"
    added = KIND.diff("kb", None, snap, DigestReader())
    assert added.status == "added"
    assert added.summary == "added: 2 documents, embedding model sentence-transformers/all-MiniLM-L6-v2"
    assert KIND.diff("kb", snap, None, DigestReader()).status == "removed"
