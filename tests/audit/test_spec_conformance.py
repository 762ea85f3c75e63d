"""tether's audit outputs checked by an independent verifier written from the specifications.

Nothing on the checking side comes from ``tether.audit``: the Merkle tree hash, PATH and PROOF
(RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1) and their verification algorithms (2.1.3.2, 2.1.4.2), the
signed-note format and key ID (c2sp.org/signed-note), the checkpoint body
(c2sp.org/tlog-checkpoint) and the Go verifier key string are re-implemented here from the spec
text, so a bug shared by tether's prover and tether's verifier still shows.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog

T0 = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)
SIZES = [1, 2, 3, 7, 8, 9, 255, 256, 257, 1000]
EM_DASH = "\u2014"


# ---- RFC 9162 section 2.1, from the text ---------------------------------------------------------------
def rfc_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_leaf(leaf: bytes) -> bytes:
    return rfc_hash(b"\x00" + leaf)


def rfc_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Tree:
    """MTH over leaf hashes, memoized by range, following 2.1.1 literally."""

    def __init__(self, leaf_hashes: list[bytes]):
        self.leaves = leaf_hashes
        self.memo: dict[tuple[int, int], bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        if end - start == 0:
            return rfc_hash(b"")
        if end - start == 1:
            return self.leaves[start]
        if (start, end) not in self.memo:
            k = rfc_k(end - start)
            self.memo[start, end] = rfc_hash(b"\x01" + self.mth(start, start + k) + self.mth(start + k, end))
        return self.memo[start, end]

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end]) of 2.1.3.1."""
        n = end - start
        if n == 1:
            return []
        k = rfc_k(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b) of 2.1.4.1."""
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = rfc_k(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, b), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[0:n]) for 0 < m < n."""
        return self.subproof(m, 0, n, True)


def lsb(value: int) -> bool:
    return bool(value & 1)


def rfc_verify_inclusion(leaf_index: int, tree_size: int, hash_: bytes, inclusion_path: list[bytes], root_hash: bytes) -> bool:
    """2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, hash_
    for p in inclusion_path:
        if sn == 0:
            return False
        if lsb(fn) or fn == sn:
            r = rfc_hash(b"\x01" + p + r)
            if not lsb(fn):
                while not (lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = rfc_hash(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def rfc_verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: list[bytes]) -> bool:
    """2.1.4.2, step by step (for 0 < first < second)."""
    if not 0 < first < second:
        return False
    if not consistency_path:
        return False
    path = list(consistency_path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if lsb(fn) or fn == sn:
            fr = rfc_hash(b"\x01" + c + fr)
            sr = rfc_hash(b"\x01" + c + sr)
            if not lsb(fn):
                while not (lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = rfc_hash(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


# ---- c2sp.org/signed-note and c2sp.org/tlog-checkpoint, from the text -------------------------------------
class Malformed(Exception):
    pass


UNICODE_SPACES = {"\t", "\n", "\v", "\f", "\r", " ", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)),
                  "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"}


def spec_key_name_ok(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch in UNICODE_SPACES for ch in name)


def spec_b64(text: str) -> bytes:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    if not text or len(text) % 4 or any(ch not in alphabet for ch in text) or "=" in text.rstrip("="):
        raise Malformed(f"not standard padded base64: {text!r}")
    return base64.b64decode(text)


def spec_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public_key).digest()[:4]


@dataclass
class SpecKey:
    name: str
    key_id: bytes
    public_key: bytes


def spec_parse_vkey(vkey: str) -> SpecKey:
    """``name+hex(keyid)+base64(0x01 || key)`` as golang.org/x/mod/sumdb/note encodes it."""
    name, _, rest = vkey.partition("+")
    hex_id, _, material = rest.partition("+")
    raw = spec_b64(material)
    if not spec_key_name_ok(name) or len(hex_id) != 8 or len(raw) != 33 or raw[0] != 0x01:
        raise Malformed(vkey)
    key = SpecKey(name, bytes.fromhex(hex_id), raw[1:])
    if spec_key_id(name, key.public_key) != key.key_id:
        raise Malformed(f"key ID of {vkey} is not SHA-256(name || 0x0A || 0x01 || key)[:4]")
    return key


def spec_open_note(note: bytes, key: SpecKey) -> str:
    """The note text if ``note`` is a well-formed signed note with a valid signature by ``key``."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed("not UTF-8") from exc
    if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded):
        raise Malformed("control character")
    cut = note.rfind(b"\n\n")
    if cut < 0 or not note.endswith(b"\n"):
        raise Malformed("no blank line before the signatures, or no final newline")
    text, block = note[: cut + 1], note[cut + 2:]
    if not block:
        raise Malformed("no signature lines")
    verified = False
    for line in block[:-1].split(b"\n"):
        prefix = (EM_DASH + " ").encode()
        if not line.startswith(prefix):
            raise Malformed(f"signature line {line!r}")
        fields = line[len(prefix):].decode().split(" ")
        if len(fields) != 2 or not spec_key_name_ok(fields[0]):
            raise Malformed(f"signature line {line!r}")
        raw = spec_b64(fields[1])
        if len(raw) < 5:
            raise Malformed("short signature")
        if fields[0] == key.name and raw[:4] == key.key_id:
            try:
                Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[4:], text)
            except InvalidSignature as exc:
                raise Malformed("a signature by the known key does not verify") from exc
            verified = True
    if not verified:
        raise Malformed("no verified signature by the known key")
    return text.decode()


