"""The integer (q15 / q31) MFE / MFCC C in numpy, bit for bit.

``fixed_features(block, pcm, variant)`` returns exactly what the generated C
(``kml_frontend_q.c`` with ``kml_fft_q.c``) writes for the same 16-bit PCM: the same block
floating point per frame, pre-emphasis, window, radix-2 FFT with its per-stage halving and
rounding, integer magnitudes (rounded square root), 96-bit mel accumulators, Q24 log2 by
squaring, Q29 DCT and int8 requantization. Every table and constant comes from
``kiloml.dsp.cgen.q_config``, the function the C emitter writes them from.

The C path has no floating point and no libm. Its only platform-dependent constructs are
right shifts of negative ``int32_t`` / ``int64_t`` values and narrowing conversions to
``int16_t`` / ``int32_t``; GCC defines both (arithmetic shift, modulo wrap) identically on
the host and on Arm Cortex-M, and numpy's int64 ``>>`` is arithmetic too. Narrowing is
reproduced here with an explicit wrap.

Vectorized over clips and frames in int64 (the mel sums as exact float64 matrix products of
21-bit spectrum limbs and 16-bit weight limbs): the 3,975 one-second Speech Commands clips
through the mlperf-kws preset take ~12 s on one core, ~3x the C itself.
"""

from __future__ import annotations

import functools

import numpy as np

from kiloml.dsp.cgen import QConfig, q_config
from kiloml.errors import DSPError

_FRAMES_PER_STEP = 8192        # frames computed together (memory ~ 20 x fft_length x 8 B each)
_MASK32 = (1 << 32) - 1


def _wrap(v: np.ndarray, bits: int) -> np.ndarray:
    """The C conversion to a ``bits``-bit signed integer (GCC: modulo 2^bits)."""
    h = 1 << (bits - 1)
    return ((v + h) & ((1 << bits) - 1)) - h


