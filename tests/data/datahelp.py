"""Shared helpers of the data tests: where ../shared is, small file factories, the CLI."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
DATA = SHARED / "data"
KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None, timeout=300):
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def wav_bytes(samples: np.ndarray, rate: int = 16000, bits: int = 16, channels: int = 1,
              code: int = 1) -> bytes:
    raw = np.ascontiguousarray(samples).tobytes()
    align = channels * bits // 8
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(raw), b"WAVE", b"fmt ", 16, code,
                       channels, rate, rate * align, align, bits, b"data", len(raw)) + raw


def tone(n: int = 16000, f: float = 440.0, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / rate
    return (amp * 32767 * np.sin(2 * np.pi * f * t)).astype(np.int16)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    joined = " ".join(ln.strip() for ln in lines)
    assert "Traceback" not in stderr, stderr
    assert joined.startswith("error:"), stderr
    return joined


# Data settings of the kinds of data sets the tests import (the same values a project's task
# defaults give; the data stage never sees a project).
KWS = dict(sample_rate=16000, channels=1, window_ms=1000, stride_ms=1000)
MOTION = dict(channels=3, window_ms=2000, stride_ms=500)
VIBRATION = dict(sample_rate=12000, channels=1, window_ms=1024 / 12, stride_ms=1024 / 12)
CUSTOM = dict(window_ms=1000, stride_ms=1000)


def new_dataset(root: Path, kind: dict, **override):
    """An empty data set at ``root`` (index ``root/dataset/index.csv``) and its settings."""
    from kiloml.data import Dataset, DatasetIndex, DataSettings

    ds = Dataset(root, root / "dataset" / "index.csv")
    DatasetIndex([]).save(ds.index_path)
    return ds, DataSettings(**{**kind, **override})
