"""Model zoo (PyTorch), training loop, metrics and the train/test pipeline.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless already set: PyTorch's OpenMP
threads otherwise spin while waiting, and on a small machine shared with other work (two cores
here) that made a training epoch 4x slower than with idle-waiting threads (measured: 21 s vs
5 s for a DS-CNN-S epoch on 3,178 clips while other jobs ran).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
