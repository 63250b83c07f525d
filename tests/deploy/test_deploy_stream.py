"""The streaming twin: decisions independent of how samples are pushed, and equal to the
window-by-window Python path (run_python) followed by RecognizeCommands."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployhelp import imu_spec, imu_windows, kws_spec, speech_windows  # noqa: E402
from kiloml.deploy.run import run_python  # noqa: E402
from kiloml.deploy.stream import StreamPipeline, run_stream, u8_scores  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.train.streaming import RecognizeCommands, StreamSettings  # noqa: E402

# low bar so the seeded random model makes decisions to compare
SETTINGS = StreamSettings(slices_per_window=5, average_window_ms=400, detection_threshold=40,
                          suppression_ms=300, minimum_count=1)


def _speech_stream() -> np.ndarray:
    w = speech_windows()
    rng = np.random.default_rng(3)
    parts = [w[i, :int(rng.integers(6000, 16000))] for i in range(len(w))]
    return np.concatenate(parts).astype(np.int16)


def _reference(spec, x, settings):
    """Every window stacked and run through run_python, then RecognizeCommands."""
    pipe = StreamPipeline(spec, settings)
    starts = range(0, len(x) - pipe.window + 1, pipe.stride)
    win = np.stack([x[s:s + pipe.window] for s in starts])
    scores = u8_scores(run_python(spec, win).scores)
    rc = RecognizeCommands(spec.labels, settings)
    out = []
    for s, sc in zip(starts, scores):
        end = s + pipe.window
        got = rc.detect(sc.tolist(), int(end * 1000 // pipe.rate))
        if got:
            out.append((end, spec.labels[got[0]], got[1]))
    return out


@pytest.mark.parametrize("variant", ["q15", "q31", "f32"])
def test_stream_equals_window_path_and_ignores_push_sizes(variant):
    spec = kws_spec(variant, direct=True)
    x = _speech_stream()
    whole, pipe = run_stream(spec, x, SETTINGS)
    ref = _reference(spec, x, SETTINGS)
    assert [(d.sample, d.label, d.score) for d in whole] == ref
    assert len(ref) >= 3
    assert pipe.features.incremental == (variant != "f32")
    if variant != "f32":     # 10 frame steps a stride: 11 frames computed
        assert pipe.features.frames_computed < pipe.features.frames_full / 4
    for block in (1000, 4001, 16000):
        got, _ = run_stream(spec, x, SETTINGS, block=block)
        assert got == whole


def test_imu_stream_recomputes_windows_and_matches():
    spec = imu_spec()
    w = imu_windows()
    x = np.concatenate(list(w)).astype(np.float32)
    st = SETTINGS.model_copy(update={"average_window_ms": 1000})
    whole, pipe = run_stream(spec, x, st)
    assert pipe.features is None
    got, _ = run_stream(spec, x, st, block=7)
    assert got == whole
    assert [(d.sample, d.label, d.score) for d in whole] == _reference(spec, x, st)


def test_bad_pushes_are_refused():
    pipe = StreamPipeline(kws_spec("q15", direct=True), SETTINGS)
    with pytest.raises(KilomlError):
        pipe.push(np.zeros((10, 2), np.int16))
    with pytest.raises(KilomlError):
        pipe.push(np.array([40000]))
    assert pipe.push(np.zeros(100, np.int16)) == [] and pipe.position == 100
