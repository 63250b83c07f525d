"""``[data.augment] stream_negatives`` in a project: every augmented bank is the training
split followed by the stream-like negatives, their labels the same in every bank, and
training runs on them; a project without an unknown or silence class, or without audio, is
refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from projhelp import SHARED, edit, kiloml, wand_project
from kiloml.errors import ProjectError
from kiloml.workflow.features import AugmentedBanks, load_split
from kiloml.workflow.project import load_project

SPEECH = SHARED / "data" / "speech_commands"


def _project(tmp_path, labels):
    data = tmp_path / "sc"
    for lab in labels:
        (data / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[:8]:
            shutil.copy(f, data / lab / f.name)
    shutil.copytree(SPEECH / "_background_noise_", data / "_background_noise_",
                    ignore=lambda d, names: [n for n in names if not n.startswith("white")])
    root = tmp_path / "p"
    assert kiloml("init", root, "--task", "kws").returncode == 0
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../sc"\n')
    edit(cfg, "[train]\n", "[train]\nepochs = 1\naugment_banks = 2\n")
    edit(cfg, "stream_negatives = 0.0\n", "stream_negatives = 0.5\n")
    r = kiloml("run", "-q", "--until", "import", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_banks_end_with_the_negatives_and_training_uses_them(tmp_path):
    root = _project(tmp_path, ("yes", "no", "_unknown_"))
    p = load_project(root)
    tr = load_split(p, "train")
    labels = tr.labels
    n = len(tr.y)
    banks = AugmentedBanks(p, labels, banks=2, seed=0, train_y=tr.y)
    unk = labels.index("_unknown_")
    # no silence class: two thirds unknown words moved, a third keyword edges, all unknown
    total = int(round(0.5 * n))
    assert list(banks.extra_y) == [unk] * total
    b0, b1 = banks.bank(0), banks.bank(1)
    assert b0.shape == (n + total, *tr.x.shape[1:]) and b1.shape == b0.shape
    assert not np.array_equal(b0[n:], b1[n:])                 # drawn per bank
    # a negative is none of the training windows
    d = np.abs(b0[n:, None] - tr.x[None]).reshape(total, n, -1).max(axis=2)
    assert d.min() > 0
    again = AugmentedBanks(p, labels, banks=2, seed=0, train_y=tr.y).bank(0)
    assert np.array_equal(again, b0)                         # seeded (and cached)
    plain = AugmentedBanks(p, labels, banks=2, seed=0)       # without the labels: no extras
    assert len(plain.extra_y) == 0 and plain.key != banks.key
    r = kiloml("train", "-q", "--epochs", "1", cwd=root)
    assert r.returncode == 0, r.stderr


def test_negatives_need_an_unknown_or_silence_class_and_audio(tmp_path):
    """Refused before any audio is read (nothing imported: the labels are given)."""
    root = tmp_path / "k"
    assert kiloml("init", root, "--task", "kws").returncode == 0
    edit(root / "kiloml.toml", "stream_negatives = 0.0\n", "stream_negatives = 0.5\n")
    p = load_project(root)
    with pytest.raises(ProjectError, match="needs an unknown or a silence class"):
        AugmentedBanks(p, ["no", "yes"], train_y=np.array([0, 1, 1]))
    assert len(AugmentedBanks(p, ["_unknown_", "yes"], train_y=np.array([0, 1])).extra_y) == 1
    wand = wand_project(tmp_path / "w")
    edit(wand / "kiloml.toml", "stream_negatives = 0.0\n", "stream_negatives = 0.5\n")
    with pytest.raises(ProjectError, match="for audio projects"):
        AugmentedBanks(load_project(wand), ["ring", "wing"], train_y=np.array([0, 1]))
