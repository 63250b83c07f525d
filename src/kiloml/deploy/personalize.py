"""On-device personalization: retrain the classifier head from a few labelled samples.

The scheme (docs/personalization.md states it for users):

* The head is the last FULLY_CONNECTED node of the lowered graph (kiloml.ir.passes.pipeline
  turns the exporter's one-pixel CONV_2D back into one): int8 weights [units, depth] with
  per-unit scales, int32 bias. The nodes before it are the *backbone*, those after it (RESHAPE,
  SOFTMAX) the *tail*.
* Each labelled sample runs through the int8 backbone once; its int8 head input is kept
  (``depth`` bytes per sample).
* The update starts from the factory head dequantized in float32 (``w = (float)q * ws``,
  ``b = (float)q_b * (in_scale * ws)``) and runs ``epochs`` passes of plain per-sample SGD on
  softmax cross-entropy, samples in the order they were added. Per sample: ``x_i = (float)(q_i
  - zp) * in_scale``; logits ``z_u = b_u + w_u0 x_0 + w_u1 x_1 + ...`` summed left to right;
  each logit clamped to the range the int8 head output holds (``logit_range``; a clamped
  one gets no gradient); ``m = max z``; ``e_u = kml_expf(z_u - m)`` (the polynomial below, not libm, so C and numpy
  agree); ``s = e_0 + e_1 + ...``; ``g_u = lr * (e_u / s - [u == label])``; ``w_ui -= g_u *
  x_i``; ``b_u -= g_u``. Every operation is one IEEE float32 operation (no FMA contraction).
* Requantization per unit: ``ws = max_i |w_ui| / 127`` (raised to ``|b_u| / (in_scale * 2^30)``
  so the bias fits int32, 1 if both are 0), ``q_ui = round_half_away(w_ui / ws)`` clamped to
  [-127, 127], bias scale ``in_scale * ws``, ``q_b = round_half_away(b_u / (in_scale * ws))``,
  and the output multiplier and shift from ``in_scale * ws / out_scale`` in double as the
  FULLY_CONNECTED kernel's prepare step computes them. The personalized model is the factory
  graph with these head constants (``personalized_graph``): inference with the RAM slot equals
  the reference interpreter on that graph bit for bit.

``train_head`` / ``requantize_head`` are the numpy twin of the generated C
(``personalize_files``): same float32 operations in the same order, so the int8 weights agree
byte for byte.
"""

from __future__ import annotations

import re

import copy
from dataclasses import dataclass

import numpy as np

from kiloml.codegen.c import generate_c
from kiloml.codegen.cwriter import array_decl
from kiloml.errors import KilomlError
from kiloml.ir.graph import Graph, QuantParams
from kiloml.ir.passes import pipeline
from kiloml.ir.quant import quantize_multipliers

F32 = np.float32
LOG2E, LN2_HI, LN2_LO = F32(1.44269504), F32(0.693359375), F32(-2.12194440e-4)
# exp(r) on |r| <= ln2/2: Taylor terms 1/k!, k = 7 .. 0, evaluated by Horner's rule
EXP_POLY = [F32(1.0 / 5040), F32(1.0 / 720), F32(1.0 / 120), F32(1.0 / 24), F32(1.0 / 6),
            F32(0.5), F32(1.0), F32(1.0)]
EXP_MIN = F32(-87.0)


@dataclass(frozen=True)
class Settings:
    """The update's parameters: ``epochs`` passes over the samples, learning rate ``lr``,
    room for ``max_samples`` samples in the C sample store; ``prox_mu`` > 0: FedProx's
    proximal term (a board as a FedProx client; 0: plain SGD)."""

    epochs: int = 30
    lr: float = 0.05
    max_samples: int = 64
    prox_mu: float = 0.0
    biases: str = "head"    # "all": also the bias of the layer before the head (BiasLayer)
    bias_lr_scale: float = 1.0   # biases = "all": the layer bias's step is scaled by this


@dataclass
class Head:
    """The classifier head of a lowered graph and the pieces around it."""

    graph: Graph           # the lowered (pipeline) graph
    node: int              # index of the head FULLY_CONNECTED
    units: int
    depth: int
    weights: np.ndarray    # int8 [units, depth]
    wscale: np.ndarray     # float32 [units]
    bias: np.ndarray       # int32 [units]
    in_scale: np.float32
    in_zp: int
    out_scale: np.float32
    out_zp: int
    act_min: int
    act_max: int

    @property
    def backbone(self) -> Graph:
        n = self.graph.nodes[self.node]
        return Graph(self.graph.tensors, self.graph.nodes[:self.node], list(self.graph.inputs),
                     [n.inputs[0]], name=self.graph.name + "_backbone")

    @property
    def tail(self) -> Graph | None:
        if self.node == len(self.graph.nodes) - 1:
            return None
        n = self.graph.nodes[self.node]
        return Graph(self.graph.tensors, self.graph.nodes[self.node + 1:], [n.outputs[0]],
                     list(self.graph.outputs), name=self.graph.name + "_tail")


def find_head(graph: Graph) -> Head:
    """The last FULLY_CONNECTED of ``pipeline(graph)``; KilomlError when the model has none,
    or its head is not a per-unit int8 classifier with a bias that the scheme can update."""
    g = pipeline(graph)
    fcs = [i for i, n in enumerate(g.nodes) if n.op == "FULLY_CONNECTED"]
    if not fcs:
        raise KilomlError("personalize: the model has no FULLY_CONNECTED (or 1x1 conv) head")
    i = fcs[-1]
    node = g.nodes[i]
    if i == 0 or len(node.inputs) < 3 or node.inputs[2] < 0:
        raise KilomlError("personalize: the head needs a backbone before it and a bias")
    x, w, b = (g.tensors[t] for t in node.inputs[:3])
    y = g.tensors[node.outputs[0]]
    units, depth = w.shape
    if units < 2 or x.size != depth:
        raise KilomlError(f"personalize: the head maps {x.size} values to {units}; "
                          "expected one sample of at least 2 classes")
    from kiloml.ir.ops import REGISTRY

    p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
    ws = np.broadcast_to(w.quant.scale.astype(np.float32), (units,)).copy()
    return Head(g, i, int(units), int(depth), w.data.astype(np.int8).reshape(units, depth),
                ws, b.data.astype(np.int32).reshape(units), F32(x.quant.scale[0]),
                int(x.quant.zero_point[0]), F32(y.quant.scale[0]), int(y.quant.zero_point[0]),
                int(p.act_min), int(p.act_max))


@dataclass
class BiasLayer:
    """``[personalize] biases = "all"`` (TinyTL style): the CONV_2D before the head whose
    output reaches the head through its fused activation and a global average pool (plus
    reshapes) only, or the FULLY_CONNECTED feeding the head through its activation; its int32 bias is trained with the head, its int8 weights stay. The nodes
    before it are then the backbone (the *stem*), those between it and the head the *mid*."""

    node: int
    op: str                # CONV_2D or FULLY_CONNECTED (a 1x1 convolution at one position)
    p: object              # kiloml.ir.ops.conv_common.ConvParams (or the same fields)
    weights: np.ndarray    # int8 [C, kh, kw, in_c]
    bias: np.ndarray       # int32 [C]
    cs: np.ndarray         # float32 [C]: in_scale * weight scale (the bias scale)
    lo: np.float32         # the real range of its clamped (activated) output
    hi: np.float32
    positions: int         # out_h * out_w: the average pool's count
    in_size: int           # int8 values of its input (a stored sample)
    out_size: int

    def stem(self, head: Head) -> Graph | None:
        g = head.graph
        if self.node == 0:
            return None
        return Graph(g.tensors, g.nodes[:self.node], list(g.inputs),
                     [g.nodes[self.node].inputs[0]], name=g.name + "_stem")

    def mid(self, head: Head) -> Graph | None:
        g = head.graph
        if self.node + 1 == head.node:
            return None
        return Graph(g.tensors, g.nodes[self.node + 1:head.node], [g.nodes[self.node].outputs[0]],
                     [g.nodes[head.node].inputs[0]], name=g.name + "_mid")


def find_bias_layer(head: Head) -> BiasLayer:
    """The layer whose bias ``biases = "all"`` trains; KilomlError when the head is not fed
    by CONV_2D -> (global AVERAGE_POOL_2D or MEAN) -> RESHAPEs."""
    from kiloml.ir.ops import REGISTRY

    g = head.graph
    i = head.node - 1
    pooled = False
    while i >= 0 and g.nodes[i].op in ("RESHAPE", "AVERAGE_POOL_2D", "MEAN"):
        n = g.nodes[i]
        if n.op != "RESHAPE":
            if pooled or g.tensors[n.outputs[0]].size != head.depth:
                break
            pooled = True
        i -= 1
    n = g.nodes[i] if i >= 0 else None
    if n is None or n.op not in ("CONV_2D", "FULLY_CONNECTED") or len(n.inputs) < 3 or \
            n.inputs[2] < 0 or (n.op == "FULLY_CONNECTED" and pooled):
        raise KilomlError('personalize: biases = "all" needs a CONV_2D (through a global '
                          "average pool) or a FULLY_CONNECTED with a bias before the head "
                          f"(this model has {n.op if n else 'nothing'} there)")
    x, w, b = (g.tensors[t] for t in n.inputs[:3])
    y = g.tensors[n.outputs[0]]
    if n.op == "CONV_2D":
        p = REGISTRY["CONV_2D"].prepare(g, n)
    else:   # a dense layer: a 1x1 convolution over one position
        from types import SimpleNamespace

        fp = REGISTRY["FULLY_CONNECTED"].prepare(g, n)
        units, depth = w.shape
        if x.size != depth:
            raise KilomlError('personalize: biases = "all": the FULLY_CONNECTED before the '
                              "head takes more than one sample")
        p = SimpleNamespace(batches=1, in_h=1, in_w=1, in_c=int(depth), out_h=1, out_w=1,
                            out_c=int(units), k_h=1, k_w=1, stride_h=1, stride_w=1, dil_h=1,
                            dil_w=1, pad_top=0, pad_left=0,
                            in_offset=-int(x.quant.zero_point[0]),
                            out_offset=int(y.quant.zero_point[0]), act_min=int(fp.act_min),
                            act_max=int(fp.act_max), mult=fp.mult, shift=fp.shift)
    if p.out_c != head.depth or p.batches != 1 or \
            (not pooled and p.out_h * p.out_w != 1):
        raise KilomlError(f'personalize: biases = "all": the CONV_2D before the head has '
                          f"{p.out_c} channels for a head of depth {head.depth}")
    ws = np.broadcast_to(w.quant.scale.astype(F32), (p.out_c,))
    cs = (F32(x.quant.scale[0]) * ws).astype(F32)
    oz, osc = int(y.quant.zero_point[0]), F32(y.quant.scale[0])
    return BiasLayer(i, n.op, p, w.data.astype(np.int8).reshape(p.out_c, p.k_h, p.k_w, p.in_c),
                     b.data.astype(np.int32).reshape(p.out_c), cs,
                     F32(p.act_min - oz) * osc, F32(p.act_max - oz) * osc,
                     int(p.out_h * p.out_w), int(x.size), int(y.size))


