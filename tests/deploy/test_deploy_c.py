"""The C library package: its real files built warning-free for every Cortex-M core and the
host (also under ASan/UBSan), classifying raw windows as the Python path does, equal in the
emulator on a Cortex-M4 and a Cortex-M0+ board, one public header, nothing else exported.

Tolerances (the DSP block's own, tests/dsp): mlperf-kws int8 features from the C q31 and f32
variants equal numpy's except <= 0.1 % of values off by one LSB; q15 is not an exact twin of
numpy (its 16-bit FFT), so only the model part is compared exactly. Spectral f32 features: 1e-4
relative. Wherever the model's int8 input is the same, scores are identical bit for bit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml import __version__  # noqa: E402
from kiloml.codegen.host import find_cc  # noqa: E402
from kiloml.deploy import deploy_c, run_emulator, run_host, run_python  # noqa: E402
from kiloml.dsp import make_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402


@pytest.fixture(scope="module")
def kws_packages(tmp_path_factory):
    """One C package per DSP variant (board: Nano 33 BLE Sense, Cortex-M4F)."""
    out = {}
    for v in ("q15", "q31", "f32"):
        spec = H.kws_spec(v)
        out[v] = (spec, deploy_c(spec, tmp_path_factory.mktemp(f"kws_{v}") / "kws").path)
    return out


@pytest.fixture(scope="module")
def imu_package(tmp_path_factory):
    spec = H.imu_spec()
    return spec, deploy_c(spec, tmp_path_factory.mktemp("wand") / "wand").path


def _raw(spec, windows):
    return windows.astype(np.float32) / 32768 if spec.dsp_variant == "f32" else windows


# ---------------------------------------------------------------- host vs the Python path


@pytest.mark.parametrize("variant", ["q31", "q15", "f32"])
def test_kws_host_classifies_as_the_python_path(kws_packages, variant):
    spec, pkg = kws_packages[variant]
    raw = _raw(spec, H.speech_windows())
    host = run_host(pkg, raw, sanitize=True)
    py = run_python(spec, raw)
    n = len(raw)
    assert host.features.shape == py.features.shape == (n, 49, 10)
    assert host.scores.shape == (n, 12) and host.predictions.shape == (n,)
    # the pipeline after the DSP block is the Python path, bit for bit, on the C features
    scores, preds = H.model_path(spec, host.features)
    np.testing.assert_array_equal(host.scores, scores)
    np.testing.assert_array_equal(host.predictions, preds)
    np.testing.assert_array_equal(host.predictions, host.scores.argmax(axis=1))
    same = (host.features == py.features).reshape(n, -1).all(axis=1)
    np.testing.assert_array_equal(host.scores[same], py.scores[same])
    if variant in ("q31", "f32"):
        lsb = np.abs(host.features - py.features) / np.float32(0.584703)
        assert lsb.max() <= 1.0001 and (lsb > 0.5).mean() <= 1e-3
        assert same.mean() >= 0.75
        np.testing.assert_array_equal(host.predictions, py.predictions)
    else:
        assert same[-4]       # digital silence is exact in q15 too


def test_kws_direct_input(tmp_path):
    """A model calibrated with the block's quantization (as training does) takes the DSP
    output as its input: no table, no copy; still the Python path."""
    spec = H.kws_spec("q31", direct=True)
    pkg = deploy_c(spec, tmp_path / "kws").path
    src = (pkg / "kws.c").read_text()
    assert "kws_lut" not in src and "kws_input" not in src
    assert "kws_model_invoke(kws_features, kws_output)" in src
    raw = H.speech_windows()
    host = run_host(pkg, raw, sanitize=True)
    py = run_python(spec, raw)
    same = (host.features == py.features).reshape(len(raw), -1).all(axis=1)
    assert same.mean() >= 0.75
    np.testing.assert_array_equal(host.scores[same], py.scores[same])
    np.testing.assert_array_equal(host.predictions, py.predictions)


def test_imu_host_classifies_as_the_python_path(imu_package):
    spec, pkg = imu_package
    raw = H.imu_windows()
    host = run_host(pkg, raw, sanitize=True)
    py = run_python(spec, raw)
    want = py.features.astype(np.float64)
    scale = np.abs(want).max(axis=1, keepdims=True)
    np.testing.assert_allclose(host.features, want, rtol=1e-4, atol=1e-4 * scale.max())
    scores, preds = H.model_path(spec, host.features)
    np.testing.assert_array_equal(host.scores, scores)
    np.testing.assert_array_equal(host.predictions, preds)
    same = (H.model_input(spec, host.features) == H.model_input(spec, py.features)).all(axis=1)
    assert same.mean() >= 0.75
    np.testing.assert_array_equal(host.scores[same], py.scores[same])
    np.testing.assert_array_equal(host.predictions, py.predictions)
    assert len(set(host.predictions.tolist())) > 1


def _adversarial(scale: float, zp: int, mean: float, std: float) -> np.ndarray:
    """Raw values whose normalized value x / scale lands on every kind of rounding case:
    exact halves (both signs), just beside them, saturation, zero, signed zero, huge values,
    subnormals."""
    k = np.arange(-140, 141)
    halves = (k + 0.5) * scale
    near = np.concatenate([np.nextafter(halves.astype(np.float32), np.float32(np.inf)),
                           np.nextafter(halves.astype(np.float32), np.float32(-np.inf))])
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1e38, -1e38, 1e10, -1e10,
                        (127.5 - zp) * scale, (-128.5 - zp) * scale], np.float32)
    y = np.concatenate([halves.astype(np.float32), near, special,
                        np.float32(k * scale)]).astype(np.float32)
    x = (y.astype(np.float64) * std + mean).astype(np.float32)   # exact for these values
    pad = (-len(x)) % 32
    return np.concatenate([x, np.zeros(pad, np.float32)]).reshape(-1, 16, 2)


@pytest.mark.parametrize("kind", ["none", "global", "feature"])
def test_input_quantization_is_the_python_path_exactly(tmp_path, kind):
    """Raw block + identity model: the scores are the quantized model input itself, so every
    value (halves, saturation, signed zero) checks the C rounding against quantize_input."""
    from kiloml.deploy import DeploySpec
    from kiloml.train.normalize import Normalizer

    scale, zp = 0.0625, -3
    mean, std = (0.25, 2.0)
    raw = _adversarial(scale, zp, mean, std)
    if kind == "none":
        norm = Normalizer("none")
        raw = (raw.astype(np.float64) - mean) / std
        raw = raw.astype(np.float32)
    elif kind == "global":
        norm = Normalizer("global", mean, std)
    else:
        norm = Normalizer("feature", np.full(32, mean, np.float32), np.full(32, std, np.float32))
    labels = [f"v{i}" for i in range(32)]
    spec = DeploySpec("quant", H.identity_graph(32, scale, zp),
                      make_block("raw", params=dict(flatten=True)), 16, 2, 8.0, 2000.0, labels,
                      normalizer=norm.state(), layout="flat", board="pico",
                      command=H.COMMAND)
    pkg = deploy_c(spec, tmp_path / "quant").path
    host = run_host(pkg, raw, sanitize=True)
    py = run_python(spec, raw)
    np.testing.assert_array_equal(host.features, py.features)
    np.testing.assert_array_equal(host.scores, py.scores)
    np.testing.assert_array_equal(host.predictions, py.predictions)
    q = np.round(host.scores / np.float32(1 / 16)).astype(int) + zp
    assert q.min() == -128 and q.max() == 127           # both saturations were reached


# ---------------------------------------------------------------- emulator vs host


@pytest.mark.parametrize("board", ["nano33ble", "pico"])
def test_kws_emulator_equals_host(kws_packages, board):
    """The same package on a Cortex-M4F (Arm-optimized kernels, FPU) and a Cortex-M0+
    (portable kernels, no FPU) gives the host's features, scores and classes."""
    spec, pkg = kws_packages["q15"]
    raw = H.speech_windows()[::2]
    emu = run_emulator(pkg, raw, board, timeout_s=900)
    host = run_host(pkg, raw)
    np.testing.assert_array_equal(emu.features, host.features)
    np.testing.assert_array_equal(emu.scores, host.scores)
    np.testing.assert_array_equal(emu.predictions, host.predictions)


