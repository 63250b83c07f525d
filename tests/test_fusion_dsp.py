"""One DSP block per sensor (kiloml.dsp.sensors, ``[data.sensors.dsp]``): the composite's
features are each sensor's block on that sensor's channels, concatenated; its generated C
(built warning-free under ASan/UBSan) outputs each part's own generated C bit for bit and is
within each block's stated tolerance of the numpy forward pass; projects declare it per sensor
in kiloml.toml."""

from __future__ import annotations

import numpy as np
import pytest

from kiloml.dsp import make_block
from kiloml.dsp.host import DSPHostBuild
from kiloml.errors import DSPError

FRAMES = 100
SPECTRAL = {"sample_rate": 100.0, "fft_length": 64, "band_edges_hz": [0, 1, 2, 4, 8, 16, 32]}
RAW = {"scale": 0.25, "offset": 1.5}


def _block():
    return make_block("sensors", params={"sensors": [
        {"name": "phone", "axes": 6, "block": "spectral", "params": SPECTRAL},
        {"name": "watch", "axes": 3, "block": "raw", "params": RAW}]})


def _windows(n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(FRAMES) / 100.0
    x = rng.standard_normal((n, FRAMES, 9)) * rng.uniform(0.2, 3.0, (n, 1, 9))
    x += np.sin(2 * np.pi * rng.uniform(0.5, 12, (n, 1, 9)) * t[None, :, None]) * 4
    x[0, :, :6] = 0.0          # a dropped-out phone: zeros
    return x.astype(np.float32)


def test_features_are_each_sensors_block_on_its_channels_concatenated():
    b = _block()
    x = _windows()
    y = b(x)
    phone = make_block("spectral", params=SPECTRAL)(x[..., :6])
    watch = (x[..., 6:].astype(np.float64) - 1.5) * 0.25      # raw: (x - offset) * scale
    assert y.shape == (len(x), 6 * 17 + FRAMES * 3) == (len(x),) + b.output_shape(FRAMES, 9)
    np.testing.assert_array_equal(y[:, :102], phone)
    np.testing.assert_allclose(y[:, 102:], watch.reshape(len(x), -1), rtol=1e-6)
    assert (y[0, :102] == 0).all()            # a zeroed sensor gives zero spectral features
    assert b.part_slices(FRAMES) == {"phone": slice(0, 102), "watch": slice(102, 402)}
    c = b.cost(FRAMES, 9)
    cp = make_block("spectral", params=SPECTRAL).cost(FRAMES, 6)
    cw = make_block("raw", params=RAW).cost(FRAMES, 3)
    assert c.flash_bytes == cp.flash_bytes + cw.flash_bytes
    assert c.ram_bytes == cp.ram_bytes + cw.ram_bytes + 4 * FRAMES * 6   # + sensor buffer
    assert c.total_ops == cp.total_ops + cw.total_ops


def test_generated_c_is_the_parts_c_bit_for_bit_under_sanitizers():
    b = _block()
    x = _windows()
    whole = DSPHostBuild(b, FRAMES, 9, sanitize=True)
    got = whole.run(x)
    for nm, a, e, part in b.parts:
        alone = DSPHostBuild(part, FRAMES, e - a, sanitize=True).run(np.ascontiguousarray(
            x[..., a:e]))
        np.testing.assert_array_equal(got[:, b.part_slices(FRAMES)[nm]],
                                      alone.reshape(len(x), -1))
    ref = b(x).astype(np.float64)
    sp, sw = b.part_slices(FRAMES)["phone"], b.part_slices(FRAMES)["watch"]
    # the blocks' stated f32 tolerances (kiloml.workflow.verify.TOLERANCES)
    assert np.abs(got[:, sp] - ref[:, sp]).max() <= 1e-4 * np.abs(ref[:, sp]).max()
    assert np.abs(got[:, sw] - ref[:, sw]).max() <= 1e-6 * np.abs(ref[:, sw]).max()
    assert "#define FEAT_WATCH_OUTPUT_OFFSET 102" in whole.files["feat.h"]
    again = b.c_sources("feat", FRAMES, 9)
    assert again == whole.files                      # regenerating: byte-identical


def test_bad_composites_are_refused_with_the_sensor_named():
    with pytest.raises(DSPError, match="sensors: watch: spectral: .*fft_length 60 must be a power of two"):
        make_block("sensors", params={"sensors": [
            {"name": "phone", "axes": 3, "block": "raw"},
            {"name": "watch", "axes": 3, "block": "spectral", "params": {"fft_length": 60}}]})
    with pytest.raises(DSPError, match="block must be one of spectral, raw"):
        make_block("sensors", params={"sensors": [{"name": "mic", "axes": 1, "block": "mfcc"}]})
    with pytest.raises(DSPError, match="window has 12 channels, the sensors' axes add up to 9"):
        _block().output_shape(FRAMES, 12)


def test_project_declares_a_block_per_sensor(tmp_path):
    from kiloml.data.settings import SensorDSPSettings
    from kiloml.workflow.features import dsp_block
    from kiloml.workflow.project import Project, init_project
    from projhelp import kiloml

    p = init_project(tmp_path / "p", "motion")
    c = p.config
    from kiloml.workflow.examples import sp_sw_har_settings

    sp_sw_har_settings(c)
    c.data.sensors[1].dsp = SensorDSPSettings(block="raw", params={"scale": 0.1})
    p.save()
    text = (tmp_path / "p" / "kiloml.toml").read_text()
    assert "[data.sensors.dsp]" in text and "[data.sensors.dsp.params]" in text
    q = Project.load(tmp_path / "p")
    assert q.config.data.sensors[1].dsp.params == {"scale": 0.1}
    assert q.config.data.sensors[0].dsp is None
    b = dsp_block(q)
    assert b.name == "sensors"
    assert [(nm, a, e, blk.name) for nm, a, e, blk in b.parts] == \
        [("phone", 0, 6, "spectral"), ("watch", 6, 12, "raw")]
    # the phone takes the [dsp] block with the project's one sample rate
    assert b.parts[0][3].params.fft_length == 64 and b.parts[0][3].params.sample_rate == 100.0
    assert b.output_shape(100, 12) == (6 * 17 + 600,)
    # bad per-sensor parameters: one line naming the file and the sensor, exit 1
    cfg = tmp_path / "p" / "kiloml.toml"
    cfg.write_text(text.replace("scale = 0.1", "scale = 0.0"))
    r = kiloml("data", "info", "--project", tmp_path / "p")
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "kiloml.toml" in lines[0] and "watch" in lines[0] \
        and "scale must be finite and non-zero" in lines[0], r.stderr
    # a sensor without its own block cannot inherit an audio [dsp] block
    cfg.write_text(text.replace('block = "spectral"', 'block = "mfe"', 1))
    r = kiloml("data", "info", "--project", tmp_path / "p")
    assert r.returncode == 1 and "sensor 'phone' has no data.sensors.dsp table" in r.stderr
