"""The C streaming API of the C and Arduino packages: ``<name>_stream_init`` and
``<name>_stream_push``, the C twin of kiloml.deploy.stream.StreamPipeline.

- Ring buffer: the last window of samples (``<NAME>_INPUT_SIZE`` values, static); a window
  ends every ``<NAME>_STREAM_STRIDE_SAMPLES`` samples from the first full window on (the
  Python twin's ``round(window / slices_per_window)``, computed here and written as a
  constant), copied oldest-first into a second static buffer and classified by the same code
  as ``<name>_classify`` (DSP -> conversion -> int8 model).
- Scores: the model's int8 output -> RecognizeCommands' 0..255 score through a 256-entry
  table computed with the twin's own function (kiloml.deploy.stream.u8_scores on the
  dequantized float32 output), so the scores are the twin's exactly.
- RecognizeCommands in integers only: the twin's float comparisons with the settings'
  milliseconds are exact on whole-millisecond times, so they become integer constants
  (``d < A`` dropped when ``d > floor(A)``; ``d < A / 4`` as ``d < ceil(A / 4)``;
  suppression ``d > floor(S)``). The results of the averaging window sit in a ring of
  ``<NAME>_STREAM_MAX_RESULTS`` (the most windows that can end within it), their per-class
  sums are kept running (the twin sums afresh: equal, integers). Unknown / silence classes
  update the state but never fire.

Incremental features, as the twin (kiloml.dsp.stream) for mel blocks in q15 / q31: the DSP
block's C exposes its two stages (``<dsp>_frame``: one frame's 96-bit mel sums and shift;
``<dsp>_finish``: the window's divisor D, log and DCT of a frame), which its whole-window
function is made of. Frames 1 .. of a window are kept by stream position in
``<NAME>_STREAM_FRAME_SLOTS`` slots (the inner frames of a window for each of up to
``MAX_PHASES`` phases of the stride against the frame step; a frame that finds no slot is
computed and not kept), frame 0 of every window is computed (a zero before it, as in a clip),
the divisor is the window's. So the features are the whole window's bit for bit, whatever is
kept. Other blocks, f32 and IMU: the whole window every stride (``<name>_classify``'s DSP).

The wake gate (``[stream] wake = true``, audio only), as the twin's
kiloml.train.streaming.WakeGate: at each window end the mean square of the ring's last stride
(uint64 sum, integer division) against the noise floor, in integers; a window it does not let
through is neither copied, featurized, classified nor smoothed. A skipped window keeps no
frames, so the next window it lets through recomputes the frames it needs (same features).
``<name>_stream_wake_stats`` counts the windows seen and let through (all of them without a
gate).
"""

from __future__ import annotations

import math

import numpy as np

from kiloml.deploy.spec import Pipeline, has_heads, head_for_missing
from kiloml.dsp.cgen import table
from kiloml.train.streaming import (IMU_CLAMP, StreamSettings, is_keyword,
                                    wake_hold_strides, wake_ratio_q8)

EVENT_BYTES = 16        # int32 label, int32 score, uint64 sample


def settings_of(p: Pipeline) -> StreamSettings:
    """The package's streaming settings (the spec's, else the defaults)."""
    s = p.spec.stream
    return s if isinstance(s, StreamSettings) else StreamSettings(**(s or {}))


def stride(p: Pipeline) -> int:
    """Samples between window starts, as the twin computes it."""
    from kiloml.deploy.stream import window_stride

    return window_stride(p.block, p.frames, settings_of(p))


def incremental(p: Pipeline) -> tuple[bool, str]:
    """Whether the C computes each frame once (the twin's own rule,
    kiloml.dsp.stream.WindowFeatures), and why not."""
    if not p.block.audio:
        return False, "IMU blocks recompute every window"
    from kiloml.dsp.stream import WindowFeatures

    wf = WindowFeatures(p.block, p.variant, p.frames, stride(p))
    return wf.incremental, wf.reason


MAX_PHASES = 2


def frame_slots(p: Pipeline) -> int:
    """Kept frames: the inner frames (1 ..) of a window, for each of the stride's phases
    against the frame step (at most MAX_PHASES; frames of further phases are recomputed)."""
    if not incremental(p)[0]:
        return 0
    fs = p.block.params.frame_step
    phases = fs // math.gcd(stride(p), fs)
    return min(phases, MAX_PHASES) * (p.block.front.num_frames(p.frames) - 1)


