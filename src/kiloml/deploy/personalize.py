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
               prox_mu: float | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    xs = head_inputs_float(head, np.asarray(q).reshape(-1, head.depth))
    lr = F32(s.lr)
    U = head.units
    lo, hi = logit_range(head)
    for _ in range(int(s.epochs)):
        for x, lab in zip(xs, np.asarray(labels)):
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
            if prox_mu:
                dw, db = (mu * (w - w0)).astype(F32), (mu * (b - b0)).astype(F32)
            w = w - np.outer(g, x).astype(F32)
            b = b - g
            if prox_mu:
                w = w - dw
                b = b - db
    return w, b


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


def personalized_graph(head: Head, q: np.ndarray, ws: np.ndarray, qb: np.ndarray) -> Graph:
    """The lowered graph with the head's constants replaced: the model that an export of
    the personalized weights gives (the oracle of the RAM slot's inference)."""
    g = copy.deepcopy(head.graph)
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


def personalize(head: Head, model_inputs: np.ndarray, labels: np.ndarray, s: Settings):
    """The whole twin: backbone, SGD, requantization. Returns
    (int8 weights, float32 weight scales, int32 bias, mult, shift)."""
    feats = backbone_outputs(head, model_inputs)
    w, b = train_head(head, feats, labels, s)
    return requantize_head(head, w, b)


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
#include "{n}_personalize.h"

#include <stdint.h>
#include <string.h>

#include "kml_fully_connected.h"
#include "{n}_pbb.h"
{tail_include}
#define D {depth}u
#define U {units}u

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
    {n}_count = 0u;
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
    if ({n}_pbb_invoke(model_input, &{n}_store[{n}_count * D]) != 0) {{
        return -3;
    }}
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
            const int8_t *q = &{n}_store[k * D];
            const uint32_t label = {n}_store_labels[k];
            float m, tot, g;
            for (i = 0; i < D; ++i) {{
                x[i] = (float)((int32_t)q[i] - ({in_zp})) * {in_scale};
            }}
            for (u = 0; u < U; ++u) {{
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
                g = live[u] ? lr * p : 0.0f;
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
    return 0;
}}

int {n}_personalize_update(void)
{{
    return {n}_train({n}_factory_w, {n}_factory_b, {n}_factory_ws, {prox_mu});
}}

int {n}_personalize_update_from_slot(void)
{{
    return {n}_train({n}_slot_w, {n}_slot_b, {n}_slot_ws, {prox_mu});
}}

