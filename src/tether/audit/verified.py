"""What an earlier ``tether audit verify`` established, kept outside the audit database.

``.tether/keys/audit-verified.json`` says "the log was verified through checkpoint N": the size
and root of that checkpoint, the compact range (frontier) of the tree of N leaves, and the hash
of leaf N-1. It is authenticated with HMAC-SHA256 under ``.tether/keys/audit-verified.key``
(32 random bytes, mode 0600, created on the first verify), so someone who can only rewrite the
database can neither forge nor move it forward; a file that fails its MAC is ignored (the next
verify is a full one) and reported.

With it, a default verify recomputes the tree from the frontier plus the records after N alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tether.audit.merkle import HASH_SIZE, CompactRange, ProofError

STATE_FILE = "audit-verified.json"
STATE_KEY_FILE = "audit-verified.key"
_FORMAT = "tether.audit-verified/1"


@dataclass(frozen=True)
class VerifiedState:
    """The tree verified through a signed checkpoint of ``size`` leaves."""

    origin: str
    size: int
    root: bytes
    frontier: list[bytes]  # CompactRange(size).nodes, largest subtree first
    last_hash: bytes | None  # the leaf hash of leaf size-1 (None for an empty tree)

    def compact(self) -> CompactRange:
        return CompactRange(self.size, self.frontier)

    def body(self) -> dict[str, object]:
        return {
            "format": _FORMAT,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "frontier": [node.hex() for node in self.frontier],
            "last_hash": self.last_hash.hex() if self.last_hash is not None else None,
        }


def _paths(dot: Path) -> tuple[Path, Path]:
    folder = dot / "keys"
    return folder / STATE_FILE, folder / STATE_KEY_FILE


def _mac(key: bytes, body: dict[str, object]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def _read_key(path: Path) -> bytes | None:
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return key if len(key) == 32 else None


def _ensure_key(path: Path) -> bytes:
    key = _read_key(path)
    if key is not None:
        return key
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fresh = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(fresh.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return fresh


def load_state(dot: Path, origin: str) -> tuple[VerifiedState | None, str | None]:
    """(state, None) when a valid state exists; (None, why it was ignored) when one is unusable;
    (None, None) when there is none."""
    state_path, key_path = _paths(dot)
    if not state_path.exists():
        return None, None
    key = _read_key(key_path)
    if key is None:
        return None, f"{state_path}: its key {key_path.name} is missing or unreadable; ignored (full verify)"
    try:
        data = json.loads(state_path.read_text(encoding="utf-8"))
        body, mac = data["body"], data["mac"]
        if not isinstance(body, dict) or not isinstance(mac, str) or not hmac.compare_digest(_mac(key, body), mac):
            return None, f"{state_path}: its MAC does not verify (changed); ignored (full verify)"
        if body.get("format") != _FORMAT:
            return None, f"{state_path}: unknown format; ignored (full verify)"
        size = int(body["size"])
        root = bytes.fromhex(body["root"])
        frontier = [bytes.fromhex(node) for node in body["frontier"]]
        last = bytes.fromhex(body["last_hash"]) if body["last_hash"] is not None else None
        state = VerifiedState(str(body["origin"]), size, root, frontier, last)
        if len(root) != HASH_SIZE or any(len(node) != HASH_SIZE for node in frontier) or state.compact().root() != root:
            return None, f"{state_path}: inconsistent contents; ignored (full verify)"
    except (OSError, ValueError, KeyError, TypeError, ProofError) as exc:
        return None, f"{state_path}: cannot read ({exc}); ignored (full verify)"
    if state.origin != origin:
        return None, f"{state_path}: it is for log '{state.origin}', not '{origin}'; ignored (full verify)"
    return state, None


def save_state(dot: Path, state: VerifiedState) -> None:
    """Write the state atomically (temporary file, fsync, rename), creating its key if needed."""
    state_path, key_path = _paths(dot)
    key = _ensure_key(key_path)
    body = state.body()
    tmp = state_path.with_name(f".{state_path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"body": body, "mac": _mac(key, body)}, sort_keys=True, indent=1) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, state_path)