def conv_accumulators(layer: BiasLayer, q: np.ndarray) -> np.ndarray:
    """The layer's int32 accumulators sum((x + in_offset) * w) over the taps inside the
    image, without the bias: (N, positions, C), exact integers (the C sums the same)."""
    p = layer.p
    x = np.asarray(q, np.int8).reshape(-1, p.in_h, p.in_w, p.in_c).astype(np.int64) + p.in_offset
    n = len(x)
    ph = p.pad_top + (p.out_h - 1) * p.stride_h + (p.k_h - 1) * p.dil_h + 1
    pw = p.pad_left + (p.out_w - 1) * p.stride_w + (p.k_w - 1) * p.dil_w + 1
    xp = np.zeros((n, max(ph, p.pad_top + p.in_h), max(pw, p.pad_left + p.in_w), p.in_c),
                  np.int64)
    xp[:, p.pad_top:p.pad_top + p.in_h, p.pad_left:p.pad_left + p.in_w] = x
    w = layer.weights.astype(np.int64)
    acc = np.zeros((n, p.out_h, p.out_w, p.out_c), np.int64)
    for ky in range(p.k_h):
        for kx in range(p.k_w):
            y0, x0 = ky * p.dil_h, kx * p.dil_w
            xs = xp[:, y0:y0 + (p.out_h - 1) * p.stride_h + 1:p.stride_h,
                    x0:x0 + (p.out_w - 1) * p.stride_w + 1:p.stride_w]
            acc += xs @ w[:, ky, kx, :].T
    return acc.reshape(n, layer.positions, p.out_c)


# ---------------------------------------------------------------- the numpy twin (float32)

def expf(x: np.float32) -> np.float32:
    """kml_expf: exp(x) for x <= 0 in float32 operations only (the C twin is the same)."""
    x = F32(x)
    if not x >= EXP_MIN:
        return F32(0.0)
    t = x * LOG2E
    k = int(t - F32(0.5))               # C's (int32_t) truncates toward zero
    kf = F32(k)
    r = (x - kf * LN2_HI) - kf * LN2_LO
    p = EXP_POLY[0]
    for c in EXP_POLY[1:]:
        p = p * r + c
    scale = np.array([(k + 127) << 23], np.int32).view(np.float32)[0]
    return p * scale


def dequantize_head(head: Head) -> tuple[np.ndarray, np.ndarray]:
    """The factory head in float32: w = q * ws, b = q_b * (in_scale * ws)."""
    w = head.weights.astype(F32) * head.wscale[:, None]
    b = head.bias.astype(F32) * (head.in_scale * head.wscale)
    return w, b


def head_inputs_float(head: Head, q: np.ndarray) -> np.ndarray:
    """int8 head inputs (N, depth) -> float32: (q - zp) * in_scale."""
    return (q.astype(np.int32) - head.in_zp).astype(F32) * head.in_scale


def logit_range(head: Head) -> tuple[np.float32, np.float32]:
    """The real values the int8 head output can hold: (act_min - zp) * s, (act_max - zp) * s."""
    return (F32(head.act_min - head.out_zp) * head.out_scale,
            F32(head.act_max - head.out_zp) * head.out_scale)


def train_head(head: Head, q: np.ndarray, labels: np.ndarray, s: Settings,
               prox_mu: float | None = None):
    """Per-sample SGD on softmax cross-entropy (see the module doc): float32 (w, b).

    ``prox_mu`` (None: ``s.prox_mu``) > 0 adds FedProx's proximal term ``mu / 2 * |(w, b) -
    (w0, b0)|^2`` (w0, b0: the starting head) to the loss: each step also subtracts ``m * (w -
    w0)`` with ``m = mu * lr`` (float32; and the same for b), computed from the weights before
    the step: per element ``w = (w - g * x) - m * (w - w0)``. The C update does the same
    (``prox_mu`` of the settings, or ``<name>_personalize_update_prox(mu)`` at run time)."""
    if prox_mu is None:
        prox_mu = s.prox_mu
    w, b = dequantize_head(head)
    w0, b0 = w.copy(), b.copy()
    mu = F32(prox_mu) * F32(s.lr)
    layer = find_bias_layer(head) if s.biases == "all" else None
    if layer is None:
        xs = head_inputs_float(head, np.asarray(q).reshape(-1, head.depth))
    else:
        # (float)acc of every sample once; the layer's forward is redone at every step
        xs = conv_accumulators(layer, q).astype(F32)
        cb = (layer.bias.astype(F32) * layer.cs).astype(F32)
        pf = F32(layer.positions)
    lr = F32(s.lr)
    U = head.units
    lo, hi = logit_range(head)
    for _ in range(int(s.epochs)):
        for x, lab in zip(xs, np.asarray(labels)):
            if layer is not None:
                # v = (float)acc * cs + b, clamped to the activation's range (a clamped
                # position passes no gradient); the head input is the mean over positions
                v = ((x * layer.cs[None, :]).astype(F32) + cb[None, :]).astype(F32)
                alive = (v >= layer.lo) & (v <= layer.hi)
                v = np.where(v < layer.lo, layer.lo, np.where(v > layer.hi, layer.hi, v))
                tot = np.zeros(len(cb), F32)
                for row in v.astype(F32):
                    tot = (tot + row).astype(F32)
                x = (tot / pf).astype(F32)
                frac = (alive.sum(axis=0).astype(F32) / pf).astype(F32)
            # z_u = ((b_u + w_u0 x_0) + w_u1 x_1) + ...: a left-to-right accumulation
            terms = np.concatenate([b[:, None], w * x[None, :]], axis=1)
            z = np.add.accumulate(terms, axis=1)[:, -1]
            # the int8 head output saturates: train on the logits it can represent, with no
            # gradient through a clamped one (as the int8 model computes them)
            live = (z >= lo) & (z <= hi)
            z = np.where(z < lo, lo, np.where(z > hi, hi, z)).astype(F32)
            m = z[0]
            for u in range(1, U):
                if z[u] > m:
                    m = z[u]
            e = np.array([expf(z[u] - m) for u in range(U)], F32)
            tot = np.add.accumulate(e)[-1]
            p = e / tot
            p[int(lab)] = p[int(lab)] - F32(1.0)
            g = np.where(live, lr * p, F32(0.0)).astype(F32)
            if layer is not None:
                # dL/dx_c = sum_u g_u w_uc (u in order, the head before this step), through
                # the pool and the activation: times (live positions) / positions
                gx = (g[0] * w[0]).astype(F32)
                for u in range(1, U):
                    gx = (gx + (g[u] * w[u]).astype(F32)).astype(F32)
                step = ((gx * frac).astype(F32) * F32(s.bias_lr_scale)).astype(F32)
                cb = (cb - step).astype(F32)
            if prox_mu:
                dw, db = (mu * (w - w0)).astype(F32), (mu * (b - b0)).astype(F32)
            w = w - np.outer(g, x).astype(F32)
            b = b - g
            if prox_mu:
                w = w - dw
                b = b - db
    if layer is not None:
        return w, b, cb
    return w, b


def requantize_bias(layer: BiasLayer, cb: np.ndarray) -> np.ndarray:
    """The trained float32 bias of the layer -> int32: round_half_away(cb / cs)."""
    return np.clip(round_half_away_f32((np.asarray(cb, F32) / layer.cs).astype(F32)),
                   -(1 << 31), (1 << 31) - 1).astype(np.int32)


def round_half_away_f32(v: np.ndarray) -> np.ndarray:
    """(int64) of |v| + 0.5 in float32, with v's sign (the C: (int32_t)(fabsf(v) + 0.5f))."""
    v = np.asarray(v, F32)
    a = np.minimum(np.abs(v), F32(2147483520.0))
    return (np.sign(v).astype(np.int64) * np.trunc(a + F32(0.5)).astype(np.int64))


def requantize_head(head: Head, w: np.ndarray, b: np.ndarray):
    """float32 (w, b) -> (int8 weights, float32 weight scales, int32 bias, mult, shift)."""
    amax = np.abs(w).max(axis=1).astype(F32)
    ws = amax / F32(127.0)
    lim = np.abs(b) / (head.in_scale * F32(1073741824.0))
    ws = np.where(ws < lim, lim, ws)
    ws = np.where(ws == 0, F32(1.0), ws).astype(F32)
    q = np.clip(round_half_away_f32(w / ws[:, None]), -127, 127).astype(np.int8)
    bs = (head.in_scale * ws).astype(F32)
    qb = np.clip(round_half_away_f32(b / bs), -(1 << 31), (1 << 31) - 1).astype(np.int32)
    real = np.float64(head.in_scale) * ws.astype(np.float64) / np.float64(head.out_scale)
    mult, shift = quantize_multipliers(real)
    return q, ws, qb, mult.astype(np.int32), shift.astype(np.int32)


