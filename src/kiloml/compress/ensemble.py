"""Teacher ensembles for distillation: several int8 .tflite classifiers teach as one.

The ensemble's logits are the **mean of its teachers' logits**, each teacher's columns first
put in the student's class order. The distillation loss (kiloml.train.loop) turns logits into
soft targets with ``softmax(logits / T)``; since ``log_softmax(z / T) = z / T - c`` with a
per-sample constant ``c`` that softmax ignores, averaging the logits gives exactly the same
soft targets as averaging the teachers' log-softmax at temperature ``T`` (the normalized
geometric mean of their tempered distributions), so the two choices are one. Averaging logits
keeps the ensemble a plain logits producer: the temperature stays the loss's business and the
per-teacher logits can be cached independently of it. (The arithmetic mean of the teachers'
probabilities would be the other classic choice; it depends on ``T`` and is not what this
does.) A teacher with larger logits (sharper, more confident) weighs more in the mean.

Every teacher is checked up front (``load_ensemble``): the file exists and reads as a .tflite
model, it is an int8 classifier with one input and one output, its class list (its ``labels``
or, without them, the student's order) is the student's label set, and its input holds the
student's features. A failure is one ``KilomlError`` line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from kiloml.compress.distill import MLPERF_KWS_LABELS, TfliteTeacher, TorchGraph
from kiloml.compress.export import to_nhwc
from kiloml.errors import KilomlError

LABEL_ALIASES = {"mlperf-kws": MLPERF_KWS_LABELS}


def resolve_labels(labels: Optional[Sequence[str]]) -> Optional[list[str]]:
    """A teacher's class order: ``["mlperf-kws"]`` is the MLPerf Tiny KWS order; None or an
    empty list means the student's order."""
    if not labels:
        return None
    if len(labels) == 1 and labels[0] in LABEL_ALIASES:
        return list(LABEL_ALIASES[labels[0]])
    return list(labels)


def mean_logits(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble's logits from its teachers' (already in the student's class order)."""
    if not logits:
        raise ValueError("an ensemble needs at least one teacher")
    return np.mean(np.stack([np.asarray(x, np.float64) for x in logits]), axis=0)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if int(d) != 1)


class EnsembleMember:
    """One checked teacher: the .tflite classifier and the column order that maps its outputs
    to the student's classes."""

    def __init__(self, path: str | Path, labels: Optional[Sequence[str]],
                 student_labels: Sequence[str], feature_shape: Sequence[int]) -> None:
        path = Path(path)
        if not path.is_file():
            raise KilomlError(f"{path}: teacher: no such file")
        try:
            teacher = TfliteTeacher(path, resolve_labels(labels))
        except KilomlError as e:
            msg = str(e)
            raise KilomlError(msg if msg.startswith(str(path)) else
                              f"{path}: teacher: {msg}") from None
        except (OSError, ValueError, IndexError, TypeError) as e:
            raise KilomlError(f"{path}: teacher: not a readable .tflite model ({e})") from None
        spec_in, spec_out = teacher.model.input_spec, teacher.model.output_spec
        if spec_in.dtype != "int8" or spec_out.dtype != "int8" or not spec_in.quantized:
            raise KilomlError(f"{path}: teacher: not an int8 model (input {spec_in.dtype}, "
                              f"output {spec_out.dtype})")
        out_shape = _squeezed(spec_out.shape)
        n = len(student_labels)
        if len(out_shape) != 1:
            raise KilomlError(f"{path}: teacher: not a classifier (output "
                              f"{list(spec_out.shape)}, expected one score per class)")
        if out_shape[0] != n:
            raise KilomlError(f"{path}: teacher has {out_shape[0]} outputs, the project "
                              f"{n} classes")
        tl = teacher.labels
        if tl is not None:
            if len(tl) != out_shape[0] or len(set(tl)) != len(tl):
                raise KilomlError(f"{path}: teacher labels: {len(tl)} names ("
                                  f"{len(set(tl))} distinct) for {out_shape[0]} outputs")
            if set(tl) != set(student_labels):
                other = sorted(set(student_labels) - set(tl)) or sorted(set(tl) -
                                                                        set(student_labels))
                raise KilomlError(f"{path}: teacher classes are not the project's (differ in "
                                  f"{other[0]!r}; teacher: {', '.join(tl)})")
        want, have = _squeezed(feature_shape), _squeezed(spec_in.shape)
        size = int(np.prod(feature_shape))
        if have != want and not (len(have) == 1 and have[0] == size):
            raise KilomlError(f"{path}: teacher input is {list(spec_in.shape)}, the project's "
                              f"features are {list(feature_shape)}")
        self.path = path
        self.teacher = teacher
        self.labels = tl
        self.order = None if tl is None or list(tl) == list(student_labels) else \
            [tl.index(s) for s in student_labels]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) float features (channels last, as the DSP block gives them) ->
        (N, classes) logits in the student's class order, by kiloml's reference
        interpreter."""
        y = self.teacher.logits(features)
        return y if self.order is None else y[:, self.order]

    def torch_fn(self):
        """The teacher in PyTorch (TorchGraph: the int8 model up to rounding ties), mapping a
        batch in the model's layout to logits in the student's class order."""
        tg = TorchGraph(self.teacher.graph)
        order = None if self.order is None else torch.as_tensor(self.order)

        def fn(xb: torch.Tensor) -> torch.Tensor:
            y = tg(torch.as_tensor(to_nhwc(xb.detach().numpy())))
            return y if order is None else y[:, order]

        return fn


class TeacherEnsemble:
    """Checked teachers whose logits are averaged (see the module doc). One teacher is that
    teacher, unchanged."""

    def __init__(self, members: Sequence[EnsembleMember]) -> None:
        if not members:
            raise KilomlError("an ensemble needs at least one teacher")
        self.members = list(members)

    @property
    def paths(self) -> list[Path]:
        return [m.path for m in self.members]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Mean of the members' logits (student's class order) on float features."""
        return mean_logits([m.logits(features) for m in self.members])

    def torch_fn(self):
        """``batch -> mean of the members' TorchGraph logits``, for teaching every training
        batch as the student sees it. Builds every member's TorchGraph now, so a teacher with
        an op the fast path lacks fails before any training."""
        fns = [m.torch_fn() for m in self.members]
        if len(fns) == 1:
            return fns[0]

        def fn(xb: torch.Tensor) -> torch.Tensor:
            return torch.stack([f(xb) for f in fns]).mean(dim=0)

        return fn


def load_ensemble(paths: Sequence[str | Path], labels: Sequence[Optional[Sequence[str]]],
                  student_labels: Sequence[str], feature_shape: Sequence[int]
                  ) -> TeacherEnsemble:
    """Check and load every teacher (``labels[i]``: teacher i's class order, None = the
    student's); the first bad one raises KilomlError naming its file."""
    if len(labels) != len(paths):
        raise KilomlError(f"teacher labels: {len(labels)} lists for {len(paths)} teachers")
    return TeacherEnsemble([EnsembleMember(p, tl, student_labels, feature_shape)
                            for p, tl in zip(paths, labels)])
