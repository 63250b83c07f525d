"""Long recordings to test always-on inference on, and their truth files.

``make_audio_stream`` builds what MLPerf Tiny's streaming wakeword benchmark runs on: keyword
clips and unknown-word distractors of one split placed at random, non-overlapping times over
background noise at a stated signal-to-noise ratio, with the truth (label, start, end) of
every clip. ``make_imu_stream`` concatenates an IMU project's recordings of one split, each
labelled with its own label (simple but exact). Both are deterministic per seed.

Audio streams, step by step:

1. Clips: ``keywords`` clips drawn (without replacement while the split has enough, then with)
   evenly over the keyword labels, ``unknown`` clips from the unknown label(s).
   ``keyword_labels`` / ``is_keyword``: a label is a keyword unless it is a non-firing class
   (``_unknown_``, ``_silence_``, ``unknown``, ``silence``, ``noise``, ``background``).
2. Times: every clip gets its own slot; the gaps between clips (at least ``min_gap_s``) are
   uniform random (sorted uniform draws), so clips never overlap and the first starts after
   ``min_gap_s / 2``.
3. Noise bed: random segments (10-30 s) of the ``_background_noise_`` clips (role ``noise``
   in the index, whatever their split: the import keeps them for augmentation) at random
   offsets, each scaled to unit RMS, joined with 10 ms cross-fades.
4. Level: a clip's power is measured over its active part (its 20 ms frames within 30 dB of
   its loudest frame, as speech-level meters such as ITU-T P.56 skip pauses). The noise is set
   so that the median clip sits at ``snr_db`` above it, and every clip is then gained to
   exactly ``snr_db`` above the noise: one stated SNR for every word.
5. The sum is written as 16-bit PCM; if it would clip, the whole stream is scaled down (the
   SNR is unchanged) and the result says by how much.

Truth rows are the clip's span in the stream, seconds (the clip's padding included: Speech
Commands words sit somewhere inside their 1 s clip).

Truth CSV: header ``label,start_s,end_s``, one row per clip, in time order. ``read_truth``
checks every row (three fields, finite numbers, 0 <= start < end, a non-empty label, rows in
time order) and fails with one line naming the file and line.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from kiloml.data.dataset import Dataset
from kiloml.data.index import Sample
from kiloml.data.loader import SourceCache
from kiloml.data.wav import write_wav
from kiloml.errors import DataError
from kiloml.fileio import atomic_save_npy, atomic_write_text

NON_FIRING = frozenset({"_unknown_", "_silence_", "unknown", "silence", "noise", "background",
                        "_noise_", "_background_"})
TRUTH_HEADER = ["label", "start_s", "end_s"]
NOISE_SEGMENT_S = (10.0, 30.0)
CROSSFADE_S = 0.010
ACTIVE_FRAME_S = 0.020
ACTIVE_RANGE_DB = 30.0


def is_keyword(label: str) -> bool:
    """Whether ``label`` is a class that may fire (not unknown / silence / noise)."""
    return label not in NON_FIRING


@dataclass(frozen=True)
class TruthEvent:
    """One clip of a stream: its label and span in seconds."""

    label: str
    start_s: float
    end_s: float


def truth_csv(events: Iterable[TruthEvent]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRUTH_HEADER)
    for e in events:
        w.writerow([e.label, f"{e.start_s:.6f}", f"{e.end_s:.6f}"])
    return buf.getvalue()


def write_truth(path: str | Path, events: Iterable[TruthEvent]) -> None:
    atomic_write_text(Path(path), truth_csv(events))


def read_truth(path: str | Path) -> list[TruthEvent]:
    """The rows of a truth CSV, checked (see the module doc)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != TRUTH_HEADER:
        raise DataError(f"{p}:1: header must be {','.join(TRUTH_HEADER)}")
    out: list[TruthEvent] = []
    for lineno, row in enumerate(rows[1:], 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 3:
            raise DataError(f"{p}:{lineno}: {len(row)} fields, expected 3 (label,start_s,end_s)")
        label = row[0].strip()
        try:
            a, b = float(row[1]), float(row[2])
        except ValueError:
            raise DataError(f"{p}:{lineno}: start_s and end_s must be numbers, got "
                            f"{row[1]!r}, {row[2]!r}") from None
        if not label:
            raise DataError(f"{p}:{lineno}: empty label")
        if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b):
            raise DataError(f"{p}:{lineno}: need 0 <= start_s < end_s, got {row[1]}, {row[2]}")
        if out and a < out[-1].start_s:
            raise DataError(f"{p}:{lineno}: rows must be in time order (start {a:g} s is "
                            f"before the previous row's {out[-1].start_s:g} s)")
        out.append(TruthEvent(label, a, b))
    return out


