"""``kiloml tune``: search DSP, model and quantization settings under the device's limits.

Every trial is a real pipeline: the project's settings with the trial's values (the ``[tune]
space``), features, float training, int8 quantization, the int8 model's validation accuracy,
then a real compile and emulator run of the DSP block + model on the board
(kiloml.workflow.profile). Objectives (Optuna, multi-objective): validation accuracy of the
int8 model (max), latency of one decision, RAM and flash (min). Hard limits (the board's RAM
and flash, and ``--max-ram-kb/--max-flash-kb/--max-latency-ms``) are Optuna constraints from
those measured figures: a trial that breaks one is never on the Pareto front.

Fidelity and pruning. Before training, the untrained model is quantized and profiled (its
code, weights and arena have the trained model's sizes): a trial that cannot fit is not
trained at all. During training, at the rungs ``epochs / reduction**k`` (not below
``min_epochs``), a trial whose validation accuracy is behind the best ``1/reduction`` of the
trials that reached the same rung at no more latency, RAM and flash is pruned (successive
halving among the trials that could dominate it: a cheap model is never pruned for being less
accurate than an expensive one).

Storage. The study lives in ``<project>/.kiloml/tune/study.db`` (SQLite), named by a hash of
everything that defines the search (settings, space, limits, board, schedule): re-running the
same command resumes it (``--trials`` is the study's total; a trial interrupted while running
is run again), a changed search starts another study. Trials work in scratch projects under
``.kiloml/tune/<study>/trial-<n>`` and never touch the project's own features or model. The
project's own settings are evaluated once per study as the ``defaults`` reference.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from kiloml.compress.quantize import to_graph
from kiloml.data.index import DatasetIndex
from kiloml.errors import KilomlError, UsageError
from kiloml.fileio import atomic_write_text
from kiloml.io.tflite_reader import read_tflite
from kiloml.io.tflite_writer import save_tflite
from kiloml.targets.boards import load_boards
from kiloml.train.models import build_model
from kiloml.train.settings import TrainSettings
from kiloml.workflow.cache import content_hash
from kiloml.workflow.profile import profile
from kiloml.workflow.project import (CONFIG_NAME, ProjectConfig, Project, TuneRange,
                                     _format_validation, as_project, to_toml)
from kiloml.workflow.train import (predict_int8, prepare, qat, quantize, report,
                                   resolve_settings, train_float)

TUNE_DIR = ".kiloml/tune"
DB_NAME = "study.db"
OBJECTIVES = ("accuracy", "latency_ms", "ram_kb", "flash_kb")

# the task's default search space (dotted keys of kiloml.toml); the task's own default is
# among the choices, so the defaults are a point of the space
_CAL = ["minmax", "percentile", "mse"]
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "motion": {"data.window_ms": [1000.0, 1500.0, 2000.0, 3000.0],
               "dsp.params.fft_length": [16, 32, 64, 128],
               "dsp.params.num_peaks": [0, 3],
               "model.params.hidden": [[16], [32], [32, 16], [64, 32], [128, 64]],
               "train.calibration": _CAL},
    "kws": {"dsp.params.num_coefficients": [10, 13, 16],
            "dsp.params.frame_step": [320, 480, 640],
            "model.params.channels": [32, 48, 64, 96],
            "model.params.blocks": [2, 3, 4],
            "train.calibration": _CAL},
    "vibration": {"dsp.params.fft_length": [256, 512, 1024, 2048],
                  "dsp.params.log_bands": [False, True],
                  "model.params.hidden": [[16], [32, 16], [64, 32], [128, 64]],
                  "train.calibration": _CAL},
    "anomaly": {"dsp.params.num_filters": [32, 40, 64],
                "train.calibration": _CAL},
    "custom": {"model.params.hidden": [[16], [32, 16], [64, 32], [128, 64]],
               "train.calibration": _CAL},
}

log = logging.getLogger(__name__)


class TuneError(KilomlError):
    """The search cannot run as configured, or found nothing within the limits."""


# ---------------------------------------------------------------- the search space


def _get(doc: dict, path: str) -> Any:
    d: Any = doc
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _set(doc: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    d = doc
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = value


def _known_keys(cfg: ProjectConfig, section: str) -> Optional[list[str]]:
    """Valid keys after ``section`` (None: free-form, e.g. a model's parameters)."""
    from kiloml.dsp import block_class

    models = {"data": type(cfg.data), "train": TrainSettings, "data.augment":
              type(cfg.data.augment)}
    if section in models:
        return list(models[section].model_fields)
    if section == "dsp":
        return ["block", "preset", "params"]
    if section == "dsp.params":
        return list(block_class(cfg.dsp.block).Params.model_fields)
    if section == "model":
        return ["arch", "params"]
    if section == "model.params":
        return None
    return []


def _base_doc(cfg: ProjectConfig) -> dict:
    """The settings a trial changes (what the study is keyed by): data, dsp, model, train."""
    return {k: v for k, v in cfg.model_dump(mode="json").items()
            if k in ("data", "dsp", "model", "train")}


@dataclass
class Dimension:
    """One searched setting: a list of choices or a numeric range."""

    key: str
    choices: Optional[list] = None
    range: Optional[TuneRange] = None

    def suggest(self, trial) -> Any:
        """The trial's value (Optuna stores non-scalar choices as their JSON text)."""
        if self.choices is not None:
            enc = [_encode(c) for c in self.choices]
            return _decode(trial.suggest_categorical(self.key, enc))
        r = self.range
        if r.is_int:
            return trial.suggest_int(self.key, int(r.low), int(r.high), step=int(r.step or 1),
                                     log=r.log)
        return trial.suggest_float(self.key, float(r.low), float(r.high), step=r.step,
                                   log=r.log)

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.range.low,
                                                                   self.range.high]


