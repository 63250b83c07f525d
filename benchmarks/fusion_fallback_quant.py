"""What sharing one graph costs each fallback model: in a ``missing = "fallback"`` project
the sensors' models read slices of the fused model's int8 input, so they share its
quantization (one scale for every feature of every sensor). This exports each sensor's
model alone (the same float weights, PTQ on the same training windows, its own input
quantization) and compares it with its head in the deployed graph on the test windows:
input scale, accuracy, macro-F1, top-class agreement, largest score difference.

    python benchmarks/fusion_fallback_quant.py PROJECT [PROJECT ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from kiloml.compress.quantize import calibrate, lower, to_graph
from kiloml.io.tflite_reader import read_tflite
from kiloml.model import Model
from kiloml.train.metrics import classification_report
from kiloml.train.models import build_model, fold_input_affine
from kiloml.workflow import train as P
from kiloml.workflow.project import Project


def q_in(graph, x: np.ndarray) -> np.ndarray:
    t = graph.tensors[graph.inputs[0]]
    return np.clip(np.round(x / t.scale) + t.zero_point, -128, 127).astype(np.int8)


def scores(graph, x: np.ndarray, out: int = 0) -> np.ndarray:
    q = Model(graph).predict(q_in(graph, x))
    q = q[out] if isinstance(q, list) else q
    return (q.reshape(len(x), -1).astype(np.float64) + 128) / 256


def main() -> None:
    for root in map(Path, sys.argv[1:]):
        prep = P.prepare(Project.load(root))
        ck = torch.load(root / "model" / "float.pt", map_location="cpu", weights_only=False)
        graph = read_tflite(root / "model" / "model.tflite")
        xtr = prep.model_input(prep.train.x)
        rng = np.random.default_rng(prep.recipe.seed)   # the calibration windows of quantize
        if len(xtr) > 2000:
            xtr = xtr[np.sort(rng.choice(len(xtr), 2000, replace=False))]
        xte = prep.model_input(prep.test.x)
        y = prep.test.y
        res = {"project": root.name,
               "graph_input_scale": float(graph.tensors[graph.inputs[0]].scale)}
        for k, fb in enumerate(ck["fallback"]):
            a, b = fb["bounds"]
            m = build_model(fb["arch"], (b - a,), ck["num_classes"], **fb["params"])
            m.load_state_dict(fb["state"])
            m = fold_input_affine(m.eval(), fb["input_scale"], fb["input_shift"]).eval()
            net = lower(m, torch.as_tensor(xtr[:1, a:b]), append_softmax=True)
            calibrate(net, (torch.as_tensor(xtr[i:i + 256, a:b])
                            for i in range(0, len(xtr), 256)), method=prep.recipe.calibration)
            alone = to_graph(net)
            s_alone = scores(alone, xte[:, a:b])
            s_head = scores(graph, xte, 1 + k)
            with torch.no_grad():
                s_float = torch.softmax(m(torch.as_tensor(xte[:, a:b])), 1).numpy()
            r = {}
            for name, s in (("float", s_float), ("alone int8", s_alone),
                            ("head in the graph", s_head)):
                c = classification_report(y, s.argmax(1), prep.labels)
                r[name] = {"accuracy": c["accuracy"], "macro_f1": c["macro_f1"]}
            r["input_scale_alone"] = float(alone.tensors[alone.inputs[0]].scale)
            r["top_class_agreement"] = round(float((s_alone.argmax(1) ==
                                                    s_head.argmax(1)).mean()), 4)
            r["max_score_diff"] = round(float(np.abs(s_alone - s_head).max()), 4)
            r["max_score_diff_vs_float"] = {
                "alone": round(float(np.abs(s_alone - s_float).max()), 4),
                "head": round(float(np.abs(s_head - s_float).max()), 4)}
            res[fb["sensor"]] = r
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
