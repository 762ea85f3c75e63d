"""The version manifest: what a version ID is the digest of.

The *content digest* covers ``{component name -> snapshot digest}`` alone, like Git's tree hash;
the *version ID* is the digest of the whole canonical manifest, like a Git commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tether.errors import VerificationError
from tether.ids import canonical_bytes, digest_bytes, digest_json

MANIFEST_FORMAT = "tether.version/1"


def content_digest(components: dict[str, str]) -> str:
    """Digest of the components alone: the same content gives the same digest anywhere."""
    return digest_json({"components": components})


@dataclass(frozen=True)
class Manifest:
    """An immutable version manifest."""

    components: dict[str, str]  # name -> snapshot digest
    kinds: dict[str, str]  # name -> kind (also inside each snapshot; here for cheap listing)
    parents: tuple[str, ...]
    message: str
    author: str
    time: str
    tier: str
    project: str
    environment: str | None = None  # digest of the captured environment snapshot
    project_file: str | None = None  # blob digest of tether.toml as committed
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def content_digest(self) -> str:
        return content_digest(self.components)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "project": self.project,
            "content_digest": self.content_digest,
            "components": {name: {"kind": self.kinds[name], "snapshot": digest} for name, digest in self.components.items()},
            "parents": list(self.parents),
            "message": self.message,
            "author": self.author,
            "time": self.time,
            "tier": self.tier,
            "environment": self.environment,
            "project_file": self.project_file,
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @property
    def version_id(self) -> str:
        return digest_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, expected_id: str | None = None) -> Manifest:
        """Parse a stored manifest; with ``expected_id``, refuse bytes that do not hash to it."""
        if expected_id is not None and digest_bytes(data) != expected_id:
            raise VerificationError(f"version {expected_id[:12]}: manifest does not hash to its ID (corrupted metadata)")
        raw = json.loads(data)
        if raw.get("format") != MANIFEST_FORMAT:
            raise VerificationError(f"version manifest: unknown format {raw.get('format')!r}")
        components = {name: item["snapshot"] for name, item in raw["components"].items()}
        kinds = {name: item["kind"] for name, item in raw["components"].items()}
        manifest = cls(
            components=components,
            kinds=kinds,
            parents=tuple(raw["parents"]),
            message=raw["message"],
            author=raw["author"],
            time=raw["time"],
            tier=raw["tier"],
            project=raw["project"],
            environment=raw.get("environment"),
            project_file=raw.get("project_file"),
            extra=raw.get("extra", {}),
        )
        if manifest.content_digest != raw["content_digest"]:
            raise VerificationError("version manifest: content digest does not match its components")
        return manifest
