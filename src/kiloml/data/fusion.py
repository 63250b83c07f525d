"""Several sensors, one timeline: read per-sensor CSV files, align them on their timestamps and
resample them to a shared grid (multi-sensor projects, ``[[data.sensors]]``).

Each sensor is a CSV with a header, a ``timestamp`` column in milliseconds (Unix ms or any
clock in ms), its axis columns and optionally a per-sample label column. The devices have
their own clocks and rates (sp_sw_har: a phone at ~102.5 Hz delivering samples in bursts, a
watch at ~104 Hz), so rows are never paired by position.

Alignment (:func:`align`)
    grid          ``t_k = start + k * 1000 / rate`` ms for ``start`` = the latest first
                  timestamp and up to the earliest last one (the span every sensor covers)
    duplicates    rows with the same timestamp as the row before; their values are averaged
                  into one point before interpolation
    dropped       samples missing in gaps: for each step longer than 1.5 nominal periods,
                  ``round(step / period) - 1``
    resampling    linear interpolation (``scipy.interpolate.make_interp_spline``, k=1) of each
                  axis at the grid times
    start/end     the spread of the sensors' first (last) timestamps, ms; beyond
                  ``align_tolerance_ms`` the recording is refused (naming the file)
    lag           the clock offset left after timestamp alignment, estimated by
                  cross-correlating the sensors' first-three-axes magnitudes on the grid
                  (positive: the later sensor's events come after the first sensor's); a
                  figure to report, not applied
    labels        the label of the grid point is the label of the first labelled sensor's
                  last row at or before it; ``label_agreement`` is the fraction of grid
                  points where every labelled sensor gives the same label

Window labels: a recording is cut into runs of equal per-sample labels (a run shorter than
``min_run_ms`` joins the run before it: a stray sample never becomes a class), each run is one
indexed sample, and windows never cross a sample boundary (kiloml.data.windowing), so a
window's label is the label of all its frames (its majority, unanimously). Windows of
streaming inference straddle transitions; the label at the window's end is the rule there.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import make_interp_spline

from kiloml.errors import DataError

TIME_COLUMNS = ("timestamp", "time", "t", "ms", "millis")
GAP_PERIODS = 1.5
MAX_LAG_MS = 1000.0


@dataclass
class SensorStream:
    path: Path
    t_ms: np.ndarray                    # (T,) float64, non-decreasing
    values: np.ndarray                  # (T, axes) float64
    labels: np.ndarray | None = None    # (T,) str


@dataclass
class Aligned:
    data: np.ndarray                    # (N, sum of axes) float32 on the grid
    labels: np.ndarray | None           # (N,) str
    start_ms: float
    stats: dict = field(default_factory=dict)


def read_sensor_csv(p: Path, axes: list[str], label_column: str | None = "label") -> SensorStream:
    """One sensor's CSV: the ``axes`` columns, the timestamp and (when present) the label."""
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if r and any(r)]
    if len(rows) < 3:
        raise DataError(f"{p}: needs a header and at least two rows")
    head = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in head]
    tcol = next((lower.index(c) for c in TIME_COLUMNS if c in lower), None)
    if tcol is None:
        raise DataError(f"{p}: no timestamp column (one of {', '.join(TIME_COLUMNS)})")
    missing = [a for a in axes if a not in head]
    if missing:
        raise DataError(f"{p}: no column {missing[0]!r} (columns: {', '.join(head)})")
    cols = [head.index(a) for a in axes]
    lcol = head.index(label_column) if label_column and label_column in head else None
    n = len(rows) - 1
    t = np.empty(n)
    v = np.empty((n, len(cols)))
    labels = [] if lcol is not None else None
    for i, r in enumerate(rows[1:]):
        line = i + 2
        if len(r) != len(head):
            raise DataError(f"{p}:{line}: {len(r)} fields, expected {len(head)}")
        try:
            t[i] = float(r[tcol])
            for j, c in enumerate(cols):
                v[i, j] = float(r[c])
        except ValueError:
            raise DataError(f"{p}:{line}: not a number") from None
        if not (math.isfinite(t[i]) and np.isfinite(v[i]).all()):
            raise DataError(f"{p}:{line}: value not finite")
        if labels is not None:
            lab = r[lcol].strip()
            if not lab:
                raise DataError(f"{p}:{line}: empty label")
            labels.append(lab)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        raise DataError(f"{p}:{int(back[0]) + 3}: timestamp goes back in time "
                        f"({t[back[0] + 1]:.0f} after {t[back[0]]:.0f})")
    return SensorStream(p, t, v, None if labels is None else np.array(labels, dtype=object))


