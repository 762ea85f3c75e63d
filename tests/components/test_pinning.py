"""Floating-identity rules: every documented example, unknown providers, hub revisions, the data format."""

from __future__ import annotations

import pytest

from tether.components.pinning import PinningRules, RulesError, default_rules, judge_hosted, judge_hub

HOSTED: list[tuple[str, str, str]] = [
    ("openai", "gpt-4o", "floating"),
    ("openai", "gpt-4o-2024-08-06", "pinned"),
    ("openai", "gpt-4-0613", "pinned"),
    ("openai", "gpt-3.5-turbo-0125", "pinned"),
    ("openai", "chatgpt-4o-latest", "floating"),
    ("openai", "gpt-4o-mini-latest", "floating"),
    ("openai", "o1", "floating"),
    ("openai", "gpt-4.1", "floating"),
    ("openai", "o1-2024-12-17", "pinned"),
    ("openai", "gpt-4o-mini-2024-07-18", "pinned"),
    ("openai", "ft:gpt-4o-2024-08-06:acme::abc123", "pinned"),
    ("OpenAI", "GPT-4o-2024-08-06", "pinned"),
    ("anthropic", "claude-3-5-sonnet-latest", "floating"),
    ("anthropic", "claude-3-5-sonnet-20241022", "pinned"),
    ("anthropic", "claude-sonnet-4-20250514", "pinned"),
    ("anthropic", "claude-sonnet-4-6", "pinned"),
    ("anthropic", "claude-opus-4-6", "pinned"),
    ("anthropic", "claude-opus-4-7", "pinned"),
    ("anthropic", "claude-haiku-5-0", "pinned"),
    ("anthropic", "claude-sonnet-4-5", "floating"),
    ("anthropic", "claude-opus-4-1", "floating"),
    ("anthropic", "claude-opus-4-0", "floating"),
    ("anthropic", "claude-3-7-sonnet", "floating"),
    ("google", "gemini-1.5-pro-latest", "floating"),
    ("google", "gemini-1.5-pro", "floating"),
    ("google", "gemini-1.5-pro-002", "pinned"),
    ("google", "gemini-2.0-flash-001", "pinned"),
    ("google", "models/gemini-2.0-flash-001", "pinned"),
    ("gemini", "gemini-1.5-pro", "floating"),
    ("gemini", "gemini-1.5-pro-002", "pinned"),
    ("vertex_ai", "gemini-1.5-pro-latest", "floating"),
    ("vertex-ai", "gemini-2.0-flash-001", "pinned"),
]


@pytest.mark.parametrize(("provider", "model_id", "level"), HOSTED, ids=[f"{p}:{m}" for p, m, _ in HOSTED])
def test_hosted_examples(provider: str, model_id: str, level: str) -> None:
    verdict = judge_hosted(provider, model_id)
    assert verdict.level == level
    assert verdict.reason


@pytest.mark.parametrize(
    ("provider", "model_id"),
    [("mistral", "mistral-large-2411"), ("acme", "foo-1"), ("azure_openai", "my-gpt4o-deployment"), ("azure", "prod"), ("", "x")],
)
def test_unknown_providers_are_never_pinned(provider: str, model_id: str) -> None:
    verdict = judge_hosted(provider, model_id)
    assert verdict.level == "unknown"
    assert verdict.reason.startswith(f"tether cannot tell whether provider '{provider}' model '{model_id}' is pinned")


LATEST = [
    ("mistral", "mistral-large-latest"),
    ("acme", "foo-latest"),
    ("acme", "acme:foo-latest"),
    ("ollama", "llama3:latest"),
    ("Acme", "FOO-LATEST"),
    ("azure_openai", "gpt-4o-latest"),
    ("", "x-latest"),
    ("openai", "chatgpt-4o-latest"),
]


@pytest.mark.parametrize(("provider", "model_id"), LATEST, ids=[f"{p}:{m}" for p, m in LATEST])
def test_a_latest_id_floats_for_every_provider(provider: str, model_id: str) -> None:
    verdict = judge_hosted(provider, model_id)
    assert verdict.level == "floating"
    assert "latest" in verdict.reason


