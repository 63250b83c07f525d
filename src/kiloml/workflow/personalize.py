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
    # upd[5:]: the bias layer's int32 bias when biases = "all"
    after = run_model(personalized_graph(head, *upd[:3], *upd[5:]),
                      inputs[rest]).argmax(axis=1)
    acc_b = float(np.mean(before == labels[rest]))
    acc_a = float(np.mean(after == labels[rest]))
    err_b = 1.0 - acc_b
    rel = (err_b - (1.0 - acc_a)) / err_b if err_b > 0 else 0.0
    return Evaluation(acc_b, acc_a, rel, upd, train)




def project_settings(p) -> Settings:
    """``[personalize]`` of the project, or the defaults."""
    s = p.config.personalize
    if s is None:
        return Settings()
    return Settings(s.epochs, s.lr, s.max_samples, s.prox_mu, s.biases,
                    s.bias_lr_scale)


def personalize_project(project, data, shots: int, board: str | None = None,
                        command: str = "kiloml personalize") -> dict:
    """``kiloml personalize``: ``shots`` windows per class of the recordings in ``data`` (one
    person, laid out like an import) personalize the head through the generated C in the
    emulator on ``board`` (checked equal to the twin byte for byte); the rest of ``data`` is
    evaluated with the factory and the personalized model. Nothing of the project is
    written: the factory model stays as it is."""
    import tempfile
    from pathlib import Path

    from kiloml.data.windowing import load_windows
    from kiloml.deploy.personalize import find_head, personalize_files, run_update_emulator
    from kiloml.deploy.spec import board_flags
    from kiloml.targets.boards import load_boards
    from kiloml.targets.profile import energy_uj
    from kiloml.workflow.deploy import package_name, project_spec
    from kiloml.workflow.project import as_project
    from kiloml.workflow.train import import_elsewhere

    p = as_project(project)
    data = Path(data)
    if not data.is_dir():
        raise KilomlError(f"--data {data}: not a folder")
    if not any(f.is_file() for f in data.rglob("*")):
        raise KilomlError(f"--data {data}: no recordings in the folder")
    if shots < 1:
        raise KilomlError(f"--shots {shots}: at least 1 sample per class")
    spec = project_spec(p, board, command=command)
    head = find_head(spec.graph)
    settings = project_settings(p)
    labels = list(spec.labels)
    with tempfile.TemporaryDirectory(prefix="kiloml_personalize_") as tmp:
        src = import_elsewhere(p, data, Path(tmp))
        frames, wins = load_windows(src.dataset, src.config.data, split="test")
    if not wins:
        raise KilomlError(f"--data {data}: no windows in the recordings")
    unknown = sorted({w.label for w in wins} - set(labels))
    if unknown:
        raise KilomlError(f"--data {data}: label {unknown[0]!r} is not one of the model's "
                          f"classes ({', '.join(labels)})")
    if len(labels) * shots > settings.max_samples:
        raise KilomlError(f"--shots {shots}: {len(labels) * shots} samples exceed the store "
                          f"of {settings.max_samples} (the max_samples setting of personalize in kiloml.toml)")
    y = np.array([labels.index(w.label) for w in wins])
    x = model_inputs(spec, frames)
    ev = evaluate_person(spec, head, x, y, shots, settings)
    name = package_name(p)
    bundle = personalize_files(head, name, settings, command=command)
    b = load_boards()[spec.board]
    flags = board_flags(spec.board, str(b.core))
    if flags is None:
        raise KilomlError(f"board {spec.board}: no cross compiler or emulator for its "
                          f"{b.core} core")
    dev = run_update_emulator(bundle, head, name, x[ev.train_index], y[ev.train_index],
                              str(b.core), flags)
    if dev.weights.tobytes() != ev.update[0].tobytes() or \
            dev.bias.tobytes() != ev.update[2].tobytes() or \
            (dev.layer_bias is not None and dev.layer_bias.tobytes() != ev.update[5].tobytes()):
        raise KilomlError("personalize: the C update on the emulator differs from its Python "
                          "twin (a bug: please report it)")
    ms = dev.cycles / float(b.clock_hz) * 1e3
    arena = int(project_arena(spec))
    return {
        "board": spec.board, "core": str(b.core), "shots": shots,
        "samples": int(len(ev.train_index)), "evaluated": int(len(y) - len(ev.train_index)),
        "epochs": settings.epochs, "lr": settings.lr, "biases": settings.biases,
        "accuracy_before": round(ev.accuracy_before, 6),
        "accuracy_after": round(ev.accuracy_after, 6),
        "relative_error_reduction": round(ev.relative_error_reduction, 6),
        "update_ram_bytes": bundle.working_bytes + bundle.store_bytes + dev.stack_bytes,
        "update_stack_bytes": dev.stack_bytes, "update_static_bytes": bundle.working_bytes,
        "sample_store_bytes": bundle.store_bytes, "model_arena_bytes": arena,
        "ram_budget_bytes": 2 * arena,
        "update_within_budget": bundle.working_bytes + dev.stack_bytes <= 2 * arena,
        "update_cycles": dev.cycles, "update_instructions": dev.instructions,
        "cycles_estimated": True,
        "update_ms": round(ms, 3), "energy_uj": energy_uj(ms, b),
        "c_equals_twin": True,
    }


def project_arena(spec: DeploySpec) -> int:
    """The model's activation arena in bytes (the C package's, portable kernels)."""
    from kiloml.codegen.c import generate_c

    return generate_c(spec.graph, prefix="m").plan.arena_bytes
