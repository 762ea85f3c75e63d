"""Synthetic LLaMA-like safetensors checkpoints for the storage benchmarks.

Tensors are written one at a time (header first, then each tensor's bytes), so a 4 GiB
checkpoint is generated in bounded memory. Values are normal with a per-tensor scale, stored in
F16 like real weights, so XOR deltas and compression behave as they would on a real fine-tune.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

F16 = np.dtype("<f2")


@dataclass(frozen=True)
class Layout:
    """Tensor names and shapes of a LLaMA-like decoder (F16)."""

    hidden: int = 1536
    intermediate: int = 4096
    layers: int = 16
    vocab: int = 32000

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        h, i = self.hidden, self.intermediate
        names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, h))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}"
            names += [
                (f"{prefix}.input_layernorm.weight", (h,)),
                (f"{prefix}.self_attn.q_proj.weight", (h, h)),
                (f"{prefix}.self_attn.k_proj.weight", (h, h)),
                (f"{prefix}.self_attn.v_proj.weight", (h, h)),
                (f"{prefix}.self_attn.o_proj.weight", (h, h)),
                (f"{prefix}.post_attention_layernorm.weight", (h,)),
                (f"{prefix}.mlp.gate_proj.weight", (i, h)),
                (f"{prefix}.mlp.up_proj.weight", (i, h)),
                (f"{prefix}.mlp.down_proj.weight", (h, i)),
            ]
        names += [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))]
        return names

    def nbytes(self) -> int:
        return sum(int(np.prod(shape)) * 2 for _, shape in self.tensors())


def layout_for(target_bytes: int, hidden: int = 1536, intermediate: int = 4096, vocab: int = 32000) -> Layout:
    """A layout close to ``target_bytes`` (at least 2 layers)."""
    fixed = Layout(hidden, intermediate, 0, vocab).nbytes()
    per_layer = Layout(hidden, intermediate, 1, vocab).nbytes() - fixed
    layers = max(2, round((target_bytes - fixed) / per_layer))
    return Layout(hidden, intermediate, layers, vocab)


TensorFn = Callable[[str, tuple[int, ...]], np.ndarray]


def base_tensor(seed: int) -> TensorFn:
    """Deterministic random weights: each tensor from its own seed and name."""

    def make(name: str, shape: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng([seed, *name.encode()])
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(F16)
        scale = 1.0 / np.sqrt(shape[-1])
        return (scale * rng.standard_normal(shape, dtype=np.float32)).astype(F16)

    return make


def perturbed(make: TensorFn, relative: float, which: Callable[[str], bool], seed: int = 1) -> TensorFn:
    """``make``'s tensors, with those ``which`` selects scaled by ``1 + relative * N(0, 1)`` element-wise."""

    def changed(name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = make(name, shape)
        if not which(name):
            return value
        rng = np.random.default_rng([seed, 7, *name.encode()])
        noise = rng.standard_normal(shape, dtype=np.float32)
        return (value.astype(np.float32) * (1.0 + relative * noise)).astype(F16)

    return changed


def write_checkpoint(
    path: Path,
    tensors: Iterable[tuple[str, tuple[int, ...]]],
    make: TensorFn,
    metadata: dict[str, str] | None = None,
) -> int:
    """Write a safetensors file tensor by tensor, in the order given; return its size."""
    order = list(tensors)
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape in order:
        nbytes = int(np.prod(shape)) * F16.itemsize
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in order:
            handle.write(np.ascontiguousarray(make(name, shape), dtype=F16).tobytes())
    os.replace(tmp, path)  # a re-save: new inode and mtime, like a training script's save
    return path.stat().st_size
