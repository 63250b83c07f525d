"""One module per op; importing this package registers them all in ``REGISTRY``."""

from kiloml.ir.ops import (add, conv2d, depthwise_conv2d, fully_connected,  # noqa: F401
                           pool2d, reshape, softmax)
from kiloml.ir.ops import concatenation, mean, mul, pad  # noqa: F401
from kiloml.ir.ops.base import BY_CODE, REGISTRY, OpDef

__all__ = ["BY_CODE", "REGISTRY", "OpDef"]