@pytest.mark.parametrize("board", ["nano33ble", "pico", "stm32f746-disco", "nrf5340dk"])
def test_imu_emulator_equals_host(imu_package, board):
    """Also in runs of five windows: one image, three batches."""
    spec, pkg = imu_package
    raw = H.imu_windows()
    emu = run_emulator(pkg, raw, board, timeout_s=900, chunk=5)
    host = run_host(pkg, raw)
    np.testing.assert_allclose(emu.features, host.features, rtol=1e-6,
                               atol=1e-6 * np.abs(host.features).max())
    same = (H.model_input(spec, emu.features) == H.model_input(spec, host.features)).all(axis=1)
    assert same.all()
    np.testing.assert_array_equal(emu.scores, host.scores)
    np.testing.assert_array_equal(emu.predictions, host.predictions)


# ---------------------------------------------------------------- builds


@pytest.mark.parametrize("core", sorted(H.CORES))
@pytest.mark.parametrize("which", ["kws", "imu"])
def test_builds_warning_free_for_every_core(kws_packages, imu_package, core, which, tmp_path):
    flags, kernels = H.CORES[core]
    pkg = kws_packages["q15"][1] if which == "kws" else imu_package[1]
    sources, includes = H.package_sources(pkg, kernels)
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources, includes, tmp_path)
    assert len(list(tmp_path.glob("*.o"))) == len(sources)


