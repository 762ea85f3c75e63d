"""The ``prompt`` kind: text files or templates whose variables are part of the contract.

A prompt's wording changes behavior, and so does the set of variables it expects: a variable
added to a template that the application does not fill is a silent bug. So a prompt snapshot
records each file's digest and the template variables found in it, and its diff shows the
unified text diff next to the variables that appeared or disappeared.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
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
)
from tether.components.textdiff import (
    diff_file_sets,
    join_summary,
    normalize_sources,
    snapshot_files,
    sources_field,
    spec_changes,
    spec_patterns,
    spec_summary,
    summarize_file_changes,
)

TEMPLATE_MODES = ("auto", "jinja", "format", "none")

# Jinja: expressions, statements and comments (comments are dropped before scanning).
_JINJA_ANY = re.compile(r"\{\{.*?\}\}", re.S)
_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_STRING_LITERAL = re.compile(_STRING, re.S)
# Tag bodies may hold string literals containing "}}" or "%}", as Jinja's own lexer allows.
_JINJA_TAG = re.compile(
    r"\{#.*?#\}"
    rf"|\{{\{{(?P<expr>(?:{_STRING}|[^'\"}}]|\}}(?!\}}))*)\}}\}}"
    rf"|\{{%(?P<stmt>(?:{_STRING}|[^'\"%]|%(?!\}}))*)%\}}",
    re.S,
)
_IDENTIFIER = re.compile(r"(?<![\w])[A-Za-z_]\w*")
_JINJA_RESERVED = frozenset(
    {
        "and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None",
        "loop", "recursive", "self", "super", "varargs", "kwargs", "caller",
        "range", "lipsum", "dict", "cycler", "joiner", "namespace",
    }
)
_FORMAT_ROOT = re.compile(r"^([A-Za-z_]\w*|\d+)")


def _jinja_expression_names(expr: str, names: set[str]) -> None:
    """Free identifiers of one Jinja expression: not attributes, filters, tests or keyword args."""
    blanked = _STRING_LITERAL.sub('""', expr)
    previous_word = ""
    for match in _IDENTIFIER.finditer(blanked):
        word = match.group(0)
        before = blanked[: match.start()].rstrip()
        after = blanked[match.end():].lstrip()
        is_attribute = before.endswith(".")
        is_filter = before.endswith("|")
        is_test = previous_word == "is" or (previous_word == "not" and before.endswith("is not"))
        is_keyword_arg = after.startswith("=") and not after.startswith("==")
        if not (is_attribute or is_filter or is_test or is_keyword_arg or word in _JINJA_RESERVED):
            names.add(word)
        previous_word = word


def jinja_variables(text: str) -> list[str]:
    """Variables a Jinja template reads: names in ``{{ }}``, ``{% if %}`` and ``{% for %}``.

    Names bound by the template itself (``for`` targets, ``set``) are not variables.
    """
    used: set[str] = set()
    bound: set[str] = set()
    for match in _JINJA_TAG.finditer(text):
        if match.group("expr") is not None:
            _jinja_expression_names(match.group("expr").strip("-+ \t\r\n"), used)
            continue
        statement = match.group("stmt")
        if statement is None:
            continue  # a comment
        statement = statement.strip("-+ \t\r\n")
        keyword, _, rest = statement.partition(" ")
        if keyword in ("if", "elif"):
            _jinja_expression_names(rest, used)
        elif keyword == "for":
            targets, sep, source = rest.partition(" in ")
            if sep:
                bound.update(name.strip() for name in targets.split(",") if name.strip())
                _jinja_expression_names(source.removesuffix("recursive"), used)
        elif keyword == "set":
            target, sep, value = rest.partition("=")
            bound.update(name.strip() for name in target.split(",") if name.strip())
            if sep:
                _jinja_expression_names(value, used)
    return sorted(used - bound)


def _format_fields(text: str, names: set[str]) -> None:
    for _literal, field_name, format_spec, _conversion in string.Formatter().parse(text):
        if field_name:
            root = _FORMAT_ROOT.match(field_name)
            if root:
                names.add(root.group(1))
        if format_spec:
            _format_fields(format_spec, names)


def format_variables(text: str, rel_path: str) -> list[str]:
    """Fields of a Python ``str.format`` template (``{name}``, ``{user.name}``; ``{{`` is literal)."""
    names: set[str] = set()
    try:
        _format_fields(text, names)
    except ValueError as exc:
        for number, line in enumerate(text.split("\n"), start=1):
            try:
                _format_fields(line, set())
            except ValueError:
                raise ComponentError(f"{rel_path}: line {number}: invalid format template ({exc})") from exc
        raise ComponentError(f"{rel_path}: invalid format template ({exc})") from exc
    return sorted(names)


def template_variables(text: str, mode: str, rel_path: str) -> list[str]:
    """Variables of ``text`` under a template mode (``auto`` picks jinja when ``{{ }}`` appears)."""
    if mode == "none":
        return []
    if mode == "jinja" or (mode == "auto" and _JINJA_ANY.search(text)):
        return jinja_variables(text)
    if mode == "auto":
        try:
            return format_variables(text, rel_path)
        except ComponentError:
            return []  # stray braces: plain text, not a format template
    return format_variables(text, rel_path)


def decode_text(data: bytes, rel_path: str) -> str:
    """UTF-8 text of a file, with an error naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{rel_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


class PromptKind(Kind):
    """Prompt files and templates: unified text diffs plus template variables added or removed."""

    name: ClassVar[str] = "prompt"
    allowed_keys: ClassVar[frozenset[str]] = frozenset({"path", "paths", "template"})

    def validate(self, component: str, table: dict[str, Any]) -> dict[str, Any]:
        check_keys(component, table, self.allowed_keys)
        spec = normalize_sources(component, table)
        if "template" in table:
            template = table["template"]
            if template not in TEMPLATE_MODES:
                raise ComponentError(
                    f"tether.toml: components.{component}.template: expected one of "
                    f"{', '.join(TEMPLATE_MODES)}, got {template!r}"
                )
            spec["template"] = template
        return spec

    def snapshot(self, component: str, spec: dict[str, Any], ctx: SnapshotContext) -> Snapshot:
        mode = spec.get("template", "auto")
        paths = ctx.expand(spec_patterns(spec), sources_field(component, spec))
        files = tuple(ctx.file_entry(rel) for rel in paths)
        variables: dict[str, list[str]] = {}
        for rel in paths:

            def compute(path: Path, rel: str = rel) -> list[str]:
                return template_variables(decode_text(path.read_bytes(), rel), mode, rel)

            variables[rel] = list(ctx.cached(rel, f"prompt-variables:{mode}", compute))
        return Snapshot(kind=self.name, spec=spec, files=files, meta={"variables": variables})

    def diff(
        self, component: str, old: Snapshot | None, new: Snapshot | None, reader: BlobReader
    ) -> ComponentDiff:
        status = file_status(old, new)
        if status == "unchanged":
            return ComponentDiff(component, self.name, status, "unchanged")
        details, lines = spec_changes(old, new)
        changes = diff_file_sets(snapshot_files(old), snapshot_files(new), reader)
        for change in changes:
            details.append(change.to_detail())
            lines.extend(change.lines)
        old_vars = _variable_files(old)
        new_vars = _variable_files(new)
        added = sorted(set(new_vars) - set(old_vars))
        removed = sorted(set(old_vars) - set(new_vars))
        for name in added:
            details.append({"type": "variable", "name": name, "change": "added", "files": new_vars[name]})
            lines.append(f"  + variable {name} ({', '.join(new_vars[name])})")
        for name in removed:
            details.append({"type": "variable", "name": name, "change": "removed", "files": old_vars[name]})
            lines.append(f"  - variable {name} ({', '.join(old_vars[name])})")
        summary = join_summary(
            [
                summarize_file_changes(changes),
                f"variables added: {', '.join(added)}" if added else "",
                f"variables removed: {', '.join(removed)}" if removed else "",
                spec_summary(details),
            ]
        )
        return ComponentDiff(component, self.name, status, summary or "changed", [], details, lines)


def _variable_files(snapshot: Snapshot | None) -> dict[str, list[str]]:
    """Each variable of a snapshot and the files that use it."""
    found: dict[str, list[str]] = {}
    if snapshot is None:
        return found
    for path, names in sorted(snapshot.meta.get("variables", {}).items()):
        for name in names:
            found.setdefault(name, []).append(path)
    return found
