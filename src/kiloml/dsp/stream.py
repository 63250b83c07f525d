"""Features of a stream's windows with each frame computed once (incremental features).

A window of a streaming pipeline starts every ``stride`` samples. With a mel block (MFE /
MFCC) in an integer variant (q15 / q31) the features of a window split into

- per frame (``FixedStages.frame_mel``): block floating point, window, FFT, magnitudes and
  the 96-bit mel sums. A frame depends only on its own samples *and the one before it*
  (the C reads it for pre-emphasis and the block exponent), so frame j >= 1 of a window is
  the same computation as the frame that starts at the same stream sample in any other
  window: it is computed once and kept. Frame 0 of a window sees a zero before it (as in a
  clip), so it is computed once per window. With a stride of k frame steps a stride computes
  k + 1 frames instead of all of them; with another stride the frames that start at the same
  stream sample are still shared (e.g. at 12.5 frame steps every other window's).
- per window (``FixedStages.finish``): the clip's peak normalization divides every frame by
  the window's peak ``D``: the integer front end does it in the log domain (the log offset
  scaled by D, log2 D subtracted), so only the log and the DCT of each frame are recomputed
  per window, from the kept mel sums. The result is the full recomputation bit for bit; the
  ``mlperf-kws`` preset streams with its training-time normalization and no accuracy cost.
  Blocks without normalization (``normalize = "none"``, e.g. the ``mlperf-kws-stream``
  preset) have D = 32768 for every window: a frame's finished output row is then the same in
  every window, and the C keeps the row itself (kiloml.deploy.cstream), not redoing the log
  and DCT; with a stride of whole frame steps (``[stream] align_stride``) a stride then
  computes only its new frames and the window's first.

Other blocks and the f32 variant recompute the whole window every stride (stated as
``incremental = False`` with the reason).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kiloml.errors import DSPError

WINDOWS_PER_STEP = 128     # windows featurized together (memory: ~window x 8 B each)


class WindowFeatures:
    """Features of windows ``[s, s + window)`` of a stream for the starts ``s`` asked, as
    ``block.features(windows, variant)`` gives them (int8 / int32 Q20 for the integer
    variants), computing each frame once when ``incremental`` (see the module doc).
    ``frames_computed`` and ``frames_full`` count frames computed and frames a full
    recomputation would have computed (``frame_mel`` calls; finish is per window)."""

    def __init__(self, block, variant: str, window: int, stride: int) -> None:
        block.check_variant(variant)
        if window < 1 or stride < 1:
            raise DSPError(f"window {window} and stride {stride} must be >= 1 sample")
        self.block, self.variant, self.window, self.stride = block, variant, window, stride
        self.reason = self._why_not()
        self.incremental = self.reason == ""
        self.frames_computed = 0
        self.frames_full = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        if self.incremental:
            from kiloml.dsp.fixed import FixedStages

            p = block.params
            self.stages = FixedStages(block, variant)
            self.nfr = block.front.num_frames(window)
            self.fl, self.fs = p.frame_length, p.frame_step

    def _why_not(self) -> str:
        b = self.block
        if not hasattr(b, "front"):
            return f"the {b.name} block has no independent frames"
        if self.variant not in ("q15", "q31"):
            return "the f32 variant recomputes every window (incremental: q15 / q31)"
        p = b.params
        n = b.front.input_samples(self.window)
        if n != self.window:
            return f"the block pads / truncates windows to {n} samples"
        nfr = b.front.num_frames(self.window)
        if (nfr - 1) * p.frame_step + p.frame_length > self.window:
            return "the last frame is zero-padded (pad_end)"
        return ""

    def features(self, pcm: np.ndarray, pcm_start: int, starts: Sequence[int]) -> np.ndarray:
        """``pcm`` holds stream samples ``pcm_start ..``; features of the windows at
        ``starts`` (ascending stream sample positions, each window inside ``pcm``)."""
        starts = [int(s) for s in starts]
        if not starts:
            return np.zeros((0,) + tuple(self.block.output_shape(self.window)))
        if starts[0] < pcm_start or starts[-1] + self.window > pcm_start + len(pcm):
            raise DSPError("a window lies outside the samples given")
        outs = []
        for a in range(0, len(starts), WINDOWS_PER_STEP):
            chunk = starts[a:a + WINDOWS_PER_STEP]
            if self.incremental:
                outs.append(self._incremental(pcm, pcm_start, chunk))
            else:
                idx = np.asarray(chunk)[:, None] - pcm_start + np.arange(self.window)[None]
                outs.append(self.block.features(pcm[idx], self.variant))
        return np.concatenate(outs)

    def _incremental(self, pcm: np.ndarray, pcm_start: int, starts: list[int]) -> np.ndarray:
        from kiloml.dsp.fixed import divisor

        fl, fs, nfr = self.fl, self.fs, self.nfr
        st = self.stages
        x = np.asarray(pcm, np.int64)
        self.frames_full += len(starts) * nfr
        # inner frames (j >= 1): by their stream start, computed once
        inner = sorted({s + j * fs for s in starts for j in range(1, nfr)} - set(self._cache))
        if inner:
            idx = np.asarray(inner)[:, None] - pcm_start - 1 + np.arange(fl + 1)[None]
            hi, lo, sb = st.frame_mel(x[idx])
            for k, t in enumerate(inner):
                self._cache[t] = (hi[k], lo[k], int(sb[k]))
            self.frames_computed += len(inner)
        # first frames: a zero before them, once per window
        idx = np.asarray(starts)[:, None] - pcm_start + np.arange(fl)[None]
        w0 = np.concatenate([np.zeros((len(starts), 1), np.int64), x[idx]], axis=1)
        hi0, lo0, sb0 = st.frame_mel(w0)
        self.frames_computed += len(starts)
        W, F = len(starts), hi0.shape[1]
        hi = np.empty((W, nfr, F), np.int64)
        lo = np.empty((W, nfr, F), np.int64)
        sb = np.empty((W, nfr), np.int64)
        hi[:, 0], lo[:, 0], sb[:, 0] = hi0, lo0, sb0
        for w, s in enumerate(starts):
            for j in range(1, nfr):
                hi[w, j], lo[w, j], sb[w, j] = self._cache[s + j * fs]
        widx = np.asarray(starts)[:, None] - pcm_start + np.arange(self.window)[None]
        D = divisor(self.block.params, x[widx])
        out = st.quantize(st.finish(hi, lo, sb, D[:, None]))
        # frames before the last window's second frame are never needed again
        keep = starts[-1] + fs
        for t in [t for t in self._cache if t < keep]:
            del self._cache[t]
        return out
