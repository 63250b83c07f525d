"""``kiloml train`` / ``kiloml test``: a project's data -> trained float model -> deployed int8.

Steps of ``train_project``
    1. features of the train / validation / test splits (kiloml.workflow.features), class list,
       normalization (``none`` when the DSP block already outputs int8, else fitted on the
       training split and recorded in meta.json: the device applies it before quantizing)
    2. float training (kiloml.train.loop; augmented banks for audio, per-epoch motion
       augmentation, SpecAugment; distillation when ``train.teacher`` is set: one int8
       .tflite, or a list of them taught as an ensemble, kiloml.compress.ensemble; every
       teacher is checked before anything is trained; ``train.self_teachers``: teachers of
       the project's own recipe with other seeds, trained first, ``train_self_teachers``)
    3. post-training quantization (calibration on training features), then optional
       quantization-aware fine-tuning (``train.qat_epochs``)
    4. ``model/model.tflite`` (the deployed int8 model), ``model/float.pt``, ``model/qnet.pt``,
       ``model/meta.json`` (labels, feature layout, input quantization, normalizer, accuracies
       of the float and the int8 model, training time, the command)

Anomaly models (``autoencoder``, ``kmeans``) train on the training samples whose label is in
``train.normal_labels`` (default: ``normal`` if such a label exists, else every label) and are
scored by ROC AUC of normal vs. everything else on the test split.

Task defaults (``kiloml.train.settings.TASK_DEFAULTS``) are what ``kiloml train`` uses for
anything the project's ``[train]`` section leaves unset.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from kiloml import __version__
from kiloml.compress.ensemble import TeacherEnsemble, load_ensemble, mean_logits
from kiloml.compress.quantize import calibrate, lower, run_fake, run_int8, to_graph
from kiloml.data.importer import import_data
from kiloml.data.index import DatasetIndex
from kiloml.data.windowing import make_windows
from kiloml.errors import KilomlError
from kiloml.io.tflite_reader import read_tflite
from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.planner import plan_memory
from kiloml.train import augment as A
from kiloml.train.loop import EpochData, TrainConfig, fit
from kiloml.train.metrics import classification_report, roc_auc
from kiloml.train.models import (ARCHS, BranchHeads, FallbackHeads, KMeansScorer, build_model,
                                 fold_input_affine, heads_ce, input_layout, to_model_input)
from kiloml.train.normalize import Normalizer
from kiloml.train.settings import ANOMALY_ARCHS, TrainSettings
from kiloml.workflow.cache import cache_path, content_hash, load_arrays, save_arrays
from kiloml.workflow.features import (AugmentedBanks, FeatureData, SensorView, apply_block,
                                      block_quant, class_list, load_split, view_block)
from kiloml.workflow.project import Project, as_project

MODEL_DIR = "model"


class PipelineError(KilomlError):
    """The project cannot be trained or tested as configured."""


# ---------------------------------------------------------------- recipe and data


@dataclass
class Prepared:
    project: Any
    recipe: TrainSettings
    arch: str
    params: dict
    labels: list[str]
    layout: str
    input_quant: Optional[tuple[float, int]]
    normalizer: Normalizer
    train: Any
    val: Any
    test: Any
    anomaly: bool = False
    normal_ids: list[int] = field(default_factory=list)
    view: Optional[SensorView] = None   # one sensor's features (kiloml optimize's sensors)
    ensemble: Optional[TeacherEnsemble] = None   # the checked teachers (teacher_ensemble)
    missing: str = "zero"               # the missing-sensor policy (missing_policy)
    # missing = "fallback": each sensor's [a, b) range of the flattened features, in order
    fallback_bounds: list = field(default_factory=list)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.train.feature_shape

    def model_input(self, x: np.ndarray) -> np.ndarray:
        return to_model_input(self.normalizer(x), self.layout)


def resolve_settings(project: Project, **overrides) -> TrainSettings:
    """The project's [train] section over its task's defaults (and ``overrides``)."""
    return project.config.train.resolve(project.config.project.task, **overrides)


def prepare(project: Project, recipe: TrainSettings | None = None,
            view: SensorView | None = None) -> Prepared:
    """Features of all splits and everything derived from the project configuration;
    ``view``: of one sensor of a multi-sensor project instead (SensorView)."""
    recipe = recipe or resolve_settings(project)
    arch = project.config.model.arch
    if arch not in ARCHS:
        raise PipelineError(f"{project.config_path}: model.arch {arch!r} is not in the zoo "
                            f"(have: {', '.join(ARCHS)})")
    if view is None and project.config.model.missing == "fallback":
        check_fallback(project, arch)
    labels = class_list(project)
    tr = load_split(project, "train", labels, view=view)
    va = load_split(project, "validation", labels, view=view)
    te = load_split(project, "test", labels, view=view)
    if len(tr.x) == 0:
        raise PipelineError(f"{project.index_path}: no training windows")
    block = view_block(project, view)
    iq = block_quant(block)
    kind = recipe.normalize or ("none" if iq is not None else
                                ("global" if block.name == "raw" else "feature"))
    if iq is not None and kind != "none":
        raise PipelineError("the DSP block outputs int8: normalize must be none")
    anomaly = arch in ANOMALY_ARCHS
    normal = recipe.normal_labels or (["normal"] if "normal" in labels else list(labels))
    bad = [n for n in normal if n not in labels]
    if anomaly and bad:
        raise PipelineError(f"train.normal_labels: no samples labelled {bad[0]!r}")
    normal_ids = [labels.index(n) for n in normal] if anomaly else []
    fit_x = tr.x[np.isin(tr.y, normal_ids)] if anomaly else tr.x
    norm = Normalizer.fit(kind, fit_x)
    params = dict(project.config.model.params)
    if arch == "fusion" and "sizes" not in params:
        params["sizes"] = sensor_feature_sizes(project, block, tr.feature_shape, view)
    missing = missing_policy(project, arch, params) if view is None else "zero"
    bounds = []
    if missing == "fallback":
        sizes = params.get("sizes") or sensor_feature_sizes(project, block, tr.feature_shape)
        bounds = [(int(sum(sizes[:k])), int(sum(sizes[:k + 1]))) for k in range(len(sizes))]
    return Prepared(project, recipe, arch, params, labels,
                    input_layout(arch, tr.feature_shape), iq, norm, tr, va, te, anomaly,
                    normal_ids, view, missing=missing, fallback_bounds=bounds)


# The policy of an intermediate-fusion model with auxiliary branch classifiers when
# ``[model] missing`` is unset (docs/fusion.md, "Run-time head selection": measured on
# sp_sw_har, 4 person-disjoint folds).
DEFAULT_MISSING = "branch-head"
# ``[model] missing = "fallback"``: the models that read one flat feature vector (a sensor's
# slice is ``x[:, a:b]``, the one slicing form the lowering takes)
FALLBACK_ARCHS = ("dense", "fusion")


def missing_policy(project: Project, arch: str, params: dict) -> str:
    """``[model] missing`` resolved: ``branch-head`` (the deployed model also computes each
    sensor branch's own classifier, and the C / Python pipeline answers with the remaining
    sensor's head when exactly one sensor remains) or ``zero`` (the fused head answers, the
    missing sensor's channels zeros). The setting applies to intermediate fusion (arch
    ``fusion``) with ``params.aux`` > 0 and several sensors; set on another model it is
    refused with one line naming kiloml.toml. Unset: ``DEFAULT_MISSING`` where it applies,
    else ``zero`` (what every other model does)."""
    chosen = project.config.model.missing
    if chosen == "fallback":
        check_fallback(project, arch)
        return chosen
    sizes = params.get("sizes") or []
    try:
        aux = float(params.get("aux", 0.0) or 0.0)
    except (TypeError, ValueError):
        aux = 0.0
    applies = arch == "fusion" and aux > 0 and len(sizes) > 1
    if chosen is None:
        return DEFAULT_MISSING if applies else "zero"
    if not applies:
        why = ("arch is not fusion" if arch != "fusion" else
               "params.aux is not > 0" if aux <= 0 else "the project has one sensor")
        raise PipelineError(f"{project.config_path}: model.missing = {chosen!r} applies only "
                            f"to intermediate fusion (arch \"fusion\") with model.params.aux "
                            f"> 0 and several sensors; here {why} (remove the setting)")
    return chosen


def check_fallback(project: Project, arch: str) -> None:
    """``[model] missing = "fallback"`` needs two or more sensors and a classifier on one
    feature vector (FALLBACK_ARCHS); anything else is one PipelineError line naming
    kiloml.toml (checked before any feature is computed)."""
    n = len(project.config.data.sensors)
    why = (f"the project has {n} sensor{'' if n == 1 else 's'} ([[data.sensors]])"
           if n < 2 else f"arch is {arch}" if arch not in FALLBACK_ARCHS else None)
    if why:
        raise PipelineError(f"{project.config_path}: model.missing = 'fallback' applies only "
                            f"to a classifier on the features of two or more sensors (arch "
                            f"{' or '.join(FALLBACK_ARCHS)}); here {why} (remove the "
                            f"setting)")


def sensor_feature_sizes(project: Project, block, feature_shape,
                         view: SensorView | None = None) -> list[int]:
    """Each sensor's number of features, in order, for the ``fusion`` model: the parts of a
    ``sensors`` DSP block on the project's window; a ``spectral`` block's (its features are
    axis by axis, so a sensor's axes give a contiguous range); one part for a single-sensor
    project (or a one-sensor ``view``)."""
    total = int(np.prod(feature_shape))
    sensors = project.config.data.sensor_channels()
    if hasattr(block, "part_sizes") and not (view is not None and view.mode == "only"):
        cfg = project.config.data
        wins = make_windows(project.dataset.load_index().of_role("sample"), cfg.window_ms,
                            cfg.stride_ms, cfg.pad)
        sizes = [int(v) for v in block.part_sizes(wins[0].length)] if wins else []
    elif len(sensors) < 2 or (view is not None and view.mode == "only"):
        return [total]
    elif block.name == "spectral":
        per_axis = total // sum(e - a for a, e in sensors.values())
        sizes = [(e - a) * per_axis for a, e in sensors.values()]
    else:
        raise PipelineError(f"{project.config_path}: model.arch fusion needs each sensor's "
                            f"features apart: a spectral [dsp] block or one per sensor "
                            f"([data.sensors.dsp]), not {block.name}")
    if sum(sizes) != total:
        raise PipelineError(f"{project.config_path}: the sensors' feature counts {sizes} do "
                            f"not add up to the {total} features")
    return sizes


def missing_input(prep: Prepared) -> np.ndarray:
    """The model input of one window whose channels are all zeros (the DSP block on zeros,
    normalized): what a branch of intermediate fusion reads for a sensor that sensor dropout
    zeroed (``model.params.aux_skip_missing``)."""
    cfg = prep.project.config.data
    wins = make_windows(prep.project.dataset.load_index().of_role("sample"), cfg.window_ms,
                        cfg.stride_ms, cfg.pad)
    if not wins:
        raise PipelineError(f"{prep.project.index_path}: no windows")
    channels = sum(e - a for a, e in cfg.sensor_channels().values())
    x = apply_block(view_block(prep.project, prep.view),
                    np.zeros((1, wins[0].length, channels), np.float32))
    return prep.model_input(x)[0]


# ---------------------------------------------------------------- training


def teacher_paths(prep: Prepared) -> list[Path]:
    """The configured teachers' files (relative paths are the project root's)."""
    root = Path(prep.project.root)
    return [Path(t) if Path(t).is_absolute() else root / t for t in prep.recipe.teachers()]


def teacher_ensemble(prep: Prepared, setting: str = "train.teacher") -> TeacherEnsemble:
    """The configured teacher(s), each checked (file, int8 classifier over the project's
    labels, input of the project's features; with ``teacher_sees = "batch"`` also its PyTorch
    fast path) before anything is trained; kept on ``prep``. A bad teacher is one
    PipelineError line naming ``setting`` and the file."""
    if prep.ensemble is not None:
        return prep.ensemble
    r = prep.recipe
    if not r.teachers():
        raise PipelineError(f"{setting}: no teacher configured")
    try:
        ens = load_ensemble(teacher_paths(prep), r.teacher_label_lists(), prep.labels,
                            prep.feature_shape)
        if r.teacher_sees == "batch":
            ens.torch_fn()
    except KilomlError as e:
        raise PipelineError(f"{setting}: {e}") from None
    prep.ensemble = ens
    return ens


def _teacher_logits(prep: Prepared, feats: np.ndarray, key: str) -> np.ndarray:
    """Logits of the configured teacher (the mean of the teachers' for an ensemble) on the
    features the student sees (normalized, channels last: the layout a deployed model reads);
    each teacher's logits cached apart, so a teacher added to an ensemble reuses the others'."""
    ens = teacher_ensemble(prep)
    out = []
    for m in ens.members:
        cp = cache_path(prep.project.root, "teacher",
                        content_hash(key, m.path.read_bytes(), m.labels, prep.normalizer.state()))
        cached = load_arrays(cp)
        if cached is None:
            logits = m.logits(feats).astype(np.float32)
            save_arrays(cp, logits=logits)
        else:
            logits = cached["logits"]
        out.append(logits)
    return out[0] if len(out) == 1 else mean_logits(out).astype(np.float32)


def epoch_source(prep: Prepared, distill: bool):
    """``epoch -> EpochData`` for kiloml.train.loop.fit (augmentation, teacher logits)."""
    r = prep.recipe
    aug = prep.project.config.data.augment
    tr = prep.train
    keep = np.isin(tr.y, prep.normal_ids) if prep.anomaly else np.ones(len(tr.y), bool)
    banks = AugmentedBanks(prep.project, prep.labels, banks=r.augment_banks, seed=r.seed,
                           view=prep.view, train_y=None if prep.anomaly else tr.y)
    if prep.anomaly:
        banks.audio = banks.motion = False
    if len(banks.extra_y):      # stream negatives: every bank ends with the same extra labels
        keep = np.concatenate([keep, np.ones(len(banks.extra_y), bool)])
    spec = A.features_enabled(aug) and len(prep.feature_shape) == 2 and not prep.anomaly \
        and prep.project.config.dsp.block in ("mfcc", "mfe", "spectrogram")
    y = torch.as_tensor(np.concatenate([tr.y, banks.extra_y])[keep])
    teacher_plain = None
    per_bank = distill and banks.enabled and r.teacher_sees == "augmented"
    if distill and not per_bank and r.teacher_sees != "batch":
        teacher_plain = torch.as_tensor(_teacher_logits(prep, prep.normalizer(tr.x[keep]),
                                                        "plain"))

    def get(epoch: int) -> EpochData:
        x = banks.bank(epoch)[keep] if banks.enabled else tr.x[keep]
        teacher = teacher_plain
        if per_bank:
            k = epoch % r.augment_banks if banks.audio else epoch
            teacher = torch.as_tensor(_teacher_logits(prep, prep.normalizer(x),
                                                      f"{banks.key}-{k}"))
        if spec:
            x = A.spec_augment(x, aug, np.random.default_rng([r.seed, 7, epoch]))
        return EpochData(torch.as_tensor(prep.model_input(x)), y, teacher)

    return get


def batch_teacher(prep: Prepared):
    """``train.teacher_sees = "batch"``: the .tflite teacher(s) in PyTorch (TorchGraph), called
    on every training batch as the student sees it (model layout -> channels-last features);
    an ensemble's logits are the mean of its teachers'."""
    return teacher_ensemble(prep).torch_fn()


def val_data(prep: Prepared):
    v = prep.val if len(prep.val.x) else prep.train
    keep = np.isin(v.y, prep.normal_ids) if prep.anomaly else np.ones(len(v.y), bool)
    return EpochData(torch.as_tensor(prep.model_input(v.x[keep])), torch.as_tensor(v.y[keep]))


def train_float(prep: Prepared, model=None, checkpoint_dir=None, progress: bool = True,
                distill: bool = False, epochs: int | None = None, title: str = "float",
                on_validated=None):
    """Train the project's zoo model in float; returns (model, TrainResult).
    ``on_validated(epoch, row)``: kiloml.train.loop.fit's per-epoch hook."""
    r = prep.recipe
    torch.manual_seed(r.seed)
    if model is None:
        model = build_model(prep.arch, prep.feature_shape, len(prep.labels), **prep.params)
    if getattr(model, "aux_skip_missing", False) and model.aux_heads is not None:
        model.set_missing_input(missing_input(prep))
    epochs = epochs or (r.distill_epochs if distill and r.distill_epochs else r.epochs)
    mixup = r.distill_mixup if distill and r.distill_mixup is not None else r.mixup
    cfg = TrainConfig(epochs=epochs, batch_size=r.batch_size, lr=r.lr,
                      weight_decay=r.weight_decay,
                      label_smoothing=0.0 if prep.anomaly else r.label_smoothing,
                      patience=r.patience, warmup_epochs=min(2, epochs // 10),
                      ema=r.ema, mixup=0.0 if prep.anomaly else mixup,
                      seed=r.seed, loss="mse" if prep.anomaly else "ce",
                      distill_alpha=r.distill_alpha if distill else 0.0,
                      temperature=r.temperature, threads=r.threads or TrainConfig.threads)
    tfn = batch_teacher(prep) if distill and r.teacher_sees == "batch" else None
    res = fit(model, epoch_source(prep, distill), cfg, val=val_data(prep),
              checkpoint_dir=checkpoint_dir, progress=progress, title=title, teacher_fn=tfn,
              on_validated=on_validated)
    return model, res


@dataclass
class Fallback:
    """One sensor's own model (``[model] missing = "fallback"``): trained apart on that
    sensor's features and folded to read the fused model's normalized slice ``bounds``."""

    sensor: str
    model: Any               # folded: reads the fused model's normalized slice
    bounds: tuple[int, int]
    arch: str
    params: dict
    normalizer: str          # the kind of its own normalizer (folded into its first layer)
    result: Any = None       # kiloml.train.loop's TrainResult of its training
    own: Any = None          # the model as trained (reads its own normalizer's features)
    scale: Any = None        # the fold: own input = fused slice x scale + shift
    shift: Any = None


def fallback_recipe(prep: Prepared) -> tuple[str, dict]:
    """The arch and params of each sensor's own model: the project's for a ``dense`` model
    (exactly the single-sensor project's model); for intermediate fusion (``fusion``, whose
    single-sensor form is not the single-sensor project's model) the zoo's ``dense``."""
    return ("dense", dict(prep.params)) if prep.arch == "dense" else ("dense", {})


def _flat(v: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(-1)
    return np.broadcast_to(v, (n,)) if v.size == 1 else v


def train_fallbacks(prep: Prepared, checkpoint_dir=None, progress: bool = True,
                    on_validated=None) -> list[Fallback]:
    """``[model] missing = "fallback"``: for every sensor, the project's recipe (the same
    ``prepare`` / ``train_float`` as ``kiloml optimize``'s "<sensor> only" and a
    single-sensor project: that sensor's own DSP block, its own normalizer, no sensor
    dropout) on that sensor's features of the same windows, trained apart from the fused
    model (labels only: no teacher); then its own normalizer folded into its first layer so
    that it reads the fused model's normalized slice ``x[:, a:b]`` (fold_input_affine)."""
    arch, params = fallback_recipe(prep)
    n = int(np.prod(prep.feature_shape))
    recipe = prep.recipe.model_copy(update={"teacher": None})
    out = []
    for s, (a, b) in zip(prep.project.config.data.sensors, prep.fallback_bounds):
        ps = prepare(prep.project, recipe, view=SensorView(s.name, "only"))
        if int(np.prod(ps.feature_shape)) != b - a:
            raise PipelineError(f"{prep.project.config_path}: sensor {s.name!r} alone has "
                                f"{int(np.prod(ps.feature_shape))} features, its slice of the "
                                f"fused features {b - a}")
        ps = replace(ps, arch=arch, params=dict(params), layout="flat")
        model, res = train_float(ps, checkpoint_dir=None if checkpoint_dir is None else
                                 Path(checkpoint_dir) / s.name, progress=progress,
                                 title=f"{s.name} alone", on_validated=on_validated)
        model.eval()
        fused, own = prep.normalizer, ps.normalizer
        mf, sf = _flat(fused.mean, n)[a:b], _flat(fused.std, n)[a:b]
        mo, so = _flat(own.mean, b - a), _flat(own.std, b - a)
        scale, shift = sf / so, (mf - mo) / so
        folded = fold_input_affine(model, scale, shift)
        out.append(Fallback(s.name, folded.eval(), (a, b), arch, dict(params), own.kind, res,
                            model, scale, shift))
    return out


class HeadsQAT(torch.nn.Module):
    """Quantization-aware fine-tuning of a QNet with the sensors' own models as extra outputs
    (``missing = "fallback"``): forward gives the fused logits (what ``fit`` scores and
    validates); ``extra_loss`` adds each sensor model's cross-entropy over the training
    windows in which sensor dropout did not zero that sensor (recognised as
    ``aux_skip_missing`` does: its slice equals ``missing_input``'s), so each head gets the
    fine-tuning it would get alone. The heads share no weight with the fused path."""

    def __init__(self, net, bounds, missing_x: np.ndarray | None) -> None:
        super().__init__()
        self.net = net
        self.bounds = list(bounds)
        self.missing_x = None if missing_x is None else \
            torch.as_tensor(np.asarray(missing_x, np.float32)).reshape(-1)
        self._extra = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.net.outputs(x, logits=True)
        if self.training:
            keeps = None
            if self.missing_x is not None:
                z = self.missing_x.to(x.device, x.dtype)
                keeps = [(x[:, a:b] - z[a:b]).abs().amax(dim=1) > 1e-4 for a, b in self.bounds]
            self._extra = (outs[1:], keeps)
        return outs[0].reshape(len(x), -1)

    def extra_loss(self, y: torch.Tensor, mix=None):
        extra, self._extra = self._extra, None
        if not extra or y is None:
            return 0.0
        outs, keeps = extra
        return sum(heads_ce([o.reshape(len(y), -1) for o in outs], keeps, y, mix))


def quantize(prep: Prepared, model, method: str | None = None, fallbacks=None):
    """PTQ of a float model on (at most 2,000) training windows: (QNet, Graph).
    ``fallbacks`` (``missing = "fallback"``, from ``train_fallbacks``): the sensors' own
    models become outputs 1, 2, ... of the same graph (without them: the fused model
    alone)."""
    x = prep.model_input(prep.train.x)
    if prep.anomaly:
        x = x[np.isin(prep.train.y, prep.normal_ids)]
    rng = np.random.default_rng(prep.recipe.seed)
    if len(x) > 2000:
        x = x[np.sort(rng.choice(len(x), 2000, replace=False))]
    xt = torch.as_tensor(x)
    # branch-head policy: one graph with every head (fused first, then each sensor's own)
    # fallback policy: the same shape of graph, each sensor's head a model trained apart
    traced = BranchHeads(model) if prep.missing == "branch-head" else \
        FallbackHeads(model, [(f.model, f.bounds) for f in fallbacks]) \
        if prep.missing == "fallback" and fallbacks else model
    net = lower(traced, xt[:1], append_softmax=not prep.anomaly,
                name=f"{prep.project.config.project.name}")
    calibrate(net, (xt[i:i + 256] for i in range(0, len(xt), 256)),
              method=method or prep.recipe.calibration, input_quant=prep.input_quant)
    return net, to_graph(net)


def qat(prep: Prepared, net, epochs: int, checkpoint_dir=None, progress: bool = True,
        distill: bool = False, lr_scale: float = 0.1):
    """Quantization-aware fine-tuning of a calibrated QNet ("fake" mode, STE gradients).

    Activation ranges follow an EMA of the batches for the first half of the epochs and are
    frozen for the second half, so the final model is evaluated with the ranges it exports."""
    r = prep.recipe
    net.set_mode("fake")
    net.freeze_observers(False)
    half = max(1, epochs // 2)

    def on_end(epoch: int) -> None:
        if epoch + 1 >= half:
            net.freeze_observers(True)

    cfg = TrainConfig(epochs=epochs, batch_size=r.batch_size, lr=r.lr * lr_scale,
                      weight_decay=0.0, label_smoothing=0.0 if prep.anomaly else r.label_smoothing,
                      seed=r.seed + 1, loss="mse" if prep.anomaly else "ce",
                      distill_alpha=r.distill_alpha if distill else 0.0,
                      temperature=r.temperature, threads=r.threads or TrainConfig.threads)

    def fwd(x):
        return net(x, logits=True)

    trained, fwd_ = net, fwd
    if prep.missing == "fallback" and net.extra_outputs:   # each head trains on its loss
        trained = fwd_ = HeadsQAT(net, prep.fallback_bounds, missing_input(prep)
                                  if prep.project.config.data.augment.sensor_dropout else None)
    tfn = batch_teacher(prep) if distill and r.teacher_sees == "batch" else None
    res = fit(trained, epoch_source(prep, distill), cfg, val=val_data(prep),
              checkpoint_dir=checkpoint_dir, forward=fwd_, progress=progress, title="QAT",
              on_epoch_end=on_end, teacher_fn=tfn)
    net.freeze_observers(True)
    net.set_mode("fake").eval()
    return net, res


# ---------------------------------------------------------------- evaluation


def predict_float(prep: Prepared, model, x: np.ndarray) -> np.ndarray:
    model.eval()
    xt = torch.as_tensor(prep.model_input(x))
    with torch.no_grad():
        return torch.cat([model(xt[i:i + 256]) for i in range(0, len(xt), 256)]).numpy() \
            if len(xt) else np.zeros((0, len(prep.labels)))


def predict_fallback(prep: Prepared, f: Fallback, x: np.ndarray) -> np.ndarray:
    """Logits of one sensor's own float model (``Fallback``) on windows of the project."""
    a, b = f.bounds
    xt = torch.as_tensor(prep.model_input(x))[:, a:b]
    f.model.eval()
    with torch.no_grad():
        return torch.cat([f.model(xt[i:i + 256]) for i in range(0, len(xt), 256)]).numpy() \
            if len(xt) else np.zeros((0, len(prep.labels)))


def predict_int8(prep: Prepared, graph, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs of the int8 graph; for classifiers the logits (the predicted class
    is the largest int8 logit: the class with the largest probability, ties in the 8-bit
    softmax output broken by the logits)."""
    return run_int8(graph, prep.model_input(x), logits=not prep.anomaly)


def anomaly_scores(prep: Prepared, outputs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Autoencoder reconstruction MSE per window (on the normalized features)."""
    xin = prep.model_input(x).reshape(len(x), -1)
    return ((outputs.reshape(len(x), -1) - xin) ** 2).mean(axis=1)


def report(prep: Prepared, outputs: np.ndarray, data, threshold: float | None = None) -> dict:
    """Classification report (or anomaly report) of model outputs on a FeatureData."""
    if not prep.anomaly:
        if (data.y < 0).any():
            raise PipelineError("the data has labels the model does not know")
        return classification_report(data.y, outputs.argmax(1), prep.labels)
    scores = outputs if outputs.ndim == 1 else anomaly_scores(prep, outputs, data.x)
    is_anom = ~np.isin(data.y, prep.normal_ids)
    out = classification_report(is_anom.astype(int),
                                (scores > threshold).astype(int) if threshold is not None
                                else np.zeros(len(scores), int), ["normal", "anomaly"])
    out["roc_auc"] = round(roc_auc(is_anom, scores), 4) if 0 < is_anom.sum() < len(is_anom) \
        else None
    out["threshold"] = threshold
    return out


def anomaly_threshold(scores_normal: np.ndarray) -> float:
    """Scores above the 99th percentile of normal validation windows count as anomalies."""
    return float(np.percentile(scores_normal, 99)) if len(scores_normal) else float("inf")


# ---------------------------------------------------------------- the verbs


def model_dir(project) -> Path:
    return Path(project.root) / MODEL_DIR


def self_teacher_seeds(seed: int, k: int) -> list[int]:
    """The training seeds of ``train.self_teachers = k``: the first k seeds >= 0 other than the
    model's (seed 0 -> 1, 2, 3; seed 2 -> 0, 1, 3), so the teachers of the students of seeds
    0-3 are the other three of them, as the measured recipes (docs/wand_lopo.md) had it."""
    return [s for s in range(k + 1) if s != seed][:k]


def check_self_teachers(prep: Prepared) -> None:
    """``train.self_teachers`` needs a classifier with one output (a teacher's int8 model is
    read back as an ensemble member)."""
    where = f"{prep.project.config_path}: train.self_teachers"
    if prep.anomaly:
        raise PipelineError(f"{where}: anomaly models ({prep.arch}) are not distilled")
    if prep.missing in ("branch-head", "fallback"):
        raise PipelineError(f"{where}: not with model.missing = {prep.missing!r} (a model of "
                            "several heads cannot teach as one output)")
    params = {**prep.params, **(prep.recipe.self_teacher_params or {})}
    try:
        build_model(prep.arch, prep.feature_shape, len(prep.labels), **params)
    except KilomlError as e:
        raise PipelineError(f"{where[:-len('self_teachers')]}self_teacher_params: {e}") from None


def train_self_teachers(prep: Prepared, out: Path, progress: bool = True,
                        command: str = "kiloml train") -> list[dict]:
    """``train.self_teachers = K``: K int8 models of the project's own recipe (its features,
    augmentation, schedule, quantization, QAT) trained with the seeds ``self_teacher_seeds``
    and the model parameters ``self_teacher_params`` over the model's, written to
    ``model/teachers/seed<S>.tflite``; each is exactly the model ``kiloml train`` makes for the
    project with that seed and those parameters (tests/workflow/test_self_teachers.py).
    Checkpoints per seed and parameters, so an interrupted run resumes."""
    r = prep.recipe
    params = {**prep.params, **(r.self_teacher_params or {})}
    tag = content_hash(params)[:8]
    (out / "teachers").mkdir(parents=True, exist_ok=True)
    made = []
    for s in self_teacher_seeds(r.seed, r.self_teachers or 0):
        tr = r.model_copy(update={"seed": s, "teacher": None, "teacher_labels": None,
                                  "self_teachers": 0, "self_teacher_params": None})
        tp = replace(prep, recipe=tr, params=params, ensemble=None)
        ck = out / "checkpoints" / f"teacher-{s}-{tag}"
        model, res = train_float(tp, checkpoint_dir=ck, progress=progress, title=f"teacher {s}")
        net, graph = quantize(tp, model)
        if tr.qat_epochs:
            net, _ = qat(tp, net, tr.qat_epochs, ck / "qat", progress)
            graph = to_graph(net)
        graph.meta = {"labels": ",".join(prep.labels), "command": command}
        path = out / "teachers" / f"seed{s}.tflite"
        save_tflite(graph, path)
        row: dict[str, Any] = {"seed": s, "file": f"{MODEL_DIR}/teachers/seed{s}.tflite",
                               "params": params, "train_seconds": round(res.seconds, 2)}
        if len(prep.val.x):
            row["val_int8"] = report(prep, predict_int8(prep, graph, prep.val.x),
                                     prep.val)["accuracy"]
        made.append(row)
    return made


def with_self_teachers(recipe: TrainSettings, made: list[dict]) -> TrainSettings:
    """The recipe whose ``teacher`` list is the configured teachers followed by the
    self-teachers (in the project's class order)."""
    lists = [x or [] for x in recipe.teacher_label_lists()] + [[] for _ in made]
    return recipe.model_copy(update={"teacher": recipe.teachers() + [m["file"] for m in made],
                                     "teacher_labels": lists})


def train_project(project: Project | str | Path | None = None, progress: bool = True, fresh: bool = False,
                  epochs: int | None = None, qat_epochs: int | None = None,
                  command: str = "kiloml train") -> dict:
    """Train the project's model and deploy its int8 version (see the module doc)."""
    project = as_project(project)
    recipe = resolve_settings(project, epochs=epochs, qat_epochs=qat_epochs)
    t0 = time.time()
    prep = prepare(project, recipe)
    if recipe.self_teachers:
        check_self_teachers(prep)
    distill = bool(recipe.teachers() or recipe.self_teachers) and prep.arch != "kmeans"
    if recipe.teachers() and prep.arch != "kmeans":
        teacher_ensemble(prep)       # every teacher checked before anything is trained
    out = model_dir(project)
    if fresh and (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints")
    out.mkdir(parents=True, exist_ok=True)
    t_feat = time.time() - t0
    meta: dict[str, Any] = {
        "kiloml_version": __version__, "command": command, "task": project.config.project.task,
        "arch": prep.arch, "params": prep.params, "labels": prep.labels,
        "feature_shape": list(prep.feature_shape), "layout": prep.layout,
        "input_quant": list(prep.input_quant) if prep.input_quant else None,
        "normalizer": prep.normalizer.state(), "anomaly": prep.anomaly,
        "normal_labels": [prep.labels[i] for i in prep.normal_ids],
        "recipe": recipe.model_dump(mode="json"), "features_seconds": round(t_feat, 2),
        "missing": prep.missing,
    }
    if prep.missing in ("branch-head", "fallback"):   # the graph's outputs, in order
        meta["heads"] = ["fusion"] + [s.name for s in project.config.data.sensors]
    if prep.arch == "kmeans":
        t1 = time.time()
        tr = prep.train
        scorer = KMeansScorer(**prep.params).fit(
            prep.normalizer(tr.x[np.isin(tr.y, prep.normal_ids)]).reshape(-1, int(np.prod(prep.feature_shape))))
        val = prep.val if len(prep.val.x) else tr
        vs = scorer.score(prep.normalizer(val.x[np.isin(val.y, prep.normal_ids)]))
        thr = anomaly_threshold(vs)
        rep = report(prep, scorer.score(prep.normalizer(prep.test.x)), prep.test, thr)
        meta.update({"kmeans": scorer.state(), "threshold": thr, "train_seconds":
                     round(time.time() - t1, 2), "test": {"float": rep}})
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
        return _summary(meta, out)

    if recipe.self_teachers:         # the teachers first, then the model as with `teacher`
        meta["self_teachers"] = train_self_teachers(prep, out, progress, command)
        prep.recipe = with_self_teachers(recipe, meta["self_teachers"])
        prep.ensemble = None
        teacher_ensemble(prep, "train.self_teachers")
    # with a teacher: first on the labels, then the teacher teaches that model
    model, res = train_float(prep, checkpoint_dir=out / "checkpoints" / "float",
                             progress=progress)
    t_float = res.seconds
    dres = None
    if distill:
        model, dres = train_float(prep, model, checkpoint_dir=out / "checkpoints" / "distill",
                                  progress=progress, distill=True, title="distill")
        t_float += dres.seconds
    fallbacks = None
    if prep.missing == "fallback":
        fallbacks = train_fallbacks(prep, out / "checkpoints" / "fallback", progress)
        t_float += sum(f.result.seconds for f in fallbacks)
    net, graph = quantize(prep, model, fallbacks=fallbacks)
    qres = None
    if recipe.qat_epochs:
        net, qres = qat(prep, net, recipe.qat_epochs, out / "checkpoints" / "qat", progress,
                        distill=distill)
        graph = to_graph(net)
    graph.meta = {"labels": ",".join(prep.labels), "command": command}
    if "heads" in meta:
        graph.meta["heads"] = ",".join(meta["heads"])
    save_tflite(graph, out / "model.tflite")
    torch.save({"arch": prep.arch, "params": prep.params, "state": model.state_dict(),
                "feature_shape": list(prep.feature_shape), "num_classes": len(prep.labels),
                # each sensor's model as trained, and the fold to the fused input
                **({"fallback": [{"sensor": f.sensor, "arch": f.arch, "params": f.params,
                                  "bounds": list(f.bounds), "state": f.own.state_dict(),
                                  "input_scale": np.asarray(f.scale, np.float32).tolist(),
                                  "input_shift": np.asarray(f.shift, np.float32).tolist()}
                                 for f in fallbacks]} if fallbacks else {})},
               out / "float.pt")
    torch.save(net.state_dict(), out / "qnet.pt")

    val = prep.val if len(prep.val.x) else prep.train
    ev, ev_name = (prep.test, "test") if len(prep.test.x) else (prep.val, "validation")
    test: dict[str, Any] = {}
    if len(ev.x):
        thr_f = thr_q = None
        if prep.anomaly:
            vn = val.x[np.isin(val.y, prep.normal_ids)]
            thr_f = anomaly_threshold(anomaly_scores(prep, predict_float(prep, model, vn), vn))
            thr_q = anomaly_threshold(anomaly_scores(prep, predict_int8(prep, graph, vn), vn))
            meta["threshold"] = thr_q
        test = {"float": report(prep, predict_float(prep, model, ev.x), ev, thr_f),
                "int8": report(prep, predict_int8(prep, graph, ev.x), ev, thr_q)}
        if qres is not None and not prep.anomaly:
            fk = run_fake(net, prep.model_input(ev.x), logits=True)
            test["qat_eval"] = report(prep, fk, ev)
    if fallbacks:   # each sensor's own model alone (float), on the same windows
        meta["fallback"] = [
            {"sensor": f.sensor, "arch": f.arch, "params": f.params,
             "features": list(f.bounds), "normalizer": f.normalizer,
             "float_train": _res_dict(f.result) | {"history": None},
             "test_float": report(prep, predict_fallback(prep, f, ev.x), ev)
             if len(ev.x) else None}
            for f in fallbacks]
    meta["evaluated_on"] = ev_name if len(ev.x) else None
    meta.update({
        "test": test, "float_train": _res_dict(res), "distill_train": _res_dict(dres),
        "qat_train": _res_dict(qres),
        "train_seconds": round(t_float + (qres.seconds if qres else 0.0), 2),
        "arena_bytes": plan_memory(graph).arena_bytes, "weights_bytes": graph.weights_bytes(),
        "macs": net.macs(), "model_file": "model.tflite",
    })
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return _summary(meta, out)


def _res_dict(res) -> Optional[dict]:
    if res is None:
        return None
    return {"epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
            "best_metric": res.best_metric, "seconds": res.seconds,
            "stopped_early": res.stopped_early, "resumed_from": res.resumed_from,
            "history": res.history}


def _summary(meta: dict, out: Path) -> dict:
    test = meta.get("test", {})
    s = {"model_dir": str(out), "arch": meta["arch"], "task": meta["task"],
         "labels": meta["labels"], "train_seconds": meta.get("train_seconds")}
    on = meta.get("evaluated_on", "test")
    if on != "test":
        # the test split has no windows: no test figure (n/a), never the validation's under
        # its name; the validation figures keep their own names
        s.update({"float_accuracy": None, "int8_accuracy": None, "evaluated_on": on})
    for k, v in test.items():
        name = k if on == "test" else f"{on}_{k}"
        s[f"{name}_accuracy"] = v.get("accuracy")
        if v.get("roc_auc") is not None:
            s[f"{name}_roc_auc"] = v["roc_auc"]
    for k in ("arena_bytes", "weights_bytes", "macs", "threshold"):
        if k in meta:
            s[k] = meta[k]
    if meta.get("self_teachers"):     # the teachers trained first, and their time
        s["self_teachers_val_int8"] = {str(t["seed"]): t.get("val_int8")
                                       for t in meta["self_teachers"]}
        s["self_teachers_seconds"] = round(sum(t["train_seconds"]
                                               for t in meta["self_teachers"]), 2)
    resumed = {k: v["resumed_from"] for k in ("float_train", "distill_train", "qat_train")
               if (v := meta.get(k)) and v.get("resumed_from")}
    if resumed:
        s["resumed_from_epoch"] = resumed
    return s


def load_meta(project) -> dict:
    p = model_dir(project) / "meta.json"
    if not p.is_file():
        raise PipelineError(f"{p}: no trained model (run `kiloml train` first)")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise PipelineError(f"{p}: not valid JSON ({e})") from None


def test_project(project: Project | str | Path | None = None, data: str | Path | None = None,
                 model: str | Path | None = None) -> dict:
    """Evaluate the deployed int8 model (model/model.tflite, or the int8 .tflite ``model``,
    e.g. a variant of ``kiloml optimize``) on the test split, or on the data at ``data`` (any
    importable format) -> accuracy, per_class, confusion, n."""
    project = as_project(project)
    meta = load_meta(project)
    labels = meta["labels"]
    tmp = None
    try:
        if data is not None:
            tmp = tempfile.TemporaryDirectory(prefix="kiloml_test_")
            src = import_elsewhere(project, Path(data), Path(tmp.name))
            fd = load_split(src, "test", labels, use_cache=False)
            unknown = sorted({s for s, y in zip(fd.sample_ids, fd.y) if y < 0})
            if unknown and not meta["anomaly"]:
                raise PipelineError(f"{data}: sample {unknown[0]!r} has a label the model does "
                                    f"not know (model labels: {', '.join(labels)})")
            fd.y = np.where(fd.y < 0, -2, fd.y)
        else:
            fd = load_split(project, "test", labels)
        if len(fd.x) == 0:
            raise PipelineError("no test windows to evaluate")
        if list(fd.feature_shape) != list(meta["feature_shape"]):
            raise PipelineError(f"features are {list(fd.feature_shape)}, the model was trained "
                                f"on {meta['feature_shape']}")
        prep = _prep_from_meta(project, meta, fd)
        if meta["arch"] == "kmeans":
            scorer = KMeansScorer.from_state(meta["kmeans"])
            out = report(prep, scorer.score(prep.normalizer(fd.x)), fd, meta.get("threshold"))
            out["model"] = "k-means scorer (numpy)"
            return out
        path = Path(model) if model is not None else model_dir(project) / meta["model_file"]
        graph = read_tflite(path)
        out = report(prep, predict_int8(prep, graph, fd.x), fd, meta.get("threshold"))
        out["model"] = str(path)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def _prep_from_meta(project, meta: dict, fd) -> Prepared:
    labels = meta["labels"]
    empty = FeatureData(fd.x[:0], fd.y[:0], labels)
    normal_ids = [labels.index(n) for n in meta.get("normal_labels", []) if n in labels]
    return Prepared(project, resolve_settings(project), meta["arch"], meta["params"], labels,
                    meta["layout"], tuple(meta["input_quant"]) if meta["input_quant"] else None,
                    Normalizer.from_state(meta["normalizer"]), fd, empty, fd,
                    meta["anomaly"], normal_ids)


def import_elsewhere(project, data: Path, tmpdir: Path):
    """A throw-away copy of the project (same kiloml.toml, empty index) holding ``data`` as
    its test split."""
    root = tmpdir / "p"
    root.mkdir()
    (root / "kiloml.toml").write_text(project.config_path.read_text())
    p = Project.load(root)
    DatasetIndex([]).save(p.index_path)
    import_data(p.dataset, p.config.data, data, split="test")
    return p
