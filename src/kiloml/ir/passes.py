"""Graph -> graph passes run before code generation, and the graph verifier.

Each pass states its pre- and post-conditions; ``pipeline`` lists them in order. Passes never
change results: the reference interpreter gives bit-identical outputs before and after.
"""

from __future__ import annotations

from kiloml.errors import InvalidModelError
from kiloml.ir.graph import Graph


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


def pipeline(g: Graph) -> Graph:
    """All passes, in order, each followed by ``verify``."""
    passes: list = []
    verify(g)
    for p in passes:
        g = p(g)
        verify(g)
    return g
