"""Training loop mechanics: fixed seeds, resume after an interruption gives the same weights as
an uninterrupted run, early stopping, checkpoint fingerprints, distillation loss; metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiloml.train.loop import EpochData, TrainConfig, TrainError, fit  # noqa: E402
from kiloml.train.metrics import (classification_report, confusion_matrix, roc_auc,  # noqa: E402
                                  roc_curve)


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return torch.as_tensor(x), torch.as_tensor(y)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, 3))


X, Y = _data()
XV, YV = _data(128, 1)


def _ed(epoch):
    return EpochData(X, Y)


def _weights(m):
    return torch.cat([p.detach().reshape(-1) for p in m.state_dict().values()
                      if p.dtype.is_floating_point])


def test_same_seed_same_model_and_it_learns():
    cfg = TrainConfig(epochs=12, batch_size=32, lr=2e-2, seed=3)
    a, b = _model(), _model()
    ra = fit(a, _ed, cfg, val=EpochData(XV, YV), progress=False)
    fit(b, _ed, cfg, val=EpochData(XV, YV), progress=False)
    assert torch.equal(_weights(a), _weights(b))
    assert ra.best_metric > 0.8 and ra.epochs_run == 12
    assert [h["epoch"] for h in ra.history] == list(range(1, 13))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, ema, capsys):
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-2, seed=5, ema=ema)
    ref = _model()
    fit(ref, _ed, cfg, val=EpochData(XV, YV), progress=False)

    class Stop(Exception):
        pass

    def interrupted(epoch):
        if epoch == 3:
            raise Stop
        return EpochData(X, Y)

    m = _model()
    with pytest.raises(Stop):
        fit(m, interrupted, cfg, val=EpochData(XV, YV), checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "last.pt").is_file()
    m2 = _model(seed=99)                          # different init: everything comes from disk
    res = fit(m2, _ed, cfg, val=EpochData(XV, YV), checkpoint_dir=tmp_path, progress=True,
              title="float")
    assert res.resumed_from == 3 and res.epochs_run == 6
    assert torch.equal(_weights(m2), _weights(ref))
    assert "float: resumed from" in capsys.readouterr().err   # the user is told


def test_checkpoint_of_another_recipe_is_refused(tmp_path):
    fit(_model(), _ed, TrainConfig(epochs=1, seed=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(TrainError, match="different training configuration"):
        fit(_model(), _ed, TrainConfig(epochs=1, seed=2), checkpoint_dir=tmp_path,
            progress=False)


def test_early_stopping_restores_the_best_weights():
    cfg = TrainConfig(epochs=50, batch_size=32, lr=1e-2, patience=2, seed=0)
    m = _model()
    res = fit(m, _ed, cfg, val=EpochData(XV, YV[torch.randperm(len(YV))]), progress=False)
    assert res.stopped_early and res.epochs_run < 50
    assert res.epochs_run - res.best_epoch == 2


def test_distillation_pulls_the_student_towards_the_teacher():
    """alpha = 1: the student matches a teacher whose logits disagree with the labels, far
    closer than a student trained on the labels alone (alpha = 0)."""
    teacher = X @ torch.randn(8, 3, generator=torch.Generator().manual_seed(0)) * 2

    def kl(model):
        model.eval()
        with torch.no_grad():
            p = torch.log_softmax(model(X) / 2, -1)
        return float(torch.nn.functional.kl_div(p, torch.softmax(teacher / 2, -1),
                                                 reduction="batchmean"))

    out = {}
    for alpha in (0.0, 1.0):
        m = _model()
        cfg = TrainConfig(epochs=15, batch_size=64, lr=1e-2, distill_alpha=alpha, temperature=2.0)
        fit(m, lambda e: EpochData(X, Y, teacher), cfg, progress=False)
        out[alpha] = kl(m)
    assert out[1.0] < 0.25 * out[0.0]


def test_mse_loss_for_autoencoders():
    m = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 8))
    res = fit(m, lambda e: EpochData(X), TrainConfig(epochs=20, loss="mse", lr=1e-2),
              val=EpochData(XV), progress=False)
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]


def test_plain_progress_lines_on_stderr(capfd):
    fit(_model(), _ed, TrainConfig(epochs=2), progress=True)
    err = capfd.readouterr().err
    assert "epoch 1:" in err and "epoch 2:" in err and "train_loss" in err


# ---------------------------------------------------------------- metrics


def test_classification_report_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 0, 2])
    r = classification_report(y, p, ["a", "b", "c"])
    assert r["accuracy"] == round(4 / 6, 4) and r["n"] == 6
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["per_class"]["b"] == {"precision": round(2 / 3, 4), "recall": 1.0,
                                   "f1": 0.8, "support": 2}
    assert r["per_class"]["c"]["precision"] == 1.0 and r["per_class"]["c"]["recall"] == 0.5
    assert confusion_matrix(y, p, 3).sum() == 6


def test_roc_auc_equals_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)               # rounded: many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert roc_auc(y, s) == pytest.approx(pairs, abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    fpr, tpr, _ = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.1, 0.2])


def test_weight_averaging_returns_the_averaged_weights():
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-2, seed=1, ema=0.5)
    a = _model()
    fit(a, _ed, cfg, val=EpochData(XV, YV), progress=False)
    b = _model()
    fit(b, _ed, TrainConfig(epochs=3, batch_size=32, lr=5e-2, seed=1), val=EpochData(XV, YV),
        progress=False)
    assert not torch.equal(_weights(a), _weights(b))    # same trajectory, averaged weights


def test_mixup_trains_and_is_reproducible():
    cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-2, seed=3, mixup=0.2)
    a, b = _model(), _model()
    ra = fit(a, _ed, cfg, val=EpochData(XV, YV), progress=False)
    fit(b, _ed, cfg, val=EpochData(XV, YV), progress=False)
    assert torch.equal(_weights(a), _weights(b))
    assert ra.history[-1]["train_loss"] < ra.history[0]["train_loss"]
    assert ra.best_metric > 0.7, ra.best_metric


def test_on_validated_sees_each_epoch_and_can_stop_the_training():
    cfg = TrainConfig(epochs=5, batch_size=64, lr=1e-2)
    rows = []
    fit(_model(), _ed, cfg, val=EpochData(XV, YV), progress=False,
        on_validated=lambda e, r: rows.append((e, r)))
    assert [e for e, _ in rows] == [0, 1, 2, 3, 4]
    assert all("val_acc" in r and r["epoch"] == e + 1 for e, r in rows)

    class Stop(Exception):
        pass

    def stop_at_2(epoch, row):
        if epoch == 1:
            raise Stop(row["val_acc"])

    seen = []
    with pytest.raises(Stop):
        fit(_model(), lambda e: seen.append(e) or _ed(e), cfg, val=EpochData(XV, YV),
            progress=False, on_validated=stop_at_2)
    assert seen == [0, 1]  # no epoch after the one that raised
