"""The ``[policy]`` table of ``tether.toml`` and what each tier requires of a promotion.

Tier defaults: ``lite`` asks only for a valid version; ``standard`` refuses floating model IDs on
production aliases, requires a passing rehearsal of the path back and, where declared, an eval
gate; ``regulated`` adds a reason on every move and a second person's approval. The table tunes
the numbers (rollback window, rehearsal age, refresh interval) and declares the hooks (eval gate,
smoke check) and the facts (pinned packages, retired models); it cannot switch a tier's gate off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import TetherError, UsageError

DEFAULT_ROLLBACK_WINDOW = 10
DEFAULT_REHEARSAL_MAX_AGE_DAYS = 30.0
DEFAULT_REFRESH_SECONDS = 5.0
DEFAULT_METRIC = "mean_score"
DEFAULT_MARGIN = 0.02
DEFAULT_PRODUCTION_ALIASES = ("prod",)
TIER_ORDER = ("lite", "standard", "regulated")  # least to most strict

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_KEYS = {
    "rollback_window": "a whole number of versions (>= 1)",
    "rehearsal_max_age_days": "a number of days (> 0)",
    "refresh_seconds": "a number of seconds (>= 0)",
    "pinned_packages": "a list of package names",
    "retired_models": "a list of 'provider:id' strings",
    "production_aliases": "a list of alias names",
    "smoke": "'module:function'",
    "eval_gate": "a table with evalset, metric, margin, check",
}
_EVAL_GATE_KEYS = ("evalset", "metric", "margin", "check")


@dataclass(frozen=True)
class EvalGateConfig:
    """The declared eval gate: the candidate may not score below the current target by more than
    ``margin`` on ``metric`` of ``evalset``; ``check`` plugs in another comparison."""

    evalset: str
    metric: str = DEFAULT_METRIC
    margin: float = DEFAULT_MARGIN
    check: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"evalset": self.evalset, "metric": self.metric, "margin": self.margin, "check": self.check}


@dataclass(frozen=True)
class Policy:
    """The effective policy: the tier's gates and the project's settings."""

    tier: str
    rollback_window: int = DEFAULT_ROLLBACK_WINDOW
    rehearsal_max_age_days: float = DEFAULT_REHEARSAL_MAX_AGE_DAYS
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    pinned_packages: tuple[str, ...] = ()
    retired_models: tuple[str, ...] = ()
    production_aliases: tuple[str, ...] = DEFAULT_PRODUCTION_ALIASES
    smoke: str | None = None
    eval_gate: EvalGateConfig | None = None

    @property
    def requires_pinned_models(self) -> bool:
        return self.tier in ("standard", "regulated")

    @property
    def requires_rehearsal(self) -> bool:
        return self.tier in ("standard", "regulated")

    @property
    def requires_eval_gate(self) -> bool:
        return self.tier in ("standard", "regulated") and self.eval_gate is not None

    @property
    def requires_reason(self) -> bool:
        return self.tier == "regulated"

    @property
    def requires_approval(self) -> bool:
        return self.tier == "regulated"

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "rollback_window": self.rollback_window,
            "rehearsal_max_age_days": self.rehearsal_max_age_days,
            "refresh_seconds": self.refresh_seconds,
            "pinned_packages": list(self.pinned_packages),
            "retired_models": list(self.retired_models),
            "production_aliases": list(self.production_aliases),
            "smoke": self.smoke,
            "eval_gate": self.eval_gate.to_json() if self.eval_gate else None,
        }


def _fail(path: Path, key: str, message: str) -> UsageError:
    return UsageError(f"{path.name}: policy.{key}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _fail(path, key, f"expected {_KEYS[key]}, got {value!r}")
    return [item.strip() for item in value]


def _callable(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _CALLABLE.match(value):
        raise _fail(path, key, f"expected 'module:function', got {value!r}")
    return value


def validate_section(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check the ``[policy]`` table strictly (unknown keys are errors) and return it normalized."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise _fail(path, key, f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
        if key == "rollback_window":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(path, key, f"expected {_KEYS[key]}, got {value!r}")
            out[key] = value
        elif key in ("rehearsal_max_age_days", "refresh_seconds"):
            if not _number(value) or value < 0 or (key == "rehearsal_max_age_days" and value == 0):
                raise _fail(path, key, f"expected {_KEYS[key]}, got {value!r}")
            out[key] = float(value)
        elif key == "pinned_packages":
            out[key] = _string_list(path, key, value)
        elif key == "production_aliases":
            # An empty list would skip the model gates on every alias: a tier's gate switched off.
            if value == []:
                raise _fail(path, key, "expected a non-empty list of alias names, got []")
            out[key] = _string_list(path, key, value)
        elif key == "retired_models":
            items = _string_list(path, key, value)
            for item in items:
                provider, sep, model_id = item.partition(":")
                if not sep or not provider or not model_id:
                    raise _fail(path, key, f"'{item}': expected 'provider:id' (e.g. 'openai:gpt-4-0613')")
            out[key] = items
        elif key == "smoke":
            out[key] = _callable(path, key, value)
        elif key == "eval_gate":
            out[key] = _validate_eval_gate(path, value)
    return out


def _validate_eval_gate(path: Path, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "eval_gate", f"expected {_KEYS['eval_gate']}")
    gate: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _EVAL_GATE_KEYS:
            raise _fail(path, f"eval_gate.{key}", f"unknown key (allowed: {', '.join(_EVAL_GATE_KEYS)})")
        if key in ("evalset", "metric"):
            if not isinstance(item, str) or not item.strip():
                raise _fail(path, f"eval_gate.{key}", f"expected a non-empty string, got {item!r}")
            gate[key] = item.strip()
        elif key == "margin":
            if not _number(item) or item < 0:
                raise _fail(path, f"eval_gate.{key}", f"expected a number >= 0, got {item!r}")
            gate[key] = float(item)
        else:
            gate[key] = _callable(path, f"eval_gate.{key}", item)
    if "evalset" not in gate:
        raise _fail(path, "eval_gate", "missing 'evalset' (the evalset component the gate compares on)")
    return gate


def policy_from_sections(tier: str, sections: dict[str, dict[str, Any]]) -> Policy:
    """The effective policy of a project file's tier and validated ``[policy]`` (and ``[evals]``) tables."""
    table = sections.get("policy", {})
    gate = table.get("eval_gate")
    eval_gate = None
    if gate is not None:
        evals_margin = sections.get("evals", {}).get("margin")
        margin = gate.get("margin", evals_margin if _number(evals_margin) else DEFAULT_MARGIN)
        eval_gate = EvalGateConfig(
            evalset=gate["evalset"],
            metric=gate.get("metric", DEFAULT_METRIC),
            margin=float(margin),
            check=gate.get("check"),
        )
    return Policy(
        tier=tier,
        rollback_window=table.get("rollback_window", DEFAULT_ROLLBACK_WINDOW),
        rehearsal_max_age_days=table.get("rehearsal_max_age_days", DEFAULT_REHEARSAL_MAX_AGE_DAYS),
        refresh_seconds=table.get("refresh_seconds", DEFAULT_REFRESH_SECONDS),
        pinned_packages=tuple(table.get("pinned_packages", ())),
        retired_models=tuple(table.get("retired_models", ())),
        production_aliases=tuple(table.get("production_aliases", DEFAULT_PRODUCTION_ALIASES)),
        smoke=table.get("smoke"),
        eval_gate=eval_gate,
    )


