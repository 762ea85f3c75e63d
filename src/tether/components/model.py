"""The ``model`` kind: a hosted model ID, a hub reference, or weights on disk.

A model is the component whose silent change hurts most (a provider alias moving, a
fine-tune overwriting a checkpoint), so the identity is recorded exactly and weights are
understood tensor by tensor: a diff names the tensors that changed and how many bytes differ.
"""

from __future__ import annotations

import re
from typing import Any, BinaryIO, ClassVar

from tether.components import pinning
from tether.components.base import (
    BlobReader,
    ComponentDiff,
    ComponentError,
    FileEntry,
    Kind,
    PinningFinding,
    Snapshot,
    SnapshotContext,
    check_keys,
    file_status,
    require_type,
)
from tether.components.safetensors_format import (
    count_differing_bytes,
    data_start,
    skip_bytes,
    table_from_blocks,
)
from tether.sizes import human_bytes

#: exact differing-byte counts are computed for at most this many tensors per diff
MAX_COUNTED_TENSORS = 64

_HOSTED_KEYS = ("provider", "id")
_HUB_KEYS = ("hub", "revision")
_WEIGHTS_KEYS = ("path",)
_COMMON_KEYS = ("description", "retired")
_STRING_KEYS = ("provider", "id", "hub", "revision", "path", "description")
_HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FORMS = "provider + id (hosted), hub [+ revision] (hub reference) or path (weights)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def model_form(spec: dict[str, Any]) -> str:
    """``hosted``, ``hub`` or ``weights`` for a validated spec."""
    if "provider" in spec:
        return "hosted"
    if "hub" in spec:
        return "hub"
    return "weights"


def _is_safetensors(path: str) -> bool:
    return path.lower().endswith(".safetensors")


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