# ---------------------------------------------------------------- audio streams


def _pick(rng: np.random.Generator, pool: Sequence, n: int) -> list:
    """``n`` items of ``pool``: without replacement while it lasts, then again."""
    out: list = []
    while len(out) < n and pool:
        k = min(n - len(out), len(pool))
        out += [pool[i] for i in rng.permutation(len(pool))[:k]]
    return out


def active_power(x: np.ndarray, rate: float) -> float:
    """Mean power of ``x``'s 20 ms frames within 30 dB of its loudest frame (see step 4)."""
    n = max(1, int(round(ACTIVE_FRAME_S * rate)))
    m = len(x) // n
    if m == 0:
        return float(np.mean(x ** 2)) if len(x) else 0.0
    e = np.mean(x[:m * n].reshape(m, n) ** 2, axis=1)
    top = float(e.max())
    if top <= 0:
        return 0.0
    return float(np.mean(e[e >= top * 10 ** (-ACTIVE_RANGE_DB / 10)]))


def noise_bed(noises: Sequence[np.ndarray], n: int, rate: float,
              rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS noise from random segments of ``noises`` (see step 3)."""
    usable = [c for c in noises if len(c) > 1 and float(np.mean(c ** 2)) > 0]
    if not usable:
        raise DataError("no background-noise clips with any signal: import the data set's "
                        "_background_noise_ folder")
    fade = max(1, int(CROSSFADE_S * rate))
    out = np.zeros(n + fade)
    pos = 0
    while pos < n:
        clip = usable[int(rng.integers(len(usable)))]
        seg = int(rng.uniform(*NOISE_SEGMENT_S) * rate)
        seg = max(2 * fade + 1, min(seg, len(clip)))
        a = int(rng.integers(0, len(clip) - seg + 1))
        s = clip[a:a + seg].astype(np.float64)
        s = s / math.sqrt(float(np.mean(s ** 2)) or 1.0)
        if pos:
            ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
            s[:fade] *= ramp
            out[pos - fade:pos] *= 1.0 - ramp
            start = pos - fade
        else:
            start = 0
        end = min(start + len(s), len(out))
        out[start:end] += s[:end - start]
        pos = end
    return out[:n]


def place(rng: np.random.Generator, durations: Sequence[float], total_s: float,
          min_gap_s: float) -> list[float]:
    """Start times of clips of ``durations`` (seconds), in the given order, at random
    non-overlapping places in ``total_s`` seconds, at least ``min_gap_s`` apart (step 2)."""
    need = float(sum(durations)) + min_gap_s * len(durations)
    free = total_s - need
    if free < 0:
        raise DataError(f"{len(durations)} clips of {sum(durations):.0f} s with "
                        f"{min_gap_s:g} s gaps need {need / 60:.1f} minutes; the stream has "
                        f"{total_s / 60:.1f} (use more --minutes or fewer clips)")
    cuts = np.sort(rng.uniform(0.0, free, len(durations)))
    starts, t = [], min_gap_s / 2
    for d, c in zip(durations, cuts):
        starts.append(t + float(c))
        t += d + min_gap_s
    return starts


@dataclass
class StreamResult:
    samples: int
    sample_rate: float
    truth: list[TruthEvent]
    notes: list[str]
    scale: float = 1.0           # < 1 when the whole stream was scaled down to avoid clipping

    def summary(self) -> dict:
        from collections import Counter

        return {"seconds": self.samples / self.sample_rate, "sample_rate": self.sample_rate,
                "events": len(self.truth),
                "labels": dict(sorted(Counter(e.label for e in self.truth).items())),
                "scale": self.scale, "notes": self.notes}


def make_audio_stream(dataset: Dataset, samples: Sequence[Sample], noises: Sequence[Sample],
                      rate: float, *, minutes: float = 20.0, snr_db: float = 10.0,
                      keywords: int = 50, unknown: int = 50, seed: int = 0,
                      min_gap_s: float = 1.5) -> tuple[np.ndarray, StreamResult]:
    """An int16 stream and its truth from ``samples`` (the split's clips, mono) over the
    ``noises`` clips (see the module doc)."""
    if not (minutes > 0 and math.isfinite(minutes)):
        raise DataError(f"--minutes must be > 0, not {minutes}")
    if not math.isfinite(snr_db):
        raise DataError(f"--snr must be a number of dB, not {snr_db}")
    if keywords < 0 or unknown < 0 or keywords + unknown == 0:
        raise DataError("need at least one keyword or unknown clip")
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    kw_labels = sorted({s.label for s in samples if is_keyword(s.label)})
    unk = sorted((s for s in samples if s.label in NON_FIRING and s.label not in
                  ("_silence_", "silence")), key=lambda s: s.id)
    if keywords and not kw_labels:
        raise DataError("the split has no keyword clips")
    if unknown and not unk:
        raise DataError("the split has no unknown-word clips (label _unknown_)")
    chosen: list[Sample] = []
    per = [keywords // len(kw_labels) + (i < keywords % len(kw_labels))
           for i in range(len(kw_labels))] if kw_labels else []
    for lab, k in zip(kw_labels, per):
        pool = sorted((s for s in samples if s.label == lab), key=lambda s: s.id)
        got = _pick(rng, pool, k)
        if k > len(pool):
            notes.append(f"{lab}: {k} clips from {len(pool)} in the split (some repeat)")
        chosen += got
    got = _pick(rng, unk, unknown)
    if unknown > len(unk):
        notes.append(f"unknown words: {unknown} clips from {len(unk)} in the split (some "
                     "repeat)")
    chosen += got
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]

    cache = SourceCache(dataset, size=64)
    clips = [cache.load(s)[:, 0].astype(np.float64) for s in chosen]
    n = int(round(minutes * 60 * rate))
    starts = place(rng, [len(c) / rate for c in clips], n / rate, min_gap_s)
    ncache = SourceCache(dataset, size=64)
    bed = noise_bed([ncache.load(s)[:, 0].astype(np.float64) for s in noises], n, rate, rng)
    powers = np.array([active_power(c, rate) for c in clips])
    if (powers <= 0).any():
        bad = chosen[int(np.flatnonzero(powers <= 0)[0])]
        raise DataError(f"{bad.source}: clip {bad.id!r} is digital silence: it cannot be "
                        "placed at an SNR")
    p_noise = float(np.median(powers)) / 10 ** (snr_db / 10)
    y = bed * math.sqrt(p_noise)
    truth = []
    for c, s, t0, pw in zip(clips, chosen, starts, powers):
        a = int(round(t0 * rate))
        g = math.sqrt(p_noise * 10 ** (snr_db / 10) / pw)
        y[a:a + len(c)] += g * c
        truth.append(TruthEvent(s.label, a / rate, (a + len(c)) / rate))
    peak = float(np.abs(y).max()) * 32768.0
    scale = 1.0
    if peak > 32767.0:
        scale = 32767.0 / peak
        notes.append(f"scaled by {scale:.3f} ({20 * math.log10(scale):.1f} dB) to avoid "
                     "clipping")
    pcm = np.round(y * 32768.0 * scale).astype(np.int16)
    return pcm, StreamResult(n, rate, truth, notes, scale)


def make_imu_stream(dataset: Dataset, samples: Sequence[Sample], *, minutes: Optional[float],
                    seed: int = 0) -> tuple[np.ndarray, StreamResult]:
    """The ``samples`` (one split's recordings) in a random order, end to end, until
    ``minutes`` (all of them when None or when the split is shorter), float32
    (frames, channels), each recording's span its truth."""
    if not samples:
        raise DataError("the split has no recordings")
    rng = np.random.default_rng(seed)
    order = [samples[i] for i in rng.permutation(len(samples))]
    rate = float(order[0].sample_rate)
    limit = None if minutes is None else int(round(minutes * 60 * rate))
    cache = SourceCache(dataset, size=64)
    parts, truth, pos, notes = [], [], 0, []
    for s in order:
        if limit is not None and pos >= limit:
            break
        x = cache.load(s).astype(np.float32)
        parts.append(x)
        truth.append(TruthEvent(s.label, pos / rate, (pos + len(x)) / rate))
        pos += len(x)
    if limit is not None and pos < limit:
        notes.append(f"the split holds {pos / rate / 60:.2f} minutes of recordings, fewer than "
                     f"{minutes:g}: all of them are used")
    return np.concatenate(parts), StreamResult(pos, rate, truth, notes)


def write_stream(path: str | Path, data: np.ndarray, rate: float) -> None:
    """Audio (int16) as a WAV file; IMU frames as .npy (float32) or .csv (one row a frame)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if data.dtype == np.int16:
        if suffix != ".wav":
            raise DataError(f"{p}: an audio stream is written as .wav")
        if abs(rate - round(rate)) > 1e-9:
            raise DataError(f"{p}: a WAV file needs a whole-number sample rate, not {rate}")
        tmp = p.with_name(p.name + ".tmp.wav")
        write_wav(tmp, data, int(round(rate)))
        tmp.replace(p)
        return
    if suffix == ".npy":
        atomic_save_npy(p, data.astype(np.float32))
    elif suffix == ".csv":
        buf = io.StringIO()
        np.savetxt(buf, data, delimiter=",", fmt="%.9g")
        atomic_write_text(p, buf.getvalue())
    else:
        raise DataError(f"{p}: an IMU stream is written as .npy or .csv")
