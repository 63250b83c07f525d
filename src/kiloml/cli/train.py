"""CLI verbs for models: ``kiloml train``, ``kiloml test`` and ``kiloml optimize``.

Thin calls into kiloml.workflow (conventions: kiloml.cli.common); progress bars on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, err, fail, fmt, guard,
                               out, pct, project_dir, table)


@app.command()
def train(
    project: Path = PROJECT_OPT,
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                         help="Override train.epochs for this run."),
    qat_epochs: Optional[int] = typer.Option(None, "--qat-epochs", min=0,
                                             help="Quantization-aware fine-tuning epochs."),
    fresh: bool = typer.Option(False, "--fresh",
                               help="Ignore checkpoints of an interrupted run and start over."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Train the project's model with the task's defaults, quantize it to int8 and write
    model/model.tflite (resumes an interrupted run from its checkpoint)."""

    def go():
        from kiloml.workflow.train import train_project

        s = train_project(project_dir(project), progress=not quiet, fresh=fresh, epochs=epochs,
                          qat_epochs=qat_epochs, command=command_line())
        if as_json:
            emit_json(s)
            return
        t = table(f"trained {s['arch']} ({s['task']}) -> {s['model_dir']}",
                  [("figure", "l"), ("value", "l")])
        for k, v in s.items():
            if k in ("model_dir", "arch", "task", "labels"):
                continue
            if k == "self_teachers_val_int8":     # {seed: validation int8 accuracy}
                t.add_row(k, ", ".join(f"seed {a} {pct(b)}" for a, b in v.items()))
                continue
            t.add_row(k, pct(v) if k.endswith("accuracy") else fmt(v))
        out.print(t)

    guard(go)


@app.command()
def test(
    project: Path = PROJECT_OPT,
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Evaluate on this file or folder (any importable "
                                             "format) instead of the project's test split."),
    model: Optional[Path] = typer.Option(None, "--model",
                                         help="Evaluate this int8 .tflite (e.g. a variant from "
                                              "`kiloml optimize`) instead of model/model.tflite."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Evaluate the deployed int8 model on the project's test split (or on --data):
    accuracy, per-class precision/recall/F1, confusion matrix."""
    if data is not None and not data.exists():
        fail(f"{data}: no such file or directory", 2)
    if model is not None and not model.is_file():
        fail(f"--model {model}: no such file", 2)

    def go():
        from kiloml.workflow.train import test_project

        r = test_project(project_dir(project), data, model=model)
        if as_json:
            emit_json(r)
            return
        title = f"{r['model']}: accuracy {pct(r['accuracy'])} on {r['n']:,} windows"
        if r.get("roc_auc") is not None:
            title += f", ROC AUC {r['roc_auc']:.4f}"
        t = table(title, [("class", "l"), ("precision", "r"), ("recall", "r"), ("F1", "r"),
                          ("support", "r")])
        for lab, m in r["per_class"].items():
            t.add_row(lab, pct(m["precision"]), pct(m["recall"]), pct(m["f1"]),
                      f"{m['support']:,}")
        out.print(t)
        c = table("confusion (rows: true, columns: predicted)",
                  [("", "l")] + [(lab, "r") for lab in r["labels"]])
        for lab, row in zip(r["labels"], r["confusion"]):
            c.add_row(lab, *[str(v) for v in row])
        out.print(c)

    guard(go)


@app.command()
def optimize(
    project: Path = PROJECT_OPT,
    variants: str = typer.Option("float,ptq,qat,pruned,sparse,distilled", "--variants",
                                 help="Comma-separated: float, ptq, qat, pruned, sparse, "
                                      "distilled, sensors (multi-sensor projects: each "
                                      "sensor alone vs the fusion, DSP included)."),
    prune_ratio: float = typer.Option(0.5, "--prune-ratio", min=0.0, max=0.95,
                                      help="Fraction of channels structured pruning removes."),
    sparsity: float = typer.Option(0.5, "--sparsity", min=0.0, max=0.95,
                                   help="Fraction of weights unstructured pruning zeroes."),
    teacher: Optional[list[Path]] = typer.Option(
        None, "--teacher", help="int8 .tflite teacher for the distilled variant (default: "
                                "train.teacher, else self-distillation); repeat it for an "
                                "ensemble (the mean of the teachers' logits)."),
    teacher_labels: Optional[list[str]] = typer.Option(
        None, "--teacher-labels", help="Comma-separated class order of the teacher's outputs, "
                                       "or 'mlperf-kws'; once for every teacher or once per "
                                       "--teacher ('' = the project's order)."),
    board: Optional[str] = typer.Option(None, "--board",
                                        help="Board for flash/RAM/latency (default: the "
                                             "project's); 'none' skips profiling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Produce model variants (float, int8 PTQ, int8 QAT, pruned, sparse, distilled) of the
    trained model and compare accuracy, flash, RAM, MACs and estimated latency."""
    from kiloml.workflow.optimize import VARIANTS

    for t in teacher or []:
        if not t.is_file():
            fail(f"--teacher {t}: no such file", 2)
    if teacher_labels and len(teacher_labels) > 1 and len(teacher_labels) != len(teacher or []):
        fail(f"--teacher-labels: given {len(teacher_labels)} times for "
             f"{len(teacher or [])} --teacher files (give it once, or once per teacher)", 2)
    wanted = [v.strip() for v in variants.split(",") if v.strip()]
    bad = [v for v in wanted if v not in VARIANTS]
    if bad or not wanted:
        fail(f"--variants: unknown variant {bad[0] if bad else '(none)'!r} "
              f"(have: {', '.join(VARIANTS)})", 2)

    def go():
        from kiloml.workflow.optimize import optimize_project

        tl = [[v.strip() for v in x.split(",") if v.strip()] for x in teacher_labels or []]
        labels = (tl[0] or None) if len(tl) == 1 else (tl or None)
        r = optimize_project(project_dir(project), wanted, prune_ratio=prune_ratio, sparsity=sparsity,
                             board=board, progress=not quiet, teacher=teacher or None,
                             teacher_labels=labels)
        if as_json:
            emit_json(r)
        else:
            print_variants(r)
        if r.get("interrupted"):
            fail("interrupted (the finished variants are in model/variants/variants.json)",
                 130)

    guard(go)


def print_variants(r: dict) -> None:
    f1 = any("macro_f1" in v for v in r["variants"])
    t = table(f"variants of {r['arch']} on {r['n_test']:,} test windows "
              f"(board {r['board'] or 'none'}; files: model/variants/)",
              [("variant", "l"), (r["metric"], "r"), *([("macro-F1", "r")] if f1 else []),
               ("flash B", "r"), ("RAM B", "r"), ("MACs", "r"), ("latency ms", "r")])
    for v in r["variants"]:
        est = "~" if v.get("estimated") else ""
        dsp = "+" if v.get("with_dsp") else ""
        t.add_row(v["name"], pct(v["metric"]) if r["metric"] == "accuracy" else fmt(v["metric"]),
                  *([pct(v["macro_f1"]) if "macro_f1" in v else ""] if f1 else []),
                  dsp + est + fmt(v.get("flash_bytes")), dsp + est + fmt(v.get("ram_bytes")),
                  fmt(v.get("macs")), dsp + fmt(v.get("latency_ms")))
    out.print(t)
    if any(v.get("with_dsp") for v in r["variants"]):
        err.print("note: + marks the whole pipeline (DSP block + model)", markup=False)
    for note in r.get("notes", []):
        err.print(f"note: {note}", markup=False)
