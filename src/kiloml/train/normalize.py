"""Feature normalization fitted on the training split (the device applies it before quantizing)."""

from __future__ import annotations

import numpy as np


class Normalizer:
    """x' = (x - mean) / std with ``kind`` none | global (one mean/std) | feature (per value)."""

    def __init__(self, kind: str = "none", mean=0.0, std=1.0) -> None:
        self.kind = kind
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    @classmethod
    def fit(cls, kind: str, x: np.ndarray) -> "Normalizer":
        if kind == "none" or len(x) == 0:
            return cls("none")
        if kind == "global":
            sd = float(x.std())
            return cls(kind, float(x.mean()), sd if sd > 0 else 1.0)
        sd = x.std(axis=0)
        return cls(kind, x.mean(axis=0), np.where(sd > 1e-12, sd, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return np.asarray(x, np.float32)
        return ((x - self.mean) / self.std).astype(np.float32)

    def state(self) -> dict:
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, d: dict) -> "Normalizer":
        return cls(d["kind"], d["mean"], d["std"])

