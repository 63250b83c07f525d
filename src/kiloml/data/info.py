"""``kiloml data info``: what the data set holds and what is wrong with it."""

from __future__ import annotations

from collections import Counter, defaultdict

from kiloml.data.dataset import Dataset
from kiloml.data.fusion import alignment_summary
from kiloml.data.index import SPLITS, source_checksum
from kiloml.data.settings import DataSettings
from kiloml.data.splits import group_leaks, share_warnings
from kiloml.data.windowing import make_windows
from kiloml.errors import DataError

MIN_PER_LABEL = 10
IMBALANCE_RATIO = 3.0


def dataset_info(dataset: Dataset, settings: DataSettings, verify: bool = True) -> dict:
    """Counts per label and split (samples, windows, seconds), groups, durations, sample
    rates, malformed lines dropped at import, and the problems found. ``verify`` re-hashes
    every source file to detect missing or changed files.

    A label whose share of windows in a split is far from the configured fraction is a
    problem (rule: kiloml.data.splits, off by more than max(half the target, the largest
    group's share))."""
    cfg = settings
    idx = dataset.load_index()
    samples = idx.of_role("sample")
    noise = idx.of_role("noise")
    labels = Counter(s.label for s in samples)
    splits = Counter(s.split for s in samples)
    per = defaultdict(Counter)
    dur = defaultdict(float)
    sec = defaultdict(Counter)
    for s in samples:
        per[s.label][s.split] += 1
        dur[s.label] += s.duration_s
        sec[s.label][s.split] += s.duration_s
    groups = {s.group for s in samples if s.group}
    ungrouped = sum(1 for s in samples if not s.group)
    rates = Counter(s.sample_rate for s in samples)
    chans = Counter(s.channels for s in samples)
    lengths = [s.duration_s for s in samples]
    problems: list[str] = []

    if verify:
        sums: dict[str, str | None] = {}
        for s in idx:
            if s.source not in sums:
                p = dataset.resolve(s.source)
                sums[s.source] = source_checksum(p) if p.is_file() else None
        missing = sorted(k for k, v in sums.items() if v is None)
        changed = sorted({s.source for s in idx if sums[s.source] not in (None, s.checksum)})
        if missing:
            problems.append(f"{len(missing)} source file(s) missing, e.g. {missing[0]} (paths "
                            f"are relative to {dataset.root}: keep the data where it was "
                            "relative to it)")
        if changed:
            problems.append(f"{len(changed)} source file(s) changed since import, "
                            f"e.g. {changed[0]}")
    dropped = {s.source: s.reader_options().get("dropped_lines") for s in idx}
    dropped = {k: v for k, v in dropped.items() if isinstance(v, int) and v > 0}
    if dropped:
        worst = max(sorted(dropped), key=dropped.get)
        problems.append(f"{sum(dropped.values())} malformed line(s) dropped at import from "
                        f"{len(dropped)} file(s), e.g. {dropped[worst]} in {worst}")
    leaks = group_leaks(samples)
    if leaks:
        g, sp = next(iter(sorted(leaks.items())))
        problems.append(f"{len(leaks)} group(s) in more than one split, e.g. {g!r} in {sp}")
    try:
        wins = make_windows(samples, cfg.window_ms, cfg.stride_ms, cfg.pad)
        problems += share_warnings(samples, cfg.validation, cfg.test, cfg.window_ms,
                                   cfg.stride_ms, cfg.pad)
    except DataError as e:
        wins = []
        problems.append(f"cannot window the data: {e}")
    wcount = Counter(w.label for w in wins)
    wsplit = defaultdict(Counter)
    for w in wins:
        wsplit[w.label][w.split] += 1
    for lab in sorted(labels):
        if wcount[lab] < MIN_PER_LABEL:
            problems.append(f"label {lab!r}: only {wcount[lab]} window(s) of "
                            f"{cfg.window_ms:g} ms")
        empty = [sp for sp in SPLITS if sp != "train" and not per[lab][sp]]
        if empty and (cfg.validation if "validation" in empty else cfg.test) > 0:
            problems.append(f"label {lab!r}: no samples in {', '.join(empty)}")
    if labels and max(labels.values()) > IMBALANCE_RATIO * min(labels.values()):
        lo, hi = min(labels, key=labels.get), max(labels, key=labels.get)
        problems.append(f"class imbalance: {hi!r} has {labels[hi]} samples, {lo!r} {labels[lo]} "
                        f"(consider data.balance)")
    if len(rates) > 1:
        problems.append("mixed sample rates: " + ", ".join(f"{r:g} Hz x{n}" for r, n in
                                                          sorted(rates.items())))
    if len(chans) > 1:
        problems.append("mixed channel counts: " + ", ".join(f"{c} x{n}" for c, n in
                                                            sorted(chans.items())))
    if ungrouped and samples:
        problems.append(f"{ungrouped} sample(s) without speaker/person/recording group: split "
                        "per sample (leaks if they share a source)")
    win = cfg.window_ms / 1000.0
    short = sum(1 for x in lengths if x < win - 1e-9)
    if short:
        problems.append(f"{short} sample(s) shorter than the {cfg.window_ms:g} ms window "
                        f"(data.pad = {cfg.pad})")
    return {
        "samples": len(samples),
        "labels": dict(sorted(labels.items())),
        "groups": len(groups),
        "splits": {sp: splits.get(sp, 0) for sp in SPLITS},
        "label_splits": {lab: {sp: per[lab].get(sp, 0) for sp in SPLITS}
                         for lab in sorted(labels)},
        "windows": dict(sorted(wcount.items())),
        "window_splits": {lab: {sp: wsplit[lab].get(sp, 0) for sp in SPLITS}
                          for lab in sorted(labels)},
        "window_shares": {lab: {sp: round(wsplit[lab].get(sp, 0) / wcount[lab], 4)
                                if wcount[lab] else 0.0 for sp in SPLITS}
                          for lab in sorted(labels)},
        "ungrouped_samples": ungrouped,
        "duration_s": round(sum(lengths), 3),
        "label_duration_s": {lab: round(d, 3) for lab, d in sorted(dur.items())},
        "label_split_seconds": {lab: {sp: round(sec[lab].get(sp, 0.0), 3) for sp in SPLITS}
                                for lab in sorted(labels)},
        "length_s": {"min": round(min(lengths), 4), "max": round(max(lengths), 4)}
        if lengths else {},
        "sample_rates": {f"{r:g}": n for r, n in sorted(rates.items())},
        "channels": {str(c): n for c, n in sorted(chans.items())},
        "noise": {"clips": len(noise), "duration_s": round(sum(s.duration_s for s in noise), 3)},
        "sources": len({s.source for s in idx}),
        "dropped_lines": sum(dropped.values()),
        "alignment": _nominal_rates(alignment_summary(samples), settings),
        "problems": problems,
    }


def _nominal_rates(alignment: dict, settings: DataSettings) -> dict:
    """Each aligned sensor's nominal rate (``[[data.sensors]] rate``, else
    ``data.sample_rate``) next to its measured one."""
    names = {s.name for s in settings.sensors}
    if settings.sample_rate is not None:
        for n, x in alignment.get("sensors", {}).items():
            if n in names:
                x["nominal_rate_hz"] = settings.sensor_rate(n)
    return alignment
