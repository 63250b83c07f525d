"""Incremental features of a stream equal the full recomputation of every window, bit for
bit, for the integer (q15 / q31) mel blocks."""

import numpy as np
import pytest

from kiloml.dsp import make_block
from kiloml.dsp.stream import WindowFeatures


def _stream(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    x = 3000 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
    x += rng.normal(0, 300, n)
    x[n // 3:n // 3 + 4000] *= 0.01                       # a quiet stretch
    x[n // 2] = 32767                                     # a peak that moves D
    x[2 * n // 3:2 * n // 3 + 900] = 0                    # digital silence
    # spikes just before window starts: a window's first frame must not see them (the C
    # reads a zero before a clip), every later frame that starts after one must
    x[16000 * np.arange(1, n // 16000) - 1] = 25000
    x[16000 * np.arange(1, n // 16000) + 320 * 7 - 1] = -25000
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


BLOCKS = {
    "mlperf-kws": dict(preset="mlperf-kws"),
    "mlperf-kws-stream": dict(preset="mlperf-kws-stream"),
    "mfe-preemph": dict(block="mfe", params=dict(pre_emphasis=0.97, normalize="peak_abs",
                                                 frame_length=400, frame_step=160,
                                                 num_filters=32)),
    "mfcc-plain": dict(block="mfcc", params=dict(num_coefficients=13, log_mode="clamp")),
}


@pytest.mark.parametrize("variant", ["q15", "q31"])
@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("slices", [4, 5])
def test_incremental_equals_full_recomputation(name, variant, slices):
    block = make_block(**BLOCKS[name])
    window = 16000
    stride = window // slices
    x = _stream(5 * 16000 + 123, seed=slices)
    starts = list(range(0, len(x) - window + 1, stride))
    wf = WindowFeatures(block, variant, window, stride)
    assert wf.incremental, wf.reason
    # pushed in uneven pieces, as a stream arrives
    got, done = [], 0
    for end in (9000, 23000, 23001, 51000, len(x)):
        ready = [s for s in starts if done <= s and s + window <= end]
        if ready:
            got.append(wf.features(x[:end], 0, ready))
            done = ready[-1] + 1
    got = np.concatenate(got)
    full = block.features(np.stack([x[s:s + window] for s in starts]), variant)
    assert got.dtype == full.dtype and np.array_equal(got, full)
    assert wf.frames_computed < wf.frames_full
    if name == "mlperf-kws" and slices == 5:      # 10 frame steps a stride: 10 + 1 frames
        assert wf.frames_computed == block.front.num_frames(window) + 11 * (len(starts) - 1)


@pytest.mark.parametrize("variant", ["q15", "q31"])
def test_stream_preset_with_a_frame_aligned_stride(variant):
    """mlperf-kws-stream at 4 slices with [stream] align_stride: stride 3840 samples = 12
    frame steps, so a stride computes its 12 new frames and the window's first frame (13 of
    49); the features equal the whole window's, bit for bit."""
    from kiloml.deploy.stream import window_stride
    from kiloml.train.streaming import StreamSettings

    block = make_block(preset="mlperf-kws-stream")
    assert block.params.normalize == "none"
    window = 16000
    stride = window_stride(block, window, StreamSettings(slices_per_window=4,
                                                         align_stride=True))
    assert stride == 3840
    assert window_stride(block, window, StreamSettings(slices_per_window=4)) == 4000
    x = _stream(6 * 16000 + 77, seed=9)
    starts = list(range(0, len(x) - window + 1, stride))
    wf = WindowFeatures(block, variant, window, stride)
    assert wf.incremental, wf.reason
    got = np.concatenate([wf.features(x, 0, starts[:5]), wf.features(x, 0, starts[5:])])
    full = block.features(np.stack([x[s:s + window] for s in starts]), variant)
    assert got.dtype == full.dtype and np.array_equal(got, full)
    assert wf.frames_computed == block.front.num_frames(window) + 13 * (len(starts) - 1)


def test_f32_and_other_blocks_recompute_every_window():
    x = _stream(3 * 16000)
    block = make_block(preset="mlperf-kws")
    wf = WindowFeatures(block, "f32", 16000, 4000)
    assert not wf.incremental and "f32" in wf.reason
    starts = [0, 4000, 8000]
    got = wf.features(x, 0, starts)
    full = block.features(np.stack([x[s:s + 16000] for s in starts]), "f32")
    assert np.array_equal(got, full)
    spec = make_block("spectral", params={"band_edges_hz": [0, 1, 2, 4]})
    assert not WindowFeatures(spec, "f32", 50, 10).incremental
