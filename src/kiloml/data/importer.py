"""``kiloml data import``: read files into a data set's index, atomically.

Every file is decoded and checked (sample rate and channel count against the data settings,
values finite) before anything is written. If one file is bad the import fails with one line
naming it and the index is left byte for byte as it was; with ``skip_bad`` the good files are
imported and the bad ones listed. The new index is written to a temporary file and renamed.

Labels, in order of precedence: ``label``; ``label_regex`` (first group, or the group named
``label``, matched against the path relative to the imported folder); the name of the folder
the file is in (one folder per label); the file name up to its first dot (``punch.csv``,
Edge Impulse's ``wave.1a2b.json``).

Groups: ``group_regex``; the Speech Commands speaker (8 hex digits before ``_nohash_``); the
magic_wand person (``output_<label>_<person>.txt``); the recording itself for files that are
one continuous recording (.mat, or a log with no separators and no person); else none.

Folders named ``_background_noise_`` hold noise clips for augmentation (role ``noise``).

One rate, stated once: ``data.sample_rate`` (else ``rate``) is the rate of every sample.
Rate-less files (serial logs, CSV without timestamps, .mat, .npy) take it; a file that states
its own rate (WAV header, Edge Impulse interval_ms: within 0.1 %) or implies one (CSV
timestamps: within 2 %, for clock drift and millisecond ticks) must agree with it, or the
import names the file and both rates.

A malformed line of a serial log (bytes lost on the link) drops that line with a warning
naming ``file:line``; the count is kept in the sample's options (``dropped_lines``) for
``kiloml data info``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kiloml.data.dataset import Dataset
from kiloml.data.fusion import SensorStream, align, label_runs, read_sensor_csv
from kiloml.data.index import DatasetIndex, Sample, source_checksum
from kiloml.data.readers import FORMATS, Recording, detect_format, read_file
from kiloml.data.settings import DataSettings
from kiloml.data.splits import assign_splits
from kiloml.errors import DataError, ProjectError
from kiloml.fileio import atomic_save_npy

NOISE_DIR = "_background_noise_"
MAX_STEM_LABELS = 20   # more files than this, each its own label: surely a mistake
MAX_WARNINGS_PER_FILE = 5
_DOC_FILE = re.compile(r"^(readme|license|licence|copying|notice|source|changelog|authors)"
                       r"([._-].*)?$|.*\.(md|rst|pdf|html?)$", re.I)
_SPEAKER = re.compile(r"(?:^|_)([0-9a-fA-F]{8})_nohash_")
_MAGIC_WAND = re.compile(r"^output_(?P<label>[A-Za-z]+)_(?P<rest>.+)$")


@dataclass
class ImportResult:
    added: list[Sample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, reason)
    ignored: list[str] = field(default_factory=list)               # not data files
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)             # "file:line: what happened"
    dropped_lines: int = 0                                         # malformed lines left out
    files: int = 0

    def summary(self) -> dict:
        from collections import Counter

        return {
            "files": self.files,
            "added": len(self.added),
            "labels": dict(sorted(Counter(s.label for s in self.added
                                          if s.role == "sample").items())),
            "splits": dict(sorted(Counter(s.split for s in self.added
                                          if s.role == "sample").items())),
            "noise_clips": sum(s.role == "noise" for s in self.added),
            "duplicates": self.duplicates,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "ignored": self.ignored,
            "notes": self.notes,
            "dropped_lines": self.dropped_lines,
            "warnings": self.warnings,
        }


def collect_files(path: Path, fmt: str) -> tuple[Path, list[Path], list[str]]:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        return path.parent, [path], []
    files, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or _DOC_FILE.match(name):
                ignored.append(str(p))
            elif fmt == "auto" and detect_format(p) is None:
                ignored.append(str(p))
            else:
                files.append(p)
    return path, files, ignored


def _regex(pattern: str | None, what: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise DataError(f"--{what}-regex {pattern!r}: invalid regular expression: {e}") from None
    if rx.groups < 1:
        raise DataError(f"--{what}-regex {pattern!r}: needs a capturing group")
    return rx


def _match(rx: re.Pattern, rel: str, name: str) -> str | None:
    m = rx.search(rel)
    if not m:
        return None
    return m.group(name) if name in rx.groupindex else m.group(1)


def label_for(rel: Path, label: str | None, label_rx: re.Pattern | None) -> str:
    if label is not None:
        return label
    if label_rx is not None:
        got = _match(label_rx, rel.as_posix(), "label")
        if got is None:
            raise DataError(f"{rel}: --label-regex {label_rx.pattern!r} does not match")
        return got
    if len(rel.parts) > 1:
        return rel.parts[-2]
    return rel.name.split(".")[0]


def group_for(rel: Path, label: str, rec: Recording, fmt: str,
              group_rx: re.Pattern | None) -> str:
    if group_rx is not None:
        got = _match(group_rx, rel.as_posix(), "group")
        if got is None:
            raise DataError(f"{rel}: --group-regex {group_rx.pattern!r} does not match")
        return got
    m = _SPEAKER.search(rel.name)
    if m:
        return m.group(1).lower()
    stem = rel.name.split(".")[0]
    m = _MAGIC_WAND.match(stem)
    if m and fmt == "serial":
        rest = m.group("rest")
        return rest.lower() if rest.isalpha() else stem
    if fmt == "mat" or (fmt == "serial" and len(rec.segments) == 1):
        return stem
    return ""


RATE_TOLERANCE = 1e-3              # a rate the file states (WAV header, interval_ms)
RATE_TOLERANCE_TIMESTAMPS = 0.02   # a rate measured from timestamps (clock drift, ticks)


def _check_rate(p: Path, rec: Recording, stated: float | None, stated_by: str) -> None:
    """A file that states or implies its own rate must agree with the stated one."""
    if stated is None or rec.file_rate is None:
        return
    tol = RATE_TOLERANCE_TIMESTAMPS if rec.file_rate_from == "timestamps" else RATE_TOLERANCE
    if abs(rec.file_rate - stated) > tol * stated:
        raise DataError(f"{p}: sample rate {rec.file_rate:g} Hz (from its {rec.file_rate_from}"
                        f"), but {stated_by} states {stated:g} Hz")


def _unique_id(sid: str, taken: set[str]) -> str:
    """``sid``, or ``sid~2``, ``sid~3``... if taken; added to ``taken``."""
    if sid in taken:
        j = 2
        while f"{sid}~{j}" in taken:
            j += 1
        sid = f"{sid}~{j}"
    taken.add(sid)
    return sid


def import_data(dataset: Dataset, settings: DataSettings, path: str | Path, *,
                fmt: str = "auto", label: str | None = None, label_regex: str | None = None,
                group_regex: str | None = None, rate: float | None = None,
                rows: int | None = None, variable: str | None = None, split: str = "auto",
                skip_bad: bool = False) -> ImportResult:
    """Import a file or folder into ``dataset``'s index, holding its lock (see the module
    doc). ``settings`` give the rate and channel count every file must have and how new
    samples are split. ``rate`` (Hz) is for files that carry none and only when
    ``settings.sample_rate`` is unset (stating both differently is an error); ``rows`` cuts
    CSV files into fixed-length samples; ``variable`` picks the .mat variable; ``split``
    is ``auto`` (group-aware) or the split for every new sample."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (expected auto or one of {', '.join(FORMATS)})")
    if split not in ("auto", "train", "validation", "test"):
        raise DataError(f"--split must be auto, train, validation or test, not {split!r}")
    if label is not None and not label.strip():
        raise DataError("--label must not be empty")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise DataError(f"--rate must be a positive number of Hz, not {rate}")
    if (rate is not None and settings.sample_rate is not None
            and abs(rate - settings.sample_rate) > RATE_TOLERANCE * settings.sample_rate):
        raise DataError(f"--rate {rate:g} Hz contradicts data.sample_rate "
                        f"{settings.sample_rate:g} Hz (state the rate once)")
    if not dataset.index_path.is_file():
        raise ProjectError(f"{dataset.index_path}: dataset index missing")
    with dataset.lock():
        if settings.sensors:
            return _import_sensors_locked(dataset, settings, Path(path), group_regex, split,
                                          skip_bad)
        return _import_locked(dataset, settings, Path(path), fmt, label, label_regex,
                              group_regex, rate, rows, variable, split, skip_bad)


