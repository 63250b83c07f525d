"""One module per op; importing this package registers them all in ``REGISTRY``."""

from kiloml.ir.ops import (add, conv2d, depthwise_conv2d, fully_connected,  # noqa: F401
                           pool2d, reshape, softmax)
from kiloml.ir.ops import (concatenation, logistic, mean, mul, pad, quantize,  # noqa: F401
                           relu, slice, tanh)
from kiloml.ir.ops.base import BY_CODE, REGISTRY, OpDef

__all__ = ["BY_CODE", "REGISTRY", "OpDef"]
