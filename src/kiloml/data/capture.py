"""Live capture of CSV lines from a board over a serial port (pyserial).

The board prints one line per sample, ``v1,v2,...`` (optionally a header line first, e.g.
``aX,aY,aZ`` or ``timestamp,aX,aY,aZ``). Terminal junk and malformed or non-finite lines are
skipped and counted. The capture is written to ``<root>/data/captured/<label>/`` (the data
set's root) as a CSV file (atomically) and imported into the index like any other file.

Sample rate, in order: ``data.sample_rate`` (``--rate`` may repeat it, not contradict it);
``--rate``; the timestamp column if the board sends one (which must agree with a stated
rate); else the rate measured from arrival times (USB buffering makes that an estimate, so
the summary always reports the measured rate too).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone

from kiloml.data.dataset import Dataset
from kiloml.data.importer import import_data
from kiloml.data.readers import _TIME_UNITS, _clean_terminal_line
from kiloml.data.settings import DataSettings
from kiloml.errors import DataError
from kiloml.fileio import atomic_write_text

_NUM = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]*$")


def read_lines(port: str, baud: int, seconds: float,
               max_bytes: int = 64 << 20) -> list[tuple[float, str]]:
    """Lines received during ``seconds`` with their arrival time (s since the start)."""
    import serial

    try:
        ser = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as e:
        raise DataError(f"{port}: cannot open serial port: {e}") from None
    out: list[tuple[float, str]] = []
    buf = b""
    total = 0
    t0 = time.monotonic()
    try:
        while True:
            now = time.monotonic() - t0
            if now >= seconds:
                break
            try:
                chunk = ser.read(4096)
            except (serial.SerialException, OSError) as e:
                raise DataError(f"{port}: serial read failed: {e}") from None
            if not chunk:
                continue
            total += len(chunk)
            if total > max_bytes:
                raise DataError(f"{port}: more than {max_bytes >> 20} MiB received; stopping")
            buf += chunk
            *lines, buf = re.split(rb"\r\n|\n|\r", buf)
            now = time.monotonic() - t0
            out += [(now, ln.decode("utf-8", "replace")) for ln in lines]
    finally:
        ser.close()
    if buf.strip():
        out.append((time.monotonic() - t0, buf.decode("utf-8", "replace")))
    return out


def parse_lines(lines: list[tuple[float, str]]) -> tuple[list[str] | None, list[list[float]],
                                                         list[float], int]:
    """(header or None, numeric rows, their arrival times, junk line count)."""
    header = None
    rows: list[list[float]] = []
    times: list[float] = []
    junk = 0
    for t, raw in lines:
        s = _clean_terminal_line(raw)
        if not s:
            continue
        fields = [f.strip() for f in s.split(",")]
        if all(_NUM.match(f) for f in fields):
            vals = [float(f) for f in fields]
            if (rows and len(vals) != len(rows[0])) or (header and len(vals) != len(header)) \
                    or not all(math.isfinite(v) for v in vals):
                junk += 1
                continue
            rows.append(vals)
            times.append(t)
        elif not rows and header is None and len(fields) > 1 and \
                all(_NAME.match(f) for f in fields) and len(set(fields)) == len(fields):
            header = fields
        else:
            junk += 1
    return header, rows, times, junk


def capture_to_dataset(dataset: Dataset, settings: DataSettings, port: str, baud: int,
                       label: str, seconds: float, rate: float | None = None) -> dict:
    """Record from ``port`` for ``seconds``, save the lines as CSV under the data set's root
    (``data/captured/<label>/``) and import it with ``settings``; returns the summary
    ``--json`` prints. The file is removed again if the import fails."""
    lines = read_lines(port, baud, seconds)
    header, rows, times, junk = parse_lines(lines)
    if not rows:
        raise DataError(f"{port}: no CSV lines received in {seconds:g} s "
                        f"({len(lines)} line(s), none numeric: wrong port or baud rate?)")
    if len(rows) < 2:
        raise DataError(f"{port}: only one CSV line received in {seconds:g} s")
    measured = (len(rows) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else None
    ncol = len(rows[0])
    names = header or [f"ch{i}" for i in range(ncol)]
    has_time = any(n.lower() in _TIME_UNITS for n in names)
    use_rate = rate
    if use_rate is None and not has_time and settings.sample_rate is None:
        use_rate = measured
        if use_rate is None:
            raise DataError(f"{port}: cannot tell the sample rate (pass --rate)")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = dataset.root / "data" / "captured" / safe / f"{safe}.{stamp}.csv"
    body = ",".join(names) + "\n" + "".join(",".join(repr(v) for v in r) + "\n" for r in rows)
    atomic_write_text(path, body)
    try:
        res = import_data(dataset, settings, path, fmt="csv", label=label, rate=use_rate)
    except DataError:
        path.unlink(missing_ok=True)
        raise
    s = res.added[0]
    return {"file": str(path), "rows": len(rows), "channels": s.channels,
            "axes": [n for n in names if n.lower() not in _TIME_UNITS],
            "sample_rate": s.sample_rate, "measured_rate": measured, "junk_lines": junk,
            "sample_id": s.id, "split": s.split, "label": label}
