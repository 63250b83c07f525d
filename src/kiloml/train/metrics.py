"""Classification and anomaly-detection metrics (numpy only, no scikit-learn).

Definitions: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean; a
class with no predictions (or no samples) gets 0 for the undefined ratio. ROC AUC is the
Mann-Whitney statistic: the probability that a random positive scores above a random negative,
ties counting one half.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def per_class(conf: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    out = {}
    tp = np.diag(conf).astype(np.float64)
    pred = conf.sum(axis=0).astype(np.float64)
    true = conf.sum(axis=1).astype(np.float64)
    for i, lab in enumerate(labels):
        p = tp[i] / pred[i] if pred[i] else 0.0
        r = tp[i] / true[i] if true[i] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[lab] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                    "support": int(true[i])}
    return out


def classification_report(y_true: np.ndarray, y_pred: np.ndarray,
                          labels: Sequence[str]) -> dict:
    """accuracy, balanced accuracy (mean recall), macro F1, per_class, confusion, n."""
    conf = confusion_matrix(y_true, y_pred, len(labels))
    pc = per_class(conf, labels)
    present = [v for v in pc.values() if v["support"] > 0]
    return {
        "accuracy": round(accuracy(y_true, y_pred), 4),
        "balanced_accuracy": round(float(np.mean([v["recall"] for v in present])), 4)
        if present else 0.0,
        "macro_f1": round(float(np.mean([v["f1"] for v in present])), 4) if present else 0.0,
        "per_class": pc,
        "confusion": conf.tolist(),
        "labels": list(labels),
        "n": int(len(np.asarray(y_true))),
    }


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; ``y_true`` 1 = positive (anomalous), 0 = negative."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, np.float64)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        raise ValueError("ROC AUC needs both positive and negative samples")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):                      # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds decreasing."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, np.float64)
    thr = np.unique(s)[::-1]
    tpr = np.array([(s[y] >= t).mean() for t in thr])
    fpr = np.array([(s[~y] >= t).mean() for t in thr])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thr]
