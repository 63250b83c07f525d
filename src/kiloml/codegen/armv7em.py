"""Data the armv7em kernels (Cortex-M4/M7/M33 with the DSP extension) take precomputed.

The ops' ``emit`` calls these when ``ctx.runtime == "armv7em"``; the portable kernels get 0
in the same argument slots. Layouts are described in ``runtime/armv7em/kml_arm.h``:

* ``pack_rows``: int8 weight rows [channels, K] -> int32 words, four int8 per word in natural
  order, rows zero padded to a multiple of eight, channels taken in interleaved pairs. Same
  bytes as the original weights (plus the padding), so flash does not grow; the original int8
  array is then not emitted.
* ``fast_requant``: per-channel (multiplier, right shift) of the exact SMMLAR requantization,
  or None when a channel needs TFLite's general path (left shift, accumulator that may reach
  2^30, huge right shift that is not a constant output).
"""

from __future__ import annotations

import numpy as np

# kml_rq_k computes ((2 * out_offset + 1) << rsh) >> 1 in 32 bits: |2 * offset + 1| <= 255
MAX_RSHIFT = 22
ACC_LIMIT = 1 << 30  # the kernels double the accumulator before SMMLAR


def words(b: np.ndarray) -> np.ndarray:
    """int8 bytes (length a multiple of 4) -> little-endian int32 words."""
    return np.ascontiguousarray(b.astype(np.int8)).view("<i4").astype(np.int64)


def pack_rows(w: np.ndarray) -> np.ndarray:
    """[channels, K] int8 -> int32 words: per group of four values, channel pairs interleaved."""
    oc, k = w.shape
    k4 = (k + 7) // 8 * 8
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


def fast_requant(mult: np.ndarray, shift: np.ndarray,
                 bound: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(multiplier, right shift >= 1) per channel for ``kml_rq``, or None if a channel is not
    exact that way."""
    m, r, ok = fast_channels(mult, shift, bound)
    return (m, r) if bool(ok.all()) else None


def _byte(v: int) -> int:
    return int(v) & 0xFF


def _signed32(v: int) -> int:
    """A 32-bit pattern as the int32 C initializer value."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


GENERIC_PAIR = 1 << 16


def matrix_stream(rows: np.ndarray, bias: np.ndarray | None, mult: np.ndarray,
                  shift: np.ndarray, in_offset: int, full_clamp: bool) -> np.ndarray:
    """The ``packed`` argument of the matrix kernels (CONV_2D, FULLY_CONNECTED) as int32 words.

    Per pair of output channels: bias[2i], bias[2i+1], the pair's interleaved weight words
    (``pack_rows``), mult[2i], mult[2i+1] and a word with two shift bytes (2i in bits 0-7,
    2i+1 in bits 8-15). When both channels take the fast requantization (``fast_channels``)
    and the clamp is [-128, 127] (``full_clamp``) the bytes are right shifts for ``kml_rq``;
    otherwise bit 16 (``GENERIC_PAIR``) is set and they are TFLite's shifts. An odd last
    channel: bias, its weight words, mult, shift word (same encoding).
    """
    oc, k = rows.shape
    b = np.zeros(oc, np.int64) if bias is None else bias.astype(np.int64)
    bound = acc_bound(np.abs(rows.astype(np.int64)).sum(axis=1), bias, in_offset)
    fm, fr, ok = fast_channels(mult, shift, bound)
    w = pack_rows(rows)
    per = (k + 7) // 8 * 2  # words per channel
    out = []
    for c in range(0, oc, 2):
        chans = [c, c + 1] if c + 1 < oc else [c]
        fast = full_clamp and all(bool(ok[i]) for i in chans)
        m = [int(fm[i]) if fast else int(mult[i]) for i in chans]
        r = [int(fr[i]) if fast else int(shift[i]) for i in chans]
        rs = sum(_byte(v) << (8 * j) for j, v in enumerate(r)) | (0 if fast else GENERIC_PAIR)
        out.append(b[chans])
        out.append(w[c * per:(c + len(chans)) * per])
        out.append(np.array(m + [rs], np.int64))
    return np.concatenate(out).astype(np.int64)


def depthwise_stream(w: np.ndarray, bias: np.ndarray | None, mult: np.ndarray,
                     shift: np.ndarray, in_offset: int) -> np.ndarray:
    """The ``packed`` argument of the depthwise kernel (depth multiplier 1, channels a multiple
    of 4). ``w`` is the [1, kh, kw, C] filter. Word 0 is the requantization mode (as
    ``matrix_stream``), then per group of 4 channels: 4 biases, one word per tap (the 4
    channels' weights), 4 multipliers and a word of 4 shift bytes."""
    _, kh, kw, c = w.shape
    taps = w.reshape(kh * kw, c)
    b = np.zeros(c, np.int64) if bias is None else bias.astype(np.int64)
    bound = acc_bound(np.abs(taps.astype(np.int64)).sum(axis=0), bias, in_offset)
    fast = fast_requant(mult, shift, bound)
    m, r = fast if fast is not None else (np.asarray(mult, np.int64), np.asarray(shift, np.int64))
    out = [np.array([1 if fast is not None else 0], np.int64)]
    for g in range(0, c, 4):
        out.append(b[g:g + 4])
        out.append(words(np.ascontiguousarray(taps[:, g:g + 4]).reshape(-1)))
        out.append(np.asarray(m[g:g + 4], np.int64))
        out.append(np.array([_signed32(sum(_byte(r[g + i]) << (8 * i) for i in range(4)))],
                            np.int64))
    return np.concatenate(out).astype(np.int64)


def matrix_args(ctx, g, node, p, rows: np.ndarray) -> str:
    """Emit the stream of a kernel built on the matrix routines; returns its C name. ``rows``
    are the int8 weights as [output channels, K]; the bias is input slot 2."""
    full = p.act_min == -128 and p.act_max == 127
    return ctx.array("packed", "int32_t",
                     matrix_stream(rows, _bias(g, node), p.mult, p.shift, p.in_offset, full))


def _bias(g, node, slot: int = 2) -> np.ndarray | None:
    if len(node.inputs) > slot and node.inputs[slot] >= 0:
        return g.tensors[node.inputs[slot]].data
    return None


def column_bytes(k: int) -> int:
    """Scratch of the convolution kernel: a pair of int16 columns of K values (padded to a
    multiple of 8) and a byte buffer of one window."""
    return 5 * ((k + 7) // 8 * 8)