def _encode(v: Any) -> Any:
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v)


def _decode(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        return json.loads(v)
    return v


def search_space(project: Project) -> list[Dimension]:
    """The project's ``[tune] space`` (or its task's default), every key and every choice and
    range end checked against the schema: one clear line naming kiloml.toml otherwise."""
    cfg = project.config
    space = cfg.tune.space
    if space is None:
        space = DEFAULT_SPACES[cfg.project.task]
        space = {k: v for k, v in space.items() if not k.startswith("dsp.params.") or
                 k.split(".")[-1] in (_known_keys(cfg, "dsp.params") or [])}
    where = f"{project.config_path}: tune.space"
    dims = []
    for key, spec in space.items():
        parts = key.split(".")
        if len(parts) < 2 or parts[0] not in ("data", "dsp", "model", "train"):
            raise TuneError(f"{where}: {key!r}: expected a setting of [data], [dsp], [model] "
                            "or [train] (e.g. 'dsp.params.fft_length')")
        valid = _known_keys(cfg, ".".join(parts[:-1]))
        if valid is not None and parts[-1] not in valid:
            close = difflib.get_close_matches(parts[-1], valid, n=1)
            hint = f"; did you mean {'.'.join(parts[:-1] + close[:1])!r}?" if close else \
                f" (valid: {', '.join(valid)})" if valid else ""
            raise TuneError(f"{where}: {key!r}: unknown key{hint}")
        dim = Dimension(key, choices=list(spec)) if isinstance(spec, list) else \
            Dimension(key, range=spec if isinstance(spec, TuneRange) else TuneRange(**spec))
        if dim.choices is not None and len({json.dumps(c) for c in dim.choices}) != \
                len(dim.choices):
            raise TuneError(f"{where}: {key!r}: repeated choice")
        for value in dim.extremes():
            doc = _base_doc(cfg)
            _set(doc, key, value)
            try:
                trial_config(cfg, doc)
            except TuneError as e:
                raise TuneError(f"{where}: {key!r} = {value!r}: {e}") from None
        dims.append(dim)
    return dims


def trial_config(base: ProjectConfig, doc: dict) -> ProjectConfig:
    """The project's configuration with the trial's data/dsp/model/train ``doc``."""
    full = base.model_dump(mode="json")
    full.update(copy.deepcopy(doc))
    try:
        return ProjectConfig.model_validate(full)
    except Exception as e:  # pydantic ValidationError: the schema's one line
        msg = _format_validation(Path(CONFIG_NAME), e) if hasattr(e, "errors") else str(e)
        raise TuneError(msg.split(": ", 1)[1] if msg.startswith(CONFIG_NAME) else msg) \
            from None


# ---------------------------------------------------------------- one trial


@dataclass
class Limits:
    """Hard limits of the search (None: only the board's own RAM and flash)."""

    board: str
    max_ram_kb: Optional[float] = None
    max_flash_kb: Optional[float] = None
    max_latency_ms: Optional[float] = None
    board_ram_kb: float = math.inf
    board_flash_kb: float = math.inf

    def violations(self, fig: dict) -> list[float]:
        """Optuna's constraints: each <= 0 when met (in the figure's units)."""
        pairs = [(fig["ram_kb"], self.board_ram_kb), (fig["flash_kb"], self.board_flash_kb),
                 (fig["ram_kb"], self.max_ram_kb), (fig["flash_kb"], self.max_flash_kb),
                 (fig["latency_ms"], self.max_latency_ms)]
        return [float(v - lim) if lim is not None and math.isfinite(lim) else -1.0
                for v, lim in pairs]

    def describe(self) -> str:
        parts = [f"{self.board} (RAM {self.board_ram_kb:g} KB, flash {self.board_flash_kb:g} KB)"]
        for name, v, unit in (("RAM", self.max_ram_kb, "KB"), ("flash", self.max_flash_kb, "KB"),
                              ("latency", self.max_latency_ms, "ms")):
            if v is not None:
                parts.append(f"{name} <= {v:g} {unit}")
        return ", ".join(parts)


class Pruned(Exception):
    """Raised inside training when the schedule prunes a trial."""

    def __init__(self, epoch: int, accuracy: float) -> None:
        super().__init__(f"pruned at epoch {epoch} (validation accuracy {accuracy:.4f})")
        self.epoch, self.accuracy = epoch, accuracy


def rungs(epochs: int, min_epochs: int, reduction: int) -> list[int]:
    """Epochs at which trials are compared: epochs / reduction**k, k >= 1, >= min_epochs."""
    out, e = [], epochs // reduction
    while e >= min_epochs:
        out.append(e)
        e //= reduction
    return sorted(set(out))


def _figures(res: dict) -> dict:
    """Latency (ms), RAM and flash (KB) of one decision (DSP + model) from a profile."""
    p = res.get("pipeline", res)
    if p.get("latency_ms") is None:
        raise TuneError(f"the emulator gave no latency on {res.get('board')}")
    return {"latency_ms": round(float(p["latency_ms"]), 4),
            "ram_kb": round(p["ram_bytes"] / 1024, 3),
            "flash_kb": round(p["flash_bytes"] / 1024, 3)}


def scratch_project(base: Project, cfg: ProjectConfig, scratch: Path, cache: Path) -> Project:
    """A throw-away project in ``scratch`` with ``cfg`` and the base's samples (absolute
    sources), sharing the feature cache ``cache`` with the other trials."""
    (scratch / "dataset").mkdir(parents=True, exist_ok=True)
    ds = base.dataset
    samples = [s.with_(source=str(ds.resolve(s.source).resolve()))
               for s in DatasetIndex.load(base.index_path)]
    DatasetIndex(samples).save(scratch / "dataset" / "index.csv")
    (scratch / ".kiloml").mkdir(exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    link = scratch / ".kiloml" / "cache"
    if not link.exists():
        os.symlink(os.path.relpath(cache, link.parent), link)
    doc = cfg.model_dump(mode="json")
    doc.pop("source", None)  # the index is the data: nothing to import
    atomic_write_text(scratch / CONFIG_NAME, to_toml(doc, "# a kiloml tune trial"))
    return Project.load(scratch)


def run_trial(base: Project, params: dict, scratch: Path, cache: Path, limits: Limits,
              epochs: Optional[int], on_rung: Optional[Callable[[int, float, dict], None]] = None,
              rung_epochs: tuple[int, ...] = (), progress: bool = False) -> dict:
    """One trial, deterministic given ``params``: a record with ``state`` (complete,
    infeasible, pruned or failed), the figures, accuracies and constraint values.
    ``on_rung(epoch, val_acc, pre_figures)`` raises Pruned to stop a hopeless trial."""
    t0 = time.time()
    rec: dict[str, Any] = {"params": params, "state": "failed"}
    try:
        doc = _base_doc(base.config)
        for k, v in params.items():
            _set(doc, k, v)
        cfg = trial_config(base.config, doc)
        proj = scratch_project(base, cfg, scratch, cache)
        recipe = resolve_settings(proj, epochs=epochs)
        prep = prepare(proj, recipe)
        # the untrained model's weights set its calibration and hence (through data-dependent
        # kernel paths) its measured latency: seeded, so a trial measures the same in any
        # process (a Ray worker, a resumed study) whatever ran before it
        torch.manual_seed(recipe.seed)
        model = build_model(prep.arch, prep.feature_shape, len(prep.labels), **prep.params)
        _, graph = quantize(prep, model)  # untrained: the trained model's sizes
        pre = _measure(proj, graph, limits.board)
        rec.update(pre_figures=pre, constraints=limits.violations(pre))
        if max(rec["constraints"]) > 0:
            rec.update(pre, state="infeasible", accuracy=None, fits=False)
            return rec

        def hook(epoch: int, row: dict) -> None:
            if on_rung is not None and epoch + 1 in rung_epochs and "val_acc" in row:
                on_rung(epoch + 1, float(row["val_acc"]), pre)

        try:
            model, res = train_float(prep, progress=progress, on_validated=hook)
        except Pruned as p:
            rec.update(pre, state="pruned", accuracy=None, epochs_run=p.epoch,
                       pruned_accuracy=p.accuracy)
            return rec
        net, graph = quantize(prep, model)
        if recipe.qat_epochs:
            net, _ = qat(prep, net, recipe.qat_epochs, progress=progress)
            graph = to_graph(net)
        val = prep.val if len(prep.val.x) else prep.train
        acc = report(prep, predict_int8(prep, graph, val.x), val)["accuracy"]
        fig = _measure(proj, graph, limits.board)
        rec.update(fig, state="complete", accuracy=round(float(acc), 5),
                   float_accuracy=round(float(res.best_metric), 5),
                   epochs_run=res.epochs_run, constraints=limits.violations(fig))
        rec["fits"] = max(rec["constraints"]) <= 0
    except KilomlError as e:
        rec["error"] = str(e)
    except ValueError as e:  # a model that does not fit its input
        rec["error"] = str(e).splitlines()[0]
    finally:
        rec["seconds"] = round(time.time() - t0, 2)
    return rec


def _measure(proj: Project, graph, board: str) -> dict:
    """The real compile + emulator profile of ``graph`` and the project's DSP block."""
    path = proj.root / "model" / "model.tflite"
    path.parent.mkdir(exist_ok=True)
    save_tflite(graph, path)
    return _figures(profile(project=proj, board=board)[0])


# ---------------------------------------------------------------- the study


@dataclass
class Search:
    """What defines a study: the project, space, limits and schedule."""

    project: Project
    dims: list[Dimension]
    limits: Limits
    epochs: int
    rung_epochs: tuple[int, ...]
    reduction: int
    seed: int
    name: str = ""
    folder: Path = field(default_factory=Path)

    @property
    def db(self) -> Path:
        return self.project.root / TUNE_DIR / DB_NAME

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.db.resolve()}"


def make_search(project: Project | str | Path | None, board: Optional[str] = None,
                max_ram_kb: Optional[float] = None, max_flash_kb: Optional[float] = None,
                max_latency_ms: Optional[float] = None) -> Search:
    p = as_project(project)
    t = p.config.tune
    boards = load_boards()
    bid = board or p.config.board.name
    if bid not in boards:
        raise UsageError(f"unknown board {bid!r} (known: {', '.join(boards)})")
    for name, v in (("--max-ram-kb", max_ram_kb), ("--max-flash-kb", max_flash_kb),
                    ("--max-latency-ms", max_latency_ms)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise UsageError(f"{name} must be a positive number, not {v:g}")
    b = boards[bid]
    limits = Limits(bid, max_ram_kb if max_ram_kb is not None else t.max_ram_kb,
                    max_flash_kb if max_flash_kb is not None else t.max_flash_kb,
                    max_latency_ms if max_latency_ms is not None else t.max_latency_ms,
                    b.ram_bytes / 1024, b.flash_bytes / 1024)
    epochs = t.epochs or resolve_settings(p).epochs
    s = Search(p, search_space(p), limits, epochs,
               tuple(rungs(epochs, t.min_epochs, t.reduction)), t.reduction, t.seed)
    keyed = _base_doc(p.config)  # without the searched settings: --apply keeps the study
    for d in s.dims:
        parts = d.key.split(".")
        parent = _get(keyed, ".".join(parts[:-1]))
        if isinstance(parent, dict):
            parent.pop(parts[-1], None)
    s.name = "kiloml-" + content_hash(
        keyed, [(d.key, d.choices, d.range.model_dump() if d.range else None)
                              for d in s.dims],
        limits.__dict__, epochs, s.rung_epochs, s.reduction, s.seed,
        DatasetIndex.load(p.index_path).to_csv())[:12]
    s.folder = p.root / TUNE_DIR / s.name
    return s


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(seed: int):
    optuna = _optuna()
    with warnings.catch_warnings():  # multivariate TPE is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)


def open_study(s: Search, create: bool = True):
    optuna = _optuna()
    sampler = _sampler(s.seed)
    if not create:
        try:
            return optuna.load_study(study_name=s.name, storage=s.storage, sampler=sampler)
        except KeyError:
            raise TuneError(f"{s.db}: no tuning study for these settings (board, limits, "
                            "space, schedule; run `kiloml tune` with them first)") from None
    s.db.parent.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=s.name, storage=s.storage, sampler=sampler,
                               load_if_exists=True, directions=["maximize", "minimize",
                                                                "minimize", "minimize"])


CONSTRAINTS = ("board_ram", "board_flash", "max_ram", "max_flash", "max_latency")


def _record_attrs(trial, rec: dict) -> None:
    for k, v in rec.items():
        trial.set_user_attr(k, v)
    for k, v in zip(CONSTRAINTS, rec.get("constraints", [])):
        trial.set_constraint(k, v)


def _rung_pruner(study, s: Search, number: int) -> Callable[[int, float, dict], None]:
    """Successive halving among the trials that cost no more (see the module doc).
    ``study``: anything with Optuna's ``user_attrs`` and ``set_user_attr`` (the rungs
    reached so far are stored there as ``rung<epoch>-trial<number>``)."""

    def on_rung(epoch: int, acc: float, pre: dict) -> None:
        study.set_user_attr(f"rung{epoch}-trial{number}", [acc, pre])
        others = [v for k, v in study.user_attrs.items()
                  if k.startswith(f"rung{epoch}-") and k != f"rung{epoch}-trial{number}"]
        cheaper = [a for a, f in others if all(f[o] <= pre[o] for o in OBJECTIVES[1:])]
        keep = math.ceil((len(cheaper) + 1) / s.reduction)
        if len(cheaper) + 1 >= s.reduction and sum(a > acc for a in cheaper) >= keep:
            raise Pruned(epoch, acc)

    return on_rung


def tune(project: Project | str | Path | None = None, board: Optional[str] = None,
         max_ram_kb: Optional[float] = None, max_flash_kb: Optional[float] = None,
         max_latency_ms: Optional[float] = None, trials: Optional[int] = None,
         timeout_min: Optional[float] = None,
         log_fn: Callable[[str], None] = lambda m: None, backend: str = "local",
         address: Optional[str] = None) -> dict:
    """Run (or resume) the search up to ``trials`` trials in all; returns ``summary``.
    ``backend="ray"`` runs the same trials as Ray Tune trials (kiloml.workflow.tune_ray):
    on a private local Ray instance, or on the cluster at ``address``."""
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend must be local or ray, not {backend!r}")
    if address is not None and backend != "ray":
        raise UsageError("--address is the Ray cluster's: give it with --backend ray")
    if backend == "ray":
        from kiloml.workflow.tune_ray import check_address

        check_address(address)  # before any work: an unreachable cluster is one line
    s = make_search(project, board, max_ram_kb, max_flash_kb, max_latency_ms)
    total = trials if trials is not None else s.project.config.tune.trials
    if total < 1:
        raise UsageError("--trials must be at least 1")
    if timeout_min is not None and timeout_min <= 0:
        raise UsageError("--timeout must be positive (minutes)")
    study = start_study(s, log_fn)
    stop = Stopper(study, total, timeout_min, log_fn)
    if backend == "ray":
        from kiloml.workflow.tune_ray import run_on_ray

        run_on_ray(s, study, stop, address, log_fn)
    else:
        while not stop():
            trial, params, rec = next_trial(s, study)
            if rec is None:
                rec = run_trial(s.project, params, s.folder / f"trial-{trial.number}",
                                s.folder / "cache", s.limits, s.epochs,
                                _rung_pruner(study, s, trial.number), s.rung_epochs)
            _tell(study, trial, rec)
            log_fn(f"trial {trial.number}: {_one_line(rec)}")
    return summary(s, study)


def start_study(s: Search, log_fn: Callable[[str], None]):
    """Open (or resume) the study: an interrupted trial's values run again, the project's own
    settings are measured once as the reference."""
    TS = _optuna().trial.TrialState
    study = open_study(s)
    _remember(s)
    for t in study.get_trials(deepcopy=False, states=(TS.RUNNING, TS.WAITING)):
        if t.state == TS.RUNNING:  # interrupted: run the same values again
            study.tell(t.number, state=TS.FAIL)
            study.enqueue_trial(t.params)
            log_fn(f"trial {t.number} was interrupted: it runs again")
    if "defaults" not in study.user_attrs:
        study.set_user_attr("defaults", _defaults(s, log_fn))
    return study


class Stopper:
    """True once the study holds ``total`` finished trials or ``timeout_min`` has passed."""

    def __init__(self, study, total: int, timeout_min: Optional[float],
                 log_fn: Callable[[str], None]) -> None:
        self.study, self.total, self.timeout_min, self.log_fn = study, total, timeout_min, log_fn
        self.t0 = time.time()

    def __call__(self) -> bool:
        TS = _optuna().trial.TrialState
        done = sum("state" in t.user_attrs for t in  # not the interrupted ones
                   self.study.get_trials(deepcopy=False,
                                         states=(TS.COMPLETE, TS.PRUNED, TS.FAIL)))
        if done >= self.total:
            return True
        if self.timeout_min is not None and time.time() - self.t0 > self.timeout_min * 60:
            self.log_fn(f"--timeout: stopped after {done} of {self.total} trials")
            return True
        return False


def next_trial(s: Search, study):
    """The sampler's next trial: ``(trial, params, record)``, the record already known when
    these values were tried before (trials are deterministic given their values: reused,
    not re-trained), else None (the caller runs the trial)."""
    TS = _optuna().trial.TrialState
    # the sampler's random state from (seed, trial number), not from the trials this process
    # happened to ask before: a resumed study (or another backend) proposes what an
    # uninterrupted one would
    study.sampler = _sampler(s.seed * 100_003 + len(study.get_trials(deepcopy=False)))
    trial = study.ask()
    params = {d.key: d.suggest(trial) for d in s.dims}
    same = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED))
            if t.user_attrs.get("params") == params and "state" in t.user_attrs]
    if same:
        return trial, params, dict(same[0].user_attrs, same_as=same[0].number, seconds=0.0)
    return trial, params, None


