"""``[train] self_teachers``: the project trains its own teachers (its recipe with other seeds
and ``self_teacher_params``), then distills its model from them.

Oracles: each self-teacher must be byte for byte the model ``kiloml train`` makes for the
project alone with that seed and those model parameters, and the distilled model byte for byte
the one ``kiloml train`` makes with ``teacher = [those files]`` configured by hand (the
ensemble path of tests/workflow/test_teacher_ensemble_cli.py). Small real gesture project (two
magic_wand gestures, spectral features, dense model): seconds to train."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projhelp import kiloml, wand_project  # noqa: E402

from kiloml.workflow.train import self_teacher_seeds  # noqa: E402

WIDE = "hidden = [96, 48]"


def _train_section(root: Path, lines: str) -> None:
    text = (root / "kiloml.toml").read_text()
    start = text.index("[train]\n")
    end = text.index("\n[source]")
    (root / "kiloml.toml").write_text(text[:start] + "[train]\nepochs = 2\ndistill_epochs = 1\n"
                                      + lines + text[end:])


def _model_params(root: Path, lines: str) -> None:
    text = (root / "kiloml.toml").read_text()
    text = text.replace("[model.params]\n" + WIDE + "\n", "[model.params]\n")
    (root / "kiloml.toml").write_text(text.replace("[model.params]\n", "[model.params]\n" + lines))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project imported, and the oracle teachers: the project trained alone with seeds 1
    and 2 and the wide parameters (oracle/seed1.tflite, oracle/seed2.tflite)."""
    root = wand_project(tmp_path_factory.mktemp("self"), epochs=2)
    assert "[model.params]\n" in (root / "kiloml.toml").read_text()
    r = kiloml("run", "--project", root, "--until", "import", "-q")
    assert r.returncode == 0, r.stderr
    (root / "oracle").mkdir()
    _model_params(root, WIDE + "\n")
    for s in (1, 2):
        _train_section(root, f"seed = {s}\n")
        r = kiloml("train", "--project", root, "-q", "--fresh")
        assert r.returncode == 0, r.stderr
        shutil.copy(root / "model" / "model.tflite", root / "oracle" / f"seed{s}.tflite")
    _model_params(root, "")
    return root


def test_seeds_are_the_first_others():
    assert self_teacher_seeds(0, 3) == [1, 2, 3]
    assert self_teacher_seeds(2, 3) == [0, 1, 3]
    assert self_teacher_seeds(7, 2) == [0, 1]
    assert self_teacher_seeds(1, 0) == []


def test_self_teachers_are_the_project_trained_alone_and_teach_as_an_ensemble(project):
    root = project
    a, b = (root / "oracle" / f"seed{s}.tflite" for s in (1, 2))
    assert a.read_bytes() != b.read_bytes()      # two seeds, two models
    _train_section(root, 'seed = 0\nself_teachers = 2\n'
                         'self_teacher_params = { hidden = [96, 48] }\n')
    r = kiloml("train", "--project", root, "-q", "--json", "--fresh")
    assert r.returncode == 0, r.stderr
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert [t["seed"] for t in meta["self_teachers"]] == [1, 2]
    summary = json.loads(r.stdout)
    assert set(summary["self_teachers_val_int8"]) == {"1", "2"}
    assert summary["self_teachers_seconds"] > 0
    assert all(t["params"]["hidden"] == [96, 48] for t in meta["self_teachers"])
    assert meta["distill_train"]["epochs_run"] == 1
    for s, oracle in ((1, a), (2, b)):
        assert (root / "model" / "teachers" / f"seed{s}.tflite").read_bytes() == \
            oracle.read_bytes(), s
    student = (root / "model" / "model.tflite").read_bytes()

    # the same student from the same two files named by hand
    _train_section(root, 'seed = 0\nteacher = ["oracle/seed1.tflite", "oracle/seed2.tflite"]\n')
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    assert (root / "model" / "model.tflite").read_bytes() == student

    # and not the model trained without them
    _train_section(root, "seed = 0\n")
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    assert (root / "model" / "model.tflite").read_bytes() != student


def test_a_configured_teacher_joins_the_self_teachers(project):
    root = project
    _train_section(root, 'seed = 1\nself_teachers = 1\nteacher = "oracle/seed2.tflite"\n')
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    row, = [ln for ln in r.stdout.splitlines() if "self_teachers_val_int8" in ln]
    assert "seed 0 " in row and " %" in row, row
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert [t["seed"] for t in meta["self_teachers"]] == [0]
    student = (root / "model" / "model.tflite").read_bytes()
    shutil.copy(root / "model" / "teachers" / "seed0.tflite", root / "oracle" / "seed0.tflite")
    _train_section(root, 'seed = 1\nteacher = ["oracle/seed2.tflite", "oracle/seed0.tflite"]\n')
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    assert (root / "model" / "model.tflite").read_bytes() == student


@pytest.mark.parametrize("lines, needle", [
    ('self_teachers = 1\nself_teacher_params = { nonsense = 3 }\n',
     "train.self_teacher_params: dense: bad model parameter"),
    ("self_teachers = -1\n", "self_teachers"),
])
def test_bad_settings_stop_before_anything_is_trained(project, lines, needle):
    root = project
    _train_section(root, "seed = 0\n")
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    before = {p: p.read_bytes() for p in (root / "model").rglob("*") if p.is_file()}
    _train_section(root, "seed = 0\n" + lines)
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "kiloml.toml" in err[0], err
    assert {p: p.read_bytes() for p in (root / "model").rglob("*") if p.is_file()} == before


def test_anomaly_models_are_refused(project):
    root = project
    text = (root / "kiloml.toml").read_text()
    try:
        _train_section(root, "seed = 0\nself_teachers = 1\n")
        t = (root / "kiloml.toml").read_text()
        (root / "kiloml.toml").write_text(t.replace('arch = "dense"', 'arch = "autoencoder"', 1))
        assert 'arch = "autoencoder"' in (root / "kiloml.toml").read_text()
        r = kiloml("train", "--project", root, "-q")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "train.self_teachers: anomaly models (autoencoder) are not distilled" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        (root / "kiloml.toml").write_text(text)
