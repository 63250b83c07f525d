"""The project directory and its ``kiloml.toml`` (validated with pydantic).

A project directory holds::

    kiloml.toml          project settings: data, dsp, model, board (this schema)
    dataset/index.csv    the dataset index (see kiloml.data.index)

``kiloml init DIR --task T`` writes the task's defaults; later steps (training, deployment)
read and fill in their sections. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiloml import __version__
from kiloml.data.settings import AugmentSettings as AugmentSection
from kiloml.data.settings import DataSettings as DataSection
from kiloml.errors import ProjectError
from kiloml.fileio import atomic_write_text

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_NAME = "kiloml.toml"
INDEX_REL = "dataset/index.csv"
TASKS = ("kws", "motion", "vibration", "anomaly", "custom")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSection(_Strict):
    name: str = Field(min_length=1, max_length=64)
    task: Literal["kws", "motion", "vibration", "anomaly", "custom"]
    kiloml_version: str = __version__

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("use letters, digits, '_', '.', '-' (starting with a letter or digit)")
        return v


class DSPSection(_Strict):
    """The feature block: a preset, or a block name plus parameters (see kiloml.dsp)."""

    block: Literal["mfcc", "mfe", "spectrogram", "spectral", "raw"]
    preset: Optional[str] = None
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check(self) -> "DSPSection":
        from kiloml.dsp import make_block

        try:
            make_block(self.block, preset=self.preset, params=self.params)
        except Exception as e:  # DSPError: one line
            raise ValueError(str(e)) from None
        return self


class ModelSection(_Strict):
    arch: str = Field(min_length=1)
    params: dict[str, Any] = {}


class TrainSection(_Strict):
    """Training recipe for ``kiloml train``; unset values take the task's defaults
    (kiloml.train.pipeline.TASK_DEFAULTS)."""

    epochs: Optional[int] = Field(None, ge=1)
    batch_size: Optional[int] = Field(None, ge=2)
    lr: Optional[float] = Field(None, gt=0)
    weight_decay: Optional[float] = Field(None, ge=0)
    label_smoothing: Optional[float] = Field(None, ge=0, lt=1)
    patience: Optional[int] = Field(None, ge=0, description="early stopping; 0 = off")
    ema: Optional[float] = Field(None, ge=0, lt=1, description="weight averaging decay; 0 = off")
    mixup: Optional[float] = Field(None, ge=0, description="mixup Beta(a, a); 0 = off")
    seed: int = 0
    augment_banks: Optional[int] = Field(None, ge=1, description="augmented copies of the "
                                         "training set (audio)")
    calibration: Optional[Literal["minmax", "percentile", "mse"]] = None
    qat_epochs: Optional[int] = Field(None, ge=0, description="quantization-aware fine-tuning")
    normalize: Optional[Literal["none", "global", "feature"]] = None
    teacher: Optional[str] = Field(None, description="int8 .tflite teacher for distillation")
    teacher_labels: Optional[list[str]] = None
    teacher_sees: Optional[Literal["clean", "augmented", "batch"]] = Field(
        None, description="teacher logits from the un-augmented windows, the augmented ones, "
                          "or every training batch as the student sees it")
    distill_alpha: Optional[float] = Field(None, ge=0, le=1)
    temperature: Optional[float] = Field(None, gt=0)
    distill_epochs: Optional[int] = Field(None, ge=1, description="epochs when a teacher "
                                          "labels the data (default: epochs)")
    distill_mixup: Optional[float] = Field(None, ge=0, description="mixup when distilling "
                                           "(default: mixup)")
    normal_labels: Optional[list[str]] = Field(None, description="anomaly models: the labels "
                                               "that count as normal")


class BoardSection(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProjectConfig(_Strict):
    project: ProjectSection
    data: DataSection
    dsp: DSPSection
    model: ModelSection
    board: BoardSection
    train: TrainSection = TrainSection()


def task_defaults(task: str, name: str) -> ProjectConfig:
    """The starting kiloml.toml of a task (later steps refine it)."""
    if task not in TASKS:
        raise ProjectError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    p = ProjectSection(name=name, task=task)
    if task == "kws":
        return ProjectConfig(
            project=p,
            data=DataSection(sample_rate=16000, channels=1, window_ms=1000, stride_ms=1000,
                             augment=AugmentSection(noise_probability=0.8, noise_snr_db=(0, 20),
                                                    time_shift_ms=100, spec_freq_masks=1,
                                                    spec_freq_width=2, spec_time_masks=1,
                                                    spec_time_width=5)),
            dsp=DSPSection(block="mfcc", preset="mlperf-kws"),
            model=ModelSection(arch="ds-cnn"), board=BoardSection(name="nano33ble"))
    if task == "motion":
        return ProjectConfig(
            project=p,
            data=DataSection(sample_rate=None, channels=3, window_ms=2000, stride_ms=500,
                             augment=AugmentSection(jitter_std=0.01, scale_range=0.1,
                                                    rotate_deg=15)),
            dsp=DSPSection(block="spectral", params={"sample_rate": 100.0}),
            model=ModelSection(arch="dense"), board=BoardSection(name="nano33ble"))
    if task == "vibration":
        return ProjectConfig(
            project=p,
            data=DataSection(sample_rate=12000, channels=1, window_ms=1024 / 12, stride_ms=1024 / 12,
                             split_by="auto"),
            dsp=DSPSection(block="spectral", params={"sample_rate": 12000.0, "fft_length": 1024,
                                                     "band_edges_hz": [0, 500, 1000, 2000,
                                                                       3000, 4000, 6000]}),
            model=ModelSection(arch="dense"), board=BoardSection(name="nucleo-l4r5zi"))
    if task == "anomaly":
        return ProjectConfig(
            project=p,
            data=DataSection(sample_rate=16000, channels=1, window_ms=1000, stride_ms=500),
            dsp=DSPSection(block="mfe", params={"sample_rate": 16000.0}),
            model=ModelSection(arch="autoencoder"), board=BoardSection(name="nano33ble"))
    return ProjectConfig(
        project=p, data=DataSection(window_ms=1000, stride_ms=1000),
        dsp=DSPSection(block="raw"), model=ModelSection(arch="dense"),
        board=BoardSection(name="nano33ble"))


# ---------------------------------------------------------------- TOML writing


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ProjectError(f"cannot write non-finite number {v} to kiloml.toml")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ProjectError(f"cannot write {type(v).__name__} to kiloml.toml")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def to_toml(doc: dict, header: str = "") -> str:
    """A small TOML writer for our schema: scalars, arrays and nested tables (None omitted)."""
    out: list[str] = [header] if header else []

    def table(prefix: str, d: dict) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if prefix and (scalars or not subs):
            out.append(f"\n[{prefix}]")
        for k, v in scalars:
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    table("", doc)
    return "\n".join(out).lstrip("\n") + "\n"


# ---------------------------------------------------------------- project directory


def _format_validation(path: Path, e: ValidationError) -> str:
    first = e.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{path}: {loc}: {msg}{more}"


class Project:
    """A loaded project: its directory and validated configuration."""

    def __init__(self, root: Path, config: ProjectConfig) -> None:
        self.root = root
        self.config = config

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_REL

    @classmethod
    def load(cls, root: str | Path = ".") -> "Project":
        root = Path(root)
        path = root / CONFIG_NAME
        if not path.is_file():
            raise ProjectError(f"{path}: not a kiloml project (no {CONFIG_NAME}; "
                               "create one with `kiloml init DIR --task ...` or pass --project)")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ProjectError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise ProjectError(f"{path}: invalid TOML: {e}") from None
        try:
            cfg = ProjectConfig.model_validate(doc)
        except ValidationError as e:
            raise ProjectError(_format_validation(path, e)) from None
        return cls(root, cfg)

    def save(self) -> None:
        doc = self.config.model_dump(mode="json")
        atomic_write_text(self.config_path, to_toml(
            doc, header=f"# kiloml project (written by kiloml {__version__}); see kiloml.project"))


def init_project(root: str | Path, task: str, name: str | None = None,
                 force: bool = False) -> Project:
    """Create ``root`` with kiloml.toml (the task's defaults) and an empty dataset index."""
    from kiloml.data.index import DatasetIndex

    root = Path(root)
    if task not in TASKS:
        raise ProjectError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root}: exists and is not a directory")
    if (root / CONFIG_NAME).exists() and not force:
        raise ProjectError(f"{root / CONFIG_NAME}: already exists (use --force to overwrite)")
    name = name or (root.resolve().name or "project")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("_.-") or "project"
    proj = Project(root, task_defaults(task, name))
    root.mkdir(parents=True, exist_ok=True)
    proj.save()
    if force or not proj.index_path.exists():
        DatasetIndex([]).save(proj.index_path)
    return proj
