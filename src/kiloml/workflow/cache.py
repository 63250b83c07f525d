"""Content-addressed caching of step results inside a project (``.kiloml/cache``).

A step's result is keyed by a hash of everything it depends on (input bytes, settings, seed):
when none of them changed the stored result is reused, when any changed the key differs and
the step runs again. Entries are written atomically; a corrupt or unreadable entry counts as
missing (recomputed), never as an error. Delete the folder to start afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kiloml.fileio import atomic_open

CACHE_DIR = ".kiloml/cache"


def content_hash(*parts: Any) -> str:
    """A short stable hash of bytes and JSON-able values (dict keys sorted)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else
                 json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def cache_path(root: str | Path, kind: str, key: str) -> Path:
    return Path(root) / CACHE_DIR / f"{kind}-{key}.npz"


def load_arrays(path: Optional[Path]) -> Optional[dict[str, np.ndarray]]:
    """The arrays stored at ``path``, or None when absent or unreadable."""
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb", make_parents=True) as f:
        np.savez(f, **arrays)
