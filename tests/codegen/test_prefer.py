"""The flash-for-speed choice (kiloml.codegen.armv7em_choice) on the MLPerf Tiny models:
what each preference takes, the exchange rate it follows, and the shared code counted once.
No emulator here: the choices' bit-exactness is test_armv7em_kernels.py's
test_prefer_chooses_kernels_and_weight_layouts, their measured effect benchmarks/prefer.py."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from kiloml.codegen import armv7em_choice as C
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.passes import pipeline

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))


@pytest.fixture(scope="module")
def graphs():
    return {n: pipeline(read_tflite(SHARED / "models" / "mlperf_tiny" / f"{n}.tflite"))
            for n in ("kws_ref_model", "vww_96_int8", "pretrainedResnet_quant")}


def options(g) -> dict:
    return {n: o for n, node in enumerate(g.nodes) if (o := C.node_options(g, node))}


def totals(picks) -> tuple[int, float]:
    """(flash: every node's data + the code of each function once, estimated cycles)."""
    code = sum(C.CODE_BYTES.get(f, 0) for f in {o.kernel for o, _ in picks.values()})
    return (code + sum(o.data_bytes for o, _ in picks.values()),
            sum(o.cycles for o, _ in picks.values()))


def test_each_preference_on_the_mlperf_models(graphs):
    kws, vww = graphs["kws_ref_model"], graphs["vww_96_int8"]
    names = {(m, pr): Counter(o.name for o, _ in C.choose(g, pr).values())
             for m, g in graphs.items() for pr in C.PREFERENCES}
    # speed: the fastest option of every node (today's speed: 1x1 kernel, int16 weights where
    # they fit, the RGB kernel, the _g6 records)
    assert names["vww_96_int8", "speed"] == {"1x1": 9, "1x1-int16": 4, "dw40": 13,
                                             "rgb-int16": 1}
    assert names["kws_ref_model", "speed"] == {"1x1": 4}
    # balanced: KWS's four 1x1 layers save ~40 cycles per byte of the kernel's code and lean
    # streams, under BALANCED_RATE: the column kernel; on VWW the int16-weight entry (its own
    # 3 KB of code) pays on the four small-K layers, the int8 one (7.5 KB) not on the rest
    assert names["kws_ref_model", "balanced"] == {"column": 4}
    bal = names["vww_96_int8", "balanced"]
    assert bal["1x1-int16"] == 4 and bal["column"] == 9 and "1x1" not in bal
    # size: VWW keeps only what pays most per byte (the RGB kernel, the int16 1x1 entry on
    # the first small-K layers, the widest depthwise layers' _g6 records)
    size = names["vww_96_int8", "size"]
    assert size["rgb-int16"] == 1 and 1 <= size["dw40"] <= 3 and "1x1" not in size
    assert 1 <= size["1x1-int16"] <= 4
    for g in (kws, vww):
        fs, cs = totals(C.choose(g, "speed"))
        fb, cb = totals(C.choose(g, "balanced"))
        fz, cz = totals(C.choose(g, "size"))
        assert fs >= fb >= fz and cs <= cb <= cz


def test_the_choice_minimizes_cycles_plus_rate_times_flash(graphs):
    """No single-node change lowers the cost the preference minimizes (cycles + rate x flash
    with shared code once): the choice is at least a local optimum, checked exhaustively."""
    g = graphs["vww_96_int8"]
    for pr in C.PREFERENCES:
        picks = C.choose(g, pr)
        rate = C.RATES[pr]

        def cost(p):
            f, c = totals(p)
            return c + rate * f

        base = cost(picks)
        for n, (o, alts) in picks.items():
            for a in alts:
                assert cost({**picks, n: (a, alts)}) >= base - 1e-6, (pr, n, a.name)


def test_shared_code_is_paid_once(graphs, monkeypatch):
    """With the 1x1 kernel's code free, balanced takes it on KWS too (its layers then save more
    than BALANCED_RATE per byte of their streams); with the int16 entry ten times dearer, not
    on VWW."""
    kws, vww = graphs["kws_ref_model"], graphs["vww_96_int8"]
    monkeypatch.setitem(C.CODE_BYTES, C.CONV_1X1, 0)
    assert {o.kernel for o, _ in C.choose(kws, "balanced").values()} == {C.CONV_1X1}
    monkeypatch.setitem(C.CODE_BYTES, C.CONV_1X1X, 31_320)
    assert C.CONV_1X1X not in {o.kernel for o, _ in C.choose(vww, "balanced").values()}


def test_forced_options_and_unknown_names(graphs):
    g = graphs["kws_ref_model"]
    nodes = sorted(C.choose(g, "speed"))
    assert {o.name for o, _ in C.choose(g, "balanced").values()} == {"column"}
    picks = C.choose(g, "balanced", {nodes[0]: "1x1", nodes[1]: "fast", nodes[2]: "rgb"})
    assert picks[nodes[0]][0].name == "1x1" and picks[nodes[1]][0].name == "1x1"
    # an option the node lacks: the preference decides; the forced nodes link the 1x1 kernel
    # already, so its code is paid and the faster kernel costs only its stream bytes
    assert picks[nodes[2]][0].name == "1x1" and picks[nodes[3]][0].name == "1x1"
