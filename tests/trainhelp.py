"""Shared helpers of the train/compress tests: real-data projects, tiny models, oracles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
MODELS = SHARED / "models"
KWS_REF = MODELS / "mlperf_tiny" / "kws_ref_model.tflite"
KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None, timeout=900):
    """The CLI as a user in an 80-column terminal runs it."""
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=dict(os.environ, COLUMNS="80"))


def require_shared() -> None:
    """Real data is part of CI: its absence is a failure, never a silent skip."""
    assert DATA.is_dir() and MODELS.is_dir(), f"shared data/models missing under {SHARED}"


def make_project(root: Path, task: str, source: str, **import_kw):
    """A project with one of the real data sets imported (default splits)."""
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import init_project

    require_shared()
    proj = init_project(root, task)
    return proj, import_data(Dataset(proj.root, proj.index_path), proj.config.data,
                             DATA / source, **import_kw)


def randomize_bn(model, seed: int = 0) -> None:
    """Non-trivial batch-norm statistics, so folding is really exercised."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    model.eval()


def run_tflm(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=10 * len(model_bytes) + (1 << 20))
    it.set_input(np.ascontiguousarray(x), 0)
    it.invoke()
    return np.array(it.get_output(0), copy=True)


def run_litert_ref(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=bytes(model_bytes),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.ascontiguousarray(x).reshape(d["shape"]))
    it.invoke()
    return np.array(it.get_tensor(it.get_output_details()[0]["index"]), copy=True)
