"""``kiloml profile``: real ELF in the emulator, bit-exact output, sizes, per-layer figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.builder import GraphBuilder, demo_dscnn
from kiloml.targets.cycles import block_cost, classify
from kiloml.targets.profile import battery_days, load_boards, profile_graph

SRC_BOARDS = Path(__file__).resolve().parents[2] / "src" / "kiloml" / "targets" / "boards.toml"
SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
KILOML = [sys.executable, "-m", "kiloml"]

REQUIRED = ["board", "core", "clock_hz", "flash_bytes", "ram_bytes", "arena_bytes", "stack_bytes",
            "weights_bytes", "instructions", "cycles", "latency_ms", "energy_uj", "fits",
            "output_matches_reference", "layers"]


def test_board_database_complete_and_cited():
    db = load_boards()
    assert {"nano33ble", "nucleo-l4r5zi", "stm32f746-disco", "stm32h743", "pico", "nrf5340dk",
            "esp32s3"} <= set(db)
    for bid, b in db.items():
        for key in ("name", "core", "clock_hz", "flash_bytes", "ram_bytes", "active_power_mw",
                    "idle_power_mw", "sources"):
            assert hasattr(b, key), (bid, key)
        assert b.sources, bid
    assert db["nucleo-l4r5zi"].clock_hz == 120_000_000
    assert db["pico"].core == "cortex-m0plus"


@pytest.mark.slow
@pytest.mark.parametrize("board", ["nucleo-l4r5zi", "pico", "stm32f746-disco", "nrf5340dk"])
def test_profile_demo_model_matches_reference(board):
    g = demo_dscnn(2)
    r = profile_graph(g, board, runtime="portable")
    for k in REQUIRED:
        assert k in r
    assert r["output_matches_reference"] is True
    assert r["fits"] is True
    assert r["instructions"] > r["macs"] // 2  # portable kernels: at least one instruction per MAC pair
    assert r["flash_bytes"] > r["weights_bytes"]
    # RAM = .data + .bss (the arena and the harness's output buffer) + stack high-water mark
    assert r["arena_bytes"] <= r["ram_bytes"] - r["stack_bytes"] <= r["arena_bytes"] + 64
    assert 0 < r["stack_bytes"] < 4096
    # per-layer figures add up to (almost) the total: invoke's own glue is the rest
    assert len(r["layers"]) == 12  # 9 convolutions, pool, FC, softmax (RESHAPE has no code)
    layer_cycles = sum(layer["cycles"] for layer in r["layers"])
    assert 0.95 * r["cycles"] <= layer_cycles <= r["cycles"]


def test_model_that_does_not_fit_says_so(tmp_path):
    b = GraphBuilder(1)
    x = b.input(b.rng.normal(0, 1, (4, 1, 256)))
    g = b.build([b.fully_connected(x, 5000)])  # 1.28 MB of weights
    save_tflite(g, tmp_path / "big.tflite")
    r = subprocess.run(KILOML + ["profile", str(tmp_path / "big.tflite"), "--board", "nano33ble",
                                 "--kernels", "portable", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["fits"] is False
    assert res["flash_bytes"] > res["flash_available_bytes"] == 1_048_576
    assert res["output_matches_reference"] is True


def test_board_all_and_battery(tmp_path):
    model = SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite"
    r = subprocess.run(KILOML + ["profile", str(model), "--board", "all", "--rate", "10",
                                 "--battery", "220", "--json"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {x["board"]: x for x in json.loads(r.stdout)}
    assert set(rows) == set(load_boards())
    assert rows["esp32s3"]["runtime"] == "analytic-estimate" and "analytic" in rows["esp32s3"]["estimate"]
    for bid, x in rows.items():
        if bid != "esp32s3":
            assert x["output_matches_reference"] is True
    # same core, different clock: latency scales with the clock
    m4a, m4b = rows["nano33ble"], rows["nucleo-l4r5zi"]
    assert m4a["cycles"] == m4b["cycles"]
    assert m4a["latency_ms"] == pytest.approx(m4a["cycles"] / 64e3, abs=1e-4)
    assert m4b["latency_ms"] == pytest.approx(m4b["cycles"] / 120e3, abs=1e-4)
    assert rows["nano33ble"]["battery_days"] > 0
    assert rows["stm32h743"]["battery_days"] > 0
    assert rows["nrf5340dk"]["battery_days"] is None  # no datasheet power figure: n/a, not a guess


def test_battery_math():
    board = load_boards()["nano33ble"].model_copy(
        update={"active_power_mw": 10.0, "idle_power_mw": 0.01, "vdd_v": 3.0})
    res = {"latency_ms": 100.0}
    # 1 Hz x 0.1 s = 10 % duty: 0.1 x 10 + 0.9 x 0.01 = 1.009 mW; 1000 mAh x 3 V = 3000 mWh
    assert battery_days(res, board, 1.0, 1000.0) == pytest.approx(3000 / 1.009 / 24, rel=1e-3)
    assert battery_days(res, board, 100.0, 1000.0) == pytest.approx(3000 / 10 / 24, rel=1e-3)


def test_board_database_is_validated(monkeypatch):
    from kiloml.errors import KilomlError
    from kiloml.targets import boards

    good = (SRC_BOARDS).read_text()
    bad = good.replace('clock_hz = 64000000', 'clock_hz = -1', 1)
    with pytest.raises(KilomlError, match=r"boards.nano33ble.clock_hz: Input should be greater"):
        boards._load(bad)
    with pytest.raises(KilomlError, match=r"boards.nano33ble.active_power_mw"):
        boards._load(good.replace("active_power_mw = 9.9", "active_power_mw = -9.9", 1))


def test_bad_usage(tmp_path):
    model = SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite"
    assert subprocess.run(KILOML + ["profile", str(model), "--board", "nope"],
                          capture_output=True).returncode == 2
    assert subprocess.run(KILOML + ["profile", str(model), "--board", "pico", "--rate", "1"],
                          capture_output=True).returncode == 2


def test_cycle_model_classes():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    # smlad r0, r1, r2, r0 ; ldr r3, [r4] ; ldr r5, [r4, #4] ; adds r0, #1
    code = bytes.fromhex("21fb0200" "2368" "6568" "0130")
    insns = list(md.disasm(code, 0x1000))
    assert [classify(i.mnemonic, i.op_str) for i in insns] == ["mac", "load", "load", "alu"]
    cost = block_cost(insns, "cortex-m4")
    assert cost.instructions == 4
    assert cost.cycles == 1 + 2 + 1 + 1  # second load pipelines with the first
    assert cost.macs_simd == 1
    assert np.isclose(block_cost(insns, "cortex-m7").cycles, 1 + 1 + 1 + 0.5)


def test_cycle_model_counts_the_registers_an_ldm_moves():
    """LDM/STM/PUSH/POP cost 1 + N, N the registers in the list (Cortex-M4 TRM 3.3.1,
    Cortex-M0+ TRM 3.3): the base register of ``ldm r0!, {...}`` and its writeback are not
    registers moved (the model once charged them as one more)."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    # ldm r0!, {r1, r2, r3} ; push {r4, r5, lr} ; pop {r4, pc} ; stm r1!, {r2, r3} ;
    # ldm.w r0, {r1, r2, r4, r5}
    code = bytes.fromhex("0ec8" "30b5" "10bd" "0cc1" "90e83600")
    insns = list(md.disasm(code, 0x1000))
    assert [i.mnemonic for i in insns] == ["ldm", "push", "pop", "stm", "ldm.w"]
    expected = {"cortex-m4": [4, 4, 5, 3, 5], "cortex-m0plus": [4, 4, 5, 3, 5],
                "cortex-m7": [2.5, 2.5, 4, 2, 3]}
    for core, cycles in expected.items():
        got = [block_cost([ins], core).cycles for ins in insns]
        assert np.allclose(got, cycles), (core, got)