def _round_shift(v: np.ndarray, sh) -> np.ndarray:
    """``round_shift`` of kml_frontend_q.c: v / 2^sh rounded half away from zero; v for
    sh <= 0, 0 for sh >= 63. ``sh`` a scalar or an array broadcasting with ``v``."""
    v = np.asarray(v, np.int64)
    if np.ndim(sh) == 0:
        if sh <= 0:
            return v
        if sh >= 63:
            return np.zeros_like(v)
        r = (np.abs(v) + (1 << (sh - 1))) >> sh
        return np.where(v < 0, -r, r)
    sh = np.asarray(sh, np.int64)
    s = np.clip(sh, 1, 62)
    r = (np.abs(v) + np.left_shift(np.int64(1), s - 1)) >> s
    r = np.where(v < 0, -r, r)
    return np.where(sh <= 0, v, np.where(sh >= 63, 0, r))


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Significant bits of unsigned 64-bit values (0 for 0), exactly."""
    v = v.astype(np.uint64)
    n = np.zeros(v.shape, np.int64)
    for b in (32, 16, 8, 4, 2, 1):
        big = (v >> np.uint64(b)) != 0
        n += np.where(big, b, 0)
        v = np.where(big, v >> np.uint64(b), v)
    return n + v.astype(np.int64)


def _log2_q24(v: np.ndarray) -> np.ndarray:
    """``log2_q24``: log2(v) in Q24 by 24 squarings of the Q30 mantissa (0 for v = 0)."""
    v = v.astype(np.uint64)
    ip = _bit_length(v) - 1
    down = np.clip(ip - 30, 0, 63).astype(np.uint64)
    up = np.clip(30 - ip, 0, 63).astype(np.uint64)
    m = np.where(ip >= 30, v >> down, v << up).astype(np.int64)      # Q30 in [1, 2)
    frac = np.zeros(v.shape, np.int64)
    for _ in range(24):
        m = (m * m + (1 << 29)) >> 30
        big = m >= (1 << 31)
        frac = (frac << 1) | big
        m = np.where(big, m >> 1, m)
    return np.where(v == 0, 0, ip * (1 << 24) + frac)


def _isqrt_round(v: np.ndarray) -> np.ndarray:
    """``kml_isqrt64`` for 0 <= v < 2^63: round(sqrt(v)), ties (never exact) upward."""
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return np.where(v - r * r > r, r + 1, r)


@functools.lru_cache(maxsize=16)
def _bit_reverse(m: int) -> np.ndarray:
    """The permutation ``bit_reverse_q31`` applies to m complex values: out[i] = in[perm[i]]."""
    perm = np.arange(m)
    j = 0
    for i in range(m):
        if i < j:
            perm[i], perm[j] = perm[j], perm[i]
        bit = m >> 1
        while bit and j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
    return perm


def _rfft(x: np.ndarray, q: QConfig) -> tuple[np.ndarray, np.ndarray]:
    """``kml_rfft_q31`` / ``kml_rfft_q15`` on rows of real ``x`` (R, n): (re, im) of X / n
    for bins 0 .. n/2, (R, n/2 + 1) int64 each (bins 0 and n/2 with im = 0).

    The buffer is kept in the C's element type (int32 / int16) and the arithmetic in the C's
    types after promotion (int64 products for q31, int for q15), so every narrowing
    assignment wraps exactly as GCC's conversion does."""
    is31 = q.variant == "q31"
    st = np.int32 if is31 else np.int16               # buffer element type
    at = np.int64 if is31 else np.int32               # butterfly product type
    n = x.shape[1]
    m = n // 2
    R = x.shape[0]
    tw = q.twiddle.astype(at)
    perm = _bit_reverse(m)
    re = x[:, 0::2][:, perm].astype(st)
    im = x[:, 1::2][:, perm].astype(st)
    rnd, sh = (1 << 31, 32) if is31 else (1 << 15, 16)
    length = 2
    while length <= m:
        half = length // 2
        step = n // length
        t = np.arange(half)
        c = tw[2 * t * step]
        s = tw[2 * t * step + 1]
        re4 = re.reshape(R, m // length, 2, half)
        im4 = im.reshape(R, m // length, 2, half)
        br, bi = re4[:, :, 1].astype(at), im4[:, :, 1].astype(at)
        wr = ((br * c + bi * s + rnd) >> sh).astype(np.int32)
        wi = ((bi * c - br * s + rnd) >> sh).astype(np.int32)
        ar = re4[:, :, 0].astype(np.int32) >> 1
        ai = im4[:, :, 0].astype(np.int32) >> 1
        nre = np.empty((R, m // length, 2, half), st)
        nim = np.empty((R, m // length, 2, half), st)
        nre[:, :, 0] = ar + wr                        # int32 sum, narrowed on assignment
        nre[:, :, 1] = ar - wr
        nim[:, :, 0] = ai + wi
        nim[:, :, 1] = ai - wi
        re, im = nre.reshape(R, m), nim.reshape(R, m)
        length *= 2
    # The split: X[k] = E[k] - i W^k O[k] for k = 1 .. m/2 and its mirror m - k.
    bits = 32 if is31 else 16
    re, im = re.astype(np.int64), im.astype(np.int64)
    k = np.arange(1, m // 2 + 1)
    j = m - k
    ar, ai, br, bi = re[:, k], im[:, k], re[:, j], im[:, j]
    er, ei = (ar + br + 2) >> 2, (ai - bi + 2) >> 2
    orr, oi = (ar - br + 2) >> 2, (ai + bi + 2) >> 2
    c, s = q.twiddle[2 * k], q.twiddle[2 * k + 1]
    if is31:
        def mul(a, b):
            return (a * b + (1 << 30)) >> 31
        p = _wrap(mul(c, orr) + mul(s, oi), 32)
        qq = _wrap(mul(c, oi) - mul(s, orr), 32)
    else:
        p = (c * orr + s * oi + (1 << 14)) >> 15
        qq = (c * oi - s * orr + (1 << 14)) >> 15
    out_re = np.zeros((R, m + 1), np.int64)
    out_im = np.zeros((R, m + 1), np.int64)
    z0r, z0i = re[:, 0], im[:, 0]
    out_re[:, 0] = _wrap((z0r + z0i + 1) >> 1, bits)
    out_re[:, m] = _wrap((z0r - z0i + 1) >> 1, bits)
    out_re[:, k] = _wrap(er + qq, bits)
    out_im[:, k] = _wrap(ei - p, bits)
    lo = k < j                      # k = m/2 is its own mirror: written once, above
    out_re[:, j[lo]] = _wrap(er - qq, bits)[:, lo]
    out_im[:, j[lo]] = _wrap(-ei - p, bits)[:, lo]
    return out_re, out_im


def _filter_limbs(q: QConfig) -> tuple[int, list[np.ndarray]]:
    """The first bin any filter uses and the filterbank from there to the last used bin as
    two dense (bins, filters) float64 matrices of 16-bit weight limbs."""
    used = q.filter_len > 0
    b0 = int(q.filter_start[used].min())
    b1 = int((q.filter_start + q.filter_len).max())
    w = np.zeros((b1 - b0, len(q.filter_start)), np.int64)
    off = 0
    for f, (a, n) in enumerate(zip(q.filter_start, q.filter_len)):
        w[a - b0:a - b0 + n, f] = q.filter_weights[off:off + n]
        off += n
    return b0, [(w & 0xFFFF).astype(np.float64), (w >> 16).astype(np.float64)]


def _mel_acc(spec: np.ndarray, wl: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """sum(spec * weight) per filter exactly, as (hi, lo) = (acc >> 32, acc & (2^32 - 1)):
    the C's 96-bit accumulator. Products of 21-bit spectrum limbs and 16-bit weight limbs
    summed in float64 stay below 2^50, so every matrix product is exact."""
    hi = np.zeros(spec.shape[:-1] + (wl[0].shape[1],), np.int64)
    lo = np.zeros_like(hi)
    top = int(spec.max()) if spec.size else 0
    for i in range(3):
        if top >> (21 * i) == 0:
            break
        limb = ((spec >> (21 * i)) & ((1 << 21) - 1)).astype(np.float64)
        for jj, w in enumerate(wl):
            t = (limb @ w).astype(np.int64)
            e = 21 * i + 16 * jj
            if e < 32:
                hi += t >> (32 - e)
                lo += (t & ((1 << (32 - e)) - 1)) << e
            else:
                hi += t << (e - 32)
    hi += lo >> 32
    return hi, lo & _MASK32


def _log_offset(q: QConfig, D: np.ndarray, Sb: np.ndarray, p: int):
    """add mode: offset * D^p * 2^(p S' - G0) as 96 bits (off_hi, off_lo), per frame."""
    v = np.uint64(q.log_off_mant) * D.astype(np.uint64)
    if p == 2:
        v = v * D.astype(np.uint64)
    v = np.broadcast_to(v, Sb.shape)
    sh = q.log_off_exp + p * Sb

    def ush(a):
        return np.clip(a, 0, 63).astype(np.uint64)

    one = np.uint64(1)
    r_lo = np.where(-sh >= 64, np.uint64(0), (v + (one << ush(-sh - 1))) >> ush(-sh))
    m_hi = v >> ush(32 - sh)
    m_lo = (v << ush(sh)) & np.uint64(_MASK32)
    big_ok = (sh - 32 < 62) & (v < (one << ush(62 - (sh - 32))))
    b_hi = np.where(big_ok, v << ush(sh - 32), one << np.uint64(62))
    off_hi = np.where(sh < 0, 0, np.where(sh < 32, m_hi, b_hi)).astype(np.int64)
    off_lo = np.where(sh < 0, r_lo, np.where(sh < 32, m_lo, 0)).astype(np.int64)
    return off_hi, off_lo


def _log2_96(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``log2_q24_96(hi, lo)``: log2(hi * 2^32 + lo) in Q24 from its top 64 bits."""
    uh = hi.astype(np.uint64)
    ul = lo.astype(np.uint64)
    bh = _bit_length(uh)
    small = (uh >> np.uint64(32)) == 0
    up = np.clip(64 - bh, 0, 63).astype(np.uint64)
    down = np.clip(bh - 32, 0, 63).astype(np.uint64)
    v = np.where(small, (uh << np.uint64(32)) | ul, (uh << up) | (ul >> down))
    return _log2_q24(v) + np.where(small, 0, (bh - 32) * (1 << 24))


def divisor(p, pcm: np.ndarray) -> np.ndarray:
    """The clip divisor D of ``normalize`` (peak: the signed maximum, peak_abs: the largest
    magnitude, 32768 for none or a peak <= 0) per row of (N, n) PCM, int64."""
    x = pcm.astype(np.int64)
    N, n = x.shape
    if p.normalize == "peak":
        peak = x.max(axis=1) if n else np.full(N, -1)
        D = np.where(peak > 0, peak, 32768)
    elif p.normalize == "peak_abs":
        amax = np.abs(x).max(axis=1) if n else np.zeros(N, np.int64)
        D = np.where(amax > 0, amax, 32768)
    else:
        D = np.full(N, 32768)
    return D.astype(np.int64)


class FixedStages:
    """The integer front end in two stages, so a stream can compute each frame once.

    ``frame_mel`` is everything that depends on one frame only (block floating point, window,
    FFT, magnitudes, the 96-bit mel sums): it takes the frame's ``frame_length`` samples
    *and the sample before it* (0 for a clip's first frame, as the C reads it), and returns
    (hi, lo, Sb). ``finish`` is what depends on the clip: the log offset and divisor of the
    clip's peak normalisation ``D``, the log and the DCT, giving the Q20 features (before the
    int8 requantization of ``quantize``). ``fixed_features`` is exactly these two stages."""

    def __init__(self, block, variant: str) -> None:
        block.check_variant(variant)
        self.block = block
        self.p = block.params
        self.q = q_config(block, variant)
        self.limbs = _filter_limbs(self.q)
        self.pw = 2 if self.p.power == 2 else 1

    def frame_mel(self, win: np.ndarray, valid: np.ndarray | None = None):
        """(R, frame_length + 1) int frames (previous sample first) -> hi, lo (R, filters)
        and Sb (R,). ``valid`` (R or 1, frame_length) bool: samples at or past the clip's
        used length are zero (the C's ``t < used_samples``); None: all valid."""
        q, p = self.q, self.p
        is31 = q.variant == "q31"
        fl, nfft = p.frame_length, p.fft_length
        win = np.asarray(win, np.int64)
        R = win.shape[0]
        famax = np.abs(win).max(axis=1)
        S = np.zeros(famax.shape, np.int64)
        for s in range(30):
            S += (famax << (s + 1)) < (1 << 30)
        if q.pre_emphasis_q15:
            S = np.where(S > 0, S - 1, S)
        S = np.where(famax > 0, S, 30)
        Sb = S if is31 else S - 16
        cur, prev = win[:, 1:], win[:, :-1]
        Sx = S[:, None]
        y = cur << Sx
        if q.pre_emphasis_q15:    # the previous sample of a clip's first frame is 0
            y = y - _round_shift(q.pre_emphasis_q15 * prev << Sx, 15)
        if valid is not None:
            y = np.where(valid, y, 0)
        if is31:
            frame = _wrap(_round_shift(y * q.window, 31), 32)
        else:
            frame = _wrap(_round_shift(_round_shift(y, 16) * q.window, 15), 16)
        buf = np.zeros((R, nfft), np.int64)
        buf[:, :fl] = frame
        re, im = _rfft(buf, q)
        b0, limbs = self.limbs            # only the bins some filter uses, as the C
        re, im = re[:, b0:b0 + limbs[0].shape[0]], im[:, b0:b0 + limbs[0].shape[0]]
        m2 = re * re + im * im
        spec = _isqrt_round(m2) if self.pw == 1 else m2
        hi, lo = _mel_acc(spec, limbs)
        return hi, lo, Sb

    def finish(self, hi: np.ndarray, lo: np.ndarray, Sb: np.ndarray,
               D: np.ndarray) -> np.ndarray:
        """(..., filters) mel sums with their (...) Sb and the clip divisor ``D`` (broadcast
        to Sb's shape) -> (..., width) int32 Q20 features."""
        q, p, pw = self.q, self.p, self.pw
        D = np.broadcast_to(np.asarray(D, np.int64), Sb.shape)
        log2_d = _log2_q24(D)
        G = -q.filter_frac_bits + pw * q.log2_fft - pw * Sb
        zero = (hi == 0) & (lo == 0)
        if p.log_mode == "add":
            off_hi, off_lo = _log_offset(q, D, Sb, pw)
            lo = lo + (off_lo & _MASK32)[..., None]
            hi = hi + (off_hi + (off_lo >> 32))[..., None] + (lo >> 32)
            lo = lo & _MASK32
        l2 = _log2_96(hi, lo) + (G * (1 << 24))[..., None] - pw * log2_d[..., None]
        mel = _wrap(_round_shift(l2 * q.log_scale_q30, 34), 32)
        if p.log_mode == "clamp":
            mel = np.where(zero | (mel < q.log_floor_q20), q.log_floor_q20, mel)
        if q.dct_q29 is None:
            return mel
        acc = mel @ q.dct_q29.T                  # int64, wraps like the C's int64 accumulator
        return _wrap(_round_shift(acc, 29), 32)

    def quantize(self, v: np.ndarray) -> np.ndarray:
        """Q20 features -> the block's int8 output (unchanged when it has none)."""
        p, q = self.p, self.q
        if p.output_scale is None:
            return v.astype(np.int32)
        return np.clip(_round_shift(v * q.out_mult, q.out_shift) + p.output_zero_point,
                       -128, 127).astype(np.int8)

    def clip_frames(self, pcm: np.ndarray, n_in: int) -> np.ndarray:
        """Features of a chunk of clips, (N, frames, width), int32 Q20 (before
        quantization): the two stages over every frame of every clip."""
        p, front = self.p, self.block.front
        N = pcm.shape[0]
        used = front.input_samples(n_in)
        n = min(used, n_in)
        nfr = front.num_frames(n_in)
        fl, fs = p.frame_length, p.frame_step
        D = divisor(p, pcm[:, :n])
        # xz[t + 1] = pcm[t] for t < n, zero elsewhere (and at t = -1).
        t0 = np.arange(nfr) * fs
        length = max(int(t0[-1]) + fl, used) + 2
        xz = np.zeros((N, length), np.int64)
        xz[:, 1:n + 1] = pcm[:, :n]
        idx = t0[:, None] + np.arange(fl + 1)[None, :]       # pcm[t0 - 1 .. t0 + fl - 1]
        win = xz[:, idx].reshape(N * nfr, fl + 1)
        t = t0[:, None] + np.arange(fl)[None, :]
        valid = np.broadcast_to((t < used)[None], (N, nfr, fl)).reshape(N * nfr, fl)
        hi, lo, Sb = self.frame_mel(win, valid)
        return self.finish(hi.reshape(N, nfr, -1), lo.reshape(N, nfr, -1),
                           Sb.reshape(N, nfr), D[:, None])


def fixed_features(block, pcm: np.ndarray, variant: str) -> np.ndarray:
    """What the generated ``variant`` (q15 / q31) C of ``block`` (MFE or MFCC) writes for
    ``pcm``: (N, samples) 16-bit PCM -> (N, *block.output_shape(samples)), int8 when the
    block quantizes its output, else int32 Q20 (value * 2^20); bit for bit."""
    block.check_variant(variant)
    pcm = np.asarray(pcm)
    if pcm.ndim != 2:
        raise DSPError(f"{block.name}: fixed_features takes (N, samples) PCM, got shape "
                       f"{pcm.shape}")
    if pcm.dtype != np.int16 and (pcm.dtype.kind not in "iu" or pcm.size and (
            pcm.min() < -32768 or pcm.max() > 32767)):
        raise DSPError(f"{block.name}: fixed_features takes int16 PCM, got {pcm.dtype}")
    p = block.params
    n_in = pcm.shape[1]
    shape = tuple(block.output_shape(n_in))
    quant = p.output_scale is not None
    out = np.empty((pcm.shape[0],) + shape, np.int8 if quant else np.int32)
    step = max(1, _FRAMES_PER_STEP // shape[0])
    stages = FixedStages(block, variant)
    for a in range(0, pcm.shape[0], step):
        out[a:a + step] = stages.quantize(stages.clip_frames(pcm[a:a + step], n_in))
    return out
