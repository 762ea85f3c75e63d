"""Printing: JSON for machines, Rich for people, errors as one line on stderr with the right exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from tether.errors import TetherError

_console = None
_err_console = None


def console():  # type: ignore[no-untyped-def]
    """Rich console on stdout (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        # Piped output is read whole (or by a program), so tables are not squeezed to 80 columns.
        width = None if sys.stdout.isatty() else 160
        _console = Console(highlight=False, soft_wrap=True, width=width)
    return _console


def err_console():  # type: ignore[no-untyped-def]
    """Rich console on stderr for warnings and progress."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def fail(message: str, code: int, as_json: bool = False) -> NoReturn:
    """One line naming what is wrong, on stderr (and as JSON on stdout under ``--json``)."""
    if as_json:
        emit_json({"error": message, "exit_code": code})
    sys.stderr.write(f"tether: error: {message}\n")
    raise typer.Exit(code)


def click_module() -> Any:
    """The Click that Typer parses with: Typer 0.2x vendors it as ``typer._click``, older ones use ``click``."""
    import typer.core

    return getattr(typer.core, "_click", None) or typer.core.click  # type: ignore[attr-defined]


def usage_failure(exc: Exception, args: Sequence[str]) -> NoReturn:
    """A Click error (missing argument or option, bad value, no such command or option) as the same
    one line as every other error, naming the subcommand; as JSON too when ``--json`` is in ``args``."""
    click = click_module()
    assert isinstance(exc, click.exceptions.ClickException)
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and not message[1:2].isupper():
        message = message[0].lower() + message[1:]  # "Missing argument" -> "missing argument", as tether's own errors read
    names: list[str] = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(name for name in names if name)
    if not command and "requires an argument" in message:
        command = _command_in(args)  # Click raises this one before the subcommand's context exists
    if command:
        message = f"{command}: {message}"
    if isinstance(exc, click.exceptions.UsageError):
        message += f" (see `tether {command + ' ' if command else ''}--help`)"
    code = 2 if isinstance(exc, click.exceptions.UsageError) else exc.exit_code
    fail(message, code, "--json" in args)


def _command_in(args: Sequence[str]) -> str:
    """The (sub)command words of a command line: the words before the first option after them,
    skipping ``-C DIR``; ``audit query --at`` -> ``audit query``."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-C", "--project"):
            skip = not words
        elif arg.startswith("-"):
            if words:
                break
        else:
            words.append(arg)
            if len(words) == 2 or words[0] not in _GROUPS:
                break
    return " ".join(words)


#: commands that take a subcommand
_GROUPS = ("audit", "eval", "policy", "repro")


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of a known failure, None for a bug (which should show its traceback)."""
    if isinstance(exc, TetherError):
        return exc.exit_code
    from tether.components.base import ComponentError
    from tether.meta.base import BranchConflictError, MetadataError
    from tether.store.base import ObjectCorruptError, ObjectMissingError, StoreError

    if isinstance(exc, ObjectCorruptError | ObjectMissingError | BranchConflictError):
        return 1
    if isinstance(exc, ComponentError | StoreError | MetadataError):
        return 2
    return None


@contextmanager
def handled(as_json: bool = False) -> Iterator[None]:
    """Turn tether's errors into a one-line message and exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        fail(str(exc), code, as_json)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def notice(message: str) -> None:
    err_console().print(f"[cyan]notice:[/cyan] {message}", markup=True)


def make_progress() -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    """A Rich progress bar on stderr, shown only for long work (many items) and only on a terminal:
    without one, a bar cannot be redrawn and would leave a line behind on stderr."""
    state: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if total < 200 and "bar" not in state:
            return
        if "terminal" not in state:
            state["terminal"] = err_console().is_terminal
        if not state["terminal"]:
            return
        if "bar" not in state:
            from rich.progress import Progress

            bar = Progress(console=err_console(), transient=True)
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task(phase, total=total)
        state["bar"].update(state["task"], completed=done, total=total, description=phase)

    def close() -> None:
        if "bar" in state:
            state["bar"].stop()

    return update, close
