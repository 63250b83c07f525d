"""The data stage: readers, the dataset index, group-aware splits, windowing and serial capture.

It knows nothing of projects: every function takes a :class:`Dataset` (the root that source
paths are relative to, and the index file) and :class:`DataSettings` (rate, channels,
windowing, split fractions). See the module docs of each part for formats and rules.

    import_data(dataset, settings, path, ...) -> ImportResult   read files into the index
    dataset_info(dataset, settings, verify=True) -> dict        counts, balance and problems
    load_windows(dataset, settings, samples=None, split=None)   (N, window, channels) frames
    capture_to_dataset(dataset, settings, port, baud, label, seconds, rate=None) -> dict
    read_file(path, fmt, rate=..., rows=..., variable=...)      one file -> Recording
    assign_splits(new, existing, validation, test, ...)         group-aware, window-balanced
"""

from kiloml.data.capture import capture_to_dataset
from kiloml.data.dataset import Dataset
from kiloml.data.importer import ImportResult, import_data
from kiloml.data.index import DatasetIndex, Sample
from kiloml.data.info import dataset_info
from kiloml.data.loader import SourceCache, load_sample
from kiloml.data.readers import FORMATS, Recording, read_file
from kiloml.data.settings import AugmentSettings, DataSettings
from kiloml.data.splits import assign_splits, balance, class_weights, share_warnings
from kiloml.data.windowing import Window, load_windows, make_windows

__all__ = ["AugmentSettings", "DataSettings", "Dataset", "DatasetIndex", "FORMATS",
           "ImportResult", "Recording", "Sample", "SourceCache", "Window", "assign_splits",
           "balance", "capture_to_dataset", "class_weights", "dataset_info", "import_data",
           "load_sample", "load_windows", "make_windows", "read_file", "share_warnings"]

