"""Reference syntax: full IDs, unique prefixes, HEAD, branches, aliases, ``ALIAS@{N}`` and ``REF~N`` ancestry."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tether.errors import ReferenceNotFoundError
from tether.ids import is_digest
from tether.meta import MetadataRepository

MIN_PREFIX = 6
_SUFFIX = re.compile(r"(~\d*|\^)$")
_HEX = re.compile(r"^[0-9a-f]+$")
BRANCH_NAME = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]+(?<![./])$")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a branch or an alias, or None when it can.

    Besides the characters, a name must not read as other reference syntax: ``HEAD``, and 6 or
    more hex characters in any case (prefixes match case-insensitively), which
    :func:`resolve_ref` would otherwise take for the branch or alias instead of the version
    whose ID starts with them.
    """
    if name == "HEAD":
        return "HEAD is a reserved reference name"
    if not name or not BRANCH_NAME.match(name):
        return "use letters, digits, '.', '_', '-' and '/' (not starting with '-', no '..', not ending in '.' or '/')"
    if len(name) >= MIN_PREFIX and _HEX.match(name.lower()):
        return f"{MIN_PREFIX} or more hex characters would shadow the version IDs that start with them"
    return None


def split_suffixes(ref: str) -> tuple[str, int]:
    """``main~2^`` -> (``main``, 3)."""
    steps = 0
    while True:
        match = _SUFFIX.search(ref)
        if not match or match.start() == 0:
            return ref, steps
        token = match.group(1)
        steps += 1 if token in ("^", "~") else int(token[1:])
        ref = ref[: match.start()]


def resolve_ref(ref: str, meta: MetadataRepository, head: Callable[[], str | None]) -> str:
    """The version ID ``ref`` names; :class:`ReferenceNotFoundError` when it names none or several."""
    if not ref:
        raise ReferenceNotFoundError("empty reference")
    base, steps = split_suffixes(ref)
    version_id = _resolve_base(base, meta, head)
    for step in range(steps):
        parents = meta.get_parents(version_id)
        if not parents:
            raise ReferenceNotFoundError(f"reference '{ref}': {base} has only {step} first-parent ancestors")
        version_id = parents[0]
    return version_id


def _resolve_base(base: str, meta: MetadataRepository, head: Callable[[], str | None]) -> str:
    if base == "HEAD":
        current = head()
        if current is None:
            raise ReferenceNotFoundError("reference 'HEAD': no version yet (make a first commit)")
        return current
    if "@{" in base:
        return _resolve_alias_at(base, meta)
    branch = meta.get_branch(base)
    if branch is not None:
        return branch
    alias = _alias_target(meta, base)
    if alias is not None:
        return alias
    lowered = base.lower()
    if is_digest(lowered):
        if meta.get_version(lowered) is None:
            raise ReferenceNotFoundError(f"reference '{base}': no such version")
        return lowered
    if _HEX.match(lowered):
        if len(lowered) < MIN_PREFIX:
            raise ReferenceNotFoundError(
                f"reference '{base}': not a branch, and an ID prefix needs at least {MIN_PREFIX} hex characters"
            )
        matches = meta.find_versions_by_prefix(lowered, limit=5)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(match[:12] for match in matches)
            raise ReferenceNotFoundError(f"reference '{base}' is ambiguous: it matches {shown}")
    raise ReferenceNotFoundError(f"reference '{base}': no branch, version or alias of that name")


_ALIAS_AT = re.compile(r"^(?P<name>.+)@\{(?P<n>\d+)\}$")


def _lifecycle(meta: MetadataRepository) -> Any:
    """The alias tables beside ``meta``, or None for a backend without them."""
    from tether.meta.base import MetadataError
    from tether.meta.lifecycle import lifecycle_repository

    try:
        return lifecycle_repository(meta)
    except MetadataError:
        return None


def _alias_target(meta: MetadataRepository, name: str) -> str | None:
    """Where an alias points now (None when no alias has that name)."""
    repo = _lifecycle(meta)
    state = repo.get_alias(name) if repo is not None else None
    return None if state is None else str(state.version_id)


def _resolve_alias_at(base: str, meta: MetadataRepository) -> str:
    """``ALIAS@{N}``: the alias's N-th previous target (``@{0}`` is where it points now)."""
    match = _ALIAS_AT.match(base)
    if match is None:
        raise ReferenceNotFoundError(f"reference '{base}': expected ALIAS@{{N}} with a whole number N")
    name, steps = match.group("name"), int(match.group("n"))
    repo = _lifecycle(meta)
    history = repo.history(name) if repo is not None else []
    if not history:
        raise ReferenceNotFoundError(f"reference '{base}': no alias '{name}'")
    if steps >= len(history):
        raise ReferenceNotFoundError(
            f"reference '{base}': alias '{name}' has only {len(history) - 1} previous target(s)"
        )
    return str(history[len(history) - 1 - steps].to_version)
