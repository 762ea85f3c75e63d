"""The quick path: ``tether status`` and a no-op ``tether commit`` on a tree proven clean.

Typer's argument coercion, SQLAlchemy and the component kinds together cost far more than
checking a clean tree does, so before building the command line the entry point tries to answer
these two commands from the clean-tree certificate (:mod:`tether.project.clean`). It prints
exactly what the full commands print. Whenever the tree is not provably clean, or the arguments
are anything but the plain forms below, it returns None and the full command runs instead.

    tether [-C DIR] status [--json] [--exit-code]
    tether [-C DIR] commit -m MSG [--json]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_NOTHING_TO_COMMIT = "nothing to commit: every component matches the current version (use --allow-empty)"
_QUICK_COMMIT_TIERS = ("lite", "standard")  # regulated runs its pinning gate before "nothing to commit"


def _parse(argv: list[str]) -> tuple[str, str, dict[str, object]] | None:
    """(folder, command, options) for the plain forms; None for anything else."""
    folder = "."
    args = list(argv)
    while args and args[0] in ("-C", "--project"):
        if len(args) < 2:
            return None
        folder = args[1]
        args = args[2:]
    if not args or args[0] not in ("status", "commit"):
        return None
    command, rest = args[0], args[1:]
    options: dict[str, object] = {"json": False, "exit_code": False, "message": None}
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg == "--json":
            options["json"] = True
        elif arg == "--exit-code" and command == "status":
            options["exit_code"] = True
        elif command == "commit" and arg in ("-m", "--message") and index + 1 < len(rest):
            options["message"] = rest[index + 1]
            index += 1
        elif command == "commit" and arg.startswith("--message="):
            options["message"] = arg[len("--message=") :]
        else:
            return None
        index += 1
    if command == "commit" and not (isinstance(options["message"], str) and options["message"].strip()):
        return None
    return folder, command, options


def _project_root(folder: str) -> Path | None:
    start = Path(folder).resolve()
    for candidate in (start, *start.parents):
        if (candidate / "tether.toml").is_file() and (candidate / ".tether").is_dir():
            return candidate
    return None


def try_quick(argv: list[str]) -> int | None:
    """Run ``status``/``commit`` from the certificate; the exit code, or None to run the full command."""
    if os.environ.get("TETHER_NO_QUICK"):
        return None
    try:
        parsed = _parse(argv)
        if parsed is None:
            return None
        folder, command, options = parsed
        root = _project_root(folder)
        if root is None:
            return None
        from tether.project.clean import check_clean

        clean = check_clean(root)
        if clean is None:
            return None
        if command == "commit" and clean.tier not in _QUICK_COMMIT_TIERS:
            return None
        synced = _synced(root)
        if synced is not None and synced != clean.head:
            return None  # the branch moved under this working copy: the full status explains it
    except Exception:
        return None  # the full command is always right; this path may only be faster
    return _report(command, options, clean, synced)


def _synced(root: Path) -> str | None:
    """The version the tree was last committed from or checked out at (``Project.synced``)."""
    try:
        return (root / ".tether" / "WORKTREE").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _report(command: str, options: dict[str, object], clean: object, synced: str | None = None) -> int:
    from tether.project.clean import CleanTree

    assert isinstance(clean, CleanTree)
    if command == "commit":
        if options["json"]:
            _emit_json({"error": _NOTHING_TO_COMMIT, "exit_code": 1})
        sys.stderr.write(f"tether: error: {_NOTHING_TO_COMMIT}\n")
        return 1
    if options["json"]:
        _emit_json({
            "branch": clean.branch,
            "head": clean.head,
            "clean": True,
            "components": [
                {"name": name, "kind": kind, "state": "clean", "files": [], "spec_changed": False, "error": None}
                for name, kind in clean.components
            ],
            "settings_changed": False,
            "synced": synced,
        })
        return 0
    where = f"on branch {clean.branch}" if clean.branch else "HEAD detached"
    label = "clean:"
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        label = "\x1b[32mclean:\x1b[0m"
    sys.stdout.write(f"{where}, at version {clean.head[:12]}\n{label} every component matches the current version\n")
    return 0


def _emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")
