"""``kiloml report``: one self-contained HTML page of a project (kiloml.workflow.report
collects the data; this package draws and writes it).

``render_report(data)`` takes plain dicts, lists and numpy arrays, never a project. Keys of
``data`` (each optional except ``header``; a missing key drops its section):

header    {"project", "kiloml_version", "facts": [str], "artifacts": [{"artifact", "command"
          or "note", "sha256"}]}
data      {"info": kiloml.data.info.dataset_info(...), "durations": [s], "groups": {group:
          samples}, "window_s"}
features  {"block", "examples": [{"label", "raw" (frames, channels), "rate", "channel_names",
          "features", "feature_title"}], "pca": {"points" (N, 2), "y", "labels", "is_test",
          "wrong", "explained", "wrong_ids"}}
training  {"phases": [{"name", "history": [{"epoch", "train_loss", "train_acc", "val_loss",
          "val_acc"}], "best_epoch", "epochs_run", "best_metric", "seconds"}]}
accuracy  {"test": the ``kiloml test --json`` report, "float_int8": {"float": {...},
          "int8": {...}}, "model", "split"}
variants  model/variants/variants.json
tuning    kiloml.workflow.tune.summary of the last study without wall-clock times:
          {"study", "limits", "epochs", "rungs", "trials": [{"number", "state", "params",
          "accuracy", "latency_ms", "ram_kb", "flash_kb", "fits", "pareto", ...}], "pareto",
          "defaults", "better_than_defaults", "error"}
model     {"layers": [{"node", "op", "name", "output_shape", "macs", "weights_bytes",
          "kernel", "cycles", "macs_per_cycle"}], "arena": {"arena_bytes",
          "lower_bound_bytes", "buffers": [{"name", "kind", "offset", "size", "first",
          "last"}]}, "macs", "weights_bytes", "kernels", "profiled_on"}
boards    build/profile.json's boards, each with "memory": {"board", "flash"/"ram": {"parts":
          [(name, bytes)], "used", "limit"}}, "battery_days"
battery   {"mah", "period_s"}
verify    build/verify.json
"""

from __future__ import annotations

from kiloml.report.explore import pca2, subsample
from kiloml.report.html import SECTIONS, render_page

__all__ = ["SECTIONS", "pca2", "render_report", "subsample"]


def render_report(data: dict) -> str:
    """The report page (HTML text) for ``data`` (see the module doc)."""
    return render_page(data)
