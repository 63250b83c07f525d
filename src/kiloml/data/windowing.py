"""Cut samples into fixed-length model windows.

A window never crosses a sample boundary, so recordings that were cut into per-split time
blocks (kiloml.data.splits) give windows that never straddle train and test. Samples shorter
than the window are zero-padded at the end (``pad="zero"``) or dropped (``pad="drop"``).
Every window carries its sample's label, split and group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from kiloml.data.dataset import Dataset
from kiloml.data.index import Sample
from kiloml.data.loader import SourceCache
from kiloml.data.settings import DataSettings
from kiloml.errors import DataError


@dataclass(frozen=True)
class Window:
    sample_id: str
    label: str
    split: str
    group: str
    offset: int        # first frame, relative to the sample
    length: int        # window length in frames
    valid: int         # frames of real data (< length when zero-padded)


def frames_for(ms: float, sample_rate: float) -> int:
    n = int(round(ms * sample_rate / 1000.0))
    if n < 1:
        raise DataError(f"{ms:g} ms at {sample_rate:g} Hz is less than one frame")
    return n


def window_offsets(length: int, window: int, stride: int, pad: str = "zero") -> list[int]:
    """Start frames of the windows of a ``length``-frame sample."""
    if window < 1 or stride < 1:
        raise DataError(f"window ({window}) and stride ({stride}) must be at least one frame")
    if pad not in ("zero", "drop"):
        raise DataError(f"pad must be 'zero' or 'drop', not {pad!r}")
    if length < window:
        return [0] if pad == "zero" and length > 0 else []
    return list(range(0, length - window + 1, stride))


def sample_windows(s: Sample, window_ms: float, stride_ms: float,
                   pad: str = "zero") -> list[int]:
    """Start frames (relative to the sample) of the windows of one sample."""
    return window_offsets(s.length, frames_for(window_ms, s.sample_rate),
                          frames_for(stride_ms, s.sample_rate), pad)


def make_windows(samples: Iterable[Sample], window_ms: float, stride_ms: float,
                 pad: str = "zero") -> list[Window]:
    out = []
    for s in samples:
        if s.role != "sample":
            continue
        w = frames_for(window_ms, s.sample_rate)
        for off in sample_windows(s, window_ms, stride_ms, pad):
            out.append(Window(s.id, s.label, s.split, s.group, off, w, min(w, s.length - off)))
    return out


def extract(frames: np.ndarray, win: Window) -> np.ndarray:
    """The window's frames from its sample's frames (zero-padded at the end if short)."""
    seg = frames[win.offset:win.offset + win.length]
    if seg.shape[0] < win.length:
        pad = np.zeros((win.length - seg.shape[0],) + seg.shape[1:], dtype=seg.dtype)
        seg = np.concatenate([seg, pad])
    return seg


def load_windows(dataset: Dataset, settings: DataSettings,
                 samples: Sequence[Sample] | None = None,
                 split: str | None = None) -> tuple[np.ndarray, list[Window]]:
    """All windows of the data set's samples (or of ``samples``; optionally one split) as
    (N, window, channels) float32 frames, with their :class:`Window` records."""
    if samples is None:
        samples = dataset.load_index().of_role("sample")
    if split is not None:
        samples = [s for s in samples if s.split == split]
    wins = make_windows(samples, settings.window_ms, settings.stride_ms, settings.pad)
    if not wins:
        return np.zeros((0, 0, 0), np.float32), []
    if len({w.length for w in wins}) > 1:
        raise DataError("samples have different sample rates: windows differ in length")
    by_id = {s.id: s for s in samples}
    cache = SourceCache(dataset)
    out = np.empty((len(wins), wins[0].length, by_id[wins[0].sample_id].channels), np.float32)
    cur_id, cur = None, None
    for i, w in enumerate(wins):
        if w.sample_id != cur_id:
            cur_id, cur = w.sample_id, cache.load(by_id[w.sample_id])
        out[i] = extract(cur, w)
    return out, wins