def personalized_graph(head: Head, q: np.ndarray, ws: np.ndarray, qb: np.ndarray,
                       layer_bias: np.ndarray | None = None) -> Graph:
    """The lowered graph with the head's constants replaced (and, ``layer_bias`` given, the
    int32 bias of ``find_bias_layer``): the model that an export of the personalized weights
    gives (the oracle of the RAM slot's inference)."""
    g = copy.deepcopy(head.graph)
    if layer_bias is not None:
        lt = g.tensors[g.nodes[find_bias_layer(head).node].inputs[2]]
        lt.data = np.asarray(layer_bias, np.int32).reshape(lt.shape)
    node = g.nodes[head.node]
    wt, bt = g.tensors[node.inputs[1]], g.tensors[node.inputs[2]]
    wt.data = np.asarray(q, np.int8).reshape(wt.shape)
    wt.quant = QuantParams(np.asarray(ws, F32), np.zeros(head.units, np.int64), 0)
    bt.data = np.asarray(qb, np.int32).reshape(bt.shape)
    bt.quant = QuantParams((head.in_scale * np.asarray(ws, F32)).astype(F32),
                           np.zeros(head.units, np.int64), 0)
    return g


def backbone_outputs(head: Head, model_inputs: np.ndarray) -> np.ndarray:
    """int8 head inputs (N, depth) of int8 model inputs (N, ...), by the reference
    interpreter on the backbone."""
    return run_model(head.backbone, model_inputs).reshape(-1, head.depth)


def run_model(graph: Graph, model_inputs: np.ndarray) -> np.ndarray:
    """int8 outputs (N, size) of a graph on int8 inputs (N, ...), by the reference
    interpreter."""
    from kiloml.model import Model

    size = graph.tensors[graph.inputs[0]].size
    x = np.asarray(model_inputs, np.int8).reshape(-1, size)
    out = Model(graph).predict(x.reshape((len(x),) + tuple(graph.tensors[graph.inputs[0]].shape[1:])))
    return np.asarray(out, np.int8).reshape(len(x), -1)


def stored_samples(head: Head, model_inputs: np.ndarray, s: Settings) -> np.ndarray:
    """What ``personalize_add`` stores per sample: the int8 head input, or (``biases =
    "all"``) the int8 input of the bias layer."""
    if s.biases != "all":
        return backbone_outputs(head, model_inputs)
    layer = find_bias_layer(head)
    stem = layer.stem(head)
    x = np.asarray(model_inputs, np.int8)
    if stem is None:
        return x.reshape(len(x), -1)
    return run_model(stem, x).reshape(-1, layer.in_size)


def personalize(head: Head, model_inputs: np.ndarray, labels: np.ndarray, s: Settings):
    """The whole twin: backbone, SGD, requantization. Returns
    (int8 weights, float32 weight scales, int32 bias, mult, shift), and with ``biases =
    "all"`` the bias layer's int32 bias last."""
    feats = stored_samples(head, model_inputs, s)
    out = train_head(head, feats, labels, s)
    if s.biases == "all":
        return (*requantize_head(head, out[0], out[1]),
                requantize_bias(find_bias_layer(head), out[2]))
    return requantize_head(head, *out)


def check_samples(labels: np.ndarray, num_classes: int, s: Settings) -> None:
    """Labels in range and within the sample store."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise KilomlError("personalize: no samples")
    if len(labels) > s.max_samples:
        raise KilomlError(f"personalize: {len(labels)} samples, the store holds "
                          f"{s.max_samples} (the max_samples setting of personalize in kiloml.toml)")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise KilomlError(f"personalize: label {int(labels.max())} outside 0..{num_classes - 1}")


# ---------------------------------------------------------------- the generated C

@dataclass
class Bundle:
    """The personalization C: files (relative name -> text) and its memory figures."""

    files: dict[str, str]
    working_bytes: int     # float head, its bias and the logits (static)
    store_bytes: int       # the sample store: max_samples x (depth + 1) bytes (static)
    slot_bytes: int        # the RAM slot: int8 weights, int32 bias, mult, shift, scales
    arena_bytes: int       # the backbone's and the tail's activation arenas


def _f(v) -> str:
    from kiloml.deploy.c import f32_literal

    return f32_literal(float(F32(v)))


def _floats(values) -> np.ndarray:
    return np.asarray(values, F32).reshape(-1)


C_SOURCE = """\
{front}
/* Every float32 step is one IEEE operation, as in the twin: no fused multiply-add even
 * where the build does not pass -ffp-contract=off (an Arduino core compiles with -std=gnu11,
 * whose default contracts a * b + c into one FMA on an FPU). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "{n}_personalize.h"

#include <stdint.h>
#include <string.h>

#include "kml_fully_connected.h"
{pbb_include}{tail_include}
#define D {depth}u
#define U {units}u
#define SZ {sample_bytes}u  /* bytes of a stored sample */
{layer_decls}
/* factory head (flash) */
{factory}
/* the RAM slot inference reads: initialized to the factory head */
{slot}
static const kml_fc_params {n}_head_params = {{1, {depth}, {units}, {in_off}, {out_zp}, {act_min}, {act_max}}};

/* the sample store */
static int8_t {n}_store[{store}];
static uint8_t {n}_store_labels[{max_n}];
static uint32_t {n}_count;

/* working memory of the update */
static float {n}_w[{wsize}];
static float {n}_b[U];
static float {n}_z[U];
static int8_t {n}_head_in[D];
static int8_t {n}_head_out[U];

static float {n}_expf(float x)
{{
    float t, kf, r, p;
    int32_t k;
    union {{ uint32_t u; float f; }} pow2;
    if (!(x >= {exp_min})) {{
        return 0.0f;
    }}
    t = x * {log2e};
    k = (int32_t)(t - 0.5f);
    kf = (float)k;
    r = (x - kf * {ln2_hi}) - kf * {ln2_lo};
    p = {c0};
{horner}    pow2.u = (uint32_t)(k + 127) << 23;
    return p * pow2.f;
}}

static int32_t {n}_round(float v)
{{
    float a = v < 0.0f ? -v : v;
    int64_t q;
    if (a > 2147483520.0f) {{
        a = 2147483520.0f;
    }}
    q = (int64_t)(a + 0.5f);
    return (int32_t)(v < 0.0f ? -q : q);
}}

/* TFLite's QuantizeMultiplier of a positive double (frexp by exact halvings/doublings) */
static void {n}_multiplier(double real, int32_t *mult, int32_t *shift)
{{
    int32_t e = 0;
    int64_t q;
    if (!(real > 0.0)) {{
        *mult = 0;
        *shift = 0;
        return;
    }}
    while (real >= 1.0) {{
        real *= 0.5;
        ++e;
    }}
    while (real < 0.5) {{
        real *= 2.0;
        --e;
    }}
    q = (int64_t)(real * 2147483648.0 + 0.5);
    if (q == 2147483648LL) {{
        q /= 2;
        ++e;
    }}
    if (e < -31) {{
        q = 0;
        e = 0;
    }}
    *mult = (int32_t)q;
    *shift = e;
}}

void {n}_personalize_reset(void)
{{
    memcpy({n}_slot_w, {n}_factory_w, sizeof {n}_slot_w);
    memcpy({n}_slot_b, {n}_factory_b, sizeof {n}_slot_b);
    memcpy({n}_slot_mult, {n}_factory_mult, sizeof {n}_slot_mult);
    memcpy({n}_slot_shift, {n}_factory_shift, sizeof {n}_slot_shift);
    memcpy({n}_slot_ws, {n}_factory_ws, sizeof {n}_slot_ws);
{layer_reset}    {n}_count = 0u;
}}

void {n}_personalize_clear(void)
{{
    {n}_count = 0u;
}}

int {n}_personalize_add(const int8_t *model_input, int32_t label)
{{
    if (label < 0 || label >= (int32_t)U) {{
        return -1;
    }}
    if ({n}_count >= {max_n}u) {{
        return -2;
    }}
{add_store}
    {n}_store_labels[{n}_count] = (uint8_t)label;
    ++{n}_count;
    return 0;
}}

