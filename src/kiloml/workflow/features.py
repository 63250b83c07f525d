"""From a project's dataset index to model-ready feature arrays, with augmentation and a cache.

``FeatureData`` for one split = the project's windows (kiloml.data.windowing) run through the
project's DSP block (kiloml.dsp). When the block outputs int8 (a preset with
``output_scale``, e.g. ``mlperf-kws``) the features are those int8 values dequantized, and the
model's input quantization is fixed to the block's: training sees exactly what the device
feeds the model.

Augmented training epochs: audio augmentation happens before the DSP block, so it is
expensive; ``AugmentedBanks`` computes ``banks`` augmented copies of the training set once
(seeded), caches them on disk and serves bank ``epoch % banks`` per epoch (SpecAugment masks
are drawn fresh every epoch on top). Motion augmentation is cheap and drawn per epoch.
With ``stream_negatives`` (audio), every bank is the training windows followed by the same
number of stream-like negative windows (kiloml.train.augment.stream_negatives), whose labels
``AugmentedBanks.extra_y`` are the same for every bank.

Cache: ``<project>/.kiloml/cache/*.npz`` (kiloml.workflow.cache), keyed by a hash of the
dataset index, the data, DSP and augmentation settings and the seed; delete the folder to
recompute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kiloml.data.index import DatasetIndex
from kiloml.data.loader import SourceCache
from kiloml.data.windowing import load_windows
from kiloml.dsp import block_class, make_block
from kiloml.dsp.apply import apply_block, block_quant
from kiloml.errors import DataError, ProjectError
from kiloml.train import augment as A
from kiloml.workflow.cache import cache_path, content_hash, load_arrays, save_arrays
from kiloml.workflow.project import Project, block_spec

__all__ = ["FeatureData", "AugmentedBanks", "SensorView", "apply_block", "block_quant",
           "class_list", "dsp_block", "fingerprint", "load_split", "noise_clips", "view_block"]


@dataclass
class FeatureData:
    x: np.ndarray                       # (N, *feature_shape) float32
    y: np.ndarray                       # (N,) int64 class ids (-1: label not in the class list)
    labels: list[str]                   # the class list
    groups: list[str] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


def dsp_block(project: Project):
    """The project's DSP block (kiloml.dsp) from its [dsp] section."""
    c = project.config
    if c.data.sample_rate is None and \
            "sample_rate" in block_class(c.dsp.block).Params.model_fields:
        raise ProjectError(f"{project.config_path}: data.sample_rate is not set (import with "
                           "--rate HZ, or set it in [data]): the DSP block needs the rate")
    block, preset, params = block_spec(c.data, c.dsp)
    return make_block(block, preset=preset, params=params)


@dataclass(frozen=True)
class SensorView:
    """One sensor of a multi-sensor project, for comparing it with the fusion (``kiloml
    optimize``'s ``sensors`` family): ``only`` is that sensor's channels through its own
    block (its ``[data.sensors.dsp]`` block, else the project's ``[dsp]`` block on its axes);
    ``missing`` is every channel through the project's block with that sensor's zeroed (what
    the deployed ``_classify_sensors`` does for a NULL buffer)."""

    sensor: str
    mode: str = "only"

    def channels(self, project: Project) -> tuple[int, int]:
        ch = project.config.data.sensor_channels()
        if self.sensor not in ch:
            raise ProjectError(f"{project.config_path}: no sensor {self.sensor!r} "
                               f"(data.sensors: {', '.join(ch) or 'none'})")
        return ch[self.sensor]

    def block(self, project: Project):
        """The block the view's features come from."""
        full = dsp_block(project)
        if self.mode == "missing":
            return full
        parts = getattr(full, "parts", None)
        if parts:
            if full.decimate[self.sensor] > 1:   # at its own rate: the composite decimates
                from kiloml.dsp import make_block

                part = next(p for p in full.params.sensors if p.name == self.sensor)
                return make_block("sensors", params={"sensors": [part.model_dump()]})
            return next(b for nm, _, _, b in parts if nm == self.sensor)
        return full

    def frames(self, project: Project, frames: np.ndarray) -> np.ndarray:
        """(N, window, channels) windows of the project -> the view's windows."""
        a, e = self.channels(project)
        if self.mode == "only":
            return np.ascontiguousarray(frames[..., a:e])
        out = frames.copy()
        out[..., a:e] = 0.0
        return out


def view_block(project: Project, view: "SensorView | None"):
    return dsp_block(project) if view is None else view.block(project)


def fingerprint(project: Project) -> list:
    """What every feature array of the project depends on: the index, data and DSP settings."""
    cfg = project.config
    return [project.index_path.read_bytes(), cfg.data.model_dump(mode="json"),
            cfg.dsp.model_dump(mode="json")]


def class_list(project) -> list[str]:
    """Sorted labels of the project's samples."""
    labels = sorted({s.label for s in DatasetIndex.load(project.index_path).of_role("sample")})
    if not labels:
        raise DataError(f"{project.index_path}: no samples; import data first")
    return labels


