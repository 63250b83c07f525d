"""Load the frames of indexed samples (decoding each source file once per call)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from kiloml.data.dataset import Dataset
from kiloml.data.index import Sample
from kiloml.data.readers import Recording, read_file
from kiloml.errors import DataError


class SourceCache:
    """Decoded source files of ``dataset``, least recently used dropped beyond ``size``
    entries."""

    def __init__(self, dataset: Dataset, size: int = 16) -> None:
        self.dataset = dataset
        self.size = size
        self._d: OrderedDict[str, Recording] = OrderedDict()

    def recording(self, s: Sample) -> Recording:
        if s.source in self._d:
            self._d.move_to_end(s.source)
            return self._d[s.source]
        o = s.reader_options()
        rec = read_file(self.dataset.resolve(s.source), s.format,
                        rate=o.get("rate", s.sample_rate), rows=o.get("rows"),
                        variable=o.get("variable"))
        self._d[s.source] = rec
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return rec

    def load(self, s: Sample, int16: bool = False) -> np.ndarray:
        """Frames of one sample, (length, channels): float32, or the original int16 PCM of a
        16-bit WAV when ``int16`` is set (for fixed-point DSP)."""
        rec = self.recording(s)
        if s.offset + s.length > rec.frames or rec.channels != s.channels:
            raise DataError(f"{s.source}: no longer matches the index (sample {s.id!r}: frames "
                            f"{s.offset}..{s.offset + s.length} of {rec.frames}); re-import it")
        if int16:
            if rec.raw_int16 is None:
                raise DataError(f"{s.source}: not 16-bit PCM, cannot load as int16")
            return rec.raw_int16[s.offset:s.offset + s.length]
        return rec.data[s.offset:s.offset + s.length]


def load_sample(dataset: Dataset, s: Sample, int16: bool = False) -> np.ndarray:
    """Frames of one sample (see :meth:`SourceCache.load`)."""
    return SourceCache(dataset, size=1).load(s, int16=int16)
