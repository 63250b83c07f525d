"""The armv6m kernel backend (Cortex-M0+: no DSP extension, single-cycle 32-bit multiply).

CONV_2D (any geometry) and CONV_2D_ADD, FULLY_CONNECTED (as a 1x1 convolution over a 1 x rows image, the same
memory layout) and DEPTHWISE_CONV_2D (depth multiplier 1, channels a multiple of four) call
the kernels of ``codegen/runtime/armv6m/kml_conv_m0.c`` with a packed stream this module
builds (layout in kml_conv_m0.h); every other node, and depthwise layers those kernels do not
take, run the portable kernels (``PortableBackend``). Layers whose accumulators the weights
bound by |acc| < 2^21 take the bounded requantization (``bounded``); conv / FC layers fed by
a fused ReLU skip zero column values (``sparse_input``). Bounded conv / FC layers with at
least 16 outputs whose saving pays for its flash under the preference take the packed weight
pairs (``packed_stream``: two bytes per weight, one MULS per two MACs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kiloml.codegen.portable import PortableBackend
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.conv2d_add import epilogue_fields
from kiloml.ir.ops.conv_common import conv_struct_fields

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.codegen.c import EmitContext

CONV = "kml_conv2d_m0_s8"
CONV_ADD = "kml_conv2d_add_m0_s8"
DEPTHWISE = "kml_depthwise_conv2d_m0_s8"


def _words(b: np.ndarray) -> np.ndarray:
    """(n, 4) bytes -> n little-endian int32 words."""
    return np.ascontiguousarray(b.astype(np.uint8)).view("<u4").reshape(-1).view("<i4").astype(np.int64)


def _per_channel(v, n: int) -> np.ndarray:
    v = np.asarray(v, np.int64).reshape(-1)
    return np.repeat(v, n) if v.size == 1 else v


def records(mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per channel the kernels' requantization record [mult, s, rnd], flattened: where the
    one-shift form applies to every channel of the layer (multiplier >= 0, shift -31..0)
    s = -shift and rnd = 2^s / 2 rounded down, else s = shift and rnd = -1 (kml_mbqm's
    general form); the kernels look at one channel per group."""
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    fast = np.full(mult.shape, bool(np.all((mult >= 0) & (shift <= 0) & (shift >= -31))))
    s = np.where(fast, -shift, shift)
    rnd = np.where(fast, (np.int64(1) << np.clip(-shift, 0, 31)) >> 1, -1)
    return np.stack([mult, s, rnd], axis=1).reshape(-1)


CHAIN_BITS = 21   # the bounded requantization is exact for |accumulator| < 2^21
CHAIN_MAX_S = 22  # and right shifts up to 22 (its nudge stays below 2^31)
RQB_WORDS = 4     # words per channel of a bounded-requantization record