def load_split(project, split: str, labels: list[str] | None = None,
               samples=None, use_cache: bool = True,
               view: SensorView | None = None) -> FeatureData:
    """Features of one split (``train``, ``validation``, ``test``) without augmentation;
    ``view``: one sensor's (SensorView) instead of the project's."""
    labels = labels or class_list(project)
    vkey = [] if view is None else [view.sensor, view.mode]
    key = content_hash(*fingerprint(project), split, labels, *vkey) if samples is None \
        else None
    path = cache_path(project.root, f"features-{split}", key) if key else None
    cached = load_arrays(path) if use_cache else None
    if cached is not None:
        return FeatureData(cached["x"], cached["y"], labels, list(cached["groups"]),
                           list(cached["ids"]))
    frames, wins = load_windows(project.dataset, project.config.data,
                                samples=samples, split=split)
    block = view_block(project, view)
    if view is not None and len(wins):
        frames = view.frames(project, frames)
    x = apply_block(block, frames) if len(wins) else np.zeros((0,), np.float32)
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index.get(w.label, -1) for w in wins], np.int64)
    groups = [w.group for w in wins]
    ids = [w.sample_id for w in wins]
    if path is not None and len(wins):
        save_arrays(path, x=x, y=y, groups=np.array(groups, dtype=str),
                     ids=np.array(ids, dtype=str))
    return FeatureData(x, y, labels, groups, ids)


def noise_clips(project) -> list[np.ndarray]:
    """The project's background-noise clips (role ``noise``), mono float."""
    cache = SourceCache(project.dataset)
    return [cache.load(s)[:, 0].astype(np.float64)
            for s in DatasetIndex.load(project.index_path).of_role("noise")]


class AugmentedBanks:
    """``banks`` augmented copies of the training split's features (see the module doc)."""

    def __init__(self, project, labels: list[str], banks: int = 8, seed: int = 0,
                 progress=None, view: SensorView | None = None,
                 train_y: np.ndarray | None = None) -> None:
        self.project = project
        self.labels = labels
        self.banks = banks
        self.seed = seed
        self.view = view
        self.aug = project.config.data.augment
        self.block = view_block(project, view)
        self.audio = self.block.audio and A.audio_enabled(self.aug)
        self.motion = (not self.block.audio) and A.motion_enabled(self.aug)
        self.progress = progress
        self.train_y = None if train_y is None else np.asarray(train_y)
        self.extra_y, self._neg = self._negatives()
        self._frames = None
        self._wins = None
        self._noise = None
        self._mem: dict[int, np.ndarray] = {}
        self.key = content_hash(*fingerprint(project), "train", labels, seed,
                                self.aug.model_dump(mode="json", exclude=None
                                                    if self.aug.stream_negatives
                                                    else {"stream_negatives"}),
                                *([] if view is None else [view.sensor, view.mode]),
                                *(["negatives", len(self.extra_y)] if len(self.extra_y)
                                  else []))

    @property
    def enabled(self) -> bool:
        return self.audio or self.motion

    def _negatives(self):
        """Label ids of the extra stream-negative windows of every bank, and what
        kiloml.train.augment.stream_negatives needs to draw them (None: no extras)."""
        frac = getattr(self.aug, "stream_negatives", 0.0)
        none = np.zeros(0, np.int64), None
        if not (frac and self.train_y is not None and len(self.train_y)):
            return none
        if not self.block.audio:
            raise ProjectError(f"{self.project.config_path}: data.augment.stream_negatives is "
                               "for audio projects (the DSP block reads a microphone)")
        from kiloml.data.stream import NON_FIRING

        def find(names):
            return next((i for i, lab in enumerate(self.labels) if lab in names), -1)

        unk = find(("_unknown_", "unknown"))
        sil = find(("_silence_", "silence"))
        if unk < 0 and sil < 0:
            raise ProjectError(f"{self.project.config_path}: data.augment.stream_negatives needs"
                               " an unknown or a silence class (_unknown_, _silence_); labels: "
                               f"{', '.join(self.labels)}")
        counts = A.stream_negative_counts(len(self.train_y), frac, unk >= 0, sil >= 0)
        n_unk, n_kw, n_sil = counts
        y = np.array([unk] * (n_unk + n_kw) + [sil] * n_sil, np.int64)
        kw = np.array([i for i, lab in enumerate(self.labels) if lab not in NON_FIRING],
                      np.int64)
        return y, (counts, unk, kw)

    def _load(self) -> None:
        if self._frames is None:
            self._frames, self._wins = load_windows(self.project.dataset,
                                                    self.project.config.data, split="train")
            if self.view is not None and len(self._wins):
                self._frames = self.view.frames(self.project, self._frames)
            if self.audio:
                self._noise = noise_clips(self.project)

    def bank(self, k: int) -> np.ndarray:
        """Features of augmented copy ``k`` (0 <= k < banks for audio; any k for motion)."""
        k = k % self.banks if self.audio else k
        if k in self._mem:
            return self._mem[k]
        path = cache_path(self.project.root, f"aug{k}", self.key) if self.audio else None
        cached = load_arrays(path)
        if cached is not None:
            x = cached["x"]
        else:
            self._load()
            rng = np.random.default_rng([self.seed, k])
            if self.audio:
                rate = float(self.project.config.data.sample_rate or 16000)
                clips = self._frames[..., 0]
                if self._neg is not None:
                    counts, unk, kw = self._neg
                    extra = A.stream_negatives(clips, self.train_y, counts, unk, kw,
                                               self._noise, rate,
                                               np.random.default_rng([self.seed, k, 11]))
                    clips = np.concatenate([clips, extra.astype(clips.dtype)])
                clips = A.augment_audio(clips, self.aug, rate, self._noise, rng)
                x = apply_block(self.block, clips[..., None])
                save_arrays(path, x=x)
            else:
                sensors = list(self.project.config.data.sensor_channels().values()) \
                    if self.view is None else None   # one sensor: nothing to drop
                frames = A.augment_motion(self._frames, self.aug, rng, sensors)
                x = apply_block(self.block, frames)
        if self.audio:
            self._mem[k] = x
        return x