def _import_locked(dataset: Dataset, cfg: DataSettings, path: Path, fmt: str,
                   label: str | None, label_regex: str | None, group_regex: str | None,
                   rate: float | None, rows: int | None, variable: str | None, split: str,
                   skip_bad: bool) -> ImportResult:
    label_rx, group_rx = _regex(label_regex, "label"), _regex(group_regex, "group")
    index = dataset.load_index()
    root, files, ignored = collect_files(path, fmt)
    res = ImportResult(ignored=ignored, files=len(files))
    if not files:
        raise DataError(f"{path}: no data files found"
                        + (f" ({len(ignored)} ignored: not a known data format)"
                           if ignored else ""))
    stated = cfg.sample_rate if cfg.sample_rate is not None else rate
    stated_by = "data.sample_rate" if cfg.sample_rate is not None else "--rate"
    # A time-blocked recording's first (train) block starts at the original offset.
    existing_loc = {(dataset.location(s.source), s.offset) for s in index}
    taken = set(index.ids)
    new: list[Sample] = []
    for p in files:
        rel = p.relative_to(root)
        try:
            role = "noise" if NOISE_DIR in rel.parts else "sample"
            lab = "" if role == "noise" else label_for(rel, label, label_rx)
            f = fmt if fmt != "auto" else (detect_format(p) or "")
            rec = read_file(p, f, rate=stated, rows=rows, variable=variable)
            _check_rate(p, rec, stated, stated_by)
            if cfg.channels is not None and rec.channels != cfg.channels:
                raise DataError(f"{p}: {rec.channels} channel(s), data.channels is "
                                f"{cfg.channels}")
            grp = group_for(rel, lab, rec, f, group_rx)
        except DataError as e:
            res.skipped.append((str(p), str(e)))
            continue
        for n in rec.notes:
            res.notes.append(f"{p}: {n}")
        res.dropped_lines += len(rec.dropped)
        res.warnings += rec.dropped[:MAX_WARNINGS_PER_FILE]
        if len(rec.dropped) > MAX_WARNINGS_PER_FILE:
            res.warnings.append(f"{p}: ... and {len(rec.dropped) - MAX_WARNINGS_PER_FILE} more "
                                "malformed line(s) dropped")
        src = dataset.source_name(p)
        loc = dataset.location(src)
        opts: dict = {}
        if rows is not None and f == "csv":
            opts["rows"] = rows
        if variable is not None and f == "mat":
            opts["variable"] = variable
        if rec.dropped:
            opts["dropped_lines"] = len(rec.dropped)
        checksum = source_checksum(p)
        sample_rate = stated if stated is not None else rec.sample_rate
        base = rel.with_suffix("").as_posix()
        multi = len(rec.segments) > 1
        for k, (off, length) in enumerate(rec.segments):
            if (loc, off) in existing_loc:
                res.duplicates += 1
                continue
            sid = _unique_id(f"{base}#{k}" if multi else base, taken)
            new.append(Sample(id=sid, label=lab, group=grp if role == "sample" else base,
                              split="train", role=role, source=src, format=f, offset=off,
                              length=length, sample_rate=sample_rate, channels=rec.channels,
                              options=json.dumps(opts, separators=(",", ":"), sort_keys=True),
                              checksum=checksum))
    stem_labels = [f for f in files if len(f.relative_to(root).parts) == 1]
    if (label is None and label_rx is None and len(stem_labels) > MAX_STEM_LABELS
            and len({f.name.split(".")[0] for f in stem_labels}) == len(stem_labels)):
        raise DataError(f"{path}: every one of its {len(stem_labels)} files would be its own "
                        "label (labels come from sub-folder names, else from file names): pass "
                        "--label, --label-regex, or import the parent folder")
    if res.skipped and not skip_bad:
        more = len(res.skipped) - 1
        raise DataError(res.skipped[0][1] + (f" (and {more} more bad file(s))" if more else "")
                        + "; nothing imported (--skip-bad imports the rest)")
    if split == "auto":
        new = assign_splits(new, index.samples, cfg.validation, cfg.test, seed=cfg.seed,
                            by=cfg.split_by, notes=res.notes, window_ms=cfg.window_ms,
                            stride_ms=cfg.stride_ms, pad=cfg.pad)
    else:
        new = [s.with_(split=split) if s.role == "sample" else s for s in new]
    res.added = new
    if new:
        DatasetIndex(index.samples + new).save(dataset.index_path)
    return res


