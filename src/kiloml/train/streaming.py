"""Continuous inference's decisions and how they are scored: ``StreamSettings`` (the
``[stream]`` section of kiloml.toml), ``RecognizeCommands`` (posterior smoothing, threshold,
suppression and minimum count, as TensorFlow Lite Micro's micro_speech example decides) and
``score_stream`` (MLPerf Tiny's streaming wakeword scoring). Pure Python: the numpy twin of
the streaming pipeline (kiloml.deploy.stream) and the C streaming API decide the same way.

RecognizeCommands, per result (one per stride, ``time_ms`` the end of its window):

1. Append the result (scores 0..255); drop results older than ``average_window_ms``.
2. Fewer than ``minimum_count`` results, or results spanning less than a quarter of the
   window: no decision.
3. Average each class's scores over the results (integer division, as the C++).
4. The top class (first of equal averages); it is a new command when its average exceeds
   ``detection_threshold`` and it differs from the previous top class or the previous one
   was found more than ``suppression_ms`` ago (no suppression after a non-firing class:
   TFLM's rule for its "silence" class, applied to every non-firing class).
5. Unknown / silence classes update the state like any class but never become events.

Defaults are micro_speech's: 1000 ms average window, threshold 200 of 255, 1500 ms
suppression, minimum count 3.

Scoring rules (times in seconds):

- The targets are the truth rows whose label is a keyword (``kiloml.data.stream.is_keyword``);
  unknown-word and silence rows are distractors and cannot be hit.
- A detection of label L at time t hits the earliest target of label L with
  ``start_s <= t <= end_s + hit_window_s`` (1 s) that is not hit yet.
- A detection of L in the window of a target of L that is already hit repeats that hit: it is
  neither a hit nor a false accept (the hit is debounced).
- Every other detection is a false accept, debounced over ``debounce_s`` (1 s): one that comes
  less than 1 s after the previous counted false accept (of any label) is the same false
  accept and is not counted again.
- ``misses`` are the targets no detection hit; ``miss_rate = misses / targets``;
  ``fa_per_hour = false_accepts / duration_h``.

Per label: targets, hits, misses and miss_rate of that keyword, and the false accepts whose
detected label it is.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kiloml.data.stream import TruthEvent, is_keyword
from kiloml.errors import DataError


class StreamSettings(BaseModel):
    """Continuous inference: a window every ``window / slices_per_window`` (Edge Impulse's
    continuous mode), smoothed and decided by RecognizeCommands (see the module doc)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    slices_per_window: int = Field(4, ge=1, le=100, description="windows per window length")
    average_window_ms: float = Field(1000.0, gt=0, description="posterior smoothing window")
    detection_threshold: int = Field(200, ge=0, le=255, description="of 255")
    suppression_ms: float = Field(1500.0, ge=0, description="after a detection")
    minimum_count: int = Field(3, ge=1, description="results needed in the window")
    align_stride: bool = Field(False, description="round the stride to whole frame steps of "
                               "the DSP block (audio mel blocks): every window then shares all "
                               "its frames but the newest with the one before")
    # the event-driven wake gate (see WakeGate; audio: stride energy, IMU: motion variance)
    wake: bool = Field(False, description="skip DSP and inference while the signal is idle")
    wake_ratio: float = Field(2.0, ge=1.0, le=255.0,
                              description="stride energy over the noise floor that wakes")
    wake_min_energy: int = Field(100, ge=0, le=2**30,
                                 description="least mean square (int16 units) that wakes")
    wake_hold_ms: float = Field(1000.0, ge=0, le=60000.0,
                                description="stay awake this long after the last wake")
    wake_imu_scale: float = Field(1.0, gt=0, le=1e6,
                                  description="IMU: sensor units -> the gate's integer units "
                                  "(1 for milli-g data, 1000 for data in g)")
    wake_floor_shift: int = Field(4, ge=0, le=16,
                                  description="the noise floor moves 2**-shift of the gap a stride")


