"""``kiloml verify``: the same raw recordings through the training-time Python pipeline and
through the deployed C library on the board (its real files, cross-compiled, run in the
emulator), compared feature by feature, score by score, prediction by prediction.

This answers the most common TinyML complaint, features on the device that differ from
training. With integer DSP (q15 / q31) the Python side computes the features with the numpy
twin of the integer C (kiloml.dsp.fixed): features, scores and predictions must be identical
on every clip. f32 features are compared within the block's stated tolerance
(docs/data_and_dsp.md, "Tolerances"): f32 DSP on an FPU core computes in another order than numpy, so its features
may differ in the last bits and a prediction may flip where two classes score alike; every
clip whose prediction differs is listed with its top-2 scores on both sides.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from kiloml.data.windowing import load_windows
from kiloml.deploy import deploy_c
from kiloml.deploy.run import load_manifest, run_emulator, run_host, run_python
from kiloml.deploy.spec import metadata, resolve
from kiloml.errors import KilomlError
from kiloml.workflow.deploy import project_spec
from kiloml.workflow.progress import counter
from kiloml.workflow.project import Project, as_project
from kiloml.workflow.train import import_elsewhere, load_meta

# Stated C-vs-numpy feature tolerances per (block, variant): (absolute, relative to the
# largest feature magnitude of the clip). docs/data_and_dsp.md measures each of them.
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("mfcc", "f32"): (1e-3, 0.0), ("mfe", "f32"): (1e-3, 0.0),
    ("spectrogram", "f32"): (0.0, 1e-5), ("spectral", "f32"): (0.0, 1e-4),
    ("raw", "f32"): (0.0, 1e-6),
}
MIN_AGREEMENT = 0.995  # f32 DSP: share of clips whose prediction must agree


def feature_tolerance(block, variant: str, ref: np.ndarray) -> float:
    """The largest feature difference a clip may show: none for the integer variants (the
    Python side runs their numpy twin, kiloml.dsp.fixed); for f32, int8 presets
    (``output_scale``): one quantization step, else the block's stated tolerance."""
    if variant in ("q15", "q31"):
        return 0.0
    scale = getattr(block.params, "output_scale", None)
    if scale is not None:
        return float(scale) * 1.0001
    top = float(np.abs(ref).max(initial=0.0))
    if getattr(block, "parts", None):   # one block per sensor: the loosest part's tolerance
        return max(feature_tolerance(b, variant, ref) for *_, b in block.parts)
    a, r = TOLERANCES.get((block.name, variant), (1e-3, 1e-4))
    return a + r * top


def check_package(pkg_dir: Path, spec) -> None:
    """Refuse a package that is not the project's current pipeline (another model, DSP block,
    parameters or variant): verifying it would prove nothing about this project."""
    meta = load_manifest(pkg_dir)
    want = metadata(resolve(spec, model_c=False))
    for key in ("model_sha256", "labels", "dsp", "window_samples", "channels"):
        if meta.get(key) != want.get(key):
            raise KilomlError(f"{pkg_dir}: the package's {key} is not the project's (deploy "
                              "again)")


def _raw_windows(spec, frames: np.ndarray) -> np.ndarray:
    """Windows (N, frames, channels) float32 as the data stage loads them -> the package's
    raw input: int16 PCM for integer audio variants (WAV samples are k / 32768), else float."""
    n = len(frames)
    if spec.block.audio:
        x = frames[..., 0]
        if spec.dsp_variant in ("q15", "q31"):
            return np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767) \
                .astype(np.int16).reshape(n, -1)
        return x.astype(np.float32).reshape(n, -1)
    return frames.astype(np.float32).reshape(n, -1)


