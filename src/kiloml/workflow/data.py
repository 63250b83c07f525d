"""The data steps of a project: import files into its dataset, report on it, capture from a
board. The data stage (kiloml.data) does the work on the project's dataset and data settings.
"""

from __future__ import annotations

from pathlib import Path

from kiloml.data.capture import capture_to_project
from kiloml.data.importer import ImportResult, import_data
from kiloml.data.info import dataset_info
from kiloml.workflow.project import Project, as_project


def import_files(project: Project | str | Path, path: str | Path, **kw) -> ImportResult:
    """``kiloml data import``: add a file or folder to the project's index (atomic)."""
    return import_data(as_project(project), path, **kw)


def project_info(project: Project | str | Path, verify: bool = True) -> dict:
    """``kiloml data info``: counts per label and split, groups, durations, problems."""
    return dataset_info(as_project(project), verify=verify)


def capture(project: Project | str | Path, port: str, baud: int, label: str, seconds: float,
            rate: float | None = None) -> dict:
    """``kiloml data capture``: record a board's serial output into the project."""
    return capture_to_project(as_project(project), port, baud, label, seconds, rate=rate)
