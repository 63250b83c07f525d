"""Data the armv7em kernels (Cortex-M4/M7/M33 with the DSP extension) take precomputed.

The armv7em backend (``armv7em_backend.py``) calls these, and decides with them which entry
point a layer takes; the portable kernels get 0 in the same argument slots. Layouts are
described in ``runtime/armv7em/kml_arm.h``:

* ``matrix_stream`` (CONV_2D, CONV_2D_ADD, FULLY_CONNECTED): biases, int8 weights packed four
  per int32 word (``pack_rows``: natural order, rows zero padded to a multiple of eight,
  channels in interleaved pairs), multipliers and shifts, in the order the kernel reads them.
  Biases and weights are the same bytes as the original tensors (plus padding), which are then
  not emitted, so flash grows only by the multipliers and shifts. The lean form
  (``kml_conv2d_1x1_s8``, which ``_conv_1x1_fits`` layers can take; ``kml_conv2d_rgb_s8``,
  ``conv_rgb``, rows padded to four) adds each pair's two precomputed ``kml_rq_k`` words (8
  bytes per channel pair) and, for the 1x1 kernel, doubles the biases; its ``extended`` form
  stores the weights as int16. Whether a layer takes these kernels and layouts is a
  flash-for-speed choice: ``armv7em_choice``.
* ``fc_stream`` (FULLY_CONNECTED in models without convolutions, kml_fully_connected_s8):
  groups of four units, the input offset folded into the biases, int8 weights as unit pairs
  (``fc_pair_words``) interleaved per group of four inputs, then the group's multipliers and
  shifts (5 bytes per unit over the int8 weights and biases, plus padding to 4 units and 8
  inputs; none in a uniform stream, kml_fully_connected_u_s8); ``extended`` (--prefer speed,
  kml_fully_connected_x_s8): the weights as int16.
* ``armv7em_dw``: the depthwise kernels' records (18 bytes per channel; 40 for the _g6 entries).
* ``fast_params``: per-channel (bias, multiplier, right shift) of the exact SMMLAR
  requantization (``kml_rq`` in kml_arm.h); channels it cannot take (left shift, accumulator
  that may reach 2^30, huge right shift whose output is not constant) use TFLite's path.
"""

from __future__ import annotations

import numpy as np

# kml_rq_k computes ((2 * out_offset + 1) << rsh) >> 1 in 32 bits: |2 * offset + 1| <= 255
MAX_RSHIFT = 22
ACC_LIMIT = 1 << 30  # the kernels double the accumulator before SMMLAR


def words(b: np.ndarray) -> np.ndarray:
    """int8 bytes (length a multiple of 4) -> little-endian int32 words."""
    return np.ascontiguousarray(b.astype(np.int8)).view("<i4").astype(np.int64)


