"""The [audit] table of tether.toml: strict keys, tier defaults, regulated requirements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.audit.conftest import AuditProject
from tests.conftest import ProjectDir
from tether.audit.config import parse_interval, resolve_settings, validate_section
from tether.errors import UsageError

PATH = Path("tether.toml")


@pytest.mark.parametrize(("table", "message"), [
    ({"durabilty": "sync"}, "tether.toml: audit.durabilty: unknown key"),
    ({"durability": "eventually"}, "audit.durability: 'eventually'"),
    ({"payloads": "all"}, "audit.payloads: 'all'"),
    ({"retention_days": 0}, "audit.retention_days: expected a positive"),
    ({"retention_days": True}, "audit.retention_days"),
    ({"checkpoint_export_interval": "soon"}, "audit.checkpoint_export_interval"),
    ({"origin": "has space"}, "audit.origin"),
    ({"origin": "a+b"}, "audit.origin"),
    ({"otel": "yes"}, "audit.otel"),
])
def test_bad_keys_and_values_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        validate_section(table, PATH)


def test_intervals_and_defaults_per_tier() -> None:
    assert [parse_interval(v) for v in (90, "90s", "15m", "24h", "7d", "1w", "0h", "x", True)] == [
        90, 90, 900, 86400, 604800, 604800, None, None, None]
    standard = resolve_settings({}, "standard", "support bot", PATH)
    assert (standard.durability, standard.payloads, standard.retention_days, standard.origin) == (
        "batched", "none", None, "tether.local/support-bot/audit")
    regulated = resolve_settings(validate_section({"checkpoint_export_interval": "24h"}, PATH), "regulated", "x", PATH)
    assert (regulated.durability, regulated.retention_days, regulated.checkpoint_export_interval) == ("sync", 3650, 86400)
    with pytest.raises(UsageError, match=r"audit\.checkpoint_export_interval: required in tier 'regulated'"):
        resolve_settings({}, "regulated", "x", PATH)


def test_project_file_rejects_an_unknown_audit_key_through_the_cli(project_dir: ProjectDir) -> None:
    project_dir.run("init")
    project_dir.write("tether.toml", project_dir.read("tether.toml") + '\n[audit]\nretention = 3\n')
    result = project_dir.run("status", code=2)
    assert "tether.toml: audit.retention: unknown key" in result.stderr


def test_regulated_without_export_interval_refuses_audit_commands(audit_project: AuditProject) -> None:
    audit_project.configure('payloads = "none"', tier="regulated")
    result = audit_project.dir.run("audit", "checkpoint", code=2)
    assert "audit.checkpoint_export_interval: required in tier 'regulated'" in result.stderr
