"""Fuzz the readers of untrusted input: any bytes give a Recording or a DataError, never
another exception, a hang or an allocation beyond the input's size."""

from __future__ import annotations

import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datahelp import tone, wav_bytes
from kiloml.data.readers import read_csv, read_ei_json, read_serial_log
from kiloml.data.wav import parse_wav
from kiloml.errors import DataError

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SEED_WAV = wav_bytes(tone(64))


def _check_wav(blob: bytes) -> None:
    try:
        w = parse_wav(blob, "fuzz.wav")
    except DataError as e:
        assert str(e).startswith("fuzz.wav: ") and "\n" not in str(e)
        return
    assert w.data.ndim == 2 and w.data.nbytes <= len(blob) * 2
    assert w.sample_rate > 0 and w.channels > 0


@FUZZ
@given(st.binary(max_size=200))
def test_wav_random_bytes(blob):
    _check_wav(blob)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SEED_WAV) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(SEED_WAV)))
def test_wav_mutated_header(edits, cut):
    b = bytearray(SEED_WAV)
    for pos, val in edits:
        b[pos] = val
    _check_wav(bytes(b[:cut]))


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF))
def test_wav_header_fields(riff_size, data_size, channels, bits):
    b = bytearray(SEED_WAV)
    struct.pack_into("<I", b, 4, riff_size)
    struct.pack_into("<H", b, 22, channels)
    struct.pack_into("<H", b, 34, bits)
    struct.pack_into("<I", b, 40, data_size)
    _check_wav(bytes(b))


_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.integers(-10 ** 6, 10 ** 6).map(str), st.text(max_size=4), st.just(""))


@FUZZ
@given(st.lists(st.lists(_cell, min_size=1, max_size=4), max_size=8),
       st.sampled_from([",", ";", "\t"]), st.booleans(), st.one_of(st.none(), st.integers(1, 4)))
def test_csv_random_tables(tmp_path_factory, rows, delim, header, nrows):
    p = tmp_path_factory.mktemp("csv") / "f.csv"
    lines = (["timestamp" + delim + "a"] if header else []) + [delim.join(r) for r in rows]
    p.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        rec = read_csv(p, rate=10.0, rows=nrows)
    except DataError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
        return
    assert np.isfinite(rec.data).all() and rec.sample_rate > 0
    assert sum(n for _, n in rec.segments) == rec.frames


@FUZZ
@given(st.binary(max_size=300))
def test_csv_and_serial_random_bytes(tmp_path_factory, blob):
    d = tmp_path_factory.mktemp("b")
    for name, fn in (("f.csv", lambda p: read_csv(p, rate=5.0)),
                     ("f.txt", lambda p: read_serial_log(p, rate=5.0))):
        p = d / name
        p.write_bytes(blob)
        try:
            rec = fn(p)
        except DataError as e:
            assert "\n" not in str(e)
            continue
        assert np.isfinite(rec.data).all()


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10 ** 40, 10 ** 40),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["payload", "interval_ms", "sensors",
                                                             "values", "name", "units", "x"]),
                                            inner, max_size=4)),
    max_leaves=20)


@FUZZ
@given(_json, st.one_of(st.none(), st.integers(0, 60)))
def test_ei_json_random_documents(tmp_path_factory, doc, cut):
    p = tmp_path_factory.mktemp("j") / "x.json"
    text = json.dumps({"payload": doc} if isinstance(doc, dict) else doc)
    p.write_text(text[:cut] if cut is not None else text)
    try:
        rec = read_ei_json(p)
    except DataError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
        return
    assert np.isfinite(rec.data).all() and rec.data.shape[1] == len(rec.axes)


@FUZZ
@given(st.lists(st.lists(st.one_of(st.floats(-1e6, 1e6), st.integers(-5, 5)), min_size=3,
                         max_size=3), min_size=1, max_size=20),
       st.floats(0.01, 1000))
def test_ei_json_valid_documents_roundtrip(tmp_path_factory, values, interval):
    p = tmp_path_factory.mktemp("j") / "ok.json"
    p.write_text(json.dumps({"payload": {"interval_ms": interval,
                                         "sensors": [{"name": n} for n in "xyz"],
                                         "values": values}}))
    rec = read_ei_json(p)
    np.testing.assert_allclose(rec.data, np.asarray(values, np.float32))
    assert rec.sample_rate == 1000.0 / interval