def test_every_layer_is_checked_and_a_wrong_layer_is_caught(monkeypatch):
    """The emulated arena is read after each kernel call and compared with the reference
    interpreter's tensor; a layer whose generated code is deliberately broken (its ReLU
    clamped at -100 instead of 127) is flagged by node, the layers before it still match."""
    from kiloml.io.tflite_reader import read_tflite
    from kiloml.targets import profile as prof

    g = read_tflite(SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite")
    good = profile_graph(g, "pico", runtime="portable")  # the portable FC's struct is edited
    assert good["output_matches_reference"] and good["layers_match_reference"]
    assert good["layers_checked"] == len(good["layers"]) == 3
    real = prof.generate_c

    def broken(*a, **kw):
        res = real(*a, **kw)
        src = res.files[f"{res.prefix}.c"]
        head, tail = src.split(f"static const kml_fc_params {res.prefix}_n1_p", 1)
        res.files[f"{res.prefix}.c"] = (head + f"static const kml_fc_params {res.prefix}_n1_p"
                                        + tail.replace(".act_max = 127", ".act_max = -100", 1))
        return res

    monkeypatch.setattr(prof, "generate_c", broken)
    bad = profile_graph(g, "pico", runtime="portable")
    by_node = {x["node"]: x["matches_reference"] for x in bad["layers"]}
    assert bad["layers_match_reference"] is False
    assert by_node[0] is True and by_node[1] is False


def test_low_confidence_board_figures_carry_their_caveat():
    """A board whose notes call its power figures low confidence, board-level or missing has a
    one-line caveat, and `kiloml profile` prints it with the figures (table and JSON)."""
    db = load_boards()
    for bid, b in db.items():
        doubtful = any(w in b.note.upper() for w in ("LOW CONFIDENCE", "BOARD-LEVEL", "MISSING"))
        assert bool(b.caveat) == doubtful, bid
    model = SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite"
    r = subprocess.run(KILOML + ["profile", str(model), "--board", "nucleo-l4r5zi"],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, COLUMNS="200"))
    assert r.returncode == 0, r.stderr
    assert f"caveat (nucleo-l4r5zi): {db['nucleo-l4r5zi'].caveat}" in r.stdout
    r = subprocess.run(KILOML + ["profile", str(model), "--board", "all", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {x["board"]: x for x in json.loads(r.stdout)}
    assert rows["pico"]["caveat"] == db["pico"].caveat  # also on boards sharing a core's run
    assert rows["nucleo-l4r5zi"]["caveat"] == db["nucleo-l4r5zi"].caveat
    assert rows["nano33ble"]["caveat"] is None


def test_battery_is_na_where_the_dsp_latency_is_not_measured(monkeypatch):
    """--rate/--battery with a project on the ESP32-S3 (no cross compiler: the DSP block has
    no latency): the pipeline latency and battery life are n/a, not a TypeError."""
    from types import SimpleNamespace

    from kiloml.dsp import make_block
    from kiloml.workflow import profile as wp

    block = make_block(preset="mlperf-kws")
    proj = SimpleNamespace(root=SHARED, config=SimpleNamespace(
        board=SimpleNamespace(name="esp32s3"), deploy=SimpleNamespace(prefer="balanced")))
    monkeypatch.setattr(wp, "as_project", lambda p: proj)
    monkeypatch.setattr(wp, "project_window", lambda p: (
        block, 16000, 1, np.zeros((16000, 1), np.float32), "a silent window"))
    model = SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite"
    (res,) = wp.profile(model, "esp32s3", project="x", rate=1.0, battery=220.0)
    assert res["dsp"]["latency_ms"] is None
    assert res["pipeline"]["latency_ms"] is None and res["pipeline"]["energy_uj"] is None
    assert res["battery_days"] is None
    assert battery_days({"latency_ms": None}, load_boards()["nano33ble"], 1.0, 220.0) is None


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc not installed")
def test_cycle_model_carries_load_pipelining_across_a_block_split(tmp_path):
    """Unicorn ends a block at every 1 KB page boundary without a branch: eight loads in a row
    across 0x08000400 run as two blocks, and the first load of the second block still
    pipelines with the last of the first. The emulator's cycles equal the cost of the same
    instructions priced as one block (plus the branch that jumps there)."""
    import capstone

    from kiloml.targets.emulator import ElfImage, emulate

    (tmp_path / "t.S").write_text("""
    .syntax unified
    .thumb
    .text
    .global Reset_Handler
    .thumb_func
Reset_Handler:
    ldr r1, =0x20000100
    bl kml_profile_begin
    b.w region
    .thumb_func
kml_profile_begin:
    bx lr
    .thumb_func
kml_profile_end:
    b kml_profile_end
    .ltorg
    .org 0x400 - 8
region:
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    ldr r0, [r1]
    adds r0, #1
    bl kml_profile_end
""")
    (tmp_path / "t.ld").write_text("""
MEMORY { FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 64K
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 16K }
SECTIONS { .text : { *(.text*) } > FLASH
           .bss : { *(.bss*) _ebss = .; } > RAM
           _estack = ORIGIN(RAM) + LENGTH(RAM); }
""")
    elf = tmp_path / "t.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-T",
                    str(tmp_path / "t.ld"), str(tmp_path / "t.S"), "-o", str(elf)], check=True)
    image = ElfImage(elf)
    region = image.addr("region")
    assert region == 0x08000400 - 8
    emu = emulate(image, "cortex-m4")
    blocks = {k for seg in emu.segments for k, n in seg.blocks.items() if n}
    assert (region, 8) in blocks  # the split: four loads up to the page boundary
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    with open(elf, "rb") as f:
        from elftools.elf.elffile import ELFFile

        text = ELFFile(f).get_section_by_name(".text")
        code = text.data()[region - text["sh_addr"]:region - text["sh_addr"] + 8 * 2 + 2 + 4]
    one_block = block_cost(list(md.disasm(code, region)), "cortex-m4").cycles
    assert one_block == 2 + 7 * 1 + 1 + 3
    assert emu.instructions == 1 + 10
    assert emu.cycles == 3 + one_block  # b.w region, then the region as one block
