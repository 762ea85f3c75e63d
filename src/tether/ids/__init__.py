"""Identities: hashing, canonical encoding and version IDs.

Everything tether names is named by the BLAKE3 digest of canonical bytes, so the same
content gets the same name on any machine, whatever its path, clock, user or thread count.
"""

from tether.ids.canonical import canonical_bytes, canonical_json
from tether.ids.fileview import FileBlocks, FileChangedError, digest_file, open_blocks
from tether.ids.hashing import (
    DIGEST_HEX_LEN,
    Hasher,
    digest_bytes,
    digest_json,
    is_digest,
)

__all__ = [
    "DIGEST_HEX_LEN",
    "FileBlocks",
    "FileChangedError",
    "Hasher",
    "canonical_bytes",
    "canonical_json",
    "digest_bytes",
    "digest_file",
    "digest_json",
    "is_digest",
    "open_blocks",
]