def pack_rows(w: np.ndarray, multiple: int = 8) -> np.ndarray:
    """[channels, K] int8 -> int32 words: per group of four values, channel pairs interleaved;
    rows zero padded to a multiple of ``multiple`` (8, or 4 for kml_conv2d_rgb_s8)."""
    oc, k = w.shape
    k4 = (k + multiple - 1) // multiple * multiple
    pad = np.zeros((oc, k4), dtype=np.int8)
    pad[:, :k] = w
    g = pad.reshape(oc, k4 // 4, 4)
    out = []
    pairs = oc // 2 * 2
    if pairs:
        out.append(g[:pairs].reshape(pairs // 2, 2, k4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1))
    if oc % 2:
        out.append(g[-1].reshape(-1))
    return words(np.concatenate(out))


def conv_rows(w: np.ndarray) -> np.ndarray:
    """[O, KH, KW, I] filter -> [O, K] rows in the order the convolution kernel's columns take
    (kml_conv.c, col_window): when a window row (KW * I bytes) is not a whole number of groups
    of four, the first 4 * floor(KW * I / 4) bytes of every row, row after row, then the
    remaining bytes of every row; otherwise the natural order."""
    o, kh = w.shape[0], w.shape[1]
    rows = w.reshape(o, kh, -1)
    whole = rows.shape[2] // 4 * 4
    return np.concatenate([rows[:, :, :whole].reshape(o, -1), rows[:, :, whole:].reshape(o, -1)],
                          axis=1)


def input_magnitude(in_offset: int) -> int:
    """Largest |x + in_offset| over int8 x."""
    return max(abs(-128 + in_offset), abs(127 + in_offset))


def acc_bound(abs_weight_sums: np.ndarray, bias: np.ndarray | None, in_offset: int) -> np.ndarray:
    """Per-channel bound of |accumulator| (bias included)."""
    b = np.zeros(abs_weight_sums.shape, np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return abs_weight_sums.astype(np.int64) * input_magnitude(in_offset) + b


def fast_channels(mult: np.ndarray, shift: np.ndarray,
                  bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: (multiplier, right shift, ok) for ``kml_rq``. ``ok`` is False where the
    channel needs TFLite's general path (left shift, accumulator that may reach 2^30, huge
    right shift whose output is not a constant); the other two are then meaningless."""
    mult = np.asarray(mult, np.int64).copy()
    rsh = -np.asarray(shift, np.int64)
    bound = np.asarray(bound, np.int64)
    ok = bound < ACC_LIMIT
    for c in range(mult.size):
        m, r = int(mult[c]), int(rsh[c])
        if m == 0:
            mult[c], rsh[c] = 0, 1  # output is the offset whatever the shift
        elif r < 1:
            ok[c] = False
        elif r > MAX_RSHIFT:
            # |srdhm(acc, m)| <= (bound*m + 2^30) >> 31 rounds to 0 below half of 2^r
            if (int(bound[c]) * m + (1 << 30)) >> 31 <= (1 << (r - 1)) - 1:
                mult[c], rsh[c] = 0, 1
            else:
                ok[c] = False
    return mult, rsh, ok


def fast_params(mult: np.ndarray, shift: np.ndarray, wsum: np.ndarray, bias: np.ndarray | None,
                in_offset: int, out_offset: int, act_min: int, act_max: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per channel (bias, multiplier, right shift, ok) for ``kml_rq`` (see ``fast_channels``;
    ``wsum``: sum of |weights| per channel). A channel whose weights are all 0 has a constant
    output V: it becomes bias 4 (V - out_offset), multiplier 2^30, shift 1, which kml_rq maps
    to V exactly (2 (V - out_offset) after the multiplier, rounding-halved by the shift)."""
    from kiloml.ir.quant import multiply_by_quantized_multiplier

    b = np.zeros(np.asarray(wsum).shape, np.int64) if bias is None else bias.astype(np.int64)
    m, r, ok = fast_channels(mult, shift, acc_bound(wsum, bias, in_offset))
    b = b.copy()
    for c in np.nonzero(np.asarray(wsum) == 0)[0]:
        v = int(multiply_by_quantized_multiplier(np.array([b[c]]), int(mult[c]), int(shift[c]))[0])
        v = min(max(v + out_offset, act_min), act_max)
        b[c], m[c], r[c], ok[c] = 4 * (v - out_offset), 1 << 30, 1, True
    return b, m, r, ok


def _byte(v: int) -> int:
    return int(v) & 0xFF


def _signed32(v: int) -> int:
    """A 32-bit pattern as the int32 C initializer value."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


GENERIC_PAIR = 1 << 16


def rq_k(out_offset: int, rshift: int) -> int:
    """kml_rq_k (kml_arm.h): ((2 * out_offset + 1) << rshift) >> 1 in 32 bits."""
    return _signed32((2 * out_offset + 1) << rshift) >> 1


def matrix_stream(rows: np.ndarray, bias: np.ndarray | None, mult: np.ndarray,
                  shift: np.ndarray, in_offset: int, out_offset: int, act_min: int,
                  act_max: int, lean: bool = False, multiple: int = 8,
                  doubled: bool = True, extended: bool = False) -> np.ndarray:
    """The ``packed`` argument of the matrix kernels (CONV_2D, FULLY_CONNECTED) as int32 words.

    Word 0 is 1 when some pair is generic (below), else 0. Then per pair of output
    channels: bias[2i], bias[2i+1], the pair's interleaved weight words
    (``pack_rows``), mult[2i], mult[2i+1] and a word with two shift bytes (2i in bits 0-7,
    2i+1 in bits 8-15). When both channels take the fast requantization (``fast_params``)
    the bytes are right shifts for ``kml_rq``; otherwise bit 16 (``GENERIC_PAIR``) is set and
    they are TFLite's shifts. An odd last channel: bias, its weight words, mult, shift word
    (same encoding). The kernels saturate to int8 and apply [act_min, act_max] afterwards.

    ``lean`` (kml_conv2d_1x1_s8, kml_conv2d_rgb_s8; every pair fast, even channel count):
    each pair's two kml_rq_k values (k0, k1) come between the multipliers and the shift word,
    and with ``doubled`` the biases are doubled (kml_conv2d_1x1_s8's columns hold
    2 (x + in_offset)). ``multiple``: pack_rows' row padding. ``extended`` (lean streams of
    layers on kml_conv2d_1x1x_s8): word 0 is 2 and the weights are sign-extended, per group of
    four (w0..w3) the words (w0, w2) and (w1, w3) as int16 pairs for channel 2i, then for
    channel 2i + 1 (what SXTB16 and SXTB16 ROR #8 make of the packed word).
    """
    oc, k = rows.shape
    b = np.zeros(oc, np.int64) if bias is None else bias.astype(np.int64)
    any_generic = False
    fb, fm, fr, ok = fast_params(mult, shift, np.abs(rows.astype(np.int64)).sum(axis=1), bias,
                                 in_offset, out_offset, act_min, act_max)
    w = pack_rows(rows, multiple)
    per = (k + multiple - 1) // multiple * multiple // 4  # words per channel
    out = []
    for c in range(0, oc, 2):
        chans = [c, c + 1] if c + 1 < oc else [c]
        fast = all(bool(ok[i]) for i in chans)
        m = [int(fm[i]) if fast else int(mult[i]) for i in chans]
        r = [int(fr[i]) if fast else int(shift[i]) for i in chans]
        rs = sum(_byte(v) << (8 * j) for j, v in enumerate(r)) | (0 if fast else GENERIC_PAIR)
        any_generic = any_generic or not fast
        if lean:
            assert fast and len(chans) == 2, "lean streams are for all-fast even channel counts"
            out.append((2 if doubled else 1) * fb[chans])
            if extended:
                out.append(_extended_words(rows[c:c + 2], multiple))
            else:
                out.append(w[c * per:(c + len(chans)) * per])
            out.append(np.array(m + [rq_k(out_offset, v) for v in r] + [rs], np.int64))
            continue
        out.append(fb[chans] if fast else b[chans])
        out.append(w[c * per:(c + len(chans)) * per])
        out.append(np.array(m + [rs], np.int64))
    head = 2 if extended else int(any_generic)
    return np.concatenate([np.array([head], np.int64)] + out).astype(np.int64)


def _extended_words(pair: np.ndarray, multiple: int) -> np.ndarray:
    """Two channels' weights [2, K] as the extended stream's words: per group of four, for
    each channel (w0 | w2 << 16, w1 | w3 << 16) with 16-bit halves."""
    k = pair.shape[1]
    k4 = (k + multiple - 1) // multiple * multiple
    pad = np.zeros((2, k4), np.int64)
    pad[:, :k] = pair
    g = pad.reshape(2, k4 // 4, 4) & 0xFFFF
    e0 = g[:, :, 0] | g[:, :, 2] << 16
    e1 = g[:, :, 1] | g[:, :, 3] << 16
    words = np.stack([e0, e1], axis=2).transpose(1, 0, 2).reshape(-1)  # group, channel, word
    return np.array([_signed32(int(v)) for v in words], np.int64)


def matrix_args(ctx, g, node, p, rows: np.ndarray, even: bool = False,
                prefix: np.ndarray | None = None, lean: bool = False, multiple: int = 8,
                doubled: bool = True, extended: bool = False) -> str:
    """Emit the stream of a kernel built on the matrix routines; returns its C name. ``rows``
    are the int8 weights as [output channels, K]; the bias is input slot 2. ``even`` pads an
    odd channel count with a zero channel (FULLY_CONNECTED's layout). ``prefix``: words put
    before the stream (CONV_2D_ADD's table, ``add_table``); ``lean``: matrix_stream's lean
    layout and ``doubled`` its biases (kml_conv2d_1x1_s8: both; kml_conv2d_rgb_s8: lean, not
    doubled); ``multiple``: the row padding (4: kml_conv2d_rgb_s8); ``extended``: int16
    weights (kml_conv2d_1x1x_s8, kml_conv2d_rgb_s8's int16 layout)."""
    bias = _bias(g, node)
    mult, shift = np.asarray(p.mult), np.asarray(p.shift)
    if even and rows.shape[0] % 2:
        rows = np.concatenate([rows, np.zeros((1, rows.shape[1]), rows.dtype)])
        bias = np.concatenate([bias, [0]]) if bias is not None else None
        mult, shift = np.concatenate([mult, [0]]), np.concatenate([shift, [0]])
    stream = matrix_stream(rows, bias, mult, shift, p.in_offset, p.out_offset, p.act_min,
                           p.act_max, lean, multiple, doubled, extended)
    if prefix is not None:
        stream = np.concatenate([np.asarray(prefix, np.int64), stream])
    return ctx.array("packed", "int32_t", stream)


def conv_kernel(g, node, p, rows: np.ndarray, row_len: int, inside: bool = False) -> str:
    """The convolution kernel for the stream ``matrix_args`` makes of the same arguments:
    ``kml_conv2d_pairs_s8`` (links neither the general requantization nor the column code for
    window rows that are not whole groups) when every channel pair takes the fast
    requantization, the channel count is even and a window row (``row_len`` = k_w x in_c bytes)
    is a whole number of groups of four, else ``kml_conv2d_s8``; ``kml_conv2d_pairs_inside_s8``
    (no code for windows that leave the image) for the former when ``inside``
    (windows_inside)."""
    if rows.shape[0] % 2 or row_len % 4:
        return "kml_conv2d_s8"
    _, _, _, ok = fast_params(p.mult, p.shift, np.abs(rows.astype(np.int64)).sum(axis=1),
                              _bias(g, node), p.in_offset, p.out_offset, p.act_min, p.act_max)
    if not bool(np.all(ok)):
        return "kml_conv2d_s8"
    return "kml_conv2d_pairs_inside_s8" if inside else "kml_conv2d_pairs_s8"


def flat_1x1(p) -> bool:
    """1x1 filter, stride 1, no padding: output pixel q's window is input pixel q."""
    return (p.k_h == 1 and p.k_w == 1 and p.stride_h == 1 and p.stride_w == 1
            and p.pad_top == 0 and p.pad_left == 0 and p.in_h == p.out_h
            and p.in_w == p.out_w)


def _conv_1x1_fits(g, node, p) -> bool:
    """kml_conv2d_1x1_s8 can take the node: flat_1x1, input channels a multiple of 4, and
    conv_kernel's promise for kml_conv2d_pairs_s8 (every pair fast, even channel count)."""
    if not flat_1x1(p) or p.in_c % 4 or p.out_c % 2:
        return False
    rows = conv_rows(g.tensors[node.inputs[1]].data)
    return conv_kernel(g, node, p, rows, p.in_c) != "kml_conv2d_s8"


def conv_rgb(g, node, p) -> bool:
    """Whether the CONV_2D node takes ``kml_conv2d_rgb_s8``: three window rows of 4n + 1
    bytes with n >= 1 (3x3 over three channels, the RGB first layer), no dilation, even
    channel count, every pair on the fast requantization."""
    row = p.k_w * p.in_c
    if not (p.k_h == 3 and p.dil_h == 1 and p.dil_w == 1 and row % 4 == 1 and row >= 5
            and p.out_c % 2 == 0):
        return False
    rows = conv_rows(g.tensors[node.inputs[1]].data)
    _, _, _, ok = fast_params(p.mult, p.shift, np.abs(rows.astype(np.int64)).sum(axis=1),
                              _bias(g, node), p.in_offset, p.out_offset, p.act_min, p.act_max)
    return bool(np.all(ok))


def windows_inside(p) -> bool:
    """Every window of the convolution lies inside its image, or inside the padded copy the
    kernel makes (pad_image_bytes)."""
    hp = (p.out_h - 1) * p.stride_h + p.k_h
    wp = (p.out_w - 1) * p.stride_w + p.k_w
    return p.dil_h == 1 and p.dil_w == 1 and (
        pad_image_bytes(p) > 0 or (p.pad_top == 0 and p.pad_left == 0 and hp <= p.in_h
                                   and wp <= p.in_w))


def _bias(g, node, slot: int = 2) -> np.ndarray | None:
    if len(node.inputs) > slot and node.inputs[slot] >= 0:
        return g.tensors[node.inputs[slot]].data
    return None


def column_bytes(k: int) -> int:
    """Scratch of the convolution kernel: a pair of int16 columns of K values (padded to a
    multiple of 8) and a byte buffer of two windows."""
    return 6 * ((k + 7) // 8 * 8)


def pad_image_bytes(p) -> int:
    """Extra scratch of the convolution kernel for a single-channel input with padding: the
    padded image (kml_conv.c, pad_image_bytes computes the same), else 0."""
    hp = (p.out_h - 1) * p.stride_h + p.k_h
    wp = (p.out_w - 1) * p.stride_w + p.k_w
    if p.in_c != 1 or p.dil_h != 1 or p.dil_w != 1 or (
            p.pad_top == 0 and p.pad_left == 0 and hp <= p.in_h and wp <= p.in_w):
        return 0
    return (hp * wp + 3) // 4 * 4


def _smmlar(a: int, b: int, acc: int) -> int:
    """SMMLAR: acc + ((a * b + 2^31) >> 32), wrapped to int32."""
    return _signed32(acc + ((a * b + (1 << 31)) >> 32))


def add_table(conv_offset: int, res_offset: int, left_shift: int, conv_mult: int,
              conv_shift: int, res_mult: int, res_shift: int, out_mult: int, out_shift: int,
              act_min: int, act_max: int) -> np.ndarray:
    """The words CONV_2D_ADD's ``packed`` starts with: [1, 256-word table] when the fused ADD
    takes the kernel's table path, else [0] (kml_conv.c, add_setup decides the same). On that
    path one operand a is exactly (a + offset) << (left_shift - 1) (multiplier 2^30, no shift);
    entry v (index v as uint8) is twice (2 x a's scaled offset + the other operand's scaled
    value of v), so the kernel adds 2 x a << (left_shift - 1) and requantizes the sum doubled."""
    cr, rr, orr = -conv_shift, -res_shift, -out_shift
    fast = (0 <= left_shift <= 21 and 0 <= cr <= 31 and 0 <= rr <= 31 and 0 <= orr <= 22
            and conv_mult >= 0 and res_mult >= 0 and out_mult >= 0)
    full = act_min == -128 and act_max == 127
    if not (fast and full and left_shift >= 1 and orr >= 1):
        return np.zeros(1, np.int64)
    if conv_mult == 1 << 30 and cr == 0 and rr >= 1:
        a_off, b_off, b_m, b_r = conv_offset, res_offset, res_mult, rr
    elif res_mult == 1 << 30 and rr == 0 and cr >= 1:
        a_off, b_off, b_m, b_r = res_offset, conv_offset, conv_mult, cr
    else:
        return np.zeros(1, np.int64)
    tab = np.zeros(257, np.int64)
    tab[0] = 1
    for v in range(-128, 128):
        x2 = _signed32((v + b_off) << (left_shift + 1))
        scaled = (_smmlar(x2, b_m, 1 << (b_r - 1)) - (1 if x2 < 0 else 0)) >> b_r
        tab[1 + (v & 0xFF)] = _signed32(2 * _signed32((a_off << (left_shift - 1)) + scaled))
    return tab


def fc_stream(w: np.ndarray, bias: np.ndarray | None, mult: np.ndarray, shift: np.ndarray,
              in_offset: int, out_offset: int, act_min: int, act_max: int,
              extended: bool = False, uniform: bool | None = None) -> np.ndarray:
    """The ``packed`` argument of kml_fully_connected_s8 (runtime/armv7em/kml_fully_connected.c)
    for int8 weights ``w`` [units, depth], as int32 words.

    Bit 0 of word 0 is 0 when every unit takes the fast requantization (``fast_params``: the
    shifts are kml_rq's right shifts, k is computed from them), 1 when some unit does not (the
    whole layer then takes TFLite's: its multipliers and shifts; also when a multiplier is
    negative, which the kernel's ReLU shortcut does not allow and TFLite's converter never
    makes); bit 1: ``extended`` (below). Units are padded to a multiple of 4 with
    zero rows, depth to a multiple of 8 with zero weights. Per group of four units: the four
    initial accumulators, biases with the input offset folded in (bias + in_offset x the sum
    of the unit's weights: the kernel multiplies the raw inputs), for int8 weights the first
    unit of each pair (p, q) b_p + 256 b_q (``fc_pair_words``), all doubled on the fast path
    (the kernel doubles the inputs: kml_rq takes 2 acc); per group of four inputs the four
    weight words (int8: ``fc_pair_words``, pair (0, 1) inputs 0-1 and 2-3, then pair (2, 3));
    the four multipliers; a word of the four shifts as bytes (unit 0 in bits 0-7). Flash:
    4 bytes per unit over the int8 weights and biases (+1 per unit, + padding). The fold is
    exact modulo 2^32 and the accumulator's true value is unchanged, so the bound checks of
    ``fast_params`` hold.

    ``extended`` (kml_fully_connected_x_s8, armv7em_choice option "fc-int16", taken by
    ``--prefer speed``): bit 1 of word 0 is set and the weights are sign-extended: per group
    of four inputs (w0..w3), for each of the four units the words (w0 | w1 << 16,
    w2 | w3 << 16) (the widened inputs' pairs): twice the weight bytes, no SXTB16 in the
    kernel's loop.

    Bit 2 (``uniform``; None: whenever it applies, int8 weights): every unit on the fast
    requantization with one multiplier and right shift (per-tensor weights, TFLite's usual
    FULLY_CONNECTED): words 1 and 2 hold them, and the groups carry no multipliers and shift
    word (5 bytes per unit less; kml_fully_connected_u_s8 keeps k and the shift in registers
    in the SSAT modes)."""
    units, depth = w.shape
    u4, d8 = (units + 3) // 4 * 4, (depth + 7) // 8 * 8
    rows = np.zeros((u4, d8), np.int64)
    rows[:units, :depth] = w
    b = np.zeros(u4, np.int64)
    if bias is not None:
        b[:units] = np.asarray(bias, np.int64)
    m0 = np.zeros(u4, np.int64)
    m0[:units] = np.broadcast_to(np.asarray(mult, np.int64), (units,))
    s0 = np.zeros(u4, np.int64)
    s0[:units] = np.broadcast_to(np.asarray(shift, np.int64), (units,))
    fb, fm, fr, ok = fast_params(m0, s0, np.abs(rows).sum(axis=1), b, in_offset, out_offset,
                                 act_min, act_max)
    # the kernel's ReLU shortcut (an accumulator <= 0 gives act_min) needs multipliers >= 0
    fast = bool(np.all(ok)) and bool(np.all(np.asarray(fm, np.int64) >= 0))
    sums = in_offset * rows.sum(axis=1)
    bias_f, mult_f, shift_f = (np.asarray(fb, np.int64) + sums, fm, fr) if fast else \
        (b + sums, m0, s0)
    if extended:
        h = rows.reshape(u4, d8 // 4, 4) & 0xFFFF
        wwords = np.stack([h[:, :, 0] | h[:, :, 1] << 16, h[:, :, 2] | h[:, :, 3] << 16],
                          axis=2)  # unit, input group, word
        init = bias_f.copy()
    else:
        wwords = fc_pair_words(rows)
        # unit pairs (p, q): p's accumulator starts at b_p + 256 b_q (see fc_pair_words)
        init = bias_f.copy()
        init[0::2] = bias_f[0::2] + 256 * bias_f[1::2]
    if fast:
        init = 2 * init  # the kernel doubles the inputs: accumulators 2 acc for kml_rq
    same = fast and len({(int(a), int(c)) for a, c in zip(fm[:units], fr[:units])}) == 1
    if uniform is None:
        uniform = same and not extended
    assert same or not uniform, "uniform needs one fast multiplier and shift"
    assert not (uniform and extended), "kml_fully_connected_x_s8 takes no uniform stream"
    out = [np.array([(0 if fast else 1) | (2 if extended else 0) | (4 if uniform else 0)],
                    np.int64)]
    if uniform:
        out.append(np.array([int(fm[0]), int(fr[0])], np.int64))
    for g in range(0, u4, 4):
        sl = slice(g, g + 4)
        out += [init[sl], wwords[sl].transpose(1, 0, 2).reshape(-1)]  # input group, unit
        if not uniform:
            out += [mult_f[sl],
                    np.array([sum(_byte(int(r)) << (8 * j) for j, r in enumerate(shift_f[sl]))],
                             np.int64)]
    return np.array([_signed32(int(v)) for v in np.concatenate(out)], np.int64)


def fc_pair_words(rows: np.ndarray) -> np.ndarray:
    """int8 weights [units, depth] (units a multiple of 2, depth of 4) -> the int8 stream's
    words as [units, depth // 4, 1]: per unit pair (p, q) and input pair (i, i + 1) one word of
    the bytes (w_p,i + 128, w_q,i, w_p,i+1 + 128, w_q,i+1), at the place of unit p for inputs
    i = 4g and of unit q for i = 4g + 2. Its halfwords are 256 w_q + w_p + 128 (int16), so with
    the input pair (x_i, x_i+1) SMLAD accumulates 256 S_q + S_p + 128 Sx, and SMLAD of its
    SXTB16 ROR #8 (the high bytes) S_q: the kernel recovers S_p = acc - 256 S_q - 128 Sx
    modulo 2^32 (Sx: the row's input sum), the true accumulator fitting int32."""
    units, depth = rows.shape
    r = rows.reshape(units // 2, 2, depth // 4, 2, 2)  # pair, unit in pair, group, half, input
    lo = (r[:, 0] + 128) & 0xFF                      # pair, group, half, input
    hi = r[:, 1] & 0xFF
    word = lo[..., 0] | hi[..., 0] << 8 | lo[..., 1] << 16 | hi[..., 1] << 24  # pair, grp, half
    return np.array([_signed32(int(v)) for v in word.transpose(0, 2, 1).reshape(-1)],
                    np.int64).reshape(units, depth // 4, 1)


def fc_words(units: int, depth: int, extended: bool = False, uniform: bool = False) -> int:
    """The number of int32 words of ``fc_stream`` for a [units, depth] weight matrix."""
    u4, d8 = (units + 3) // 4 * 4, (depth + 7) // 8 * 8
    return (3 if uniform else 1) + u4 // 4 * (4 + 4 * (d8 // 4) * (2 if extended else 1)
                                              + (0 if uniform else 5))


def fc_scratch_bytes(depth: int) -> int:
    """Scratch of kml_fully_connected_s8: one input row as int16, padded to 8 values."""
    return 2 * ((depth + 7) // 8 * 8)