@dataclass(frozen=True)
class Detection:
    """An event of the stream: the window's end (s and sample), the class and its smoothed
    score (0..255)."""

    t_s: float
    sample: int
    label: str
    score: int

    def as_dict(self) -> dict:
        return {"t_s": round(self.t_s, 6), "sample": self.sample, "label": self.label,
                "score": self.score}


def wake_ratio_q8(settings: StreamSettings) -> int:
    """The wake ratio in 1/256ths, as the C compares it."""
    return int(round(settings.wake_ratio * 256.0))


def wake_hold_strides(settings: StreamSettings, stride: int, rate: float) -> int:
    """Strides the gate stays open after the last wake: ``wake_hold_ms`` rounded up."""
    return int(math.ceil(settings.wake_hold_ms * rate / (1000.0 * stride)))


class WakeGate:
    """The wake gate of the streaming pipeline (its C twin: kiloml.deploy.cstream): one
    decision per window, on the integer energy of the stride that ends with it, against a
    noise floor estimate: audio, the mean of the squared int16 samples, floored
    (``stride_energy``); IMU, the summed per-channel variance of the values in the gate's
    integer units (``motion_energy``).

    - The first window opens the gate and sets the floor to its energy.
    - A window wakes when its energy is at least ``wake_min_energy`` and over
      ``wake_ratio`` x the floor (compared in 1/256ths: ``E * 256 > round(ratio * 256) * F``);
      the gate then stays open for the next ``hold`` windows (``wake_hold_ms``).
    - After each decision the floor moves towards the energy by ``2**-wake_floor_shift`` of
      the gap (``F += (E - F) >> shift``, or ``F -= (F - E) >> shift`` below it): a running
      mean of the stride energy, so a noise that fluctuates (pink, a fan) does not wake it.

    Integers only, so the C decides the same, window for window. ``seen`` and ``passed`` count
    the windows decided and let through."""

    def __init__(self, settings: StreamSettings, stride: int, rate: float) -> None:
        self.ratio_q8 = wake_ratio_q8(settings)
        self.min_energy = int(settings.wake_min_energy)
        self.shift = int(settings.wake_floor_shift)
        self.hold_strides = wake_hold_strides(settings, stride, rate)
        self.floor = 0
        self.hold = 0
        self.seen = 0
        self.passed = 0

    def step(self, energy: int) -> bool:
        """Whether the window whose last stride has mean square ``energy`` is let through."""
        e = int(energy)
        if self.seen == 0:
            ok, self.floor, self.hold = True, e, self.hold_strides
        else:
            if e >= self.min_energy and e * 256 > self.ratio_q8 * self.floor:
                ok, self.hold = True, self.hold_strides
            elif self.hold > 0:
                ok, self.hold = True, self.hold - 1
            else:
                ok = False
            if e >= self.floor:
                self.floor += (e - self.floor) >> self.shift
            else:
                self.floor -= (self.floor - e) >> self.shift
        self.seen += 1
        self.passed += int(ok)
        return ok


def stride_energy(pcm) -> int:
    """Mean square of int16 samples, floored (the gate's energy of a stride)."""
    x = np.asarray(pcm, dtype=np.int64)
    return int(np.dot(x, x)) // max(len(x), 1)


IMU_CLAMP = 32767     # the IMU gate's integer units are clamped to +-this (int64 sums)


def imu_units(values, scale: float) -> np.ndarray:
    """IMU values -> the gate's integers: float32 ``value * scale`` clamped to +-IMU_CLAMP and
    truncated towards zero (the C: ``(int32_t)(v * scale)`` in float32 after the clamp)."""
    v = np.asarray(values, np.float32) * np.float32(scale)
    v = np.clip(v, np.float32(-IMU_CLAMP), np.float32(IMU_CLAMP))
    v = np.where(np.isnan(v), np.float32(0), v)
    return np.trunc(v).astype(np.int64)