def const_divisor(p: Pipeline) -> bool:
    """Whether every window's divisor D is the same (``normalize = "none"``): a kept frame's
    finished output row (log, DCT, quantization) is then the same in every window and is kept
    with its mel sums (the mlperf-kws-stream preset)."""
    return bool(frame_slots(p)) and p.block.params.normalize == "none"


def wake(p: Pipeline) -> bool:
    """Whether the package has a wake gate (audio: stride energy; IMU: motion variance)."""
    return bool(settings_of(p).wake)


def hold_strides(p: Pipeline) -> int:
    return wake_hold_strides(settings_of(p), stride(p), float(p.spec.sample_rate))


def rate_is_whole(p: Pipeline) -> bool:
    r = float(p.spec.sample_rate)
    return r.is_integer()


def max_results(p: Pipeline) -> int:
    """The most window results the averaging window can hold: results within floor(A) ms of
    the newest, window ends ``stride`` samples apart, times floored to whole ms (see the
    module doc): fewer than (floor(A) + 1) / (stride ms) + 1."""
    s = settings_of(p)
    step_ms = stride(p) * 1000.0 / float(p.spec.sample_rate)
    return int(math.ceil((math.floor(s.average_window_ms) + 1) / step_ms)) + 1


def u8_table(p: Pipeline) -> np.ndarray:
    """int8 model output q (at q + 128) -> the twin's 0..255 score."""
    from kiloml.deploy.stream import u8_scores

    q = np.arange(-128, 128, dtype=np.int32)
    probs = (q - p.output_zero_point).astype(np.float32) * np.float32(p.output_scale)
    return u8_scores(probs).astype(np.uint8)


def stream_constants(p: Pipeline) -> dict:
    s = settings_of(p)
    inc, why = incremental(p)
    return {"stride_samples": stride(p), "slices_per_window": s.slices_per_window,
            "wake": wake(p), "wake_hold_strides": hold_strides(p) if wake(p) else None,
            "incremental": inc, "incremental_note": why or None,
            "frame_slots": frame_slots(p),
            "max_results": max_results(p), "settings": s.model_dump(mode="json"),
            "event_bytes": EVENT_BYTES, "ram_bytes": ram_bytes(p)}


def _sample_size(p: Pipeline) -> int:
    return 2 if p.sample_ctype == "int16_t" else 4


def ram_bytes(p: Pipeline) -> int:
    """Static RAM of the streaming state: ring + window copy, the results ring (times and
    scores), the running sums and the counters."""
    r, k = max_results(p), p.num_classes
    ram = 2 * p.input_size * _sample_size(p) + r * (8 + k) + 4 * k + 8 + 8 + 8 + 4 * 4
    ram += 8 + 8 + (8 + 4 if wake(p) else 0)     # seen, passed (floor, hold)
    slots = frame_slots(p)
    if slots:       # kept frames (mel sums, shift, position, used) + one frame + counter
        nfl = p.block.params.num_filters
        if const_divisor(p):    # output rows instead of mel sums and shift
            width = int(p.block.output_shape(p.frames)[-1])
            ram += slots * width * {"int8_t": 1, "int32_t": 4, "float": 4}[p.feature_ctype]
        else:
            ram += slots * (12 * nfl + 4)
        ram += slots * (8 + 1) + 12 * nfl + 4
    return ram


