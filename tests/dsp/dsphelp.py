"""Shared helpers of the DSP tests: ../shared paths, the speech clips, a small C runner."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SPEECH = SHARED / "data" / "speech_commands"
KWS_MODEL = SHARED / "models" / "mlperf_tiny" / "kws_ref_model.tflite"
# Output order of the MLPerf Tiny KWS reference model.
KWS_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_"]
C_DIR = Path(__file__).resolve().parents[2] / "src" / "kiloml" / "dsp" / "c"


@functools.lru_cache(maxsize=1)
def speech_clips() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Every clip of ../shared/data/speech_commands (not the background noise), zero-padded
    or cut to 16,000 samples: (int16 (N, 16000), label index (N,), paths)."""
    from kiloml.data.wav import read_wav

    xs, ys, paths = [], [], []
    for i, lab in enumerate(KWS_LABELS):
        for p in sorted((SPEECH / lab).glob("*.wav")):
            d = read_wav(p).data[:16000, 0]
            z = np.zeros(16000, np.int16)
            z[:len(d)] = d
            xs.append(z)
            ys.append(i)
            paths.append(str(p))
    return np.stack(xs), np.asarray(ys), tuple(paths)


_KEEP: list = []


@functools.lru_cache(maxsize=None)
def build_c(sources: tuple[Path, ...], harness: str, sanitize: bool = True) -> Path:
    """Compile DSP runtime sources with a test harness (warnings as errors, optionally
    ASan/UBSan), once per session; returns the executable."""
    tmp = tempfile.TemporaryDirectory(prefix="kiloml_dsptest_")
    _KEEP.append(tmp)
    d = Path(tmp.name)
    (d / "harness.c").write_text(harness)
    exe = d / "t"
    cmd = [find_cc(), *WARNINGS, "-O1", "-I", str(C_DIR), *map(str, sources), str(d / "harness.c"),
           "-o", str(exe), "-lm"]
    if sanitize:
        cmd[1:1] = SANITIZE
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run_c(sources: list[Path], harness: str, args: list[str], sanitize: bool = True) -> str:
    exe = build_c(tuple(sources), harness, sanitize)
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout
