"""Eval cases read from a version's JSONL eval set, each with its key and line number.

Cases are keyed as the ``evalset`` kind keys them (the ``id`` field, else the digest of the
case), so runs of the same eval set pair up case by case. Every problem names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import UsageError
from tether.ids import digest_json


@dataclass(frozen=True)
class EvalCase:
    """One case: its key (``id`` or content digest), the line it is on, and its fields."""

    key: str
    line: int
    data: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _key(case: dict[str, Any], where: str) -> str:
    if "id" not in case:
        return digest_json(case)
    case_id = case["id"]
    if isinstance(case_id, bool) or not isinstance(case_id, str | int):
        raise UsageError(f"{where}: 'id' must be a string or an integer, got {case_id!r}")
    return str(case_id)


def load_cases(path: Path, label: str) -> list[EvalCase]:
    """Every case of a JSONL file (blank lines skipped); ``label`` names the file in errors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{label}: cannot read the eval set ({exc.strerror})") from exc
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{label}: line {number}"
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if not text.strip():
            continue
        text = text.rstrip("\r")
        try:
            case = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            from tether.components.evalset import json_line_error

            raise UsageError(f"{where}: {json_line_error(exc, text)}") from exc
        except ValueError as exc:
            raise UsageError(f"{where}: invalid JSON ({exc})") from exc
        if not isinstance(case, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(case).__name__}")
        key = _key(case, where)
        if key in seen:
            raise UsageError(f"{where}: duplicate case {key[:40]!r} (first on line {seen[key]})")
        seen[key] = number
        cases.append(EvalCase(key=key, line=number, data=case))
    if not cases:
        raise UsageError(f"{label}: the eval set has no cases")
    return cases
