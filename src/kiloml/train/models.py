"""The model zoo: small PyTorch models that lower to TFLite int8 ops (kiloml.compress.quantize).

=================  ==========================================================================
arch               model
=================  ==========================================================================
ds-cnn (-s/-m/-l)  depthwise-separable CNN for keyword spotting (Zhang et al. 2017, "Hello
                   Edge"; the MLPerf Tiny KWS reference is DS-CNN-S): conv 10x4 stride 2, then
                   depthwise 3x3 + pointwise 1x1 blocks, BN + ReLU after each, global average
                   pool, dense. S: 64 channels x 4 blocks, M: 172 x 4, L: 276 x 5.
cnn1d              1-D CNN for IMU / vibration windows: conv + BN + ReLU + max-pool blocks,
                   global average pool, dense.
dense              MLP on a feature vector (spectral features): dense + BN + ReLU layers.
fusion             intermediate fusion of a multi-sensor feature vector: one small dense
                   branch per sensor over that sensor's slice of the features (``sizes``,
                   filled in from the project's ``sensors`` DSP block), the branches merged
                   by concatenation, then a dense head (SLICE, CONCATENATION in int8).
autoencoder        the MLPerf Tiny anomaly-detection autoencoder (640 in, 4 x 128, bottleneck
                   8, 4 x 128, 640 out; BN + ReLU), reconstruction error = anomaly score.
mobilenet-v1       MobileNetV1 (width 0.25 by default; MLPerf Tiny visual wake words, 96x96x3).
resnet8            the MLPerf Tiny image-classification ResNet-8 (CIFAR-10, 32x32x3).
kmeans             not a network: ``KMeansScorer``, distance to the nearest cluster of normal
                   feature vectors (Edge Impulse's anomaly block), numpy only.
=================  ==========================================================================

Every convolution uses TFLite ``SAME`` padding (``Conv2dSame``), so training and deployment
compute the same function. ``input_layout(arch)`` says how a feature array (what a DSP block
produces per window) becomes the model's input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kiloml.errors import KilomlError
from kiloml.train.layers import Conv1dSame, Conv2dSame

DS_CNN_SIZES = {"s": (64, 4), "m": (172, 4), "l": (276, 5)}
ARCHS = ("ds-cnn", "ds-cnn-s", "ds-cnn-m", "ds-cnn-l", "cnn1d", "dense", "fusion",
         "autoencoder", "mobilenet-v1", "resnet8", "kmeans")


class ModelError(KilomlError):
    """Unknown architecture or parameters that do not fit the input."""


def _conv_bn(cin: int, cout: int, k, stride=1, groups: int = 1) -> list[nn.Module]:
    return [Conv2dSame(cin, cout, k, stride=stride, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class DSCNN(nn.Module):
    """DS-CNN on (N, 1, frames, coefficients) features."""

    def __init__(self, num_classes: int, channels: int = 64, blocks: int = 4,
                 first_kernel: tuple[int, int] = (10, 4), first_stride: int = 2,
                 dropout: float = 0.2, final_dropout: float = 0.4) -> None:
        super().__init__()
        layers = _conv_bn(1, channels, tuple(first_kernel), stride=first_stride)
        layers.append(nn.Dropout(dropout))
        for _ in range(blocks):
            layers += _conv_bn(channels, channels, 3, groups=channels)
            layers += _conv_bn(channels, channels, 1)
        layers.append(nn.Dropout(final_dropout))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class CNN1D(nn.Module):
    """1-D CNN on (N, axes, frames) windows."""

    def __init__(self, in_channels: int, num_classes: int, channels=(16, 32, 64), kernel: int = 5,
                 first_kernel: int | None = None, first_stride: int = 1, pool: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, c in enumerate(channels):
            k = first_kernel if (i == 0 and first_kernel) else kernel
            s = first_stride if i == 0 else 1
            layers += [Conv1dSame(cin, c, k, stride=s, bias=False), nn.BatchNorm1d(c), nn.ReLU()]
            if pool > 1 and i < len(channels) - 1:
                layers.append(nn.MaxPool1d(pool))
            cin = c
        layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class Dense(nn.Module):
    """MLP on (N, features)."""

    def __init__(self, in_features: int, num_classes: int, hidden=(64, 32),
                 dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_features
        for h in hidden:
            layers += [nn.Linear(cin, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(),
                       nn.Dropout(dropout)]
            cin = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _dense_bn(cin: int, hidden, dropout: float) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(cin, int(h), bias=False), nn.BatchNorm1d(int(h)), nn.ReLU(),
                   nn.Dropout(dropout)]
        cin = int(h)
    return layers, cin


def heads_ce(outs, keeps, y: torch.Tensor, mix=None) -> list[torch.Tensor]:
    """The cross-entropy of each head's logits in ``outs`` against ``y`` (``mix``: (lambda,
    permutation) of a mixup batch), each the mean over the windows its ``keeps`` mask keeps
    (0 when none; ``keeps`` None or a None mask: every window)."""

    def ce(o, keep):
        def one(t):
            if keep is None:
                return nn.functional.cross_entropy(o, t)
            per = nn.functional.cross_entropy(o, t, reduction="none")
            return (per * keep).sum() / keep.sum().clamp(min=1)
        if mix is None:
            return one(y)
        lam, perm = mix
        return lam * one(y) + (1 - lam) * one(y[perm])

    keeps = keeps or [None] * len(outs)
    return [ce(o, k) for o, k in zip(outs, keeps)]


class FusionBranches(nn.Module):
    """Intermediate fusion on (N, features) where the features are the sensors' own, back to
    back (``sizes[k]`` values of sensor k): branch k (dense + BN + ReLU layers of widths
    ``branch``) reads ``x[:, a_k:b_k]``, the branches' outputs are concatenated and a dense
    head (``hidden``) classifies. With one size it is a dense network with one more layer.

    ``aux`` > 0 (several sensors): in training only, each branch also has its own
    classifier (linear, or with the hidden layers ``head_hidden`` first; it reads the
    branch's output, or with ``head_from = "features"`` the sensor's features directly, a
    separate network) and the loss adds ``aux`` x the mean of their cross-entropies (``extra_loss``),
    so that each branch alone tells the classes apart and the head, trained with sensor
    dropout, keeps a good answer when a sensor is zeroed. Evaluation mode runs only the fused
    path, so by default the auxiliary classifiers are not part of the exported model;
    ``BranchHeads(model)`` is the module that exports them too (``[model] missing =
    "branch-head"``: the deployed model answers with the remaining sensor's own head)."""

    def __init__(self, in_features: int, num_classes: int, sizes=None, branch=(16,),
                 hidden=(32,), dropout: float = 0.2, aux: float = 0.0,
                 head_hidden=(), aux_skip_missing: bool = False,
                 head_from: str = "branch") -> None:
        super().__init__()
        sizes = [int(in_features)] if sizes is None else [int(v) for v in sizes]
        if not sizes or min(sizes) < 1 or sum(sizes) != in_features:
            raise ModelError(f"fusion: sensor feature sizes {sizes} do not add up to the "
                             f"{in_features} features")
        if not branch:
            raise ModelError("fusion: branch needs at least one layer width")
        self.bounds = []
        k = 0
        for n in sizes:
            self.bounds.append((k, k + n))
            k += n
        if aux < 0:
            raise ModelError(f"fusion: aux must be >= 0, not {aux}")
        branches = []
        merged = 0
        outs = []
        for n in sizes:
            layers, out = _dense_bn(n, branch, dropout)
            branches.append(nn.Sequential(*layers))
            merged += out
            outs.append(out)
        self.branches = nn.ModuleList(branches)
        layers, cin = _dense_bn(merged, hidden, dropout)
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)
        self.aux = float(aux) if len(sizes) > 1 else 0.0
        head_hidden = [int(h) for h in (head_hidden or ())]
        if head_hidden and min(head_hidden) < 1:
            raise ModelError(f"fusion: head_hidden widths must be >= 1, not {head_hidden}")
        if head_from not in ("branch", "features"):
            raise ModelError(f"fusion: head_from must be 'branch' or 'features', not "
                             f"{head_from!r}")
        self.head_from = head_from
        ins = outs if head_from == "branch" else sizes
        self.aux_heads = nn.ModuleList([self._aux_head(o, head_hidden, num_classes, dropout)
                                        for o in ins]) if self.aux > 0 else None
        self._aux_out: list[torch.Tensor] | None = None
        self.aux_skip_missing = bool(aux_skip_missing)
        self.missing_input: torch.Tensor | None = None   # set_missing_input
        self._aux_keep: list[torch.Tensor] | None = None

    def set_missing_input(self, x: torch.Tensor | np.ndarray) -> None:
        """The model input (features) of a window whose sensors' channels are all zeros:
        with ``aux_skip_missing``, a training window whose sensor k's slice equals this one's
        had that sensor dropped (sensor dropout zeroes the raw channels before the DSP), and
        branch k's own classifier is not trained on it. Not part of the state (a training
        aid; the exported model is unchanged)."""
        z = torch.as_tensor(np.asarray(x, np.float32)).reshape(-1)
        if z.numel() != self.bounds[-1][1]:
            raise ModelError(f"fusion: the missing-sensor input has {z.numel()} values, the "
                             f"model reads {self.bounds[-1][1]}")
        self.missing_input = z

    @staticmethod
    def _aux_head(cin: int, head_hidden: list[int], num_classes: int,
                  dropout: float) -> nn.Module:
        """A branch's own classifier: one linear layer (``head_hidden`` empty, the default),
        or dense + BN + ReLU layers of those widths and then the linear layer."""
        if not head_hidden:
            return nn.Linear(cin, num_classes)
        layers, cin = _dense_bn(cin, head_hidden, dropout)
        return nn.Sequential(*layers, nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.bounds) == 1:
            return self.classifier(self.head(self.branches[0](x)))
        xs = [x[:, a:b] for a, b in self.bounds]
        parts = [br(v) for v, br in zip(xs, self.branches)]
        if self.training and self.aux_heads is not None:
            self._aux_out = [h(y) for h, y in zip(self.aux_heads, self._head_inputs(xs, parts))]
            self._aux_keep = None
            if self.aux_skip_missing and self.missing_input is not None:
                z = self.missing_input.to(x.device, x.dtype)
                # a dropped sensor's slice is the DSP of zeros, bit for bit: compare with a
                # margin far below the features' spread (normalized, ~1)
                self._aux_keep = [(x[:, a:b] - z[a:b]).abs().amax(dim=1) > 1e-4
                                  for a, b in self.bounds]
        return self.classifier(self.head(torch.cat(parts, dim=1)))

    def extra_loss(self, y: torch.Tensor, mix=None) -> torch.Tensor | float:
        """``aux`` x the mean cross-entropy of the branches' own classifiers on the last
        training forward (``mix``: (lambda, permutation) of a mixup batch); 0 without.
        With ``aux_skip_missing`` (and ``set_missing_input``) branch k's term is the mean
        over the windows whose sensor k was not dropped (0 when all were)."""
        outs, self._aux_out = self._aux_out, None
        keeps, self._aux_keep = self._aux_keep, None
        if not outs or y is None:
            return 0.0
        return self.aux * sum(heads_ce(outs, keeps, y, mix)) / len(outs)

    def all_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(fused logits, branch 0's own classifier's logits, branch 1's, ...) of one batch;
        the fused head is computed last, so it is the last operation of a lowered model."""
        if self.aux_heads is None:
            raise ModelError("fusion: the branch heads need aux > 0 and several sensors")
        xs = [x[:, a:b] for a, b in self.bounds]
        parts = [br(v) for v, br in zip(xs, self.branches)]
        own = [h(y) for h, y in zip(self.aux_heads, self._head_inputs(xs, parts))]
        return (self.classifier(self.head(torch.cat(parts, dim=1))), *own)

    def _head_inputs(self, xs: list[torch.Tensor],
                     parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """What each sensor's own classifier reads: its branch's output (``head_from =
        "branch"``) or its slice of the features (``"features"``: a network of its own that
        shares nothing with the fused path)."""
        return parts if self.head_from == "branch" else xs


class BranchHeads(nn.Module):
    """A trained ``FusionBranches`` (with ``aux`` > 0) whose forward returns every head: the
    fused head first, then each sensor branch's own classifier in sensor order. Lowering it
    (kiloml.compress.lowering.lower) gives one int8 graph with one output per head."""

    def __init__(self, model: FusionBranches) -> None:
        super().__init__()
        if not isinstance(model, FusionBranches) or model.aux_heads is None:
            raise ModelError("branch heads: the model must be intermediate fusion (arch "
                             "fusion) with several sensors and aux > 0")
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.all_heads(x)


class FallbackHeads(nn.Module):
    """A trained fused model and, for each sensor, a model of its own trained apart on that
    sensor's slice of the features (``[model] missing = "fallback"``), as one module whose
    forward returns (fused(x), m_0(x[:, a_0:b_0]), m_1(x[:, a_1:b_1]), ...): lowering it
    (kiloml.compress.lowering.lower) gives one int8 graph with one output per head, the
    same shape of graph as ``BranchHeads``. The sensors' models share nothing with the fused
    path but the graph's input (its quantization).

    ``fallbacks``: (model, (a, b)) per sensor, in sensor order; each model reads its slice
    as the fused model's normalizer gives it (``fold_input_affine`` first when its own
    normalizer differs). The fused head is computed last (the lowering's convention)."""

    def __init__(self, fused: nn.Module, fallbacks) -> None:
        super().__init__()
        if len(fallbacks) < 2:
            raise ModelError("fallback heads: needs a model per sensor for two or more sensors")
        self.fused = fused
        self.sensor_models = nn.ModuleList([m for m, _ in fallbacks])
        self.bounds = [(int(a), int(b)) for _, (a, b) in fallbacks]
        if any(a < 0 or b <= a for a, b in self.bounds):
            raise ModelError(f"fallback heads: bad feature ranges {self.bounds}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        own = [m(x[:, a:b]) for m, (a, b) in zip(self.sensor_models, self.bounds)]
        return (self.fused(x), *own)


def fold_input_affine(model: nn.Module, scale: np.ndarray, shift: np.ndarray) -> nn.Module:
    """A copy of ``model`` (a ``Dense``) that reads ``u`` where it read ``u * scale + shift``
    (per feature): folded into its first linear layer (W' = W diag(scale), bias' = bias +
    W shift). This is how a sensor's model trained with its own normalizer reads the fused
    model's normalized features: x_own = (f - m_own) / s_own = u * s_fused / s_own +
    (m_fused - m_own) / s_own for u = (f - m_fused) / s_fused. Exact in real arithmetic;
    identity when the two normalizers agree."""
    import copy

    if not isinstance(model, Dense):
        raise ModelError("fallback heads: a sensor's model must be dense (a feature vector)")
    m = copy.deepcopy(model)
    lin = m.features[0] if len(m.features) else m.classifier
    scale = torch.as_tensor(np.asarray(scale, np.float32)).reshape(-1)
    shift = torch.as_tensor(np.asarray(shift, np.float32)).reshape(-1)
    n = lin.weight.shape[1]
    scale = scale.expand(n) if scale.numel() == 1 else scale
    shift = shift.expand(n) if shift.numel() == 1 else shift
    if scale.numel() != n or shift.numel() != n:
        raise ModelError(f"fallback heads: {scale.numel()} scales for {n} inputs")
    if bool((scale == 1).all()) and bool((shift == 0).all()):
        return m
    with torch.no_grad():
        w = lin.weight.detach().clone()
        extra = w.double() @ shift.double()
        lin.weight.copy_(w * scale[None, :])
        if lin.bias is None:
            lin.bias = nn.Parameter(extra.float())
        else:
            lin.bias.add_(extra.float())
    return m


class AutoEncoder(nn.Module):
    """MLPerf Tiny AD autoencoder: reconstructs its (N, features) input."""

    def __init__(self, in_features: int = 640, hidden: int = 128, bottleneck: int = 8,
                 depth: int = 4) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Linear(i, o, bias=False), nn.BatchNorm1d(o), nn.ReLU()]

        layers: list[nn.Module] = []
        cin = in_features
        for _ in range(depth):
            layers += block(cin, hidden)
            cin = hidden
        layers += block(cin, bottleneck)
        cin = bottleneck
        for _ in range(depth):
            layers += block(cin, hidden)
            cin = hidden
        layers.append(nn.Linear(cin, in_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MobileNetV1(nn.Module):
    """MobileNetV1 on (N, C, H, W) images; ``alpha`` scales every layer's width."""

    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 2, in_channels: int = 3, alpha: float = 0.25) -> None:
        super().__init__()
        c0 = max(8, int(32 * alpha))
        layers = _conv_bn(in_channels, c0, 3, stride=2)
        cin = c0
        for c, s in self.CFG:
            c = max(8, int(c * alpha))
            layers += _conv_bn(cin, cin, 3, stride=s, groups=cin)
            layers += _conv_bn(cin, c, 1)
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dSame(cin, cout, 3, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2dSame(cout, cout, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = Conv2dSame(cin, cout, 1, stride=stride) if (stride != 1 or cin != cout) \
            else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNet8(nn.Module):
    """MLPerf Tiny ResNet-8 on (N, 3, 32, 32)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, width, 3))
        self.stack1 = _ResBlock(width, width, 1)
        self.stack2 = _ResBlock(width, 2 * width, 2)
        self.stack3 = _ResBlock(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


# ---------------------------------------------------------------- k-means anomaly scorer


class KMeansScorer:
    """Anomaly score = distance to the nearest cluster centre of normal data, in units of that
    cluster's RMS radius (so tight and loose clusters compare), on standardized features.

    Parameters in the constructor; ``fit`` sets ``mean_``, ``std_``, ``centers_``,
    ``radius_`` (scikit-learn style). k-means++ initialisation, Lloyd iterations, fixed seed.
    """

    def __init__(self, n_clusters: int = 16, iterations: int = 100, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.iterations = iterations
        self.seed = seed

    def _std(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64).reshape(len(x), -1) - self.mean_) / self.std_

    def fit(self, x: np.ndarray) -> "KMeansScorer":
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        if len(x) < 2:
            raise ModelError("k-means needs at least two training vectors")
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.std_ = np.where(sd > 1e-12, sd, 1.0)
        z = self._std(x)
        k = min(self.n_clusters, len(z))
        rng = np.random.default_rng(self.seed)
        centers = [z[rng.integers(len(z))]]
        for _ in range(1, k):
            d2 = np.min(((z[:, None] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else None
            centers.append(z[rng.choice(len(z), p=p)])
        c = np.array(centers)
        for _ in range(self.iterations):
            assign = np.argmin(((z[:, None] - c[None]) ** 2).sum(-1), axis=1)
            new = np.array([z[assign == j].mean(0) if (assign == j).any() else c[j]
                            for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        assign = np.argmin(((z[:, None] - c[None]) ** 2).sum(-1), axis=1)
        radius = np.array([np.sqrt(((z[assign == j] - c[j]) ** 2).sum(-1).mean())
                           if (assign == j).sum() > 1 else 0.0 for j in range(k)])
        positive = radius[radius > 0]
        floor = float(np.median(positive)) if positive.size else 1.0
        self.centers_ = c
        self.radius_ = np.maximum(radius, 0.1 * floor)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score per vector: higher = more anomalous (about 1 inside a cluster)."""
        z = self._std(x)
        d = np.sqrt(((z[:, None] - self.centers_[None]) ** 2).sum(-1)) / self.radius_[None]
        return d.min(axis=1)

    def state(self) -> dict[str, Any]:
        return {"n_clusters": self.n_clusters, "iterations": self.iterations, "seed": self.seed,
                "mean": self.mean_.tolist(), "std": self.std_.tolist(),
                "centers": self.centers_.tolist(), "radius": self.radius_.tolist()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "KMeansScorer":
        k = cls(d["n_clusters"], d["iterations"], d["seed"])
        k.mean_, k.std_ = np.array(d["mean"]), np.array(d["std"])
        k.centers_, k.radius_ = np.array(d["centers"]), np.array(d["radius"])
        return k


# ---------------------------------------------------------------- registry


def input_layout(arch: str, feature_shape: tuple[int, ...]) -> str:
    """How per-window features become model input: ``image1`` (H, W) -> (1, H, W);
    ``chw`` (H, W, C) -> (C, H, W); ``seq`` (frames, axes) -> (axes, frames); ``flat``."""
    if arch in ("dense", "fusion", "autoencoder", "kmeans"):
        return "flat"
    if arch == "cnn1d":
        if len(feature_shape) == 1:
            return "seq1"
        return "seq"
    if len(feature_shape) == 3:
        return "chw"
    if len(feature_shape) == 2:
        return "image1"
    raise ModelError(f"{arch} needs 2-D or 3-D features, got shape {list(feature_shape)}")


def to_model_input(x: np.ndarray, layout: str) -> np.ndarray:
    """(N, *feature_shape) -> (N, *model_input_shape), float32. Byte order is unchanged for
    ``image1``, ``seq1`` and ``flat``; ``seq`` and ``chw`` transpose to channels first (the int8
    graph reads the features in their original channels-last order)."""
    x = np.asarray(x, np.float32)
    if layout == "image1":
        return x[:, None]
    if layout == "chw":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout == "seq":
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    if layout == "seq1":
        return x[:, None, :]
    return x.reshape(len(x), -1)


def build_model(arch: str, feature_shape: tuple[int, ...], num_classes: int,
                **params: Any) -> nn.Module:
    """A zoo model for features of ``feature_shape`` (one window, no batch axis)."""
    feature_shape = tuple(int(v) for v in feature_shape)
    try:
        if arch.startswith("ds-cnn"):
            size = params.pop("size", arch[7:] if len(arch) > 6 else "s")
            if size not in DS_CNN_SIZES:
                raise ModelError(f"ds-cnn size must be s, m or l, not {size!r}")
            ch, blocks = DS_CNN_SIZES[size]
            params.setdefault("channels", ch)
            params.setdefault("blocks", blocks)
            return DSCNN(num_classes, **params)
        if arch == "cnn1d":
            axes = feature_shape[1] if len(feature_shape) == 2 else 1
            return CNN1D(axes, num_classes, **params)
        if arch == "dense":
            return Dense(int(np.prod(feature_shape)), num_classes, **params)
        if arch == "fusion":
            return FusionBranches(int(np.prod(feature_shape)), num_classes, **params)
        if arch == "autoencoder":
            return AutoEncoder(int(np.prod(feature_shape)), **params)
        if arch == "mobilenet-v1":
            cin = feature_shape[2] if len(feature_shape) == 3 else 1
            return MobileNetV1(num_classes, cin, **params)
        if arch == "resnet8":
            cin = feature_shape[2] if len(feature_shape) == 3 else 1
            return ResNet8(num_classes, cin, **params)
    except TypeError as e:
        raise ModelError(f"{arch}: bad model parameter ({e})") from None
    if arch == "kmeans":
        raise ModelError("kmeans is not a network: use KMeansScorer")
    raise ModelError(f"unknown model arch {arch!r} (have: {', '.join(ARCHS)})")