def verify_project(project: Project | str | Path | None = None, data: Optional[Path] = None,
                   board: Optional[str] = None, limit: Optional[int] = None,
                   dsp_variant: Optional[str] = None, engine: str = "emulator",
                   package: Optional[Path] = None, progress: bool = False,
                   command: str = "kiloml verify") -> dict:
    """Compare the Python pipeline with the deployed C on the project's test split (or the
    recordings in ``data``, laid out like an import). ``engine``: ``emulator`` (the board's
    core) or ``host`` (gcc on this machine). Returns the report ``--json`` prints; ``ok`` is
    False when a feature exceeds the tolerance or predictions disagree beyond the rule."""
    p = as_project(project)
    meta = load_meta(p)
    labels = list(meta["labels"])
    spec = project_spec(p, board, dsp_variant, command=command)
    skipped: list[str] = []
    tmp = None
    try:
        if data is not None:
            tmp = tempfile.TemporaryDirectory(prefix="kiloml_verify_")
            src = import_elsewhere(p, Path(data), Path(tmp.name))
            frames, wins = load_windows(src.dataset, src.config.data, split="test")
        else:
            frames, wins = load_windows(p.dataset, p.config.data, split="test")
        unknown_class = "_unknown_" if "_unknown_" in labels else None
        keep, y = [], []
        for i, w in enumerate(wins):
            lab = w.label if w.label in labels else unknown_class
            if lab is None:
                skipped.append(w.sample_id)
                continue
            keep.append(i)
            y.append(labels.index(lab))
        if limit is not None:
            keep, y = keep[:limit], y[:limit]
        if not keep:
            raise KilomlError(f"{data or p.index_path}: no test windows to verify"
                              + (f" ({len(skipped)} with labels the model does not know)"
                                 if skipped else ""))
        raw = _raw_windows(spec, frames[keep])
        with tempfile.TemporaryDirectory(prefix="kiloml_verify_pkg_") as d:
            if package is None:
                pkg_dir = deploy_c(spec, Path(d) / "pkg").path
            else:
                pkg_dir = Path(package)
                check_package(pkg_dir, spec)
            if engine == "emulator":
                with counter(f"emulated {spec.board}", len(raw), progress, " windows") as upd:
                    dev = run_emulator(pkg_dir, raw, board=spec.board, on_progress=upd)
            else:
                dev = run_host(pkg_dir, raw)
        ref = run_python(spec, raw)
    finally:
        if tmp is not None:
            tmp.cleanup()
    y = np.asarray(y)
    diffs = np.abs(dev.features.astype(np.float64) - ref.features.astype(np.float64)) \
        .reshape(len(y), -1).max(axis=1)
    tols = np.array([feature_tolerance(spec.block, spec.dsp_variant, f) for f in ref.features])
    over = np.flatnonzero(diffs > tols)
    same = dev.predictions == ref.predictions
    integer_dsp = spec.dsp_variant in ("q15", "q31")
    scores_exact = bool(np.array_equal(dev.scores, ref.scores))
    differing = []
    for i in np.flatnonzero(~same):
        top_r = np.argsort(-ref.scores[i])[:2]
        top_d = np.argsort(-dev.scores[i])[:2]
        differing.append({"clip": wins[keep[i]].sample_id,
                          "reference_top2": [[labels[k], float(ref.scores[i][k])] for k in top_r],
                          "device_top2": [[labels[k], float(dev.scores[i][k])] for k in top_d]})
    agreement = float(same.mean())
    ok = len(over) == 0 and (bool(same.all()) and scores_exact if integer_dsp
                             else agreement >= MIN_AGREEMENT)
    return {
        "board": spec.board if engine == "emulator" else "host", "engine": engine,
        "dsp_variant": spec.dsp_variant, "clips": int(len(y)),
        "feature_max_abs_diff": float(diffs.max()),
        "feature_tolerance": float(tols.max()),
        "features_over_tolerance": int(len(over)),
        "scores_bit_exact": scores_exact,
        "predictions_equal": int(same.sum()),
        "prediction_agreement": round(agreement, 6),
        "accuracy_reference": float((ref.predictions == y).mean()),
        "accuracy_device": float((dev.predictions == y).mean()),
        "differing_clips": differing, "skipped_unknown_labels": len(skipped),
        "rule": "integer DSP: features, scores and predictions identical on every clip; f32 "
                "DSP: features within tolerance on every clip, predictions equal on >= 99.5 %",
        "ok": bool(ok),
    }
