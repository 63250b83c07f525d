"""The project directory and its ``kiloml.toml`` (validated with pydantic): the workflow
floor's own object. Stages never see it; workflow steps hand them its parts (the dataset, the
data/DSP/train settings).

A project directory holds::

    kiloml.toml          project settings: data, dsp, model, board (this schema)
    dataset/index.csv    the dataset index (see kiloml.data.index)

``kiloml init DIR --task T`` writes the task's defaults; later steps (training, deployment)
read and fill in their sections. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiloml import __version__
from kiloml.data.dataset import Dataset
from kiloml.data.index import DatasetIndex
from kiloml.data.settings import AugmentSettings as AugmentSection
from kiloml.data.settings import DataSettings as DataSection
from kiloml.dsp import block_class, make_block, presets
from kiloml.errors import KilomlError, ProjectError
from kiloml.fileio import atomic_write_text
from kiloml.train.settings import TrainSettings
from kiloml.train.streaming import StreamSettings as StreamSection

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


def dsp_params(data: DataSection, dsp: DSPSection, sensor: Optional[str] = None
               ) -> dict[str, Any]:
    """The block's parameters with the one sample rate of the project: ``[data] sample_rate``
    is stated once and the block takes it; a block rate (in ``[dsp.params]`` or its preset)
    that differs from it is an error, never silently used on data of another rate."""
    params = dict(dsp.params)
    rate = data.sample_rate
    where = "data.sample_rate"
    if sensor is not None and data.sensor_decimation()[sensor] > 1:
        # a sensor at its own rate: its block runs at that rate
        rate, where = data.sensor_rate(sensor), f"sensor {sensor!r}'s rate"
    if rate is None or "sample_rate" not in block_class(dsp.block).Params.model_fields:
        return params
    stated = params.get("sample_rate")
    if stated is None and dsp.preset is not None:
        stated = presets().get(dsp.preset, (None, {}))[1].get("sample_rate")
    if stated is not None and abs(float(stated) - rate) > 1e-9 * rate:
        raise ValueError(f"the DSP block's sample_rate {float(stated):g} Hz differs from "
                         f"{where} {rate:g} Hz (state the rate once, in [data])")
    params["sample_rate"] = float(rate)
    return params


def block_spec(data: DataSection, dsp: DSPSection) -> tuple[str, Optional[str], dict[str, Any]]:
    """(block, preset, params) of the project's feature block: the ``[dsp]`` block, or, when
    a sensor declares its own (``[data.sensors.dsp]``), the per-sensor composite
    (kiloml.dsp.sensors) in which the other sensors take the ``[dsp]`` block."""
    if not any(s.dsp is not None for s in data.sensors):
        return dsp.block, dsp.preset, dsp_params(data, dsp)
    parts = []
    for s in data.sensors:
        own = s.dsp if s.dsp is not None else dsp
        if own is dsp and (dsp.preset is not None or dsp.block not in ("spectral", "raw")):
            raise ValueError(f"sensor {s.name!r} has no data.sensors.dsp table and the dsp "
                             f"block ({dsp.preset or dsp.block}) cannot run per sensor: give "
                             "it one (spectral or raw)")
        step = data.sensor_decimation()[s.name]
        params = dsp_params(data, DSPSection(block=own.block, params=own.params), s.name)
        part = {"name": s.name, "axes": len(s.axes), "block": own.block, "params": params}
        if step > 1:   # a sensor at its own rate: every step-th grid frame
            part["decimate"] = step
        parts.append(part)
    return "sensors", None, {"sensors": parts}


class ModelSection(_Strict):
    """``missing``: what the deployed model answers when a sensor is missing
    (kiloml.workflow.train.missing_policy): ``zero`` (its channels are zeros, the fused head
    answers), ``branch-head`` (intermediate fusion with ``params.aux`` > 0: the remaining
    sensor's branch classifier answers) or ``fallback`` (a dense or fusion model of several
    sensors: each sensor also gets a model of its own, trained apart and shipped in the same
    graph, which answers when it is the one remaining); unset: the default (docs/fusion.md)."""

    arch: str = Field(min_length=1)
    params: dict[str, Any] = {}
    missing: Optional[Literal["zero", "branch-head", "fallback"]] = None


BOARD_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class BoardSection(_Strict):
    """The board the project targets (compile, deploy, verify); ``compare``: more boards the
    profile step measures the same pipeline on, for choosing one."""

    name: str = Field(min_length=1, pattern=BOARD_ID)
    compare: list[Annotated[str, Field(min_length=1, pattern=BOARD_ID)]] = []


class ImportSection(_Strict):
    """Where ``kiloml run`` imports the data from (paths relative to the project folder).
    Without ``path`` the dataset is what ``kiloml data import`` put in the index."""

    path: Optional[str] = Field(None, min_length=1)
    format: str = "auto"
    label: Optional[str] = None
    label_regex: Optional[str] = None
    group_regex: Optional[str] = None
    rows: Optional[int] = Field(None, ge=1)
    variable: Optional[str] = None
    skip_bad: bool = False


class OptimizeSection(_Strict):
    """Variants ``kiloml run`` builds after training (empty: the optimize step is skipped)."""

    variants: list[Literal["float", "ptq", "qat", "pruned", "sparse", "distilled",
                           "sensors"]] = []
    prune_ratio: float = Field(0.5, ge=0, le=0.95)
    sparsity: float = Field(0.5, ge=0, le=0.95)


class DeploySection(_Strict):
    """What ``kiloml run`` deploys into build/deploy/<format> (empty: no deploy or verify
    step) and with which DSP variant (default: f32 on FPU cores, else the block's integer
    variant). ``verify``: the run checks the deployed C against training on the test split
    (at most ``verify_limit`` windows when set). ``prefer``: how the model's kernels trade
    flash for speed wherever the board's kernels offer a choice (speed, size or balanced;
    kiloml.codegen.armv7em_choice), for compile, profile and deploy alike (each verb's
    ``--prefer`` overrides it)."""

    formats: list[Literal["c", "arduino", "tflite"]] = ["c", "arduino"]
    dsp_variant: Optional[Literal["f32", "q31", "q15"]] = None
    prefer: Literal["speed", "size", "balanced"] = "balanced"
    verify: bool = True
    verify_limit: Optional[int] = Field(None, ge=1)
    # the Arduino library's library.properties (Arduino Library Specification 1.5)
    library_version: str = Field("1.0.0", pattern=r"^\d+\.\d+\.\d+$")
    author: str = Field("kiloml", min_length=1)
    url: str = Field("https://example.com/", pattern=r"^https?://\S+$",
                     description="the library's web page (Library Manager's 'More info')")


class PersonalizeSection(_Strict):
    """Opt-in on-device personalization (``[personalize]``; docs/personalization.md): the C
    package gets ``personalize/`` (head update, RAM slot, reset). ``epochs`` passes of
    per-sample SGD at learning rate ``lr`` over at most ``max_samples`` stored samples;
    ``prox_mu`` > 0 adds FedProx's proximal term."""

    epochs: int = Field(30, ge=0, le=10000)
    lr: float = Field(0.05, gt=0, le=10)
    max_samples: int = Field(64, ge=1, le=255)
    prox_mu: float = Field(0.0, ge=0, le=1000, description="FedProx's proximal weight of the "
                           "board's update (0: plain SGD)")
    biases: Literal["head", "all"] = Field("head", description='"all": also train the bias of '
                                           "the layer before the head (TinyTL style)")
    bias_lr_scale: float = Field(1.0, gt=0, le=1000, description='biases = "all": the layer '
                                 "bias's learning rate as a multiple of lr")


