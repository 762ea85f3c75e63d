"""``tether.toml``: parsed strictly (unknown keys are errors) and appended to without losing comments."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.components import ComponentDiff, ComponentError, get_kind
from tether.errors import UsageError
from tether.store.atomic import atomic_write_bytes

PROJECT_FILE = "tether.toml"
TIERS = ("lite", "standard", "regulated")
DEFAULT_OBJECTS = ".tether/objects"
DEFAULT_METADATA = "sqlite:///.tether/meta.db"

#: Feature sections of tether.toml, each validated strictly by its own feature (imported only when
#: the section is present): ``validate_section(table, path) -> dict`` raises UsageError naming the key.
FEATURE_SECTIONS: dict[str, str] = {
    "policy": "tether.lifecycle.policy:validate_section",
    "evals": "tether.repro.config:validate_section",
    "audit": "tether.audit.config:validate_section",
}
_TOP_KEYS = {"project", "storage", "components", *FEATURE_SECTIONS}
_PROJECT_KEYS = {"name", "tier"}
_STORAGE_KEYS = {"objects", "metadata"}
_LOG = logging.getLogger("tether")
_WARNED_PASSWORD: set[Path] = set()  # project files already warned about, once per process


def url_has_password(url: str) -> bool:
    """True when a database URL carries a password (``scheme://user:PASSWORD@host/...``)."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, _at, _host = authority.rpartition("@")
    return bool(userinfo.partition(":")[2])


def check_new_metadata_url(url: str, option: str = "--db") -> None:
    """Refuse a metadata URL with a password before it is written to ``tether.toml``, which every
    version records (in the shared object store, for good). The message never shows the URL."""
    if url_has_password(url):
        raise UsageError(
            f"{option}: the URL contains a password, which tether.toml (versioned) would keep forever; "
            "use PGPASSWORD or ~/.pgpass"
        )


@dataclass
class ComponentDecl:
    """One declared component: its name, kind and normalized spec."""

    name: str
    kind: str
    spec: dict[str, Any]


@dataclass
class ProjectFile:
    """The parsed project file."""

    path: Path
    name: str
    tier: str
    objects_url: str = DEFAULT_OBJECTS
    metadata_url: str = DEFAULT_METADATA
    components: dict[str, ComponentDecl] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # validated feature sections
    raw: bytes = b""


def _error(path: Path, message: str) -> UsageError:
    return UsageError(f"{path.name}: {message}")


def parse_text(raw: bytes, path: Path) -> dict[str, Any]:
    """TOML to a dict, with the parser's line and column in the error."""
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _error(path, f"not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _error(path, f"invalid TOML: {exc}") from exc


def settings_value(raw: bytes) -> dict[str, Any] | None:
    """``tether.toml``'s value outside ``[components]`` (None when it does not parse): what a
    settings edit changes, whatever the formatting, comments or component declarations."""
    from tether.components.config import canonical_value

    try:
        data = tomllib.loads(raw.decode("utf-8"))
        data.pop("components", None)
        return canonical_value(data, PROJECT_FILE)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ComponentError):
        return None


def settings_diff(old_raw: bytes, new_raw: bytes, components_changed: bool) -> ComponentDiff | None:
    """The settings keys (``policy.rollback_window``...) changed between two ``tether.toml``;
    None when the bytes are equal or only component declarations changed (their diffs show those)."""
    from tether.components.config import change_line, diff_values
    from tether.components.textdiff import plural

    if old_raw == new_raw:
        return None
    old, new = settings_value(old_raw), settings_value(new_raw)
    changes = diff_values(old, new) if old is not None and new is not None else []
    if not changes:
        if components_changed:
            return None
        return ComponentDiff(PROJECT_FILE, "settings", "changed", "formatting only (no setting changed)")
    details = [{"type": "key", **change} for change in changes]
    return ComponentDiff(
        PROJECT_FILE, "settings", "changed", f"{plural(len(changes), 'setting')} changed", [], details,
        [change_line(change) for change in changes],
    )


def load_project_file(path: Path, validate_components: bool = True) -> ProjectFile:
    """Read and validate ``tether.toml``. Errors are :class:`UsageError` naming the table and key."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: not found; run `tether init` first") from exc
    return parse_project_file(raw, path, validate_components)


def parse_project_file(raw: bytes, path: Path, validate_components: bool = True) -> ProjectFile:
    """Validate ``tether.toml`` given as bytes (the working file's, or the copy a version recorded)."""
    data = parse_text(raw, path)
    for key in data:
        if key not in _TOP_KEYS:
            allowed = ", ".join(sorted(_TOP_KEYS))
            raise _error(path, f"unknown table or key '{key}' (allowed: {allowed})")
    project = data.get("project")
    if not isinstance(project, dict):
        raise _error(path, "missing [project] table")
    for key in project:
        if key not in _PROJECT_KEYS:
            raise _error(path, f"project.{key}: unknown key (allowed: name, tier)")
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise _error(path, "project.name: expected a non-empty string")
    tier = project.get("tier", "standard")
    if tier not in TIERS:
        raise _error(path, f"project.tier: '{tier}' is not one of {', '.join(TIERS)}")
    storage = data.get("storage", {})
    if not isinstance(storage, dict):
        raise _error(path, "storage: expected a table")
    for key, value in storage.items():
        if key not in _STORAGE_KEYS:
            raise _error(path, f"storage.{key}: unknown key (allowed: metadata, objects)")
        if not isinstance(value, str) or not value:
            raise _error(path, f"storage.{key}: expected a non-empty string")
    metadata_url = storage.get("metadata", DEFAULT_METADATA)
    if url_has_password(metadata_url) and path not in _WARNED_PASSWORD:
        _WARNED_PASSWORD.add(path)
        _LOG.warning(
            "%s: storage.metadata: the URL contains a password, which every version records (tether.toml is "
            "versioned); remove it and use PGPASSWORD or ~/.pgpass",
            path,
        )
    result = ProjectFile(
        path=path,
        name=name,
        tier=tier,
        objects_url=storage.get("objects", DEFAULT_OBJECTS),
        metadata_url=metadata_url,
        raw=raw,
    )
    for section, target in FEATURE_SECTIONS.items():
        if section in data:
            if not isinstance(data[section], dict):
                raise _error(path, f"{section}: expected a table")
            import importlib

            module_name, function_name = target.split(":")
            validate = getattr(importlib.import_module(module_name), function_name)
            result.sections[section] = validate(data[section], path)
    components = data.get("components", {})
    if not isinstance(components, dict):
        raise _error(path, "components: expected tables like [components.NAME]")
    for comp_name, table in components.items():
        result.components[comp_name] = parse_component(path, comp_name, table, validate_components)
    return result


def check_component_name(name: str) -> None:
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise UsageError(f"component name '{name}': use letters, digits, '-' and '_'")


def parse_component(path: Path, name: str, table: Any, validate: bool = True) -> ComponentDecl:
    """Validate one ``[components.NAME]`` table through its kind."""
    try:
        check_component_name(name)
    except UsageError as exc:  # a hand-edited table: the error names the file and the table
        raise _error(path, f"components.{name}: a component name uses letters, digits, '-' and '_'") from exc
    if not isinstance(table, dict):
        raise _error(path, f"components.{name}: expected a table")
    kind_name = table.get("kind")
    kinds = "one of prompt, config, tools, model, index, evalset, migration, files"
    if "kind" not in table:
        raise _error(path, f"components.{name}.kind: missing ({kinds})")
    if not isinstance(kind_name, str):
        raise _error(path, f"components.{name}.kind: expected a string ({kinds}), got {kind_name!r}")
    try:
        kind = get_kind(kind_name)
    except ComponentError as exc:
        raise _error(path, f"components.{name}.kind: {exc}") from exc
    body = {key: value for key, value in table.items() if key != "kind"}
    spec = kind.validate(name, body) if validate else body
    return ComponentDecl(name=name, kind=kind_name, spec=spec)


def render_new_project(name: str, tier: str, objects_url: str | None, metadata_url: str | None) -> bytes:
    """The ``tether.toml`` that ``init`` writes."""
    import tomli_w

    data: dict[str, Any] = {"project": {"name": name, "tier": tier}}
    storage = {}
    if objects_url:
        storage["objects"] = objects_url
    if metadata_url:
        storage["metadata"] = metadata_url
    if storage:
        data["storage"] = storage
    text = tomli_w.dumps(data)
    if tier == "regulated":
        text += _REGULATED_AUDIT
    return text.encode("utf-8")


#: What ``init --tier regulated`` adds: the settings the tier requires, with their defaults explained
#: (``tether.audit.config.resolve_settings`` refuses a regulated project without them).
_REGULATED_AUDIT = """
[audit]
# required in tier 'regulated': how often a signed checkpoint must be exported
# (tether audit checkpoint --export FILE); tether audit verify fails when one is overdue.
# Regulated defaults otherwise: durability = "sync", retention_days = 3650, payloads = "none".
checkpoint_export_interval = "24h"
"""


def append_component(path: Path, name: str, kind: str, table: dict[str, Any]) -> None:
    """Append ``[components.NAME]`` to the file, keeping the user's comments and layout."""
    import tomli_w

    raw = path.read_bytes()
    block = tomli_w.dumps({"components": {name: {"kind": kind, **table}}}).encode("utf-8")
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    atomic_write_bytes(path, raw + b"\n" + block)
