"""The ``index`` kind: a retrieval index as its inputs (documents, embedding model, chunking,
params) plus, optionally, the built artifact.

Retrieval quality changes when any input changes, and an index built from other inputs than
the ones declared silently serves stale answers; so the diff flags a needed rebuild and an
artifact that did not move while its documents did.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    Kind,
    Snapshot,
    SnapshotContext,
    check_keys,
    file_status,
    require_type,
)
from tether.ids import canonical_json
from tether.ids.canonical import CanonicalEncodingError

REBUILD = "REBUILD REQUIRED"


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": 1}``; leaves (and empty tables) stay whole."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    return value if isinstance(value, str) else canonical_json(value)


class IndexKind(Kind):
    """Documents (globs), embedding model, chunking, params and an optional built artifact."""

    name: ClassVar[str] = "index"
    allowed_keys: ClassVar[frozenset[str]] = frozenset(
        {"documents", "embedding_model", "chunking", "params", "artifact"}
    )

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys, required=("documents", "embedding_model"))
        where = f"tether.toml: components.{component}"
        documents = table["documents"]
        if (
            not isinstance(documents, list)
            or not documents
            or not all(isinstance(item, str) and item for item in documents)
        ):
            raise ComponentError(f"{where}.documents: expected a non-empty list of paths or globs")
        require_type(component, "embedding_model", table["embedding_model"], str, "a string")
        if not table["embedding_model"].strip():
            raise ComponentError(f"{where}.embedding_model: must not be empty")
        for key in ("chunking", "params"):
            if key in table:
                require_type(component, key, table[key], dict, "a table")
                try:
                    canonical_json(table[key])
                except CanonicalEncodingError as exc:
                    raise ComponentError(f"{where}.{key}: {exc}") from exc
        if "artifact" in table:
            require_type(component, "artifact", table["artifact"], str, "a string")
            if not table["artifact"]:
                raise ComponentError(f"{where}.artifact: must not be empty")
        return dict(table)

    def spec_from_add(self, component: str, sources: list[str], settings: dict[str, Any]) -> dict[str, Any]:
        """Sources are the document globs; ``--set embedding_model=...`` and friends the rest."""
        table: dict[str, Any] = {"documents": list(sources)} if sources else {}
        table.update(settings)
        if isinstance(table.get("documents"), str):
            table["documents"] = [table["documents"]]
        return table

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        documents = ctx.expand(spec["documents"], f"components.{component}.documents")
        entries = {rel: ctx.file_entry(rel) for rel in documents}
        artifact = spec.get("artifact")
        if artifact is not None:
            for rel in ctx.expand([artifact], f"components.{component}.artifact"):
                entries.setdefault(rel, ctx.file_entry(rel))
        meta = {
            "documents": {rel: entries[rel].digest for rel in documents},
            "artifact": artifact,
        }
        return Snapshot(self.name, spec, tuple(entries[rel] for rel in sorted(entries)), meta)

    def diff(self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader) -> ComponentDiff:
        result = ComponentDiff(component, self.name, file_status(old, new))
        if old is None or new is None:
            present = new if new is not None else old
            assert present is not None
            docs = present.meta.get("documents", {})
            result.summary = (
                f"{result.status}: {len(docs)} documents, embedding model {present.spec['embedding_model']}"
            )
            result.lines = [f"document: {path}" for path in sorted(docs)]
            if present.meta.get("artifact"):
                result.lines.append(f"artifact: {present.meta['artifact']}")
            return result
        if result.status == "unchanged":
            result.summary = "unchanged"
            return result

        parts: list[str] = []
        rebuild_reasons: list[str] = []
        for key in ("embedding_model", "chunking"):
            before, after = old.spec.get(key), new.spec.get(key)
            if before != after:
                rebuild_reasons.append(key)
                result.lines.append(f"{REBUILD}: {key} changed: {_show(before)} -> {_show(after)}")
                result.details.append({"change": "rebuild", "field": key, "old": before, "new": after})
        if rebuild_reasons:
            result.flags.append(REBUILD)
            parts.append(f"{', '.join(rebuild_reasons)} changed")  # the flag says REBUILD REQUIRED once

        for key in ("params", "documents", "artifact"):
            before, after = old.spec.get(key), new.spec.get(key)
            if before == after:
                continue
            if key == "params":
                flat_old = _flatten(before, key) if before else {}
                flat_new = _flatten(after, key) if after else {}
                for path in sorted(flat_old.keys() | flat_new.keys()):
                    if flat_old.get(path) != flat_new.get(path):
                        result.lines.append(f"{path}: {_show(flat_old.get(path))} -> {_show(flat_new.get(path))}")
                        result.details.append(
                            {"change": "param", "key": path, "old": flat_old.get(path), "new": flat_new.get(path)}
                        )
                parts.append("params changed")
            else:
                result.lines.append(f"{key}: {_show(before)} -> {_show(after)}")
                result.details.append({"change": "field", "field": key, "old": before, "new": after})

        old_docs: dict[str, str] = old.meta.get("documents", {})
        new_docs: dict[str, str] = new.meta.get("documents", {})
        added = sorted(new_docs.keys() - old_docs.keys())
        removed = sorted(old_docs.keys() - new_docs.keys())
        changed = sorted(path for path in old_docs.keys() & new_docs.keys() if old_docs[path] != new_docs[path])
        for change, paths in (("added", added), ("removed", removed), ("changed", changed)):
            for path in paths:
                result.lines.append(f"document {change}: {path}")
                result.details.append({"change": f"document {change}", "path": path})
        documents_changed = bool(added or removed or changed)
        if documents_changed:
            parts.append(f"documents: {len(changed)} changed, {len(added)} added, {len(removed)} removed")

        old_artifact = _artifact_files(old)
        new_artifact = _artifact_files(new)
        artifact = new.meta.get("artifact")
        if artifact is not None and old.meta.get("artifact") == artifact:
            if old_artifact == new_artifact:
                causes = (["documents"] if documents_changed else []) + rebuild_reasons
                if causes:
                    line = f"artifact {artifact} unchanged while {' and '.join(causes)} changed: stale index?"
                    result.lines.append(line)
                    result.details.append({"change": "stale artifact", "artifact": artifact, "causes": causes})
                    parts.append("artifact unchanged: stale index?")
            else:
                result.lines.append(f"artifact {artifact} rebuilt")
                result.details.append({"change": "artifact rebuilt", "artifact": artifact})
                parts.append("artifact rebuilt")
        result.summary = "; ".join(parts) if parts else "changed"
        return result


def _artifact_files(snapshot: Snapshot) -> dict[str, str]:
    """Digests of the snapshot's files that are not documents (the built artifact)."""
    documents = snapshot.meta.get("documents", {})
    return {entry.path: entry.digest for entry in snapshot.files if entry.path not in documents}
