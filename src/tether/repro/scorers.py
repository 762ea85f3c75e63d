"""Scorers: an output and its case -> a score in [0, 1].

Built-ins cover what most eval sets need (``exact``, ``contains``, ``numeric``, ``json_schema``);
anything else is a user function ``module:function(output, case) -> float | bool``. A built-in
checks every case *before* the run starts (``check_case``), so a case missing its ``expected``
field is reported with its line number instead of scoring 0 on every repeat.

A wrong answer in the wrong format (text where a number was expected, invalid JSON) scores 0:
it is the system's failure, not the harness's. A scorer that raises, or returns something that
is not a number in [0, 1], is recorded as an error for that call.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.errors import UsageError
from tether.ids import canonical_json
from tether.repro.config import BUILTIN_SCORERS
from tether.repro.loading import load_callable

_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class CaseFieldError(ValueError):
    """A case that a scorer cannot judge (missing or mistyped field); the caller adds file and line."""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Scorer(ABC):
    """A scorer: ``check_case`` before the run, then ``score`` per call."""

    name: str = ""

    def options(self) -> dict[str, Any]:
        """What configures the scorer (recorded with the run: runs are compared only under the same)."""
        return {}

    def check_case(self, case: dict[str, Any]) -> None:  # noqa: B027 - optional hook: most scorers need nothing
        """Raise :class:`CaseFieldError` when the case lacks what the scorer needs."""

    @abstractmethod
    def score(self, output: Any, case: dict[str, Any]) -> float:
        """The score of one output, in [0, 1]."""


class ExactScorer(Scorer):
    """1 when the output equals ``expected`` (text as is; other values by canonical JSON)."""

    name = "exact"

    def __init__(self, ignore_case: bool = False) -> None:
        self.ignore_case = ignore_case

    def options(self) -> dict[str, Any]:
        return {"ignore_case": self.ignore_case}

    def check_case(self, case: dict[str, Any]) -> None:
        if "expected" not in case:
            raise CaseFieldError("missing field 'expected' (the exact scorer compares the output with it)")

    def score(self, output: Any, case: dict[str, Any]) -> float:
        got, want = _text(output), _text(case["expected"])
        if self.ignore_case:
            got, want = got.casefold(), want.casefold()
        return 1.0 if got == want else 0.0


class ContainsScorer(Scorer):
    """The share of ``expected`` strings (one string or a list) found in the output."""

    name = "contains"

    def __init__(self, ignore_case: bool = False) -> None:
        self.ignore_case = ignore_case

    def options(self) -> dict[str, Any]:
        return {"ignore_case": self.ignore_case}

    def check_case(self, case: dict[str, Any]) -> None:
        expected = case.get("expected")
        if "expected" not in case:
            raise CaseFieldError("missing field 'expected' (the contains scorer looks for it in the output)")
        items = expected if isinstance(expected, list) else [expected]
        if not items or not all(isinstance(item, str) and item for item in items):
            raise CaseFieldError("'expected' must be a non-empty string or a list of them for the contains scorer")

    def score(self, output: Any, case: dict[str, Any]) -> float:
        expected = case["expected"]
        items = expected if isinstance(expected, list) else [expected]
        text = _text(output)
        if self.ignore_case:
            text = text.casefold()
            items = [item.casefold() for item in items]
        return sum(1 for item in items if item in text) / len(items)


class NumericScorer(Scorer):
    """1 when the output (a number, or the first number in text) is within tolerance of ``expected``."""

    name = "numeric"

    def __init__(self, tolerance: float = 1e-9, relative_tolerance: float = 0.0) -> None:
        self.tolerance = tolerance
        self.relative_tolerance = relative_tolerance

    def options(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "relative_tolerance": self.relative_tolerance}

    def check_case(self, case: dict[str, Any]) -> None:
        if not _is_number(case.get("expected")):
            raise CaseFieldError(f"'expected' must be a number for the numeric scorer, got {case.get('expected')!r}")

    @staticmethod
    def _number(output: Any) -> float | None:
        if _is_number(output):
            return float(output)
        if isinstance(output, str):
            match = _NUMBER.search(output)
            if match:
                try:
                    return float(match.group(0).replace(",", "."))
                except ValueError:
                    return None
        return None

    def score(self, output: Any, case: dict[str, Any]) -> float:
        value = self._number(output)
        if value is None or not math.isfinite(value):
            return 0.0
        close = math.isclose(value, float(case["expected"]), rel_tol=self.relative_tolerance, abs_tol=self.tolerance)
        return 1.0 if close else 0.0


class JsonSchemaScorer(Scorer):
    """1 when the output (a JSON value, or text that parses as one) is valid against a JSON Schema.

    The schema is the file ``[evals] schema`` names inside the version, else each case's ``schema``.
    """

    name = "json_schema"

    def __init__(self, schema: dict[str, Any] | None = None, schema_file: str | None = None) -> None:
        self.schema = schema
        self.schema_file = schema_file
        self._validators: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        return {"schema": self.schema_file} if self.schema_file else {}

    def _validator(self, schema: Any) -> Any:
        from jsonschema import exceptions, validators

        key = canonical_json(schema)
        if key not in self._validators:
            if not isinstance(schema, dict | bool):
                raise CaseFieldError(f"the JSON schema must be an object, got {type(schema).__name__}")
            cls = validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except exceptions.SchemaError as exc:
                raise CaseFieldError(f"invalid JSON schema: {exc.message}") from exc
            self._validators[key] = cls(schema)
        return self._validators[key]

    def check_case(self, case: dict[str, Any]) -> None:
        if self.schema is None and "schema" not in case:
            raise CaseFieldError("missing field 'schema' (or set [evals] schema for the json_schema scorer)")
        self._validator(self.schema if self.schema is not None else case["schema"])

    def score(self, output: Any, case: dict[str, Any]) -> float:
        if isinstance(output, str):
            try:
                output = json.loads(output)
            except ValueError:
                return 0.0
        validator = self._validator(self.schema if self.schema is not None else case["schema"])
        return 1.0 if validator.is_valid(output) else 0.0


class CallableScorer(Scorer):
    """A user function ``(output, case) -> float | bool``; anything outside [0, 1] is an error."""

    def __init__(self, spec: str, function: Callable[..., Any]) -> None:
        self.name = spec
        self.function = function

    def score(self, output: Any, case: dict[str, Any]) -> float:
        value = self.function(output, case)
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"scorer {self.name} returned {value!r}; expected a number in [0, 1]")
        return float(value)


def make_scorer(name: str, options: dict[str, Any], version_root: Path | None, project_root: Path | None) -> Scorer:
    """The scorer ``name`` (built-in or ``module:function``) with its ``[evals]`` options."""
    if name == "exact":
        return ExactScorer(ignore_case=bool(options.get("ignore_case", False)))
    if name == "contains":
        return ContainsScorer(ignore_case=bool(options.get("ignore_case", False)))
    if name == "numeric":
        return NumericScorer(
            tolerance=float(options.get("tolerance", 1e-9)),
            relative_tolerance=float(options.get("relative_tolerance", 0.0)),
        )
    if name == "json_schema":
        schema_file = options.get("schema")
        schema = None
        if schema_file is not None and version_root is not None:
            schema_path = version_root / schema_file
            try:
                schema = json.loads(schema_path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise UsageError(f"evals.schema: '{schema_file}' is not in the version being evaluated") from exc
            except (OSError, ValueError) as exc:
                raise UsageError(f"evals.schema: '{schema_file}' is not a readable JSON file ({exc})") from exc
        scorer = JsonSchemaScorer(schema=schema, schema_file=schema_file)
        if schema is not None:
            try:
                scorer._validator(schema)
            except CaseFieldError as exc:
                raise UsageError(f"evals.schema: '{schema_file}': {exc}") from exc
        return scorer
    if name in BUILTIN_SCORERS:
        raise AssertionError(f"built-in scorer {name} has no implementation")
    return CallableScorer(name, load_callable(name, "evals.scorer", project_root))
