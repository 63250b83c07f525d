"""The numpy reference interpreter: runs a graph with TFLite's integer arithmetic.

It is the executable spec: generated C is tested bit-exact against it, and it is tested
bit-exact against TFLite Micro.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.ir.graph import DTYPES, Graph
from kiloml.ir.ops import REGISTRY


class Interpreter:
    """Prepares every node once; ``run`` then executes the graph on given inputs."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.params: list[Any] = [REGISTRY[n.op].prepare(graph, n) for n in graph.nodes]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        values = self.run_all(*inputs)
        return [values[t] for t in self.graph.outputs]

    def run_all(self, *inputs: np.ndarray) -> dict[int, np.ndarray]:
        """Every activation tensor's value (tensor index -> array), inputs included."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise KilomlError(f"model has {len(g.inputs)} inputs, got {len(inputs)} arrays")
        values: dict[int, np.ndarray] = {}
        for t, arr in zip(g.inputs, inputs):
            spec = g.tensors[t]
            arr = np.asarray(arr)
            if arr.dtype != DTYPES[spec.dtype] or arr.size != spec.size:
                raise KilomlError(f"input {spec.name!r} must be {spec.dtype}{list(spec.shape)}, "
                                  f"got {arr.dtype}{list(arr.shape)}")
            values[t] = arr.reshape(spec.shape)
        for node, p in zip(g.nodes, self.params):
            ins = [None if t < 0 else (values[t] if t in values else g.tensors[t].data)
                   for t in node.inputs]
            outs = REGISTRY[node.op].reference(g, node, p, ins)
            for t, arr in zip(node.outputs, outs):
                values[t] = arr
        return values


def run_reference(graph: Graph, *inputs: np.ndarray) -> list[np.ndarray]:
    return Interpreter(graph).run(*inputs)
