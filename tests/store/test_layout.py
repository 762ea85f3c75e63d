"""Byte shuffling and XOR, the transforms under tensor deltas: exact inverses, on any bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.store.layout import shuffle_bytes, unshuffle_bytes, xor_into


@st.composite
def elements(draw: st.DrawFn) -> tuple[bytes, int]:
    stride = draw(st.sampled_from([1, 2, 3, 4, 8]))
    count = draw(st.integers(min_value=0, max_value=300))
    return draw(st.binary(min_size=stride * count, max_size=stride * count)), stride


@settings(max_examples=200, deadline=None)
@given(elements())
def test_shuffle_groups_bytes_by_significance_and_unshuffle_restores_them(case: tuple[bytes, int]) -> None:
    data, stride = case
    shuffled = bytearray(len(data))
    shuffle_bytes(memoryview(shuffled), memoryview(data), stride)
    # The definition: plane i holds byte i of every element, in element order.
    expected = np.frombuffer(data, dtype=np.uint8).reshape(-1, stride).T.tobytes()
    assert bytes(shuffled) == expected
    restored = bytearray(len(data))
    unshuffle_bytes(memoryview(restored), memoryview(shuffled), stride)
    assert bytes(restored) == data


def test_two_byte_planes_are_low_byte_first() -> None:
    """F16/BF16 are little-endian in safetensors: plane 0 is every element's low byte."""
    data = bytes([0x01, 0xA0, 0x02, 0xB0, 0x03, 0xC0])
    shuffled = bytearray(6)
    shuffle_bytes(memoryview(shuffled), memoryview(data), 2)
    assert bytes(shuffled) == bytes([0x01, 0x02, 0x03, 0xA0, 0xB0, 0xC0])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.data())
def test_xor_with_the_same_base_twice_gives_the_bytes_back(data: bytes, draw: st.DataObject) -> None:
    base = draw.draw(st.binary(min_size=len(data), max_size=len(data)))
    delta, back = bytearray(len(data)), bytearray(len(data))
    xor_into(memoryview(delta), memoryview(data), memoryview(base))
    assert bytes(delta) == bytes(a ^ b for a, b in zip(data, base, strict=True))
    xor_into(memoryview(back), memoryview(delta), memoryview(base))
    assert bytes(back) == data
