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

With ``[stream] wake = true`` (audio only) a wake gate (kiloml.train.streaming.WakeGate)
decides first, on the energy of each window's last stride: a window it does not let through
gets no features, no inference and no result in the smoothing (the C skips the same work).

Windows that complete within one push are computed together (batched), so the decisions do
not depend on how the samples are cut into pushes (the tests check it).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from kiloml.deploy.cstream import EVENT_BYTES
from kiloml.deploy.run import block_output_features, classify_features
from kiloml.deploy.spec import DeploySpec, has_heads
from kiloml.dsp.apply import apply_block, block_quant
from kiloml.dsp.stream import WindowFeatures
from kiloml.errors import KilomlError
from kiloml.train.streaming import (Detection, RecognizeCommands, StreamSettings, WakeGate,
                                    motion_energy, stride_energy)

WINDOWS_PER_STEP = 256


def stride_samples(frames: int, slices: int, step: int = 1) -> int:
    """Samples between window starts: the window over ``slices``, rounded to a whole number
    of ``step`` samples (the DSP block's frame step with ``[stream] align_stride``)."""
    s = int(round(frames / slices / step)) * step
    if s < 1:
        raise KilomlError(f"{slices} slices per window of {frames} samples: the stride would "
                          "be under one sample")
    return s