def header_lines(p: Pipeline) -> list[str]:
    """The streaming part of the public header."""
    n, M = p.name, p.macro
    s = settings_of(p)
    unit = "samples" if p.block.audio else f"frames of {p.channels} values"
    defs = [
        (f"{M}_STREAM_STRIDE_SAMPLES", str(stride(p)),
         f"a window ends every this many {unit}"),
        (f"{M}_STREAM_SLICES_PER_WINDOW", str(s.slices_per_window), "windows per window length"),
        (f"{M}_STREAM_MAX_RESULTS", str(max_results(p)),
         "window results the smoothing keeps at most"),
        (f"{M}_STREAM_FRAME_SLOTS", str(frame_slots(p)),
         "DSP frames kept between windows (0: whole window)"),
        (f"{M}_STREAM_RAM_BYTES", str(ram_bytes(p)),
         "static RAM of the streaming state"),
        (f"{M}_STREAM_WAKE", "1" if wake(p) else "0",
         "1: a wake gate skips DSP and inference while idle"),
    ]
    if wake(p):
        defs += [(f"{M}_STREAM_WAKE_RATIO_Q8", str(wake_ratio_q8(s)),
                  "wakes over this x the noise floor, in 1/256"),
                 (f"{M}_STREAM_WAKE_MIN_ENERGY", f"{s.wake_min_energy}u",
                  "least mean square of a stride that wakes"),
                 (f"{M}_STREAM_WAKE_HOLD_STRIDES", f"{hold_strides(p)}u",
                  "windows let through after the last wake"),
                 *([(f"{M}_STREAM_WAKE_IMU_SCALE", f"{float(np.float32(s.wake_imu_scale))!r}f",
                     "IMU: sensor units -> the gate's integer units")]
                   if not p.block.audio else []),
                 (f"{M}_STREAM_WAKE_FLOOR_SHIFT", str(s.wake_floor_shift),
                  "the floor moves 2^-shift of the gap a stride")]
    width = max(len(d[0]) + len(d[1]) for d in defs) + 9
    lines = ["", "/* Continuous inference (kiloml.toml [stream]): smoothing over "
             f"{s.average_window_ms:g} ms, threshold",
             f" * {s.detection_threshold} of 255, suppression {s.suppression_ms:g} ms, minimum "
             f"count {s.minimum_count}. */"]
    for k, v, doc in defs:
        lines.append(f"#define {k} {v}".ljust(width + 1) + f"/* {doc} */")
    lines += [
        "", "/* A detection: a new command of a class that fires (never an unknown or silence",
        " * class). */",
        "typedef struct {",
        "    int32_t label;   /* class id, index of the labels */",
        "    int32_t score;   /* smoothed score, 0..255 */",
        f"    uint64_t sample; /* stream position of the window's end ({unit} since init) */",
        f"}} {n}_event_t;", "",
        "/* Starts a stream: empties the ring and the smoothing state. */",
        f"void {n}_stream_init(void);", "",
        f"/* Feeds n {unit} (any number, oldest first{'' if p.block.audio else ', interleaved'})."
        " Every window they",
        " * complete is classified and smoothed; the first max_events detections are written to",
        " * events. Returns the number of detections (may exceed max_events: the rest are",
        " * lost), or a negative value if the DSP block or the model reports an error. Not",
        f" * reentrant, and not to be mixed with {n}_classify calls (shared static buffers). */",
        f"int32_t {n}_stream_push(const {n}_sample_t *samples, uint32_t n, {n}_event_t *events,",
        "                        uint32_t max_events);", "",
        "/* Windows seen since init and windows the wake gate let through to the DSP and the",
        " * model (equal without a gate). */",
        f"void {n}_stream_wake_stats(uint64_t *seen, uint64_t *passed);"]
    return lines


