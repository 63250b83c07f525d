"""Personalization of a trained project: the int8 model inputs of windows, and the
before/after evaluation of one person's update (kiloml.deploy.personalize holds the scheme,
its numpy twin and the generated C)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.compress.export import quantize_input, to_nhwc
from kiloml.deploy.personalize import (Head, Settings, check_samples, personalize,
                                       personalized_graph, run_model)
from kiloml.deploy.spec import DeploySpec
from kiloml.dsp.apply import apply_block
from kiloml.errors import KilomlError
from kiloml.train.models import to_model_input
from kiloml.train.normalize import Normalizer


def model_inputs(spec: DeploySpec, frames: np.ndarray) -> np.ndarray:
    """Raw windows (N, frames, channels) float32 -> int8 model inputs (N, size), as the
    deployed pipeline computes them (the f32 DSP block, the normalizer, the layout, the
    input quantization)."""
    feats = apply_block(spec.block, np.asarray(frames, np.float32))
    norm = spec.normalizer if isinstance(spec.normalizer, Normalizer) else \
        Normalizer.from_state({"mean": 0.0, "std": 1.0, **spec.normalizer})
    x = to_nhwc(to_model_input(norm(feats), spec.layout))
    t = spec.graph.tensors[spec.graph.inputs[0]]
    q = quantize_input(x, float(t.quant.scale[0]), int(t.quant.zero_point[0]))
    return np.asarray(q, np.int8).reshape(len(frames), -1)


def pick_shots(labels: np.ndarray, shots: int, num_classes: int,
               names: list[str] | None = None) -> np.ndarray:
    """Indices of ``shots`` windows of every class, evenly spaced over the class's windows in
    their order (the ends excluded: recordings start and stop atypically); classes in
    order. KilomlError when a class has fewer than ``shots + 1`` (one left to evaluate)."""
    labels = np.asarray(labels)
    picked = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < shots + 1:
            name = names[c] if names else str(c)
            raise KilomlError(f"class {name!r} has {len(idx)} windows; --shots {shots} needs "
                              f"at least {shots + 1} (the rest are evaluated)")
        picked.append(idx[np.round(np.linspace(0, len(idx) - 1, shots + 2)[1:-1]).astype(int)])
    return np.concatenate(picked)


@dataclass
class Evaluation:
    accuracy_before: float
    accuracy_after: float
    relative_error_reduction: float
    update: tuple          # (int8 weights, weight scales, int32 bias, mult, shift)
    train_index: np.ndarray


def evaluate_person(spec: DeploySpec, head: Head, inputs: np.ndarray, labels: np.ndarray,
                    shots: int, settings: Settings) -> Evaluation:
    """Personalize on ``shots`` windows per class of one person (the twin, equal to the C
    bit for bit) and evaluate the factory and the personalized model on the rest."""
    labels = np.asarray(labels)
    n_cls = head.units
    train = pick_shots(labels, shots, n_cls, list(spec.labels))
    check_samples(labels[train], n_cls, settings)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    upd = personalize(head, inputs[train], labels[train], settings)
    before = run_model(head.graph, inputs[rest]).argmax(axis=1)
    after = run_model(personalized_graph(head, *upd[:3]), inputs[rest]).argmax(axis=1)
    acc_b = float(np.mean(before == labels[rest]))
    acc_a = float(np.mean(after == labels[rest]))
    err_b = 1.0 - acc_b
    rel = (err_b - (1.0 - acc_a)) / err_b if err_b > 0 else 0.0
    return Evaluation(acc_b, acc_a, rel, upd, train)