class TuneRange(_Strict):
    """A numeric range of the search: integers when ``low``, ``high`` (and ``step``) are
    integers, else floats; ``log`` samples on a log scale."""

    low: float | int
    high: float | int
    step: Optional[float | int] = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> "TuneRange":
        if not self.high > self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        return self

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))


TuneChoice = Annotated[list[Any], Field(min_length=1)]


class TuneSection(_Strict):
    """``kiloml tune``: the search (kiloml.workflow.tune). ``space`` maps a dotted setting of
    this file (``data.window_ms``, ``dsp.params.fft_length``, ``model.params.hidden``,
    ``train.calibration``) to a list of choices or a range; unset: the task's default space.
    Limits beyond the board's own RAM and flash (``--max-*`` options override them)."""

    trials: int = Field(40, ge=1, le=10000)
    seed: int = 0
    epochs: Optional[int] = Field(None, ge=1, description="a trial's full training (default: "
                                  "the [train] epochs)")
    min_epochs: int = Field(2, ge=1, description="the first rung of the pruning schedule")
    reduction: int = Field(3, ge=2, le=10, description="rungs every reduction-fold epochs; "
                           "at each, a trial behind the best 1/reduction of the trials that "
                           "cost no more is pruned")
    max_ram_kb: Optional[float] = Field(None, gt=0)
    max_flash_kb: Optional[float] = Field(None, gt=0)
    max_latency_ms: Optional[float] = Field(None, gt=0)
    space: Optional[dict[str, TuneRange | TuneChoice]] = None

    @field_validator("space")
    @classmethod
    def _space(cls, v):
        if v is not None and not v:
            raise ValueError("an empty search space (leave it out for the task's default)")
        return v