def test_every_provider_rules_are_data() -> None:
    rules = PinningRules.from_toml(CUSTOM + "\n[[every_provider]]\npattern = '.*-nightly'\nverdict = 'floating'\nreason = 'n'\n")
    assert rules.judge_hosted("nobody", "x-nightly").level == "floating"
    assert rules.judge_hosted("nobody", "x-latest").level == "unknown"  # only the shipped data says so
    with pytest.raises(RulesError, match="every_provider"):
        PinningRules.from_toml("every_provider = 3\n" + CUSTOM)


def test_azure_notice_says_why() -> None:
    assert "deployment" in judge_hosted("azure_openai", "prod").reason


HUB: list[tuple[str | None, str, str]] = [
    ("c5ee24cb16019beea0893ab7796b1df96625c6b8", "pinned", "full commit hash"),
    ("C5EE24CB16019BEEA0893AB7796B1DF96625C6B8", "pinned", "full commit hash"),
    (None, "floating", "no revision"),
    ("", "floating", "no revision"),
    ("main", "floating", "revision 'main' is a branch name, not a commit hash"),
    ("master", "floating", "revision 'master' is a branch name, not a commit hash"),
    ("v1.0", "floating", "revision 'v1.0' is a branch or tag name, not a commit hash"),
    ("refs/pr/1", "floating", "not a commit hash"),
    ("c5ee24c", "floating", "abbreviated commit hash"),
    ("c5ee24cb16019beea0893ab7796b1df96625c6b8a", "floating", "not a commit hash"),
]


@pytest.mark.parametrize(("revision", "level", "reason"), HUB)
def test_hub_revisions(revision: str | None, level: str, reason: str) -> None:
    verdict = judge_hub("cross-encoder/ms-marco-MiniLM-L-6-v2", revision)
    assert verdict.level == level
    assert reason in verdict.reason


def test_shipped_rules_load_and_cover_the_main_providers() -> None:
    rules = default_rules()
    assert {"openai", "anthropic", "google"} <= set(rules.providers)
    assert rules.provider_key("Vertex_AI") == "google"


CUSTOM = """
[aliases]
acme-cloud = "acme"

[[providers.acme]]
pattern = 'acme-(?P<generation>\\d+(?:\\.\\d+)?)'
min_generation = "2.5"
verdict = "pinned"
reason = "acme freezes names from 2.5 on"

[[providers.acme]]
pattern = 'acme-.*'
verdict = "floating"
reason = "older acme names move"

[hub]
commit_pattern = '[0-9a-f]{40}'
abbreviated_pattern = '[0-9a-f]{7,39}'
"""


@pytest.mark.parametrize(
    ("model_id", "level"),
    [("acme-2.5", "pinned"), ("acme-3", "pinned"), ("acme-2.4", "floating"), ("acme-2", "floating"), ("x", "unknown")],
)
def test_generation_condition_is_generic_data(model_id: str, level: str) -> None:
    rules = PinningRules.from_toml(CUSTOM)
    assert rules.judge_hosted("acme-cloud", model_id).level == level


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[providers.x]]\npattern = 'a'\nverdict = 'maybe'\nreason = 'r'\n", "verdict"),
        ("[[providers.x]]\npattern = '('\nverdict = 'pinned'\nreason = 'r'\n", "bad pattern"),
        ("[[providers.x]]\npattern = 'a'\nverdict = 'pinned'\nreason = 'r'\nmin_generation = '4.6'\n", "generation"),
        ("[[providers.x]]\npattern = 'a'\nverdict = 'pinned'\nreason = 'r'\nextra = 1\n", "unknown keys"),
        ("providers = 3\n", "expected a table"),
        ("[hub]\n", "hub"),
        ("not toml [", "floating rules"),
    ],
)
def test_malformed_rules_are_refused(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        PinningRules.from_toml(text)
