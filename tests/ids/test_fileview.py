"""Block-wise file reading: the mapped route under a lease and the read route give the same bytes,
and a writer arriving mid-read is noticed instead of crashing the reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tether.ids.fileview as fileview
from tether.ids import FileChangedError, digest_file, open_blocks

MIB = 1024 * 1024


def _big(path: Path, size: int = 12 * MIB) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@given(data=st.binary(max_size=3000), start=st.integers(0, 3000), length=st.integers(0, 3000), step=st.integers(1, 700),
       mapped=st.booleans())
@settings(max_examples=60, deadline=None)
def test_blocks_give_exactly_the_requested_bytes(data: bytes, start: int, length: int, step: int, mapped: bool) -> None:
    start = min(start, len(data))
    end = min(len(data), start + length)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.bin"
        path.write_bytes(data)
        old = fileview.MAP_MIN_BYTES
        fileview.MAP_MIN_BYTES = 1 if mapped else 1 << 62
        try:
            with open_blocks(path) as blocks:
                assert blocks.mapped == (mapped and len(data) > 0)
                got = b"".join(bytes(block) for block in blocks.blocks(start, end, step))
                assert all(len(block) <= step for block in blocks.blocks(start, end, step))
                assert blocks.read_at(start, end - start) == data[start:end]
                assert blocks.digest() == blake3.blake3(data).hexdigest()
        finally:
            fileview.MAP_MIN_BYTES = old
    assert got == data[start:end]


def test_a_large_file_is_mapped_and_hashes_like_blake3(tmp_path: Path) -> None:
    data = _big(tmp_path / "big.bin")
    with open_blocks(tmp_path / "big.bin") as blocks:
        assert blocks.mapped
    assert digest_file(tmp_path / "big.bin") == (blake3.blake3(data).hexdigest(), len(data))
    assert signal.getsignal(signal.SIGIO) == signal.SIG_DFL  # the lease's handler is gone again


def test_a_file_open_for_writing_elsewhere_is_read_not_mapped(tmp_path: Path) -> None:
    data = _big(tmp_path / "big.bin")
    writer = os.open(tmp_path / "big.bin", os.O_WRONLY)
    try:
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert not blocks.mapped  # no lease while a writer holds the file open
            assert blocks.digest() == blake3.blake3(data).hexdigest()
    finally:
        os.close(writer)


def test_outside_the_main_thread_a_file_is_read(tmp_path: Path) -> None:
    _big(tmp_path / "big.bin")
    seen: list[bool] = []

    def worker() -> None:
        with open_blocks(tmp_path / "big.bin") as blocks:
            seen.append(blocks.mapped)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False]


def test_a_writer_arriving_mid_read_stops_the_reader_cleanly(tmp_path: Path) -> None:
    """Another process truncating a mapped file would crash a plain mmap reader (SIGBUS); under the
    lease the truncate waits, the reader stops with FileChangedError, and then the writer goes on."""
    path = tmp_path / "big.bin"
    _big(path)
    with open_blocks(path, "models/big.bin") as blocks:
        assert blocks.mapped
        stream = blocks.blocks(0, None, MIB)
        next(stream)
        writer = subprocess.Popen(
            [sys.executable, "-c", f"import os; os.truncate({str(path)!r}, 0); print('truncated')"],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not blocks._lease.broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)  # the kernel's SIGIO: the truncate is waiting for us
        assert writer.poll() is None
        with pytest.raises(FileChangedError, match=r"models/big\.bin: another process opened it for writing"):
            next(stream)
    out, _ = writer.communicate(timeout=30)
    assert out.strip() == "truncated" and path.stat().st_size == 0


def test_a_sigio_handler_of_the_host_program_is_kept(tmp_path: Path) -> None:
    _big(tmp_path / "big.bin")
    seen: list[int] = []

    def host_handler(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGIO, host_handler)
    try:
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert blocks.mapped
            assert signal.getsignal(signal.SIGIO) is not host_handler  # watching for a lease break
            os.kill(os.getpid(), signal.SIGIO)  # a SIGIO meant for the host still reaches it
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGIO) is host_handler
        assert seen == [signal.SIGIO]
    finally:
        signal.signal(signal.SIGIO, previous)


def test_a_file_that_cannot_be_mapped_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _big(tmp_path / "big.bin")

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(19, "No such device")  # as a file system without mmap answers

    monkeypatch.setattr(fileview.mmap, "mmap", refuse)
    with open_blocks(tmp_path / "big.bin") as blocks:
        assert not blocks.mapped
        assert blocks.digest() == blake3.blake3(data).hexdigest()
    assert signal.getsignal(signal.SIGIO) == signal.SIG_DFL  # the lease was given back