ALIGNED_DIR = "aligned"


def _recordings(cfg: DataSettings, root: Path, files: list[Path],
                res: ImportResult) -> dict[str, dict[str, Path]]:
    """Files grouped by recording (the path without its sensor suffix), per sensor name."""
    recs: dict[str, dict[str, Path]] = {}
    for p in files:
        rel = p.relative_to(root).with_suffix("").as_posix()
        hits = [s.suffix for s in cfg.sensors if p.suffix.lower() == ".csv"
                and rel.endswith(s.suffix)]
        if not hits:
            res.ignored.append(str(p))
            continue
        suffix = max(hits, key=len)      # "_sw" before "" (the most specific ending)
        key = rel[:len(rel) - len(suffix)]
        for s in cfg.sensors:            # sensors sharing a suffix share the file
            if s.suffix == suffix:
                recs.setdefault(key, {})[s.name] = p
    return recs


def _read_streams(cfg: DataSettings, got: dict[str, Path]) -> list[tuple[str, SensorStream]]:
    """Each sensor's stream of one recording; a file shared by several sensors is read once
    (their columns together) and split, its labels kept with the first of them."""
    by_file: dict[Path, list] = {}
    for s in cfg.sensors:
        by_file.setdefault(got[s.name], []).append(s)
    read = {p: read_sensor_csv(p, [a for s in ss for a in s.axes], cfg.label_column)
            for p, ss in by_file.items()}
    out = []
    for s in cfg.sensors:
        p = got[s.name]
        st, ss = read[p], by_file[p]
        k = sum(len(x.axes) for x in ss[:ss.index(s)])
        out.append((s.name, SensorStream(p, st.t_ms, st.values[:, k:k + len(s.axes)],
                                         st.labels if ss[0] is s else None)))
    return out


