"""The numpy twin of the integer DSP C (kiloml.dsp.fixed) against the C itself: bit for bit
(np.array_equal, no tolerance) for MFE and MFCC, q15 and q31, on real speech, adversarial
signals (silence, full-scale squares, sines, noise, impulses, one-LSB signals) and random
clips, for the default parameters, the mlperf-kws preset and parameter sets that exercise
every branch of kml_frontend_q.c (power spectrum, clamp mode, pre-emphasis, peak / peak_abs
normalization, padding and truncation, other FFT lengths, int8 output); on the host build
and on Cortex-M4 / M0+ builds in the emulator."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from dsphelp import SPEECH, speech_clips
from kiloml.codegen.cwriter import array_decl, comment
from kiloml.dsp.fixed import fixed_features
from kiloml.dsp.host import NP, DSPHostBuild
from kiloml.dsp.mfcc import MFCC
from kiloml.dsp.mfe import MFE
from kiloml.errors import DSPError

N = 16000
BLOCKS = {
    "mfcc": lambda: MFCC(),
    "mfe": lambda: MFE(),
    "mlperf-kws": lambda: MFCC.preset("mlperf-kws"),
    # power spectrum (63-bit bins, 96-bit sums), dB, clamp mode, pre-emphasis, peak_abs
    "mfe-power-db": lambda: MFE(power=2, log="db", log_mode="clamp", fft_length=1024,
                                frame_length=1024, frame_step=512, num_filters=64,
                                pre_emphasis=0.97, normalize="peak_abs"),
    # short FFT, few filters, log10, lifter, peak normalization, truncation + end padding
    "mfcc-256-log10": lambda: MFCC(num_filters=20, fft_length=256, frame_length=256,
                                   frame_step=128, log="log10", lifter=22, normalize="peak",
                                   pad_to=15000, pad_end=True),
    # int8 MFE, Hamming, Slaney mel and area normalization, zero padding past the input
    "mfe-int8-hamming": lambda: MFE(fft_length=256, frame_length=200, frame_step=80,
                                    num_filters=32, window="hamming", pre_emphasis=0.5,
                                    log_offset=1e-3, output_scale=0.1, output_zero_point=-20,
                                    pad_to=17000, high_hz=8000, mel_scale="slaney",
                                    filter_norm="slaney", power=2),
    # power spectrum in ln with a tiny clamp floor, orthonormal DCT
    "mfcc-power-clamp": lambda: MFCC(power=2, log_mode="clamp", log_offset=1e-10,
                                     dct_norm="ortho", normalize="peak_abs",
                                     pre_emphasis=0.97),
}


def adversarial(n: int = N) -> dict[str, np.ndarray]:
    t = np.arange(n)
    rng = np.random.default_rng(7)

    def one(i, v):
        return np.where(t == i, v, 0)

    sigs = {
        "silence": np.zeros(n),
        "square-40": np.where((t // 40) % 2, 32767, -32768),
        "square-7": np.where((t // 7) % 2, -32768, 32767),
        "square-1": np.where(t % 2, -32768, 32767),
        "dc-min": np.full(n, -32768),
        "dc-max": np.full(n, 32767),
        "sine-1k": np.round(32767 * np.sin(2 * np.pi * 1000 * t / 16000)),
        "sine-3999": np.round(32767 * np.sin(2 * np.pi * 3999 * t / 16000)),
        "chirp": np.round(32767 * np.sin(2 * np.pi * (20 + 0.25 * t) * t / 16000)),
        "noise-full": rng.integers(-32768, 32768, n),
        "impulse-mid": one(n // 2, 32767),
        "impulse-first": one(0, -32768),
        "impulse-last": one(n - 1, -32768),
        "one-lsb": one(5, 1),
        "minus-one-lsb": one(9, -1),
        "lsb-noise": rng.integers(-1, 2, n),
        "quiet-noise": np.round(rng.normal(0, 3, n)),
    }
    return {k: np.clip(v, -32768, 32767).astype(np.int16) for k, v in sigs.items()}


def random_clips(n: int = N) -> np.ndarray:
    rng = np.random.default_rng(11)
    uni = rng.integers(-32768, 32768, (6, n))
    gauss = rng.normal(0, 1, (10, n)) * np.logspace(0, 4.6, 10)[:, None]
    return np.clip(np.concatenate([uni, np.round(gauss)]), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    assert SPEECH.is_dir(), f"shared data missing: {SPEECH}"
    x16, _, _ = speech_clips()
    adv = adversarial()
    return {"speech": x16[::40], "adversarial": np.stack(list(adv.values())),
            "random": random_clips()}


def first_difference(ref: np.ndarray, got: np.ndarray) -> str:
    i = next(i for i in range(len(ref)) if not np.array_equal(ref[i], got[i]))
    d = np.argwhere(ref[i] != got[i])[0]
    return f"clip {i} at {tuple(d)}: C {ref[i][tuple(d)]}, numpy {got[i][tuple(d)]}"


@pytest.mark.parametrize("variant", ["q15", "q31"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_bit_exact_vs_host_c(name, variant, inputs):
    block = BLOCKS[name]()
    host = DSPHostBuild(block, N, 1, variant)
    for kind, pcm in inputs.items():
        ref = host.run(pcm)
        got = fixed_features(block, pcm, variant)
        assert got.dtype == ref.dtype and got.shape == ref.shape, kind
        assert np.array_equal(ref, got), f"{kind}: {first_difference(ref, got)}"
    adv = adversarial()
    got = fixed_features(block, np.stack(list(adv.values())), variant)
    for i, k in enumerate(adv):        # a clip alone gives what it gives in a batch
        assert np.array_equal(fixed_features(block, adv[k][None], variant)[0], got[i]), k


@pytest.mark.parametrize("variant", ["q15", "q31"])
@pytest.mark.parametrize("name,samples", [("mlperf-kws", 12000), ("mlperf-kws", 16385),
                                          ("mfcc-256-log10", 9000), ("mfe-int8-hamming", 4000)])
def test_other_input_lengths(name, samples, variant, inputs):
    """Fewer or more samples than pad_to (zero padding, truncation of the peak search)."""
    block = BLOCKS[name]()
    x = inputs["speech"][:8]
    pcm = np.zeros((len(x) + 2, samples), np.int16)
    pcm[:len(x), :min(samples, N)] = x[:, :samples]
    pcm[-2:] = random_clips(samples)[:2]
    pcm[-1, -3:] = 32767                  # at the end: past pad_to when samples > pad_to
    ref = DSPHostBuild(block, samples, 1, variant).run(pcm)
    assert np.array_equal(ref, fixed_features(block, pcm, variant)), first_difference(
        ref, fixed_features(block, pcm, variant))


def test_block_features_dispatch(inputs):
    block = MFCC.preset("mlperf-kws")
    pcm = inputs["speech"][:4]
    for v in ("q15", "q31"):
        want = fixed_features(block, pcm, v)
        assert np.array_equal(block.features(pcm, v), want)
        assert np.array_equal(block.features(pcm / 32768.0, v), want)   # float audio
    assert np.array_equal(block.features(pcm, "f32"), block(pcm / 32768.0))
    with pytest.raises(DSPError, match="no 'q7' C variant"):
        block.features(pcm, "q7")


def test_bad_input_and_variants():
    block = MFE()
    with pytest.raises(DSPError, match="not an integer variant"):
        fixed_features(block, np.zeros((1, N), np.int16), "f32")
    with pytest.raises(DSPError, match=r"\(N, samples\)"):
        fixed_features(block, np.zeros(N, np.int16), "q15")
    with pytest.raises(DSPError, match="int16 PCM"):
        fixed_features(block, np.zeros((1, N)), "q15")
    with pytest.raises(DSPError, match="needs a log"):
        fixed_features(MFE(log="none"), np.zeros((1, N), np.int16), "q31")
    # wider integer arrays holding 16-bit values are accepted
    x = random_clips()[:1]
    assert np.array_equal(fixed_features(block, x.astype(np.int32), "q15"),
                          fixed_features(block, x, "q15"))


def emulate_features(block, pcm: np.ndarray, variant: str, core: str) -> np.ndarray:
    """The block's ``variant`` C cross-compiled for ``core`` (as the profiler builds it) with
    a harness that runs every clip of ``pcm`` (a const table) in one emulation."""
    from kiloml.targets import harness
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import PROFILE_FLAGS

    k, n = pcm.shape
    _, out_t = DSPHostBuild.types(block, variant)
    shape = tuple(block.output_shape(n))
    n_out = int(np.prod(shape))
    P = "kml_dsp_block"
    src = "\n".join([
        comment("test harness: every clip of a table through the features"),
        "#include <stdint.h>", f'#include "{P}.h"', "",
        array_decl("int16_t", "kml_clips", pcm.reshape(-1)),
        f"{out_t} kml_out[{k * n_out}];", "int main(void);",
        f"__attribute__((noinline)) void {harness.BEGIN}(void);",
        f"__attribute__((noinline)) void {harness.END}(void);",
        f'void {harness.BEGIN}(void) {{ __asm volatile ("" ::: "memory"); }}',
        f'void {harness.END}(void) {{ __asm volatile ("" ::: "memory"); }}',
        "int main(void)", "{", "    int rc = 0;", "    uint32_t i;", f"    {harness.BEGIN}();",
        f"    for (i = 0; i < {k}u; ++i) {{",
        f"        rc |= {P}_features(&kml_clips[i * {n}u], &kml_out[i * {n_out}u]);",
        "    }", f"    {harness.END}();", "    return rc;", "}", ""])
    with tempfile.TemporaryDirectory(prefix="kiloml_fixedemu_") as d:
        wd = Path(d)
        for name, text in block.c_sources(P, n, 1, variant).items():
            (wd / name).write_text(text)
        (wd / "main.c").write_text(src)
        image = harness.build_elf(wd, PROFILE_FLAGS[core], "fixed.elf")
        nbytes = k * n_out * np.dtype(NP[out_t]).itemsize
        emu = emulate(image, core, read_back={"kml_out": nbytes})
    return np.frombuffer(emu.memory["kml_out"], NP[out_t]).reshape((k,) + shape)


@pytest.mark.parametrize("variant", ["q15", "q31"])
@pytest.mark.parametrize("core,name", [("cortex-m4", "mlperf-kws"),
                                       ("cortex-m4", "mfcc-power-clamp"),
                                       ("cortex-m0plus", "mlperf-kws"),
                                       ("cortex-m0plus", "mfe-power-db")])
def test_bit_exact_in_emulator(core, name, variant, inputs):
    """The Arm builds (arm-none-eabi-gcc -O2, 32-bit int64 helpers, no hardware divide on
    M0+) compute what the twin computes: speech, white noise and (M4, where emulation is
    faster) a full-scale square wave."""
    block = BLOCKS[name]()
    adv = adversarial()
    clips = [inputs["speech"][3], adv["noise-full"]]
    if core == "cortex-m4":
        clips.append(adv["square-7"])
    pcm = np.stack(clips)
    got = emulate_features(block, pcm, variant, core)
    assert np.array_equal(got, fixed_features(block, pcm, variant)), first_difference(
        fixed_features(block, pcm, variant), got)
