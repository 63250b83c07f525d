"""kiloml.toml: versions, one sample rate, config errors that name the key."""

from __future__ import annotations

import pytest

from kiloml import __version__
from kiloml.errors import ProjectError
from kiloml.workflow.project import Project, init_project


def test_newer_project_is_refused_older_is_read(tmp_path):
    p = init_project(tmp_path / "p", "kws")
    cfg = p.config_path
    text = cfg.read_text()
    cfg.write_text(text.replace(f'kiloml_version = "{__version__}"', 'kiloml_version = "99.0.0"'))
    with pytest.raises(ProjectError, match=r"made by kiloml 99.0.0, newer than this kiloml"):
        Project.load(p.root)
    cfg.write_text(text.replace(f'kiloml_version = "{__version__}"', 'kiloml_version = "0.0.1"'))
    assert Project.load(p.root).config.project.task == "kws"
    cfg.write_text(text.replace(f'kiloml_version = "{__version__}"', 'kiloml_version = "0.0.1"')
                   .replace("[train]", "[train]\nold_knob = 3"))
    with pytest.raises(ProjectError, match=r"train.old_knob: unknown key.*written by kiloml "
                                           r"0.0.1, this is"):
        Project.load(p.root)
    cfg.write_text(text.replace(f'kiloml_version = "{__version__}"', 'kiloml_version = "new"'))
    with pytest.raises(ProjectError, match="kiloml_version 'new' is not a version"):
        Project.load(p.root)


def test_one_sample_rate(tmp_path):
    p = init_project(tmp_path / "p", "kws")
    cfg = p.config_path
    cfg.write_text(cfg.read_text().replace("sample_rate = 16000", "sample_rate = 8000"))
    with pytest.raises(ProjectError, match=r"sample_rate 16000 Hz differs from data.sample_rate "
                                           r"8000 Hz"):
        Project.load(p.root)
    m = init_project(tmp_path / "m", "motion")
    cfg = m.config_path
    cfg.write_text(cfg.read_text().replace("[dsp.params]\n", "[dsp.params]\nsample_rate = 50\n")
                   .replace("[data]\n", "[data]\nsample_rate = 25\n"))
    with pytest.raises(ProjectError, match=r"block's sample_rate 50 Hz differs from "
                                           r"data.sample_rate 25 Hz"):
        Project.load(m.root)
