"""The errors every layer raises, each with the exit code the command line gives it.

Exit 1: a refused or failed check (nothing to commit, a gate, a verification, a lost race).
Exit 2: bad usage or bad input (a malformed file, an unknown reference, a missing source).
"""

from __future__ import annotations


class TetherError(Exception):
    """Base class: ``str(error)`` is the one-line message shown to the user."""

    exit_code = 2


class UsageError(TetherError):
    """Bad usage or input; names the argument, file or field."""

    exit_code = 2


class ReferenceNotFoundError(UsageError):
    """A reference that names no version, or names more than one."""


class CheckFailedError(TetherError):
    """A check refused the operation (exit 1)."""

    exit_code = 1


class NothingToCommitError(CheckFailedError):
    """The working tree equals the current version; nothing was created."""


class VerificationError(CheckFailedError):
    """Stored content does not match its digest, or is missing."""


class DriftError(CheckFailedError):
    """Content on disk differs from the version it should match."""


class PinningError(CheckFailedError):
    """A floating model identity where the tier forbids one."""
