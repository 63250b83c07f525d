"""``[data.augment] stream_negatives`` in a project: every augmented bank is the training
split followed by the stream-like negatives, their labels the same in every bank, and
training runs on them; a project without an unknown or silence class, or without audio, is
refused. Unset, a kws project with an unknown or silence class and background audio gets
0.4 (and says so), a keyword-only one 0 (and trains)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from projhelp import SHARED, edit, kiloml, wand_project
from kiloml.errors import ProjectError
from kiloml.workflow.features import (KWS_STREAM_NEGATIVES, AugmentedBanks, load_split,
                                      stream_negatives_fraction)
from kiloml.workflow.project import load_project

SPEECH = SHARED / "data" / "speech_commands"


def set_negatives(cfg, value):
    """``[data.augment] stream_negatives = value`` in kiloml.toml (unset by default)."""
    assert "stream_negatives" not in cfg.read_text()
    edit(cfg, "[data.augment]\n", f"[data.augment]\nstream_negatives = {value}\n")


def _project(tmp_path, labels, negatives=0.5, noise=True, name="p"):
    data = tmp_path / f"sc_{name}"
    for lab in labels:
        (data / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[:8]:
            shutil.copy(f, data / lab / f.name)
    if noise:
        shutil.copytree(SPEECH / "_background_noise_", data / "_background_noise_",
                        ignore=lambda d, names: [n for n in names if not n.startswith("white")])
    root = tmp_path / name
    assert kiloml("init", root, "--task", "kws").returncode == 0
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", f'[source]\npath = "../{data.name}"\n')
    edit(cfg, "[train]\n", "[train]\nepochs = 1\naugment_banks = 2\n")
    if negatives is not None:
        set_negatives(cfg, negatives)
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
    set_negatives(root / "kiloml.toml", 0.5)
    p = load_project(root)
    with pytest.raises(ProjectError, match="needs an unknown or a silence class"):
        AugmentedBanks(p, ["no", "yes"], train_y=np.array([0, 1, 1]))
    assert len(AugmentedBanks(p, ["_unknown_", "yes"], train_y=np.array([0, 1])).extra_y) == 1
    wand = wand_project(tmp_path / "w")
    edit(wand / "kiloml.toml", "[data.augment]\n", "[data.augment]\nstream_negatives = 0.5\n")
    with pytest.raises(ProjectError, match="for audio projects"):
        AugmentedBanks(load_project(wand), ["ring", "wing"], train_y=np.array([0, 1]))


def test_kws_default_is_0_4_with_an_unknown_class_and_background_audio_else_0(tmp_path):
    """Unset: a speech_commands-like kws project (keywords, _unknown_, background noise) trains
    with 0.4 and its run says so; a keyword-only one trains with 0 (the refusal above does not
    fire); without background audio, or set to 0 explicitly, 0."""
    sc = _project(tmp_path, ("yes", "no", "_unknown_"), negatives=None, name="sc")
    r = kiloml("run", "--until", "train", cwd=sc)
    assert r.returncode == 0, r.stderr
    said = " ".join((r.stdout + r.stderr).split())      # the console wraps long lines
    assert f"stream_negatives {KWS_STREAM_NEGATIVES:g} (kws default)" in said
    p = load_project(sc)
    tr = load_split(p, "train")
    assert stream_negatives_fraction(p, tr.labels) == (KWS_STREAM_NEGATIVES, "kws default")
    banks = AugmentedBanks(p, tr.labels, banks=2, seed=0, train_y=tr.y)
    assert len(banks.extra_y) == round(KWS_STREAM_NEGATIVES * len(tr.y)) > 0
    meta = (sc / "model" / "meta.json").read_text()
    assert '"source": "kws default"' in meta
    # set to 0: none, whatever the labels
    set_negatives(sc / "kiloml.toml", 0)
    assert stream_negatives_fraction(load_project(sc), tr.labels) == (0.0, "set")
    # another task: 0
    p.config.data.augment.stream_negatives = None
    p.config.project.task = "anomaly"
    assert stream_negatives_fraction(p, tr.labels) == (0.0, "default")

    kw = _project(tmp_path, ("yes", "no"), negatives=None, name="kw")
    r = kiloml("run", "--until", "train", cwd=kw)
    assert r.returncode == 0, r.stderr
    assert "stream_negatives 0 (default)" in " ".join((r.stdout + r.stderr).split())
    q = load_project(kw)
    assert stream_negatives_fraction(q, load_split(q, "train").labels) == (0.0, "default")

    quiet = _project(tmp_path, ("yes", "_unknown_"), negatives=None, noise=False, name="nn")
    q = load_project(quiet)
    assert stream_negatives_fraction(q, ["_unknown_", "yes"]) == (0.0, "default")
