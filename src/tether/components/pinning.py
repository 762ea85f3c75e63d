"""Is a model identity pinned? A small generic matcher over rules kept as data.

Providers rename and re-alias models faster than tether is released, so the knowledge lives
in ``floating_rules.toml`` and this module only interprets it: per provider, regex rules in
order, first match wins, with an optional minimum-generation condition. A provider without
rules is never called pinned: tether says it cannot tell (past the rules for every provider,
such as a "latest" alias, which floats whoever serves it).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

Level = Literal["pinned", "floating", "unknown"]

_VERDICTS = ("pinned", "floating")
_GENERATION_RE = re.compile(r"^\d+(?:[.-]\d+)*$")


class RulesError(ValueError):
    """The rules file itself is malformed (a packaging or editing mistake, not user input)."""


@dataclass(frozen=True)
class Verdict:
    """The judgement on one identity: ``level`` plus a sentence saying why."""

    level: Level
    reason: str


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    verdict: Level
    reason: str
    min_generation: tuple[int, ...] | None = None

    def applies(self, model_id: str) -> bool:
        match = self.pattern.fullmatch(model_id)
        if match is None:
            return False
        if self.min_generation is None:
            return True
        generation = match.group("generation")
        return generation is not None and _generation(generation) >= self.min_generation


def _generation(text: str) -> tuple[int, ...]:
    """``"4-6"`` / ``"4.6"`` -> ``(4, 6)``; trailing zeros dropped so ``5`` equals ``5.0``."""
    parts = [int(part) for part in re.split(r"[.-]", text)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _normalize_provider(provider: str) -> str:
    return provider.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class HubRules:
    commit: re.Pattern[str]
    abbreviated: re.Pattern[str]
    branch_names: frozenset[str]


class PinningRules:
    """Rules loaded from TOML text (see ``floating_rules.toml`` for the format)."""

    def __init__(self, data: dict[str, Any]):
        self.aliases: dict[str, str] = {}
        self.unknown: dict[str, str] = {}
        self.providers: dict[str, list[Rule]] = {}
        every = data.get("every_provider", [])
        if not isinstance(every, list):
            raise RulesError("every_provider: expected a list of rules")
        #: tried first for any provider, one tether has no rules for included
        self.every_provider: list[Rule] = [_rule(f"every_provider[{index}]", item) for index, item in enumerate(every)]
        for alias, target in _table(data, "aliases").items():
            if not isinstance(target, str):
                raise RulesError(f"aliases.{alias}: expected a provider name")
            self.aliases[_normalize_provider(alias)] = _normalize_provider(target)
        for provider, note in _table(data, "unknown").items():
            if not isinstance(note, str):
                raise RulesError(f"unknown.{provider}: expected a sentence")
            self.unknown[_normalize_provider(provider)] = note
        for provider, rules in _table(data, "providers").items():
            if not isinstance(rules, list):
                raise RulesError(f"providers.{provider}: expected a list of rules")
            self.providers[_normalize_provider(provider)] = [
                _rule(f"providers.{provider}[{index}]", item) for index, item in enumerate(rules)
            ]
        hub = _table(data, "hub")
        try:
            self.hub = HubRules(
                commit=re.compile(hub["commit_pattern"], re.IGNORECASE),
                abbreviated=re.compile(hub["abbreviated_pattern"], re.IGNORECASE),
                branch_names=frozenset(hub.get("branch_names", [])),
            )
        except (KeyError, TypeError, re.error) as exc:
            raise RulesError(f"hub: {exc}") from exc

    @classmethod
    def from_toml(cls, text: str) -> PinningRules:
        try:
            return cls(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"floating rules: {exc}") from exc

    def provider_key(self, provider: str) -> str:
        key = _normalize_provider(provider)
        return self.aliases.get(key, key)

    def judge_hosted(self, provider: str, model_id: str) -> Verdict:
        """Pinned, floating or unknown for a hosted ``provider`` + model ``id``."""
        key = self.provider_key(provider)
        rules = self.providers.get(key)
        cannot_tell = f"tether cannot tell whether provider '{provider}' model '{model_id}' is pinned"
        normalized = model_id.strip().lower()
        for rule in self.every_provider:
            if rule.applies(normalized):
                return Verdict(rule.verdict, rule.reason)
        if not rules:
            note = self.unknown.get(key)
            return Verdict("unknown", f"{cannot_tell} ({note})" if note else cannot_tell)
        for rule in rules:
            if rule.applies(normalized):
                return Verdict(rule.verdict, rule.reason)
        return Verdict("unknown", f"{cannot_tell} (no rule matches)")

    def judge_hub(self, repo: str, revision: str | None) -> Verdict:
        """A hub reference is pinned only by a full commit hash."""
        if revision is None or not revision.strip():
            return Verdict("floating", "no revision given, so it follows the default branch")
        if self.hub.commit.fullmatch(revision):
            return Verdict("pinned", "full commit hash")
        if self.hub.abbreviated.fullmatch(revision):
            return Verdict(
                "floating", f"revision '{revision}' looks like an abbreviated commit hash; give the full 40 hex digits"
            )
        if revision in self.hub.branch_names:
            return Verdict("floating", f"revision '{revision}' is a branch name, not a commit hash")
        return Verdict("floating", f"revision '{revision}' is a branch or tag name, not a commit hash")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise RulesError(f"{key}: expected a table")
    return value


def _rule(where: str, item: Any) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(f"{where}: expected a table")
    unknown = set(item) - {"pattern", "verdict", "reason", "min_generation"}
    if unknown:
        raise RulesError(f"{where}: unknown keys {sorted(unknown)}")
    pattern, verdict, reason = item.get("pattern"), item.get("verdict"), item.get("reason")
    if not isinstance(pattern, str) or not isinstance(reason, str) or verdict not in _VERDICTS:
        raise RulesError(f"{where}: needs pattern, reason and verdict ('pinned' or 'floating')")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RulesError(f"{where}: bad pattern: {exc}") from exc
    minimum = item.get("min_generation")
    if minimum is not None:
        if not isinstance(minimum, str) or not _GENERATION_RE.match(minimum):
            raise RulesError(f"{where}: min_generation must be a string like '4.6'")
        if "generation" not in compiled.groupindex:
            raise RulesError(f"{where}: min_generation needs a (?P<generation>...) group in the pattern")
    return Rule(compiled, verdict, reason, _generation(minimum) if minimum is not None else None)


@cache
def default_rules() -> PinningRules:
    """The rules shipped with tether."""
    text = resources.files("tether.components").joinpath("floating_rules.toml").read_text(encoding="utf-8")
    return PinningRules.from_toml(text)


def judge_hosted(provider: str, model_id: str) -> Verdict:
    """Judge a hosted model identity with the shipped rules."""
    return default_rules().judge_hosted(provider, model_id)


def judge_hub(repo: str, revision: str | None) -> Verdict:
    """Judge a hub reference with the shipped rules."""
    return default_rules().judge_hub(repo, revision)