@pytest.mark.parametrize("which", ["kws", "imu"])
def test_host_build_and_example_as_the_readme_says(kws_packages, imu_package, which,
                                                   tmp_path):
    pkg = kws_packages["f32"][1] if which == "kws" else imu_package[1]
    name = "kws" if which == "kws" else "wand"
    readme = (pkg / "README.md").read_text()
    line = next(s for s in readme.splitlines() if s.startswith("gcc "))
    exe = tmp_path / "example_main"
    cmd = line.replace("gcc ", f"{find_cc()} -Wall -Wextra -Wconversion -Werror "
                       "-fsanitize=address,undefined -fno-sanitize-recover=all ", 1)
    cmd = cmd.replace("-o example_main", f"-o {exe}")
    r = subprocess.run(cmd, shell=True, cwd=pkg, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), cmd + "\n" + r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    label, score = r.stdout.split()
    meta = json.loads((pkg / f"{name}.json").read_text())
    assert label in meta["labels"] and 0.0 <= float(score) <= 1.0


def test_only_the_api_is_exported(kws_packages, tmp_path):
    """Everything static except <name>_classify and <NAME>_LABELS in the pipeline; every
    global symbol of the whole library carries the package's or the runtime's prefix."""
    spec, pkg = kws_packages["q15"]
    sources, includes = H.package_sources(pkg, "portable")
    H.compile_objects(find_cc(), [], sources, includes, tmp_path)
    nm = H.need("nm")

    def defined(obj: Path) -> set[str]:
        out = subprocess.run([nm, "--defined-only", "-g", str(obj)], capture_output=True,
                             text=True, check=True).stdout
        return {line.split()[-1] for line in out.splitlines() if line.strip()}

    assert defined(tmp_path / "kws.o") == {"kws_classify", "KWS_LABELS", "kws_stream_init",
                                             "kws_stream_push", "kws_stream_wake_stats"}
    for obj in tmp_path.glob("*.o"):
        for sym in defined(obj):
            assert sym.startswith(("kws_", "KWS_", "kml_")), (obj.name, sym)


def test_package_layout_and_provenance(kws_packages, imu_package):
    for spec, pkg in [kws_packages["q15"], imu_package]:
        name = spec.name
        assert sorted(p.name for p in pkg.glob("*.h")) == [f"{name}.h"]
        header = (pkg / f"{name}.h").read_text()
        M = name.upper()
        for macro in ("NUM_CLASSES", "SAMPLE_RATE_HZ", "WINDOW_SAMPLES", "CHANNELS",
                      "INPUT_SIZE", "ARENA_BYTES"):
            assert f"#define {M}_{macro} " in header
        assert f"extern const char *const {M}_LABELS[{M}_NUM_CLASSES];" in header
        sample = "int16_t" if spec.dsp_variant != "f32" else "float"
        assert f"typedef {sample} {name}_sample_t;" in header
        assert f"int {name}_classify(const {name}_sample_t *raw, float *scores);" in header
        for rel, data in H.tree(pkg).items():
            text = data.decode()
            if rel.endswith(".json"):
                meta = json.loads(text)
                assert (meta["kiloml_version"], meta["command"]) == (__version__, H.COMMAND)
            else:
                assert f"kiloml {__version__}" in text and H.COMMAND in text, rel
            if rel.endswith((".c", ".h")) and not rel.startswith("example/"):
                assert not re.search(r"\b(malloc|calloc|realloc|free|printf|puts)\s*\(|"
                                     r"<stdio\.h>", text), rel
        for rel in (f"{name}.h", f"{name}.c"):
            assert max(len(s) for s in (pkg / rel).read_text().splitlines()) <= 100, rel
        meta = json.loads((pkg / f"{name}.json").read_text())
        assert meta["kiloml_version"] == __version__ and meta["command"] == H.COMMAND
        assert meta["labels"] == list(spec.labels)