def stream_stats(s: SensorStream, rate: float) -> dict:
    """Duplicated and dropped samples, largest gap and measured rate of one sensor."""
    period = 1000.0 / rate
    dt = np.diff(s.t_ms)
    gaps = dt[dt > GAP_PERIODS * period]
    dup = int(np.sum(dt == 0))
    span = float(s.t_ms[-1] - s.t_ms[0])
    return {"rows": int(s.t_ms.size), "duplicated": dup,
            "dropped": int(np.sum(np.maximum(np.round(gaps / period) - 1, 0))),
            "max_gap_ms": round(float(dt.max()), 3) if dt.size else 0.0,
            "rate_hz": round((s.t_ms.size - 1) / span * 1000.0, 3) if span > 0 else 0.0}


def _dedupe(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ut, inv = np.unique(t, return_inverse=True)
    if ut.size == t.size:
        return t, v
    acc = np.zeros((ut.size, v.shape[1]))
    np.add.at(acc, inv, v)
    return ut, acc / np.bincount(inv, minlength=ut.size)[:, None]


def resample(s: SensorStream, grid_ms: np.ndarray) -> np.ndarray:
    """The sensor's axes linearly interpolated at ``grid_ms`` (within its time span)."""
    t, v = _dedupe(s.t_ms, s.values)
    if t.size < 2:
        raise DataError(f"{s.path}: fewer than two distinct timestamps")
    return make_interp_spline(t, v, k=1, axis=0)(grid_ms)


def estimate_lag(a: np.ndarray, b: np.ndarray, rate: float,
                 max_lag_ms: float = MAX_LAG_MS) -> float:
    """Lag of ``b`` behind ``a`` in ms (by the peak of their normalised cross-correlation,
    resolution one grid period), 0 for signals without variation."""
    a = a - a.mean()
    b = b - b.mean()
    if a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    m = min(int(round(max_lag_ms * rate / 1000.0)), a.size - 1)
    lags = np.arange(-m, m + 1)
    best, best_c = 0, -np.inf
    for k in lags:
        x, y = (a[:a.size - k], b[k:]) if k >= 0 else (a[-k:], b[:b.size + k])
        if x.size < 2:
            continue
        c = float(np.dot(x, y)) / x.size
        if c > best_c:
            best, best_c = int(k), c
    return best * 1000.0 / rate


def _magnitude(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(x[:, :3] ** 2, axis=1))


def align(streams: list[tuple[str, SensorStream]], rate: float,
          tolerance_ms: float, rates: dict[str, float] | None = None) -> Aligned:
    """Align and resample the sensors (see the module doc) to one (N, sum of axes) array.
    ``rates``: a sensor's nominal rate when it is not ``rate`` (``[[data.sensors]] rate``,
    ``rate / k``): its dropped samples count its own periods. Every sensor is interpolated
    at the grid times, so for a sensor at ``rate / k`` every k-th grid point from a window's
    first frame is that sensor resampled to its own rate."""
    starts = [float(s.t_ms[0]) for _, s in streams]
    ends = [float(s.t_ms[-1]) for _, s in streams]
    for what, xs in (("starts", starts), ("ends", ends)):
        k = int(np.argmax(np.abs(np.array(xs) - xs[0])))
        if abs(xs[k] - xs[0]) > tolerance_ms:
            raise DataError(f"{streams[k][1].path}: {what} {xs[k] - xs[0]:+.0f} ms from "
                            f"{streams[0][1].path.name}, beyond the {tolerance_ms:g} ms "
                            "tolerance (data.align_tolerance_ms)")
    start, end = max(starts), min(ends)
    period = 1000.0 / rate
    n = int(math.floor((end - start) / period + 1e-9)) + 1
    if end <= start or n < 2:
        raise DataError(f"{streams[0][1].path}: the sensors' recordings do not overlap in time")
    grid = start + np.arange(n) * period
    parts = [resample(s, grid) for _, s in streams]
    labelled = [(name, s) for name, s in streams if s.labels is not None]
    labels = None
    per_sensor = []
    for name, s in labelled:
        idx = np.searchsorted(s.t_ms, grid, side="right") - 1
        per_sensor.append(s.labels[np.clip(idx, 0, s.t_ms.size - 1)])
    if per_sensor:
        labels = per_sensor[0]
    agree = (float(np.mean(np.all([x == per_sensor[0] for x in per_sensor], axis=0)))
             if len(per_sensor) > 1 else 1.0)
    lags = {name: estimate_lag(_magnitude(parts[0]), _magnitude(p), rate)
            for (name, _), p in zip(streams[1:], parts[1:])}
    stats = {
        "start_spread_ms": round(max(starts) - min(starts), 3),
        "end_spread_ms": round(max(ends) - min(ends), 3),
        "frames": n,
        "lag_ms": {k: round(v, 3) for k, v in lags.items()},
        "label_agreement": round(agree, 4),
        "sensors": {name: stream_stats(s, (rates or {}).get(name, rate))
                    for name, s in streams},
    }
    return Aligned(np.concatenate(parts, axis=1).astype(np.float32), labels, start, stats)


def label_runs(labels: np.ndarray, min_run: int) -> tuple[list[tuple[int, int, str]], int]:
    """Runs (offset, length, label) of equal labels; a run shorter than ``min_run`` frames
    joins the run before it (the first run: the one after it). Also the relabelled count."""
    runs: list[list] = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][2] == lab:
            runs[-1][1] += 1
        else:
            runs.append([i, 1, lab])
    relabelled = 0
    k = 0
    while len(runs) > 1 and k < len(runs):
        if runs[k][1] >= min_run:
            k += 1
            continue
        relabelled += runs[k][1]
        if k > 0:
            runs[k - 1][1] += runs[k][1]
            del runs[k]
            if k < len(runs) and runs[k][2] == runs[k - 1][2]:
                runs[k - 1][1] += runs[k][1]
                del runs[k]
        else:
            runs[1][0] = runs[0][0]
            runs[1][1] += runs[0][1]
            del runs[0]
    return [(o, n, lab) for o, n, lab in runs], relabelled