class ProjectConfig(_Strict):
    project: ProjectSection
    data: DataSection
    dsp: DSPSection
    model: ModelSection
    board: BoardSection
    train: TrainSettings = TrainSettings()
    source: ImportSection = ImportSection()
    optimize: OptimizeSection = OptimizeSection()
    deploy: DeploySection = DeploySection()
    stream: StreamSection = StreamSection()
    personalize: Optional[PersonalizeSection] = None
    tune: TuneSection = TuneSection()

    @model_validator(mode="after")
    def _dsp(self) -> "ProjectConfig":
        try:
            block, preset, params = block_spec(self.data, self.dsp)
            make_block(block, preset=preset, params=params)
        except (KilomlError, ValueError) as e:  # DSPError: one line
            raise ValueError(f"dsp: {e}") from None
        return self


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
                             # people draw gestures at other speeds, sizes and angles:
                             # chosen on validation under leave-one-person-out
                             # (docs/wand_lopo.md)
                             augment=AugmentSection(jitter_std=0.03, scale_range=0.2,
                                                    rotate_deg=30, speed_range=0.1,
                                                    gain_db=1.0)),
            # bands up to 12 Hz: valid from 25 Hz (magic_wand) up; gestures live below it
            dsp=DSPSection(block="spectral", params={"band_edges_hz": [0, 1, 2, 4, 8, 12]}),
            model=ModelSection(arch="dense"), board=BoardSection(name="nano33ble"))
    if task == "vibration":
        return ProjectConfig(
            project=p,
            # robust to the operating point (another load turns the shaft a few percent
            # slower and changes amplitudes): speed and gain augmentation, log band powers
            # (a gain is then an offset); docs/vibration_robustness.md
            data=DataSection(sample_rate=12000, channels=1, window_ms=1024 / 12, stride_ms=1024 / 12,
                             split_by="auto",
                             augment=AugmentSection(speed_range=0.03, gain_db=6.0)),
            dsp=DSPSection(block="spectral", params={"fft_length": 1024, "log_bands": True,
                                                     "band_edges_hz": [0, 500, 1000, 2000,
                                                                       3000, 4000, 6000]}),
            model=ModelSection(arch="dense"), board=BoardSection(name="nucleo-l4r5zi"))
    if task == "anomaly":
        return ProjectConfig(
            project=p,
            data=DataSection(sample_rate=16000, channels=1, window_ms=1000, stride_ms=500),
            dsp=DSPSection(block="mfe"),
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


ARRAY_TABLES = ("sensors",)   # lists of tables in our schema ([[data.sensors]])


def to_toml(doc: dict, header: str = "") -> str:
    """A small TOML writer for our schema: scalars, arrays and nested tables (None omitted)."""
    out: list[str] = [header] if header else []

    def table(prefix: str, d: dict, array: bool = False) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)
                   and k not in ARRAY_TABLES]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        arrays = [(k, v) for k, v in d.items() if k in ARRAY_TABLES and isinstance(v, list)]
        if array:
            out.append(f"\n[[{prefix}]]")
        elif prefix and (scalars or not (subs or arrays)):
            out.append(f"\n[{prefix}]")
        for k, v in scalars:
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)
        for k, v in arrays:   # [[data.sensors]]: written only when there are some
            for item in v:
                table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), item, True)

    table("", doc)
    return "\n".join(out).lstrip("\n") + "\n"


