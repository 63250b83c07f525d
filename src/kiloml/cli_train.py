"""CLI verbs for models: ``kiloml train``, ``kiloml test`` and ``kiloml optimize``.

Registered on kiloml.cli's ``app`` (imported at the bottom of kiloml/cli.py); same conventions:
``--json`` on stdout, human output (tables, progress bars) on stderr, exit 0 ok / 1 failure /
2 bad usage, one-line errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from kiloml.cli import _command_line, _fail, _guard, app, err

PROJECT_OPT = typer.Option(Path("."), "--project", "-p",
                           help="Project directory (default: the current directory).")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}"


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
        from kiloml.train.pipeline import train_project

        s = train_project(project, progress=not quiet, fresh=fresh, epochs=epochs,
                          qat_epochs=qat_epochs, command=_command_line())
        if as_json:
            typer.echo(json.dumps(s, indent=2))
            return
        t = Table(title=f"trained {s['arch']} ({s['task']}) -> {s['model_dir']}",
                  title_justify="left")
        t.add_column("")
        t.add_column("value", justify="right")
        for k, v in s.items():
            if k in ("model_dir", "arch", "task", "labels"):
                continue
            t.add_row(k, _pct(v) if k.endswith("accuracy") else _num(v))
        err.print(t)

    _guard(go)


@app.command()
def test(
    project: Path = PROJECT_OPT,
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Evaluate on this file or folder (any importable "
                                             "format) instead of the project's test split."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Evaluate the deployed int8 model on the project's test split (or on --data):
    accuracy, per-class precision/recall/F1, confusion matrix."""
    if data is not None and not data.exists():
        _fail(f"{data}: no such file or directory", 2)

    def go():
        from kiloml.train.pipeline import test_project

        r = test_project(project, data)
        if as_json:
            typer.echo(json.dumps(r, indent=2))
            return
        title = f"{r['model']}: accuracy {_pct(r['accuracy'])} on {r['n']:,} windows"
        if r.get("roc_auc") is not None:
            title += f", ROC AUC {r['roc_auc']:.4f}"
        t = Table(title=title, title_justify="left")
        for col in ("class", "precision", "recall", "F1", "support"):
            t.add_column(col, justify="left" if col == "class" else "right")
        for lab, m in r["per_class"].items():
            t.add_row(lab, _pct(m["precision"]), _pct(m["recall"]), _pct(m["f1"]),
                      f"{m['support']:,}")
        err.print(t)
        c = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
        c.add_column("")
        for lab in r["labels"]:
            c.add_column(lab[:8], justify="right")
        for lab, row in zip(r["labels"], r["confusion"]):
            c.add_row(lab, *[str(v) for v in row])
        err.print(c)

    _guard(go)


@app.command()
def optimize(
    project: Path = PROJECT_OPT,
    variants: str = typer.Option("float,ptq,qat,pruned,sparse,distilled", "--variants",
                                 help="Comma-separated: float, ptq, qat, pruned, sparse, "
                                      "distilled."),
    prune_ratio: float = typer.Option(0.5, "--prune-ratio", min=0.0, max=0.95,
                                      help="Fraction of channels structured pruning removes."),
    sparsity: float = typer.Option(0.5, "--sparsity", min=0.0, max=0.95,
                                   help="Fraction of weights unstructured pruning zeroes."),
    teacher: Optional[Path] = typer.Option(None, "--teacher",
                                           help="int8 .tflite teacher for the distilled variant "
                                                "(default: train.teacher, else self-distillation)."),
    teacher_labels: Optional[str] = typer.Option(None, "--teacher-labels",
                                                 help="Comma-separated class order of the "
                                                      "teacher's outputs, or 'mlperf-kws'."),
    board: Optional[str] = typer.Option(None, "--board",
                                        help="Board for flash/RAM/latency (default: the "
                                             "project's); 'none' skips profiling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Produce model variants (float, int8 PTQ, int8 QAT, pruned, sparse, distilled) of the
    trained model and compare accuracy, flash, RAM, MACs and estimated latency."""
    from kiloml.compress.optimize import VARIANTS

    if teacher is not None and not teacher.is_file():
        _fail(f"--teacher {teacher}: no such file", 2)
    wanted = [v.strip() for v in variants.split(",") if v.strip()]
    bad = [v for v in wanted if v not in VARIANTS]
    if bad or not wanted:
        _fail(f"--variants: unknown variant {bad[0] if bad else '(none)'!r} "
              f"(have: {', '.join(VARIANTS)})", 2)

    def go():
        from kiloml.compress.optimize import optimize_project

        tl = [v.strip() for v in teacher_labels.split(",")] if teacher_labels else None
        r = optimize_project(project, wanted, prune_ratio=prune_ratio, sparsity=sparsity,
                             board=board, progress=not quiet, teacher=teacher,
                             teacher_labels=tl)
        if as_json:
            typer.echo(json.dumps(r, indent=2))
            return
        print_variants(r)

    _guard(go)


def print_variants(r: dict) -> None:
    t = Table(title=f"variants of {r['arch']} on {r['n_test']:,} test windows "
                    f"(board {r['board'] or 'none'})", title_justify="left")
    for col in ("variant", r["metric"], "flash B", "RAM B", "MACs", "latency ms", "file"):
        t.add_column(col, justify="left" if col in ("variant", "file") else "right")
    for v in r["variants"]:
        est = "~" if v.get("estimated") else ""
        t.add_row(v["name"], _pct(v["metric"]) if r["metric"] == "accuracy" else _num(v["metric"]),
                  est + _num(v.get("flash_bytes")), est + _num(v.get("ram_bytes")),
                  _num(v.get("macs")), _num(v.get("latency_ms")), v.get("file") or "")
    err.print(t)
    for note in r.get("notes", []):
        err.print(f"note: {note}", highlight=False)
