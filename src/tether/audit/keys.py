"""The log's Ed25519 signing key, kept in files outside the audit database.

``.tether/keys/audit-ed25519`` holds the signer key (mode 0600); ``audit-ed25519.pub`` holds the
verifier key that third parties and witnesses are given. A key in the database would let anyone
who can rewrite the database re-sign it; in its own file it can be moved to a separate mount or
secret store without touching the log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tether.audit.note import NoteError, Signer, Verifier
from tether.errors import UsageError

KEY_DIR = "keys"
SIGNER_FILE = "audit-ed25519"
VERIFIER_FILE = "audit-ed25519.pub"


def key_paths(dot: Path) -> tuple[Path, Path]:
    folder = dot / KEY_DIR
    return folder / SIGNER_FILE, folder / VERIFIER_FILE


def ensure_signing_key(dot: Path, name: str) -> tuple[Signer | None, bool]:
    """Create the key pair unless present; returns (signer, created). Never replaces a key."""
    signer_path, verifier_path = key_paths(dot)
    if signer_path.exists():
        return load_signer(dot), False
    signer_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    signer = Signer.generate(name)
    try:
        fd = os.open(signer_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return load_signer(dot), False
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(signer.encode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp = verifier_path.with_suffix(".pub.tmp")
    tmp.write_text(signer.verifier().encode() + "\n", encoding="ascii")
    os.replace(tmp, verifier_path)
    return signer, True


def load_signer(dot: Path) -> Signer:
    signer_path, _ = key_paths(dot)
    try:
        mode = signer_path.stat().st_mode
        text = signer_path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise UsageError(f"{signer_path}: the audit signing key is missing; restore it (or run `tether init` on a new project)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{signer_path}: cannot read the audit signing key ({exc})") from exc
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise UsageError(f"{signer_path}: the signing key is readable by others (mode {stat.S_IMODE(mode):o}); run chmod 600 on it")
    try:
        return Signer.parse(text)
    except NoteError as exc:
        raise UsageError(f"{signer_path}: {exc}") from exc


def load_verifier(dot: Path) -> Verifier:
    _, verifier_path = key_paths(dot)
    try:
        text = verifier_path.read_text(encoding="ascii")
    except FileNotFoundError:
        return load_signer(dot).verifier()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{verifier_path}: cannot read the audit verifier key ({exc})") from exc
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise UsageError(f"{verifier_path}: {exc}") from exc


def read_verifier_argument(value: str) -> Verifier:
    """``--key``: a verifier key string, or a file holding one."""
    candidate = Path(value)
    text = value
    if "+" not in value or candidate.is_file():
        try:
            text = candidate.read_text(encoding="ascii")
        except FileNotFoundError as exc:
            raise UsageError(f"--key {value}: neither a verifier key (name+keyid+key) nor a readable file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--key {value}: cannot read ({exc})") from exc
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise UsageError(f"--key: {exc}") from exc


def create_key_at_init(dot: Path, project_file: Any) -> None:
    """``tether init``: create the audit signing key, named after the log's origin (idempotent)."""
    from tether.audit.config import default_origin

    section = project_file.sections.get("audit") or {}
    ensure_signing_key(dot, section.get("origin") or default_origin(project_file.name))