# ---------------------------------------------------------------- project directory


def _section_model(loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model that holds the key at ``loc`` (for suggestions)."""
    m: Any = ProjectConfig
    for part in loc[:-1]:
        field = getattr(m, "model_fields", {}).get(part)
        if field is None:
            return None
        m = field.annotation
    return m if isinstance(m, type) and issubclass(m, BaseModel) else None


def _format_validation(path: Path, e: ValidationError) -> str:
    """One line: an unknown key first (a typo hides behind the "Field required" it causes),
    with the closest valid key; otherwise the key, the bad value and what is allowed."""
    errors = e.errors()
    unknown = [x for x in errors if x["type"] == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if unknown:
        model = _section_model(first["loc"])
        valid = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(first["loc"][-1]), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else \
            (f" (valid keys: {', '.join(valid)})" if valid else "")
        return f"{path}: {loc}: unknown key{hint}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] != "missing" and "input" in first and not isinstance(first["input"], dict):
        msg = f"{first['input']!r}: {msg}"
    return f"{path}: {loc}: {msg}{more}"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _made_by(path: Path, doc: dict) -> str:
    """The kiloml version that wrote the project. An older one is read (its keys are a subset
    of this schema; a key that was removed is reported as unknown); a newer one is refused,
    since it may mean things this version does not know."""
    v = doc.get("project", {}).get("kiloml_version") if isinstance(doc.get("project"), dict) \
        else None
    if v is None:  # no [project] table: the schema check names what is missing
        return __version__
    if not isinstance(v, str) or not re.fullmatch(r"\d+\.\d+\.\d+\S*", v):
        raise ProjectError(f"{path}: project.kiloml_version {v!r} is not a version")
    if _version_tuple(v) > _version_tuple(__version__):
        raise ProjectError(f"{path}: made by kiloml {v}, newer than this kiloml "
                           f"{__version__}: upgrade kiloml to use this project")
    return v


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

    @property
    def dataset(self) -> Dataset:
        """The project's dataset as the data stage sees it (sources relative to the root)."""
        return Dataset(self.root, self.index_path)

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
        made_by = _made_by(path, doc)
        try:
            cfg = ProjectConfig.model_validate(doc)
        except ValidationError as e:
            older = f" (written by kiloml {made_by}, this is {__version__})" \
                if made_by != __version__ else ""
            raise ProjectError(_format_validation(path, e) + older) from None
        return cls(root, cfg)

    def save(self) -> None:
        doc = self.config.model_dump(mode="json")
        atomic_write_text(self.config_path, to_toml(
            doc, header=f"# kiloml project (written by kiloml {__version__}); "
                        "see docs/architecture.md and kiloml.workflow.project"))


def init_project(root: str | Path, task: str, name: str | None = None,
                 force: bool = False) -> Project:
    """Create ``root`` with kiloml.toml (the task's defaults) and an empty dataset index."""
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


def find_project(path: str | Path | None = None) -> Path:
    """``path`` when given; else the nearest directory holding kiloml.toml from the current
    directory upwards (as git finds its repository)."""
    if path is not None:
        return Path(path)
    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    raise ProjectError(f"{here}: not inside a kiloml project (no {CONFIG_NAME} here or in a "
                       "parent folder; create one with `kiloml init DIR --task ...` or pass "
                       "--project)")


def load_project(root: str | Path | None = None, need_index: bool = True) -> Project:
    """The project at ``root`` (default: found from the current directory upwards), checked
    to have its dataset index when ``need_index``."""
    p = Project.load(find_project(root))
    if need_index and not p.index_path.is_file():
        raise ProjectError(f"{p.index_path}: dataset index missing (re-create it with "
                           "`kiloml init --force`)")
    return p


def as_project(p: "Project | str | Path | None") -> Project:
    """Workflow steps accept a loaded Project or its directory."""
    return p if isinstance(p, Project) else load_project(p)