static int {n}_train(const int8_t *w0, const int32_t *b0, const float *ws0, float prox_mu)
{{
    uint32_t epoch, k, u, i;
    const float lr = {lr};
    /* FedProx: each step also subtracts (prox_mu * lr) * (w - w0), w0 the starting head */
    const float mu = prox_mu * lr;
    float x[D];
    uint8_t live[U];
    if ({n}_count == 0u) {{
        return -1;
    }}
    for (u = 0; u < U; ++u) {{
        for (i = 0; i < D; ++i) {{
            {n}_w[u * D + i] = (float)w0[u * D + i] * ws0[u];
        }}
        {n}_b[u] = (float)b0[u] * ({in_scale} * ws0[u]);
    }}
    for (epoch = 0; epoch != {epochs}u; ++epoch) {{
        for (k = 0; k < {n}_count; ++k) {{
            const int8_t *q = &{n}_store[k * SZ];
            const uint32_t label = {n}_store_labels[k];
            float m, tot, g;
{forward}            for (u = 0; u < U; ++u) {{
                float z = {n}_b[u];
                for (i = 0; i < D; ++i) {{
                    z = z + {n}_w[u * D + i] * x[i];
                }}
                /* the int8 head output saturates: no gradient through a clamped logit */
                live[u] = 0u;
                if (z < {lo}) {{
                    z = {lo};
                }} else if (z > {hi}) {{
                    z = {hi};
                }} else {{
                    live[u] = 1u;
                }}
                {n}_z[u] = z;
            }}
            m = {n}_z[0];
            for (u = 1; u < U; ++u) {{
                if ({n}_z[u] > m) {{
                    m = {n}_z[u];
                }}
            }}
            tot = 0.0f;
            for (u = 0; u < U; ++u) {{
                {n}_z[u] = {n}_expf({n}_z[u] - m);
                tot = u == 0 ? {n}_z[u] : tot + {n}_z[u];
            }}
            for (u = 0; u < U; ++u) {{
                float p = {n}_z[u] / tot;
                if (u == label) {{
                    p = p - 1.0f;
                }}
                {n}_z[u] = live[u] ? lr * p : 0.0f;  /* z now holds the step g_u */
            }}
{backward}            for (u = 0; u < U; ++u) {{
                g = {n}_z[u];
                if (mu != 0.0f) {{
                    for (i = 0; i < D; ++i) {{
                        const float wv = {n}_w[u * D + i];
                        const float d = mu * (wv - (float)w0[u * D + i] * ws0[u]);
                        {n}_w[u * D + i] = (wv - g * x[i]) - d;
                    }}
                    {{
                        const float d = mu * ({n}_b[u] - (float)b0[u] * ({in_scale} * ws0[u]));
                        {n}_b[u] = ({n}_b[u] - g) - d;
                    }}
                    continue;
                }}
                for (i = 0; i < D; ++i) {{
                    {n}_w[u * D + i] = {n}_w[u * D + i] - g * x[i];
                }}
                {n}_b[u] = {n}_b[u] - g;
            }}
        }}
    }}
    for (u = 0; u < U; ++u) {{
        float amax = 0.0f, ws, lim, bs;
        for (i = 0; i < D; ++i) {{
            float a = {n}_w[u * D + i] < 0.0f ? -{n}_w[u * D + i] : {n}_w[u * D + i];
            if (a > amax) {{
                amax = a;
            }}
        }}
        ws = amax / 127.0f;
        lim = ({n}_b[u] < 0.0f ? -{n}_b[u] : {n}_b[u]) / ({in_scale} * 1073741824.0f);
        if (ws < lim) {{
            ws = lim;
        }}
        if (ws == 0.0f) {{
            ws = 1.0f;
        }}
        for (i = 0; i < D; ++i) {{
            int32_t q = {n}_round({n}_w[u * D + i] / ws);
            {n}_slot_w[u * D + i] = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));
        }}
        bs = {in_scale} * ws;
        {n}_slot_b[u] = {n}_round({n}_b[u] / bs);
        {n}_multiplier((double){in_scale} * (double)ws / (double){out_scale}, &{n}_slot_mult[u],
                       &{n}_slot_shift[u]);
        {n}_slot_ws[u] = ws;
    }}
{layer_requant}    return 0;
}}

int {n}_personalize_update(void)
{{
{layer_start_factory}    return {n}_train({n}_factory_w, {n}_factory_b, {n}_factory_ws, {prox_mu});
}}

int {n}_personalize_update_from_slot(void)
{{
{layer_start_slot}    return {n}_train({n}_slot_w, {n}_slot_b, {n}_slot_ws, {prox_mu});
}}

int {n}_personalize_update_prox(float prox_mu)
{{
    if (!(prox_mu >= 0.0f)) {{
        return -2;
    }}
{layer_start_slot}    return {n}_train({n}_slot_w, {n}_slot_b, {n}_slot_ws, prox_mu);
}}

/* ---- the gateway byte format (docs/personalization.md): little-endian, CRC-32 last */

#define {M}_HEAD_MSG (12u + U * D + 16u * U + 4u)

static uint32_t {n}_crc32(const uint8_t *p, uint32_t len)
{{
    uint32_t c = 0xFFFFFFFFu, i, k;
    for (i = 0; i < len; ++i) {{
        c ^= p[i];
        for (k = 0; k < 8u; ++k) {{
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }}
    }}
    return c ^ 0xFFFFFFFFu;
}}

static void {n}_put32(uint8_t *p, uint32_t v)
{{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}}

static uint32_t {n}_get32(const uint8_t *p)
{{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}}

static void {n}_header(uint8_t *p, uint8_t kind, uint32_t count, uint32_t depth)
{{
    p[0] = (uint8_t)'K';
    p[1] = (uint8_t)'M';
    p[2] = (uint8_t)'L';
    p[3] = (uint8_t)'P';
    p[4] = 1u;
    p[5] = kind;
    p[6] = (uint8_t)(U & 0xFFu);
    p[7] = (uint8_t)((U >> 8) & 0xFFu);
    p[8] = (uint8_t)(depth & 0xFFu);
    p[9] = (uint8_t)((depth >> 8) & 0xFFu);
    p[10] = (uint8_t)(count & 0xFFu);
    p[11] = (uint8_t)((count >> 8) & 0xFFu);
}}

