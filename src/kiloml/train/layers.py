"""Layers with TensorFlow/TFLite "SAME" padding, which PyTorch lacks for strided convolutions.

TFLite pads ``SAME`` convolutions asymmetrically (the extra row/column at the bottom/right);
PyTorch's symmetric ``padding=p`` gives different results for stride 2. These classes compute
TFLite's padding from the input size in ``forward``, so a model trained with them is exactly the
model kiloml exports (``kiloml.compress.quantize`` maps them to ``padding="SAME"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one axis as TFLite computes ``SAME``."""
    eff = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TFLite ``SAME`` padding (give ``padding`` 0 / leave it out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = same_pads(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_pads(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if t or b or left or right:
            x = F.pad(x, (left, right, t, b))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class Conv1dSame(nn.Conv1d):
    """``nn.Conv1d`` with TFLite ``SAME`` padding (exported as a 2-D convolution of height 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = same_pads(x.shape[-1], self.kernel_size[0], self.stride[0], self.dilation[0])
        if left or right:
            x = F.pad(x, (left, right))
        return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
