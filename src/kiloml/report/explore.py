"""The feature explorer's projection: 2-D PCA with fixed signs and a fixed subsample, so the
same features always give the same picture."""

from __future__ import annotations

import numpy as np


def pca2(fit: np.ndarray, *apply: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Fit a 2-component PCA on the rows of ``fit`` (N, D) and project ``fit`` and every array
    of ``apply`` -> (projections, explained variance ratio of the two components). Each
    component's sign makes its largest-magnitude loading positive (SVD leaves it free)."""
    x = np.asarray(fit, np.float64).reshape(len(fit), -1)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comp = vt[:2]
    if comp.shape[0] < 2:  # one feature: a zero second axis
        comp = np.vstack([comp, np.zeros_like(comp)])
        s = np.concatenate([s, [0.0]])
    signs = np.sign(comp[np.arange(2), np.abs(comp).argmax(axis=1)])
    comp = comp * np.where(signs == 0, 1.0, signs)[:, None]
    var = s ** 2
    explained = [float(v / var.sum()) if var.sum() > 0 else 0.0 for v in var[:2]]
    out = [(np.asarray(a, np.float64).reshape(len(a), -1) - mean) @ comp.T
           for a in (fit,) + apply]
    return out, explained


def subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` items, the same for the same arguments."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