class _Cursor:
    """One entry's bytes, positionable anywhere: seeks when it can, else reads through or reopens."""

    def __init__(self, reader: BlobReader, entry: FileEntry):
        self.reader = reader
        self.entry = entry
        self.handle: BinaryIO | None = None
        self.position = 0

    def at(self, offset: int) -> BinaryIO:
        if self.handle is not None and not self.handle.seekable() and offset < self.position:
            self.close()
        if self.handle is None:
            self.handle = self.reader.open(self.entry)
            self.position = 0
        if self.handle.seekable():
            self.handle.seek(offset)
        else:
            skip_bytes(self.handle, offset - self.position)
        self.position = offset
        return self.handle

    def moved_to(self, offset: int) -> None:
        self.position = offset

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class ModelKind(Kind):
    """Hosted (``provider`` + ``id``), hub (``hub`` + ``revision``) or weights (``path``)."""

    name: ClassVar[str] = "model"
    allowed_keys: ClassVar[frozenset[str]] = frozenset(_HOSTED_KEYS + _HUB_KEYS + _WEIGHTS_KEYS + _COMMON_KEYS)

    # -- declaration -------------------------------------------------------------------
    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys)
        where = f"tether.toml: components.{component}"
        forms = [
            form
            for form, keys in (("hosted", _HOSTED_KEYS), ("hub", _HUB_KEYS), ("weights", _WEIGHTS_KEYS))
            if any(key in table for key in keys)
        ]
        if not forms:
            raise ComponentError(f"{where}: give exactly one of {_FORMS}")
        if len(forms) > 1:
            raise ComponentError(f"{where}: mixes the {' and '.join(forms)} forms; give exactly one of {_FORMS}")
        for key in _STRING_KEYS:
            if key in table:
                require_type(component, key, table[key], str, "a string")
                if not table[key].strip():
                    raise ComponentError(f"{where}.{key}: must not be empty")
        if "retired" in table:
            require_type(component, "retired", table["retired"], bool, "true or false")
        form = forms[0]
        if form == "hosted":
            missing = [key for key in _HOSTED_KEYS if key not in table]
            if missing:
                raise ComponentError(f"{where}: 'provider' and 'id' go together (missing '{missing[0]}')")
        elif form == "hub":
            if "hub" not in table:
                raise ComponentError(f"{where}: 'revision' needs 'hub' (the repo id 'org/name')")
            if not _HUB_REPO_RE.match(table["hub"]):
                raise ComponentError(f"{where}.hub: expected a repo id 'org/name', got {table['hub']!r}")
        return dict(table)

    def spec_from_add(self, component: str, sources: list[str], settings: dict[str, Any]) -> dict[str, Any]:
        """One source is a weights ``path``; otherwise the identity comes from ``--set`` settings."""
        if len(sources) > 1:
            raise ComponentError(f"model {component}: give one weights file or folder, not {len(sources)} sources")
        table: dict[str, Any] = {"path": sources[0]} if sources else {}
        for key, value in settings.items():
            if key in _STRING_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)  # `--set revision=1234567` must stay a string
            if key == "retired" and isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            table[key] = value
        return table

    # -- snapshot ----------------------------------------------------------------------
    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        form = model_form(spec)
        if form == "hosted":
            meta: dict[str, Any] = {"form": form, "provider": spec["provider"], "id": spec["id"]}
            return Snapshot(self.name, spec, (), meta)
        if form == "hub":
            meta = {"form": form, "hub": spec["hub"], "revision": spec.get("revision")}
            return Snapshot(self.name, spec, (), meta)
        paths = ctx.expand([spec["path"]], f"components.{component}.path")
        entries_list: list[FileEntry] = []
        tables: dict[str, Any] = {}
        for rel in paths:
            if _is_safetensors(rel):
                entry, tables[rel] = ctx.file_entry_with(
                    rel, "safetensors", lambda blocks, rel=rel: table_from_blocks(blocks, rel)
                )
            else:
                entry = ctx.file_entry(rel)
            entries_list.append(entry)
        entries = tuple(entries_list)
        meta = {
            "form": form,
            "files": {"count": len(entries), "bytes": sum(entry.size for entry in entries)},
            "safetensors": tables,
        }
        return Snapshot(self.name, spec, entries, meta)

    def check_pinning(self, component: str, spec: dict[str, Any]) -> list[PinningFinding]:
        """Hosted IDs and hub revisions are judged by the shipped floating rules; weights are
        content-addressed, hence always pinned."""
        form = model_form(spec)
        if form == "hosted":
            verdict = pinning.judge_hosted(spec["provider"], spec["id"])
            if verdict.level == "unknown":
                return [PinningFinding(component, "unknown", verdict.reason)]
            if verdict.level == "floating":
                message = f"provider '{spec['provider']}' model '{spec['id']}' is floating: {verdict.reason}"
                return [PinningFinding(component, "floating", message)]
        elif form == "hub":
            verdict = pinning.judge_hub(spec["hub"], spec.get("revision"))
            if verdict.level != "pinned":
                message = f"hub reference '{spec['hub']}' is floating: {verdict.reason}"
                return [PinningFinding(component, "floating", message)]
        return []

    # -- diff --------------------------------------------------------------------------
    def diff(self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader) -> ComponentDiff:
        result = ComponentDiff(component, self.name, file_status(old, new))
        if old is None or new is None:
            present = new if new is not None else old
            assert present is not None
            result.summary = f"{result.status}: {_identity(present)}"
            result.lines = _describe(present)
            result.details.append({"change": result.status, "identity": _identity(present)})
            return result
        if result.status == "unchanged":
            result.summary = "unchanged"
            return result

        parts: list[str] = []
        old_form, new_form = model_form(old.spec), model_form(new.spec)
        if old_form != new_form:
            line = f"identity: {_identity(old)} -> {_identity(new)}"
            result.lines.append(line)
            result.details.append({"change": "identity", "old": _identity(old), "new": _identity(new)})
            parts.append(line)
        elif new_form == "hosted":
            parts.extend(_field_changes(result, old.spec, new.spec, _HOSTED_KEYS))
        elif new_form == "hub":
            parts.extend(_field_changes(result, old.spec, new.spec, _HUB_KEYS))
        else:
            parts.extend(_WeightsDiff(old, new, reader, result).run())
        parts.extend(_field_changes(result, old.spec, new.spec, _COMMON_KEYS))
        result.summary = "; ".join(parts) if parts else "changed"
        return result