def _incremental_lines(p: Pipeline) -> list[str]:
    """``<name>_stream_window(window, start)``: features with each frame computed once.
    With a constant divisor (``const_divisor``) a kept frame is its finished output row (the
    log, DCT and quantization are not redone either), else its mel sums and shift."""
    n, D = p.name, p.dsp_prefix
    DM = D.upper()
    S = f"{p.macro}_STREAM_FRAME_SLOTS"
    nfr = p.block.front.num_frames(p.frames)
    rows = const_divisor(p)
    W = int(p.block.output_shape(p.frames)[-1])
    if rows:
        kept = [f"/* kept frames (kiloml.dsp.stream; normalize = none: D is constant, so a "
                f"frame's output row, {W} values, is the same in every window) */",
                f"static {p.feature_ctype} {n}_fc_row[{S}][{W}];"]
        use = [f"            for (k = 0; k < {W}u; ++k) {{",
               f"                {n}_features[f * {W}u + k] = {n}_fc_row[slot][k];",
               "            }"]
        make = [f"            sb = {D}_frame(win, f * {DM}_FRAME_STEP, {n}_f0_hi, {n}_f0_lo);",
                f"            {D}_finish({n}_f0_hi, {n}_f0_lo, sb, d, {n}_features, f);",
                f"            for (k = 0; k < {W}u; ++k) {{",
                f"                {n}_fc_row[slot][k] = {n}_features[f * {W}u + k];",
                "            }"]
    else:
        kept = ["/* kept frames (kiloml.dsp.stream): 96-bit mel sums, shift */",
                f"static uint64_t {n}_fc_hi[{S}][{DM}_NUM_FILTERS];",
                f"static uint32_t {n}_fc_lo[{S}][{DM}_NUM_FILTERS];",
                f"static int32_t {n}_fc_sb[{S}];"]
        use = [f"            {D}_finish({n}_fc_hi[slot], {n}_fc_lo[slot], {n}_fc_sb[slot], d, "
               f"{n}_features, f);"]
        make = [f"            sb = {D}_frame(win, f * {DM}_FRAME_STEP, {n}_fc_hi[slot], "
                f"{n}_fc_lo[slot]);",
                f"            {n}_fc_sb[slot] = sb;",
                f"            {D}_finish({n}_fc_hi[slot], {n}_fc_lo[slot], sb, d, "
                f"{n}_features, f);"]
    return [
        *kept,
        "/* and their stream positions */",
        f"static uint64_t {n}_fc_at[{S}];",
        f"static uint8_t {n}_fc_used[{S}];",
        "/* a frame not kept (each window's first: it sees a zero before it, as in a clip) */",
        f"static uint64_t {n}_f0_hi[{DM}_NUM_FILTERS];",
        f"static uint32_t {n}_f0_lo[{DM}_NUM_FILTERS];",
        f"static uint32_t {n}_frames_computed; /* frame stages run since init */", "",
        "/* Features of the window starting at stream sample start: frames 1 .. of it are "
        "looked up",
        " * by their stream position or computed and kept; the result is the whole window's "
        "bit for bit. */",
        f"static int {n}_stream_window(const {n}_sample_t *win, uint64_t start)", "{",
        f"    const int32_t d = {D}_divisor(win);",
        "    uint32_t f, k;",
        f"    for (f = 0; f < {nfr}u; ++f) {{",
        f"        const uint64_t at = start + (uint64_t)f * {DM}_FRAME_STEP;",
        "        int32_t sb;",
        f"        uint32_t slot = {S};",
        "        int found = 0;",
        "        if (f > 0u) {",
        f"            for (k = 0; k < {S}; ++k) {{",
        f"                if ({n}_fc_used[k] && {n}_fc_at[k] == at) {{",
        "                    found = 1;", "                    slot = k;", "                    break;",
        "                }",
        f"                if (slot == {S} && (!{n}_fc_used[k] ||",
        f"                    {n}_fc_at[k] < start + {DM}_FRAME_STEP)) {{",
        "                    slot = k; /* free, or a frame no later window needs */",
        "                }", "            }", "        }",
        "        if (found) {",
        *use,
        f"        }} else if (slot < {S}) {{",
        *make,
        f"            {n}_fc_at[slot] = at;",
        f"            {n}_fc_used[slot] = 1u;",
        f"            ++{n}_frames_computed;",
        "        } else {",
        f"            sb = {D}_frame(win, f * {DM}_FRAME_STEP, {n}_f0_hi, {n}_f0_lo);",
        f"            {D}_finish({n}_f0_hi, {n}_f0_lo, sb, d, {n}_features, f);",
        f"            ++{n}_frames_computed;", "        }", "    }",
        f"    return {n}_infer();", "}", ""]