def _defaults(s: Search, log_fn: Callable[[str], None]) -> dict:
    """The project's own settings, trained and measured once for every study of the same
    project and schedule (within the board's limits only), then held to this search's."""
    key = content_hash(_base_doc(s.project.config), s.epochs, s.limits.board,
                       DatasetIndex.load(s.project.index_path).to_csv())[:12]
    path = s.db.parent / f"defaults-{key}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        log_fn("the project's own settings (the reference)")
        board_only = Limits(s.limits.board, board_ram_kb=s.limits.board_ram_kb,
                            board_flash_kb=s.limits.board_flash_kb)
        rec = run_trial(s.project, {}, s.db.parent / f"defaults-{key}", s.folder / "cache",
                        board_only, s.epochs)
        atomic_write_text(path, json.dumps(rec))
    if "ram_kb" in rec:
        rec["constraints"] = s.limits.violations(rec)
        rec["fits"] = max(rec["constraints"]) <= 0
    return rec


def _tell(study, trial, rec: dict) -> None:
    TS = _optuna().trial.TrialState
    _record_attrs(trial, rec)
    if rec["state"] in ("complete", "infeasible"):
        acc = rec["accuracy"] if rec["accuracy"] is not None else 0.0
        study.tell(trial, [acc, rec["latency_ms"], rec["ram_kb"], rec["flash_kb"]])
    else:
        study.tell(trial, state=TS.PRUNED if rec["state"] == "pruned" else TS.FAIL)