def check_tier_settings(project_file: Any) -> None:
    """Refuse (UsageError naming the key) when ``tether.toml`` lacks a setting its tier requires
    outside ``[policy]``: ``regulated`` needs ``[audit] checkpoint_export_interval``, without which
    every audit record (``live.record()``) fails. Checked by ``policy check`` and ``promote``, so a
    hand-written project file is caught before production rather than at the first request."""
    if project_file.tier != "regulated":
        return
    from tether.audit.config import resolve_settings

    try:
        resolve_settings(project_file.sections.get("audit"), project_file.tier, project_file.name, project_file.path)
    except UsageError as exc:
        raise UsageError(f"{exc}; without it no request served in production could be recorded") from exc


def load_policy(project_file: Any) -> Policy:
    """The policy of a parsed :class:`~tether.project.projectfile.ProjectFile`."""
    return policy_from_sections(project_file.tier, project_file.sections)


def tier_rank(tier: str) -> int:
    """How strict a tier is: ``lite`` < ``standard`` < ``regulated``."""
    return TIER_ORDER.index(tier)


def recorded_policy(project: Any, version_id: str) -> Policy:
    """The policy a version was committed under: the tier and tables of the ``tether.toml`` it
    recorded, never looser than the tier its manifest records. A recorded file that is missing,
    does not hash to its digest or no longer validates gives the manifest's tier with default
    settings, so a damaged copy cannot loosen what governs a move."""
    from tether.ids import digest_bytes
    from tether.project.projectfile import PROJECT_FILE, parse_project_file
    from tether.store.base import StoreError

    manifest = project.manifest(version_id)
    tier, sections = manifest.tier, {}
    if manifest.project_file:
        try:
            raw = project.store.get_bytes(manifest.project_file)
            if digest_bytes(raw) == manifest.project_file:
                recorded = parse_project_file(raw, project.root / PROJECT_FILE, validate_components=False)
                sections = recorded.sections
                tier = max(tier, recorded.tier, key=tier_rank)
        except (TetherError, StoreError, OSError):
            pass
    return policy_from_sections(tier, sections)