def _wake_lines(p: Pipeline) -> list[str]:
    """``<name>_wake()``: the wake gate's decision for the window ending now (the twin's
    kiloml.train.streaming.WakeGate, in the same integers)."""
    n, M = p.name, p.macro
    W = f"{M}_STREAM_WAKE"
    if p.block.audio:
        energy = [
            "/* The wake gate: the mean square of the ring's last stride against the noise "
            "floor;", " * 1 when the window ending now goes on to the DSP and the model. */",
            f"static int {n}_wake(void)", "{",
            "    uint64_t acc = 0u, e;",
            f"    uint32_t j = {n}_ring_at + (uint32_t)({M}_INPUT_SIZE - "
            f"{M}_STREAM_STRIDE_SAMPLES);",
            "    uint32_t k;", "    int ok;",
            f"    if (j >= (uint32_t){M}_INPUT_SIZE) {{",
            f"        j -= (uint32_t){M}_INPUT_SIZE;", "    }",
            f"    for (k = 0; k < (uint32_t){M}_STREAM_STRIDE_SAMPLES; ++k) {{",
            f"        const int32_t v = (int32_t){n}_ring[j];",
            "        acc += (uint64_t)(v * v);",
            f"        if (++j == (uint32_t){M}_INPUT_SIZE) {{", "            j = 0u;", "        }",
            "    }",
            f"    e = acc / (uint64_t){M}_STREAM_STRIDE_SAMPLES;"]
    else:
        C = int(p.channels)
        energy = [
            "/* The wake gate (IMU): the variance of each channel over the ring's last stride, in",
            f" * the gate's integer units (value x {W}_IMU_SCALE in float, clamped to "
            f"+-{IMU_CLAMP},", " * truncated), summed over the channels, against the noise "
            "floor; 1 when the window", " * ending now goes on to the DSP and the model. */",
            f"static int {n}_wake(void)", "{",
            f"    int64_t s1[{C}], s2[{C}];",
            f"    const int64_t nn = (int64_t){M}_STREAM_STRIDE_SAMPLES;",
            "    uint64_t e = 0u;",
            f"    uint32_t j = {n}_ring_at + (uint32_t)({M}_INPUT_SIZE - "
            f"{M}_STREAM_STRIDE_SAMPLES * {C});",
            "    uint32_t k, c;", "    int ok;",
            f"    if (j >= (uint32_t){M}_INPUT_SIZE) {{",
            f"        j -= (uint32_t){M}_INPUT_SIZE;", "    }",
            f"    for (c = 0; c < {C}u; ++c) {{", "        s1[c] = 0;", "        s2[c] = 0;", "    }",
            f"    for (k = 0; k < (uint32_t){M}_STREAM_STRIDE_SAMPLES; ++k) {{",
            f"        for (c = 0; c < {C}u; ++c) {{",
            f"            float v = {n}_ring[j] * {W}_IMU_SCALE;",
            "            int64_t q;",
            "            if (v != v) {", "                v = 0.0f; /* NaN */", "            }",
            f"            if (v > {IMU_CLAMP}.0f) {{", f"                v = {IMU_CLAMP}.0f;",
            f"            }} else if (v < -{IMU_CLAMP}.0f) {{",
            f"                v = -{IMU_CLAMP}.0f;", "            }",
            "            q = (int64_t)(int32_t)v;",
            "            s1[c] += q;", "            s2[c] += q * q;",
            f"            if (++j == (uint32_t){M}_INPUT_SIZE) {{", "                j = 0u;",
            "            }", "        }", "    }",
            f"    for (c = 0; c < {C}u; ++c) {{",
            "        e += (uint64_t)((nn * s2[c] - s1[c] * s1[c]) / (nn * nn));", "    }"]
    return [
        *energy,
        f"    if ({n}_wake_seen == 0u) {{ /* the first window: open, the floor is its energy */",
        "        ok = 1;", f"        {n}_wake_floor = e;",
        f"        {n}_wake_hold = {W}_HOLD_STRIDES;",
        "    } else {",
        f"        if (e >= {W}_MIN_ENERGY &&",
        f"            e * 256u > (uint64_t){W}_RATIO_Q8 * {n}_wake_floor) {{",
        "            ok = 1;", f"            {n}_wake_hold = {W}_HOLD_STRIDES;",
        f"        }} else if ({n}_wake_hold > 0u) {{",
        "            ok = 1;", f"            --{n}_wake_hold;",
        "        } else {", "            ok = 0;", "        }",
        "        /* the floor moves 2^-shift of the gap towards the energy */",
        f"        if (e >= {n}_wake_floor) {{",
        f"            {n}_wake_floor += (e - {n}_wake_floor) >> {W}_FLOOR_SHIFT;",
        "        } else {",
        f"            {n}_wake_floor -= ({n}_wake_floor - e) >> {W}_FLOOR_SHIFT;", "        }",
        "    }",
        f"    ++{n}_wake_seen;",
        "    if (ok) {", f"        ++{n}_wake_passed;", "    }",
        "    return ok;", "}", ""]