def _identity(snapshot: Snapshot) -> str:
    spec = snapshot.spec
    form = model_form(spec)
    if form == "hosted":
        return f"hosted {spec['provider']} {spec['id']}"
    if form == "hub":
        revision = spec.get("revision")
        return f"hub {spec['hub']}@{revision}" if revision else f"hub {spec['hub']} (no revision)"
    files = snapshot.meta.get("files", {})
    count = int(files.get("count", len(snapshot.files)))
    total = int(files.get("bytes", sum(entry.size for entry in snapshot.files)))
    return f"weights {spec['path']} ({_plural(count, 'file')}, {human_bytes(total)})"


def _describe(snapshot: Snapshot) -> list[str]:
    """Lines for a model that was added or removed."""
    spec = snapshot.spec
    form = model_form(spec)
    if form == "hosted":
        return [f"provider: {spec['provider']}", f"id: {spec['id']}"]
    if form == "hub":
        return [f"hub: {spec['hub']}", f"revision: {spec.get('revision') or '(none)'}"]
    tables = snapshot.meta.get("safetensors", {})
    lines = []
    for entry in sorted(snapshot.files, key=lambda e: e.path):
        line = f"{entry.path} ({human_bytes(entry.size)})"
        if entry.path in tables:
            line += f": {_plural(len(tables[entry.path]['tensors']), 'tensor')}"
        lines.append(line)
    return lines


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


#: a metadata value longer than this is cut in diff lines (the JSON details keep it whole)
_BRIEF_CHARS = 120


def _brief(value: str | None) -> str:
    """A metadata value for one diff line: a multi-megabyte value (an embedded config) would
    otherwise print whole, twice; newlines are escaped so the line stays one line."""
    if value is None:
        return "(unset)"
    text = value.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= _BRIEF_CHARS:
        return text
    return f"{text[:_BRIEF_CHARS]}... ({len(value):,} characters)"