def test_kernel_sets_follow_the_board(tmp_path):
    """A Cortex-M0+ board gets the armv6m kernels, a DSP core the armv7em ones, each plus the
    portable copy for other cores."""
    pico = deploy_c(H.imu_spec(board="pico"), tmp_path / "pico").path
    nano = deploy_c(H.imu_spec(board="nano33ble"), tmp_path / "nano").path
    assert sorted(p.name for p in (pico / "model").iterdir()) == ["armv6m", "portable"]
    assert json.loads((pico / "wand.json").read_text())["build"]["board_kernels"] == "armv6m"
    assert sorted(p.name for p in (nano / "model").iterdir()) == ["armv7em", "portable"]
    meta = json.loads((nano / "wand.json").read_text())
    assert meta["build"]["board_kernels"] == "armv7em"
    assert meta["board"]["flags"] == ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp",
                                      "-mfpu=fpv4-sp-d16"]
    assert "-mfloat-abi=softfp -mfpu=fpv4-sp-d16" in (nano / "README.md").read_text()
    f746 = deploy_c(H.imu_spec(board="stm32f746-disco"), tmp_path / "f746").path
    assert json.loads((f746 / "wand.json").read_text())["board"]["flags"][-1] == \
        "-mfpu=fpv5-sp-d16"                     # the STM32F746's FPU is single precision


def test_run_checks_refuse_bad_input(imu_package, kws_packages):
    _, pkg = imu_package
    with pytest.raises(KilomlError, match=r"expected \(N, 50, 3\)"):
        run_host(pkg, np.zeros((2, 49, 3), np.float32))
    with pytest.raises(KilomlError, match="16-bit PCM"):
        run_host(kws_packages["q15"][1], np.zeros((1, 16000), np.float32))
    with pytest.raises(KilomlError, match="no cross compiler"):
        run_emulator(pkg, H.imu_windows()[:1], "esp32s3")
    with pytest.raises(KilomlError, match="not a kiloml C or Arduino package"):
        run_host(pkg / "dsp", H.imu_windows()[:1])


# ---------------------------------------------------------------- every feature conversion


@pytest.mark.parametrize("case", ["int8+global", "int8+feature", "q20+none", "q20+feature"])
def test_every_feature_conversion_is_the_python_path(case, tmp_path):
    """int8 features through the table with a global normalizer, int8 features dequantized in
    float with a per-feature normalizer, and the Q20 int32 output of an unquantized integer
    variant (value q / 2^20): the model part equals the Python path bit for bit on the C
    features, and the scores equal wherever the C features equal numpy's."""
    from kiloml.deploy import DeploySpec
    from kiloml.dsp.apply import apply_block
    from kiloml.train.normalize import Normalizer

    kind, norm_kind = case.split("+")
    block = H.kws_block() if kind == "int8" else \
        make_block(preset="mlperf-kws", params=dict(output_scale=None))
    raw = H.speech_windows()
    calib = apply_block(block, H.speech_windows(per_label=2, skip=3)[..., None] / 32768)
    norm = Normalizer.fit(norm_kind, calib)
    g = H.kws_graph(norm(calib))
    spec = DeploySpec("kws", g, block, 16000, 1, 16000.0, 1000.0, H.KWS_LABELS,
                      normalizer=norm.state(), layout="image1", dsp_variant="q31", board="pico",
                      command=H.COMMAND)
    pkg = deploy_c(spec, tmp_path / "kws").path
    src = (pkg / "kws.c").read_text()
    expect = {"int8+global": "kws_lut[", "int8+feature": "kws_mean[",
              "q20+none": "* 9.536743e-07f", "q20+feature": "kws_std["}[case]
    assert expect in src
    host = run_host(pkg, raw, sanitize=True)
    py = run_python(spec, raw)
    scores, preds = H.model_path(spec, host.features)
    np.testing.assert_array_equal(host.scores, scores)
    np.testing.assert_array_equal(host.predictions, preds)
    if kind == "q20":
        assert np.abs(host.features[:-4] - py.features[:-4]).max() < 1e-3   # speech
    same = (H.model_input(spec, host.features) == H.model_input(spec, py.features)).all(axis=1)
    assert same.mean() >= 0.5
    np.testing.assert_array_equal(host.scores[same], py.scores[same])