def alignment_summary(samples) -> dict:
    """The alignment figures of the multi-sensor recordings among ``samples`` (one entry per
    aligned source; see :func:`align`), for ``kiloml data info``; {} when there are none."""
    per: dict[str, dict] = {}
    for s in samples:
        a = s.reader_options().get("align")
        if isinstance(a, dict) and s.source not in per:
            per[s.source] = a
    if not per:
        return {}
    recs = list(per.values())

    def spread(key: str) -> dict:
        x = np.array([r[key] for r in recs], float)
        return {"median": round(float(np.median(x)), 3), "max": round(float(x.max()), 3)}

    names = list(recs[0]["sensors"])
    sensors = {}
    for n in names:
        st = [r["sensors"][n] for r in recs if n in r["sensors"]]
        lag = np.array([r["lag_ms"][n] for r in recs if n in r.get("lag_ms", {})], float)
        sensors[n] = {
            "rows": int(sum(x["rows"] for x in st)),
            "duplicated": int(sum(x["duplicated"] for x in st)),
            "dropped": int(sum(x["dropped"] for x in st)),
            "max_gap_ms": round(max(x["max_gap_ms"] for x in st), 3),
            "rate_hz_median": round(float(np.median([x["rate_hz"] for x in st])), 3),
            "lag_ms_median": round(float(np.median(lag)), 3) if lag.size else 0.0,
            "lag_ms_max_abs": round(float(np.abs(lag).max()), 3) if lag.size else 0.0,
        }
    agree = np.array([r["label_agreement"] for r in recs], float)
    return {"recordings": len(recs), "start_spread_ms": spread("start_spread_ms"),
            "end_spread_ms": spread("end_spread_ms"),
            "label_agreement": {"mean": round(float(agree.mean()), 4),
                                "min": round(float(agree.min()), 4)},
            "relabelled_frames": int(sum(r.get("relabelled", 0) for r in recs)),
            "sensors": sensors}