def _head_lines(p: Pipeline) -> list[str]:
    """A model with a head per sensor (``[model] missing`` branch-head or fallback): which
    sensors were missing in each window and the head that answers for it, as
    ``<name>_classify_sensors`` answers (kiloml.deploy.spec.head_for_missing)."""
    n, M = p.name, p.macro
    count = len(p.spec.sensors)
    out = ["/* per sensor: the stream position just past the last frame pushed without it",
           f" * ({n}_stream_push_sensors with a NULL buffer); a window that starts before it",
           " * lacked that sensor */",
           f"static uint64_t {n}_gone_until[{count}];", "",
           f"/* {n}_stream_push_sensors: the next take frames lack the sensors of mask gone */",
           f"static void {n}_stream_gone(uint32_t gone, uint32_t take)", "{",
           "    uint32_t k;",
           f"    for (k = 0; k < {count}u; ++k) {{",
           "        if (gone >> k & 1u) {",
           f"            {n}_gone_until[k] = {n}_position + take;", "        }", "    }", "}", "",
           "/* The output of the head that answers for the window starting at start: the",
           " * remaining sensor's own head when exactly one sensor was there all along, else the",
           " * fused head */",
           f"static const int8_t *{n}_stream_head(uint64_t start)", "{",
           "    uint32_t k;", "    uint32_t gone = 0u;",
           f"    for (k = 0; k < {count}u; ++k) {{",
           f"        if ({n}_gone_until[k] > start) {{", "            gone |= 1u << k;",
           "        }", "    }"]
    for mask in range(1 << count):
        h = head_for_missing(count, mask)
        if h:
            nm = p.spec.sensors[h - 1][0]
            out += [f"    if (gone == {mask}u) {{", f"        return {n}_head_{nm};", "    }"]
    out += [f"    return {n}_output;", "}", ""]
    return out


