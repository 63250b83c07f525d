"""Where a data set lives: its root directory and its index file.

Every data function takes a :class:`Dataset` (where) and a
:class:`kiloml.data.settings.DataSettings` (what), never a project. The index stores each
source file relative to the root, also when the file is outside it (``../data/x.wav``), so a
root copied or moved together with its data, in the same relative layout, still finds every
source. Only a file on another drive (Windows) is stored as an absolute path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kiloml.data.index import DatasetIndex
from kiloml.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """A data set's ``root`` (the directory relative to which source paths are resolved) and
    its ``index_path`` (the CSV index, see kiloml.data.index)."""

    root: Path
    index_path: Path

    def __init__(self, root: str | Path, index_path: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "index_path", Path(index_path))

    def resolve(self, source: str) -> Path:
        """The file of an index ``source`` entry (relative entries are relative to the root)."""
        p = Path(source)
        return p if p.is_absolute() else self.root / p

    def source_name(self, path: str | Path) -> str:
        """How the index names ``path``: relative to the root with '/' separators (``..``
        steps for files outside it); absolute only when no relative path exists (another
        drive). Symbolic links are kept as the user laid them out, not resolved."""
        target = os.path.abspath(path)
        try:
            rel = os.path.relpath(target, os.path.abspath(self.root))
        except ValueError:
            return Path(target).as_posix()
        return Path(rel).as_posix()

    def location(self, source: str) -> str:
        """The canonical absolute path of an index ``source`` entry (symbolic links resolved),
        to recognise one file written in different forms (relative, absolute, ``..``)."""
        return os.path.realpath(self.resolve(source))

    def load_index(self) -> DatasetIndex:
        return DatasetIndex.load(self.index_path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the index for a read-modify-write (released when the process
        ends, so a crash leaves no stale lock)."""
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.index_path.parent / ".index.lock", "w") as f:
            try:
                import fcntl

                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataError(f"{self.index_path}: another kiloml process is importing into "
                                "this data set; try again when it has finished") from None
            except ImportError:  # pragma: no cover - not POSIX
                pass
            yield