def _import_sensors_locked(dataset: Dataset, cfg: DataSettings, path: Path,
                           group_regex: str | None, split: str,
                           skip_bad: bool) -> ImportResult:
    """Multi-sensor import (kiloml.data.fusion): each recording's sensor files are aligned and
    resampled into one ``aligned/<folder hash>/<recording>.npy`` next to the index, cut into
    label runs."""
    group_rx = _regex(group_regex, "group")
    index = dataset.load_index()
    root, files, ignored = collect_files(path, "auto")
    res = ImportResult(ignored=ignored)
    recs = _recordings(cfg, root, files, res)
    if not recs:
        raise DataError(f"{path}: no sensor files found (names ending in "
                        f"{', '.join(s.suffix + '.csv' for s in cfg.sensors)})")
    for s in cfg.sensors:
        if not any(s.name in r for r in recs.values()):
            raise DataError(f"{path}: no file of sensor {s.name!r} (*{s.suffix}.csv) although "
                            "data.sensors declares it")
    res.files = sum(len(set(r.values())) for r in recs.values())
    rate = float(cfg.sample_rate)
    min_run = max(1, int(round(cfg.min_run_ms * rate / 1000.0)))
    # one folder per imported folder (named by a hash of its path relative to the data set's
    # root, so project and data still move together): equal recording names from two
    # folders never collide
    tag = hashlib.sha256(dataset.source_name(root).encode()).hexdigest()[:8]
    adir = dataset.index_path.parent / ALIGNED_DIR / tag
    known = {s.source for s in index}
    taken = set(index.ids)
    new: list[Sample] = []
    arrays: list[tuple[Path, object]] = []
    for key, got in sorted(recs.items()):
        first = next(iter(got.values()))
        try:
            absent = [s for s in cfg.sensors if s.name not in got]
            if absent:
                s = absent[0]
                raise DataError(f"{first}: no {s.name} file {Path(key).name}{s.suffix}.csv "
                                "next to it for this recording")
            streams = _read_streams(cfg, got)
            if all(st.labels is None for _, st in streams):
                raise DataError(f"{first}: no {cfg.label_column!r} column in any sensor file")
            al = align(streams, rate, cfg.align_tolerance_ms,
                       {s.name: cfg.sensor_rate(s.name) for s in cfg.sensors})
            runs, relabelled = label_runs(al.labels, min_run)
            if group_rx is not None:
                grp = _match(group_rx, key, "group")
                if grp is None:
                    raise DataError(f"{first}: --group-regex {group_rx.pattern!r} does not "
                                    "match")
            else:
                grp = Path(key).parent.name or key
        except DataError as e:
            res.skipped.append((str(first), str(e)))
            continue
        npy = adir / f"{key}.npy"
        src = dataset.source_name(npy)
        if src in known:
            res.duplicates += len(runs)
            continue
        arrays.append((npy, al.data))
        al.stats["relabelled"] = relabelled
        al.stats["from"] = [dataset.source_name(got[s.name]) for s in cfg.sensors]
        opts = json.dumps({"align": al.stats}, separators=(",", ":"), sort_keys=True)
        for k, (off, n, lab) in enumerate(runs):
            sid = _unique_id(f"{key}#{k}", taken)
            new.append(Sample(id=sid, label=str(lab), group=grp, split="train", role="sample",
                              source=src, format="npy", offset=off, length=n,
                              sample_rate=rate, channels=int(al.data.shape[1]),
                              options=opts, checksum=""))
    if res.skipped and not skip_bad:
        more = len(res.skipped) - 1
        raise DataError(res.skipped[0][1] + (f" (and {more} more bad recording(s))"
                                             if more else "")
                        + "; nothing imported (--skip-bad imports the rest)")
    sums = {}
    for npy, arr in arrays:
        atomic_save_npy(npy, arr, make_parents=True)
        sums[dataset.source_name(npy)] = source_checksum(npy)
    new = [s.with_(checksum=sums[s.source]) for s in new]
    if split == "auto":
        new = assign_splits(new, index.samples, cfg.validation, cfg.test, seed=cfg.seed,
                            by=cfg.split_by, notes=res.notes, window_ms=cfg.window_ms,
                            stride_ms=cfg.stride_ms, pad=cfg.pad)
    else:
        new = [s.with_(split=split) for s in new]
    res.added = new
    if new:
        DatasetIndex(index.samples + new).save(dataset.index_path)
    return res