def test_footprint_is_measured_from_the_linked_image(imu_package):
    from kiloml.deploy import footprint

    spec, pkg = imu_package
    window = H.imu_windows()[0]
    m4 = footprint(pkg, "nano33ble", window)
    m0 = footprint(pkg, "pico", window)
    assert (m4["kernels"], m0["kernels"]) == ("armv7em", "portable")
    weights = spec.graph.weights_bytes()
    cost = spec.block.cost(H.IMU_FRAMES, 3)
    for f in (m4, m0):
        assert weights + cost.flash_bytes < f["flash_bytes"] < weights + cost.flash_bytes + 60000
        assert cost.ram_bytes < f["static_ram_bytes"] < 16384
        assert 0 < f["stack_bytes"] < 4096
        assert f["ram_bytes"] == f["static_ram_bytes"] + f["stack_bytes"]
        assert f["instructions"] > 10000 and f["cycles_estimated"] and f["latency_ms"] > 0
    # the M0+ has no FPU: the f32 spectral block runs in software floating point
    assert m0["instructions"] > 2 * m4["instructions"]
    quick = footprint(pkg, "nano33ble", run=False)
    assert quick["flash_bytes"] == m4["flash_bytes"] and "instructions" not in quick


def test_emulator_runs_are_bounded_in_time(kws_packages):
    from kiloml.errors import ToolchainError

    _, pkg = kws_packages["q15"]
    with pytest.raises(ToolchainError, match="did not finish within 0.05 s"):
        run_emulator(pkg, H.speech_windows()[:4], "pico", timeout_s=0.05)


def test_labels_survive_as_c_strings(tmp_path):
    """Quotes, backslashes, trigraph-like runs, tabs, UTF-8 and a comment terminator in the
    labels: the header stays valid and <NAME>_LABELS holds the exact bytes."""
    from kiloml.deploy import DeploySpec

    labels = ['say "hi"', "back\\slash", "what??=", "na\u00efve", "tab\there", "*/ end"]
    spec = DeploySpec("odd", H.identity_graph(6, 0.5, 0),
                      make_block("raw", params=dict(flatten=True)), 3, 2, 3.0, 1000.0, labels,
                      board="pico", command=H.COMMAND)
    pkg = deploy_c(spec, tmp_path / "odd").path
    main = tmp_path / "labels.c"
    main.write_text('#include <stdio.h>\n#include "odd.h"\nint main(void)\n{\n    int i;\n'
                    "    for (i = 0; i < ODD_NUM_CLASSES; ++i) {\n"
                    '        printf("%s\\n", ODD_LABELS[i]);\n    }\n    return 0;\n}\n')
    sources, includes = H.package_sources(pkg, "portable")
    exe = tmp_path / "labels"
    r = subprocess.run([find_cc(), *H.WARN, *[f"-I{i}" for i in includes], *map(str, sources),
                        str(main), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    assert out.decode("utf-8").split("\n")[:-1] == labels


def test_a_board_without_a_cross_compiler_gets_portable_c(tmp_path):
    pkg = deploy_c(H.imu_spec(board="esp32s3"), tmp_path / "wand").path
    assert sorted(p.name for p in (pkg / "model").iterdir()) == ["portable"]
    assert "no cross compiler for the xtensa-lx7 core" in (pkg / "README.md").read_text()
    raw = H.imu_windows()[:3]
    np.testing.assert_array_equal(run_host(pkg, raw).scores,
                                  run_python(H.imu_spec(board="esp32s3"), raw).scores)