def _one_line(rec: dict) -> str:
    if rec["state"] == "failed":
        return f"failed: {rec.get('error')}"
    acc = "n/a" if rec.get("accuracy") is None else f"{100 * rec['accuracy']:.2f} %"
    return (f"{rec['state']}, accuracy {acc}, {rec['latency_ms']:.2f} ms, "
            f"RAM {rec['ram_kb']:.1f} KB, flash {rec['flash_kb']:.1f} KB")


# ---------------------------------------------------------------- results


def pareto_front(rows: list[dict]) -> list[int]:
    """Numbers of the feasible, trained trials no other such trial dominates (at least as
    accurate, fast, small in RAM and flash, and better in one)."""
    ok = [r for r in rows if r["state"] == "complete" and r.get("fits")]

    def key(r):
        return (-r["accuracy"], r["latency_ms"], r["ram_kb"], r["flash_kb"])

    front = []
    for r in ok:
        kr = key(r)
        if not any(all(a <= b for a, b in zip(key(o), kr)) and key(o) != kr for o in ok):
            front.append(r["number"])
    return front


def summary(s: Search, study) -> dict:
    """Trials, the Pareto front, the defaults and whether the front dominates them."""
    TS = _optuna().trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED, TS.FAIL)):
        rec = dict(t.user_attrs)
        if "state" not in rec:  # an interrupted trial, re-run under another number
            continue
        rec.pop("pre_figures", None)
        rec["number"] = t.number
        rows.append(rec)
    front = pareto_front(rows)
    for r in rows:
        r["pareto"] = r["number"] in front
    d = study.user_attrs.get("defaults")
    better = []
    if d and d.get("state") == "complete":
        better = [r["number"] for r in rows if r["pareto"] and r["accuracy"] > d["accuracy"]
                  and r["latency_ms"] <= d["latency_ms"] and r["ram_kb"] <= d["ram_kb"]]
    out = {"project": str(s.project.root), "study": s.name, "storage": str(s.db),
           "board": s.limits.board, "limits": s.limits.describe(), "epochs": s.epochs,
           "rungs": list(s.rung_epochs), "space": {d.key: d.choices if d.choices is not None
                                                   else d.range.model_dump() for d in s.dims},
           "defaults": d, "trials": rows, "pareto": front,
           "better_than_defaults": better, "error": None}
    if rows and not front:
        ok = [r for r in rows if r["state"] in ("complete", "infeasible", "pruned")
              and "ram_kb" in r]
        if ok:
            small = {k: min(r[k] for r in ok) for k in OBJECTIVES[1:]}
            out["error"] = (f"no trial meets the limits ({s.limits.describe()}): the smallest "
                            f"trials need {small['ram_kb']:.1f} KB RAM, {small['flash_kb']:.1f} "
                            f"KB flash, {small['latency_ms']:.2f} ms")
        else:
            out["error"] = f"every trial failed (first: {rows[0].get('error')})"
    return out


