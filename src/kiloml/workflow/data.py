"""The data steps of a project: import files into its dataset, report on it, capture from a
board. The data stage (kiloml.data) does the work on the project's dataset and data settings.
"""

from __future__ import annotations

from pathlib import Path

from kiloml.data.capture import capture_to_dataset
from kiloml.data.importer import ImportResult, import_data
from kiloml.data.info import dataset_info
from kiloml.workflow.project import Project, as_project


def import_files(project: Project | str | Path, path: str | Path, **kw) -> ImportResult:
    """``kiloml data import``: add a file or folder to the project's index (atomic). A
    ``rate`` given to a project that states none becomes the project's ``data.sample_rate``
    (stated once; later imports, the DSP block and training take it from there)."""
    p = as_project(project)
    res = import_data(p.dataset, p.config.data, path, **kw)
    rate = kw.get("rate")
    if rate is not None and p.config.data.sample_rate is None and res.added:
        p.config.data.sample_rate = float(rate)
        p.save()
    return res


def project_info(project: Project | str | Path, verify: bool = True) -> dict:
    """``kiloml data info``: counts per label and split, groups, durations, problems."""
    p = as_project(project)
    return dataset_info(p.dataset, p.config.data, verify=verify)


def capture(project: Project | str | Path, port: str, baud: int, label: str, seconds: float,
            rate: float | None = None) -> dict:
    """``kiloml data capture``: record a board's serial output into the project."""
    p = as_project(project)
    return capture_to_dataset(p.dataset, p.config.data, port, baud, label, seconds, rate=rate)
