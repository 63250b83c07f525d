"""Graph -> graph passes run before code generation, and the graph verifier.

Each pass states its pre- and post-conditions; ``pipeline`` lists them in order. Passes never
change results: the reference interpreter gives bit-identical outputs before and after.
"""

from __future__ import annotations

from dataclasses import replace

from kiloml.errors import InvalidModelError
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.conv2d_add import Conv2DAddAttrs


def verify(g: Graph) -> None:
    """Structural invariants: indices in range, each tensor written once, topological order."""
    n_t = len(g.tensors)
    ready = set(g.inputs) | {i for i, t in enumerate(g.tensors) if t.is_const}
    for n, node in enumerate(g.nodes):
        for t in node.inputs:
            if t >= n_t or (t >= 0 and t not in ready):
                raise InvalidModelError(f"node {n} {node.op} reads tensor {t} before it exists")
        for t in node.outputs:
            if t < 0 or t >= n_t or t in ready:
                raise InvalidModelError(f"node {n} {node.op} writes tensor {t} twice or out of range")
            ready.add(t)
    for t in g.outputs:
        if t not in ready:
            raise InvalidModelError(f"graph output {t} is never produced")


def fuse_conv_add(g: Graph) -> Graph:
    """Fuse ``CONV_2D`` immediately followed by the ``ADD`` that is its only consumer.

    Pre: verified graph. Post: each such pair is one ``CONV_2D_ADD`` node at the ADD's
    position; the convolution output tensor stays in ``tensors`` but no node writes it. Only
    applied when ADD's other operand has the output's shape (no broadcasting) and the
    convolution output is not a graph output.
    """
    users = g.consumers()
    nodes: list[Node] = []
    skip = False
    for n, node in enumerate(g.nodes):
        if skip:
            skip = False
            continue
        nxt = g.nodes[n + 1] if n + 1 < len(g.nodes) else None
        if (node.op == "CONV_2D" and nxt is not None and nxt.op == "ADD"
                and node.outputs[0] in nxt.inputs and users.get(node.outputs[0]) == [n + 1]
                and node.outputs[0] not in g.outputs and nxt.inputs[0] != nxt.inputs[1]):
            mid = node.outputs[0]
            res = nxt.inputs[1] if nxt.inputs[0] == mid else nxt.inputs[0]
            if g.tensors[res].shape == g.tensors[nxt.outputs[0]].shape == g.tensors[mid].shape:
                bias = node.inputs[2] if len(node.inputs) > 2 else -1
                attrs = Conv2DAddAttrs(node.attrs, nxt.attrs, mid, nxt.inputs[0] == mid)
                nodes.append(Node("CONV_2D_ADD", [node.inputs[0], node.inputs[1], bias, res],
                                  list(nxt.outputs), attrs, nxt.name))
                skip = True
                continue
        nodes.append(node)
    return replace(g, nodes=nodes)


def pipeline(g: Graph) -> Graph:
    """All passes, in order, each followed by ``verify``."""
    passes = [fuse_conv_add]
    verify(g)
    for p in passes:
        g = p(g)
        verify(g)
    return g
