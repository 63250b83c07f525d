"""Single-rate multi-sensor packages before / after sensors at their own rates: deploy the
fusion test specs of tests/deploy/test_deploy_fusion.py (window-rate C package, with the
streaming settings, a per-sensor composite block, an Arduino library) into OUT, run once
with PYTHONPATH at the previous version's src and once at this one, then diff -r.
See benchmarks/rates_single_rate_identical.txt."""
import sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np
import test_deploy_fusion as T
from kiloml.deploy.c import deploy_c
from kiloml.deploy.arduino import deploy_arduino
from kiloml.dsp import make_block
from kiloml.dsp.apply import apply_block
from kiloml.train.normalize import Normalizer
import deployhelp as H
from kiloml.train.streaming import StreamSettings
out = Path(sys.argv[1])
spec, x = T._spec()
deploy_c(spec, out / "plain")
deploy_c(replace(spec, stream=StreamSettings(detection_threshold=100, minimum_count=1,
                                             suppression_ms=0.0, average_window_ms=500.0)),
         out / "stream")
block = make_block("sensors", params={"sensors": [
    {"name": "phone", "axes": 3, "block": "spectral",
     "params": dict(sample_rate=25.0, fft_length=32, band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5])},
    {"name": "watch", "axes": 3, "block": "raw", "params": {"scale": 0.5}}]})
norm = Normalizer.fit("feature", apply_block(block, x))
g = H.dense_graph(norm(apply_block(block, x)), 3)
s2 = replace(spec, graph=g, block=block, normalizer=norm.state())
deploy_c(s2, out / "composite")
deploy_arduino(replace(s2, sensors=(("accel", 3), ("gyro", 3))), out / "ard")
