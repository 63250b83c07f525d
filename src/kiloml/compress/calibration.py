"""Activation ranges: observers and post-training calibration.

Every activation tensor of a QNet has an ``Observer``. Calibration runs float batches through
the net in ``observe`` mode, then sets each range with one of ``METHODS``; quantization-aware
training moves the ranges with an EMA instead (``Observer.ema``). The range becomes an int8
(scale, zero point) through ``qparams_from_range``, exactly as TFLite's converter does it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch
from torch import nn

from kiloml.compress.qmath import QMAX, QMIN, QuantizeError, f32, qparams_from_range

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.compress.qnet import QNet

METHODS = ("minmax", "percentile", "mse")


class Observer(nn.Module):
    """Range of one activation tensor: calibration statistics, EMA during QAT, or fixed.

    The range lives in buffers (saved with the net's state dict); the calibration samples are
    a bounded reservoir (``reservoir`` values) so that percentile and MSE ranges do not hold
    every activation of the calibration set in memory.
    """

    def __init__(self, reservoir: int = 200_000) -> None:
        super().__init__()
        self.register_buffer("lo", torch.zeros((), dtype=torch.float64))
        self.register_buffer("hi", torch.zeros((), dtype=torch.float64))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fixed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fixed_qp", torch.zeros(2, dtype=torch.float64))
        self.reservoir = reservoir
        self.samples: list[np.ndarray] = []
        self._n = 0
        self.momentum = 0.01
        self.non_negative = False   # output of a fused ReLU / ReLU6: range starts at 0

    def reset(self) -> None:
        """Forget the statistics (a new calibration starts)."""
        self.seen.fill_(False)
        self.samples = []
        self._n = 0

    def set_fixed(self, scale: float, zero_point: int) -> None:
        """Pin the quantization (softmax output, a DSP block's int8 output): calibration and
        QAT leave it alone."""
        self.fixed.fill_(True)
        self.fixed_qp[0] = f32(scale)
        self.fixed_qp[1] = int(zero_point)
        self.lo.fill_((QMIN - zero_point) * f32(scale))
        self.hi.fill_((QMAX - zero_point) * f32(scale))
        self.seen.fill_(True)

    def set_range(self, lo: float, hi: float) -> None:
        self.lo.fill_(float(lo))
        self.hi.fill_(float(hi))
        self.seen.fill_(True)

    @torch.no_grad()
    def observe(self, x: torch.Tensor, keep_samples: bool = True) -> None:
        """Widen the range to ``x``'s extremes and keep a sample of its values (for the
        percentile and MSE methods), subsampled with a fixed seed so runs repeat."""
        lo, hi = float(x.min()), float(x.max())
        if not bool(self.seen):
            self.lo.fill_(lo)
            self.hi.fill_(hi)
            self.seen.fill_(True)
        else:
            self.lo.fill_(min(float(self.lo), lo))
            self.hi.fill_(max(float(self.hi), hi))
        if keep_samples:
            flat = x.detach().reshape(-1).to(torch.float32).cpu().numpy()
            budget = max(self.reservoir // 8, 1)
            if flat.size > budget:
                rng = np.random.default_rng(self._n)
                flat = flat[rng.choice(flat.size, budget, replace=False)]
            self.samples.append(flat)
            self._n += 1
            total = sum(s.size for s in self.samples)
            if total > 2 * self.reservoir:
                allv = np.concatenate(self.samples)
                rng = np.random.default_rng(self._n)
                self.samples = [allv[rng.choice(allv.size, self.reservoir, replace=False)]]

    @torch.no_grad()
    def ema(self, x: torch.Tensor) -> None:
        """QAT: move the range towards this batch's min/max (unless fixed or frozen)."""
        if bool(self.fixed) or bool(self.frozen):
            return
        lo, hi = float(x.min()), float(x.max())
        if not bool(self.seen):
            self.set_range(lo, hi)
            return
        m = self.momentum
        self.lo.fill_((1 - m) * float(self.lo) + m * lo)
        self.hi.fill_((1 - m) * float(self.hi) + m * hi)

    def qparams(self) -> tuple[float, int]:
        """(float32 scale, zero point) of the current range."""
        if bool(self.fixed):
            return float(self.fixed_qp[0]), int(self.fixed_qp[1])
        if not bool(self.seen):
            raise QuantizeError("an activation was never observed: calibrate the model first")
        lo = 0.0 if self.non_negative else float(self.lo)
        return qparams_from_range(lo, float(self.hi))

    def finish(self, method: str, percentile: float = 99.99) -> None:
        """Set the range from the calibration statistics with ``method``."""
        if bool(self.fixed) or not bool(self.seen):
            return
        if method != "minmax" and self.samples:
            v = np.concatenate(self.samples).astype(np.float64)
            if method == "percentile":
                lo = float(np.percentile(v, 100.0 - percentile))
                hi = float(np.percentile(v, percentile))
                self.set_range(min(lo, 0.0), max(hi, 0.0))
            elif method == "mse":
                self.set_range(*mse_range(v, float(self.lo), float(self.hi), self.non_negative))
            else:
                raise QuantizeError(f"unknown calibration method {method!r} "
                                    f"(have: {', '.join(METHODS)})")
        self.samples = []


def mse_range(v: np.ndarray, lo: float, hi: float, non_negative: bool) -> tuple[float, float]:
    """The clipping range (a shrunk [lo, hi]) minimising the int8 quantization MSE on ``v``:
    clipping a few outliers buys a finer scale for everything else."""
    lo = 0.0 if non_negative else min(lo, 0.0)
    hi = max(hi, 0.0)
    best, best_err = (lo, hi), np.inf
    for a in np.linspace(0.15, 1.0, 69):
        s, z = qparams_from_range(lo * a, hi * a)
        q = np.clip(np.sign(v / s) * np.floor(np.abs(v / s) + 0.5) + z, QMIN, QMAX)
        err = float(np.mean(((q - z) * s - v) ** 2))
        if err < best_err:
            best, best_err = (lo * a, hi * a), err
    return best


@torch.no_grad()
def calibrate(net: "QNet", batches: Iterable[torch.Tensor], method: str = "minmax",
              percentile: float = 99.99,
              input_quant: tuple[float, int] | None = None) -> "QNet":
    """Post-training calibration: run float batches, set every activation's range.

    ``method``: ``minmax`` (observed extremes), ``percentile`` (the ``percentile`` /
    100 - ``percentile`` quantiles), ``mse`` (the shrunk range minimising quantization MSE).
    ``input_quant`` fixes the input's (scale, zero point), e.g. to a DSP block's int8 output.
    Leaves the net in ``fake`` mode.
    """
    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r} (have: {', '.join(METHODS)})")
    was = net.training
    net.eval()
    for ob in net.observers:
        if not bool(ob.fixed):
            ob.reset()
    if input_quant is not None:
        net.observers[0].set_fixed(*input_quant)
    net.set_mode("observe")
    n = 0
    for xb in batches:
        net(xb)
        n += 1
    if n == 0:
        raise QuantizeError("calibration needs at least one batch")
    for ob in net.observers:
        ob.finish(method, percentile)
    net.set_mode("fake")
    net.train(was)
    return net
