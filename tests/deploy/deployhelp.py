"""Shared helpers of the deploy tests: real windows from ../shared, small int8 models built here
(no training), the Python model path on given features, and C build helpers.

Models: ``kws_graph`` is DS-CNN shaped (the MLPerf Tiny KWS layout: conv 10x4 stride 2, depthwise
and pointwise blocks, average pool, fully connected, softmax) with seeded random weights,
calibrated on real mlperf-kws features so its predictions vary with the input; ``imu_graph`` a
two-layer dense classifier on normalized spectral features; ``identity_graph`` a single
RESHAPE, whose output is its int8 input: scores then show the quantized model input itself.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from kiloml.compress.quantize import run_int8
from kiloml.deploy.spec import DeploySpec
from kiloml.dsp import make_block
from kiloml.dsp.apply import apply_block, block_quant
from kiloml.ir.builder import GraphBuilder
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.ops.reshape import ReshapeAttrs
from kiloml.train.models import to_model_input
from kiloml.train.normalize import Normalizer

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SPEECH = SHARED / "data" / "speech_commands"
MAGIC = SHARED / "data" / "magic_wand"
KWS_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_"]
IMU_LABELS = ["negative", "ring", "slope", "wing"]
IMU_FRAMES = 50                      # 2 s at 25 Hz
COMMAND = "kiloml deploy --test"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-O2"]
CORES = {   # core -> (flags, kernel set the core compiles)
    "cortex-m0plus": (["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"], "portable"),
    "cortex-m4f-softfp": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp",
                           "-mfpu=fpv4-sp-d16"], "armv7em"),
    "cortex-m4f-hard": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
                        "armv7em"),
    "cortex-m7": (["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
                  "armv7em"),
    "cortex-m33": (["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
                   "armv7em"),
}


def require_shared() -> None:
    """Real data is part of CI: its absence is a failure, never a silent skip."""
    assert SPEECH.is_dir() and MAGIC.is_dir(), f"shared data missing under {SHARED}"


# ---------------------------------------------------------------- real windows


@functools.lru_cache(maxsize=None)
def speech_windows(per_label: int = 1, skip: int = 0) -> np.ndarray:
    """int16 (N, 16000): ``per_label`` clips of every KWS label (zero-padded), then edge cases:
    digital silence, a full-scale square wave, a DC offset, a few LSB of noise."""
    from kiloml.data.wav import read_wav

    require_shared()
    out = []
    for lab in KWS_LABELS:
        for p in sorted((SPEECH / lab).glob("*.wav"))[skip:skip + per_label]:
            d = read_wav(p).data[:16000, 0]
            z = np.zeros(16000, np.int16)
            z[:len(d)] = d
            out.append(z)
    t = np.arange(16000)
    rng = np.random.default_rng(5)
    out += [np.zeros(16000, np.int16), np.where(t % 40 < 20, 32767, -32768).astype(np.int16),
            np.full(16000, -1200, np.int16),
            np.round(rng.standard_normal(16000) * 3).astype(np.int16)]
    return np.stack(out)


@functools.lru_cache(maxsize=None)
def imu_windows(per_label: int = 3) -> np.ndarray:
    """float32 (N, 50, 3) milli-g: the first 50 frames of ``per_label`` gestures of each label
    of the TFLM magic_wand recordings (25 Hz), then a constant window."""
    from kiloml.data.readers import read_serial_log

    require_shared()
    out = []
    for lab in IMU_LABELS:
        got = 0
        for f in sorted((MAGIC / lab).glob("*.txt")):
            rec = read_serial_log(f, rate=25)
            for o, n in rec.segments:
                if n >= IMU_FRAMES and got < per_label:
                    out.append(rec.data[o:o + IMU_FRAMES])
                    got += 1
            if got == per_label:
                break
    out.append(np.full((IMU_FRAMES, 3), [10.0, -20.0, 980.0]))
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------- blocks and graphs


def kws_block(preset: str = "mlperf-kws"):
    return make_block(preset=preset)


def imu_block():
    return make_block("spectral", params=dict(sample_rate=25.0, fft_length=32,
                                              band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5],
                                              num_peaks=3))


def _force_input(b: GraphBuilder, t: int, scale: float, zp: int) -> None:
    """Give the input tensor ``t`` the quantization (scale, zp) before any layer reads it."""
    b.tensors[t].quant = QuantParams(np.float32([scale]), [zp])
    s = float(np.float32(scale))
    q = np.clip(np.round(b.floats[t] / s) + zp, -128, 127)
    b.floats[t] = (q - zp) * s


def kws_graph(feats: np.ndarray, width: int = 24, seed: int = 0,
              input_quant: tuple[float, int] | None = None) -> Graph:
    """DS-CNN shaped, (1, 49, 10, 1) -> 12 classes, calibrated on ``feats`` (N, 49, 10)."""
    b = GraphBuilder(seed)
    x = b.input(np.asarray(feats, np.float64).reshape(-1, 1, 49, 10, 1))
    if input_quant is not None:
        _force_input(b, x, *input_quant)
    x = b.conv2d(x, width, (10, 4), stride=2, name="conv0")
    for i in range(2):
        x = b.conv2d(x, width, (3, 3), depthwise=True, name=f"dw{i + 1}")
        x = b.conv2d(x, width, (1, 1), name=f"pw{i + 1}")
    x = b.avg_pool_all(x)
    x = b.reshape(x, (1, width))
    x = b.fully_connected(x, len(KWS_LABELS), name="fc")
    return b.build([b.softmax(x)], name="kws-test-dscnn")


def dense_graph(feats: np.ndarray, classes: int, hidden: int = 16, seed: int = 0,
                input_quant: tuple[float, int] | None = None) -> Graph:
    """(1, F) -> ``hidden`` ReLU -> ``classes`` -> softmax, calibrated on ``feats`` (N, F)."""
    b = GraphBuilder(seed)
    f = np.asarray(feats, np.float64).reshape(len(feats), 1, -1)
    x = b.input(f)
    if input_quant is not None:
        _force_input(b, x, *input_quant)
    x = b.fully_connected(x, hidden, activation="RELU", name="fc1")
    x = b.fully_connected(x, classes, name="fc2")
    return b.build([b.softmax(x)], name="dense-test")


def identity_graph(size: int, scale: float, zero_point: int) -> Graph:
    """One RESHAPE (1, size) -> (1, size): the output is the int8 input."""
    q = QuantParams(np.float32([scale]), [zero_point])
    tensors = [Tensor("input", (1, size), "int8", None, q),
               Tensor("shape", (2,), "int32", np.array([1, size], np.int32)),
               Tensor("output", (1, size), "int8", None, q)]
    node = Node("RESHAPE", [0, 1], [2], ReshapeAttrs((1, size)), "identity")
    return Graph(tensors, [node], [0], [2], name="identity")


# ---------------------------------------------------------------- specs


@functools.lru_cache(maxsize=None)
def kws_calibration(preset: str = "mlperf-kws") -> np.ndarray:
    """mlperf-kws features (dequantized) of clips not used as test windows."""
    x = speech_windows(per_label=2, skip=3).astype(np.float64) / 32768
    return apply_block(kws_block(preset), x[..., None])


def kws_spec(variant: str = "q15", board="nano33ble", direct: bool = False,
             name: str = "kws", command: str = COMMAND,
             preset: str = "mlperf-kws") -> DeploySpec:
    """The KWS pipeline; ``direct``: the model calibrated with the block's own quantization
    (what training does), else with its own input scale (the table path); ``preset``: the
    MFCC preset (mlperf-kws-stream: without the per-clip peak normalization)."""
    block = kws_block(preset)
    iq = block_quant(block) if direct else None
    g = kws_graph(kws_calibration(preset), input_quant=iq)
    return DeploySpec(name, g, block, 16000, 1, 16000.0, 1000.0, KWS_LABELS,
                      input_quant=iq, layout="image1", dsp_variant=variant, board=board,
                      command=command)


@functools.lru_cache(maxsize=None)
def imu_normalizer(kind: str = "feature") -> Normalizer:
    return Normalizer.fit(kind, apply_block(imu_block(), imu_windows(per_label=6)))


def imu_spec(board="nano33ble", kind: str = "feature", name: str = "wand",
             command: str = COMMAND) -> DeploySpec:
    block = imu_block()
    norm = imu_normalizer(kind)
    feats = norm(apply_block(block, imu_windows(per_label=6)))
    g = dense_graph(feats, len(IMU_LABELS))
    return DeploySpec(name, g, block, IMU_FRAMES, 3, 25.0, 2000.0, IMU_LABELS,
                      normalizer=norm.state(), layout="flat", dsp_variant="f32", board=board,
                      command=command)


# ---------------------------------------------------------------- Python model path


def model_path(spec: DeploySpec, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, predictions) of the Python path from given float features: the normalizer,
    to_model_input, the reference interpreter on quantize_input's int8 (run_int8)."""
    norm = Normalizer.from_state(spec.normalizer) if isinstance(spec.normalizer, dict) \
        else spec.normalizer
    q = run_int8(spec.graph, to_model_input(norm(features), spec.layout), dequantize=False)
    q = q.reshape(len(features), -1)
    t = spec.graph.tensors[spec.graph.outputs[0]]
    scores = (q.astype(np.int32) - t.zero_point).astype(np.float32) * np.float32(t.scale)
    return scores, q.argmax(axis=1)


