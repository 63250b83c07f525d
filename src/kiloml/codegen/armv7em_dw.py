"""Data the armv7em depthwise kernels (runtime/armv7em/kml_conv_dw.c) take precomputed, and
which of their entry points a layer uses.

``depthwise_stream``: one 18-byte record per channel for the 3x3 depthwise kernel (bias with
the input offset folded in, multiplier, 9 weights, right shift); ``depthwise_stream_g6``: the
40-byte records of its _g6 entries (pre-split, doubled weights); ``depthwise_scratch``: the
bytes of its line ring. The requantization parameters come from ``armv7em.fast_params``.
"""

from __future__ import annotations

import numpy as np

from kiloml.codegen.armv7em import fast_params, words


def depthwise_eligible(p) -> bool:
    """The armv7em depthwise kernel's geometry: 3x3, stride 1 or 2 (same both ways), no
    dilation, depth multiplier 1."""
    return (p.k_h == 3 and p.k_w == 3 and p.stride_h == p.stride_w and p.stride_w in (1, 2)
            and p.dil_h == 1 and p.dil_w == 1 and p.out_c == p.in_c)


def depthwise_w5(p) -> bool:
    """The depthwise kernel's _w5 entry (int16 lines, groups of five outputs at even
    offsets: 0, and out_w - 5; lines that share their pad columns, see depthwise_scratch):
    stride 1, output width 5 or 9, channel count a multiple of 4. Layers whose activation
    minimum is at least the output offset take _w5r (no correction for negative
    accumulators)."""
    return p.stride_w == 1 and p.out_w in (5, 9) and p.in_c % 4 == 0


def depthwise_h(p) -> bool:
    """The depthwise kernel's _h entry (int16 lines, groups of five at even and odd
    offsets): stride 1, output width at least 5 and not 1 or 2 mod 5 (steps of five cover
    the rows), channel count a multiple of 4, not depthwise_w5."""
    return (p.stride_w == 1 and p.out_w >= 5 and p.out_w % 5 not in (1, 2)
            and p.in_c % 4 == 0 and not depthwise_w5(p))


def line_width(p) -> int:
    """Values per line of the depthwise kernel's ring (``dw3_line`` in kml_conv_dw.c)."""
    return ((p.out_w - 1) * p.stride_w + 4 + 3) // 4 * 4


def depthwise_g6(p) -> bool:
    """The depthwise kernel's _g6 / _g6s2 entries (int16 lines, pre-split weights, groups of
    six then three outputs): channel count a multiple of 4, not depthwise_w5; stride 1 with
    an output width that is a multiple of 3 (groups at even offsets), or stride 2 with an
    output width of at least 3 (a last group of three may overlap). The input row, with an
    odd last pixel's pad value, must fit in a line: the transposition writes words from the
    even index at or before pad_left to the even index at or after the row's end."""
    return (p.in_c % 4 == 0 and not depthwise_w5(p) and p.out_w >= 3
            and (p.out_w % 3 == 0 if p.stride_w == 1 else p.stride_w == 2)
            and (p.pad_left + p.in_w + 1) // 2 * 2 <= line_width(p))


def depthwise_scratch(p) -> int:
    """Bytes of the depthwise kernel's line ring: 3 rows of C lines and one pad line (of
    int16 values for depthwise_w5, depthwise_h and depthwise_g6)."""
    if depthwise_w5(p):
        # lines overlap by their pad columns: pad_left + in_w values rounded up to even, and a
        # pad line of two lines (the group at out_w - 5 reads out_w + 3 values)
        return (3 * p.in_c + 2) * ((p.pad_left + p.in_w + 1) // 2 * 2) * 2
    int16 = depthwise_h(p) or depthwise_g6(p)
    return (3 * p.in_c + 1) * line_width(p) * (2 if int16 else 1)


def depthwise_stream(w: np.ndarray, bias: np.ndarray | None, mult: np.ndarray,
                     shift: np.ndarray, in_offset: int, out_offset: int, act_min: int,
                     act_max: int) -> np.ndarray | None:
    """The ``packed`` argument of the depthwise kernel (``depthwise_eligible``), or None when
    a channel needs TFLite's general requantization. ``w`` is the [1, 3, 3, C] filter. One
    18-byte record per channel: bias (input offset folded in) and multiplier (int32
    little-endian), the 9 weights (rows of 3) and the right shift."""
    c = w.shape[3]
    taps = w.reshape(9, c)
    bias, m, r, ok = fast_params(mult, shift, np.abs(taps.astype(np.int64)).sum(axis=0), bias,
                                 in_offset, out_offset, act_min, act_max)
    if not bool(ok.all()):
        return None
    # the kernel reads raw inputs (zero point where the window leaves the image): fold the
    # input offset into the bias, exact in int32 (|result| stays below the accumulator bound)
    bias = np.asarray(bias, np.int64) + in_offset * taps.astype(np.int64).sum(axis=0)
    rec = np.zeros((c, 18), np.uint8)
    rec[:, 0:4] = np.asarray(bias, "<i4").view(np.uint8).reshape(c, 4)
    rec[:, 4:8] = np.asarray(m, "<i4").view(np.uint8).reshape(c, 4)
    rec[:, 8:17] = taps.T.astype(np.int8).view(np.uint8)
    rec[:, 17] = np.asarray(r, np.uint8)
    data = np.zeros((rec.size + 3) // 4 * 4 + 4, np.uint8)  # + a word: loads read ahead
    data[:rec.size] = rec.reshape(-1)
    return words(data.view(np.int8))


def depthwise_stream_g6(w: np.ndarray, bias: np.ndarray | None, mult: np.ndarray,
                        shift: np.ndarray, in_offset: int, out_offset: int, act_min: int,
                        act_max: int) -> np.ndarray | None:
    """The ``packed`` argument of the _g6 entries (``depthwise_g6``), or None as
    ``depthwise_stream``. One 40-byte record (ten int32 words) per channel: the bias with the
    input offset folded in, doubled; per filter row the weight pairs (2 w0, 2 w1) and
    (2 w1, 2 w2) as int16 (low half first); the multiplier; kml_rq_k(2 out_offset + 1, shift);
    the right shift. The doubled weights give the doubled accumulator kml_rq takes."""
    c = w.shape[3]
    taps = w.reshape(9, c).astype(np.int64)
    bias, m, r, ok = fast_params(mult, shift, np.abs(taps).sum(axis=0), bias, in_offset,
                                 out_offset, act_min, act_max)
    if not bool(ok.all()):
        return None
    bias = np.asarray(bias, np.int64) + in_offset * taps.sum(axis=0)
    rec = np.zeros((c, 10), np.int64)
    rec[:, 0] = 2 * bias
    t2 = (2 * taps) & 0xFFFF  # [9, C] doubled weights as int16 bit patterns
    for ky in range(3):
        w0, w1, w2 = t2[3 * ky], t2[3 * ky + 1], t2[3 * ky + 2]
        rec[:, 1 + 2 * ky] = w0 | (w1 << 16)
        rec[:, 2 + 2 * ky] = w1 | (w2 << 16)
    rec[:, 7] = np.asarray(m, np.int64)
    c2 = 2 * out_offset + 1
    for ch in range(c):
        k = (c2 << int(r[ch])) & 0xFFFFFFFF
        k = k - (1 << 32) if k >= 1 << 31 else k
        rec[ch, 8] = k >> 1
    rec[:, 9] = np.asarray(r, np.int64)
    rec = rec.reshape(-1) & 0xFFFFFFFF
    return np.where(rec >= 1 << 31, rec - (1 << 32), rec).astype(np.int64)
