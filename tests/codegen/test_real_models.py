"""Real reference models: reference interpreter and host-compiled C (ASan/UBSan) vs TFLM.

Every .tflite under ../shared/models runs on 20 seeded random inputs in the ``tflite_micro``
interpreter (the oracle), in kiloml's numpy reference interpreter and in the generated C; all
three must agree bit for bit. The memory plan is exercised as shipped (in-place execution and
the conv+add fusion on), and once more without in-place execution.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.passes import pipeline

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MODELS = sorted((SHARED / "models").glob("*/*.tflite"))
N_INPUTS = 20

if not MODELS:  # pragma: no cover - CI always has ../shared
    pytest.skip(f"no reference models found under {SHARED}/models (set KILOML_SHARED)",
                allow_module_level=True)


def tflm_outputs(path: Path, xs: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(path.read_bytes())
    outs = []
    for x in xs:
        it.set_input(x, 0)
        it.invoke()
        outs.append(it.get_output(0).copy())
    return np.stack(outs)


@pytest.fixture(scope="module", params=MODELS, ids=[p.stem for p in MODELS])
def case(request):
    path = request.param
    g = read_tflite(path)
    rng = np.random.default_rng(1234)
    spec = g.tensors[g.inputs[0]]
    xs = rng.integers(-128, 128, (N_INPUTS,) + spec.shape, dtype=np.int8)
    return path, g, xs, tflm_outputs(path, xs)


def test_reference_equals_tflm(case):
    path, g, xs, want = case
    it = Interpreter(g)
    got = np.stack([it.run(x)[0] for x in xs])
    assert np.array_equal(got, want)


def test_fused_graph_equals_original(case):
    path, g, xs, want = case
    it = Interpreter(pipeline(g))
    got = np.stack([it.run(x)[0] for x in xs[:4]])
    assert np.array_equal(got, want[:4])


@pytest.mark.slow
def test_generated_c_sanitized_equals_tflm(case):
    path, g, xs, want = case
    got = HostBuild(generate_c(g, "m"), sanitize=True).run(xs)[0]
    assert np.array_equal(got, want)


@pytest.mark.slow
def test_generated_c_without_inplace_equals_tflm(case):
    path, g, xs, want = case
    got = HostBuild(generate_c(g, "m", inplace=False)).run(xs[:5])[0]
    assert np.array_equal(got, want[:5])


def test_regeneration_is_byte_identical(case):
    path, g, _, _ = case
    a = generate_c(g, "m", command="kiloml compile x").files
    b = generate_c(read_tflite(path), "m", command="kiloml compile x").files
    assert a == b