def motion_energy(values, scale: float) -> int:
    """The IMU gate's energy of a stride of (n, channels) values: the variance of each channel
    in the gate's integer units (``imu_units``), summed over the channels, floored:
    ``sum_c (n * sum q^2 - (sum q)^2) // n^2`` (the gravity / offset of a still sensor is
    not motion)."""
    q = imu_units(values, scale)
    q = q.reshape(len(q), -1)
    n = len(q)
    if n == 0:
        return 0
    s1 = q.sum(axis=0)
    s2 = (q * q).sum(axis=0)
    return int(((n * s2 - s1 * s1) // (n * n)).sum())


class RecognizeCommands:
    """TFLM micro_speech's RecognizeCommands (see the module doc) over ``labels``."""

    def __init__(self, labels: Sequence[str], settings: Optional[StreamSettings] = None) -> None:
        self.labels = list(labels)
        self.s = settings or StreamSettings()
        self.fires = [is_keyword(lab) for lab in self.labels]
        self.results: deque[tuple[int, list[int]]] = deque()
        self.prev_top: Optional[int] = None
        self.prev_time: Optional[int] = None

    def process(self, scores: Sequence[int], time_ms: int) -> tuple[int, int, bool]:
        """(top class, its average score, whether it is a new command) after the result
        ``scores`` (0..255 per class) of the window ending at ``time_ms``; the class is -1
        while there are too few results."""
        if len(scores) != len(self.labels):
            raise ValueError(f"{len(scores)} scores for {len(self.labels)} labels")
        if self.results and time_ms < self.results[-1][0]:
            raise ValueError("results must come in time order")
        self.results.append((int(time_ms), [int(v) for v in scores]))
        limit = time_ms - self.s.average_window_ms
        while self.results and self.results[0][0] < limit:
            self.results.popleft()
        n = len(self.results)
        if n < self.s.minimum_count or time_ms - self.results[0][0] < \
                self.s.average_window_ms / 4:
            return -1, 0, False
        sums = [0] * len(self.labels)
        for _, r in self.results:
            for i, v in enumerate(r):
                sums[i] += v
        avg = [v // n for v in sums]
        top, top_score = 0, 0
        for i, v in enumerate(avg):
            if v > top_score:
                top, top_score = i, v
        if self.prev_top is None or not self.fires[self.prev_top]:
            since = math.inf
        else:
            since = time_ms - self.prev_time
        new = top_score > self.s.detection_threshold and (top != self.prev_top or
                                                          since > self.s.suppression_ms)
        if new:
            self.prev_top, self.prev_time = top, int(time_ms)
        return top, top_score, new

    def detect(self, scores: Sequence[int], time_ms: int) -> Optional[tuple[int, int]]:
        """(class, score) when the result makes a new command of a class that fires."""
        top, score, new = self.process(scores, time_ms)
        return (top, score) if new and self.fires[top] else None


def _time_label(d: Any) -> tuple[float, str]:
    if isinstance(d, dict):
        return float(d["t_s"]), str(d["label"])
    if isinstance(d, (tuple, list)):
        return float(d[0]), str(d[1])
    return float(d.t_s), str(d.label)


def score_stream(truth: Sequence[TruthEvent], detections: Iterable[Any], duration_s: float,
                 hit_window_s: float = 1.0, debounce_s: float = 1.0) -> dict:
    """Hits, misses, false accepts (see the module doc). ``detections``: objects with
    ``t_s`` and ``label``, dicts with those keys, or (t_s, label) pairs, in any order."""
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise DataError(f"stream duration must be > 0 s, not {duration_s}")
    targets = [e for e in truth if is_keyword(e.label)]
    hit = [False] * len(targets)
    per: dict[str, dict] = {}

    def row(label: str) -> dict:
        return per.setdefault(label, {"targets": 0, "hits": 0, "misses": 0,
                                      "false_accepts": 0})

    for e in targets:
        row(e.label)["targets"] += 1
    false_accepts = 0
    last_fa = -math.inf
    for t, label in sorted(_time_label(d) for d in detections):
        cands = [i for i, e in enumerate(targets)
                 if e.label == label and e.start_s <= t <= e.end_s + hit_window_s]
        fresh = [i for i in cands if not hit[i]]
        if fresh:
            i = min(fresh, key=lambda k: targets[k].start_s)
            hit[i] = True
            row(label)["hits"] += 1
            continue
        if cands:          # a repeat of a hit
            continue
        if t - last_fa < debounce_s:
            continue
        last_fa = t
        false_accepts += 1
        row(label)["false_accepts"] += 1
    for lab, r in per.items():
        r["misses"] = r["targets"] - r["hits"]
        r["miss_rate"] = r["misses"] / r["targets"] if r["targets"] else None
    n = len(targets)
    hits = int(sum(hit))
    return {"targets": n, "hits": hits, "misses": n - hits,
            "miss_rate": (n - hits) / n if n else None, "false_accepts": false_accepts,
            "fa_per_hour": false_accepts / (duration_s / 3600.0), "duration_s": duration_s,
            "per_label": dict(sorted(per.items()))}


# ---- calibration: RecognizeCommands' settings swept over one stream's window scores -------

# 108 points: average window x threshold x suppression x minimum count (slices per window and
# the wake gate are kept: they change the windows and so the scores themselves). Thresholds
# every 15 from 70 to 160, then 180 and 200: at 30-point steps from 100 the calibrated full-recipe
# models sat on the grid's lowest threshold or between steps whose test DET points differ by
# 4-8 misses (docs/streaming.md)
CALIBRATION_THRESHOLDS = (70, 85, 100, 115, 130, 145, 160, 180, 200)
CALIBRATION_GRID: list[dict] = [
    {"average_window_ms": a, "detection_threshold": t, "suppression_ms": s, "minimum_count": m}
    for a in (500.0, 750.0, 1000.0) for t in CALIBRATION_THRESHOLDS for s in (1000.0, 1500.0)
    for m in (1, 3)]


def sweep_settings(labels: Sequence[str], ends_s: Sequence[float], times_ms: Sequence[int],
                   scores, truth: Sequence[TruthEvent], duration_s: float,
                   base: Optional[StreamSettings] = None,
                   grid: Sequence[dict] = CALIBRATION_GRID) -> list[dict]:
    """Every setting of ``grid`` (over ``base``) applied to the same window results (the
    window ends in s and whole ms, 0..255 scores per class), scored against ``truth``: one
    DET point each (the setting, hits, misses, miss rate, false accepts, FA/h)."""
    base = base or StreamSettings()
    rows = [list(map(int, r)) for r in np.asarray(scores)]
    points = []
    for g in grid:
        st = base.model_copy(update=g)
        rc = RecognizeCommands(labels, st)
        dets = []
        for t_s, t_ms, sc in zip(ends_s, times_ms, rows):
            got = rc.detect(sc, int(t_ms))
            if got is not None:
                dets.append((float(t_s), labels[got[0]]))
        sc = score_stream(truth, dets, duration_s)
        points.append({**{k: st.model_dump()[k] for k in g}, "detections": len(dets),
                       **{k: sc[k] for k in ("targets", "hits", "misses", "miss_rate",
                                             "false_accepts", "fa_per_hour")}})
    return points


def choose_setting(points: Sequence[dict], target_fa_per_hour: float) -> Optional[int]:
    """The index of the point with the fewest misses among those at or under the target
    false-accept rate (ties: fewer false accepts, then the grid's order); None when no point
    reaches the target."""
    ok = [i for i, p in enumerate(points) if p["fa_per_hour"] <= target_fa_per_hour + 1e-9]
    if not ok:
        return None
    return min(ok, key=lambda i: (points[i]["misses"], points[i]["false_accepts"], i))
