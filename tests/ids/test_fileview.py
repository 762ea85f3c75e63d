"""Block-wise file reading: the mapped route under a lease and the read route give the same bytes,
and a writer arriving mid-read is noticed instead of crashing the reader."""

from __future__ import annotations

import ctypes
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


def _realtime_handlers() -> dict[int, object]:
    return {signum: signal.getsignal(signum) for signum in range(signal.SIGRTMIN, signal.SIGRTMAX + 1)}


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
    before = _realtime_handlers()
    with open_blocks(tmp_path / "big.bin") as blocks:
        assert blocks.mapped
    assert digest_file(tmp_path / "big.bin") == (blake3.blake3(data).hexdigest(), len(data))
    assert signal.getsignal(signal.SIGIO) == signal.SIG_DFL  # SIGIO is never touched
    assert _realtime_handlers() == before  # the lease's handler is gone again


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
    lease the truncate waits, the reader stops with FileChangedError, and then the writer goes on.
    The kernel tells us on the lease's own real-time signal, not SIGIO."""
    path = tmp_path / "big.bin"
    _big(path)
    before = _realtime_handlers()
    sigios: list[int] = []
    previous_sigio = signal.signal(signal.SIGIO, lambda signum, frame: sigios.append(signum))
    try:
        with open_blocks(path, "models/big.bin") as blocks:
            assert blocks.mapped
            lease = blocks._lease  # type: ignore[attr-defined]
            assert signal.SIGRTMIN <= lease.signum <= signal.SIGRTMAX
            stream = blocks.blocks(0, None, MIB)
            next(stream)
            writer = subprocess.Popen(
                [sys.executable, "-c", f"import os; os.truncate({str(path)!r}, 0); print('truncated')"],
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 30
            while not lease.broken and time.monotonic() < deadline:
                time.sleep(0.01)  # the kernel's signal: the truncate is waiting for us
            assert writer.poll() is None
            with pytest.raises(FileChangedError, match=r"models/big\.bin: another process opened it for writing"):
                next(stream)
        out, _ = writer.communicate(timeout=30)
    finally:
        signal.signal(signal.SIGIO, previous_sigio)
    assert out.strip() == "truncated" and path.stat().st_size == 0
    assert sigios == []  # the break came on the real-time signal only
    assert _realtime_handlers() == before


def test_a_sigio_for_the_host_program_does_not_break_the_read(tmp_path: Path) -> None:
    """A SIGIO the host gets for its own reasons (its async I/O) is not a lease break: the host's
    handler sees it, stays installed, and the mapped read completes with the right digest."""
    data = _big(tmp_path / "big.bin")
    seen: list[int] = []

    def host_handler(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGIO, host_handler)
    try:
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert blocks.mapped
            assert signal.getsignal(signal.SIGIO) is host_handler  # the lease does not touch SIGIO
            hasher = blake3.blake3()
            for number, block in enumerate(blocks.blocks(0, None, MIB)):
                if number == 1:
                    os.kill(os.getpid(), signal.SIGIO)
                    time.sleep(0.01)
                hasher.update(block)
            assert not blocks._lease.broken  # type: ignore[attr-defined]
            assert blocks.digest() == hasher.hexdigest()
        assert signal.getsignal(signal.SIGIO) is host_handler
        assert seen == [signal.SIGIO]
    finally:
        signal.signal(signal.SIGIO, previous)
    assert hasher.hexdigest() == blake3.blake3(data).hexdigest() == digest_file(tmp_path / "big.bin")[0]


def test_a_realtime_signal_the_host_handles_is_left_to_it(tmp_path: Path) -> None:
    data = _big(tmp_path / "big.bin")
    seen: list[int] = []

    def host_handler(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGRTMIN, host_handler)
    try:
        before = _realtime_handlers()
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert blocks.mapped
            signum = blocks._lease.signum  # type: ignore[attr-defined]
            assert signum != signal.SIGRTMIN
            assert before[signum] == signal.SIG_DFL and signal.getsignal(signum) != signal.SIG_DFL
            assert signal.getsignal(signal.SIGRTMIN) is host_handler
            os.kill(os.getpid(), signal.SIGRTMIN)
            time.sleep(0.01)
            assert blocks.digest() == blake3.blake3(data).hexdigest()
        assert seen == [signal.SIGRTMIN]
        assert _realtime_handlers() == before  # the lease's signal is back to SIG_DFL, the host's kept
    finally:
        signal.signal(signal.SIGRTMIN, previous)


def test_a_realtime_signal_handled_outside_python_or_blocked_is_not_used(tmp_path: Path) -> None:
    """Python's table cannot see a handler a C library set after start-up; the kernel's can."""
    _big(tmp_path / "big.bin")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal.restype = ctypes.c_void_p
    outside, blocked = signal.SIGRTMIN, signal.SIGRTMIN + 1
    libc.signal(outside, 1)  # SIG_IGN, behind Python's back
    signal.pthread_sigmask(signal.SIG_BLOCK, [blocked])
    try:
        assert signal.getsignal(outside) == signal.SIG_DFL
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert blocks.mapped
            assert blocks._lease.signum not in (outside, blocked)  # type: ignore[attr-defined]
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [blocked])
        libc.signal(outside, 0)  # SIG_DFL


def test_with_no_free_realtime_signal_a_file_is_read(tmp_path: Path) -> None:
    data = _big(tmp_path / "big.bin")
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in range(signal.SIGRTMIN, signal.SIGRTMAX + 1)}
    try:
        with open_blocks(tmp_path / "big.bin") as blocks:
            assert not blocks.mapped  # not SIGIO: a stray SIGIO would refuse the read
            assert blocks.digest() == blake3.blake3(data).hexdigest()
        assert all(signal.getsignal(signum) == signal.SIG_IGN for signum in previous)
        assert signal.getsignal(signal.SIGIO) == signal.SIG_DFL
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_file_that_cannot_be_mapped_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _big(tmp_path / "big.bin")

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(19, "No such device")  # as a file system without mmap answers

    monkeypatch.setattr(fileview.mmap, "mmap", refuse)
    before = _realtime_handlers()
    with open_blocks(tmp_path / "big.bin") as blocks:
        assert not blocks.mapped
        assert blocks.digest() == blake3.blake3(data).hexdigest()
    assert _realtime_handlers() == before  # the lease was given back
    assert signal.getsignal(signal.SIGIO) == signal.SIG_DFL