@dataclass
class SpecCheckpoint:
    origin: str
    size: int
    root: bytes
    extensions: list[str]


def spec_parse_checkpoint(text: str) -> SpecCheckpoint:
    if not text.endswith("\n"):
        raise Malformed("no final newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise Malformed("fewer than three non-empty lines, or an empty line")
    origin, size, root = lines[:3]
    if not size or any(ch not in "0123456789" for ch in size) or (size != "0" and size.startswith("0")):
        raise Malformed(f"tree size {size!r}")
    digest = spec_b64(root)
    if len(digest) != 32:
        raise Malformed("root hash length")
    return SpecCheckpoint(origin, int(size), digest, lines[3:])


# ---- driving tether ------------------------------------------------------------------------------------------
def leaves_of(project: AuditProject) -> list[bytes]:
    out = io.StringIO()
    with AuditLog.open(project.root) as log:
        log.export_jsonl(out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["leaf_index"] for row in rows] == list(range(len(rows)))
    for row in rows:
        assert row["leaf_hash"] == rfc_leaf(row["leaf"].encode("utf-8")).hex()
    return [row["leaf"].encode("utf-8") for row in rows]


def grow(project: AuditProject, start: int, end: int) -> None:
    with AuditLog.open(project.root, durability="batched") as log:
        for i in range(start, end):
            log.append(alias="prod", version_id=project.v1, request_id=f"req-{i}", subject=str(i % 5),
                       time=T0 + _dt.timedelta(seconds=i))


def probe_indices(size: int) -> list[int]:
    wanted = {0, 1, size // 2, size - 2, size - 1, 127, 128, 255, 256}
    return sorted(i for i in wanted if 0 <= i < size)


def test_checkpoints_and_proofs_of_growing_logs_follow_rfc9162_and_c2sp(audit_project: AuditProject, tmp_path: Path) -> None:
    run = audit_project.dir.run
    run("audit", "checkpoint")  # creates the log and key (size 0)
    vkey = run("audit", "key").stdout.strip()
    key = spec_parse_vkey(vkey)
    assert key.name == json.loads(run("audit", "key", "--json").stdout)["name"]

    empty = spec_parse_checkpoint(spec_open_note(run("audit", "checkpoint").stdout.encode(), key))
    assert (empty.size, empty.root, empty.extensions) == (0, rfc_hash(b""), [])
    assert empty.origin == key.name  # tlog-checkpoint: the key name SHOULD match the origin

    earlier: list[tuple[Path, SpecCheckpoint]] = []
    grown = 0
    for size in SIZES:
        grow(audit_project, grown, size)
        grown = size
        note = run("audit", "checkpoint").stdout
        checkpoint = spec_parse_checkpoint(spec_open_note(note.encode(), key))
        tree = Tree([rfc_leaf(leaf) for leaf in leaves_of(audit_project)])
        assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == (empty.origin, size, [])
        assert checkpoint.root == tree.mth(0, size), f"root of size {size}"

        for index in probe_indices(size):
            proof_file = tmp_path / f"inclusion-{size}-{index}.json"
            data = json.loads(run("audit", "prove", "--index", str(index), "--json", "-o", str(proof_file)).stdout)[0]
            assert data == json.loads(proof_file.read_text(encoding="utf-8"))
            assert (data["leaf_index"], data["tree_size"], data["checkpoint"]) == (index, size, note)
            path = [bytes.fromhex(item) for item in data["proof"]]
            assert path == tree.path(index, 0, size), f"PATH({index}, D[{size}])"
            leaf = rfc_leaf(data["leaf"].encode("utf-8"))
            assert leaf.hex() == data["leaf_hash"] and leaf == tree.leaves[index]
            assert rfc_verify_inclusion(index, size, leaf, path, checkpoint.root)
            run("audit", "verify-inclusion", str(proof_file), "--key", vkey)

        for old_file, old in earlier:
            proof_file = tmp_path / f"consistency-{old.size}-{size}.json"
            data = json.loads(run("audit", "prove", "--since", str(old_file), "--json", "-o", str(proof_file)).stdout)
            assert (data["old_size"], data["new_size"], data["new_checkpoint"]) == (old.size, size, note)
            path = [bytes.fromhex(item) for item in data["proof"]]
            assert path == tree.proof(old.size, size), f"PROOF({old.size}, D[{size}])"
            assert rfc_verify_consistency(old.size, size, old.root, checkpoint.root, path)
            assert old.root == tree.mth(0, old.size)
            run("audit", "verify-consistency", str(proof_file), "--key", vkey)

        exported = tmp_path / f"checkpoint-{size}.txt"
        exported.write_bytes(note.encode("utf-8"))
        earlier.append((exported, checkpoint))


def test_proofs_of_every_small_tree_match_the_rfc_and_wrong_ones_are_refused() -> None:
    from tether.audit.merkle import ProofError, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion

    tree = Tree([rfc_leaf(str(i).encode()) for i in range(40)])
    for n in range(1, 40):
        root = tree.mth(0, n)
        for m in range(n):
            path = inclusion_proof(m, n, tree.mth)
            assert path == tree.path(m, 0, n)
            verify_inclusion(m, n, tree.leaves[m], path, root)
            wrongs = [[*path, root], [root, *path]] + ([path[:-1]] if path else []) + ([path[::-1]] if len(path) > 1 else [])
            for wrong in wrongs:
                assert not rfc_verify_inclusion(m, n, tree.leaves[m], wrong, root)
                with pytest.raises(ProofError):
                    verify_inclusion(m, n, tree.leaves[m], wrong, root)
            for other in (m + 1, n, n + 1):
                if not rfc_verify_inclusion(other, n, tree.leaves[m], path, root):
                    with pytest.raises(ProofError):
                        verify_inclusion(other, n, tree.leaves[m], path, root)
        for m in range(1, n):
            proof = consistency_proof(m, n, tree.mth)
            assert proof == tree.proof(m, n), f"PROOF({m}, D[{n}])"
            old = tree.mth(0, m)
            assert rfc_verify_consistency(m, n, old, root, proof)
            verify_consistency(m, n, proof, old, root)
            for wrong in ([*proof, root], proof[:-1], [old, *proof], [tree.leaves[0], *proof]):
                assert not rfc_verify_consistency(m, n, old, root, wrong)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, wrong, old, root)
        assert consistency_proof(0, n, tree.mth) == [] and consistency_proof(n, n, tree.mth) == []
        with pytest.raises(ProofError):
            verify_consistency(n, n, [root], root, root)
        with pytest.raises(ProofError):
            verify_consistency(0, n, [root], rfc_hash(b""), root)


def test_the_key_id_and_key_strings_are_the_c2sp_ones(audit_project: AuditProject) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    audit_project.dir.run("audit", "checkpoint")
    signer = (audit_project.root / ".tether" / "keys" / "audit-ed25519").read_text(encoding="ascii").strip()
    vkey = (audit_project.root / ".tether" / "keys" / "audit-ed25519.pub").read_text(encoding="ascii").strip()
    assert audit_project.dir.run("audit", "key").stdout == vkey + "\n"
    parts = signer.split("+", 4)
    assert parts[:2] == ["PRIVATE", "KEY"]
    name, hex_id, material = parts[2:]
    raw = spec_b64(material)
    assert raw[0] == 0x01 and len(raw) == 33
    public = Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert hex_id == spec_key_id(name, public).hex()
    encoded = base64.b64encode(b"\x01" + public).decode()
    assert vkey == f"{name}+{hex_id}+{encoded}"
    assert spec_key_name_ok(name)
    note = audit_project.dir.run("audit", "checkpoint").stdout
    signature = spec_b64(note.rsplit("\n", 2)[1].split(" ")[2])
    assert signature[:4] == struct.pack(">I", int(hex_id, 16)) and len(signature) == 4 + 64


# ---- notes the specs say to refuse: tether's verifier must refuse them too ----------------------------------
def _spec_sign(text: str, name: str, seed: bytes) -> tuple[str, str]:
    """A signed note built with nothing but the spec and the ``cryptography`` package; and the vkey."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = spec_key_id(name, public)
    line = f"{EM_DASH} {name} {base64.b64encode(key_id + private.sign(text.encode())).decode()}\n"
    material = base64.b64encode(b"\x01" + public).decode()
    return f"{text}\n{line}", f"{name}+{key_id.hex()}+{material}"


ORIGIN = "example.com/log"
ROOT = base64.b64encode(hashlib.sha256(b"tree").digest()).decode()
BODY = f"{ORIGIN}\n12\n{ROOT}\n"
NOTE, VKEY = _spec_sign(BODY, ORIGIN, bytes(range(32)))
WITNESS, _ = _spec_sign(BODY, "witness.example/w1", bytes(range(1, 33)))
SIG = NOTE.split("\n\n")[1]


def _signed(body: str) -> str:
    return _spec_sign(body, ORIGIN, bytes(range(32)))[0]


ACCEPTED = {
    "plain": NOTE,
    "cosigned by an unknown witness": NOTE + WITNESS.split("\n\n")[1],
    "extension line": _signed(BODY + "extension line\n"),
}
REFUSED = {
    "trailing space after the signature": NOTE[:-1] + " \n",
    "a trailing space added to the signed text": NOTE.replace(f"{ORIGIN}\n12", f"{ORIGIN} \n12", 1),
    "CRLF line endings": NOTE.replace("\n", "\r\n"),
    "no final newline": NOTE[:-1],
    "a hyphen for the em dash": NOTE.replace(EM_DASH, "-"),
    "signed by an unknown key only": WITNESS,
    "same name, other key ID": BODY + "\n" + SIG.replace(SIG.split(" ")[2][:6], "AAAAAA"),
    "a signature line whose key name holds '+'": NOTE + f"{EM_DASH} a+b AAAAAAAA\n",
    "a signature line whose key name holds U+00A0": NOTE + f"{EM_DASH} a\u00a0b AAAAAAAA\n",
    "two signature lines joined by U+2028": BODY + "\n" + SIG[:-1] + "\u2028" + SIG,
    "tree size in Arabic-Indic digits": _signed(f"{ORIGIN}\n\u0661\u0662\n{ROOT}\n"),
    "tree size as a superscript digit": _signed(f"{ORIGIN}\n\u00b2\n{ROOT}\n"),
    "tree size with a leading zero": _signed(f"{ORIGIN}\n012\n{ROOT}\n"),
    "tree size with a sign": _signed(f"{ORIGIN}\n+12\n{ROOT}\n"),
    "root hash without padding": _signed(f"{ORIGIN}\n12\n{ROOT.rstrip('=')}\n"),
    "empty extension line": _signed(BODY + "\n"),
    "two lines only": _signed(f"{ORIGIN}\n12\n"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_notes_the_spec_accepts_are_accepted(case: str) -> None:
    from tether.audit.note import Verifier, open_checkpoint

    expected = spec_parse_checkpoint(spec_open_note(ACCEPTED[case].encode(), spec_parse_vkey(VKEY)))
    checkpoint = open_checkpoint(ACCEPTED[case], Verifier.parse(VKEY), ORIGIN)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root, list(checkpoint.extensions)) == (
        expected.origin, expected.size, expected.root, expected.extensions)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_notes_the_spec_refuses_are_refused(case: str) -> None:
    from tether.audit.note import NoteError, Verifier, open_checkpoint

    with pytest.raises(Malformed):
        spec_parse_checkpoint(spec_open_note(REFUSED[case].encode(), spec_parse_vkey(VKEY)))
    with pytest.raises(NoteError):
        open_checkpoint(REFUSED[case], Verifier.parse(VKEY), ORIGIN)


def test_checkpoint_files_are_read_byte_for_byte_so_crlf_notes_are_refused(audit_project: AuditProject, tmp_path: Path) -> None:
    """A note with CR in it is malformed (c2sp.org/signed-note): reading the file with universal
    newlines turned CRLF into LF and verified a note no other verifier accepts."""
    run = audit_project.dir.run
    grow(audit_project, 0, 3)
    exported = tmp_path / "checkpoint.txt"
    run("audit", "checkpoint", "--export", str(exported))
    crlf = tmp_path / "checkpoint-crlf.txt"
    crlf.write_bytes(exported.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(Malformed):
        spec_open_note(crlf.read_bytes(), spec_parse_vkey(run("audit", "key").stdout.strip()))
    proof = tmp_path / "proof.json"
    run("audit", "prove", "--index", "1", "-o", str(proof))
    run("audit", "verify-inclusion", str(proof), "--checkpoint", str(exported))
    assert "control characters" in run("audit", "verify-inclusion", str(proof), "--checkpoint", str(crlf), code=1).stderr
    assert "control characters" in run("audit", "verify", "--against", str(crlf), code=1).stderr
    assert "control characters" in run("audit", "prove", "--since", str(crlf), code=2).stderr