def _field_changes(result: ComponentDiff, old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    changes = []
    for key in keys:
        before, after = old.get(key), new.get(key)
        if before != after:
            line = f"{key}: {_show(before)} -> {_show(after)}"
            result.lines.append(line)
            result.details.append({"change": "field", "field": key, "old": before, "new": after})
            changes.append(line)
    return changes


def _relative_files(snapshot: Snapshot) -> dict[str, FileEntry]:
    """Files keyed by their path inside the declared weights path, so a moved folder diffs by content."""
    root = snapshot.spec["path"].rstrip("/")
    files: dict[str, FileEntry] = {}
    for entry in snapshot.files:
        if entry.path == root:
            key = entry.path.rsplit("/", 1)[-1]
        elif entry.path.startswith(root + "/"):
            key = entry.path[len(root) + 1 :]
        else:  # a glob or an unusual layout: keep the project path
            key = entry.path
        files[key] = entry
    return files


def _moves(
    old_files: dict[str, FileEntry],
    new_files: dict[str, FileEntry],
    old_tables: dict[str, Any],
    new_tables: dict[str, Any],
) -> dict[str, tuple[FileEntry, FileEntry]]:
    """Tensor name -> (old file, new file) for each tensor that is in exactly one safetensors file
    on each side, and not the same one: a re-shard moves tensors, it neither adds nor removes them."""

    def where(files: dict[str, FileEntry], tables: dict[str, Any]) -> dict[str, list[tuple[str, FileEntry]]]:
        found: dict[str, list[tuple[str, FileEntry]]] = {}
        for key, entry in files.items():
            for name in tables.get(entry.path, {}).get("tensors", {}):
                found.setdefault(name, []).append((key, entry))
        return found

    old_where, new_where = where(old_files, old_tables), where(new_files, new_tables)
    moves: dict[str, tuple[FileEntry, FileEntry]] = {}
    for name in old_where.keys() & new_where.keys():
        if len(old_where[name]) == 1 and len(new_where[name]) == 1:
            (old_key, old_entry), (new_key, new_entry) = old_where[name][0], new_where[name][0]
            if old_key != new_key:
                moves[name] = (old_entry, new_entry)
    return moves


#: lines of text diff shown per changed non-weights file in a weights folder
_TEXT_DIFF_LINES = 60


class _WeightsDiff:
    """Files added/removed/changed; safetensors files compared tensor by tensor."""

    def __init__(self, old: Snapshot, new: Snapshot, reader: BlobReader, result: ComponentDiff):
        self.old, self.new, self.reader, self.result = old, new, reader, result
        self.counted = 0

    def run(self) -> list[str]:
        parts = _field_changes(self.result, self.old.spec, self.new.spec, _WEIGHTS_KEYS)
        old_files, new_files = _relative_files(self.old), _relative_files(self.new)
        old_tables = self.old.meta.get("safetensors", {})
        new_tables = self.new.meta.get("safetensors", {})
        added = sorted(new_files.keys() - old_files.keys())
        removed = sorted(old_files.keys() - new_files.keys())
        changed = sorted(k for k in old_files.keys() & new_files.keys() if old_files[k].digest != new_files[k].digest)
        moves = _moves(old_files, new_files, old_tables, new_tables)
        other_changed = 0
        for key in removed:
            entry = old_files[key]
            self._file_line("removed", entry, f"file removed: {entry.path} ({human_bytes(entry.size)})")
        for key in added:
            entry = new_files[key]
            self._file_line("added", entry, f"file added: {entry.path} ({human_bytes(entry.size)})")
        for key in changed:
            before, after = old_files[key], new_files[key]
            if before.path in old_tables and after.path in new_tables:
                parts.append(self._tensors(before, after, old_tables[before.path], new_tables[after.path], moves))
            else:
                other_changed += 1
                self._other_file(before, after)
        if moves:
            parts.insert(0, self._moved(moves, old_tables, new_tables))
        for count, verb in ((len(added), "added"), (len(removed), "removed"), (other_changed, "changed")):
            if count:
                parts.append(f"{_plural(count, 'file')} {verb}")
        return parts

    def _other_file(self, before: FileEntry, after: FileEntry) -> None:
        """A changed file beside the weights (config.json, tokenizer files): a text diff when it
        is text, so a changed generation default or vocabulary shows what changed."""
        from tether.components.textdiff import diff_entries

        line = f"file changed: {after.path} ({human_bytes(before.size)} -> {human_bytes(after.size)})"
        change = diff_entries(before, after, self.reader, _TEXT_DIFF_LINES)
        text = change is not None and not change.binary and (change.added_lines or change.removed_lines)
        if text:
            assert change is not None
            line += f", +{change.added_lines} -{change.removed_lines} lines"
        self._file_line("changed", after, line)
        if text:
            assert change is not None
            self.result.lines.extend(f"    {diff_line}" for diff_line in change.lines)

    def _file_line(self, change: str, entry: FileEntry, line: str) -> None:
        self.result.lines.append(line)
        self.result.details.append({"change": f"file {change}", "file": entry.path, "size": entry.size})

    def _tensor_line(self, path: str, change: str, tensor: str, text: str, **extra: Any) -> None:
        self.result.lines.append(f"{path}: tensor {change}: {tensor} {text}")
        self.result.details.append({"change": f"tensor {change}", "file": path, "tensor": tensor, **extra})

    def _moved(
        self, moves: dict[str, tuple[FileEntry, FileEntry]], old_tables: dict[str, Any], new_tables: dict[str, Any]
    ) -> str:
        """Tensors that left one safetensors file for another (a re-shard): identical ones as one
        line per pair of files, changed ones one by one with the bytes that differ."""
        identical: dict[tuple[str, str], list[str]] = {}
        changed = differing = 0
        old_cursors: dict[str, _Cursor] = {}
        new_cursors: dict[str, _Cursor] = {}
        try:
            # in old-file order, so each file's stream is read forward
            for name in sorted(moves, key=lambda n: (moves[n][0].path, old_tables[moves[n][0].path]["tensors"][n]["offsets"][0])):
                before, after = moves[name]
                a = old_tables[before.path]["tensors"][name]
                b = new_tables[after.path]["tensors"][name]
                source = f" (moved from {before.path})"
                if a["dtype"] != b["dtype"] or a["shape"] != b["shape"]:
                    changed += 1
                    self._tensor_line(
                        after.path,
                        "retyped" if a["dtype"] != b["dtype"] else "reshaped",
                        name,
                        f"{a['dtype']} {_shape(a['shape'])} -> {b['dtype']} {_shape(b['shape'])}{source}",
                        old_dtype=a["dtype"],
                        new_dtype=b["dtype"],
                        old_shape=a["shape"],
                        new_shape=b["shape"],
                        moved_from=before.path,
                    )
                elif a["digest"] != b["digest"]:
                    changed += 1
                    nbytes = int(b["nbytes"])
                    text = f"{b['dtype']} {_shape(b['shape'])} {human_bytes(nbytes)}"
                    detail: dict[str, Any] = {"dtype": b["dtype"], "shape": b["shape"], "nbytes": nbytes}
                    detail["bytes_differ"] = None
                    if self.counted < MAX_COUNTED_TENSORS:
                        self.counted += 1
                        old_cursor = old_cursors.setdefault(before.path, _Cursor(self.reader, before))
                        new_cursor = new_cursors.setdefault(after.path, _Cursor(self.reader, after))
                        a_start = data_start(old_tables[before.path]) + a["offsets"][0]
                        b_start = data_start(new_tables[after.path]) + b["offsets"][0]
                        count = count_differing_bytes(old_cursor.at(a_start), new_cursor.at(b_start), nbytes)
                        old_cursor.moved_to(a_start + nbytes)
                        new_cursor.moved_to(b_start + nbytes)
                        differing += count
                        detail["bytes_differ"] = count
                        text += f", {count:,} of {nbytes:,} bytes differ"
                    self._tensor_line(after.path, "changed", name, text + source, moved_from=before.path, **detail)
                else:
                    identical.setdefault((before.path, after.path), []).append(name)
        finally:
            for cursor in (*old_cursors.values(), *new_cursors.values()):
                cursor.close()
        for (source_path, path), names in sorted(identical.items(), key=lambda item: (item[0][1], item[0][0])):
            nbytes = sum(int(new_tables[path]["tensors"][name]["nbytes"]) for name in names)
            self.result.lines.append(
                f"{path}: {_plural(len(names), 'tensor')} moved in from {source_path}, identical ({human_bytes(nbytes)})"
            )
            self.result.details.extend(
                {"change": "tensor moved", "file": path, "tensor": name, "from": source_path, "identical": True}
                for name in names
            )
        summary = f"{_plural(len(moves), 'tensor')} moved between files, "
        if not changed:
            return summary + "identical"
        return summary + f"{changed} changed" + (f" ({differing:,} bytes differ)" if differing else "")

    def _tensors(
        self,
        before: FileEntry,
        after: FileEntry,
        old_table: dict[str, Any],
        new_table: dict[str, Any],
        moves: dict[str, tuple[FileEntry, FileEntry]],
    ) -> str:
        path = after.path
        old_tensors, new_tensors = old_table["tensors"], new_table["tensors"]
        added = sorted(name for name in new_tensors.keys() - old_tensors.keys() if name not in moves)
        removed = sorted(name for name in old_tensors.keys() - new_tensors.keys() if name not in moves)
        moved_in = sum(1 for name in new_tensors.keys() - old_tensors.keys() if name in moves)
        moved_out = sum(1 for name in old_tensors.keys() - new_tensors.keys() if name in moves)
        reshaped = retyped = 0
        changed: list[str] = []
        for name in sorted(old_tensors.keys() & new_tensors.keys()):
            a, b = old_tensors[name], new_tensors[name]
            if a["dtype"] != b["dtype"]:
                retyped += 1
                shapes = f" {_shape(a['shape'])} -> {_shape(b['shape'])}" if a["shape"] != b["shape"] else ""
                self._tensor_line(
                    path,
                    "retyped",
                    name,
                    f"{a['dtype']} -> {b['dtype']}{shapes}",
                    old_dtype=a["dtype"],
                    new_dtype=b["dtype"],
                    old_shape=a["shape"],
                    new_shape=b["shape"],
                )
            elif a["shape"] != b["shape"]:
                reshaped += 1
                self._tensor_line(
                    path,
                    "reshaped",
                    name,
                    f"{_shape(a['shape'])} -> {_shape(b['shape'])} ({a['dtype']})",
                    dtype=a["dtype"],
                    old_shape=a["shape"],
                    new_shape=b["shape"],
                )
            elif a["digest"] != b["digest"]:
                changed.append(name)
        for name in added:
            info = new_tensors[name]
            self._tensor_line(
                path,
                "added",
                name,
                f"{info['dtype']} {_shape(info['shape'])} ({human_bytes(info['nbytes'])})",
                dtype=info["dtype"],
                shape=info["shape"],
                nbytes=info["nbytes"],
            )
        for name in removed:
            info = old_tensors[name]
            self._tensor_line(
                path,
                "removed",
                name,
                f"{info['dtype']} {_shape(info['shape'])} ({human_bytes(info['nbytes'])})",
                dtype=info["dtype"],
                shape=info["shape"],
                nbytes=info["nbytes"],
            )
        changed_bytes, differing, counted = self._changed(before, after, old_table, new_table, changed)
        metadata_changes = self._metadata(path, old_table.get("metadata", {}), new_table.get("metadata", {}))

        summary = f"{path}: {_plural(len(changed), 'tensor')} changed"
        if changed:
            if counted == len(changed):
                summary += f" ({human_bytes(changed_bytes)}, {differing:,} bytes differ)"
            else:
                summary += (
                    f" ({human_bytes(changed_bytes)}, {differing:,} bytes differ in the {counted} "
                    f"of {len(changed)} tensors counted)"
                )
        summary += f", {len(added)} added, {len(removed)} removed"
        if reshaped:
            summary += f", {reshaped} reshaped"
        if retyped:
            summary += f", {retyped} retyped"
        if moved_in:
            summary += f", {moved_in} moved in"
        if moved_out:
            summary += f", {moved_out} moved out"
        if metadata_changes:
            summary += ", metadata changed"
        if not (changed or added or removed or reshaped or retyped or metadata_changes or moved_in or moved_out):
            summary = f"{path}: tensors identical, file layout changed"
            self.result.lines.append(summary)
            self.result.details.append({"change": "layout", "file": path})
        return summary

    def _changed(
        self,
        before: FileEntry,
        after: FileEntry,
        old_table: dict[str, Any],
        new_table: dict[str, Any],
        names: list[str],
    ) -> tuple[int, int, int]:
        """Lines for same-name/shape/dtype tensors with new content; exact differing bytes for the
        first tensors (by offset, so streams are read forward) up to the per-diff cap."""
        old_tensors, new_tensors = old_table["tensors"], new_table["tensors"]
        names = sorted(names, key=lambda n: old_tensors[n]["offsets"][0])
        old_cursor, new_cursor = _Cursor(self.reader, before), _Cursor(self.reader, after)
        total = differing = counted = 0
        old_base, new_base = data_start(old_table), data_start(new_table)
        try:
            for name in names:
                a, b = old_tensors[name], new_tensors[name]
                nbytes = int(b["nbytes"])
                total += nbytes
                text = f"{b['dtype']} {_shape(b['shape'])} {human_bytes(nbytes)}"
                detail: dict[str, Any] = {"dtype": b["dtype"], "shape": b["shape"], "nbytes": nbytes}
                if self.counted < MAX_COUNTED_TENSORS:
                    self.counted += 1
                    counted += 1
                    a_start, b_start = old_base + a["offsets"][0], new_base + b["offsets"][0]
                    diff_bytes = count_differing_bytes(old_cursor.at(a_start), new_cursor.at(b_start), nbytes)
                    old_cursor.moved_to(a_start + nbytes)
                    new_cursor.moved_to(b_start + nbytes)
                    differing += diff_bytes
                    text += f", {diff_bytes:,} of {nbytes:,} bytes differ"
                    detail["bytes_differ"] = diff_bytes
                else:
                    text += f" (bytes not compared: over {MAX_COUNTED_TENSORS} tensors in this diff)"
                    detail["bytes_differ"] = None
                self._tensor_line(after.path, "changed", name, text, **detail)
        finally:
            old_cursor.close()
            new_cursor.close()
        return total, differing, counted

    def _metadata(self, path: str, old: dict[str, str], new: dict[str, str]) -> int:
        changes = 0
        for key in sorted(old.keys() | new.keys()):
            before, after = old.get(key), new.get(key)
            if before != after:
                changes += 1
                self.result.lines.append(f"{path}: __metadata__.{key}: {_brief(before)} -> {_brief(after)}")
                self.result.details.append(
                    {"change": "metadata", "file": path, "key": key, "old": before, "new": after}
                )
        return changes