def source_lines(p: Pipeline) -> list[str]:
    """The streaming part of ``<name>.c`` (after ``<name>_run`` and ``<name>_infer``)."""
    n, M = p.name, p.macro
    s = settings_of(p)
    fires = [1 if is_keyword(lab) else 0 for lab in p.labels]
    avg_floor = int(math.floor(s.average_window_ms))
    quarter_ceil = int(math.ceil(s.average_window_ms / 4.0))
    supp_floor = int(math.floor(s.suppression_ms))
    rate = float(p.spec.sample_rate)
    if rate_is_whole(p):
        time_ms = f"(int64_t)((end * 1000u) / {int(rate)}u)"
    else:
        time_ms = f"(int64_t)((double)(end * 1000u) / {rate!r})"
    C = p.channels
    call = (f"{n}_stream_window({n}_window, end - {M}_WINDOW_SAMPLES)" if frame_slots(p)
            else f"{n}_run({n}_window)")
    # a head per sensor: the window's answer from the head of the sensors it had
    heads = has_heads(p.spec)
    out = "out" if heads else f"{n}_output"
    lines = [
        "", "/* ---- continuous inference: ring buffer, windows, RecognizeCommands ---- */",
        f"static {n}_sample_t {n}_ring[{M}_INPUT_SIZE];   /* the last window, circular */",
        f"static {n}_sample_t {n}_window[{M}_INPUT_SIZE]; /* a window, oldest first */",
        f"static uint32_t {n}_ring_at;     /* next value to write = the oldest */",
        f"static uint64_t {n}_position;    /* {'samples' if p.block.audio else 'frames'} pushed */",
        f"static uint64_t {n}_next_end;    /* where the next window ends */",
        "/* the smoothing window's results: end time (ms) and scores, oldest at rc_head */",
        f"static int64_t {n}_rc_time[{M}_STREAM_MAX_RESULTS];",
        f"static uint8_t {n}_rc_scores[{M}_STREAM_MAX_RESULTS][{M}_NUM_CLASSES];",
        f"static uint32_t {n}_rc_head;",
        f"static uint32_t {n}_rc_count;",
        f"static int32_t {n}_rc_sum[{M}_NUM_CLASSES];",
        f"static int32_t {n}_rc_prev_top;  /* -1: none yet */",
        f"static int64_t {n}_rc_prev_time;",
        f"static uint64_t {n}_wake_seen;   /* windows seen */",
        f"static uint64_t {n}_wake_passed; /* windows let through (the wake gate) */",
        *([f"static uint64_t {n}_wake_floor;  /* noise floor estimate (mean square) */",
           f"static uint32_t {n}_wake_hold;   /* windows still let through after a wake */"]
          if wake(p) else []),
        "/* classes that fire (not unknown / silence) */",
        table(f"{n}_fires", "uint8_t", np.asarray(fires)),
        "/* int8 model output q -> 0..255 score, at [q + 128] (as the Python twin rounds) */",
        table(f"{n}_u8", "uint8_t", u8_table(p)), "",
        *(_incremental_lines(p) if frame_slots(p) else []),
        *(_head_lines(p) if heads else []),
        f"void {n}_stream_init(void)", "{",
        "    uint32_t i;",
        f"    for (i = 0; i < {M}_INPUT_SIZE; ++i) {{",
        f"        {n}_ring[i] = 0;", "    }",
        f"    for (i = 0; i < {M}_NUM_CLASSES; ++i) {{",
        f"        {n}_rc_sum[i] = 0;", "    }",
        f"    {n}_ring_at = 0u;", f"    {n}_position = 0u;",
        f"    {n}_next_end = {M}_WINDOW_SAMPLES;",
        f"    {n}_rc_head = 0u;", f"    {n}_rc_count = 0u;",
        f"    {n}_rc_prev_top = -1;", f"    {n}_rc_prev_time = 0;",
        f"    {n}_wake_seen = 0u;", f"    {n}_wake_passed = 0u;",
        *([f"    {n}_wake_floor = 0u;", f"    {n}_wake_hold = 0u;"] if wake(p) else []),
        *([f"    for (i = 0; i < {len(p.spec.sensors)}u; ++i) {{",
           f"        {n}_gone_until[i] = 0u;", "    }"] if heads else []),
        *([f"    for (i = 0; i < {M}_STREAM_FRAME_SLOTS; ++i) {{",
           f"        {n}_fc_used[i] = 0u;", "    }", f"    {n}_frames_computed = 0u;"]
          if frame_slots(p) else []), "}", "",
        f"void {n}_stream_wake_stats(uint64_t *seen, uint64_t *passed)", "{",
        f"    *seen = {n}_wake_seen;", f"    *passed = {n}_wake_passed;", "}", "",
        *(_wake_lines(p) if wake(p) else []),
        "/* RecognizeCommands on the scores of the window ending at time_ms: 1 and the class",
        " * and smoothed score when it is a new command of a class that fires. */",
        f"static int {n}_recognize(const uint8_t *scores, int64_t time_ms, int32_t *label,",
        "                          int32_t *score)", "{",
        "    uint32_t i, slot;",
        "    int32_t top = 0, top_score = 0;",
        "    int allowed;",
        f"    if ({n}_rc_count == {M}_STREAM_MAX_RESULTS) {{ /* cannot happen (sized) */",
        f"        for (i = 0; i < {M}_NUM_CLASSES; ++i) {{",
        f"            {n}_rc_sum[i] -= (int32_t){n}_rc_scores[{n}_rc_head][i];", "        }",
        f"        {n}_rc_head = ({n}_rc_head + 1u) % {M}_STREAM_MAX_RESULTS;",
        f"        --{n}_rc_count;", "    }",
        f"    slot = ({n}_rc_head + {n}_rc_count) % {M}_STREAM_MAX_RESULTS;",
        f"    {n}_rc_time[slot] = time_ms;",
        f"    for (i = 0; i < {M}_NUM_CLASSES; ++i) {{",
        f"        {n}_rc_scores[slot][i] = scores[i];",
        f"        {n}_rc_sum[i] += (int32_t)scores[i];", "    }",
        f"    ++{n}_rc_count;",
        f"    /* drop results older than the average window ({s.average_window_ms:g} ms) */",
        f"    while ({n}_rc_count > 0u && time_ms - {n}_rc_time[{n}_rc_head] > {avg_floor}) {{",
        f"        for (i = 0; i < {M}_NUM_CLASSES; ++i) {{",
        f"            {n}_rc_sum[i] -= (int32_t){n}_rc_scores[{n}_rc_head][i];", "        }",
        f"        {n}_rc_head = ({n}_rc_head + 1u) % {M}_STREAM_MAX_RESULTS;",
        f"        --{n}_rc_count;", "    }",
        f"    if ({n}_rc_count < {s.minimum_count}u ||",
        f"        time_ms - {n}_rc_time[{n}_rc_head] < {quarter_ceil}) {{",
        "        return 0;", "    }",
        f"    for (i = 0; i < {M}_NUM_CLASSES; ++i) {{",
        f"        int32_t avg = {n}_rc_sum[i] / (int32_t){n}_rc_count;",
        "        if (avg > top_score) {", "            top = (int32_t)i;",
        "            top_score = avg;", "        }", "    }",
        f"    allowed = {n}_rc_prev_top < 0 || !{n}_fires[{n}_rc_prev_top] ||",
        f"              top != {n}_rc_prev_top || time_ms - {n}_rc_prev_time > {supp_floor};",
        f"    if (top_score > {s.detection_threshold} && allowed) {{",
        f"        {n}_rc_prev_top = top;", f"        {n}_rc_prev_time = time_ms;",
        f"        if ({n}_fires[top]) {{",
        "            *label = top;", "            *score = top_score;", "            return 1;",
        "        }", "    }", "    return 0;", "}", "",
        f"int32_t {n}_stream_push(const {n}_sample_t *samples, uint32_t n, {n}_event_t *events,",
        "                        uint32_t max_events)", "{",
        "    uint32_t done = 0;",
        "    int32_t found = 0;",
        "    while (done < n) {",
        f"        uint64_t need = {n}_next_end - {n}_position;",
        "        uint32_t take = n - done;",
        "        uint32_t v, values, j;",
        "        if ((uint64_t)take > need) {", "            take = (uint32_t)need;", "        }",
        f"        values = take * {C}u;",
        "        for (v = 0; v < values; ++v) {",
        f"            {n}_ring[{n}_ring_at] = samples[done * {C}u + v];",
        f"            if (++{n}_ring_at == {M}_INPUT_SIZE) {{",
        f"                {n}_ring_at = 0u;", "            }", "        }",
        "        done += take;",
        f"        {n}_position += take;",
        f"        if ({n}_position == {n}_next_end) {{",
        f"            uint64_t end = {n}_next_end;",
        f"            uint8_t scores[{M}_NUM_CLASSES];",
        *([f"            const int8_t *out;"] if heads else []),
        "            int32_t label, score;",
        f"            {n}_next_end += {M}_STREAM_STRIDE_SAMPLES;",
        *([f"            if (!{n}_wake()) {{",
           "                continue; /* idle: no DSP, no inference */", "            }"]
          if wake(p) else [f"            ++{n}_wake_seen;", f"            ++{n}_wake_passed;"]),
        f"            j = {n}_ring_at;",
        f"            for (v = 0; v < {M}_INPUT_SIZE; ++v) {{",
        f"                {n}_window[v] = {n}_ring[j];",
        f"                if (++j == {M}_INPUT_SIZE) {{", "                    j = 0u;",
        "                }", "            }",
        f"            if ({call} != 0) {{", "                return -1;", "            }",
        *([f"            out = {n}_stream_head(end - {M}_WINDOW_SAMPLES);"] if heads else []),
        f"            for (v = 0; v < {M}_NUM_CLASSES; ++v) {{",
        f"                scores[v] = {n}_u8[(int32_t){out}[v] + 128];", "            }",
        f"            if ({n}_recognize(scores, {time_ms}, &label, &score)) {{",
        "                if ((uint32_t)found < max_events) {",
        "                    events[found].label = label;",
        "                    events[found].score = score;",
        "                    events[found].sample = end;", "                }",
        "                ++found;", "            }", "        }", "    }",
        "    return found;", "}", ""]
    return lines
