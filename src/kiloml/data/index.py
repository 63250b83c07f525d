"""The dataset index: one CSV row per sample (a project keeps it in ``dataset/index.csv``).

CSV because it is the most open format there is: a spreadsheet, pandas or ``csv`` reads it.
The source files are referenced, not copied. A sample is a contiguous span of frames of one
source file (a whole clip, one gesture of a log, one time block of a long recording).

Columns
    id           unique, readable (``yes/022cd682_nohash_0``, ``ring/output_ring_hyw#3``)
    label        class label ('' for background-noise clips)
    group        speaker / person / recording the sample comes from ('' = none known: the
                 sample is its own group)
    split        train | validation | test
    role         sample | noise (noise clips feed augmentation, never the model directly)
    source       the file, relative to the data set's root (``../`` steps when outside it;
                 see kiloml.data.dataset)
    format       reader (wav, serial, csv, mat, ei-json, npy)
    offset       first frame of the sample in the decoded file
    length       frames
    sample_rate  Hz
    channels     channel count
    options      reader options as compact JSON ({"rows": 119}, {"variable": "X097_DE_time"}),
                 plus what the split and the reader recorded: ``time_block`` (a recording cut
                 in time), ``dropped_lines`` (malformed lines of the source file left out)
    checksum     first 16 hex digits of the source file's SHA-256 (detects changed files)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterable

from kiloml.errors import ProjectError
from kiloml.fileio import atomic_write_text

SPLITS = ("train", "validation", "test")
ROLES = ("sample", "noise")


@dataclass(frozen=True)
class Sample:
    id: str
    label: str
    group: str
    split: str
    role: str
    source: str
    format: str
    offset: int
    length: int
    sample_rate: float
    channels: int
    options: str = "{}"
    checksum: str = ""

    @property
    def duration_s(self) -> float:
        return self.length / self.sample_rate

    def with_(self, **kw) -> "Sample":
        return replace(self, **kw)

    def reader_options(self) -> dict:
        return json.loads(self.options) if self.options else {}


COLUMNS = [f.name for f in fields(Sample)]


class DatasetIndex:
    """An ordered list of samples with CSV load/save; save is atomic (temp file + rename)."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples: list[Sample] = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    @property
    def ids(self) -> set[str]:
        return {s.id for s in self.samples}

    def of_role(self, role: str = "sample") -> list[Sample]:
        return [s for s in self.samples if s.role == role]

    # ------------------------------------------------------------ I/O

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for s in self.samples:
            d = asdict(s)
            d["sample_rate"] = _fmt_rate(s.sample_rate)
            w.writerow([d[c] for c in COLUMNS])
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.to_csv())

    @classmethod
    def load(cls, path: str | Path) -> "DatasetIndex":
        p = Path(path)
        if not p.is_file():
            raise ProjectError(f"{p}: dataset index missing (re-create it with `kiloml init` or "
                               "import data)")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProjectError(f"{p}: cannot read the dataset index: {e}") from None
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or rows[0] != COLUMNS:
            raise ProjectError(f"{p}:1: header must be {','.join(COLUMNS)}")
        out, seen = [], set()
        for lineno, row in enumerate(rows[1:], 2):
            if not row:
                continue
            if len(row) != len(COLUMNS):
                raise ProjectError(f"{p}:{lineno}: {len(row)} fields, expected {len(COLUMNS)}")
            d = dict(zip(COLUMNS, row))
            try:
                s = Sample(id=d["id"], label=d["label"], group=d["group"], split=d["split"],
                           role=d["role"], source=d["source"], format=d["format"],
                           offset=int(d["offset"]), length=int(d["length"]),
                           sample_rate=float(d["sample_rate"]), channels=int(d["channels"]),
                           options=d["options"] or "{}", checksum=d["checksum"])
                opts = json.loads(s.options)
            except ValueError as e:
                raise ProjectError(f"{p}:{lineno}: bad value ({e})") from None
            if not isinstance(opts, dict):
                raise ProjectError(f"{p}:{lineno}: options must be a JSON object, got "
                                   f"{s.options[:40]!r}")
            if not s.id or s.id in seen:
                raise ProjectError(f"{p}:{lineno}: empty or duplicate id {s.id!r}")
            if s.split not in SPLITS or s.role not in ROLES:
                raise ProjectError(f"{p}:{lineno}: split must be one of {SPLITS} and role one of "
                                   f"{ROLES}, got {s.split!r}, {s.role!r}")
            if (s.offset < 0 or s.length <= 0 or s.channels <= 0
                    or not (math.isfinite(s.sample_rate) and s.sample_rate > 0)):
                raise ProjectError(f"{p}:{lineno}: offset, length, channels or sample_rate out "
                                   "of range")
            seen.add(s.id)
            out.append(s)
        return cls(out)


def source_checksum(path: str | Path) -> str:
    """The ``checksum`` column: first 16 hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _fmt_rate(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else repr(float(r))
