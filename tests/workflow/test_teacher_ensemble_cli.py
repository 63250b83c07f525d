"""``kiloml train`` and ``kiloml optimize`` with a teacher ensemble, end to end on a small real
gesture project (two magic_wand gestures; spectral features, dense model: seconds to train).

Two teachers are the project's own int8 models trained with seeds 0 and 1; the project then
distills from both (``[train] teacher = [...]``). A bad teacher anywhere in the list is one
error line naming its file, exit 1, and nothing trained or written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projhelp import edit, kiloml, wand_project  # noqa: E402
from trainhelp import KWS_REF, require_shared  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project after training two teachers (teachers/a.tflite seed 0, b.tflite seed 1)."""
    root = wand_project(tmp_path_factory.mktemp("ens"), epochs=2)
    cfg = root / "kiloml.toml"
    r = kiloml("run", "--project", root, "--until", "train", "-q")
    assert r.returncode == 0, r.stderr
    (root / "teachers").mkdir()
    shutil.copy(root / "model" / "model.tflite", root / "teachers" / "a.tflite")
    edit(cfg, "seed = 0\n\n[source]", "seed = 1\n\n[source]")
    r = kiloml("train", "--project", root, "-q", "--fresh")
    assert r.returncode == 0, r.stderr
    shutil.copy(root / "model" / "model.tflite", root / "teachers" / "b.tflite")
    labels = json.loads((root / "model" / "meta.json").read_text())["labels"]
    return root, labels


def _set_teachers(root: Path, lines: str) -> None:
    text = (root / "kiloml.toml").read_text()
    start = text.index("[train]\n")
    end = text.index("\n[source]")
    (root / "kiloml.toml").write_text(text[:start] + "[train]\nepochs = 2\nseed = 0\n"
                                      "distill_epochs = 1\n" + lines + text[end:])


def test_train_distills_from_two_teachers(project):
    root, labels = project
    # teacher a in the project's class order by default, b's order given by name
    _set_teachers(root, 'teacher = ["teachers/a.tflite", "teachers/b.tflite"]\n'
                        f'teacher_labels = [[], {json.dumps(labels)}]\n')
    r = kiloml("train", "--project", root, "-q", "--json", "--fresh")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert meta["recipe"]["teacher"] == ["teachers/a.tflite", "teachers/b.tflite"]
    assert meta["float_train"]["epochs_run"] == 2 and meta["distill_train"]["epochs_run"] == 1
    assert 0.5 <= s["int8_accuracy"] <= 1.0, s
    # the motion task's teacher sees the clean windows: one cached logits file per teacher
    cached = [p for p in (root / ".kiloml" / "cache").iterdir() if p.name.startswith("teacher-")]
    assert len(cached) == 2, cached


def test_a_bad_teacher_in_the_list_stops_before_training(project):
    root, labels = project
    meta = root / "model" / "meta.json"
    before = meta.read_bytes()
    shutil.rmtree(root / "model" / "checkpoints", ignore_errors=True)
    cases = [
        ('teacher = ["teachers/a.tflite", "teachers/nope.tflite"]\n',
         "teachers/nope.tflite: teacher: no such file"),
        (f'teacher = ["teachers/a.tflite", "{KWS_REF}"]\n',
         f"{KWS_REF}: teacher has 12 outputs, the project 2 classes"),
        ('teacher = ["teachers/a.tflite", "teachers/b.tflite"]\n'
         'teacher_labels = [[], ["ring", "slope"]]\n',
         "teachers/b.tflite: teacher classes are not the project's"),
    ]
    require_shared()
    for lines, needle in cases:
        _set_teachers(root, lines)
        r = kiloml("train", "--project", root, "-q")
        assert r.returncode == 1, (lines, r.stderr)
        err = " ".join(r.stderr.split())
        assert "train.teacher: " in err and needle in err, err
        assert len(r.stderr.strip().splitlines()) <= 3 and "Traceback" not in r.stderr
        assert meta.read_bytes() == before                      # nothing trained
        assert not (root / "model" / "checkpoints").exists()
    _set_teachers(root, 'teacher = ["teachers/a.tflite", "teachers/b.tflite"]\n'
                        'teacher_labels = [["ring", "wing"]]\n')
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1 and "1 label lists for 2 teachers" in " ".join(r.stderr.split())


def test_optimize_takes_repeated_teachers(project):
    root, labels = project
    _set_teachers(root, "")
    variants = root / "model" / "variants" / "variants.json"
    r = kiloml("optimize", "--project", root, "--variants", "distilled", "--board", "none",
               "-q", "--json", "--teacher", root / "teachers" / "a.tflite",
               "--teacher", root / "teachers" / "b.tflite")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["variants"][0]
    assert row["source"].startswith("ensemble of 2 teachers") and "b.tflite" in row["source"]
    assert "teaching the trained model" in row["source"] and 0 <= row["metric"] <= 1
    written = variants.read_bytes()
    # a bad one among them: named, exit 1, no variant built
    require_shared()
    r = kiloml("optimize", "--project", root, "--variants", "ptq,distilled", "--board", "none",
               "-q", "--teacher", root / "teachers" / "a.tflite", "--teacher", KWS_REF)
    assert r.returncode == 1, r.stderr
    err = " ".join(r.stderr.split())
    assert f"--teacher: {KWS_REF}: teacher has 12 outputs" in err, err
    assert variants.read_bytes() == written
    r = kiloml("optimize", "--project", root, "--variants", "distilled", "--teacher",
               root / "teachers" / "a.tflite", "--teacher", root / "teachers" / "b.tflite",
               "--teacher-labels", "ring,wing", "--teacher-labels", "ring,wing",
               "--teacher-labels", "wing,ring")
    assert r.returncode == 2 and "given 3 times for 2 --teacher" in " ".join(r.stderr.split())


def test_threads_setting_reaches_every_training_phase(project, monkeypatch):
    """``[train] threads = 1``: the float, distillation and QAT phases of ``kiloml train``
    run with one torch thread (what fit sets), and a bad value is refused."""
    import torch

    import kiloml.workflow.train as W

    root, _ = project
    _set_teachers(root, 'teacher = "teachers/a.tflite"\nthreads = 1\nqat_epochs = 1\n')
    seen = []
    real_fit = W.fit

    def spy(model, data, cfg, **kw):
        seen.append((kw.get("title"), cfg.threads))
        res = real_fit(model, data, cfg, **kw)
        seen.append(("after", torch.get_num_threads()))
        return res

    monkeypatch.setattr(W, "fit", spy)
    before = torch.get_num_threads()
    try:
        W.train_project(root, progress=False, fresh=True)
    finally:
        torch.set_num_threads(before)
    assert [t for t, _ in seen if t != "after"] == ["float", "distill", "QAT"]
    assert all(n == 1 for _, n in seen), seen
    _set_teachers(root, "threads = 0\n")
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1 and "train.threads" in r.stderr and "greater than or equal to 1" \
        in " ".join(r.stderr.split())
