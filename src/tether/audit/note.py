"""C2SP signed notes with Ed25519 signatures, and C2SP ``tlog-checkpoint`` bodies.

Keys use the encodings of Go's ``golang.org/x/mod/sumdb/note`` (which witnesses and transparency
tooling read): a verifier key is ``name+hexkeyid+base64(0x01 || public key)``, a signer key is
``PRIVATE+KEY+name+hexkeyid+base64(0x01 || seed)``, and the key ID is
SHA-256(name || 0x0A || 0x01 || public key)[:4].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from tether.errors import UsageError, VerificationError

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100


class NoteError(VerificationError):
    """A note, key or checkpoint that is malformed or whose signature does not verify."""


def valid_key_name(name: str) -> bool:
    """A key name as c2sp.org/signed-note allows it: non-empty, without Unicode spaces or '+'."""
    return bool(name) and not any(ch.isspace() or ch == "+" for ch in name)


def _check_name(name: str) -> None:
    if not valid_key_name(name):
        raise UsageError(f"key name '{name}': must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return struct.unpack(">I", digest[:4])[0]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise NoteError(f"{what}: not valid base64") from exc


@dataclass(frozen=True)
class Verifier:
    """A public key that checks signatures made under ``name``."""

    name: str
    key_id: int
    public_key: bytes

    def encode(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        text = text.strip()
        parts = text.split("+", 2)  # the base64 key itself may hold '+'
        if len(parts) != 3:
            raise NoteError(f"verifier key '{text[:40]}': expected name+keyid+base64key")
        name, hexid, material = parts
        if not name or any(ch.isspace() for ch in name):
            raise NoteError("verifier key: malformed name")
        if len(hexid) != 8 or any(ch not in "0123456789abcdef" for ch in hexid):
            raise NoteError(f"verifier key '{name}': malformed key ID '{hexid}'")
        raw = _b64decode(material, f"verifier key '{name}'")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError(f"verifier key '{name}': not an Ed25519 key (type byte 0x01 and 32 bytes)")
        public = raw[1:]
        if key_id(name, public) != int(hexid, 16):
            raise NoteError(f"verifier key '{name}': key ID {hexid} does not match the key")
        return cls(name, int(hexid, 16), public)

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes under ``name``."""

    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Signer:
        import os

        _check_name(name)
        return cls(name, os.urandom(32))

    @property
    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.public_key)

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key)

    def encode(self) -> str:
        material = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{material}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        text = text.strip()
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("signer key: expected PRIVATE+KEY+name+keyid+base64key")
        name, hexid, material = parts[2:]
        if not valid_key_name(name):
            raise NoteError("signer key: malformed name")
        raw = _b64decode(material, f"signer key '{name}'")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError(f"signer key '{name}': not an Ed25519 key")
        signer = cls(name, raw[1:])
        if f"{signer.key_id:08x}" != hexid:
            raise NoteError(f"signer key '{name}': key ID {hexid} does not match the key")
        return signer

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: int
    signature: bytes


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("note contains control characters")


def sign_note(text: str, signer: Signer) -> str:
    """``text`` followed by a blank line and one signature line."""
    _check_text(text)
    signature = signer.sign(text.encode("utf-8"))
    blob = base64.b64encode(struct.pack(">I", signer.key_id) + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {blob}\n"


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """The text and the signature lines of a note (nothing verified yet)."""
    _check_text(note)
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2:]
    if not block:
        raise NoteError("malformed note: no signatures")
    signatures = []
    # lines end at U+000A only (str.splitlines would also split at U+2028, U+0085...); a signature
    # line naming an invalid key makes the note malformed, as Go's note.Open has it
    for line in block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line '{line[:40]}'")
        name, sep, blob = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep or not valid_key_name(name) or " " in blob:
            raise NoteError(f"malformed signature line '{line[:40]}'")
        raw = _b64decode(blob, f"signature by '{name}'")
        if len(raw) < 5:
            raise NoteError(f"signature by '{name}' is too short")
        signatures.append(NoteSignature(name, struct.unpack(">I", raw[:4])[0], raw[4:]))
        if len(signatures) > MAX_SIGNATURES:
            raise NoteError("note has too many signatures")
    return text, signatures


def open_note(note: str, verifier: Verifier) -> str:
    """The note's text once a signature by ``verifier`` checks out; :class:`NoteError` otherwise.

    Signatures by other keys are ignored, as the spec requires (witness cosignatures, rotation).
    """
    text, signatures = split_note(note)
    known = [sig for sig in signatures if sig.name == verifier.name and sig.key_id == verifier.key_id]
    if not known:
        raise NoteError(f"note is not signed by key '{verifier.name}' (key ID {verifier.key_id:08x})")
    for sig in known:
        if not verifier.verify(text.encode("utf-8"), sig.signature):
            raise NoteError(f"signature by '{verifier.name}' does not verify: the note was changed or signed by another key")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash (and opaque extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint: expected origin, tree size and root hash lines")
        lines = lines[:-1]
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("checkpoint: empty origin line")
        # ASCII digits only: str.isdigit() also holds for '\u0661' (which int() reads as 1) and '\u00b2'
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError(f"checkpoint: tree size '{size_text}' is not a decimal number")
        root = _b64decode(root_text, "checkpoint root hash")
        if len(root) != 32:
            raise NoteError("checkpoint: root hash is not 32 bytes")
        if any(not line for line in extensions):
            raise NoteError("checkpoint: empty extension line")
        return cls(origin, int(size_text), root, tuple(extensions))


def open_checkpoint(note: str, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse it; ``origin``, when given, must match."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint is for log '{checkpoint.origin}', not '{origin}'")
    return checkpoint
