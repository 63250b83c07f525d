"""Readers for the sensor-data formats kiloml imports.

Every reader returns a :class:`Recording`: float32 samples of shape (frames, channels), the
sample rate in Hz, axis names, and the segments (offset, length in frames) the file holds —
one segment for a plain recording, several for a log with ``-,-,-`` separators or a CSV with a
fixed number of rows per gesture. Bad input raises :class:`kiloml.errors.DataError` with one
line naming the file and, where it applies, the line number.

Formats
    wav      RIFF/WAVE (see :mod:`kiloml.data.wav`)
    serial   serial-terminal logs of ``x,y,z`` lines with ``-,-,-`` separators and terminal
             junk (the TFLM magic_wand data); junk lines are skipped and counted
    csv      comma/semicolon/tab separated numbers, with or without a header and a timestamp
             column (Arduino IMU capture style); ``rows`` cuts it into fixed-length samples
    mat      MATLAB v4/v5 .mat (scipy), one numeric variable (e.g. CWRU ``X097_DE_time``)
    ei-json  Edge Impulse data acquisition format, JSON form (payload.interval_ms, sensors,
             values); the signature is not verified
    npy      NumPy arrays: (T,) or (T, C) is one sample, (N, T, C) is N samples
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kiloml.errors import DataError

F32_MAX = float(np.finfo(np.float32).max)
FORMATS = ("wav", "serial", "csv", "mat", "ei-json", "npy")
EXTENSIONS = {".wav": "wav", ".wave": "wav", ".csv": "csv", ".tsv": "csv", ".txt": "serial",
              ".log": "serial", ".mat": "mat", ".json": "ei-json", ".npy": "npy"}


@dataclass
class Recording:
    """One decoded source file."""

    data: np.ndarray                      # float32 (frames, channels)
    sample_rate: float                    # Hz
    axes: list[str]                       # one name per channel
    segments: list[tuple[int, int]]       # (offset, length) in frames, in file order
    raw_int16: np.ndarray | None = None   # the original PCM for 16-bit WAV (fixed-point DSP)
    notes: list[str] = field(default_factory=list)   # non-fatal findings (junk lines skipped)
    dropped: list[str] = field(default_factory=list)  # "file:line: why" of malformed lines
    # The rate the file itself states (WAV header, interval_ms) or implies (timestamps), and
    # which of these it is ("" when the file carries no rate and ``sample_rate`` was given).
    file_rate: float | None = None
    file_rate_from: str = ""

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])


def detect_format(path: Path) -> str | None:
    """Format from the file extension (None: not a data file we know)."""
    return EXTENSIONS.get(path.suffix.lower())


def read_file(path: str | Path, fmt: str = "auto", *, rate: float | None = None,
              rows: int | None = None, variable: str | None = None) -> Recording:
    """Read one file. ``rate`` (Hz) is required where the file does not carry one (serial
    logs, CSV without timestamps, .mat, .npy); ``rows`` cuts a CSV into fixed-length samples;
    ``variable`` picks the .mat variable (a name or a glob such as ``*_DE_time``)."""
    p = Path(path)
    if fmt == "auto":
        fmt = detect_format(p) or ""
        if not fmt:
            raise DataError(f"{p}: unknown file type {p.suffix!r} (use --format)")
    if fmt not in FORMATS:
        raise DataError(f"{p}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "wav":
        return read_wav_recording(p)
    if fmt == "serial":
        return read_serial_log(p, rate=rate)
    if fmt == "csv":
        return read_csv(p, rate=rate, rows=rows)
    if fmt == "mat":
        return read_mat(p, rate=rate, variable=variable)
    if fmt == "ei-json":
        return read_ei_json(p)
    return read_npy(p, rate=rate)


def _read_bytes(p: Path) -> bytes:
    try:
        blob = p.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    if not blob:
        raise DataError(f"{p}: empty file")
    return blob


def _need_rate(p: Path, rate: float | None, what: str) -> float:
    if rate is None:
        raise DataError(f"{p}: {what} carries no sample rate; set data.sample_rate "
                        "(or pass --rate HZ)")
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise DataError(f"{p}: sample rate must be a positive number of Hz, got {rate!r}")
    return float(rate)


# ---------------------------------------------------------------- WAV


def read_wav_recording(p: Path) -> Recording:
    from kiloml.data.wav import read_wav

    w = read_wav(p)
    if w.frames == 0:
        raise DataError(f"{p}: WAV has no samples")
    raw16 = w.data if (w.bits == 16 and not w.is_float) else None
    axes = ["audio"] if w.channels == 1 else [f"ch{i}" for i in range(w.channels)]
    return Recording(w.as_float(), float(w.sample_rate), axes, [(0, w.frames)], raw_int16=raw16,
                     file_rate=float(w.sample_rate), file_rate_from="WAV header")


# ---------------------------------------------------------------- serial logs

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78DEHMNOZc])")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SEP = re.compile(r"^-(\s*,\s*-)+$")
_SERIAL_FIELD = re.compile(rf"^(?:{_NUM}|[-+]?(?:nan|inf|infinity))$", re.I)


def _clean_terminal_line(line: str) -> str:
    return _CTRL.sub("", _ANSI.sub("", line)).strip()


def _serial_values(s: str) -> list[float] | None:
    """The numbers of a ``v1,v2,...`` line, or None when it is not such a line."""
    fields = [f.strip() for f in s.split(",")]
    if not all(_SERIAL_FIELD.match(f) for f in fields):
        return None
    return [float(f) for f in fields]


def read_serial_log(p: Path, rate: float | None = None) -> Recording:
    """Terminal capture of ``x,y,z`` lines. A line of dashes (``-,-,-``) starts a new sample;
    other lines that are not comma-separated numbers (shell prompts, escape codes, line
    noise) are terminal junk, skipped and counted in a note.

    The axis count is the most common number of values per line. A line of numbers with
    another count (``11`` among ``x,y,z`` lines: bytes lost on the serial link) or with a
    NaN, infinite or beyond-float32 value is malformed: that line alone is dropped, listed in
    ``Recording.dropped`` as ``file:line: why``. Only that line, not its gesture, because the
    neighbouring lines are intact: the gesture loses one frame (40 ms at 25 Hz), whereas
    dropping it would lose a labelled example, or a whole recording for a log without
    separators. A log with no usable line is an error."""
    rate = _need_rate(p, rate, "a serial log")
    text = _read_bytes(p).decode("utf-8", errors="replace")
    lines: list[tuple[int, str, list[float] | None]] = []   # (line number, text, values)
    counts: dict[int, int] = {}
    junk = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = _clean_terminal_line(raw)
        if not s:
            continue
        if _SEP.match(s):
            lines.append((lineno, s, None))
            continue
        vals = _serial_values(s)
        if vals is None:
            junk += 1
            continue
        lines.append((lineno, s, vals))
        counts[len(vals)] = counts.get(len(vals), 0) + 1
    if not counts:
        raise DataError(f"{p}: no numeric 'x,y,z' lines found (is this a serial log?)")
    c = max(counts, key=counts.get)        # dicts keep insertion order: ties go to the first
    rows: list[list[float]] = []
    segments: list[tuple[int, int]] = []
    dropped: list[tuple[int, str]] = []                    # (line number, why)
    start = 0
    for lineno, s, vals in lines:
        if vals is None:
            if len(rows) > start:
                segments.append((start, len(rows) - start))
            start = len(rows)
        elif len(vals) != c:
            dropped.append((lineno, f"dropped malformed line {s[:40]!r} ({len(vals)} value"
                                    f"{'s' if len(vals) != 1 else ''}, the log has {c} per line)"))
        elif not all(math.isfinite(v) and abs(v) <= F32_MAX for v in vals):
            dropped.append((lineno, f"dropped line {s[:40]!r} (NaN, infinite or beyond the "
                                    "float32 range)"))
        else:
            rows.append(vals)
    if len(rows) > start:
        segments.append((start, len(rows) - start))
    if not rows:
        raise DataError(f"{p}: no usable 'x,y,z' line ({len(dropped)} malformed line(s) "
                        f"dropped, e.g. line {dropped[0][0]}: {dropped[0][1]})")
    data = np.asarray(rows, dtype=np.float32)
    axes = ["x", "y", "z"] if c == 3 else [f"ch{i}" for i in range(c)]
    notes = [f"skipped {junk} terminal junk line(s)"] if junk else []
    return Recording(data, rate, axes, segments, notes=notes,
                     dropped=[f"{p}:{n}: {why}" for n, why in dropped])


# ---------------------------------------------------------------- CSV

_TIME_UNITS = {"timestamp": 1e-3, "time": 1e-3, "t": 1e-3, "ms": 1e-3, "millis": 1e-3,
               "time_ms": 1e-3, "timestamp_ms": 1e-3, "time_s": 1.0, "seconds": 1.0, "s": 1.0,
               "time_us": 1e-6, "us": 1e-6, "micros": 1e-6, "timestamp_us": 1e-6}


def _split_fields(line: str, delim: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.split(delim)]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_csv(p: Path, rate: float | None = None, rows: int | None = None) -> Recording:
    """Numeric CSV, one row per time step. A first row that is not all numbers is the header.
    A timestamp column (header ``timestamp``/``time``/``t``/``ms``/``millis`` in milliseconds,
    ``time_s``/``seconds`` in s, ``time_us``/``micros`` in µs) gives the sample rate and is
    not a channel; a given ``rate`` takes precedence (``Recording.file_rate`` keeps the
    timestamps' rate for the caller to compare). ``rows``: fixed number of rows per sample
    (e.g. 119 for Arduino's IMU_Capture); the row count must be a multiple of it."""
    text = _read_bytes(p).decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DataError(f"{p}: no data rows")
    first = lines[0][1]
    delim = max((",", ";", "\t"), key=first.count)
    head = _split_fields(first, delim)
    header = None if all(_is_number(f) for f in head) else head
    body = lines[1:] if header else lines
    if not body:
        raise DataError(f"{p}: header but no data rows")
    ncols = len(header) if header else len(_split_fields(body[0][1], delim))
    names = header or [f"ch{i}" for i in range(ncols)]
    if header and len(set(header)) != len(header):
        raise DataError(f"{p}:{lines[0][0]}: duplicate column names in header")
    tcol = None
    if header:
        for k, h in enumerate(header):
            if h.lower() in _TIME_UNITS:
                tcol = k
                break
    vals = np.empty((len(body), ncols), dtype=np.float64)
    for r, (lineno, ln) in enumerate(body):
        fields = _split_fields(ln, delim)
        if len(fields) != ncols:
            raise DataError(f"{p}:{lineno}: {len(fields)} fields, expected {ncols}")
        for k, f in enumerate(fields):
            if f == "":
                raise DataError(f"{p}:{lineno}: missing value in column {names[k]!r}")
            try:
                v = float(f)
            except ValueError:
                raise DataError(f"{p}:{lineno}: column {names[k]!r}: {f[:30]!r} is not a "
                                "number") from None
            if not math.isfinite(v):
                raise DataError(f"{p}:{lineno}: column {names[k]!r}: {f!r} is not finite")
            vals[r, k] = v
    notes = []
    file_rate = None
    if tcol is not None:
        unit = _TIME_UNITS[header[tcol].lower()]
        t = vals[:, tcol] * unit
        dt = np.diff(t)
        if len(t) < 2:
            raise DataError(f"{p}: a timestamp column needs at least two rows")
        if (dt <= 0).any():
            bad = int(np.flatnonzero(dt <= 0)[0]) + 1
            raise DataError(f"{p}:{body[bad][0]}: timestamp does not increase")
        # The period: the mean of the steps within +-50 % of the median step, so that gaps
        # (lost samples) do not lower the rate and millisecond ticks (8, 8, 9, 8 ms at
        # 119 Hz) do not round it to 125 Hz.
        med = float(np.median(dt))
        period = float(np.mean(dt[np.abs(dt - med) <= 0.5 * med]))
        file_rate = 1.0 / period
        jitter = float(np.max(np.abs(dt - med)) / med)
        if jitter > 0.5:
            notes.append(f"timestamps jitter by up to {jitter:.0%} of the sample period")
        rate = file_rate if rate is None else rate
        vals = np.delete(vals, tcol, axis=1)
        names = names[:tcol] + names[tcol + 1:]
        if not names:
            raise DataError(f"{p}: only a timestamp column, no data")
    rate = _need_rate(p, rate, "a CSV file without a timestamp column")
    big = np.abs(vals) > F32_MAX
    if big.any():
        r = int(np.flatnonzero(big.any(axis=1))[0])
        raise DataError(f"{p}:{body[r][0]}: value beyond the float32 range")
    data = vals.astype(np.float32)
    n = data.shape[0]
    if rows is not None:
        if rows <= 0:
            raise DataError(f"{p}: --rows must be positive, got {rows}")
        if n % rows:
            raise DataError(f"{p}: {n} data rows is not a multiple of --rows {rows} "
                            f"({n % rows} rows left over: truncated capture?)")
        segments = [(k, rows) for k in range(0, n, rows)]
    else:
        segments = [(0, n)]
    return Recording(data, float(rate), names, segments, notes=notes, file_rate=file_rate,
                     file_rate_from="timestamps" if file_rate is not None else "")


# ---------------------------------------------------------------- MATLAB

DEFAULT_MAT_VARIABLES = ("*_DE_time",)


def read_mat(p: Path, rate: float | None = None, variable: str | None = None) -> Recording:
    """One numeric vector or (frames, channels) matrix from a MATLAB .mat file. ``variable``
    is a name or glob; by default ``*_DE_time`` (CWRU drive-end accelerometer) if present,
    else the only numeric array in the file."""
    import scipy.io

    rate = _need_rate(p, rate, "a .mat file")
    _read_bytes(p)
    try:
        m = scipy.io.loadmat(str(p))
    except NotImplementedError:
        raise DataError(f"{p}: MATLAB v7.3 (HDF5) files are not supported; save with -v7") from None
    except Exception as e:  # scipy raises many types on corrupt files
        raise DataError(f"{p}: not a readable .mat file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:80] if str(e) else ''})") from None
    arrays = {k: v for k, v in m.items() if not k.startswith("__") and isinstance(v, np.ndarray)
              and v.dtype.kind in "iuf" and v.size > 1}
    pats = [variable] if variable else list(DEFAULT_MAT_VARIABLES)
    chosen = [k for k in sorted(arrays) if any(fnmatch.fnmatchcase(k, pt) for pt in pats)]
    if not chosen and not variable and len(arrays) == 1:
        chosen = list(arrays)
    have = ", ".join(sorted(arrays)) or "none"
    if not chosen:
        want = f"variable matching {variable!r}" if variable else "default variable (*_DE_time)"
        raise DataError(f"{p}: no {want}; numeric variables: {have} (choose with --variable)")
    if len(chosen) > 1:
        raise DataError(f"{p}: several variables match ({', '.join(chosen)}); choose one with "
                        "--variable")
    v = np.asarray(arrays[chosen[0]])
    if v.ndim == 2 and 1 in v.shape:
        v = v.reshape(-1, 1)
    elif v.ndim == 1:
        v = v[:, None]
    elif v.ndim != 2:
        raise DataError(f"{p}: variable {chosen[0]!r} has shape {v.shape}; expected a vector or "
                        "a (frames, channels) matrix")
    elif v.shape[0] < v.shape[1]:
        v = v.T
    with np.errstate(over="ignore", invalid="ignore"):
        data = v.astype(np.float32)
    if not np.isfinite(data).all():
        bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise DataError(f"{p}: variable {chosen[0]!r}: NaN or infinite value at frame {bad}")
    name = chosen[0]
    axes = [name] if data.shape[1] == 1 else [f"{name}[{i}]" for i in range(data.shape[1])]
    return Recording(data, rate, axes, [(0, data.shape[0])])


# ---------------------------------------------------------------- Edge Impulse JSON


def read_ei_json(p: Path) -> Recording:
    """Edge Impulse data acquisition format (JSON form)::

        {"protected": {...}, "signature": "...",
         "payload": {"interval_ms": 10, "sensors": [{"name": "accX", "units": "m/s2"}, ...],
                     "values": [[x, y, z], ...]}}

    ``values`` rows have one number per sensor (a single sensor may use plain numbers).
    The HMAC signature is not verified."""
    blob = _read_bytes(p)
    try:
        doc = json.loads(blob.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{p}: JSON nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        raise DataError(f"{p}: not Edge Impulse acquisition JSON (no 'payload' object)")
    pl = doc["payload"]
    iv = pl.get("interval_ms")
    if isinstance(iv, bool) or not isinstance(iv, (int, float)) or not math.isfinite(iv) or iv <= 0:
        raise DataError(f"{p}: payload.interval_ms must be a positive number, got {iv!r}")
    sensors = pl.get("sensors")
    if not isinstance(sensors, list) or not sensors:
        raise DataError(f"{p}: payload.sensors must be a non-empty list")
    names = []
    for i, s in enumerate(sensors):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            raise DataError(f"{p}: payload.sensors[{i}] needs a 'name' string")
        names.append(s["name"])
    values = pl.get("values")
    if not isinstance(values, list) or not values:
        raise DataError(f"{p}: payload.values must be a non-empty list")
    c = len(names)
    rows = []
    for i, row in enumerate(values):
        if not isinstance(row, list):
            row = [row]
        if len(row) != c:
            raise DataError(f"{p}: payload.values[{i}]: expected {c} numbers (one per sensor), "
                            f"got {len(row)}")
        for v in row:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{p}: payload.values[{i}]: {v!r} is not a number")
            if not math.isfinite(v) or abs(v) > F32_MAX:
                raise DataError(f"{p}: payload.values[{i}]: {v!r} is not a finite float32")
        rows.append(row)
    data = np.asarray(rows, dtype=np.float32).reshape(len(rows), c)
    return Recording(data, 1000.0 / float(iv), names, [(0, len(rows))],
                     file_rate=1000.0 / float(iv), file_rate_from="payload.interval_ms")


# ---------------------------------------------------------------- NumPy


def read_npy(p: Path, rate: float | None = None) -> Recording:
    """``.npy`` without pickles: (T,) or (T, C) is one sample, (N, T, C) is N samples of T
    frames each (stored back to back)."""
    rate = _need_rate(p, rate, "a .npy array")
    _read_bytes(p)
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{p}: not a plain .npy array ({str(e)[:80]})") from None
    except Exception as e:
        raise DataError(f"{p}: not a readable .npy file ({type(e).__name__})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
        raise DataError(f"{p}: expected a numeric array, got {getattr(a, 'dtype', type(a))}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim == 2:
        segs = [(0, a.shape[0])]
        data = a
    elif a.ndim == 3:
        n, t, c = a.shape
        segs = [(k * t, t) for k in range(n)]
        data = a.reshape(n * t, c)
    else:
        raise DataError(f"{p}: array of shape {a.shape}; expected (T,), (T, C) or (N, T, C)")
    if data.size == 0:
        raise DataError(f"{p}: empty array {a.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise DataError(f"{p}: NaN or infinite values (or beyond the float32 range)")
    return Recording(data, rate, [f"ch{i}" for i in range(data.shape[1])], segs)
