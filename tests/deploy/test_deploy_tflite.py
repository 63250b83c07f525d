"""The .tflite package: the int8 model reads back to the same graph (same outputs in the
reference interpreter) and the JSON says everything a TFLM user needs around it."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml import __version__  # noqa: E402
from kiloml.deploy import deploy_c, deploy_tflite  # noqa: E402
from kiloml.io.tflite_reader import read_tflite  # noqa: E402
from kiloml.ir.interpreter import Interpreter  # noqa: E402


def test_tflite_package(tmp_path):
    spec = H.kws_spec("q31", direct=True)
    pkg = deploy_tflite(spec, tmp_path / "kws_tflite")
    assert pkg.files == ("kws.json", "kws.tflite")
    data = (pkg.path / "kws.tflite").read_bytes()
    meta = json.loads((pkg.path / "kws.json").read_text())
    assert meta["model_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["model_file"] == "kws.tflite" and meta["format"] == "tflite"
    assert (meta["kiloml_version"], meta["command"]) == (__version__, H.COMMAND)
    assert meta["labels"] == H.KWS_LABELS
    assert meta["dsp"] == {"block": "mfcc", "variant": "q31",
                           "params": spec.block.params.model_dump(mode="json")}
    assert (meta["sample_rate_hz"], meta["window_ms"], meta["window_samples"],
            meta["channels"]) == (16000.0, 1000.0, 16000, 1)
    assert meta["features"]["shape"] == [49, 10]
    assert meta["features"]["quantization"] == {"scale": float(np.float32(0.584703)),
                                                "zero_point": 83}
    tin = spec.graph.tensors[spec.graph.inputs[0]]
    assert meta["model"]["input"] == {"shape": [1, 49, 10, 1], "scale": tin.scale,
                                      "zero_point": tin.zero_point,
                                      "rounding": "half away from zero"}
    assert meta["model"]["output"] == {"scale": 1 / 256, "zero_point": -128}
    assert meta["normalizer"]["kind"] == "none" and meta["layout"] == "image1"

    back = read_tflite(pkg.path / "kws.tflite")
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.integers(-128, 128, (1, 49, 10, 1), dtype=np.int8)
        np.testing.assert_array_equal(Interpreter(back).run(x)[0],
                                      Interpreter(spec.graph).run(x)[0])
    c = deploy_c(spec, tmp_path / "kws_c")
    assert json.loads((c.path / "kws.json").read_text())["model_sha256"] == meta["model_sha256"]
    assert meta["model_sha256"] in (c.path / "kws.c").read_text()
