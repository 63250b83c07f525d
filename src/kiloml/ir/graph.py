"""kiloml's int8 graph IR: tensors, nodes with typed attributes, and the graph that holds them.

The IR is the single source of truth for a model. Readers (.tflite, the PyTorch quantizer)
produce it; the reference interpreter, the planner and the C generator consume it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "float32": np.dtype(np.float32),
    "bool": np.dtype(np.bool_),
}


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    ``scale`` and ``zero_point`` have one entry (per-tensor) or one per slice along ``axis``
    (per-channel). Scales are float32 as stored in .tflite files.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def __post_init__(self) -> None:
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        self.zero_point = np.asarray(self.zero_point, dtype=np.int64).reshape(-1)

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def __str__(self) -> str:
        if self.per_channel:
            return f"q(axis={self.axis}, {self.scale.size} scales)"
        return f"q({float(self.scale[0]):.6g}, {int(self.zero_point[0])})"


@dataclass
class Tensor:
    """A value in the graph. Constants carry ``data``; activations do not."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * DTYPES[self.dtype].itemsize

    @property
    def scale(self) -> float:
        """Per-tensor scale (first entry); raises if the tensor is not quantized."""
        if self.quant is None:
            raise ValueError(f"tensor {self.name!r} is not quantized")
        return float(self.quant.scale[0])

    @property
    def zero_point(self) -> int:
        if self.quant is None:
            raise ValueError(f"tensor {self.name!r} is not quantized")
        return int(self.quant.zero_point[0])


@dataclass
class Node:
    """One operation: ``op`` is the TFLite builtin name (e.g. ``CONV_2D``).

    ``inputs`` holds tensor indices, ``-1`` for an omitted optional input (e.g. no bias).
    ``attrs`` is the op's typed attribute dataclass from ``kiloml.ir.ops``.
    """

    op: str
    inputs: list[int]
    outputs: list[int]
    attrs: Any
    name: str = ""


@dataclass
class Graph:
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]
    name: str = "model"
    source_sha256: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def input_tensors(self, node: Node) -> list[Tensor | None]:
        return [self.tensors[i] if i >= 0 else None for i in node.inputs]

    def output_tensors(self, node: Node) -> list[Tensor]:
        return [self.tensors[i] for i in node.outputs]

    def consumers(self) -> dict[int, list[int]]:
        """Tensor index -> indices of the nodes that read it."""
        users: dict[int, list[int]] = {}
        for n, node in enumerate(self.nodes):
            for t in node.inputs:
                if t >= 0:
                    users.setdefault(t, []).append(n)
        return users

    def weights_bytes(self) -> int:
        """Bytes of constant data the nodes read (weights, biases, shape operands)."""
        used = {t for node in self.nodes for t in node.inputs if t >= 0}
        return sum(self.tensors[t].nbytes for t in used if self.tensors[t].is_const)

    def dump(self) -> str:
        """Human-readable text form: one line per node, with shapes and quantization."""

        def desc(i: int) -> str:
            if i < 0:
                return "-"
            t = self.tensors[i]
            kind = "const " if t.is_const else ""
            q = f" {t.quant}" if t.quant is not None else ""
            return f"%{i}:{kind}{t.dtype}{list(t.shape)}{q}"

        lines = [f"graph {self.name} inputs={self.inputs} outputs={self.outputs}"]
        for n, node in enumerate(self.nodes):
            ins = ", ".join(desc(i) for i in node.inputs)
            outs = ", ".join(desc(i) for i in node.outputs)
            lines.append(f"n{n} {node.op}({ins}) -> {outs}  {node.attrs}")
        return "\n".join(lines)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
