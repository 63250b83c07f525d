"""``kiloml dsp``: features of one file or of every file of a folder, numpy or host C.

One feature array per sample: a WAV clip, or each segment of a multi-sample file (a gesture
of a serial log, a fixed-row block of a CSV). Files are taken in sorted path order (folders
recursively, documentation files skipped); the output stacks (samples, *output_shape).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kiloml.data.importer import collect_files
from kiloml.data.readers import read_file
from kiloml.dsp import make_block
from kiloml.errors import DSPError
from kiloml.fileio import atomic_save_npy


def _files(inp: Path, fmt: str) -> list[Path]:
    _, files, _ = collect_files(inp, fmt)
    return files


def compute_features(inp: str | Path, output: str | Path, preset: str | None = None,
                     block: str | None = None, params: dict | None = None,
                     engine: str = "numpy", variant: str = "f32", fmt: str = "auto",
                     rate: float | None = None, command: str = "kiloml dsp",
                     c_out: str | Path | None = None, prefix: str = "features") -> dict:
    """Compute and save features; returns the summary ``--json`` prints. ``c_out``: also
    write the block's generated C (``variant``, sized for the first sample) to that folder."""
    blk = make_block(block, preset=preset, params=params)
    if engine not in ("numpy", "c"):
        raise DSPError(f"unknown engine {engine!r} (numpy or c)")
    if engine == "c":
        blk.check_variant(variant)
    inp, output = Path(inp), Path(output)
    if output.suffix != ".npy":
        raise DSPError(f"{output}: the output must be a .npy file")
    files = _files(inp, fmt)
    if not files:
        raise DSPError(f"{inp}: no data files found")
    need_rate = rate if rate is not None else getattr(blk.params, "sample_rate", None)
    items = []     # (file, offset, length, array)
    for f in files:
        rec = read_file(f, fmt, rate=need_rate)
        if blk.audio and rec.channels != 1:
            raise DSPError(f"{f}: {rec.channels} channels; the {blk.name} block takes mono audio")
        sr = getattr(blk.params, "sample_rate", None)
        if sr is not None and abs(rec.sample_rate - sr) > 1e-6 * sr:
            raise DSPError(f"{f}: sample rate {rec.sample_rate:g} Hz, the block's sample_rate is "
                           f"{sr:g} Hz")
        if engine == "c" and variant != "f32":
            if rec.raw_int16 is None:
                raise DSPError(f"{f}: the {variant} variant takes 16-bit PCM WAV input")
            src = rec.raw_int16
        else:
            src = rec.data
        for off, n in rec.segments:
            seg = src[off:off + n]
            items.append((f, off, n, seg[:, 0] if blk.audio else seg))
    shapes = {tuple(blk.output_shape(n, it.shape[-1] if it.ndim > 1 else 1))
              for _, _, n, it in items}
    if len(shapes) > 1:
        raise DSPError(f"samples give different feature shapes {sorted(shapes)}: make the inputs "
                       "equally long (e.g. pad_to for audio blocks)")
    feats: list[np.ndarray | None] = [None] * len(items)
    if engine == "numpy":
        by_len: dict[int, list[int]] = {}
        for i, (_, _, n, _) in enumerate(items):
            by_len.setdefault(n, []).append(i)
        for n, idx in by_len.items():
            out = blk(np.stack([items[i][3] for i in idx]))
            for k, i in enumerate(idx):
                feats[i] = out[k]
    else:
        from kiloml.dsp.host import DSPHostBuild

        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, _, n, a) in enumerate(items):
            groups.setdefault((n, a.shape[-1] if a.ndim > 1 else 1), []).append(i)
        for (n, ch), idx in groups.items():
            hb = DSPHostBuild(blk, n, ch, variant)
            out = hb.run(np.stack([items[i][3] for i in idx]))
            if variant != "f32" and out.dtype == np.int32:
                out = (out.astype(np.float64) / 2 ** 20).astype(np.float32)
            for k, i in enumerate(idx):
                feats[i] = out[k]
    arr = np.stack(feats)
    n0 = items[0][2]
    ch0 = items[0][3].shape[-1] if items[0][3].ndim > 1 else 1
    c_files: list[str] = []
    if c_out is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,47}", prefix):
            raise DSPError(f"--prefix {prefix!r} is not a valid C identifier")
        blk.check_variant(variant)
        files = blk.c_sources(prefix, n0, ch0, variant, command=command)
        out_dir = Path(c_out)
        if out_dir.exists() and not out_dir.is_dir():
            raise DSPError(f"{out_dir}: exists and is not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in sorted(files.items()):
            (out_dir / name).write_text(text)
            c_files.append(name)
    atomic_save_npy(output, arr, make_parents=True)
    return {
        "output": str(output),
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "block": blk.name,
        "preset": preset,
        "params": blk.params.model_dump(mode="json"),
        "engine": engine,
        "variant": variant if engine == "c" else None,
        "files": [str(f) for f in files],
        "samples": [{"file": str(f), "offset": off, "length": n} for f, off, n, _ in items],
        "cost": blk.cost(n0, ch0, variant if (engine == "c" or c_out) else "f32").as_dict(),
        "c_files": c_files,
        "command": command,
    }
