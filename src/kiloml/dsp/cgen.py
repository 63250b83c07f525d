"""C emitters of the DSP blocks: a ``<prefix>.h``/``<prefix>.c`` pair with the block's
tables and entry point, plus the runtime sources from ``dsp/c`` it needs.

Generated API (N input samples or frames fixed at generation time)::

    int <prefix>_features(const float *input, float *output);        f32 (int8_t *output
                                                                        when quantized)
    int <prefix>_features(const int16_t *pcm, int8_t *output);       q15 / q31, quantized
    int <prefix>_features(const int16_t *pcm, int32_t *output);      q15 / q31, Q20 values

Everything is static except the entry point; no malloc, no stdio; tables are ``static const``
and wrapped at 100 columns; regenerating gives byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen import cwriter
from kiloml.codegen.cwriter import array_decl, comment, float_literal, format_array
from kiloml.errors import DSPError

C_DIR = Path(__file__).parent / "c"
HEADER = "kml_dsp.h"


def _runtime(names: list[str]) -> dict[str, str]:
    return {n: (C_DIR / n).read_text() for n in [HEADER] + names}


def c_array(values, ctype: str, indent: str = "    ", width: int = 100) -> str:
    """``values`` as a wrapped initializer of ``ctype`` constants (cwriter.format_array)."""
    return format_array(values, indent, width, ctype=ctype)


def table(name: str, ctype: str, values) -> str:
    """A ``static const`` table of the block (cwriter.array_decl) and a newline."""
    return array_decl(ctype, name, values) + "\n"


def frontmatter(block, command: str, variant: str) -> str:
    """The generated files' frontmatter (cwriter.frontmatter): the block, its variant and
    every parameter (JSON values), wrapped at 100 columns."""
    lines = [f"block: {block.name} ({variant}), parameters:"]
    cur = " "
    for k, v in block.params.model_dump(mode="json").items():
        item = f" {k}={json.dumps(v, separators=(',', ':'))}"
        if len(" * ") + len(cur) + len(item) > 96:
            lines.append(cur)
            cur = " "
        cur += item
    return cwriter.frontmatter(command, lines + [cur])


def twiddles(n: int, variant: str) -> np.ndarray:
    k = np.arange(n // 2)
    tw = np.stack([np.cos(2 * np.pi * k / n), np.sin(2 * np.pi * k / n)], axis=1).reshape(-1)
    if variant == "f32":
        return tw.astype(np.float32)
    if variant == "q31":
        return np.clip(np.round(tw * 2 ** 31), -2 ** 31, 2 ** 31 - 1).astype(np.int64)
    return np.clip(np.round(tw * 2 ** 15), -2 ** 15, 2 ** 15 - 1).astype(np.int64)


def _header(P: str, block, command: str, variant: str, defines: dict[str, int],
            signature: str, doc: str = "", extra: tuple[str, ...] = ()) -> str:
    guard = f"{P.upper()}_H"
    lines = [frontmatter(block, command, variant), f"#ifndef {guard}", f"#define {guard}", "",
             "#include <stdint.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    for k, v in defines.items():
        lines.append(f"#define {P.upper()}_{k} {v}")
    lines.append("")
    if doc:
        lines.append(comment(doc.split("\n")))
    lines += [signature + ";", "", *extra, *([""] if extra else []),
              "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    return "\n".join(lines)


LOG_KIND = {"none": 0, "ln": 1, "log10": 2, "db": 3}
LOG_SCALE = {"ln": math.log(2), "log10": math.log10(2), "db": 10 * math.log10(2)}


def _log_value(kind: str, v: float) -> float:
    return {"ln": math.log, "log10": math.log10, "db": lambda x: 10 * math.log10(x)}[kind](v)


@dataclass(frozen=True, eq=False)
class QConfig:
    """Every table and constant of a mel block's q15 / q31 C (``kml_frontend_q_cfg``), as
    ``emit_mel_block`` writes them and ``kiloml.dsp.fixed`` computes with them: one source,
    so the numpy twin cannot drift from the C. Integer arrays are int64."""

    variant: str
    window: np.ndarray          # Q31 (q31) or Q15 (q15), frame_length
    twiddle: np.ndarray         # interleaved cos/sin, fft_length
    filter_start: np.ndarray
    filter_len: np.ndarray
    filter_weights: np.ndarray  # packed, unsigned, 2^-filter_frac_bits units
    filter_frac_bits: int
    log2_fft: int
    pre_emphasis_q15: int
    log_off_mant: int           # add mode: offset * 2^-G0 = mant * 2^log_off_exp
    log_off_exp: int
    log_floor_q20: int          # clamp mode: log(offset), Q20
    log_scale_q30: int          # ln 2, log10 2 or 10 log10 2, Q30
    dct_q29: np.ndarray | None  # (num_coefficients, num_filters), None for MFE
    out_mult: int               # int8 output: q = round_shift(v_q20 * mult, shift) + zp
    out_shift: int


def q_config(block, variant: str) -> QConfig:
    """The integer tables and constants of ``block`` (MFE / MFCC) for ``variant``."""
    p = block.params
    if variant not in ("q15", "q31"):
        raise DSPError(f"{block.name}: {variant!r} is not an integer variant (q15, q31)")
    if p.log == "none":
        raise DSPError(f"{block.name}: the {variant} variant needs a log (log != none)")
    front = block.front
    starts, lens, packed = front.sparse()
    fb = 31 if variant == "q31" else 15
    win = np.clip(np.round(front.win * 2 ** fb), -2 ** fb, 2 ** fb - 1).astype(np.int64)
    # Filter weights: F fraction bits so that weights fit 32 bits and no (96-bit)
    # accumulator can exceed 2^94 (spectrum values below 2^spec_bits).
    spec_bits = {("q31", 1): 32, ("q31", 2): 63, ("q15", 1): 16, ("q15", 2): 31}[
        (variant, p.power)]
    wmax = float(packed.max())
    wsum = max(float(packed[o:o + n].sum()) for o, n in
               zip(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) if n)
    F = min(31 - max(math.ceil(math.log2(wmax)), 0) - (1 if wmax >= 1 else 0),
            94 - spec_bits - max(math.ceil(math.log2(wsum)), 0))
    if F < 8:
        raise DSPError(f"{block.name}: filter weights too large for the {variant} variant")
    wq = np.round(packed * 2.0 ** F).astype(np.int64)
    log2n = int(round(math.log2(p.fft_length)))
    G0 = -F + p.power * log2n
    m, e = math.frexp(p.log_offset * 2.0 ** (-G0))      # offset * 2^-G0 = m * 2^e
    mant = int(round(m * 2 ** 31))
    exp = e - 31
    if mant >= 2 ** 31:
        mant //= 2
        exp += 1
    floor_q20 = int(round(_log_value(p.log, p.log_offset) * 2 ** 20))
    scale_q30 = int(round(LOG_SCALE[p.log] * 2 ** 30))
    if p.output_scale is not None:
        target = 1.0 / (p.output_scale * 2 ** 20)
        sh = 0
        while target * 2 ** (sh + 1) < 2 ** 31 and sh < 62:
            sh += 1
        mult = int(round(target * 2 ** sh))
    else:
        mult, sh = 0, 0
    dct = getattr(block, "dct", None)
    dq = None
    if dct is not None:
        dq = np.round(dct * 2 ** 29).astype(np.int64)
        if np.abs(dq).max() >= 2 ** 31:
            raise DSPError(f"{block.name}: DCT coefficients too large for Q29")
    return QConfig(variant, win, twiddles(p.fft_length, variant), np.asarray(starts, np.int64),
                   np.asarray(lens, np.int64), wq, F, log2n, int(round(p.pre_emphasis * 2 ** 15)),
                   mant, exp, floor_q20, scale_q30, dq, mult, sh)


def emit_mel_block(block, prefix: str, frames: int, variant: str,
                   command: str = "kiloml dsp") -> dict[str, str]:
    """MFE or MFCC (mfcc when ``block`` has a ``dct``)."""
    p = block.params
    P = prefix
    front = block.front
    nf = front.num_frames(frames)
    starts, lens, packed = front.sparse()
    dct = getattr(block, "dct", None)
    width = dct.shape[0] if dct is not None else p.num_filters
    quant = p.output_scale is not None
    used = front.input_samples(frames)
    nbins = p.fft_length // 2 + 1
    norm = {"none": 0, "peak": 1, "peak_abs": 2}[p.normalize]
    body = [frontmatter(block, command, variant), f'#include "{P}.h"', f'#include "{HEADER}"', ""]
    defines = {"INPUT_SAMPLES": frames, "OUTPUT_FRAMES": nf, "OUTPUT_WIDTH": width,
               "OUTPUT_SIZE": nf * width}
    extra: tuple[str, ...] = ()
    if variant == "f32":
        out_t = "int8_t" if quant else "float"
        sig = f"int {P}_features(const float *input, {out_t} *output)"
        scratch = p.fft_length + nbins + p.num_filters
        body += [table(f"{P}_window", "float", front.win.astype(np.float32)),
                 table(f"{P}_twiddle", "float", twiddles(p.fft_length, "f32")),
                 table(f"{P}_filter_start", "uint16_t", starts),
                 table(f"{P}_filter_len", "uint16_t", lens),
                 table(f"{P}_filter_weights", "float", packed.astype(np.float32))]
        if dct is not None:
            body.append(table(f"{P}_dct", "float", dct.astype(np.float32)))
        body += [f"static float {P}_scratch[{scratch}];", "",
                 f"static const kml_frontend_f32_cfg {P}_cfg = {{",
                 f"    {frames}u, {used}u, {p.frame_length}u, {p.frame_step}u, {p.fft_length}u, "
                 f"{nf}u,",
                 f"    {norm}u, {p.power}u, {LOG_KIND[p.log]}u, "
                 f"{0 if p.log_mode == 'add' else 1}u,",
                 f"    {float_literal(p.pre_emphasis)}, {float_literal(p.log_offset)},",
                 f"    {P}_window, {P}_twiddle,",
                 f"    {p.num_filters}u, {P}_filter_start, {P}_filter_len, {P}_filter_weights,",
                 "    0u, 0u,",
                 f"    {width if dct is not None else 0}u, "
                 f"{P + '_dct' if dct is not None else 'NULL'},",
                 f"    {1 if quant else 0}u, "
                 f"{float_literal(1.0 / p.output_scale) if quant else '0.0f'}, "
                 f"{p.output_zero_point if quant else 0}",
                 "};", "", sig, "{",
                 f"    return kml_frontend_f32(&{P}_cfg, input, {P}_scratch, output);", "}", ""]
        files = _runtime(["kml_fft.c", "kml_frontend.c"])
    else:
        q = q_config(block, variant)
        out_t = "int8_t" if quant else "int32_t"
        sig = f"int {P}_features(const int16_t *input, {out_t} *output)"
        wtype = "int32_t" if variant == "q31" else "int16_t"
        fft_words = p.fft_length if variant == "q31" else (p.fft_length + 1) // 2
        scratch = fft_words + (fft_words & 1) + 2 * nbins + 4 * p.num_filters
        body += [table(f"{P}_window", wtype, q.window),
                 table(f"{P}_twiddle", wtype, q.twiddle),
                 table(f"{P}_filter_start", "uint16_t", q.filter_start),
                 table(f"{P}_filter_len", "uint16_t", q.filter_len),
                 table(f"{P}_filter_weights", "uint32_t", q.filter_weights)]
        if q.dct_q29 is not None:
            body.append(table(f"{P}_dct", "int32_t", q.dct_q29))
        F, log2n, pre_q15 = q.filter_frac_bits, q.log2_fft, q.pre_emphasis_q15
        mant, exp, floor_q20, scale_q30 = (q.log_off_mant, q.log_off_exp, q.log_floor_q20,
                                           q.log_scale_q30)
        mult, sh = q.out_mult, q.out_shift
        body += [f"static int32_t {P}_scratch[{scratch}];", "",
                 f"static const kml_frontend_q_cfg {P}_cfg = {{",
                 f"    {frames}u, {used}u,",
                 f"    {p.frame_length}u, {p.frame_step}u, {p.fft_length}u, {nf}u,",
                 f"    {norm}u, {p.power}u, {LOG_KIND[p.log]}u, "
                 f"{0 if p.log_mode == 'add' else 1}u, {log2n}u,",
                 f"    {pre_q15},",
                 f"    {P}_window, {P}_twiddle,",
                 f"    {p.num_filters}u, {P}_filter_start, {P}_filter_len, {P}_filter_weights, "
                 f"{F},",
                 f"    {mant}u, {exp}, {floor_q20}, {scale_q30},",
                 f"    {width if dct is not None else 0}u, "
                 f"{P + '_dct' if dct is not None else 'NULL'},",
                 f"    {1 if quant else 0}u, {mult}, {sh}, {p.output_zero_point if quant else 0}",
                 "};", "", sig, "{",
                 f"    return kml_frontend_{variant}(&{P}_cfg, input, {P}_scratch, output);",
                 "}", ""]
        stages = [
            f"int32_t {P}_divisor(const int16_t *input)",
            f"int32_t {P}_frame(const int16_t *input, uint32_t t0, uint64_t *mel_hi, "
            "uint32_t *mel_lo)",
            f"void {P}_finish(const uint64_t *mel_hi, const uint32_t *mel_lo, int32_t sb, "
            f"int32_t d, {out_t} *output, uint32_t f)"]
        mel_at = fft_words + (fft_words & 1) + 2 * nbins
        body += ["/* the two stages of a stream (kml_frontend_q_frame / _finish) */",
                 stages[0], "{", f"    return kml_frontend_q_divisor(&{P}_cfg, input);", "}",
                 "", stages[1], "{",
                 f"    return kml_frontend_q_frame(&{P}_cfg, input, t0, {P}_scratch, mel_hi, "
                 f"mel_lo, {1 if variant == 'q31' else 0});", "}", "", stages[2], "{",
                 f"    kml_frontend_q_finish(&{P}_cfg, mel_hi, mel_lo, sb, d, "
                 f"{P}_scratch + {mel_at}, output, f);", "}", ""]
        extra = (comment(["Stages for streams (each frame computed once): the window's "
                          "divisor D; frame", "t0 / FRAME_STEP of the window -> its "
                          "NUM_FILTERS mel sums, returns S'; row f of", "output from them."]),
                 *[sg + ";" for sg in stages])
        files = _runtime(["kml_fft_q.c", "kml_frontend_q.c"])
        defines["OUTPUT_FRAC_BITS"] = 0 if quant else 20
        defines["FRAME_STEP"] = p.frame_step
        defines["NUM_FILTERS"] = p.num_filters
    qdoc = (f"int8 quantized: value = (q - {p.output_zero_point}) * {p.output_scale!r}" if quant
             else ("float" if variant == "f32" else "int32 Q20: value = q / 2^20"))
    indoc = ("float samples (16-bit PCM / 32768)" if variant == "f32"
             else "16-bit PCM samples")
    doc = (f"input: {P.upper()}_INPUT_SAMPLES {indoc};\noutput: {P.upper()}_OUTPUT_FRAMES x "
           f"{P.upper()}_OUTPUT_WIDTH, row-major,\n{qdoc}.\nReturns 0. Not reentrant (static "
           "scratch buffer).")
    files[f"{P}.h"] = _header(P, block, command, variant, defines, sig, doc, extra)
    files[f"{P}.c"] = "\n".join(body)
    return files


def emit_spectrogram(block, prefix: str, frames: int,
                     command: str = "kiloml dsp") -> dict[str, str]:
    p = block.params
    P = prefix
    nf = block.num_frames(frames)
    a, b = p.bin_range()
    nbins = p.fft_length // 2 + 1
    norm = {"none": 0, "peak": 1, "peak_abs": 2}[p.normalize]
    sig = f"int {P}_features(const float *input, float *output)"
    body = [frontmatter(block, command, "f32"), f'#include "{P}.h"', f'#include "{HEADER}"', "",
            table(f"{P}_window", "float", block.win.astype(np.float32)),
            table(f"{P}_twiddle", "float", twiddles(p.fft_length, "f32")),
            f"static float {P}_scratch[{p.fft_length + nbins + (b - a)}];", "",
            f"static const kml_frontend_f32_cfg {P}_cfg = {{",
            f"    {frames}u, {frames}u, {p.frame_length}u, {p.frame_step}u, {p.fft_length}u, "
            f"{nf}u,",
            f"    {norm}u, {p.power}u, {LOG_KIND[p.log]}u, {0 if p.log_mode == 'add' else 1}u,",
            f"    0.0f, {float_literal(p.log_offset)},",
            f"    {P}_window, {P}_twiddle,",
            "    0u, NULL, NULL, NULL,",
            f"    {a}u, {b}u,",
            "    0u, NULL,",
            "    0u, 0.0f, 0",
            "};", "", sig, "{",
            f"    return kml_frontend_f32(&{P}_cfg, input, {P}_scratch, output);", "}", ""]
    files = _runtime(["kml_fft.c", "kml_frontend.c"])
    defines = {"INPUT_SAMPLES": frames, "OUTPUT_FRAMES": nf, "OUTPUT_WIDTH": b - a,
               "OUTPUT_SIZE": nf * (b - a)}
    files[f"{P}.h"] = _header(P, block, command, "f32", defines, sig)
    files[f"{P}.c"] = "\n".join(body)
    return files


def emit_spectral(block, prefix: str, frames: int, channels: int,
                  command: str = "kiloml dsp") -> dict[str, str]:
    p = block.params
    P = prefix
    seg, step, nseg = block.segments(frames)
    w = np.asarray(block_window(seg))
    df = p.sample_rate / p.fft_length
    freqs = np.arange(p.fft_length // 2 + 1) * df
    e = p.band_edges_hz
    lo, hi = [], []
    for a, b in zip(e, e[1:]):
        sel = np.flatnonzero((freqs >= a - 1e-9 * df) & (freqs < b - 1e-9 * df))
        lo.append(int(sel[0]) if sel.size else 0)
        hi.append(int(sel[-1]) + 1 if sel.size else 0)
    width = block.features_per_axis() * channels
    sig = f"int {P}_features(const float *input, float *output)"
    body = [frontmatter(block, command, "f32"), f'#include "{P}.h"', f'#include "{HEADER}"', "",
            table(f"{P}_window", "float", w.astype(np.float32)),
            table(f"{P}_twiddle", "float", twiddles(p.fft_length, "f32")),
            table(f"{P}_band_lo", "uint16_t", lo), table(f"{P}_band_hi", "uint16_t", hi),
            f"static float {P}_scratch[{p.fft_length + p.fft_length // 2 + 1}];", "",
            f"static const kml_spectral_cfg {P}_cfg = {{",
            f"    {frames}u, {channels}u, {p.fft_length}u, {seg}u, {step}u, {nseg}u,",
            f"    {1 if p.detrend == 'constant' else 0}u, {1 if p.statistics else 0}u, "
            f"{1 if p.log_bands else 0}u,",
            f"    {len(lo)}u, {p.num_peaks}u, {P}_band_lo, {P}_band_hi,",
            f"    {float_literal(1.0 / (p.sample_rate * float(np.sum(w * w))))}, {float_literal(df)},",
            f"    {P}_window, {P}_twiddle",
            "};", "", sig, "{",
            f"    return kml_spectral_f32(&{P}_cfg, input, {P}_scratch, output);", "}", ""]
    files = _runtime(["kml_fft.c", "kml_spectral.c"])
    defines = {"INPUT_FRAMES": frames, "INPUT_AXES": channels, "OUTPUT_SIZE": width}
    files[f"{P}.h"] = _header(P, block, command, "f32", defines, sig)
    files[f"{P}.c"] = "\n".join(body)
    return files


def block_window(n: int) -> np.ndarray:
    from kiloml.dsp.common import window

    return window("hann", n, periodic=True)


def emit_raw(block, prefix: str, frames: int, channels: int,
             command: str = "kiloml dsp") -> dict[str, str]:
    P = prefix
    a, b = block._affine(channels)
    sig = f"int {P}_features(const float *input, float *output)"
    body = [frontmatter(block, command, "f32"), f'#include "{P}.h"', "",
            table(f"{P}_gain", "float", a.astype(np.float32)),
            table(f"{P}_bias", "float", b.astype(np.float32)), "", sig, "{",
            "    uint32_t i, c;"]
    x = f"input[i * {channels}u + c]"
    if block.params.center:       # each axis's mean over the window, summed in frame order
        body += [f"    float mean[{channels}u];", "    float s;",
                 f"    for (c = 0; c < {channels}u; ++c) {{",
                 "        s = 0.0f;",
                 f"        for (i = 0; i < {frames}u; ++i) {{",
                 f"            s += {x};",
                 "        }",
                 f"        mean[c] = s / {float_literal(float(frames))};",
                 "    }"]
        x = f"({x} - mean[c])"
    body += [f"    for (i = 0; i < {frames}u; ++i) {{",
             f"        for (c = 0; c < {channels}u; ++c) {{",
             f"            output[i * {channels}u + c] = {x} * {P}_gain[c] + {P}_bias[c];",
             "        }", "    }", "    return 0;", "}", ""]
    n_out = frames * channels
    defines = {"INPUT_FRAMES": frames, "INPUT_AXES": channels, "OUTPUT_SIZE": n_out}
    return {f"{P}.h": _header(P, block, command, "f32", defines, sig), f"{P}.c": "\n".join(body)}


def emit_sensors(block, prefix: str, frames: int,
                 command: str = "kiloml dsp") -> dict[str, str]:
    """The per-sensor composite (kiloml.dsp.sensors): each part's own C under
    ``<prefix>_<name>`` and an entry point that runs them on their channels in turn."""
    P = prefix
    ch = block.channels
    buf = block._buffer(frames)
    files: dict[str, str] = {}
    pframes = block.part_frames(frames)
    for (nm, a, e, b), pf in zip(block.parts, pframes):
        for fname, text in b.c_sources(f"{P}_{nm}", pf, e - a, "f32",
                                       command=command).items():
            if fname in files and files[fname] != text:
                raise DSPError(f"sensors: two parts generate different {fname}")
            files[fname] = text
    source = ["block: sensors (f32), one block per sensor, outputs concatenated:"]
    for (nm, a, e, b), n in zip(block.parts, block.part_sizes(frames)):
        d = block.decimate[nm]
        source.append(f"  {nm}: channels [{a}, {e}), block {b.name} ({P}_{nm}.h), "
                      f"{n} outputs" + (f", one frame in {d} (its own rate)" if d > 1 else ""))
    front = cwriter.frontmatter(command, source)
    sig = f"int {P}_features(const float *input, float *output)"
    body = [front, f'#include "{P}.h"', *[f'#include "{P}_{nm}.h"' for nm, *_ in block.parts],
            "", comment("one sensor's channels, de-interleaved from the window"),
            f"static float {P}_part[{buf}];", "", sig, "{", "    uint32_t i, c;", "    int r;"]
    off = 0
    for (nm, a, e, b), n, pf in zip(block.parts, block.part_sizes(frames), pframes):
        axes, d = e - a, block.decimate[nm]
        row = "i" if d == 1 else f"i * {d}u"   # a sensor at its own rate: every d-th frame
        body += [f"    /* {nm}: channels [{a}, {e}) -> output [{off}, {off + n}) */"
                 if d == 1 else f"    /* {nm}: channels [{a}, {e}) of one frame in {d} -> "
                 f"output [{off}, {off + n}) */",
                 f"    for (i = 0; i < {pf}u; ++i) {{",
                 f"        for (c = 0; c < {axes}u; ++c) {{",
                 f"            {P}_part[i * {axes}u + c] = input[({row}) * {ch}u + {a}u + c];"
                 if d > 1 else
                 f"            {P}_part[i * {axes}u + c] = input[i * {ch}u + {a}u + c];",
                 "        }", "    }",
                 f"    r = {P}_{nm}_features({P}_part, output + {off});",
                 "    if (r != 0) {", "        return r;", "    }"]
        off += n
    body += ["    return 0;", "}", ""]
    defines = {"INPUT_FRAMES": frames, "INPUT_AXES": ch, "OUTPUT_SIZE": off}
    offs = 0
    for (nm, *_), n in zip(block.parts, block.part_sizes(frames)):
        defines[f"{nm.upper()}_OUTPUT_OFFSET"] = offs
        defines[f"{nm.upper()}_OUTPUT_SIZE"] = n
        offs += n
    guard = f"{P.upper()}_H"
    doc = [f"input: {P.upper()}_INPUT_FRAMES frames x {P.upper()}_INPUT_AXES channels, "
           "interleaved;", "output: each sensor's features at its OUTPUT_OFFSET, float.",
           "Returns 0 or the first non-zero part's code. Not reentrant (static buffers)."]
    header = [front, f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
              "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
              *[f"#define {P.upper()}_{k} {v}" for k, v in defines.items()], "",
              comment(doc), sig + ";", "", "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    files[f"{P}.h"] = "\n".join(header)
    files[f"{P}.c"] = "\n".join(body)
    return files
