"""`kiloml dsp`: one file or a folder in sorted path order, numpy and C engines, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dsphelp import SHARED, SPEECH
from kiloml.data.wav import read_wav, write_wav
from kiloml.dsp import make_block

KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None):
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture()
def clips(tmp_path):
    """Five real clips (or tones without ../shared) in nested folders, unsorted on purpose."""
    d = tmp_path / "in"
    (d / "b").mkdir(parents=True)
    (d / "a").mkdir()
    src = sorted((SPEECH / "left").glob("*.wav"))[:5] if SPEECH.is_dir() else []
    for i in range(5):
        x = read_wav(src[i]).data[:, 0] if src else \
            (np.sin(np.arange(16000) * (0.05 + 0.01 * i)) * 8000).astype(np.int16)
        write_wav(d / ("b" if i % 2 else "a") / f"{4 - i}.wav", x, 16000)
    (d / "README.md").write_text("not data")
    return d


def test_folder_numpy_and_c(clips, tmp_path):
    r = kiloml("dsp", "--preset", "mlperf-kws", "--input", clips, "--output", tmp_path / "f.npy",
               "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    files = sorted(str(p) for p in clips.rglob("*.wav"))
    assert s["files"] == files and s["shape"] == [5, 49, 10] and s["dtype"] == "int8"
    for key in ("block", "params", "engine", "cost", "samples", "output"):
        assert key in s
    feats = np.load(tmp_path / "f.npy")
    b = make_block(preset="mlperf-kws")
    want = np.stack([b(read_wav(f).as_float()[:, 0]) for f in files])
    np.testing.assert_array_equal(feats, want)
    for variant in ("f32", "q31"):
        r = kiloml("dsp", "--preset", "mlperf-kws", "-i", clips, "-o", tmp_path / "c.npy",
                   "--engine", "c", "--variant", variant)
        assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
        c = np.load(tmp_path / "c.npy")
        assert np.abs(c.astype(int) - want.astype(int)).max() <= 1


def test_block_params_and_serial_log(tmp_path):
    p = SHARED / "data" / "magic_wand" / "slope" / "output_slope_lsj.txt"
    if not p.is_file():
        pytest.skip("no magic_wand data")
    r = kiloml("dsp", "--block", "spectral", "--param", "sample_rate=25", "--param",
               "fft_length=32", "--param", "band_edges_hz=[0, 2, 5, 12.5]", "--rate", "25",
               "-i", p, "-o", tmp_path / "s.npy", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["shape"][1] == 3 * (5 + 3 + 2 * 3) and len(s["samples"]) == s["shape"][0] == 24


@pytest.mark.parametrize("args,code,pattern", [
    ([], 2, "give --preset NAME or --block NAME"),
    (["--block", "mfcc", "--param", "oops"], 2, "expected KEY=VALUE"),
    (["--block", "mfcc", "--engine", "gpu"], 2, "--engine must be numpy or c"),
    (["--block", "mfcc", "--param", "num_filters=-3"], 1, "mfcc: num_filters"),
    (["--block", "mfcc", "--param", "nfft=512"], 1, "nfft: Extra inputs"),
    (["--preset", "mlperf-kws", "--output", "x.csv"], 1, "must be a .npy file"),
    (["--block", "spectrogram", "--engine", "c", "--variant", "q31"], 1, "no 'q31' C variant"),
])
def test_errors(clips, tmp_path, args, code, pattern):
    base = ["dsp", "-i", clips, "-o", tmp_path / "o.npy"]
    r = kiloml(*base, *args) if "--output" not in args else \
        kiloml("dsp", "-i", clips, *args)
    assert r.returncode == code, r.stderr
    if code == 1:
        assert pattern in one_line(r.stderr)
    else:
        assert pattern in r.stderr
    assert not (tmp_path / "o.npy").exists()


def test_bad_input_files(tmp_path):
    write_wav(tmp_path / "st.wav", np.zeros((16000, 2), np.int16), 16000)
    r = kiloml("dsp", "--preset", "mlperf-kws", "-i", tmp_path / "st.wav", "-o", tmp_path / "o.npy")
    assert r.returncode == 1 and "st.wav: 2 channels" in one_line(r.stderr)
    write_wav(tmp_path / "r8k.wav", np.zeros(8000, np.int16), 8000)
    r = kiloml("dsp", "--preset", "mlperf-kws", "-i", tmp_path / "r8k.wav", "-o",
               tmp_path / "o.npy")
    assert r.returncode == 1 and "sample rate 8000 Hz" in one_line(r.stderr)
    (tmp_path / "x.csv").write_text("a\n1\n2\n")
    r = kiloml("dsp", "--block", "mfcc", "-i", tmp_path / "x.csv", "-o", tmp_path / "o.npy",
               "--engine", "c", "--variant", "q15", "--rate", "16000")
    assert r.returncode == 1 and "16-bit PCM WAV" in one_line(r.stderr)


def test_c_out_writes_buildable_sources(clips, tmp_path):
    import subprocess

    from kiloml.codegen.host import WARNINGS, find_cc

    out = tmp_path / "c"
    r = kiloml("dsp", "--preset", "mlperf-kws", "-i", clips, "-o", tmp_path / "f.npy", "--c-out",
               out, "--variant", "q15", "--prefix", "kws_mfcc", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert sorted(s["c_files"]) == sorted(p.name for p in out.iterdir())
    # 3,240 B before the streaming split of the q front end, which keeps 3 words per mel
    # filter (40 filters: 480 B) of one frame's sums and shift for the finish stage
    assert "kws_mfcc.h" in s["c_files"] and s["cost"]["ram_bytes"] == 3240 + 40 * 12
    assert "--c-out" in (out / "kws_mfcc.c").read_text()         # the command is recorded
    srcs = [str(p) for p in out.glob("*.c")]
    cc = subprocess.run([find_cc(), *WARNINGS, "-c", *srcs], cwd=tmp_path, capture_output=True,
                        text=True)
    assert cc.returncode == 0, cc.stderr
    r = kiloml("dsp", "--preset", "mlperf-kws", "-i", clips, "-o", tmp_path / "f.npy", "--c-out",
               out, "--prefix", "9bad")
    assert r.returncode == 1 and "not a valid C identifier" in one_line(r.stderr)