int {n}_personalize_update_prox(float prox_mu)
{{
    if (!(prox_mu >= 0.0f)) {{
        return -2;
    }}
    return {n}_train({n}_slot_w, {n}_slot_b, {n}_slot_ws, prox_mu);
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

static void {n}_header(uint8_t *p, uint8_t kind, uint32_t count)
{{
    p[0] = (uint8_t)'K';
    p[1] = (uint8_t)'M';
    p[2] = (uint8_t)'L';
    p[3] = (uint8_t)'P';
    p[4] = 1u;
    p[5] = kind;
    p[6] = (uint8_t)(U & 0xFFu);
    p[7] = (uint8_t)((U >> 8) & 0xFFu);
    p[8] = (uint8_t)(D & 0xFFu);
    p[9] = (uint8_t)((D >> 8) & 0xFFu);
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
    {n}_header(buf, 2u, 0u);
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
    if (cap < 16u + {n}_count * (D + 1u)) {{
        return 0u;
    }}
    {n}_header(buf, 1u, {n}_count);
    for (k = 0; k < {n}_count; ++k) {{
        buf[at++] = {n}_store_labels[k];
        for (i = 0; i < D; ++i) {{
            buf[at++] = (uint8_t){n}_store[k * D + i];
        }}
    }}
    {n}_put32(&buf[at], {n}_crc32(buf, at));
    return at + 4u;
}}

int {n}_personalize_invoke(const int8_t *model_input, int8_t *model_output)
{{
    if ({n}_pbb_invoke(model_input, {n}_head_in) != 0) {{
        return -1;
    }}
    kml_fully_connected_s8(&{n}_head_params, {n}_head_in, {n}_slot_w, {n}_slot_b, {n}_slot_mult,
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
"""

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
    (``<name>_pbb``) and tail (``<name>_ptail``) models and the kernels they use."""
    n, U, D = name, head.units, head.depth
    bb = generate_c(head.backbone, prefix=f"{n}_pbb", command=command, runtime=runtime)
    files = dict(bb.files)
    arena = bb.plan.arena_bytes
    tail = head.tail
    if tail is not None:
        tr = generate_c(tail, prefix=f"{n}_ptail", command=command, runtime=runtime)
        for k, v in tr.files.items():
            if k in files and files[k] != v:
                raise KilomlError(f"personalize: two different runtime files named {k}")
            files[k] = v
        arena += tr.plan.arena_bytes
        tail_include = f'#include "{n}_ptail.h"\n'
        tail_call = f"    return {n}_ptail_invoke({n}_head_out, model_output);\n"
    else:
        tail_include = ""
        tail_call = f"    memcpy(model_output, {n}_head_out, U);\n    return 0;\n"
    fc = generate_c(Graph(head.graph.tensors, [head.graph.nodes[head.node]],
                          [head.graph.nodes[head.node].inputs[0]],
                          list(head.graph.nodes[head.node].outputs)),
                    prefix=f"{n}_phead", command=command, runtime=runtime)
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
    horner = "".join(f"    p = p * r + {_f(c)};\n" for c in EXP_POLY[1:])
    front = f"/* Generated by kiloml -- do not edit.\n * command: {command}\n */\n"
    working = 4 * (U * D + 2 * U) + D + U
    store = s.max_samples * D
    text = C_SOURCE.format(
        front=front, n=n, depth=D, units=U, tail_include=tail_include, factory=factory,
        slot=slot, in_off=-head.in_zp, out_zp=head.out_zp, act_min=head.act_min,
        act_max=head.act_max, store=store, max_n=s.max_samples, wsize=U * D,
        exp_min=_f(EXP_MIN), log2e=_f(LOG2E), ln2_hi=_f(LN2_HI), ln2_lo=_f(LN2_LO),
        c0=_f(EXP_POLY[0]), horner=horner, lr=_f(s.lr), epochs=int(s.epochs),
        in_scale=_f(head.in_scale), in_zp=head.in_zp, out_scale=_f(head.out_scale),
        tail_call=tail_call, lo=_f(logit_range(head)[0]), hi=_f(logit_range(head)[1]),
        M=n.upper(), prox_mu=_f(s.prox_mu))
    files[f"{n}_personalize.c"] = text
    files[f"{n}_personalize.h"] = C_HEADER.format(
        front=front, n=n, M=n.upper(), units=U, depth=D, max_n=s.max_samples, working=working,
        store_bytes=store + s.max_samples, head_msg=12 + U * D + 16 * U + 4,
        samples_msg=16 + s.max_samples * (D + 1), prox_mu_setting=float(F32(s.prox_mu)))
    slot_bytes = U * D + 4 * 4 * U
    return Bundle(dict(sorted(files.items())), working, store + s.max_samples, slot_bytes,
                  arena)


def _factory_mult(head: Head) -> tuple[np.ndarray, np.ndarray]:
    from kiloml.ir.ops import REGISTRY

    p = REGISTRY["FULLY_CONNECTED"].prepare(head.graph, head.graph.nodes[head.node])
    return p.mult.astype(np.int32), p.shift.astype(np.int32)


# ---------------------------------------------------------------- running the C

HOST_HARNESS = """/* kiloml personalization check harness (host): not part of the package */
#include <stdio.h>
#include <stdlib.h>

#include "{n}_personalize.h"

static int8_t in[{insize}];
static int8_t out[{units}];

int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    long n, m, i;
    int32_t label;
    if (argc != 5) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    n = atol(argv[3]);
    m = atol(argv[4]);
    {n}_personalize_reset();
    for (i = 0; i < n; ++i) {{
        if (fread(in, 1, sizeof in, fi) != sizeof in) {{ return 4; }}
        if (fread(&label, sizeof label, 1, fi) != 1) {{ return 4; }}
        if ({n}_personalize_add(in, label) != 0) {{ return 5; }}
    }}
    if ({n}_personalize_update() != 0) {{ return 6; }}
    fwrite({n}_personalize_weights(), 1, {wsize}, fo);
    fwrite({n}_personalize_bias(), sizeof(int32_t), {units}, fo);
    for (i = 0; i < m; ++i) {{
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

int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    long n, i;
    int32_t label, rc;
    uint32_t len;
    if (argc != 4) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    n = atol(argv[3]);
    {n}_personalize_reset();
    for (i = 0; i < n; ++i) {{
        if (fread(in, 1, sizeof in, fi) != sizeof in) {{ return 4; }}
        if (fread(&label, sizeof label, 1, fi) != 1) {{ return 4; }}
        if ({n}_personalize_add(in, label) != 0) {{ return 5; }}
    }}
    if ({n}_personalize_update() != 0) {{ return 6; }}
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
        exe = _host_exe(bundle, HOST_HARNESS.format(n=name, insize=size, units=U, wsize=U * D),
                        d, sanitize)
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
    o = np.frombuffer(out[U * D + 4 * U:], np.int8).reshape(len(ev), U)
    return UpdateResult(w.copy(), b.copy(), o.copy())


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
        res = emulate(image, core, fpu=fpu, read_back={
            "kml_p_status": 4, f"{name}_slot_w": U * D, f"{name}_slot_b": 4 * U})
    if np.frombuffer(res.memory["kml_p_status"], np.int32)[0] != 0:
        raise KilomlError("personalize: the update failed in the emulator")
    return UpdateResult(np.frombuffer(res.memory[f"{name}_slot_w"], np.int8).reshape(U, D),
                        np.frombuffer(res.memory[f"{name}_slot_b"], np.int32), None,
                        int(res.stack_bytes), int(res.instructions), int(round(res.cycles)))


def package_files(p) -> tuple[dict[str, str], dict]:
    """The C package's ``personalize/`` folder for a resolved deploy Pipeline ``p`` (the
    portable kernels; compile it with ``-ffp-contract=off``) and its memory report: the
    working memory of the update against the budget of twice the model's arena."""
    head = find_head(p.spec.graph)
    s = p.spec.personalize
    b = personalize_files(head, p.name, s, command=p.command)
    budget = 2 * int(p.arena_bytes)
    report = {"head_units": head.units, "head_depth": head.depth, "epochs": s.epochs,
              "lr": s.lr, "max_samples": s.max_samples,
              "working_bytes": b.working_bytes, "store_bytes": b.store_bytes,
              "slot_bytes": b.slot_bytes, "model_arena_bytes": int(p.arena_bytes),
              "budget_bytes": budget, "working_within_budget": b.working_bytes <= budget,
              "compile_flags": FP_FLAGS,
              "sources": sorted("personalize/" + f for f in b.files if f.endswith(".c"))}
    return {"personalize/" + k: v for k, v in b.files.items()}, report


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
