"""``kiloml run``: every out-of-date step of a project, in order, each reused when nothing it
depends on changed.

Steps: import -> features -> train -> optimize (when ``[optimize] variants`` is set) ->
compile -> profile (the project's board and ``[board] compare``) -> deploy (``[deploy]
formats`` into build/deploy/<format>) -> verify (the deployed C package on the board's core
in the emulator against the Python pipeline, on the test split; a disagreement fails the
step and the run) -> report (build/report.html, kiloml.workflow.report).

Caching. A step's *key* is a content hash of its own parameters and of the *digest* of the
outputs it reads (the dataset index bytes, the feature settings, the model file bytes, the
generated C). After a step runs, its key and the digest of its outputs are recorded in
``<project>/.kiloml/steps.json``; on the next run a step whose key is unchanged and whose
outputs still exist is ``cached``. Changing a DSP parameter therefore re-runs features and
what follows, not the import; re-training that reproduces the same model bytes leaves the
compiled C cached. ``force`` re-runs one step regardless (what follows re-runs only if its
outputs change). A failing step stops the run; the results of earlier steps stay, and the
failed step's record is removed so the next run tries it again.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kiloml import __version__
from kiloml.data.dataset import Dataset
from kiloml.data.importer import import_data
from kiloml.data.index import DatasetIndex
from kiloml.errors import KilomlError, UsageError
from kiloml.fileio import atomic_write_text
from kiloml.targets.boards import Board, load_boards
from kiloml.workflow.cache import content_hash
from kiloml.workflow.compile import compile_model
from kiloml.workflow.deploy import deploy_project
from kiloml.workflow.features import class_list, fingerprint, load_split
from kiloml.workflow.optimize import optimize_project
from kiloml.workflow.profile import profile
from kiloml.workflow.project import Project, as_project
from kiloml.workflow.report import report_inputs, report_path, write_report
from kiloml.workflow.train import model_dir, train_project
from kiloml.workflow.verify import verify_project

STEPS = ("import", "features", "train", "optimize", "compile", "profile", "deploy", "verify",
         "report")
STATE = ".kiloml/steps.json"
BUILD = "build"


class StepError(KilomlError):
    """A step failed; the message names the step and the cause."""


@dataclass
class Context:
    """What a run hands its steps: the project, the command, progress and log callbacks."""

    project: Project
    command: str = "kiloml run"
    progress: bool = True
    log: Callable[[str], None] = lambda msg: None
    resume: bool = False  # train: resume its checkpoints (same key was started before)
    digests: dict[str, str] = field(default_factory=dict)


def _listing(path: Path) -> list:
    """(relative path, size, mtime) of every file under ``path``: a cheap content proxy for a
    data folder (a changed, added or removed file changes it)."""
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    out = []
    for dirpath, dirnames, files in os.walk(path):
        dirnames.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            st = p.stat()
            out.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
    return out


# kiloml's packages whose code turns a trained model into C and measures it: a compile,
# profile or deploy result made by other code (an upgrade, a kernel change) is out of date
_CODE_PACKAGES = ("codegen", "deploy", "dsp", "io", "ir", "targets")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the sources (Python, C, headers, linker scripts, board tables) of
    ``_CODE_PACKAGES``, read once per process; part of the compile, profile and deploy keys."""
    root = Path(__file__).resolve().parent.parent
    files = sorted(f for d in _CODE_PACKAGES for f in (root / d).rglob("*")
                   if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc")
    return content_hash(*[[str(f.relative_to(root)), f.read_bytes()] for f in files])


def _file_digest(*paths: Path) -> str:
    return content_hash(*[p.read_bytes() for p in paths])


def _tree_digest(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return content_hash(*[[str(p.relative_to(root)), p.read_bytes()] for p in files])


# ---------------------------------------------------------------- the steps


def _source_path(p: Project) -> Optional[Path]:
    src = p.config.source.path
    if src is None:
        return None
    path = Path(src)
    return path if path.is_absolute() else p.root / path


def _import_key(p: Project, ctx: Context) -> list:
    src = _source_path(p)
    if src is None:  # manual imports: the index is the input
        return ["manual", p.index_path.read_bytes() if p.index_path.is_file() else b""]
    if not src.exists():
        raise StepError(f"{p.config_path}: source.path {p.config.source.path!r}: {src} does "
                        "not exist")
    return [p.config.source.model_dump(mode="json"), p.config.data.model_dump(mode="json"),
            _listing(src)]


def _import_run(p: Project, ctx: Context) -> None:
    src = _source_path(p)
    if src is None:
        return
    s = p.config.source
    tmp = p.index_path.with_name(p.index_path.name + ".run.tmp")
    DatasetIndex([]).save(tmp)
    try:
        res = import_data(Dataset(p.root, tmp), p.config.data, src, fmt=s.format,
                          label=s.label, label_regex=s.label_regex, group_regex=s.group_regex,
                          rows=s.rows, variable=s.variable, skip_bad=s.skip_bad)
        if not res.added:
            raise StepError(f"{src}: no sample could be imported")
        os.replace(tmp, p.index_path)
    finally:
        tmp.unlink(missing_ok=True)
    summary = res.summary()
    ctx.log(f"imported {sum(summary['labels'].values()):,} samples from "
            f"{summary['files']:,} files ({', '.join(summary['labels'])})")
    for w in summary.get("warnings", [])[:10]:
        ctx.log(f"warning: {w}")


def _import_outputs(p: Project) -> list[Path]:
    return [p.index_path]


def _import_digest(p: Project) -> str:
    return _file_digest(p.index_path)


def _features_key(p: Project, ctx: Context) -> list:
    return [ctx.digests["import"], p.config.data.model_dump(mode="json"),
            p.config.dsp.model_dump(mode="json")]


def _features_run(p: Project, ctx: Context) -> None:
    labels = class_list(p)
    counts = {sp: len(load_split(p, sp, labels).y) for sp in ("train", "validation", "test")}
    ctx.log("features: " + ", ".join(f"{sp} {n:,} windows" for sp, n in counts.items()))


def _features_outputs(p: Project) -> list[Path]:
    return []  # the feature cache is content-keyed: a missing entry is recomputed by train


def _features_digest(p: Project) -> str:
    return content_hash(*fingerprint(p))


def _train_key(p: Project, ctx: Context) -> list:
    c = p.config
    return [ctx.digests["features"], c.project.task, c.model.model_dump(mode="json"),
            c.train.model_dump(mode="json")]


def _train_run(p: Project, ctx: Context) -> None:
    s = train_project(p, progress=ctx.progress, fresh=not ctx.resume, command=ctx.command)
    acc = s.get("int8_accuracy")
    if acc is not None:
        ctx.log(f"trained {s['arch']}: int8 accuracy {100 * acc:.2f} % on the test split")
    elif "int8_accuracy" in s:      # no test windows: say so, never another split's figure
        val = s.get("validation_int8_accuracy")
        ctx.log(f"trained {s['arch']}: int8 test accuracy n/a (the test split has no "
                "windows" + (f"; validation {100 * val:.2f} %)" if val is not None else ")"))
    else:
        ctx.log(f"trained {s['arch']}: int8 model written")


def _train_outputs(p: Project) -> list[Path]:
    return [model_dir(p) / "model.tflite", model_dir(p) / "meta.json"]


def _train_digest(p: Project) -> str:
    meta = json.loads((model_dir(p) / "meta.json").read_text())
    return content_hash((model_dir(p) / "model.tflite").read_bytes(), meta.get("labels"),
                        meta.get("normalizer"), meta.get("input_quant"), meta.get("layout"))


def _optimize_key(p: Project, ctx: Context) -> list:
    return [ctx.digests["train"], p.config.optimize.model_dump(mode="json"), p.config.board.name]


def _optimize_run(p: Project, ctx: Context) -> None:
    o = p.config.optimize
    r = optimize_project(p, list(o.variants), prune_ratio=o.prune_ratio, sparsity=o.sparsity,
                         progress=ctx.progress)
    ctx.log("variants: " + ", ".join(v["name"] for v in r["variants"]))


def _optimize_outputs(p: Project) -> list[Path]:
    return [model_dir(p) / "variants" / "variants.json"]


def _board(p: Project) -> Board:
    db = load_boards()
    for key, bid in [("name", p.config.board.name)] + \
            [(f"compare[{i}]", b) for i, b in enumerate(p.config.board.compare)]:
        if bid not in db:
            raise StepError(f"{p.config_path}: board.{key} {bid!r} is not a known board "
                            f"(known: {', '.join(db)})")
    return db[p.config.board.name]


def _compile_key(p: Project, ctx: Context) -> list:
    b = _board(p)
    return [ctx.digests["train"], p.config.board.name, b.core, bool(b.dsp),
            p.config.deploy.prefer, code_digest()]


def _c_prefix(p: Project) -> str:
    name = "".join(ch if ch.isalnum() else "_" for ch in p.config.project.name).lower()
    return name if name[:1].isalpha() else f"m_{name}"


def _compile_run(p: Project, ctx: Context) -> None:
    out = p.root / BUILD / "c"
    kernels = "armv7em" if _board(p).dsp else "portable"
    s = compile_model(model_dir(p) / "model.tflite", out, prefix=_c_prefix(p),
                      command=ctx.command, kernels=kernels, prefer=p.config.deploy.prefer)
    ctx.log(f"compiled: {len(s['files'])} files in {out} ({kernels} kernels, prefer "
            f"{s['prefer']}, arena {s['arena_bytes']:,} B)")


def _compile_outputs(p: Project) -> list[Path]:
    return [p.root / BUILD / "c"]


def _compile_digest(p: Project) -> str:
    return _tree_digest(p.root / BUILD / "c")


def _profile_boards(p: Project) -> list[str]:
    b = p.config.board
    return [b.name] + [x for x in dict.fromkeys(b.compare) if x != b.name]


def _profile_key(p: Project, ctx: Context) -> list:
    _board(p)
    return [ctx.digests["compile"], ctx.digests["features"], _profile_boards(p),
            p.config.deploy.prefer, code_digest()]


def _profile_run(p: Project, ctx: Context) -> None:
    results = []
    for bid in _profile_boards(p):
        r = profile(None, bid, p)[0]
        results.append(r)
        x = r.get("pipeline", r)
        ctx.log(f"profiled on {r['board']}: flash {x['flash_bytes']:,} B, RAM "
                f"{x['ram_bytes']:,} B, {x['latency_ms']} ms per decision, fits: {x['fits']}")
    atomic_write_text(p.root / BUILD / "profile.json",
                      json.dumps({"boards": results}, indent=1))


def _profile_outputs(p: Project) -> list[Path]:
    return [p.root / BUILD / "profile.json"]


def _profile_digest(p: Project) -> str:
    return _file_digest(p.root / BUILD / "profile.json")


def deploy_dir(p: Project, fmt: str) -> Path:
    return p.root / BUILD / "deploy" / fmt


def _deploy_key(p: Project, ctx: Context) -> list:
    _board(p)
    return [ctx.digests["train"], ctx.digests["features"], p.config.board.name,
            p.config.deploy.formats, p.config.deploy.dsp_variant, p.config.project.name,
            p.config.deploy.prefer, code_digest()]


def _deploy_run(p: Project, ctx: Context) -> None:
    for fmt in p.config.deploy.formats:
        pkg = deploy_project(p, fmt, deploy_dir(p, fmt), force=True, command=ctx.command,
                             dsp_variant=p.config.deploy.dsp_variant)
        ctx.log(f"deployed the {fmt} package {pkg.name} to {pkg.path} ({len(pkg.files)} files)")


def _deploy_outputs(p: Project) -> list[Path]:
    return [deploy_dir(p, f) for f in p.config.deploy.formats]


def _deploy_digest(p: Project) -> str:
    return content_hash(*[_tree_digest(d) for d in _deploy_outputs(p)])


def _verify_key(p: Project, ctx: Context) -> list:
    return [ctx.digests["deploy"], ctx.digests["features"], p.config.deploy.verify_limit]


def _verify_run(p: Project, ctx: Context) -> None:
    d = p.config.deploy
    pkg = deploy_dir(p, "c") if "c" in d.formats else None
    r = verify_project(p, limit=d.verify_limit, dsp_variant=d.dsp_variant, package=pkg,
                       progress=ctx.progress, command=ctx.command)
    atomic_write_text(p.root / BUILD / "verify.json", json.dumps(r, indent=1))
    ctx.log(f"verified on {r['board']} ({r['dsp_variant']} DSP): {r['clips']:,} windows, "
            f"features max diff {r['feature_max_abs_diff']:.3g} (tolerance "
            f"{r['feature_tolerance']:.3g}), scores bit-exact: {r['scores_bit_exact']}, "
            f"predictions equal {r['predictions_equal']:,}/{r['clips']:,}")
    if not r["ok"]:
        (p.root / BUILD / "verify.json").replace(p.root / BUILD / "verify.failed.json")
        raise StepError(f"the device disagrees with training: {r['features_over_tolerance']} "
                        f"window(s) over the feature tolerance, "
                        f"{r['clips'] - r['predictions_equal']} prediction(s) differ (see "
                        f"{p.root / BUILD / 'verify.failed.json'})")


def _verify_outputs(p: Project) -> list[Path]:
    return [p.root / BUILD / "verify.json"]


def _verify_digest(p: Project) -> str:
    return _file_digest(p.root / BUILD / "verify.json")


def _report_key(p: Project, ctx: Context) -> list:
    # every digest the report reads (steps that did not run have none), the files it shows
    # that no digest covers (meta.json's history and test results, variants.json), kiloml's
    # version (the page's look) and the settings it shows (name, board, stride)
    return [__version__, [ctx.digests.get(s) for s in STEPS[:-1]],
            [f.read_bytes() for f in report_inputs(p)], p.config.model_dump(mode="json")]


def _report_run(p: Project, ctx: Context) -> None:
    r = write_report(p)
    ctx.log(f"report: {r['path']} ({r['bytes'] / 1024:,.0f} KB; {', '.join(r['sections'])})")


@dataclass(frozen=True)
class Step:
    name: str
    key: Callable[[Project, Context], list]
    run: Callable[[Project, Context], None]
    outputs: Callable[[Project], list[Path]]
    digest: Callable[[Project], str]
    enabled: Callable[[Project], bool] = lambda p: True


PIPELINE = (
    Step("import", _import_key, _import_run, _import_outputs, _import_digest),
    Step("features", _features_key, _features_run, _features_outputs, _features_digest),
    Step("train", _train_key, _train_run, _train_outputs, _train_digest),
    Step("optimize", _optimize_key, _optimize_run, _optimize_outputs, lambda p: "",
         enabled=lambda p: bool(p.config.optimize.variants)),
    Step("compile", _compile_key, _compile_run, _compile_outputs, _compile_digest),
    Step("profile", _profile_key, _profile_run, _profile_outputs, _profile_digest),
    Step("deploy", _deploy_key, _deploy_run, _deploy_outputs, _deploy_digest,
         enabled=lambda p: bool(p.config.deploy.formats)),
    Step("verify", _verify_key, _verify_run, _verify_outputs, _verify_digest,
         enabled=lambda p: bool(p.config.deploy.formats) and p.config.deploy.verify),
    Step("report", _report_key, _report_run, lambda p: [report_path(p)],
         lambda p: _file_digest(report_path(p))),
)


# ---------------------------------------------------------------- the run


def _load_state(p: Project) -> dict:
    path = p.root / STATE
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) and isinstance(d.get("steps"), dict) else {"steps": {}}
    except (OSError, ValueError):
        return {"steps": {}}


def _save_state(p: Project, state: dict) -> None:
    state["kiloml_version"] = __version__
    atomic_write_text(p.root / STATE, json.dumps(state, indent=1, sort_keys=True))


def run_project(project: Project | str | Path | None = None, until: Optional[str] = None,
                force: tuple[str, ...] = (), progress: bool = True,
                log: Callable[[str], None] = lambda msg: None,
                on_step: Callable[[str, str], None] = lambda name, status: None,
                command: str = "kiloml run") -> dict:
    """Run the project's out-of-date steps (see the module doc). Returns ``{"project",
    "steps": [{"name", "status": "ran"|"cached"|"failed", "seconds"}], "error"}``; a failed
    step ends the run (``error`` holds its one-line message)."""
    for name in ((until,) if until else ()) + tuple(force):
        if name not in STEPS:
            raise UsageError(f"unknown step {name!r} (steps: {', '.join(STEPS)})")
    p = as_project(project)
    state = _load_state(p)
    ctx = Context(p, command=command, progress=progress, log=log)
    rows: list[dict] = []
    result = {"project": str(p.root), "steps": rows, "error": None}
    for step in PIPELINE:
        if not step.enabled(p):
            if step.name == until:
                break
            continue
        t0 = time.time()
        rec = state["steps"].get(step.name, {})
        try:
            key = content_hash(step.name, *step.key(p, ctx))
            fresh = rec.get("key") == key and "digest" in rec and \
                all(o.exists() for o in step.outputs(p))
            if fresh and step.name not in force:
                ctx.digests[step.name] = rec["digest"]
                rows.append({"name": step.name, "status": "cached", "seconds": 0.0})
                on_step(step.name, "cached")
            else:
                on_step(step.name, "running")
                ctx.resume = rec.get("started") == key and step.name not in force
                state["steps"][step.name] = {"started": key}
                _save_state(p, state)
                step.run(p, ctx)
                digest = step.digest(p)
                ctx.digests[step.name] = digest
                state["steps"][step.name] = {"key": key, "digest": digest,
                                             "seconds": round(time.time() - t0, 2)}
                _save_state(p, state)
                rows.append({"name": step.name, "status": "ran",
                             "seconds": round(time.time() - t0, 2)})
                on_step(step.name, "ran")
        except (KilomlError, OSError) as e:
            msg = str(e) if isinstance(e, KilomlError) else f"{e.filename}: {e.strerror}"
            rows.append({"name": step.name, "status": "failed",
                         "seconds": round(time.time() - t0, 2)})
            result["error"] = f"step {step.name} failed: {msg}"
            on_step(step.name, "failed")
            break
        if step.name == until:
            break
    return result
