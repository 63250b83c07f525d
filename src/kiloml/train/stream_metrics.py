"""Scoring a long recording's detections against its truth, as MLPerf Tiny's streaming
wakeword benchmark does.

Rules (times in seconds):

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
from typing import Any, Iterable, Sequence

from kiloml.data.stream import TruthEvent, is_keyword
from kiloml.errors import DataError


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