uint32_t {n}_personalize_export_head(uint8_t *buf, uint32_t cap)
{{
    uint32_t at = 12u, i;
    union {{ float f; uint32_t u; }} v;
    if (cap < {M}_HEAD_MSG) {{
        return 0u;
    }}
    {n}_header(buf, 2u, 0u, D);
    for (i = 0; i < U * D; ++i) {{
        buf[at++] = (uint8_t){n}_slot_w[i];
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_put32(&buf[at], (uint32_t){n}_slot_b[i]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_put32(&buf[at], (uint32_t){n}_slot_mult[i]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_put32(&buf[at], (uint32_t){n}_slot_shift[i]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        v.f = {n}_slot_ws[i];
        {n}_put32(&buf[at], v.u);
    }}
    {n}_put32(&buf[at], {n}_crc32(buf, at));
    return at + 4u;
}}

int {n}_personalize_import_head(const uint8_t *buf, uint32_t len)
{{
    uint32_t at = 12u, i;
    union {{ float f; uint32_t u; }} v;
    if (len != {M}_HEAD_MSG) {{
        return -1;
    }}
    if (buf[0] != (uint8_t)'K' || buf[1] != (uint8_t)'M' || buf[2] != (uint8_t)'L' ||
        buf[3] != (uint8_t)'P' || buf[4] != 1u || buf[5] != 2u) {{
        return -2;
    }}
    if ((uint32_t)(buf[6] | (buf[7] << 8)) != U || (uint32_t)(buf[8] | (buf[9] << 8)) != D ||
        buf[10] != 0u || buf[11] != 0u) {{
        return -3;
    }}
    if ({n}_get32(&buf[len - 4u]) != {n}_crc32(buf, len - 4u)) {{
        return -4;
    }}
    for (i = 0; i < U * D; ++i) {{
        {n}_slot_w[i] = (int8_t)buf[at++];
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_slot_b[i] = (int32_t){n}_get32(&buf[at]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_slot_mult[i] = (int32_t){n}_get32(&buf[at]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        {n}_slot_shift[i] = (int32_t){n}_get32(&buf[at]);
    }}
    for (i = 0; i < U; ++i, at += 4u) {{
        v.u = {n}_get32(&buf[at]);
        {n}_slot_ws[i] = v.f;
    }}
    return 0;
}}

uint32_t {n}_personalize_export_samples(uint8_t *buf, uint32_t cap)
{{
    uint32_t at = 12u, k, i;
    if (cap < 16u + {n}_count * (SZ + 1u)) {{
        return 0u;
    }}
    {n}_header(buf, 1u, {n}_count, SZ);
    for (k = 0; k < {n}_count; ++k) {{
        buf[at++] = {n}_store_labels[k];
        for (i = 0; i < SZ; ++i) {{
            buf[at++] = (uint8_t){n}_store[k * SZ + i];
        }}
    }}
    {n}_put32(&buf[at], {n}_crc32(buf, at));
    return at + 4u;
}}

int {n}_personalize_invoke(const int8_t *model_input, int8_t *model_output)
{{
{invoke_front}    kml_fully_connected_s8(&{n}_head_params, {n}_head_in, {n}_slot_w, {n}_slot_b, {n}_slot_mult,
                           {n}_slot_shift, {n}_head_out, 0, 0);
{tail_call}}}

const int8_t *{n}_personalize_weights(void)
{{
    return {n}_slot_w;
}}

const int32_t *{n}_personalize_bias(void)
{{
    return {n}_slot_b;
}}
{layer_api_c}"""

C_HEADER = """\
{front}
#ifndef {M}_PERSONALIZE_H
#define {M}_PERSONALIZE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {M}_HEAD_UNITS {units}       /* classes */
#define {M}_HEAD_DEPTH {depth}       /* head inputs per sample */
#define {M}_PERSONALIZE_MAX_SAMPLES {max_n}
#define {M}_PERSONALIZE_WORKING_BYTES {working}  /* float head + logits (static) */
#define {M}_PERSONALIZE_STORE_BYTES {store_bytes}  /* sample store (static) */

/* Restores the factory head (flash) into the RAM slot and empties the sample store. */
void {n}_personalize_reset(void);
/* Empties the sample store (the RAM slot is kept). */
void {n}_personalize_clear(void);
/* Runs the int8 backbone on one int8 model input and stores its head input with the label.
 * Returns 0, -1 for a label out of range, -2 when the store is full, -3 on a model error. */
int {n}_personalize_add(const int8_t *model_input, int32_t label);
/* Retrains the head from the factory weights on the stored samples and writes the
 * requantized int8 head into the RAM slot. Returns 0, or -1 when the store is empty (the
 * slot is then untouched). */
int {n}_personalize_update(void);
/* One inference with the head in the RAM slot: int8 model input -> int8 model output. */
int {n}_personalize_invoke(const int8_t *model_input, int8_t *model_output);
/* The RAM slot: {units} x {depth} int8 weights, {units} int32 biases. */
const int8_t *{n}_personalize_weights(void);
const int32_t *{n}_personalize_bias(void);
{layer_api_h}
/* A federated client's round: retrains the head starting from the RAM slot (a global head
 * installed by {n}_personalize_import_head) instead of the factory head. */
int {n}_personalize_update_from_slot(void);
/* A FedProx client's round: as update_from_slot, with the proximal weight mu (>= 0) the
 * server sent instead of the prox_mu setting ({prox_mu_setting}); -2 for a negative mu. */
int {n}_personalize_update_prox(float prox_mu);

/* The gateway byte format (docs/personalization.md), for a phone or gateway to relay over
 * serial or BLE. Head message: the RAM slot, {M}_HEAD_MESSAGE_BYTES bytes. */
#define {M}_HEAD_MESSAGE_BYTES {head_msg}u
/* Samples message: 16 + count x (1 + {M}_HEAD_DEPTH) bytes, at most this many. */
#define {M}_SAMPLES_MESSAGE_MAX_BYTES {samples_msg}u
/* Writes the RAM slot as a head message; returns its length, 0 if cap is too small. */
uint32_t {n}_personalize_export_head(uint8_t *buf, uint32_t cap);
/* Installs a head message into the RAM slot. Returns 0, or (the slot untouched) -1 for a
 * wrong length, -2 for another magic, version or kind, -3 for another head shape, -4 for a
 * checksum mismatch. */
int {n}_personalize_import_head(const uint8_t *buf, uint32_t len);
/* Writes the stored samples as a samples message; its length, 0 if cap is too small. */
uint32_t {n}_personalize_export_samples(uint8_t *buf, uint32_t cap);

#ifdef __cplusplus
}}
#endif

#endif /* {M}_PERSONALIZE_H */
"""


def personalize_files(head: Head, name: str, s: Settings, command: str = "kiloml deploy",
                      runtime: str = "portable") -> Bundle:
    """The personalization C of ``name``: ``<name>_personalize.{c,h}``, the backbone
    (``<name>_pbb``) and tail (``<name>_ptail``) models and the kernels they use; with
    ``biases = "all"`` the backbone is the stem before the bias layer, which the update and
    ``personalize_invoke`` run themselves, followed by the mid model (``<name>_pmid``)."""
    n, U, D = name, head.units, head.depth
    layer = find_bias_layer(head) if s.biases == "all" else None
    files: dict[str, str] = {}
    arena = 0

    def add_model(graph: Graph, prefix: str) -> None:
        nonlocal arena
        r = generate_c(graph, prefix=prefix, command=command, runtime=runtime)
        for k, v in r.files.items():
            if k in files and files[k] != v:
                raise KilomlError(f"personalize: two different runtime files named {k}")
            files[k] = v
        arena += r.plan.arena_bytes

    stem = head.backbone if layer is None else layer.stem(head)
    if stem is not None:
        add_model(stem, f"{n}_pbb")
        pbb_include = f'#include "{n}_pbb.h"\n'
    else:
        pbb_include = ""
    tail = head.tail
    if tail is not None:
        add_model(tail, f"{n}_ptail")
        tail_include = f'#include "{n}_ptail.h"\n'
        tail_call = f"    return {n}_ptail_invoke({n}_head_out, model_output);\n"
    else:
        tail_include = ""
        tail_call = f"    memcpy(model_output, {n}_head_out, U);\n    return 0;\n"
    g = head.graph
    kernel_nodes = [head.node] + ([] if layer is None else [layer.node])
    for i in kernel_nodes:
        nd = g.nodes[i]
        fc = generate_c(Graph(g.tensors, [nd], [nd.inputs[0]], list(nd.outputs)),
                        prefix=f"{n}_pk{i}", command=command, runtime=runtime)
        for k, v in fc.files.items():
            if k.startswith("kml_"):
                files.setdefault(k, v)
    fm, fs = _factory_mult(head)
    factory = "\n".join([
        array_decl("int8_t", f"{n}_factory_w", head.weights.reshape(-1)),
        array_decl("int32_t", f"{n}_factory_b", head.bias),
        array_decl("float", f"{n}_factory_ws", _floats(head.wscale)),
        array_decl("int32_t", f"{n}_factory_mult", fm),
        array_decl("int32_t", f"{n}_factory_shift", fs)])
    slot = "\n".join([
        array_decl("int8_t", f"{n}_slot_w", head.weights.reshape(-1), storage="static"),
        array_decl("int32_t", f"{n}_slot_b", head.bias, storage="static"),
        array_decl("int32_t", f"{n}_slot_mult", fm, storage="static"),
        array_decl("int32_t", f"{n}_slot_shift", fs, storage="static"),
        array_decl("float", f"{n}_slot_ws", _floats(head.wscale), storage="static")])
    parts = _layer_parts(head, layer, n, stem is not None, files, add_model,
                         _f(s.bias_lr_scale))
    horner = "".join(f"    p = p * r + {_f(c)};\n" for c in EXP_POLY[1:])
    front = f"/* Generated by kiloml -- do not edit.\n * command: {command}\n */\n"
    sz = D if layer is None else layer.in_size
    working = 4 * (U * D + 2 * U) + D + U + parts.pop("extra_working")
    store = s.max_samples * sz
    text = C_SOURCE.format(
        front=front, n=n, depth=D, units=U, tail_include=tail_include, factory=factory,
        slot=slot, in_off=-head.in_zp, out_zp=head.out_zp, act_min=head.act_min,
        act_max=head.act_max, store=store, max_n=s.max_samples, wsize=U * D,
        exp_min=_f(EXP_MIN), log2e=_f(LOG2E), ln2_hi=_f(LN2_HI), ln2_lo=_f(LN2_LO),
        c0=_f(EXP_POLY[0]), horner=horner, lr=_f(s.lr), epochs=int(s.epochs),
        in_scale=_f(head.in_scale), in_zp=head.in_zp, out_scale=_f(head.out_scale),
        tail_call=tail_call, lo=_f(logit_range(head)[0]), hi=_f(logit_range(head)[1]),
        M=n.upper(), prox_mu=_f(s.prox_mu), pbb_include=pbb_include, sample_bytes=sz,
        **parts)
    files[f"{n}_personalize.c"] = text
    files[f"{n}_personalize.h"] = C_HEADER.format(
        front=front, n=n, M=n.upper(), units=U, depth=D, max_n=s.max_samples, working=working,
        store_bytes=store + s.max_samples, head_msg=12 + U * D + 16 * U + 4,
        samples_msg=16 + s.max_samples * (sz + 1), prox_mu_setting=float(F32(s.prox_mu)),
        layer_api_h=parts["layer_api_h"])
    slot_bytes = U * D + 4 * 4 * U + (0 if layer is None else 4 * D)
    return Bundle(dict(sorted(files.items())), working, store + s.max_samples, slot_bytes,
                  arena)


def _layer_parts(head: Head, layer: BiasLayer | None, n: str, has_stem: bool,
                 files: dict, add_model, bias_k: str = "1.0f") -> dict:
    """The C_SOURCE pieces that differ between ``biases = "head"`` and ``"all"``."""
    if layer is None:
        return {
            "layer_decls": "",
            "add_store": f"""    if ({n}_pbb_invoke(model_input, &{n}_store[{n}_count * SZ]) != 0) {{
        return -3;
    }}
""",
            "forward": f"""            for (i = 0; i < D; ++i) {{
                x[i] = (float)((int32_t)q[i] - ({head.in_zp})) * {_f(head.in_scale)};
            }}
""",
            "backward": "", "layer_requant": "", "layer_reset": "", "layer_start_factory": "",
            "layer_start_slot": "",
            "invoke_front": f"""    if ({n}_pbb_invoke(model_input, {n}_head_in) != 0) {{
        return -1;
    }}
""",
            "layer_api_c": "", "layer_api_h": "", "extra_working": 0}
    p = layer.p
    g = head.graph
    node = g.nodes[layer.node]
    mid = layer.mid(head)
    if mid is not None:
        add_model(mid, f"{n}_pmid")
    if layer.op == "CONV_2D":
        fields = conv_fields(p)
        ptype, call = "kml_conv_params", "kml_conv2d_s8"
    else:
        fields = f"1, {p.in_c}, {p.out_c}, {p.in_offset}, {p.out_offset}, {p.act_min}, {p.act_max}"
        ptype, call = "kml_fc_params", "kml_fully_connected_s8"
    decls = "\n".join([
        ('#include "kml_conv.h"' if layer.op == "CONV_2D" else "")
        + (f'\n#include "{n}_pmid.h"' if mid is not None else ""),
        "",
        f"/* biases = \"all\": the {layer.op} before the head (its int8 weights in flash, its "
        "bias trained) */",
        f"static const {ptype} {n}_conv_params = {{{fields}}};",
        array_decl("int8_t", f"{n}_conv_w", layer.weights.reshape(-1)),
        array_decl("int32_t", f"{n}_conv_mult", np.asarray(p.mult, np.int32)),
        array_decl("int32_t", f"{n}_conv_shift", np.asarray(p.shift, np.int32)),
        array_decl("float", f"{n}_conv_cs", _floats(layer.cs)),
        array_decl("int32_t", f"{n}_factory_cb", layer.bias),
        array_decl("int32_t", f"{n}_slot_cb", layer.bias, storage="static"),
        f"static float {n}_cb[D];",
        f"static float {n}_frac[D];",
        *([f"static int8_t {n}_conv_in[{layer.in_size}];"] if has_stem else []),
        f"static int8_t {n}_conv_out[{layer.out_size}];", ""])
    add_store = (f"""    if ({n}_pbb_invoke(model_input, &{n}_store[{n}_count * SZ]) != 0) {{
        return -3;
    }}
""" if has_stem else f"""    memcpy(&{n}_store[{n}_count * SZ], model_input, SZ);
""")
    forward = f"""            /* the layer's forward: v = (float)acc * cs + b over every position, clamped
             * to its activation's range; the head input is the mean of v */
            for (i = 0; i < D; ++i) {{
                const int32_t c = (int32_t)i;
                float sum = 0.0f;
                uint32_t alive = 0u;
                int32_t oy, ox, ky, kx, ci;
                for (oy = 0; oy < {p.out_h}; ++oy) {{
                    for (ox = 0; ox < {p.out_w}; ++ox) {{
                        int32_t acc = 0;
                        float v;
                        for (ky = 0; ky < {p.k_h}; ++ky) {{
                            const int32_t iy = oy * {p.stride_h} - {p.pad_top} + ky * {p.dil_h};
                            if (iy < 0 || iy >= {p.in_h}) {{
                                continue;
                            }}
                            for (kx = 0; kx < {p.k_w}; ++kx) {{
                                const int32_t ix = ox * {p.stride_w} - {p.pad_left} + kx * {p.dil_w};
                                const int8_t *xi;
                                const int8_t *wi;
                                if (ix < 0 || ix >= {p.in_w}) {{
                                    continue;
                                }}
                                xi = &q[(iy * {p.in_w} + ix) * {p.in_c}];
                                wi = &{n}_conv_w[((c * {p.k_h} + ky) * {p.k_w} + kx) * {p.in_c}];
                                for (ci = 0; ci < {p.in_c}; ++ci) {{
                                    acc += ((int32_t)xi[ci] + ({p.in_offset})) * (int32_t)wi[ci];
                                }}
                            }}
                        }}
                        v = (float)acc * {n}_conv_cs[i];
                        v = v + {n}_cb[i];
                        if (v < {_f(layer.lo)}) {{
                            v = {_f(layer.lo)};
                        }} else if (v > {_f(layer.hi)}) {{
                            v = {_f(layer.hi)};
                        }} else {{
                            ++alive;
                        }}
                        sum = sum + v;
                    }}
                }}
                x[i] = sum / {_f(layer.positions)};
                {n}_frac[i] = (float)alive / {_f(layer.positions)};
            }}
"""
    backward = f"""            /* the layer's bias: dL/dx_c = sum_u g_u w_uc (the head before this step),
             * times the share of its live positions */
            for (i = 0; i < D; ++i) {{
                float t = {n}_z[0] * {n}_w[i];
                for (u = 1; u < U; ++u) {{
                    t = t + {n}_z[u] * {n}_w[u * D + i];
                }}
                {n}_cb[i] = {n}_cb[i] - (t * {n}_frac[i]) * {bias_k};
            }}
"""
    requant = f"""    for (i = 0; i < D; ++i) {{
        {n}_slot_cb[i] = {n}_round({n}_cb[i] / {n}_conv_cs[i]);
    }}
"""
    reset = f"    memcpy({n}_slot_cb, {n}_factory_cb, sizeof {n}_slot_cb);\n"

    def start(src: str) -> str:
        return f"""    {{
        uint32_t c;
        for (c = 0; c < D; ++c) {{
            {n}_cb[c] = (float){src}[c] * {n}_conv_cs[c];
        }}
    }}
"""
    conv_in = f"{n}_conv_in" if has_stem else "model_input"
    front = (f"""    if ({n}_pbb_invoke(model_input, {n}_conv_in) != 0) {{
        return -1;
    }}
""" if has_stem else "") + f"""    {call}(&{n}_conv_params, {conv_in}, {n}_conv_w, {n}_slot_cb, {n}_conv_mult,
                  {n}_conv_shift, {n}_conv_out, 0, 0);
""" + (f"""    if ({n}_pmid_invoke({n}_conv_out, {n}_head_in) != 0) {{
        return -1;
    }}
""" if mid is not None else f"    memcpy({n}_head_in, {n}_conv_out, D);\n")
    api_c = f"""
const int32_t *{n}_personalize_layer_bias(void)
{{
    return {n}_slot_cb;
}}
"""
    api_h = (f"/* biases = \"all\": the RAM slot's int32 bias of the layer before the head "
             f"({head.depth} channels). */\nconst int32_t *{n}_personalize_layer_bias(void);\n")
    extra = 8 * head.depth + (layer.in_size if has_stem else 0) + layer.out_size
    return {"layer_decls": decls, "add_store": add_store, "forward": forward,
            "backward": backward, "layer_requant": requant, "layer_reset": reset,
            "layer_start_factory": start(f"{n}_factory_cb"),
            "layer_start_slot": start(f"{n}_slot_cb"), "invoke_front": front,
            "layer_api_c": api_c, "layer_api_h": api_h, "extra_working": extra}


def trained_biases(head: Head, s: Settings) -> list[str]:
    """Which biases the update trains, by lowered-graph node: the head's, and with ``biases
    = "all"`` the bias layer's before it."""
    out = [f"head: node {head.node} FULLY_CONNECTED ({head.units})"]
    if s.biases == "all":
        lay = find_bias_layer(head)
        out.append(f"node {lay.node} {lay.op} ({lay.p.out_c} channels)")
    return out


def conv_fields(p) -> str:
    from kiloml.ir.ops.conv_common import conv_struct_fields

    return ", ".join(str(v) for v in conv_struct_fields(p).values())


def _factory_mult(head: Head) -> tuple[np.ndarray, np.ndarray]:
    from kiloml.ir.ops import REGISTRY

    p = REGISTRY["FULLY_CONNECTED"].prepare(head.graph, head.graph.nodes[head.node])
    return p.mult.astype(np.int32), p.shift.astype(np.int32)


# ---------------------------------------------------------------- running the C

# Both harnesses: reset, add n (model input, int32 label) records read from fi, update;
# 0 or the harness's exit code (4 short file, 5 add refused, 6 update failed).
TRAIN_FROM = """
static int train_from(FILE *fi, long n)
{{
    long i;
    int32_t label;
    {n}_personalize_reset();
    for (i = 0; i < n; ++i) {{
        if (fread(in, 1, sizeof in, fi) != sizeof in) {{ return 4; }}
        if (fread(&label, sizeof label, 1, fi) != 1) {{ return 4; }}
        if ({n}_personalize_add(in, label) != 0) {{ return 5; }}
    }}
    return {n}_personalize_update() != 0 ? 6 : 0;
}}
"""

HOST_HARNESS = """/* kiloml personalization check harness (host): not part of the package */
#include <stdio.h>
#include <stdlib.h>

#include "{n}_personalize.h"

static int8_t in[{insize}];
static int8_t out[{units}];
""" + TRAIN_FROM + """
int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    long n, m, i;
    int rc;
    if (argc != 5) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    n = atol(argv[3]);
    m = atol(argv[4]);
    rc = train_from(fi, n);
    if (rc != 0) {{ return rc; }}
    fwrite({n}_personalize_weights(), 1, {wsize}, fo);
    fwrite({n}_personalize_bias(), sizeof(int32_t), {units}, fo);
{layer_write}    for (i = 0; i < m; ++i) {{
        if (fread(in, 1, sizeof in, fi) != sizeof in) {{ return 4; }}
        if ({n}_personalize_invoke(in, out) != 0) {{ return 7; }}
        fwrite(out, 1, sizeof out, fo);
    }}
    fclose(fi);
    fclose(fo);
    return 0;
}}
"""

# every float operation of the update is one IEEE operation: no fused multiply-add
FP_FLAGS = ["-ffp-contract=off"]


@dataclass
class UpdateResult:
    """What the C update produced: the RAM slot's int8 weights and int32 bias, and (host)
    the int8 outputs of ``personalize_invoke`` on the evaluation inputs or (emulator) the
    measured figures."""

    weights: np.ndarray
    bias: np.ndarray
    outputs: np.ndarray | None = None
    stack_bytes: int = 0
    instructions: int = 0
    cycles: int = 0
    layer_bias: np.ndarray | None = None   # biases = "all": the bias layer's int32 bias


def _write(files: dict[str, str], d) -> list:
    from pathlib import Path

    srcs = []
    for k, v in files.items():
        (Path(d) / k).write_text(v)
        if k.endswith(".c"):
            srcs.append(Path(d) / k)
    return srcs


def _check_inputs(head: Head, model_inputs, labels) -> tuple[np.ndarray, np.ndarray]:
    size = head.graph.tensors[head.graph.inputs[0]].size
    x = np.ascontiguousarray(np.asarray(model_inputs, np.int8).reshape(-1, size))
    y = np.asarray(labels, np.int32).reshape(-1)
    if len(x) != len(y):
        raise KilomlError(f"personalize: {len(x)} inputs but {len(y)} labels")
    return x, y


def _host_exe(bundle: Bundle, harness: str, d, sanitize: bool):
    """The bundle's C and ``harness`` built in folder ``d`` with the host gcc (warnings as
    errors; ``sanitize``: ASan and UBSan); the executable's path."""
    import subprocess
    from pathlib import Path

    from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc
    from kiloml.errors import ToolchainError

    d = Path(d)
    srcs = _write(bundle.files, d)
    (d / "kml_p_harness.c").write_text(harness)
    exe = d / "harness"
    cmd = [find_cc(), *WARNINGS, *FP_FLAGS, "-O2", *(SANITIZE if sanitize else []),
           "-I", str(d), *map(str, srcs), str(d / "kml_p_harness.c"), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ToolchainError(f"gcc failed on the personalization C:\n{proc.stderr[:3000]}")
    return exe


GATEWAY_HARNESS = """/* kiloml gateway-format check harness (host): not part of the package */
#include <stdio.h>
#include <stdlib.h>

#include "{n}_personalize.h"

static int8_t in[{insize}];
static uint8_t msg[{M}_HEAD_MESSAGE_BYTES + 64];
static uint8_t buf[{M}_SAMPLES_MESSAGE_MAX_BYTES + {M}_HEAD_MESSAGE_BYTES];

static void put(FILE *fo, uint32_t len)
{{
    fwrite(&len, sizeof len, 1, fo);
    fwrite(buf, 1, len, fo);
}}
""" + TRAIN_FROM + """
int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    long n, i;
    int32_t rc;
    uint32_t len;
    if (argc != 4) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    n = atol(argv[3]);
    rc = train_from(fi, n);
    if (rc != 0) {{ return rc; }}
    put(fo, {n}_personalize_export_head(buf, sizeof buf));
    put(fo, {n}_personalize_export_samples(buf, sizeof buf));
    if ({n}_personalize_export_head(buf, {M}_HEAD_MESSAGE_BYTES - 1u) != 0u) {{ return 8; }}
    /* a global head relayed by the gateway, then the same message corrupted */
    for (i = 0; i < 2; ++i) {{
        if (fread(&len, sizeof len, 1, fi) != 1 || len > sizeof msg) {{ return 4; }}
        if (fread(msg, 1, len, fi) != len) {{ return 4; }}
        rc = {n}_personalize_import_head(msg, len);
        fwrite(&rc, sizeof rc, 1, fo);
        if (rc == 0 && {update_call} != 0) {{ return 7; }}
        put(fo, {n}_personalize_export_head(buf, sizeof buf));
    }}
    fclose(fi);
    fclose(fo);
    return 0;
}}
"""


def _update_call(name: str, prox_mu: float | None) -> str:
    if prox_mu is None:
        return f"{name}_personalize_update_from_slot()"
    return f"{name}_personalize_update_prox({_f(prox_mu)})"


def run_gateway_host(bundle: Bundle, head: Head, name: str, model_inputs, labels,
                     message: bytes, corrupted: bytes, sanitize: bool = True,
                     prox_mu: float | None = None) -> dict:
    """The bundle's gateway functions on the host: reset, add every sample, update, export
    the head message (``"head"``) and the samples message (``"samples"``); then import
    ``message`` (a global head from a gateway), update from the slot (``prox_mu`` given:
    ``update_prox(prox_mu)``) and export (``"rc"``, ``"head_after"``); then import ``corrupted`` and export again (``"rc_bad"``,
    ``"head_after_bad"``)."""
    import struct
    import subprocess
    import tempfile
    from pathlib import Path

    from kiloml.errors import ToolchainError

    x, y = _check_inputs(head, model_inputs, labels)
    with tempfile.TemporaryDirectory(prefix="kiloml_gateway_") as tmp:
        d = Path(tmp)
        exe = _host_exe(bundle, GATEWAY_HARNESS.format(n=name, M=name.upper(),
                                                       insize=x.shape[1],
                                                       update_call=_update_call(name, prox_mu)),
                        d, sanitize)
        blob = b"".join(x[i].tobytes() + y[i:i + 1].tobytes() for i in range(len(x)))
        for m in (message, corrupted):
            blob += struct.pack("<I", len(m)) + m
        (d / "in.bin").write_bytes(blob)
        proc = subprocess.run([str(exe), str(d / "in.bin"), str(d / "out.bin"), str(len(x))],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ToolchainError(f"the gateway C failed on the host (exit "
                                 f"{proc.returncode}):\n{proc.stderr[:2000]}")
        out = (d / "out.bin").read_bytes()
    res, at = {}, 0
    for key in ("head", "samples", "rc", "head_after", "rc_bad", "head_after_bad"):
        if key.startswith("rc"):
            res[key] = struct.unpack_from("<i", out, at)[0]
            at += 4
            continue
        n = struct.unpack_from("<I", out, at)[0]
        res[key] = out[at + 4:at + 4 + n]
        at += 4 + n
    return res


def run_gateway_emulator(bundle: Bundle, head: Head, name: str, model_inputs, labels,
                         message: bytes, core: str, flags: list[str],
                         prox_mu: float | None = None) -> dict:
    """A board's federated round in the profiling emulator (``flags`` for ``core``): reset,
    add every sample, update, export the head and the samples messages; import ``message``,
    update from the slot (or ``update_prox(prox_mu)``) and export the head again. Returns
    ``"head"``, ``"samples"``, ``"rc"`` (the import's return) and ``"head_after"`` as bytes / int."""
    import struct
    import tempfile
    from pathlib import Path

    from kiloml.targets.emulator import emulate
    from kiloml.targets.harness import BEGIN, END, build_elf

    x, y = _check_inputs(head, model_inputs, labels)
    M, U, D = name.upper(), head.units, head.depth
    head_n, samples_n = 12 + U * D + 16 * U + 4, 16 + len(x) * (D + 1)
    lines = ["/* kiloml gateway harness (bare metal): not part of the package */",
             "#include <stdint.h>", f'#include "{name}_personalize.h"', "",
             array_decl("int8_t", "kml_g_inputs", x.reshape(-1)),
             array_decl("int32_t", "kml_g_labels", y),
             array_decl("uint8_t", "kml_g_message", np.frombuffer(message, np.uint8)),
             f"uint8_t kml_g_head[{M}_HEAD_MESSAGE_BYTES];",
             f"uint8_t kml_g_samples[{M}_SAMPLES_MESSAGE_MAX_BYTES];",
             f"uint8_t kml_g_after[{M}_HEAD_MESSAGE_BYTES];",
             "int32_t kml_g_status[4];",
             "int main(void);",
             f"__attribute__((noinline)) void {BEGIN}(void);",
             f"__attribute__((noinline)) void {END}(void);",
             f'void {BEGIN}(void) {{ __asm volatile ("" ::: "memory"); }}',
             f'void {END}(void) {{ __asm volatile ("" ::: "memory"); }}',
             "int main(void)", "{", "    uint32_t i;", f"    {name}_personalize_reset();",
             f"    {BEGIN}();",
             f"    for (i = 0; i < {len(x)}u; ++i) {{",
             f"        if ({name}_personalize_add(&kml_g_inputs[i * {x.shape[1]}u], "
             "kml_g_labels[i]) != 0) {", "            kml_g_status[0] = 1;", "        }", "    }",
             f"    kml_g_status[1] = {name}_personalize_update();",
             f"    (void){name}_personalize_export_head(kml_g_head, sizeof kml_g_head);",
             f"    (void){name}_personalize_export_samples(kml_g_samples, sizeof kml_g_samples);",
             f"    kml_g_status[2] = {name}_personalize_import_head(kml_g_message, "
             "sizeof kml_g_message);",
             f"    kml_g_status[3] = {_update_call(name, prox_mu)};",
             f"    (void){name}_personalize_export_head(kml_g_after, sizeof kml_g_after);",
             f"    {END}();",
             "    return 0;", "}", ""]
    with tempfile.TemporaryDirectory(prefix="kiloml_gateway_emu_") as tmp:
        d = Path(tmp)
        _write(bundle.files, d)
        (d / "kml_p_harness.c").write_text("\n".join(lines))
        image = build_elf(d, [*flags, *FP_FLAGS], "gateway.elf", libs=["-lm"])
        fpu = any(f.startswith("-mfpu") for f in flags)
        res = emulate(image, core, fpu=fpu, read_back={
            "kml_g_status": 16, "kml_g_head": head_n, "kml_g_samples": samples_n,
            "kml_g_after": head_n})
    status = struct.unpack("<4i", res.memory["kml_g_status"])
    if status[0] or status[1] or status[3]:
        raise KilomlError(f"personalize: the gateway round failed in the emulator {status}")
    return {"head": bytes(res.memory["kml_g_head"]), "samples": bytes(res.memory["kml_g_samples"]),
            "rc": status[2], "head_after": bytes(res.memory["kml_g_after"])}


def run_update_host(bundle: Bundle, head: Head, name: str, model_inputs, labels,
                    eval_inputs=None, sanitize: bool = False) -> UpdateResult:
    """The bundle's C built with the host gcc (warnings as errors, ``sanitize``: ASan and
    UBSan): reset, add every sample, update, then ``personalize_invoke`` on ``eval_inputs``."""
    import subprocess
    import tempfile
    from pathlib import Path

    from kiloml.errors import ToolchainError

    x, y = _check_inputs(head, model_inputs, labels)
    size = x.shape[1]
    ev = (np.zeros((0, size), np.int8) if eval_inputs is None
          else np.asarray(eval_inputs, np.int8).reshape(-1, size))
    U, D = head.units, head.depth
    with tempfile.TemporaryDirectory(prefix="kiloml_personalize_") as tmp:
        d = Path(tmp)
        nl = _layer_channels(bundle, name)
        lw = (f"    fwrite({name}_personalize_layer_bias(), sizeof(int32_t), {nl}, fo);\n"
              if nl else "")
        exe = _host_exe(bundle, HOST_HARNESS.format(n=name, insize=size, units=U, wsize=U * D,
                                                    layer_write=lw), d, sanitize)
        blob = b"".join(x[i].tobytes() + y[i:i + 1].tobytes() for i in range(len(x)))
        (d / "in.bin").write_bytes(blob + ev.tobytes())
        proc = subprocess.run([str(exe), str(d / "in.bin"), str(d / "out.bin"), str(len(x)),
                               str(len(ev))], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ToolchainError(f"the personalization C failed on the host (exit "
                                 f"{proc.returncode}):\n{proc.stderr[:2000]}")
        out = (d / "out.bin").read_bytes()
    w = np.frombuffer(out[:U * D], np.int8).reshape(U, D)
    b = np.frombuffer(out[U * D:U * D + 4 * U], np.int32)
    at = U * D + 4 * U
    lb = np.frombuffer(out[at:at + 4 * nl], np.int32).copy() if nl else None
    o = np.frombuffer(out[at + 4 * nl:], np.int8).reshape(len(ev), U)
    return UpdateResult(w.copy(), b.copy(), o.copy(), layer_bias=lb)


def _layer_channels(bundle: Bundle, name: str) -> int:
    """The bias layer's channel count of a ``biases = "all"`` bundle, else 0."""
    import re

    m = re.search(rf"{name}_slot_cb\[(\d+)\]", bundle.files[f"{name}_personalize.c"])
    return int(m.group(1)) if m else 0


def run_update_emulator(bundle: Bundle, head: Head, name: str, model_inputs, labels,
                        core: str, flags: list[str]) -> UpdateResult:
    """The bundle's C cross-compiled with ``flags`` for ``core`` and run in the profiling
    emulator: reset, then between the markers every ``personalize_add`` and the update.
    Returns the slot, the stack high-water mark of the whole run and the counted
    instructions and estimated cycles of the adds and the update."""
    import tempfile
    from pathlib import Path

    from kiloml.targets.emulator import emulate
    from kiloml.targets.harness import BEGIN, END, build_elf

    x, y = _check_inputs(head, model_inputs, labels)
    U, D = head.units, head.depth
    lines = ["/* kiloml personalization harness (bare metal): not part of the package */",
             "#include <stdint.h>", f'#include "{name}_personalize.h"', "",
             array_decl("int8_t", "kml_p_inputs", x.reshape(-1)),
             array_decl("int32_t", "kml_p_labels", y),
             "int32_t kml_p_status;",
             "int main(void);",
             f"__attribute__((noinline)) void {BEGIN}(void);",
             f"__attribute__((noinline)) void {END}(void);",
             f'void {BEGIN}(void) {{ __asm volatile ("" ::: "memory"); }}',
             f'void {END}(void) {{ __asm volatile ("" ::: "memory"); }}',
             "int main(void)", "{", "    uint32_t i;", f"    {name}_personalize_reset();",
             f"    {BEGIN}();",
             f"    for (i = 0; i < {len(x)}u; ++i) {{",
             f"        if ({name}_personalize_add(&kml_p_inputs[i * {x.shape[1]}u], "
             "kml_p_labels[i]) != 0) {", "            kml_p_status = 1;", "        }", "    }",
             f"    if ({name}_personalize_update() != 0) {{", "        kml_p_status = 2;", "    }",
             f"    {END}();",
             "    return 0;", "}", ""]
    with tempfile.TemporaryDirectory(prefix="kiloml_personalize_emu_") as tmp:
        d = Path(tmp)
        _write(bundle.files, d)
        (d / "kml_p_harness.c").write_text("\n".join(lines))
        image = build_elf(d, [*flags, *FP_FLAGS], "personalize.elf", libs=["-lm"])
        fpu = any(f.startswith("-mfpu") for f in flags)
        nl = _layer_channels(bundle, name)
        back = {"kml_p_status": 4, f"{name}_slot_w": U * D, f"{name}_slot_b": 4 * U}
        if nl:
            back[f"{name}_slot_cb"] = 4 * nl
        res = emulate(image, core, fpu=fpu, read_back=back)
    if np.frombuffer(res.memory["kml_p_status"], np.int32)[0] != 0:
        raise KilomlError("personalize: the update failed in the emulator")
    return UpdateResult(np.frombuffer(res.memory[f"{name}_slot_w"], np.int8).reshape(U, D),
                        np.frombuffer(res.memory[f"{name}_slot_b"], np.int32), None,
                        int(res.stack_bytes), int(res.instructions), int(round(res.cycles)),
                        np.frombuffer(res.memory[f"{name}_slot_cb"], np.int32).copy()
                        if nl else None)


def package_files(p) -> tuple[dict[str, str], dict]:
    """The C package's ``personalize/`` folder for a resolved deploy Pipeline ``p`` (the
    portable kernels; compile it with ``-ffp-contract=off``) and its memory report: the
    working memory of the update against the budget of twice the model's arena."""
    head = find_head(p.spec.graph)
    s = p.spec.personalize
    b = personalize_files(head, p.name, s, command=p.command)
    budget = 2 * int(p.arena_bytes)
    report = {"head_units": head.units, "head_depth": head.depth, "epochs": s.epochs,
              "lr": s.lr, "max_samples": s.max_samples, "prox_mu": s.prox_mu,
              "biases": s.biases, "trained_biases": trained_biases(head, s),
              "working_bytes": b.working_bytes, "store_bytes": b.store_bytes,
              "slot_bytes": b.slot_bytes, "model_arena_bytes": int(p.arena_bytes),
              "budget_bytes": budget, "working_within_budget": b.working_bytes <= budget,
              "compile_flags": FP_FLAGS,
              "sources": []}
    files = private_kernels(b.files, p.name)
    report["sources"] = sorted("personalize/" + f for f in files if f.endswith(".c"))
    return {"personalize/" + k: v for k, v in files.items()}, report


_C_FUNCTION = re.compile(r"^(?!static\b)[A-Za-z_][\w \t*]*?\b(kml_\w+)\s*\(", re.M)


def private_kernels(files: dict[str, str], name: str) -> dict[str, str]:
    """``files`` with every global kernel function their ``.c`` files define renamed to
    ``<name>_pz_<function>`` (a generated header of ``#define``s, included first by each
    ``.c``): the update's portable kernels then link beside the model's kernel set of any core
    (whose functions of the same name may take other arguments, e.g. armv7em's packed fully
    connected layer) without a clash; their ``.c`` files are renamed ``<name>_pz_kml_*.c``
    too, so that compiling every folder's ``.c`` files into one directory (``gcc -c``) gives
    no two objects of the same name."""
    names = sorted({m for f, t in files.items() if f.endswith(".c")
                    for m in _C_FUNCTION.findall(t)})
    hdr = f"{name}_pz_kernels.h"
    guard = f"{name.upper()}_PZ_KERNELS_H"
    out = {hdr: "\n".join([
        "/* Generated by kiloml -- do not edit. The personalization's own copies of the",
        " * portable kernels, renamed apart from the model's kernel set. */",
        f"#ifndef {guard}", f"#define {guard}",
        *[f"#define {k} {name}_pz_{k}" for k in names], "#endif", ""])}
    for f, t in files.items():
        if f.endswith(".c") and "#include" in t:
            at = t.index("#include")
            t = t[:at] + f'#include "{hdr}"\n' + t[at:]
        out[f"{name}_pz_{f}" if f.endswith(".c") and f.startswith("kml_") else f] = t
    return out


# ---------------------------------------------------------------- the gateway byte format

GATEWAY_MAGIC = b"KMLP"
GATEWAY_VERSION = 1
KIND_SAMPLES, KIND_HEAD = 1, 2
_GATEWAY_HEADER = "<4sBBHHH"   # magic, version, kind, units, depth, count (samples) / 0 (head)


def _frame(kind: int, units: int, depth: int, count: int, body: bytes) -> bytes:
    import struct
    import zlib

    head = struct.pack(_GATEWAY_HEADER, GATEWAY_MAGIC, GATEWAY_VERSION, kind, units, depth, count)
    return head + body + struct.pack("<I", zlib.crc32(head + body))


def _unframe(blob: bytes, kind: int, what: str) -> tuple[int, int, int, bytes]:
    import struct
    import zlib

    n = struct.calcsize(_GATEWAY_HEADER)
    if len(blob) < n + 4:
        raise KilomlError(f"{what}: {len(blob)} bytes, shorter than the header and checksum")
    magic, ver, k, units, depth, count = struct.unpack_from(_GATEWAY_HEADER, blob)
    if magic != GATEWAY_MAGIC:
        raise KilomlError(f"{what}: not a kiloml personalization message (magic {magic!r})")
    if ver != GATEWAY_VERSION:
        raise KilomlError(f"{what}: format version {ver}, this kiloml reads {GATEWAY_VERSION}")
    if k != kind:
        raise KilomlError(f"{what}: message kind {k}, expected {kind}")
    if struct.unpack_from("<I", blob, len(blob) - 4)[0] != zlib.crc32(blob[:-4]):
        raise KilomlError(f"{what}: checksum mismatch (corrupted in transit)")
    return units, depth, count, blob[n:-4]


def encode_samples(head_inputs: np.ndarray, labels: np.ndarray, units: int) -> bytes:
    """The update's input as the board sends it to a gateway (or a gateway to a board): the
    int8 head inputs and labels of the stored samples. Layout (little-endian): header
    ``"KMLP", version u8 = 1, kind u8 = 1, units u16, depth u16, count u16``; then per sample
    ``label u8`` and ``depth`` int8 values; then CRC-32 (zlib) of everything before, u32."""
    q = np.asarray(head_inputs, np.int8)
    y = np.asarray(labels).reshape(-1)
    if q.ndim != 2 or len(q) != len(y):
        raise KilomlError("encode_samples: (count, depth) head inputs and count labels")
    if len(y) and (y.min() < 0 or y.max() >= units or len(y) > 65535):
        raise KilomlError("encode_samples: labels must lie in 0..units-1, at most 65535 samples")
    body = b"".join(bytes([int(lab)]) + row.tobytes() for lab, row in zip(y, q))
    return _frame(KIND_SAMPLES, units, q.shape[1], len(y), body)


def decode_samples(blob: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """``encode_samples`` read back: (int8 head inputs (count, depth), labels, units);
    KilomlError on anything malformed."""
    units, depth, count, body = _unframe(bytes(blob), KIND_SAMPLES, "samples message")
    if len(body) != count * (depth + 1):
        raise KilomlError(f"samples message: {len(body)} bytes of samples, expected "
                          f"{count * (depth + 1)}")
    rows = np.frombuffer(body, np.uint8).reshape(count, depth + 1)
    labels = rows[:, 0].astype(np.int64)
    if count and labels.max() >= units:
        raise KilomlError(f"samples message: label {int(labels.max())} >= units {units}")
    return rows[:, 1:].copy().view(np.int8), labels, units


def encode_head(q: np.ndarray, ws: np.ndarray, qb: np.ndarray, mult: np.ndarray,
                shift: np.ndarray) -> bytes:
    """The update's output (the RAM slot) as a board sends it: header with kind 2 and count
    0, then ``units x depth`` int8 weights (row per unit), ``units`` int32 biases, int32
    multipliers, int32 shifts and float32 weight scales; CRC-32 last."""
    q = np.asarray(q, np.int8)
    units, depth = q.shape
    body = (q.tobytes() + np.asarray(qb, "<i4").tobytes() + np.asarray(mult, "<i4").tobytes()
            + np.asarray(shift, "<i4").tobytes() + np.asarray(ws, "<f4").tobytes())
    return _frame(KIND_HEAD, units, depth, 0, body)


def decode_head(blob: bytes):
    """``encode_head`` read back: (int8 weights, float32 scales, int32 bias, mult, shift)."""
    units, depth, _, body = _unframe(bytes(blob), KIND_HEAD, "head message")
    if len(body) != units * depth + 16 * units:
        raise KilomlError(f"head message: {len(body)} bytes, expected {units * depth + 16 * units}")
    q = np.frombuffer(body[:units * depth], np.int8).reshape(units, depth).copy()
    at = units * depth
    ints = np.frombuffer(body[at:at + 12 * units], "<i4").reshape(3, units).astype(np.int32)
    ws = np.frombuffer(body[at + 12 * units:], "<f4").astype(np.float32)
    return q, ws, ints[0], ints[1], ints[2]
