"""The training loop: AdamW + cosine schedule, early stopping, checkpoints and resume.

Reproducible: every epoch reseeds torch from ``(seed, epoch)`` before shuffling and dropout, so
a run interrupted after epoch k and resumed from its checkpoint continues exactly as the
uninterrupted run would have (the tests check the weights are identical). CPU-friendly:
``torch.set_num_threads(threads)`` (2 by default; ``[train] threads``).

Progress goes to stderr as a rich progress bar (one line per epoch with the metrics when stderr
is not a terminal). The checkpoint (``last.pt``) holds the model, optimizer and scheduler
state, the best weights so far, the history and the fingerprint of the configuration; a
checkpoint made with another configuration is not resumed from (it is an error, so a changed
recipe never silently continues an old run).

With ``ema`` > 0 the loop keeps an exponential moving average of the weights (updated after
every step, with TensorFlow's warm-up min(decay, (1 + t) / (10 + t)) at step t); validation,
the best-epoch choice and the returned model use the averaged
weights, which generalize better on small data sets than the last iterate.

Each epoch's history row holds ``train_loss`` and, for classifiers trained without mixup,
``train_acc``: both measured on the training batches as they were trained (augmented, dropout
on, weights changing during the epoch, as Keras reports them), next to ``val_*`` measured on
the validation data after the epoch.

``mixup`` > 0 trains on convex combinations of pairs of examples and of their targets (Zhang
et al. 2018), lambda ~ Beta(mixup, mixup) per batch.

Losses: ``ce`` (cross entropy with optional label smoothing, optionally distilled: soft
targets from a teacher, ``alpha`` x T^2 x KL + (1 - alpha) x CE), ``mse`` (autoencoders: the
target is the input).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kiloml.errors import KilomlError


class TrainError(KilomlError):
    """Training cannot start or resume (bad configuration, mismatched checkpoint)."""


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    patience: int = 0                 # epochs without improvement before stopping; 0 = never
    warmup_epochs: int = 0
    seed: int = 0
    threads: int = 2
    loss: str = "ce"                  # ce | mse
    distill_alpha: float = 0.0        # weight of the distillation term (needs soft targets)
    temperature: float = 4.0
    monitor: str = "auto"             # val_acc | val_loss | auto (acc for ce, loss for mse)
    grad_clip: float = 5.0
    ema: float = 0.0                  # decay of an exponential moving average of the weights
    mixup: float = 0.0                # Beta(a, a) mixup of inputs and targets; 0 = off

    def fingerprint(self) -> str:
        """Hash of the settings that differ from their defaults (so a checkpoint stays valid
        when a later kiloml adds a setting). ``threads`` is left out, so a run may resume with
        another thread count; torch then splits float sums differently, so the weights may
        differ in their last bits from an uninterrupted run with one count."""
        default = TrainConfig()
        d = {k: v for k, v in asdict(self).items()
             if k != "threads" and v != getattr(default, k)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EpochData:
    """One epoch's training tensors: inputs, targets (class ids, or None for ``mse``), optional
    teacher logits for distillation."""

    x: torch.Tensor
    y: Optional[torch.Tensor] = None
    teacher: Optional[torch.Tensor] = None


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int = 0


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _loss(cfg: TrainConfig, out: torch.Tensor, batch: EpochData,
          mix: Optional[tuple[float, torch.Tensor]] = None,
          consistent: bool = False) -> torch.Tensor:
    """The configured loss; ``mix`` = (lambda, permutation) of a mixup batch; ``consistent``:
    the teacher logits were computed on the (mixed) input itself."""
    if cfg.loss == "mse":
        return F.mse_loss(out, batch.x.reshape(out.shape))

    def ce_of(y):
        return F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)

    def soft(teacher):
        return F.softmax(teacher / cfg.temperature, dim=-1)

    if mix is None:
        ce = ce_of(batch.y)
    else:
        lam, perm = mix
        ce = lam * ce_of(batch.y) + (1 - lam) * ce_of(batch.y[perm])
    if batch.teacher is None or cfg.distill_alpha <= 0:
        return ce
    t = cfg.temperature
    target = soft(batch.teacher) if (mix is None or consistent) else \
        mix[0] * soft(batch.teacher) + (1 - mix[0]) * soft(batch.teacher[mix[1]])
    kd = F.kl_div(F.log_softmax(out / t, dim=-1), target, reduction="batchmean") * (t * t)
    return cfg.distill_alpha * kd + (1 - cfg.distill_alpha) * ce


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             y: Optional[torch.Tensor], loss: str = "ce", batch_size: int = 256) -> dict:
    """Loss and (for ``ce``) accuracy of ``forward`` on a data set."""
    outs = [forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    out = torch.cat(outs) if outs else torch.zeros(0)
    if loss == "mse":
        return {"loss": float(F.mse_loss(out, x.reshape(out.shape)))}
    return {"loss": float(F.cross_entropy(out, y)),
            "acc": float((out.argmax(-1) == y).float().mean())}


class _Progress:
    """rich progress on stderr; plain lines when stderr is not a terminal."""

    def __init__(self, enabled: bool, epochs: int, title: str) -> None:
        self.enabled = enabled
        self.title = title
        self.rich = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        console = Console(stderr=True)
        self.console = console
        if console.is_terminal:
            # fixed-width columns so an 80-column terminal keeps the epoch count, the ETA and
            # the metrics (a flexible bar squeezed them to "float ━ 3… … 0…")
            self.rich = Progress(TextColumn("[bold]{task.description:<10.10}"),
                                 BarColumn(bar_width=12), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=console, transient=False)
            self.rich.start()
            self.epoch_task = self.rich.add_task(title, total=epochs, info="")
            self.batch_task = self.rich.add_task("  batches", total=1, info="")

    def note(self, msg: str) -> None:
        """A line on stderr above the bars (e.g. "resumed from ... at epoch 12")."""
        if self.rich:
            self.rich.console.print(msg, markup=False, highlight=False)
        elif self.enabled:
            self.console.print(msg, markup=False, highlight=False)

    def start_epoch(self, epoch: int, batches: int) -> None:
        if self.rich:
            self.rich.reset(self.batch_task, total=batches, description=f"  epoch {epoch + 1}")

    def batch(self) -> None:
        if self.rich:
            self.rich.advance(self.batch_task)

    def end_epoch(self, epoch: int, info: str) -> None:
        if self.rich:
            self.rich.update(self.epoch_task, completed=epoch + 1, info=info)
        elif self.enabled:
            # the phase named when it is not the model's own training ("teacher 1 epoch 3")
            lead = "" if self.title in ("training", "float") else f"{self.title} "
            self.console.print(f"{lead}epoch {epoch + 1}: {info}", highlight=False)

    def close(self) -> None:
        if self.rich:
            self.rich.stop()


def fit(model: nn.Module, epoch_data: Callable[[int], EpochData], cfg: TrainConfig,
        val: Optional[EpochData] = None, checkpoint_dir: str | Path | None = None,
        forward: Optional[Callable] = None, train_forward: Optional[Callable] = None,
        progress: bool = True, title: str = "training",
        on_epoch_end: Optional[Callable[[int], None]] = None,
        teacher_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        on_validated: Optional[Callable[[int, dict], None]] = None) -> TrainResult:
    """Train ``model`` in place; on return it holds the best weights (by ``cfg.monitor``).

    ``epoch_data(epoch)`` gives each epoch's (possibly augmented) training data. ``forward``
    (default ``model``) maps a batch to outputs for evaluation, ``train_forward`` for training
    (e.g. a QNet's logits). ``checkpoint_dir``: write ``last.pt`` every epoch and resume from it.
    ``teacher_fn`` maps each training batch, as the student sees it (after mixup), to teacher
    logits for distillation ("consistent" teaching). ``on_validated(epoch, row)`` sees each
    epoch's figures (``val_acc`` ...) once they are recorded; an exception it raises (a tuner
    pruning a hopeless trial) stops the training and propagates.
    """
    torch.set_num_threads(max(1, cfg.threads))
    forward = forward or model
    train_forward = train_forward or forward
    monitor = cfg.monitor if cfg.monitor != "auto" else ("val_loss" if cfg.loss == "mse" else "val_acc")
    if monitor.startswith("val") and val is None:
        monitor = "train_loss"
    higher = monitor.endswith("acc")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(epoch: int) -> float:
        if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
            return (epoch + 1) / cfg.warmup_epochs
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    res = TrainResult()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = -math.inf if higher else math.inf
    bad_epochs = 0
    start_epoch = 0
    ema = _ema_init(model) if cfg.ema > 0 else None
    steps = 0
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != cfg.fingerprint():
            raise TrainError(f"{ckpt}: checkpoint of a different training configuration; "
                             "delete it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        best_state, best = state["best_state"], state["best"]
        bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
        res.history = state["history"]
        res.best_epoch = state["best_epoch"]
        res.resumed_from = start_epoch
        steps = state.get("steps", 0)
        if ema is not None:
            ema = state["ema"]
    t0 = time.time() - (res.history[-1]["elapsed_s"] if res.history else 0.0)
    prog = _Progress(progress, cfg.epochs, title)
    if res.resumed_from:
        prog.note(f"{title}: resumed from {ckpt} at epoch {res.resumed_from + 1} of "
                  f"{cfg.epochs}")
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if res.history and bad_epochs >= cfg.patience > 0:
                res.stopped_early = True
                break
            seed_everything(cfg.seed * 100_003 + epoch)
            data = epoch_data(epoch)
            n = len(data.x)
            perm = torch.randperm(n)
            nb = max(1, math.ceil(n / cfg.batch_size))
            prog.start_epoch(epoch, nb)
            model.train()
            total, count = 0.0, 0
            correct, scored = 0, 0
            for b in range(nb):
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                if len(idx) < 2 and n > 1:
                    continue                    # a batch of one breaks batch norm
                batch = EpochData(data.x[idx], None if data.y is None else data.y[idx],
                                  None if data.teacher is None else data.teacher[idx])
                mix = None
                if cfg.mixup > 0 and cfg.loss == "ce":
                    lam = float(np.random.beta(cfg.mixup, cfg.mixup))
                    pairs = torch.randperm(len(idx))
                    mix = (lam, pairs)
                    xin = lam * batch.x + (1 - lam) * batch.x[pairs]
                else:
                    xin = batch.x
                if teacher_fn is not None:           # the teacher sees the student's input
                    batch.teacher = teacher_fn(xin).detach()
                out = train_forward(xin)
                loss = _loss(cfg, out, batch, mix, consistent=teacher_fn is not None)
                extra = getattr(model, "extra_loss", None)   # e.g. fusion's branch heads
                if extra is not None and cfg.loss == "ce":
                    loss = loss + extra(batch.y, mix)
                if not torch.isfinite(loss):
                    raise TrainError(f"epoch {epoch + 1}: loss became {float(loss)} (lower lr?)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                steps += 1
                if ema is not None:            # TF's warm-up: short memory at the start
                    _ema_update(ema, model, min(cfg.ema, (1 + steps) / (10 + steps)))
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                if cfg.loss == "ce" and mix is None and batch.y is not None:
                    correct += int((out.detach().argmax(1) == batch.y).sum())
                    scored += len(idx)
                prog.batch()
            sched.step()
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            model.eval()
            row = {"epoch": epoch + 1, "train_loss": round(total / max(count, 1), 5),
                   "lr": round(opt.param_groups[0]["lr"], 6)}
            if scored:
                row["train_acc"] = round(correct / scored, 5)
            live = None
            if ema is not None:                 # evaluate (and keep) the averaged weights
                live = {k: v.detach().clone() for k, v in model.state_dict().items()}
                model.load_state_dict(ema)
            if val is not None:
                ev = evaluate(forward, val.x, val.y, cfg.loss)
                row.update({f"val_{k}": round(v, 5) for k, v in ev.items()})
            row["elapsed_s"] = round(time.time() - t0, 2)
            res.history.append(row)
            metric = row[monitor]
            improved = metric > best if higher else metric < best
            if improved:
                best, res.best_epoch, bad_epochs = metric, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if live is not None:
                model.load_state_dict(live)
            info = "  ".join(f"{k} {v}" for k, v in row.items() if k not in ("epoch", "elapsed_s"))
            prog.end_epoch(epoch, info)
            if on_validated is not None:
                on_validated(epoch, dict(row))
            if ckpt is not None:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "best_state": best_state,
                            "best": best, "best_epoch": res.best_epoch, "bad_epochs": bad_epochs,
                            "epoch": epoch, "history": res.history, "ema": ema, "steps": steps,
                            "fingerprint": cfg.fingerprint()}, tmp)
                os.replace(tmp, ckpt)
        if res.history and bad_epochs >= cfg.patience > 0 and len(res.history) < cfg.epochs:
            res.stopped_early = True
    finally:
        prog.close()
    model.load_state_dict(best_state)
    model.eval()
    res.best_metric = float(best)
    res.epochs_run = len(res.history)
    res.seconds = round(time.time() - t0, 2)
    return res


def _ema_init(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def _ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v.detach(), alpha=1.0 - decay)
        else:
            ema[k].copy_(v)
