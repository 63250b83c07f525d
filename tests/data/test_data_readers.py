"""Readers on the real files of ../shared/data and on hand-made bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.io
import scipy.io.wavfile

from datahelp import DATA, tone, wav_bytes
from kiloml.data.readers import (read_csv, read_ei_json, read_file, read_mat, read_npy,
                                 read_serial_log)
from kiloml.data.wav import parse_wav, read_wav, write_wav
from kiloml.errors import DataError

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data at {DATA}")


# ---------------------------------------------------------------- WAV


def test_wav_real_clip_matches_scipy():
    p = DATA / "speech_commands" / "yes" / "022cd682_nohash_0.wav"
    w = read_wav(p)
    rate, ref = scipy.io.wavfile.read(p)
    assert (w.sample_rate, w.bits, w.channels) == (rate, 16, 1) == (16000, 16, 1)
    assert np.array_equal(w.data[:, 0], ref)
    rec = read_file(p)
    assert rec.segments == [(0, len(ref))] and rec.raw_int16.dtype == np.int16
    np.testing.assert_array_equal(rec.data[:, 0], ref.astype(np.float32) / 32768)


def test_wav_background_noise_is_long():
    w = read_wav(DATA / "speech_commands" / "_background_noise_" / "white_noise.wav")
    assert w.sample_rate == 16000 and w.frames > 16000 * 30


@pytest.mark.parametrize("bits,dtype,code", [(8, np.uint8, 1), (16, np.int16, 1), (32, np.int32, 1),
                                             (32, np.float32, 3), (64, np.float64, 3)])
def test_wav_encodings_match_scipy(tmp_path, bits, dtype, code):
    rng = np.random.default_rng(bits)
    if np.issubdtype(dtype, np.floating):
        x = rng.uniform(-1, 1, (100, 2)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (100, 2), dtype=dtype, endpoint=True)
    p = tmp_path / "x.wav"
    p.write_bytes(wav_bytes(x, 8000, bits, 2, code))
    w = read_wav(p)
    _, ref = scipy.io.wavfile.read(p)
    assert np.array_equal(w.data, ref) and w.sample_rate == 8000


def test_wav_24bit_sign_extension():
    vals = np.array([0, 1, -1, 2 ** 23 - 1, -2 ** 23], dtype=np.int64)
    raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in vals)
    blob = wav_bytes(np.frombuffer(raw, np.uint8), 16000, 24, 1)
    assert parse_wav(blob).data[:, 0].tolist() == vals.tolist()


def test_wav_roundtrip(tmp_path):
    x = tone(321)
    write_wav(tmp_path / "t.wav", x, 16000)
    assert np.array_equal(read_wav(tmp_path / "t.wav").data[:, 0], x)


@pytest.mark.parametrize("mutate,pattern", [
    (lambda b: b"", r"empty file"),
    (lambda b: b[:30], r"truncated|too short"),
    (lambda b: b[:-3], r"truncated"),
    (lambda b: b"RIFX" + b[4:], r"big-endian"),
    (lambda b: b"JUNK" + b[4:], r"not a WAV file"),
    (lambda b: b[:20] + b"\x02\x00" + b[22:], r"encoding 0x0002"),
    (lambda b: b[:22] + b"\x00\x00" + b[24:], r"0 channels"),
    (lambda b: b[:24] + b"\x00\x00\x00\x00" + b[28:], r"sample rate 0"),
    (lambda b: b[:34] + b"\x0c\x00" + b[36:], r"unsupported 12-bit"),
    (lambda b: b[:32] + b"\x03\x00" + b[34:], r"block align"),
    (lambda b: b[:36] + b"LIST" + b[40:], r"no 'data' chunk|truncated"),
])
def test_wav_bad_input_one_clear_error(mutate, pattern):
    blob = wav_bytes(tone(100))
    with pytest.raises(DataError, match=pattern) as e:
        parse_wav(mutate(blob), "clip.wav")
    assert str(e.value).startswith("clip.wav: ") and "\n" not in str(e.value)


def test_wav_float_nan_is_rejected():
    x = np.array([0.1, np.nan, 0.2], np.float32)
    with pytest.raises(DataError, match="sample 1 is NaN"):
        parse_wav(wav_bytes(x, 16000, 32, 1, 3), "f.wav")


# ---------------------------------------------------------------- serial logs (magic_wand)


def test_serial_log_magic_wand_segments():
    p = DATA / "magic_wand" / "ring" / "output_ring_hyw.txt"
    rec = read_serial_log(p, rate=25)
    text = p.read_bytes().decode("utf-8", "replace")
    assert len(rec.segments) == sum(1 for ln in text.splitlines() if ln.strip() == "-,-,-") == 40
    assert rec.channels == 3 and rec.axes == ["x", "y", "z"]
    np.testing.assert_array_equal(rec.data[0], [-816.0, 557.0, 445.0])
    assert sum(n for _, n in rec.segments) == rec.frames
    assert all(b[0] == a[0] + a[1] for a, b in zip(rec.segments, rec.segments[1:]))
    assert any("terminal junk" in n for n in rec.notes)


def test_serial_log_continuous_stream_is_one_segment():
    rec = read_serial_log(DATA / "magic_wand" / "negative" / "output_negative_1.txt", rate=25)
    assert rec.segments == [(0, 895)]


def test_serial_log_malformed_lines_are_dropped(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("junk\n-,-,-\n1,2,3\n4,5,nan\n6,7,8\n-,-,-\n4,5\n9,9,9\n1e39,0,0\n")
    rec = read_serial_log(p, rate=25)
    assert rec.data.tolist() == [[1, 2, 3], [6, 7, 8], [9, 9, 9]]
    assert rec.segments == [(0, 2), (2, 1)]
    assert [d.split(": ", 1)[0] for d in rec.dropped] == [f"{p}:4", f"{p}:7", f"{p}:9"]
    assert "NaN, infinite" in rec.dropped[0] and "(2 values, the log has 3 per line)" in \
        rec.dropped[1] and "float32" in rec.dropped[2]


def test_serial_log_axis_count_is_the_common_one(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("11\n1,2,3\n4,5,6\n")          # a glitch before the first good line
    rec = read_serial_log(p, rate=25)
    assert rec.channels == 3 and rec.frames == 2 and len(rec.dropped) == 1


def test_serial_log_bad(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("\x1b[2Jhello\nworld\n")
    with pytest.raises(DataError, match="no numeric"):
        read_serial_log(p, rate=25)
    with pytest.raises(DataError, match="data.sample_rate"):
        read_serial_log(p)
    p.write_text("-,-,-\nnan,1,2\ninf,0,0\n")
    with pytest.raises(DataError, match=r"log.txt: no usable 'x,y,z' line \(2 malformed line\(s\) "
                       r"dropped, e.g. line 2: dropped line 'nan,1,2'"):
        read_serial_log(p, rate=25)


# ---------------------------------------------------------------- CSV (Arduino IMU)


def test_csv_arduino_fixed_rows():
    rec = read_csv(DATA / "arduino_punch_flex" / "punch.csv", rate=119, rows=119)
    assert rec.axes == ["aX", "aY", "aZ", "gX", "gY", "gZ"]
    assert rec.frames == 2380 and len(rec.segments) == 20 and rec.segments[3] == (357, 119)
    np.testing.assert_allclose(rec.data[0], [-1.332, 1.457, -0.502, -137.085, 221.191, 168.335],
                               rtol=1e-6)


def test_csv_timestamp_gives_rate_and_no_header(tmp_path):
    p = tmp_path / "t.csv"
    rows = "\n".join(f"{10 * i},{i},{-i}" for i in range(50))
    p.write_text("timestamp,ax,ay\n" + rows + "\n")
    rec = read_csv(p)
    assert rec.sample_rate == pytest.approx(100.0) and rec.axes == ["ax", "ay"]
    q = tmp_path / "n.csv"
    q.write_text("1;2\n3;4\n")
    rec = read_csv(q, rate=10)
    assert rec.axes == ["ch0", "ch1"] and rec.data.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("body,pattern", [
    ("a,b\n1,2\n3,x\n", r"g.csv:3: column 'b': 'x' is not a number"),
    ("a,b\n1,2\n3\n", r"g.csv:3: 1 fields, expected 2"),
    ("a,b\n1,2\n3,\n", r"g.csv:3: missing value in column 'b'"),
    ("a,b\n1,2\nnan,1\n", r"g.csv:3: column 'a': 'nan' is not finite"),
    ("a,b\n1,inf\n", r"g.csv:2: column 'b': 'inf' is not finite"),
    ("a,b\n", r"header but no data rows"),
    ("\n\n", r"no data rows"),
    ("timestamp,a\n0,1\n0,2\n", r"g.csv:3: timestamp does not increase"),
    ("a,a\n1,2\n", r"duplicate column"),
])
def test_csv_bad(tmp_path, body, pattern):
    p = tmp_path / "g.csv"
    p.write_text(body)
    with pytest.raises(DataError, match=pattern):
        read_csv(p, rate=100)


def test_csv_rows_must_divide(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a\n" + "1\n" * 10)
    with pytest.raises(DataError, match=r"10 data rows is not a multiple of --rows 3"):
        read_csv(p, rate=1, rows=3)


# ---------------------------------------------------------------- MATLAB (CWRU)


def test_mat_cwru_default_variable():
    p = DATA / "cwru_bearing_0hp" / "normal_0_97.mat"
    rec = read_mat(p, rate=12000)
    ref = scipy.io.loadmat(p)["X097_DE_time"][:, 0]
    assert rec.axes == ["X097_DE_time"] and rec.frames == 243938 == len(ref)
    np.testing.assert_array_equal(rec.data[:, 0], ref.astype(np.float32))
    fe = read_mat(p, rate=12000, variable="*_FE_time")
    assert fe.axes == ["X097_FE_time"]


def test_mat_bad(tmp_path):
    p = tmp_path / "v.mat"
    scipy.io.savemat(p, {"a": np.arange(10.0), "b": np.arange(5.0)})
    with pytest.raises(DataError, match=r"v.mat: no default variable .*numeric variables: a, b"):
        read_mat(p, rate=1)
    with pytest.raises(DataError, match=r"several variables match \(a, b\)"):
        read_mat(p, rate=1, variable="*")
    assert read_mat(p, rate=1, variable="b").frames == 5
    scipy.io.savemat(p, {"x": np.array([1.0, np.nan, 2.0])})
    with pytest.raises(DataError, match="NaN or infinite value at frame 1"):
        read_mat(p, rate=1)
    p.write_bytes(b"MATLAB 5.0 MAT-file garbage" * 3)
    with pytest.raises(DataError, match="v.mat: not a readable .mat file"):
        read_mat(p, rate=1)


# ---------------------------------------------------------------- Edge Impulse JSON


def _ei(values, interval=10.0, sensors=("accX", "accY", "accZ")):
    return {"protected": {"ver": "v1", "alg": "none", "iat": 1564128599},
            "signature": "0" * 64,
            "payload": {"device_name": "ac:87:a3:0a:2d:1b", "device_type": "DISCO-L475VG-IOT01A",
                        "interval_ms": interval,
                        "sensors": [{"name": s, "units": "m/s2"} for s in sensors],
                        "values": values}}


def test_ei_json(tmp_path):
    p = tmp_path / "wave.1.json"
    p.write_text(json.dumps(_ei([[-9.81, 0.03, 1.21], [-9.83, 0.04, 1.27]])))
    rec = read_ei_json(p)
    assert rec.sample_rate == 100.0 and rec.axes == ["accX", "accY", "accZ"]
    np.testing.assert_allclose(rec.data[1], [-9.83, 0.04, 1.27], rtol=1e-6)
    p.write_text(json.dumps(_ei([1, 2, 3, 4], interval=0.0625, sensors=("audio",))))
    assert read_ei_json(p).sample_rate == 16000 and read_ei_json(p).frames == 4


@pytest.mark.parametrize("doc,pattern", [
    ("{", r"e.json:1: invalid JSON"),
    ("[]", r"no 'payload' object"),
    (_ei([[1, 2, 3]], interval=0), r"interval_ms must be a positive number"),
    (_ei([[1, 2, 3]], interval="10"), r"interval_ms must be a positive number"),
    (_ei([[1, 2]]), r"payload.values\[0\]: expected 3 numbers"),
    (_ei([[1, 2, "x"]]), r"payload.values\[0\]: 'x' is not a number"),
    (_ei([[1, 2, True]]), r"is not a number"),
    (_ei([]), r"payload.values must be a non-empty list"),
    (_ei([[1, 2, 3]], sensors=()), r"payload.sensors must be a non-empty list"),
])
def test_ei_json_bad(tmp_path, doc, pattern):
    p = tmp_path / "e.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(DataError, match=pattern):
        read_ei_json(p)


def test_ei_json_infinity_literal(tmp_path):
    p = tmp_path / "e.json"
    p.write_text(json.dumps(_ei([[1, 2, 3]])).replace("[[1, 2, 3]]", "[[1, 2, Infinity]]"))
    with pytest.raises(DataError, match=re.escape("payload.values[0]: inf is not a finite")):
        read_ei_json(p)


# ---------------------------------------------------------------- NumPy


def test_npy(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(24, dtype=np.int16).reshape(2, 4, 3))
    rec = read_npy(p, rate=50)
    assert rec.segments == [(0, 4), (4, 4)] and rec.channels == 3
    np.save(p, np.array([1.0, np.inf]))
    with pytest.raises(DataError, match="NaN or infinite"):
        read_npy(p, rate=50)
    np.save(p, np.array(["a"]))
    with pytest.raises(DataError, match="numeric array"):
        read_npy(p, rate=50)
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a plain .npy array"):
        read_npy(p, rate=50)


def test_unknown_extension_and_directory(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00")
    with pytest.raises(DataError, match=r"unknown file type '.bin'"):
        read_file(tmp_path / "x.bin")
    with pytest.raises(DataError, match="is a directory"):
        read_file(tmp_path, "csv", rate=1)