def window_stride(block, frames: int, settings: StreamSettings) -> int:
    """The stream's stride for ``block``: ``stride_samples`` with the block's frame step when
    ``settings.align_stride`` and the block has frames (audio mel blocks), else 1."""
    step = 1
    if settings.align_stride and getattr(block, "audio", False) and hasattr(block, "front"):
        step = int(block.params.frame_step)
    return stride_samples(int(frames), settings.slices_per_window, step)


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
        self.stride = window_stride(spec.block, self.window, self.settings)
        self.audio = bool(spec.block.audio)
        self.integer = self.audio and spec.dsp_variant in ("q15", "q31")
        self.features = WindowFeatures(spec.block, spec.dsp_variant, self.window,
                                       self.stride) if self.audio else None
        self.recognizer = RecognizeCommands(spec.labels, self.settings)
        self.gate = WakeGate(self.settings, self.stride, self.rate) if self.settings.wake \
            else None
        shape = (0,) if self.audio else (0, int(spec.channels))
        self._buf = np.zeros(shape, np.int16 if self.audio else np.float32)
        self._buf_start = 0              # stream position of _buf[0]
        self._next = 0                   # start of the next window
        self.windows = 0
        # per sensor: the stream position just past the last sample pushed without it
        # (``push(..., missing=mask)``); the C's <name>_gone_until
        self._gone_until = [0] * len(spec.sensors)

    def _gated(self, starts: list[int]) -> list[int]:
        """Count the windows ``starts`` and keep those the wake gate lets through."""
        if starts:
            self._next = starts[-1] + self.stride
        self.windows += len(starts)
        if self.gate is None:
            return starts
        b, w, st = self._buf, self.window, self.stride
        if self.audio:
            return [s for s in starts if self.gate.step(stride_energy(
                b[s + w - st - self._buf_start:s + w - self._buf_start]))]
        scale = self.settings.wake_imu_scale
        return [s for s in starts if self.gate.step(motion_energy(
            b[s + w - st - self._buf_start:s + w - self._buf_start], scale))]

    def _drop(self, end: int) -> None:
        drop = min(self._next, end) - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    def wake_stats(self) -> tuple[int, int]:
        """(windows seen, windows let through) by the wake gate (all of them without one)."""
        if self.gate is None:
            return self.windows, self.windows
        return self.gate.seen, self.gate.passed

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

    def _missing(self, x: np.ndarray, missing: int) -> np.ndarray:
        """``x`` with the channels of the sensors in the bit mask ``missing`` zeroed, and the
        mask noted for the windows that span these samples (the twin of
        ``<name>_stream_push_sensors`` with those buffers NULL)."""
        if not missing:
            return x
        sensors = self.spec.sensors
        if self.audio or not 0 < int(missing) < (1 << len(sensors)):
            raise KilomlError(f"stream: missing mask {missing}: the model has sensors "
                              f"{[nm for nm, _ in sensors]}")
        x = x.copy()
        end, first = self.position + len(x), 0
        for k, (_, axes) in enumerate(sensors):
            if int(missing) >> k & 1:
                x[:, first:first + axes] = 0
                self._gone_until[k] = end
            first += axes
        return x

    def window_missing(self, start: int) -> int:
        """The bit mask of the sensors missing in some sample of the window at ``start``."""
        return sum(1 << k for k, g in enumerate(self._gone_until) if g > start)

    def push(self, samples, missing: int = 0) -> list[Detection]:
        """Append ``samples``; the detections of the windows they complete, in time order.
        ``missing`` (multi-sensor): a bit mask of sensors these samples lack (their channels
        are zeroed; a model with a head per sensor answers such windows with the remaining
        sensor's head, as ``<name>_stream_push_sensors`` with NULL buffers)."""
        x = self._missing(self._check(samples), missing)
        self._buf = np.concatenate([self._buf, x])
        end = self.position
        starts = self._gated(list(range(self._next, end - self.window + 1, self.stride)))
        events: list[Detection] = []
        for a in range(0, len(starts), WINDOWS_PER_STEP):
            events += self._windows(starts[a:a + WINDOWS_PER_STEP])
        self._drop(end)
        return events

    def window_scores(self, samples, missing: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Like ``push`` but without the smoothing: the end (sample) and the 0..255 scores
        of every window that ``samples`` complete and the wake gate lets through (the
        calibration sweeps RecognizeCommands' settings over them)."""
        x = self._missing(self._check(samples), missing)
        self._buf = np.concatenate([self._buf, x])
        end = self.position
        starts = self._gated(list(range(self._next, end - self.window + 1, self.stride)))
        ends, scores = [], []
        for a in range(0, len(starts), WINDOWS_PER_STEP):
            part = starts[a:a + WINDOWS_PER_STEP]
            ends += [s + self.window for s in part]
            scores.append(self._scores(part))
        self._drop(end)
        k = len(self.spec.labels)
        return (np.asarray(ends, np.int64),
                np.concatenate(scores) if scores else np.zeros((0, k), np.int64))

    def _scores(self, starts: list[int]) -> np.ndarray:
        spec = self.spec
        if self.audio:
            f = self.features.features(self._buf, self._buf_start, starts)
            # int8 / Q20 integer output, or the f32 forward (int8 when the block quantizes)
            quantized = self.integer or block_quant(spec.block) is not None
            feats = block_output_features(spec, f) if quantized else f.astype(np.float32)
        else:
            idx = np.asarray(starts)[:, None] - self._buf_start + np.arange(self.window)[None]
            feats = apply_block(spec.block, self._buf[idx])
        if not has_heads(spec):
            return u8_scores(classify_features(spec, feats).scores)
        # a head per sensor: each window answered by the head of the sensors it had
        masks = np.array([self.window_missing(s) for s in starts])
        out = np.zeros((len(starts), len(spec.labels)), np.int64)
        for m in np.unique(masks):
            rows = masks == m
            out[rows] = u8_scores(classify_features(spec, feats[rows], int(m)).scores)
        return out

    def _windows(self, starts: list[int]) -> list[Detection]:
        spec = self.spec
        scores = self._scores(starts)
        out = []
        for s, sc in zip(starts, scores):
            end = s + self.window
            got = self.recognizer.detect(sc.tolist(), int(end * 1000 // self.rate))
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


# ---- the package's C streaming API (kiloml.deploy.cstream) on the host and in the emulator --

PUSH_EVENTS = 64        # events room per push in the harnesses

STREAM_HOST_HARNESS = """/* kiloml stream check harness (host): not part of the package */
#include <stdio.h>
#include <stdlib.h>

#include "{n}.h"

static {raw_t} buf[{block} * {channels}];
static {n}_event_t events[{room}];

int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    size_t got;
    int32_t k, i;
    if (argc != 3) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    {n}_stream_init();
    while ((got = fread(buf, sizeof buf[0] * {channels}, {block}, fi)) > 0) {{
        k = {n}_stream_push(buf, (uint32_t)got, events, {room}u);
        if (k < 0) {{ return 5; }}
        if (k > {room}) {{ return 6; }}
        for (i = 0; i < k; ++i) {{
            int64_t rec[2];
            rec[0] = (int64_t)events[i].label * 65536 + events[i].score;
            rec[1] = (int64_t)events[i].sample;
            fwrite(rec, sizeof rec[0], 2, fo);
        }}
    }}
    {{
        uint64_t st[2];
        {n}_stream_wake_stats(&st[0], &st[1]);
        fwrite(st, sizeof st[0], 2, fo);
    }}
    fclose(fi);
    fclose(fo);
    return 0;
}}
"""


def _stream_meta(package_dir) -> tuple[dict, dict]:
    from kiloml.deploy.run import load_manifest

    meta = load_manifest(package_dir)
    if "stream" not in meta:
        raise KilomlError(f"{package_dir}: the package has no streaming API (written by an "
                          "older kiloml): deploy it again")
    return meta, meta["stream"]


def _stream_samples(meta: dict, samples) -> np.ndarray:
    x = np.asarray(samples)
    ch = int(meta["channels"])
    if meta["raw_input"]["ctype"] == "int16_t":
        if x.ndim != 1 or x.dtype.kind not in "iu":
            raise KilomlError("stream: audio is pushed as 1-D 16-bit PCM")
        return x.astype("<i2")
    if x.ndim == 1 and ch == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != ch:
        raise KilomlError(f"stream: the package takes (n, {ch}) frames")
    return np.ascontiguousarray(x, dtype="<f4")


def _events(meta: dict, rec: np.ndarray) -> list[Detection]:
    rate = float(meta["sample_rate_hz"])
    rec = rec.reshape(-1, 2)
    return [Detection(int(s) / rate, int(s), meta["labels"][int(ls) >> 16], int(ls) & 0xFFFF)
            for ls, s in rec]


def run_stream_host(package_dir, samples, block: int = 1000, sanitize: bool = False,
                    stats: Optional[dict] = None) -> list[Detection]:
    """The package's C streaming API built for the host (portable kernels, warnings as
    errors, ``sanitize``: ASan/UBSan) and fed ``samples`` in pushes of ``block`` samples
    (frames); the detections. ``stats``, when given, gets ``seen`` and ``passed`` (windows,
    ``<name>_stream_wake_stats``)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from kiloml.deploy.run import build_host_exe
    from kiloml.errors import ToolchainError

    root = Path(package_dir)
    meta, _ = _stream_meta(root)
    x = _stream_samples(meta, samples)
    block = max(1, int(block))
    with tempfile.TemporaryDirectory(prefix="kiloml_stream_host_") as tmp:
        d = Path(tmp)
        exe = build_host_exe(root, meta, d / "kml_stream_harness.c", STREAM_HOST_HARNESS.format(
            n=meta["name"], raw_t=meta["raw_input"]["ctype"], block=block,
            channels=int(meta["channels"]), room=PUSH_EVENTS), sanitize=sanitize)
        fin, fout = d / "in.bin", d / "out.bin"
        fin.write_bytes(x.tobytes())
        proc = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True,
                              timeout=3600)
        if proc.returncode != 0:
            raise ToolchainError(f"the package's stream failed on the host (exit "
                                 f"{proc.returncode}):\n{proc.stderr.strip()[:2000]}")
        rec = np.frombuffer(fout.read_bytes(), "<i8")
        if stats is not None:
            stats["seen"], stats["passed"] = (int(v) for v in rec[-2:].view("<u8"))
        return _events(meta, rec[:-2])


def _stream_emulator_harness(meta: dict, block: int, room: int) -> str:
    from kiloml.targets.batch import END_MARKER, END_SYMBOL, INPUT_BASE

    n, ch, raw_t = meta["name"], int(meta["channels"]), meta["raw_input"]["ctype"]
    return "\n".join([
        "/* kiloml stream check harness (bare metal): not part of the package */",
        "#include <stdint.h>", "", f'#include "{n}.h"', "",
        f"#define KML_BATCH_BASE 0x{INPUT_BASE:08x}u",
        f"{n}_event_t kml_stream_events[{room}];", "int32_t kml_stream_count;",
        "int32_t kml_stream_status;", "int main(void);", END_MARKER,
        "int main(void)", "{",
        "    const uint32_t frames = *(const volatile uint32_t *)KML_BATCH_BASE;",
        f"    const {raw_t} *raw = (const {raw_t} *)(KML_BATCH_BASE + 8u);",
        "    uint32_t at = 0;", "    int32_t k;",
        f"    {n}_stream_init();",
        "    kml_stream_count = 0;",
        "    while (at < frames) {",
        f"        uint32_t take = frames - at < {block}u ? frames - at : {block}u;",
        f"        k = {n}_stream_push(raw + at * {ch}u, take, &kml_stream_events[kml_stream_count],",
        f"                          {room}u - (uint32_t)kml_stream_count);",
        "        if (k < 0 || kml_stream_count + k > " + str(room) + ") {",
        "            kml_stream_status = k < 0 ? 1 : 2;", f"            {END_SYMBOL}();",
        "            return 1;", "        }",
        "        kml_stream_count += k;", "        at += take;", "    }",
        f"    {END_SYMBOL}();", "    return 0;", "}", ""])


def run_stream_emulator(package_dir, samples, board=None, block: int = 1000,
                        room: int = 256, timeout_s: float = 600.0) -> list[Detection]:
    """The package's C streaming API cross-compiled for ``board``'s core (default: the
    package's board) and run in the emulator over ``samples`` in pushes of ``block``; the
    detections (at most ``room``)."""
    import tempfile
    from pathlib import Path

    from kiloml.deploy.run import (MAX_INSTRUCTIONS_PER_WINDOW, _board, _compile_list, _fpu,
                                   _kernel_set)
    from kiloml.errors import ToolchainError
    from kiloml.targets.batch import build_image, run_image
    from kiloml.targets.profile import default_runtime

    root = Path(package_dir)
    meta, st = _stream_meta(root)
    x = _stream_samples(meta, samples)
    frames = len(x)
    board_id, b, flags = _board(meta, board)
    core = str(b["core"])
    sources, includes = _compile_list(root, meta, _kernel_set(meta, default_runtime(core),
                                                              f"{board_id} ({core})"))
    windows = max(0, (frames - int(meta["window_samples"])) // int(st["stride_samples"]) + 1)
    with tempfile.TemporaryDirectory(prefix="kiloml_stream_emu_") as tmp:
        d = Path(tmp)
        harness = d / "kml_stream_harness.c"
        harness.write_text(_stream_emulator_harness(meta, max(1, int(block)), room))
        image = build_image(sources + [harness], includes, flags, d)
        got = run_image(image, core, {"kml_stream_events": EVENT_BYTES * room,
                                      "kml_stream_count": 4, "kml_stream_status": 4},
                        fpu=_fpu(flags), timeout_s=timeout_s,
                        input_data=np.array([frames, 0], np.uint32).tobytes() + x.tobytes(),
                        max_instructions=(windows + 1) * MAX_INSTRUCTIONS_PER_WINDOW)
    status = int(np.frombuffer(got["kml_stream_status"], np.int32)[0])
    if status:
        raise ToolchainError(f"{board_id}: {meta['name']}_stream_push failed in the emulator "
                             f"({'DSP or model error' if status == 1 else 'too many events'})")
    count = int(np.frombuffer(got["kml_stream_count"], np.int32)[0])
    ev = np.frombuffer(got["kml_stream_events"], np.uint8).reshape(room, EVENT_BYTES)[:count]
    rate = float(meta["sample_rate_hz"])
    out = []
    for r in ev:
        label, score = (int(v) for v in r[:8].copy().view("<i4"))
        s = int(r[8:].copy().view("<u8")[0])
        out.append(Detection(s / rate, s, meta["labels"][label], score))
    return out


def _cycles_harness(meta: dict, warm: np.ndarray, measure: np.ndarray,
                    offsets: Optional[list[int]]) -> str:
    """Pushes ``warm`` outside the counted region, then ``measure`` inside it; or, with
    ``offsets``, classifies the windows of ``measure`` starting at those frames instead."""
    from kiloml.dsp.cgen import table

    n, raw_t = meta["name"], meta["raw_input"]["ctype"]
    ch = int(meta["channels"])
    lines = ["/* kiloml stream cycles harness: not part of the package */", "#include <stdint.h>",
             "", f'#include "{n}.h"', "",
             *([table("kml_warm", raw_t, warm.reshape(-1))] if offsets is None else []),
             table("kml_measure", raw_t, measure.reshape(-1)),
             f"{n}_event_t kml_events[64];",
             f"float kml_scores[{len(meta['labels'])}];", "volatile int32_t kml_result;",
             "int main(void);",
             "__attribute__((noinline)) void kml_profile_begin(void);",
             "__attribute__((noinline)) void kml_profile_end(void);",
             'void kml_profile_begin(void) { __asm volatile ("" ::: "memory"); }',
             'void kml_profile_end(void) { __asm volatile ("" ::: "memory"); }',
             "int main(void)", "{", "    int32_t r = 0;"]
    if offsets is None:
        lines += [f"    {n}_stream_init();",
                  f"    r += {n}_stream_push(kml_warm, {len(warm)}u, kml_events, 64u);",
                  "    kml_profile_begin();",
                  f"    r += {n}_stream_push(kml_measure, {len(measure)}u, kml_events, 64u);"]
    else:
        lines += ["    kml_profile_begin();"]
        lines += [f"    r += {n}_classify(kml_measure + {o * ch}u, kml_scores);" for o in offsets]
    lines += ["    kml_profile_end();", "    kml_result = r;", "    return 0;", "}", ""]
    return "\n".join(lines)


def stream_cycles(package_dir, samples, board=None, warm_windows: int = 2,
                  windows: int = 4) -> dict:
    """Cycles per stride of the package's streaming pipeline on ``board``'s core (emulator,
    estimated cycles as kiloml profile counts them): ``stream`` (``<name>_stream_push`` in
    steady state, after ``warm_windows`` windows) and ``full`` (``<name>_classify`` on the
    same windows: the whole window recomputed), each split into ``dsp`` (from the DSP
    function's entry to the model's) and ``model`` (the model, then the smoothing, scores and
    ring up to the next DSP call), per stride."""
    import tempfile
    from pathlib import Path

    from kiloml.deploy.run import _board, _compile_list, _fpu, _kernel_set
    from kiloml.targets.batch import build_image
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import default_runtime

    root = Path(package_dir)
    meta, st = _stream_meta(root)
    x = _stream_samples(meta, samples)
    W, S = int(meta["window_samples"]), int(st["stride_samples"])
    warm_end = W + (max(1, warm_windows) - 1) * S        # the warm-up windows end here
    end = warm_end + windows * S
    if len(x) < end:
        raise KilomlError(f"cycles: need {end} samples, got {len(x)}")
    first = warm_end + S - W                              # the first measured window's start
    board_id, b, flags = _board(meta, board)
    core = str(b["core"])
    sources, includes = _compile_list(root, meta, _kernel_set(meta, default_runtime(core),
                                                              f"{board_id} ({core})"))
    n = meta["name"]
    dsp_entry = f"{n}_dsp_divisor" if st.get("frame_slots") else meta["build"]["features_function"]
    out = {"board": board_id, "core": core, "clock_hz": float(b["clock_hz"]),
           "windows": windows, "incremental": bool(st.get("frame_slots"))}
    for mode in ("stream", "full"):
        with tempfile.TemporaryDirectory(prefix="kiloml_stream_cycles_") as tmp:
            d = Path(tmp)
            if mode == "full":
                h = _cycles_harness(meta, x[:0], x[first:end], [k * S for k in range(windows)])
            else:
                h = _cycles_harness(meta, x[:warm_end], x[warm_end:end], None)
            (d / "kml_cycles_harness.c").write_text(h)
            image = build_image(sources + [d / "kml_cycles_harness.c"], includes, flags, d)
            entry = meta["build"]["features_function"] if mode == "full" else dsp_entry
            emu = emulate(image, core, kernel_entries=[entry, f"{n}_model_invoke"],
                          fpu=_fpu(flags))
        dsp = sum(s.cycles for s in emu.segments if s.name == entry)
        model = sum(s.cycles for s in emu.segments if s.name == f"{n}_model_invoke")
        calls = sum(1 for s in emu.segments if s.name == entry)
        if calls != windows:
            raise KilomlError(f"cycles: {calls} DSP calls in the measured part, expected "
                              f"{windows}")
        out[mode] = {"dsp": dsp / windows, "model": model / windows,
                     "total": emu.cycles / windows}
    return out


def gate_cycles(package_dir, board=None, strides: int = 4) -> float:
    """Cycles per stride of a package with a wake gate while the gate is closed (on
    zeros: the first window opens it, the hold lets windows through, then it stays shut):
    the ring writes and the gate's energy, no DSP, no model (checked)."""
    import tempfile
    from pathlib import Path

    from kiloml.deploy.run import _board, _compile_list, _fpu, _kernel_set
    from kiloml.targets.batch import build_image
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import default_runtime

    root = Path(package_dir)
    meta, st = _stream_meta(root)
    if not st.get("wake"):
        raise KilomlError(f"{root}: the package has no wake gate ([stream] wake = false)")
    W, S = int(meta["window_samples"]), int(st["stride_samples"])
    shape = () if meta["raw_input"]["ctype"] == "int16_t" else (int(meta["channels"]),)
    dtype = np.int16 if not shape else np.float32
    warm = np.zeros((W + (int(st["wake_hold_strides"]) + 2) * S,) + shape, dtype)
    measure = np.zeros((strides * S,) + shape, dtype)
    board_id, b, flags = _board(meta, board)
    core = str(b["core"])
    sources, includes = _compile_list(root, meta, _kernel_set(meta, default_runtime(core),
                                                              f"{board_id} ({core})"))
    n = meta["name"]
    entries = [meta["build"]["features_function"], f"{n}_model_invoke"]
    if st.get("frame_slots"):
        entries.append(f"{n}_dsp_divisor")
    with tempfile.TemporaryDirectory(prefix="kiloml_gate_cycles_") as tmp:
        d = Path(tmp)
        (d / "kml_cycles_harness.c").write_text(_cycles_harness(meta, warm, measure, None))
        image = build_image(sources + [d / "kml_cycles_harness.c"], includes, flags, d)
        emu = emulate(image, core, kernel_entries=entries, fpu=_fpu(flags))
    if any(s.name in entries for s in emu.segments):
        raise KilomlError("gate cycles: the gate let a window of zeros through")
    return emu.cycles / strides


def gate_sequence(settings: StreamSettings, samples, window: int, stride: int,
                  rate: float) -> np.ndarray:
    """The wake gate's decision (WakeGate, as the twin and the C decide) for every window
    of a 16-bit recording (or of (n, channels) IMU frames: the motion energy): no DSP, no
    model, so it is cheap on long streams."""
    gate = WakeGate(settings, stride, rate)
    x = np.asarray(samples)
    if x.ndim == 2:          # IMU frames: the motion energy of each window's last stride
        ends = np.arange(window, len(x) + 1, stride)
        return np.array([gate.step(motion_energy(x[e - stride:e], settings.wake_imu_scale))
                         for e in ends], bool)
    x = x.astype(np.int64)
    ends = np.arange(window, len(x) + 1, stride)
    sq = np.concatenate([[0], np.cumsum(x * x)])
    return np.array([gate.step(int(sq[e] - sq[e - stride]) // stride) for e in ends], bool)


def stream_duty(spec: DeploySpec, samples, board=None, battery_mah: float = 1000.0,
                settings: Optional[StreamSettings] = None) -> dict:
    """Duty cycle, average power and battery life of the spec's streaming pipeline on
    ``board`` (default: the spec's) over a recording, always on and with the wake gate.

    Per-stride cycles come from the emulator (``stream_cycles``, ``gate_cycles``; kiloml
    profile's cycle model) and the fraction of windows the gate lets through from the gate
    over the whole recording (``gate_sequence``, the twin's integers):

    - always on: every stride costs ``active`` (the package's ``_stream_push`` in steady
      state: incremental features, the model, the smoothing);
    - with the gate: every stride costs ``gate_only`` (ring and energy on a closed gate),
      and a window let through costs ``active`` on top, or ``wake_window`` (the whole window
      recomputed: ``_classify``'s cycles) when the window before it was shut (its kept
      frames are gone). Charging the ring twice on a window let through is an upper bound.

    Duty = cycles / (stride x clock); power = duty x active + (1 - duty) x idle power
    (boards.toml's datasheet figures); days = mAh x supply voltage / power."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from kiloml.deploy.c import deploy_c
    from kiloml.targets.boards import load_boards
    from kiloml.targets.profile import average_power_mw, battery_days_at, duty_cycle

    st = settings or (spec.stream if isinstance(spec.stream, StreamSettings)
                      else StreamSettings(**(spec.stream or {})))
    if spec.block.audio:
        x = np.asarray(samples).astype(np.int16)
    else:                    # IMU: (frames, channels) float32, the motion gate
        x = np.asarray(samples, np.float32).reshape(len(samples), int(spec.channels))
    window = int(spec.frames)
    stride = window_stride(spec.block, window, st)
    rate = float(spec.sample_rate)
    need = window + 5 * stride
    if len(x) < need:
        raise KilomlError(f"duty cycle: the recording needs at least {need / rate:g} s "
                          f"(a window and 5 strides), it has {len(x) / rate:g} s")
    gated = gate_sequence(st.model_copy(update={"wake": True}), x, window, stride, rate)
    seen, passed = len(gated), int(gated.sum())
    wakes = int(gated[0]) + int(np.sum(gated[1:] & ~gated[:-1]))
    board_arg = board if board is not None else spec.board
    with tempfile.TemporaryDirectory(prefix="kiloml_duty_") as tmp:
        d = Path(tmp)
        deploy_c(dataclasses.replace(spec, stream=st.model_copy(update={"wake": False})),
                 d / "on")
        deploy_c(dataclasses.replace(spec, stream=st.model_copy(update={"wake": True})),
                 d / "gate")
        cyc = stream_cycles(d / "on", x, board=board_arg, windows=4)
        gate = gate_cycles(d / "gate", board=board_arg)
    board_id = cyc["board"]
    boards = load_boards()
    b = boards.get(board_id)
    clock = float(cyc["clock_hz"])
    stride_s = stride / rate
    active, wake_window = cyc["stream"]["total"], cyc["full"]["total"]
    gated_cycles = (seen * gate + (passed - wakes) * active + wakes * wake_window) / seen

    def row(cycles: float) -> dict:
        duty = duty_cycle(cycles, stride_s, clock)
        power = average_power_mw(duty, b) if b is not None else None
        return {"cycles_per_stride": round(cycles), "duty": duty, "real_time": duty <= 1.0,
                "average_power_mw": power,
                "battery_days": battery_days_at(power, b, battery_mah) if b is not None
                else None}

    return {"board": board_id, "core": cyc["core"], "clock_hz": clock,
            "stride_ms": stride_s * 1000.0, "battery_mah": battery_mah,
            "cycles": {"gate_only": round(gate), "active": round(active),
                       "wake_window": round(wake_window), "dsp": round(cyc["stream"]["dsp"]),
                       "model": round(cyc["stream"]["model"])},
            "gate_cost": gate / active,
            "windows_seen": seen, "windows_passed": passed, "wakes": wakes,
            "passed_fraction": passed / seen,
            "wake_settings": {k: v for k, v in st.model_dump(mode="json").items()
                              if k.startswith("wake_")},
            "always_on": row(active), "gated": row(gated_cycles),
            "power_source": None if b is None else "boards.toml datasheet figures"}
