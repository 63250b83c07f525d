"""The streaming pipeline's Python twin: samples in, detections out.

``StreamPipeline(spec, settings).push(samples)`` takes sensor samples in blocks of any size
(16-bit PCM for audio, (n, channels) frames for IMU) and returns the detections they complete:

1. Ring buffer: the samples from the next window's start on are kept; a window of
   ``spec.frames`` samples starts every ``stride = round(frames / slices_per_window)``
   samples (the first at sample 0).
2. Features of every complete window (kiloml.dsp.stream.WindowFeatures: incremental for the
   integer mel blocks, bit-exact with the whole window's features; the f32 variant and other
   blocks recompute the window), then the deployed pipeline's own conversion and the int8
   model on the reference interpreter (kiloml.deploy.run.classify_features).
3. The model's probabilities as 0..255 scores (``round(p * 256)``, at most 255: the int8
   softmax output + 128 for the usual 1/256 scale), then RecognizeCommands
   (kiloml.train.streaming) at the window's end time in whole milliseconds; a new command of
   a class that fires is a ``Detection`` at the window's end.

Windows that complete within one push are computed together (batched), so the decisions do
not depend on how the samples are cut into pushes (the tests check it).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from kiloml.deploy.run import block_output_features, classify_features
from kiloml.deploy.spec import DeploySpec
from kiloml.dsp.apply import apply_block, block_quant
from kiloml.dsp.stream import WindowFeatures
from kiloml.errors import KilomlError
from kiloml.train.streaming import Detection, RecognizeCommands, StreamSettings

WINDOWS_PER_STEP = 256


def stride_samples(frames: int, slices: int) -> int:
    """Samples between window starts: the window over ``slices``, rounded."""
    s = int(round(frames / slices))
    if s < 1:
        raise KilomlError(f"{slices} slices per window of {frames} samples: the stride would "
                          "be under one sample")
    return s


def u8_scores(probs: np.ndarray) -> np.ndarray:
    """Probabilities -> RecognizeCommands' 0..255 scores (see the module doc)."""
    return np.clip(np.round(probs.astype(np.float64) * 256.0), 0, 255).astype(np.int64)


class StreamPipeline:
    """The streaming twin of a deploy spec (see the module doc)."""

    def __init__(self, spec: DeploySpec, settings: Optional[StreamSettings] = None) -> None:
        self.spec = spec
        self.settings = settings or StreamSettings()
        self.window = int(spec.frames)
        self.rate = float(spec.sample_rate)
        self.stride = stride_samples(self.window, self.settings.slices_per_window)
        self.audio = bool(spec.block.audio)
        self.integer = self.audio and spec.dsp_variant in ("q15", "q31")
        self.features = WindowFeatures(spec.block, spec.dsp_variant, self.window,
                                       self.stride) if self.audio else None
        self.recognizer = RecognizeCommands(spec.labels, self.settings)
        shape = (0,) if self.audio else (0, int(spec.channels))
        self._buf = np.zeros(shape, np.int16 if self.audio else np.float32)
        self._buf_start = 0              # stream position of _buf[0]
        self._next = 0                   # start of the next window
        self.windows = 0

    @property
    def position(self) -> int:
        """Samples pushed so far."""
        return self._buf_start + len(self._buf)

    def _check(self, x) -> np.ndarray:
        x = np.asarray(x)
        if self.audio:
            if x.ndim != 1 or x.dtype.kind not in "iu" or (x.size and (
                    x.min() < -32768 or x.max() > 32767)):
                raise KilomlError("stream: audio is pushed as 1-D 16-bit PCM")
            return x.astype(np.int16)
        if x.ndim != 2 or x.shape[1] != int(self.spec.channels) or x.dtype.kind not in "iuf":
            raise KilomlError(f"stream: IMU data is pushed as (n, {self.spec.channels}) frames")
        return x.astype(np.float32)

    def push(self, samples) -> list[Detection]:
        """Append ``samples``; the detections of the windows they complete, in time order."""
        x = self._check(samples)
        self._buf = np.concatenate([self._buf, x])
        end = self.position
        starts = list(range(self._next, end - self.window + 1, self.stride))
        events: list[Detection] = []
        for a in range(0, len(starts), WINDOWS_PER_STEP):
            events += self._windows(starts[a:a + WINDOWS_PER_STEP])
        if starts:
            self._next = starts[-1] + self.stride
        drop = min(self._next, end) - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return events

    def _windows(self, starts: list[int]) -> list[Detection]:
        spec = self.spec
        if self.audio:
            f = self.features.features(self._buf, self._buf_start, starts)
            # int8 / Q20 integer output, or the f32 forward (int8 when the block quantizes)
            quantized = self.integer or block_quant(spec.block) is not None
            feats = block_output_features(spec, f) if quantized else f.astype(np.float32)
        else:
            idx = np.asarray(starts)[:, None] - self._buf_start + np.arange(self.window)[None]
            feats = apply_block(spec.block, self._buf[idx])
        probs = classify_features(spec, feats).scores
        scores = u8_scores(probs)
        out = []
        for s, sc in zip(starts, scores):
            end = s + self.window
            got = self.recognizer.detect(sc.tolist(), int(end * 1000 // self.rate))
            self.windows += 1
            if got is not None:
                out.append(Detection(end / self.rate, end, spec.labels[got[0]], got[1]))
        return out


def run_stream(spec: DeploySpec, samples, settings: Optional[StreamSettings] = None,
               block: Optional[int] = None) -> tuple[list[Detection], StreamPipeline]:
    """A whole recording through a fresh pipeline (pushed at once, or in ``block``-sample
    pieces); the detections and the pipeline (its counters)."""
    pipe = StreamPipeline(spec, settings)
    x = np.asarray(samples)
    if block is None:
        return pipe.push(x), pipe
    events = []
    for a in range(0, len(x), block):
        events += pipe.push(x[a:a + block])
    return events, pipe
