"""Graph -> graph passes run before code generation, and the graph verifier.

Each pass states its pre- and post-conditions; ``pipeline`` lists them in order. Passes never
change results: the reference interpreter gives bit-identical outputs before and after.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kiloml.errors import InvalidModelError
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.conv2d import Conv2DAttrs
from kiloml.ir.ops.conv2d_add import Conv2DAddAttrs
from kiloml.ir.ops.fully_connected import FullyConnectedAttrs
from kiloml.ir.ops.reshape import ReshapeAttrs


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


def fully_connected_as_conv(g: Graph) -> Graph:
    """Write each ``FULLY_CONNECTED`` as ``RESHAPE`` -> 1x1 ``CONV_2D`` -> ``RESHAPE``.

    Why: LiteRT's reference FULLY_CONNECTED requantizes in floating point and differs from
    TFLite Micro (and kiloml) by one LSB on ties; its CONV_2D uses the fixed-point multiplier
    like TFLM. A model written this way gives the same bytes in kiloml, TFLM and LiteRT.

    Pre: verified graph. Post: no FULLY_CONNECTED; each became a convolution over a
    1 x batches image of ``depth`` channels (VALID, stride 1, same activation) with the weights
    as [units, 1, 1, depth] (same quantization) and the same bias (zeros if it had none: LiteRT's
    int8 CONV_2D needs one), between RESHAPEs to and from NHWC (left out
    where the shape already is). Results are unchanged when the weights are quantized per
    unit. With one weight scale, FULLY_CONNECTED multiplies the two float32 scales in float32
    (TFLM, kiloml), CONV_2D in double: the multiplier can differ in its low bits, so the
    rewritten graph is a (very slightly) different model; it is then its own reference.
    """
    if not any(n.op == "FULLY_CONNECTED" for n in g.nodes):
        return g
    tensors = list(g.tensors)
    nodes: list[Node] = []
    done: set[int] = set()

    def add(t: Tensor) -> int:
        tensors.append(t)
        return len(tensors) - 1

    users = g.consumers()
    chained = {t for t, us in users.items() if t not in g.outputs
               and all(g.nodes[u].op == "FULLY_CONNECTED" and g.nodes[u].inputs[0] == t
                       for u in us)}
    for node in g.nodes:
        if node.op != "FULLY_CONNECTED":
            nodes.append(node)
            continue
        x, w, y = (tensors[i] for i in (node.inputs[0], node.inputs[1], node.outputs[0]))
        units, depth = w.shape
        batches = x.size // depth
        nm = node.name or f"fc{len(nodes)}"
        x4, y4 = node.inputs[0], node.outputs[0]
        if x.shape != (1, 1, batches, depth):
            x4 = add(Tensor(f"{nm}/input_nhwc", (1, 1, batches, depth), x.dtype, None, x.quant))
            nodes.append(Node("RESHAPE", [node.inputs[0]], [x4],
                              ReshapeAttrs((1, 1, batches, depth)), f"{nm}/to_nhwc"))
        if node.outputs[0] in chained:
            # read only by FULLY_CONNECTED layers, which become convolutions too: keep NHWC
            tensors[y4] = replace(y, shape=(1, 1, batches, units))
        elif y.shape != (1, 1, batches, units):
            y4 = add(Tensor(f"{nm}/output_nhwc", (1, 1, batches, units), y.dtype, None, y.quant))
        # the constants are rewritten in place (same tensor index), so no stale copy is left
        # for the writer; a constant shared by several FULLY_CONNECTED is rewritten once
        wi = node.inputs[1]
        if wi not in done:
            # quantization kept as is (one scale stays one scale: no per-channel vectors)
            tensors[wi] = Tensor(w.name, (units, 1, 1, depth), "int8",
                                 w.data.reshape(units, 1, 1, depth), w.quant)
            done.add(wi)
        ins = [x4, wi]
        bi = node.inputs[2] if len(node.inputs) > 2 else -1
        if bi >= 0:
            if bi not in done:
                b = tensors[bi]
                tensors[bi] = Tensor(b.name, (units,), "int32", b.data.reshape(units), b.quant)
                done.add(bi)
        else:
            # LiteRT's int8 CONV_2D requires a bias: zeros, scale input x weight scale
            bs = (np.float64(x.quant.scale[0]) * w.quant.scale.astype(np.float64)).astype(np.float32)
            bi = add(Tensor(f"{nm}/bias", (units,), "int32", np.zeros(units, np.int32),
                            QuantParams(bs, np.zeros(bs.size, np.int64), 0)))
        ins.append(bi)
        nodes.append(Node("CONV_2D", ins, [y4],
                          Conv2DAttrs(padding="VALID", activation=node.attrs.activation), nm))
        if y4 != node.outputs[0]:
            nodes.append(Node("RESHAPE", [y4], [node.outputs[0]], ReshapeAttrs(tuple(y.shape)),
                              f"{nm}/from_nhwc"))
    out = replace(g, tensors=tensors, nodes=nodes)
    verify(out)
    return out


def pixel_conv_as_fully_connected(g: Graph) -> Graph:
    """Compile a 1x1 ``CONV_2D`` over a single pixel as ``FULLY_CONNECTED``.

    Such a convolution is a matrix-vector product; it is what ``fully_connected_as_conv``
    writes into exported models, and the FULLY_CONNECTED kernels run it without the
    convolution's column scratch. Pre: verified graph. Post: each CONV_2D whose input is
    1 x 1 x C and whose filter is 1 x 1 is a FULLY_CONNECTED on the same tensors, weights as
    [units, depth] (a new constant), ``conv_multiplier`` set so the requantization multiplier
    is the convolution's: results unchanged.
    """
    tensors = list(g.tensors)
    nodes: list[Node] = []
    for node in g.nodes:
        x = tensors[node.inputs[0]] if node.op == "CONV_2D" else None
        w = tensors[node.inputs[1]] if x is not None else None
        if (x is None or len(x.shape) != 4 or x.shape[:3] != (1, 1, 1) or len(w.shape) != 4
                or w.shape[1:3] != (1, 1) or REGISTRY["CONV_2D"].check(g, node)):
            nodes.append(node)          # not a one-pixel 1x1 convolution, or not a valid one
            continue
        units, depth = w.shape[0], w.shape[3]
        tensors.append(replace(w, shape=(units, depth), data=w.data.reshape(units, depth)))
        ins = [node.inputs[0], len(tensors) - 1] + list(node.inputs[2:3])
        nodes.append(Node("FULLY_CONNECTED", ins, list(node.outputs),
                          FullyConnectedAttrs(node.attrs.activation, True, True), node.name))
    return replace(g, tensors=tensors, nodes=nodes)


def pipeline(g: Graph) -> Graph:
    """All passes, in order, each followed by ``verify``."""
    passes = [pixel_conv_as_fully_connected, fuse_conv_add]
    verify(g)
    for p in passes:
        g = p(g)
        verify(g)
    return g