def acc_range(rows: np.ndarray, bias, in_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel the least and the greatest accumulator ``bias + sum_k w_k (x_k +
    in_offset)`` any int8 input can give (padding contributes 0, inside the range of x +
    offset): both are reached by an input at -128 / 127 chosen by the weights' signs.
    ``rows`` [out_c, K] int8 weights."""
    rows = np.asarray(rows, np.int64)
    b = np.zeros(rows.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    lo, hi = -128 + int(in_offset), 127 + int(in_offset)
    return (b + np.minimum(rows * lo, rows * hi).sum(axis=1),
            b + np.maximum(rows * lo, rows * hi).sum(axis=1))


def chain_record(mult: int, s: int) -> list[int]:
    """The bounded-requantization record of a multiplier M > 0 and right shift s (0..22):
    M = m2 2^22 + m1 2^11 + m0 with m0 >= 1 (where M's low 11 bits are 0, one unit is
    borrowed from m1 or m2, so m0 = 2048: the negative path subtracts 1 from u m0), and
    W = c2 + sh: the nudge c2 = (2^30 + rnd 2^31) / 2^22 with rnd = 2^s / 2 (a multiple of
    2^8) plus the final shift sh = 9 + s in the low byte (layout in kml_conv_m0.c)."""
    m0, m1, m2 = mult & 2047, (mult >> 11) & 2047, mult >> 22
    if m0 == 0:
        if m1 > 0:
            m1, m0 = m1 - 1, 2048
        else:
            m2, m1, m0 = m2 - 1, 2047, 2048
    rnd = (1 << s) >> 1
    return [m0, m1, m2, (1 << 8) + (rnd << 9) + 9 + s]


def bounded(rows: np.ndarray, bias, mult, shift, in_offset: int, out_offset: int,
            act_min: int, act_max: int):
    """The bounded requantization of a layer, or None where it does not apply.

    Every channel whose output is the same for every input (its accumulator range maps to
    one value: all weights 0, or a multiplier too small to move it; channels without a left
    shift, where the requantization is monotone) becomes a constant channel: weights 0, bias 2 d, record of M = 2^30, s = 0, which give out_offset + d, the
    constant. Every other channel needs M > 0, a right shift s <= 22 and |accumulator| <
    2^21 over acc_range (checked here, at compile time). Returns (records [out_c x 4], rows,
    bias) with the constant channels rewritten, rows and bias to build the stream from."""
    from kiloml.ir.quant import multiply_by_quantized_multiplier

    rows = np.asarray(rows, np.int64).copy()
    co = rows.shape[0]
    bias = np.zeros(co, np.int64) if bias is None else np.asarray(bias, np.int64).copy()
    mult, shift = _per_channel(mult, co), _per_channel(shift, co)
    amin, amax = acc_range(rows, bias, in_offset)
    out = [np.clip(multiply_by_quantized_multiplier(a, mult, shift) + out_offset,
                   act_min, act_max) for a in (amin, amax)]
    recs = []
    for c in range(co):
        # a constant channel (the requantization is monotone in the accumulator where it
        # does not shift left: a left shift wraps in int32, so the ends would not tell)
        if (shift[c] <= 0 or amin[c] == amax[c]) and out[0][c] == out[1][c]:
            d = int(out[0][c]) - int(out_offset)
            rows[c] = 0
            bias[c] = 2 * d
            recs += chain_record(1 << 30, 0)
            continue
        if not (mult[c] > 0 and -CHAIN_MAX_S <= shift[c] <= 0
                and max(amax[c], -amin[c]) < (1 << CHAIN_BITS)):
            return None
        recs += chain_record(int(mult[c]), int(-shift[c]))
    return np.asarray(recs, np.int64), rows, bias


def conv_stream(rows: np.ndarray, bias, mult, shift, with_records: bool = True) -> np.ndarray:
    """kml_conv2d_m0_s8's stream for int8 weights ``rows`` [out_c, K] (window order): groups
    of eight output channels while more than four remain, then one of four; without the
    per-group requantization records where the layer takes the bounded requantization
    (``with_records`` False)."""
    co, k = rows.shape
    widths = []
    while sum(widths) < co:
        widths.append(8 if co - sum(widths) > 4 else 4)
    total, k4 = sum(widths), (k + 3) // 4 * 4          # the window padded to 4: weights 0
    w = np.zeros((total, k4), np.int64)
    w[:co, :k] = rows.astype(np.int64)
    bias = np.zeros(co, np.int64) if bias is None else np.asarray(bias, np.int64)
    mult, shift = _per_channel(mult, co), _per_channel(shift, co)
    out, at = [], 0
    for g in widths:
        sl = slice(at, at + g)
        pad = lambda v: np.concatenate([v[sl], np.zeros(g - v[sl].size, np.int64)])  # noqa: E731
        out += [pad(bias)] + ([records(pad(mult), pad(shift))] if with_records else []) \
            + [_words((w[sl] + 128).T)]
        at += g
    return np.concatenate(out)


PACKED_MIN_CHANNELS = 16   # the packed weight pairs for layers with at least 16 outputs
# Cycles the packed weight pairs save per MAC (Cortex-M0+ cycle model, KWS): dense loop
# 27 instead of ~35 cycles per column value and group of eight channels; zero skipping 31
# instead of 39 per non-zero value (about half the values of a ReLU output: 0.5 per MAC),
# plus one call per pixel. Taken where the saving per extra flash byte (one per weight)
# reaches the preference's rate (armv7em_choice.RATES: speed 0, balanced 48, size never).
PACKED_SAVED = {"dense": 1.0, "sparse": 0.5}


def packed_stream(rows: np.ndarray, bias) -> np.ndarray:
    """m0_dot8p's stream (a bounded layer whose column values are 0..255: fed by a ReLU, or
    dense with x + 128 and ``packed_bias``) for int8 weights ``rows`` [out_c, K]: per group of eight channels (out_c padded to 8, weights 0)
    eight init words {A4, B5, A6, B7, B1, B3, A0, A2} (Bj = bias[j], Aj = bias[j] + bias[j+1]
    2^16 modulo 2^32), then per window position (K padded to 4) four words, the unsigned
    weights w + 128 of channels (0, 1), (2, 3), (4, 5), (6, 7) as 16-bit lanes (layout in
    kml_conv_m0.c)."""
    co, k = rows.shape
    total, k4 = (co + 7) // 8 * 8, (k + 3) // 4 * 4
    w = np.zeros((total, k4), np.int64)
    w[:co, :k] = rows.astype(np.int64)
    b = np.zeros(total, np.int64)
    if bias is not None:
        b[:co] = np.asarray(bias, np.int64)
    u = w + 128
    out = []
    for g in range(total // 8):
        bg = b[8 * g: 8 * g + 8]
        a = [(int(bg[j]) + (int(bg[j + 1]) << 16)) & 0xFFFFFFFF for j in range(0, 8, 2)]
        init = [a[2], bg[5], a[3], bg[7], bg[1], bg[3], a[0], a[1]]
        init = [((int(v) + (1 << 31)) % (1 << 32)) - (1 << 31) for v in init]
        ug = u[8 * g: 8 * g + 8]                      # [8, k4]
        lanes = ug[0::2] + (ug[1::2] << 16)           # [4, k4]: pairs (0,1) .. (6,7)
        lanes = ((lanes.T.reshape(-1) + (1 << 31)) % (1 << 32)) - (1 << 31)
        out += [np.asarray(init, np.int64), lanes.astype(np.int64)]
    return np.concatenate(out)


def packed_bias(rows: np.ndarray, bias, in_offset: int) -> np.ndarray:
    """The bias of a dense layer on the packed weight pairs, whose column values are x + 128
    (padding 128 - in_offset, i.e. x = the zero point): bias - (128 - in_offset) sum_k w_k,
    so that the accumulator is unchanged."""
    rows = np.asarray(rows, np.int64)
    b = np.zeros(rows.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    return b - (128 - int(in_offset)) * rows.sum(axis=1)


def input_floor(g: Graph, node: Node) -> int | None:
    """The least value of the node's input: its producer's clamp minimum (None: unknown)."""
    t = node.inputs[0]
    for n in g.nodes:
        if t in n.outputs:
            try:
                p = REGISTRY[n.op].prepare(g, n)
            except Exception:   # noqa: BLE001 - a producer without prepared params
                return None
            p = p[-1] if isinstance(p, tuple) else p
            return getattr(p, "act_min", None)
    return None


def depthwise_stream(filt: np.ndarray, bias, mult, shift, in_offset: int,
                     with_records: bool = True) -> np.ndarray:
    """kml_depthwise_conv2d_m0_s8's stream for a [1, k_h, k_w, C] filter (C % 4 == 0); without
    the per-group requantization records for the bounded requantization (``with_records``
    False)."""
    c = filt.shape[3]
    taps = filt.reshape(-1, c).astype(np.int64)           # [k_h * k_w, C]
    bias = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    folded = bias + int(in_offset) * taps.sum(axis=0)
    mult, shift = _per_channel(mult, c), _per_channel(shift, c)
    out = []
    for gi in range(c // 4):
        sl = slice(4 * gi, 4 * gi + 4)
        out += [folded[sl]] + ([records(mult[sl], shift[sl])] if with_records else []) \
            + [taps[:, sl].reshape(-1)]
    return np.concatenate(out)


def depthwise_m0(g: Graph, node: Node, p) -> bool:
    """The layer kml_depthwise_conv2d_m0_s8 takes: depth multiplier 1, channels % 4 == 0."""
    return p.out_c == p.in_c and p.in_c % 4 == 0


def sparse_input(g: Graph, node: Node) -> bool:
    """Whether the node's input is the output of a fused ReLU or ReLU6 (whose clamp starts at
    the zero point, so many of its values are x + offset = 0): the conv kernel then skips a
    pixel's zero column values (the sparse pairs, ``m0_pairs``). A static choice: other
    layers keep the dense loop, a little faster where few values are 0."""
    t = node.inputs[0]
    for n in g.nodes:
        if t in n.outputs:
            a = n.attrs
            act = getattr(getattr(a, "add", a), "activation", None)
            return act in ("RELU", "RELU6")
    return False


def _bias(g: Graph, node: Node):
    return g.tensors[node.inputs[2]].data if len(node.inputs) > 2 and node.inputs[2] >= 0 else None


class Armv6mBackend(PortableBackend):
    name = "armv6m"
    directory = "armv6m"
    # layers where every channel's accumulator bound allows it take the bounded
    # requantization (False: every layer takes the per-group records; tests compare both)
    bounded_requant = True
    # layers whose input is a ReLU's output skip zero column values: "skip"; "off": the
    # dense loop everywhere; "all": their cost for a column without zeros, whatever the input
    # (the worst case of "skip", for benchmarks/profile_m0_sparse.py)
    sparse_columns = "skip"
    # bounded conv / FC layers with >= 16 outputs (fed by a ReLU, or dense) take the packed
    # weight pairs where --prefer's rate allows (two bytes per weight, m0_dot8p); False: the
    # byte stream (tests compare)
    packed_pairs = True

    def __init__(self, prefer: str = "balanced") -> None:
        # prefer "size": neither of the two speed-for-memory choices (the bounded records'
        # extra flash per channel, the zero skipping's column pairs in the arena)
        self.prefer = prefer

    def scratch_bytes(self, g: Graph, node: Node) -> int:
        # bounded requantization: one output pixel's accumulators (out_c rounded up to 8)
        acc = 0
        if node.op in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D") \
                and self._bounded(g, node) is not None:
            acc = 4 * ((int(g.tensors[node.outputs[0]].shape[-1]) + 7) // 8 * 8)
        if node.op in ("CONV_2D", "CONV_2D_ADD", "FULLY_CONNECTED"):
            w = g.tensors[node.inputs[1]]
            window = 4 * ((int(np.prod(w.shape[1:])) + 3) // 4 * 4)   # padded to 4
            # the sparse column: a pair of words per window value (+ the ones of "all"), and
            # the packed pairs' end marker
            pairs = (2 + (self.sparse_columns == "all")) * window + 8 \
                if self._sparse(g, node) else 0
            # CONV_2D_ADD: two 256-entry tables (the rescaled conv output and residual)
            return window + (2 * 256 * 4 if node.op == "CONV_2D_ADD" else acc) + pairs
        if node.op == "DEPTHWISE_CONV_2D":   # a border pixel's zero-point padded window
            _, kh, kw, co = g.tensors[node.inputs[1]].shape
            if co == g.tensors[node.inputs[0]].shape[-1] and co % 4 == 0:
                return (int(kh * kw * co) + 3) // 4 * 4 + acc
        return 0

    def _sparse(self, g: Graph, node: Node) -> bool:
        return self.sparse_columns != "off" and self.prefer != "size" \
            and sparse_input(g, node)

    def _mode(self, g: Graph, node: Node, ctx: "EmitContext", packed: bool = False) -> str:
        """The conv kernels' ``shift`` argument: {1} (skip zero column values), {2} (the cost
        of a column without zeros: measurements), {3} / {4} the same with the packed weight
        pairs, {5} the packed weight pairs on a dense layer, or 0 (dense)."""
        if not self._sparse(g, node):
            return ctx.array("mode", "int32_t", np.array([5])) if packed else "0"
        v = (2 if self.sparse_columns == "all" else 1) + (2 if packed else 0)
        return ctx.array("mode", "int32_t", np.array([v]))

    def _packed(self, g: Graph, node: Node, params: Any, rq) -> bool:
        """Whether a bounded CONV_2D / FULLY_CONNECTED layer takes the packed weight pairs
        (two bytes per weight): at least PACKED_MIN_CHANNELS outputs, column values in
        0..255 (zero skipping: its input's clamp starts at or above the zero point; dense:
        x + 128), and PACKED_SAVED x MACs >= the preference's rate x the extra bytes."""
        from kiloml.codegen.armv7em_choice import RATES

        if rq is None or not self.packed_pairs or self.prefer == "size":
            return False
        fc = node.op == "FULLY_CONNECTED"
        co = params.units if fc else params.out_c
        if co < PACKED_MIN_CHANNELS:
            return False
        sparse = self._sparse(g, node)
        if sparse:
            lo = input_floor(g, node)
            if lo is None or lo + params.in_offset < 0 or 127 + params.in_offset > 255:
                return False
        k = int(np.prod(g.tensors[node.inputs[1]].shape[1:]))
        pixels = params.batches if fc else params.batches * params.out_h * params.out_w
        extra = (co + 7) // 8 * 8 * ((k + 3) // 4 * 4)
        saved = PACKED_SAVED["sparse" if sparse else "dense"] * pixels * co * k
        return saved >= RATES.get(self.prefer, RATES["balanced"]) * extra

    def _pbias(self, g: Graph, node: Node, rows, bias, params):
        """The packed stream's bias: as is with zero skipping, else packed_bias."""
        return bias if self._sparse(g, node) else packed_bias(rows, bias, params.in_offset)

    def _bounded(self, g: Graph, node: Node, params: Any = None):
        """``bounded`` for a CONV_2D, FULLY_CONNECTED or (taken) DEPTHWISE_CONV_2D node."""
        p = REGISTRY[node.op].prepare(g, node) if params is None else params
        w = np.asarray(g.tensors[node.inputs[1]].data)
        if node.op == "DEPTHWISE_CONV_2D":
            if not depthwise_m0(g, node, p):
                return None
            rows = w.reshape(-1, w.shape[3]).T
        else:
            rows = w.reshape(w.shape[0], -1)
        if not self.bounded_requant or self.prefer == "size":
            return None
        return bounded(rows, _bias(g, node), p.mult, p.shift, p.in_offset, p.out_offset,
                       p.act_min, p.act_max)

    def emit(self, g: Graph, node: Node, params: Any, ctx: "EmitContext") -> list[str]:
        if node.op == "CONV_2D_ADD":
            cp, ap = params
            x, w, _, res = node.inputs
            wd = g.tensors[w].data
            ctx.use_kernel("conv_m0")
            st = ctx.struct("kml_conv_params", "p", conv_struct_fields(cp))
            ep = ctx.struct("kml_add_epilogue", "add", epilogue_fields(node, ap))
            packed = ctx.array("packed", "int32_t", conv_stream(
                wd.reshape(wd.shape[0], -1), _bias(g, node), cp.mult, cp.shift))
            mode = self._mode(g, node, ctx)
            return [ctx.call(CONV_ADD, f"&{st}", ctx.ptr(x), "0", "0", "0", mode, f"&{ep}",
                             ctx.ptr(res), ctx.ptr(node.outputs[0]), packed,
                             ctx.scratch("int32_t"))]
        rq = self._bounded(g, node, params) if node.op in (
            "CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D") else None
        bias = _bias(g, node) if rq is None else rq[2]
        pk = node.op in ("CONV_2D", "FULLY_CONNECTED") and self._packed(g, node, params, rq)
        if node.op == "CONV_2D":
            w = g.tensors[node.inputs[1]].data
            rows = w.reshape(w.shape[0], -1) if rq is None else rq[1]
            stream = packed_stream(rows, self._pbias(g, node, rows, bias, params)) if pk \
                else conv_stream(rows, bias, params.mult, params.shift, rq is None)
            fields = conv_struct_fields(params)
        elif node.op == "FULLY_CONNECTED":
            p = params
            rows = g.tensors[node.inputs[1]].data if rq is None else rq[1]
            stream = packed_stream(rows, self._pbias(g, node, rows, bias, p)) if pk \
                else conv_stream(rows, bias, p.mult, p.shift, rq is None)
            fields = {"batches": 1, "in_h": 1, "in_w": p.batches, "in_c": p.depth, "out_h": 1,
                      "out_w": p.batches, "out_c": p.units, "k_h": 1, "k_w": 1, "stride_h": 1,
                      "stride_w": 1, "dil_h": 1, "dil_w": 1, "pad_top": 0, "pad_left": 0,
                      "in_offset": p.in_offset, "out_offset": p.out_offset,
                      "act_min": p.act_min, "act_max": p.act_max}
        elif node.op == "DEPTHWISE_CONV_2D" and depthwise_m0(g, node, params):
            filt = g.tensors[node.inputs[1]].data
            if rq is not None:
                filt = rq[1].T.reshape(filt.shape)
            stream = depthwise_stream(filt, bias, params.mult, params.shift, params.in_offset,
                                      rq is None)
            fields = conv_struct_fields(params)
        else:
            return super().emit(g, node, params, ctx)
        fn = DEPTHWISE if node.op == "DEPTHWISE_CONV_2D" else CONV
        ctx.use_kernel("conv_m0")
        st = ctx.struct("kml_conv_params", "p", fields)
        packed = ctx.array("packed", "int32_t", stream)
        # the bounded requantization's records travel in ``mult`` (0: the stream's records)
        recs = "0" if rq is None else ctx.array("rq", "int32_t", rq[0])
        mode = self._mode(g, node, ctx, pk) if fn == CONV else "0"
        return [ctx.call(fn, f"&{st}", ctx.ptr(node.inputs[0]), "0", "0", recs, mode,
                         ctx.ptr(node.outputs[0]), packed, ctx.scratch("int32_t"))]