def model_input(spec: DeploySpec, features: np.ndarray) -> np.ndarray:
    """The int8 model input the Python path computes from float features."""
    from kiloml.compress.quantize import quantize_input, to_nhwc

    norm = Normalizer.from_state(spec.normalizer) if isinstance(spec.normalizer, dict) \
        else spec.normalizer
    t = spec.graph.tensors[spec.graph.inputs[0]]
    x = to_nhwc(to_model_input(norm(features), spec.layout))
    return quantize_input(x, t.scale, t.zero_point).reshape(len(features), -1)


# ---------------------------------------------------------------- C builds


def package_sources(pkg: Path, kernels: str) -> tuple[list[Path], list[Path]]:
    """(sources, include dirs) of a C package for one kernel set, from its <name>.json."""
    import json

    meta = json.loads(next(pkg.glob("*.json")).read_text())
    b = meta["build"]
    ks = b["kernel_sets"][kernels]
    return ([pkg / s for s in b["sources"] + ks["sources"]],
            [pkg / d for d in b["include_dirs"]] + [pkg / ks["include_dir"]])


def compile_objects(cc: str, flags: list[str], sources: list[Path], includes: list[Path],
                    out: Path) -> None:
    """Compile every source to an object in ``out``; fail the test on any diagnostic."""
    out.mkdir(parents=True, exist_ok=True)
    for s in sources:
        cmd = [cc, *flags, *WARN, *[f"-I{i}" for i in includes], "-c", str(s), "-o",
               str(out / (s.stem + ".o"))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr.strip(), f"{' '.join(cmd)}\n{r.stderr}"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is part of the toolchain (make toolchain)"
    return path


# The streaming harnesses' event lines: every C harness of a stream test prints its events
# with PRINT_EVENTS (inside a loop over pushes, `events` of k entries) and the test reads them
# back with stream_events.
PRINT_EVENTS = r"""
        for (i = 0; i < k; ++i) {
            printf("event %d %d %llu\n", (int)events[i].label, (int)events[i].score,
                   (unsigned long long)events[i].sample);
        }"""


def stream_events(stdout: str) -> list[tuple[int, int, int]]:
    """(label index, score, sample) of every ``event`` line a harness printed."""
    return [tuple(int(v) for v in ln.split()[1:]) for ln in stdout.splitlines()
            if ln.startswith("event")]


def fixed_stream(spec: DeploySpec, average_window_ms: float) -> DeploySpec:
    """``spec`` with a stream that fires on every smoothed score >= 100 (minimum count 1,
    no suppression): many detections, so that the C and the twin are compared often."""
    from dataclasses import replace

    from kiloml.train.streaming import StreamSettings

    return replace(spec, stream=StreamSettings(detection_threshold=100, minimum_count=1,
                                               suppression_ms=0.0,
                                               average_window_ms=average_window_ms))
