"""Compression: quantization into the int8 IR (PTQ, QAT), pruning, distillation, variants."""

import kiloml.train  # noqa: F401  (sets the OpenMP wait policy before torch is imported)
