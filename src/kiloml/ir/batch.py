"""Many samples through a batch-1 graph at numpy speed, with the results of one-by-one runs.

kiloml graphs (read from .tflite or made by the quantizer) have batch 1, and the reference
interpreter's cost for a small model is mostly per-call overhead. ``batched_graph(g, n)`` is
the same graph with batch ``n``: every activation's leading axis and every RESHAPE target
become ``n``. For the ops in ``ROW_WISE`` each batch row is then computed exactly as a batch of
one, so one run equals ``n`` single runs, bit for bit. ``batch_problem`` says why a graph
cannot be batched (an op outside that list, an op that reads across the batch axis, an
activation without a leading axis of 1); ``BatchInterpreter`` then runs the samples one by one
instead, with the same results, only slower.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kiloml.errors import KilomlError
from kiloml.ir.graph import DTYPES, Graph, Node
from kiloml.ir.interpreter import Interpreter

# Ops that compute each row of the leading axis from that row alone, given the conditions
# ``_node_problem`` checks (MEAN, CONCATENATION, PAD and SLICE must leave axis 0 alone). An op not
# listed here is run sample by sample: correct, only slower.
ROW_WISE = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_ADD", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "ADD", "MUL", "SOFTMAX", "RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE",
    "DEQUANTIZE", "RESHAPE", "PAD", "MEAN", "CONCATENATION", "SLICE",
})


def _node_problem(g: Graph, n: int, node: Node) -> str | None:
    where = f"node {n} {node.op}"
    if node.op not in ROW_WISE:
        return f"{where} is not known to compute batch rows independently"
    rank = len(g.tensors[node.inputs[0]].shape)
    if node.op == "MEAN":
        axes = g.tensors[node.inputs[1]]
        if axes.data is None or 0 in {int(a) % rank for a in np.asarray(axes.data).reshape(-1)}:
            return f"{where} may reduce the batch axis"
    elif node.op == "CONCATENATION":
        if node.attrs.axis % len(g.tensors[node.outputs[0]].shape) == 0:
            return f"{where} joins along the batch axis"
    elif node.op == "PAD":
        pads = g.tensors[node.inputs[1]]
        if pads.data is None or np.asarray(pads.data).reshape(rank, 2)[0].any():
            return f"{where} may pad the batch axis"
    elif node.op == "SLICE":
        begin, size = (g.tensors[node.inputs[k]].data for k in (1, 2))
        if begin is None or size is None or int(np.asarray(begin).reshape(-1)[0]) != 0 \
                or int(np.asarray(size).reshape(-1)[0]) not in (-1, 1):
            return f"{where} may slice the batch axis"
    return None


def batch_problem(graph: Graph) -> str | None:
    """Why ``graph`` cannot run batched (None: it can). See the module doc."""
    for t in sorted({t for node in graph.nodes for t in node.inputs + node.outputs if t >= 0}
                    | set(graph.inputs) | set(graph.outputs)):
        tensor = graph.tensors[t]
        if not tensor.is_const and tensor.shape[:1] != (1,):
            return f"tensor {tensor.name!r} has shape {list(tensor.shape)}, not batch 1"
    for n, node in enumerate(graph.nodes):
        problem = _node_problem(graph, n, node)
        if problem:
            return problem
    return None


def batched_graph(graph: Graph, n: int) -> Graph:
    """The same graph with batch ``n`` instead of 1 (activations' leading axis, RESHAPE
    targets, SLICE sizes). Raises ``KilomlError`` when ``batch_problem`` finds a reason it would differ."""
    problem = batch_problem(graph)
    if problem:
        raise KilomlError(f"graph {graph.name!r} cannot run batched: {problem}")
    tensors = list(graph.tensors)
    for i, t in enumerate(tensors):
        if not t.is_const and t.shape and t.shape[0] == 1:
            tensors[i] = replace(t, shape=(n,) + tuple(t.shape[1:]))
    nodes = []
    for node in graph.nodes:
        if node.op == "RESHAPE":
            shape = tensors[node.outputs[0]].shape
            if len(node.inputs) > 1 and node.inputs[1] >= 0:
                st = tensors[node.inputs[1]]
                tensors[node.inputs[1]] = replace(st, data=np.array(shape, np.int32),
                                                  shape=(len(shape),))
            if node.attrs.new_shape:
                node = replace(node, attrs=replace(node.attrs, new_shape=tuple(shape)))
        elif node.op == "SLICE":        # size along the batch axis: all rows
            st = tensors[node.inputs[2]]
            size = np.array(st.data, copy=True).reshape(-1)
            size[0] = -1
            tensors[node.inputs[2]] = replace(st, data=size.astype(np.asarray(st.data).dtype))
        nodes.append(node)
    return Graph(tensors, nodes, list(graph.inputs), list(graph.outputs), graph.name,
                 graph.source_sha256, dict(graph.meta))


class BatchInterpreter:
    """The reference interpreter over many samples: chunks of ``batch`` samples through a
    batched copy of the graph (prepared once per chunk size), or sample by sample when the
    graph cannot be batched (``problem`` says why). Results are identical either way."""

    def __init__(self, graph: Graph, batch: int = 16) -> None:
        self.graph = graph
        self.problem = batch_problem(graph)
        self.batch = 1 if self.problem else max(int(batch), 1)
        self._interpreters: dict[int, Interpreter] = {}

    def _interpreter(self, n: int) -> Interpreter:
        if n not in self._interpreters:
            self._interpreters[n] = Interpreter(self.graph if self.problem
                                                else batched_graph(self.graph, n))
        return self._interpreters[n]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Inputs: one array per graph input, samples stacked on a new leading axis
        (N, *tensor shape); returns one (N, *tensor shape) array per graph output."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise KilomlError(f"model has {len(g.inputs)} inputs, got {len(inputs)} arrays")
        counts = {int(np.shape(a)[0]) for a in inputs}
        if len(counts) > 1:
            raise KilomlError(f"inputs hold different numbers of samples: {sorted(counts)}")
        count = counts.pop() if counts else 0
        outs: list[list[np.ndarray]] = [[] for _ in g.outputs]
        for i in range(0, count, self.batch):
            n = min(self.batch, count - i)
            # batched: the samples take the place of the leading axis of 1
            feed = [np.ascontiguousarray(a[i:i + n]).reshape(
                        (n,) + tuple(g.tensors[t].shape[1:]) if not self.problem
                        else g.tensors[t].shape)
                    for a, t in zip(inputs, g.inputs)]
            for k, (y, t) in enumerate(zip(self._interpreter(n).run(*feed), g.outputs)):
                outs[k].append(y.reshape((n,) + tuple(g.tensors[t].shape)))
        return [np.concatenate(o) if o else
                np.zeros((0,) + tuple(g.tensors[t].shape), DTYPES[g.tensors[t].dtype])
                for o, t in zip(outs, g.outputs)]


def run_batched(graph: Graph, xq: np.ndarray, batch: int = 16) -> np.ndarray:
    """Outputs (N, *output shape without batch) of a one-input, one-output batch-1 graph on
    inputs (N, *input shape without batch), with the reference interpreter."""
    tin = graph.tensors[graph.inputs[0]]
    tout = graph.tensors[graph.outputs[0]]
    if tin.shape[:1] != (1,) or tout.shape[:1] != (1,):
        raise KilomlError("batched runs need a model with batch 1")
    x = np.asarray(xq).reshape((len(xq),) + tuple(tin.shape))
    y = BatchInterpreter(graph, batch).run(x)[0]
    return y.reshape((len(y),) + tuple(tout.shape[1:]))
