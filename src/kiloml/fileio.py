"""Writing files so that a failure never leaves a half-written file behind.

Files are written to a temporary file in the target's directory and renamed over it. The
temporary file is created 0600 (``tempfile.mkstemp``); before the rename it gets the mode a
plain ``open()`` would have given (0666 minus the user's umask), so kiloml's files are as
readable as any other file the user creates.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np


def umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", make_parents: bool = False,
                **kw) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` (with the
    user's umask applied), on any failure it is removed and ``path`` is untouched."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (parents created)."""
    with atomic_open(path, "w", make_parents=True, encoding="utf-8", newline="") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes, make_parents: bool = False) -> None:
    with atomic_open(path, "wb", make_parents=make_parents) as f:
        f.write(data)


def atomic_save_npy(path: str | Path, arr: np.ndarray, make_parents: bool = False) -> None:
    """Save ``arr`` as .npy atomically."""
    with atomic_open(path, "wb", make_parents=make_parents) as f:
        np.save(f, arr, allow_pickle=False)
