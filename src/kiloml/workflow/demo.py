"""``kiloml demo``: the main job on bundled defaults, end to end, on any machine.

Today the demo builds its own model (a DS-CNN in the MLPerf Tiny KWS layout with seeded
random weights; the trained main job on examples/magic_wand replaces it once `kiloml deploy`
and `kiloml verify` land), writes it as .tflite, compiles it to C, checks the host-compiled
C against the reference interpreter (and TFLite Micro when installed), cross-compiles it for
a Cortex-M4 and profiles one inference of the real ELF in the emulator on NUCLEO-L4R5ZI,
printing the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.io.tflite_reader import read_tflite
from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.builder import demo_dscnn
from kiloml.ir.interpreter import Interpreter
from kiloml.targets.profile import profile_graph
from kiloml.targets.toolchain import cross_compile_sizes
from kiloml.workflow.compile import compile_model, model_macs


def run_demo(out_dir: str | Path, n_inputs: int = 20, seed: int = 0,
             board: str = "nucleo-l4r5zi") -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "demo_dscnn.tflite"
    save_tflite(demo_dscnn(seed), model_path)
    g = read_tflite(model_path)
    summary = compile_model(model_path, out / "c", prefix="kws", command="kiloml demo")
    rng = np.random.default_rng(seed)
    xs = rng.integers(-128, 128, (n_inputs,) + g.tensors[g.inputs[0]].shape, dtype=np.int8)
    it = Interpreter(g)
    ref = np.stack([it.run(x)[0] for x in xs])
    c_out = HostBuild(generate_c(g, "kws", command="kiloml demo")).run(xs)[0]
    res = {
        "model": str(model_path),
        "c_dir": str(out / "c"),
        "macs": model_macs(g),
        "weights_bytes": summary["weights_bytes"],
        "arena_bytes": summary["arena_bytes"],
        "arena_lower_bound_bytes": summary["arena_lower_bound_bytes"],
        "inputs_checked": n_inputs,
        "c_equals_reference": bool(np.array_equal(ref, c_out)),
    }
    try:
        from tflite_micro.python.tflite_micro import runtime

        tf = runtime.Interpreter.from_bytes(model_path.read_bytes())
        outs = []
        for x in xs:
            tf.set_input(x, 0)
            tf.invoke()
            outs.append(tf.get_output(0))
        res["tflm_equals_reference"] = bool(np.array_equal(np.stack(outs), ref))
    except ImportError:
        res["tflm_equals_reference"] = None  # tflite-micro is a test extra
    try:

        sizes = cross_compile_sizes(out / "c", "cortex-m4")
        res["cortex_m4_text_bytes"] = sizes["text"]
        res["cortex_m4_data_bytes"] = sizes["data"]
        res["cortex_m4_bss_bytes"] = sizes["bss"]
    except Exception as e:  # the cross compiler is optional for the demo
        res["cortex_m4_error"] = str(e).splitlines()[0]
        return res

    prof = profile_graph(g, board)
    res.update({
        "board": prof["board"],
        "board_kernels": prof["runtime"],
        "board_flash_bytes": prof["flash_bytes"],
        "board_ram_bytes": prof["ram_bytes"],
        "board_instructions": prof["instructions"],
        "board_cycles_estimated": prof["cycles"],
        "board_macs_per_cycle": prof["macs_per_cycle"],
        "board_latency_ms": prof["latency_ms"],
        "board_energy_uj": prof["energy_uj"],
        "board_output_matches_reference": prof["output_matches_reference"],
    })
    return res