LATEST = "latest.json"


def _remember(s: Search) -> None:
    """The last search run, for ``--show`` and ``--apply`` without limits."""
    lim = {k: getattr(s.limits, k) for k in ("max_ram_kb", "max_flash_kb", "max_latency_ms")}
    atomic_write_text(s.db.with_name(LATEST), json.dumps({"board": s.limits.board, **lim}))


def _stored_search(project, board: Optional[str], limits: dict) -> Search:
    """The study of these limits; with none given, that of the last ``kiloml tune``."""
    p = as_project(project)
    last = p.root / TUNE_DIR / LATEST
    if board is None and all(v is None for v in limits.values()) and last.is_file():
        try:
            stored = json.loads(last.read_text())
            board, limits = stored.pop("board"), stored
        except (ValueError, KeyError, AttributeError):
            pass  # unreadable: the project's own settings
    s = make_search(p, board, **limits)
    if not s.db.is_file():
        raise TuneError(f"{s.db}: no tuning study yet (run `kiloml tune` first)")
    return s


def load_summary(project: Project | str | Path | None = None, board: Optional[str] = None,
                 **limits) -> dict:
    s = _stored_search(project, board, limits)
    return summary(s, open_study(s, create=False))


def apply_trial(number: int, project: Project | str | Path | None = None,
                board: Optional[str] = None, **limits) -> dict:
    """Write trial ``number``'s settings into kiloml.toml (atomically) and evaluate its model
    on the test split: the only test-split figure of the search."""
    s = _stored_search(project, board, limits)
    study = open_study(s, create=False)
    rows = {r["number"]: r for r in summary(s, study)["trials"]}
    if number not in rows:
        raise UsageError(f"no trial {number} in study {s.name} (have: "
                         f"{', '.join(map(str, sorted(rows))) or 'none'})")
    rec = rows[number]
    if rec["state"] != "complete":
        raise TuneError(f"trial {number} is {rec['state']}: only a trained trial can be "
                        "applied")
    p = s.project
    doc = _base_doc(p.config)
    for k, v in rec["params"].items():
        _set(doc, k, v)
    p.config = trial_config(p.config, doc)
    test_acc = _test_accuracy(s.folder / f"trial-{rec.get('same_as', number)}", s.epochs)
    p.save()
    return {"project": str(p.root), "trial": number, "params": rec["params"],
            "validation_accuracy": rec["accuracy"], "test_accuracy": test_acc,
            "latency_ms": rec["latency_ms"], "ram_kb": rec["ram_kb"],
            "flash_kb": rec["flash_kb"], "config": str(p.config_path)}


def _test_accuracy(scratch: Path, epochs: int) -> Optional[float]:
    """The trial's deployed int8 model on the test split (None without test windows)."""
    proj = Project.load(scratch)
    prep = prepare(proj, resolve_settings(proj, epochs=epochs))
    if not len(prep.test.x):
        return None
    graph = read_tflite(proj.root / "model" / "model.tflite")
    return round(float(report(prep, predict_int8(prep, graph, prep.test.x),
                              prep.test)["accuracy"]), 5)


__all__ = ["DEFAULT_SPACES", "Dimension", "Limits", "Search", "TuneError", "apply_trial",
           "load_summary", "make_search", "pareto_front", "run_trial", "rungs", "search_space",
           "summary", "tune"]
