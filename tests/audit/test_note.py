"""C2SP signed notes and tlog-checkpoints.

The key pair and signed note are the reference vectors of Go's golang.org/x/mod/sumdb/note
(note_test.go: the "PeterNeumann" keys): Ed25519 is deterministic, so signing the same text with
the same key must reproduce the published signature byte for byte.
"""

from __future__ import annotations

import base64

import pytest

from tether.audit.note import Checkpoint, NoteError, Signer, Verifier, open_checkpoint, open_note, sign_note, split_note

GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def test_go_reference_keys_parse_and_match() -> None:
    verifier = Verifier.parse(GO_VERIFIER)
    signer = Signer.parse(GO_SIGNER)
    assert verifier.name == "PeterNeumann" and f"{verifier.key_id:08x}" == "c74f20a3"
    assert signer.verifier() == verifier
    assert signer.encode() == GO_SIGNER and verifier.encode() == GO_VERIFIER


def test_signing_reproduces_the_go_reference_note_and_it_verifies() -> None:
    assert sign_note(GO_TEXT, Signer.parse(GO_SIGNER)) == GO_NOTE
    assert open_note(GO_NOTE, Verifier.parse(GO_VERIFIER)) == GO_TEXT


def test_changed_text_or_signature_fails() -> None:
    verifier = Verifier.parse(GO_VERIFIER)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), verifier)
    text, _sigs = split_note(GO_NOTE)
    raw = bytearray(base64.b64decode(GO_NOTE.rsplit(" ", 1)[1]))
    raw[10] ^= 1
    bad = text + "\n\u2014 PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(NoteError):
        open_note(bad, verifier)


def test_signatures_by_other_keys_are_ignored_but_one_known_is_required() -> None:
    other = Signer.generate("witness.example/w1")
    cosigned = GO_NOTE + sign_note(GO_TEXT, other).split("\n\n", 1)[1]
    assert open_note(cosigned, Verifier.parse(GO_VERIFIER)) == GO_TEXT
    with pytest.raises(NoteError, match="not signed by key"):
        open_note(sign_note(GO_TEXT, other), Verifier.parse(GO_VERIFIER))


@pytest.mark.parametrize("key", [
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   # wrong key ID
    "PeterNeumann+c74f20a3+AhpcZQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   # wrong type byte
    "PeterNeumann+c74f20a3",                                                 # no key
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq",                # short key
    "PeterNeumann+zz4f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   # not hex
])
def test_malformed_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(key)


def test_checkpoint_round_trip_and_format() -> None:
    signer = Signer.generate("example.com/log")
    root = bytes(range(32))
    checkpoint = Checkpoint("example.com/log", 20852163, root)
    assert checkpoint.text() == f"example.com/log\n20852163\n{base64.b64encode(root).decode()}\n"
    note = sign_note(checkpoint.text(), signer)
    assert open_checkpoint(note, signer.verifier(), "example.com/log") == checkpoint
    with pytest.raises(NoteError, match="not 'other'"):
        open_checkpoint(note, signer.verifier(), "other")


@pytest.mark.parametrize("text", [
    "origin\n12\n",                                   # no root
    "origin\n012\n" + "A" * 43 + "=\n",               # leading zero
    "origin\n-1\n" + "A" * 43 + "=\n",                # not a number
    "origin\n1\n" + "AAAA\n",                         # short root
    "\n1\n" + "A" * 43 + "=\n",                       # empty origin
    "origin\n1\n" + "A" * 43 + "=\n\n",               # empty extension line
])
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)
