"""The ``[evals]`` table of ``tether.toml``: how a version is evaluated and compared.

The table is how to *judge* a version, not part of its behavior, so the working tree's table is
used whatever version is evaluated (an old version can be judged by today's runner and scorer).
It is strict like the rest of the file: an unknown key or a wrong type is an error naming it.

```toml
[evals]
runner = "support_runner:answer"   # package.module:function(version, case[, seed]) -> output
scorer = "contains"                # exact | contains | numeric | json_schema | "module:function"
margin = 0.02                      # equivalence margin on the mean score (behavioral reproduction)
evalset = "evals"                  # which evalset component (needed only when there are several)
repeat = 1                         # runs of each case
parallel = 4                       # worker threads (default: the runner's `parallel` attribute, else 1)
seed = 1234                        # run seed when --seed is not given (default: a fresh random one)
tolerance = 0.001                  # numeric scorer: absolute tolerance
relative_tolerance = 0.0           # numeric scorer: relative tolerance
ignore_case = false                # contains / exact scorers
schema = "schemas/answer.json"     # json_schema scorer: a schema file in the version (else each case's `schema`)
```
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.errors import UsageError

BUILTIN_SCORERS = ("exact", "contains", "numeric", "json_schema")
DEFAULT_MARGIN = 0.02
CALLABLE_SPEC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: keys that configure the built-in scorers (recorded with each run: they change its scores)
SCORER_OPTION_KEYS = ("tolerance", "relative_tolerance", "ignore_case", "schema")
_KEYS = ("runner", "scorer", "margin", "evalset", "repeat", "parallel", "seed", *SCORER_OPTION_KEYS)


def _error(path: Path, key: str, message: str) -> UsageError:
    return UsageError(f"{path.name}: evals.{key}: {message}")


def _positive_int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, key, f"expected a whole number of at least 1, got {value!r}")
    return value


def _non_negative(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _error(path, key, f"expected a number of at least 0, got {value!r}")
    return float(value)


def check_callable_spec(spec: Any, where: str) -> str:
    """``package.module:function``, else a :class:`UsageError` naming ``where``."""
    if not isinstance(spec, str) or not CALLABLE_SPEC.match(spec):
        raise UsageError(f"{where}: expected 'package.module:function', got {spec!r}")
    return spec


def validate_section(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check ``[evals]`` strictly and return it normalized (only the keys given)."""
    result: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise _error(path, key, f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
        if key == "runner":
            result[key] = check_callable_spec(value, f"{path.name}: evals.runner")
        elif key == "scorer":
            if value not in BUILTIN_SCORERS:
                if not isinstance(value, str) or ":" not in value:
                    raise _error(path, key, f"expected one of {', '.join(BUILTIN_SCORERS)} or 'module:function', got {value!r}")
                check_callable_spec(value, f"{path.name}: evals.scorer")
            result[key] = value
        elif key == "margin":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise _error(path, key, f"expected a number between 0 and 1 (exclusive), got {value!r}")
            result[key] = float(value)
        elif key in ("evalset", "schema"):
            if not isinstance(value, str) or not value:
                raise _error(path, key, f"expected a non-empty string, got {value!r}")
            result[key] = value
        elif key in ("repeat", "parallel"):
            result[key] = _positive_int(path, key, value)
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _error(path, key, f"expected a whole number of at least 0, got {value!r}")
            result[key] = value
        elif key in ("tolerance", "relative_tolerance"):
            result[key] = _non_negative(path, key, value)
        elif key == "ignore_case":
            if not isinstance(value, bool):
                raise _error(path, key, f"expected true or false, got {value!r}")
            result[key] = value
    return result


@dataclass(frozen=True)
class EvalSettings:
    """The ``[evals]`` table with its defaults applied."""

    runner: str | None = None
    scorer: str = "exact"
    margin: float = DEFAULT_MARGIN
    evalset: str | None = None
    repeat: int = 1
    parallel: int | None = None
    seed: int | None = None
    scorer_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: dict[str, Any] | None) -> EvalSettings:
        section = section or {}
        return cls(
            runner=section.get("runner"),
            scorer=section.get("scorer", "exact"),
            margin=section.get("margin", DEFAULT_MARGIN),
            evalset=section.get("evalset"),
            repeat=section.get("repeat", 1),
            parallel=section.get("parallel"),
            seed=section.get("seed"),
            scorer_options={key: section[key] for key in SCORER_OPTION_KEYS if key in section},
        )
