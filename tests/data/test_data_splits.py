"""Split assignment, time blocks and class balancing on synthetic indexes."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from kiloml.data.index import Sample
from kiloml.data.splits import assign_splits, balance, class_weights, group_leaks, time_blocks


def sample(i, label, group, length=100):
    return Sample(id=f"s{i}", label=label, group=group, split="train", role="sample",
                  source=f"f{i}", format="wav", offset=0, length=length, sample_rate=100.0,
                  channels=1)


def synthetic(n_groups=150, seed=0):
    rng = np.random.default_rng(seed)
    out, i = [], 0
    for g in range(n_groups):
        for _ in range(int(rng.integers(1, 12))):
            out.append(sample(i, str(rng.choice(["a", "b", "c"], p=[0.5, 0.3, 0.2])), f"g{g}"))
            i += 1
    return out


def test_groups_disjoint_and_stratified():
    res = assign_splits(synthetic(), [], 0.1, 0.2, seed=3)
    assert group_leaks(res) == {}
    per = defaultdict(Counter)
    for s in res:
        per[s.label][s.split] += 1
    for lab, c in per.items():
        n = sum(c.values())
        assert abs(c["validation"] / n - 0.1) < 0.03 and abs(c["test"] / n - 0.2) < 0.03, (lab, c)


def test_seed_changes_assignment_but_is_reproducible():
    a = [s.split for s in assign_splits(synthetic(), [], 0.1, 0.1, seed=1)]
    b = [s.split for s in assign_splits(synthetic(), [], 0.1, 0.1, seed=1)]
    c = [s.split for s in assign_splits(synthetic(), [], 0.1, 0.1, seed=2)]
    assert a == b and a != c


def test_existing_groups_keep_their_split():
    first = assign_splits(synthetic(40), [], 0.2, 0.2)
    more = [sample(1000 + k, "a", s.group) for k, s in enumerate(first[:30])]
    res = assign_splits(more, first, 0.2, 0.2)
    split_of = {s.group: s.split for s in first}
    assert all(s.split == split_of[s.group] for s in res)


def test_ungrouped_samples_split_individually():
    res = assign_splits([sample(i, "a", "") for i in range(100)], [], 0.1, 0.1)
    assert Counter(s.split for s in res) == {"train": 80, "validation": 10, "test": 10}


def test_one_recording_per_label_is_cut_in_time():
    notes = []
    res = assign_splits([sample(0, "a", "rec0", 1000), sample(1, "b", "rec1", 999)], [], 0.15,
                        0.15, notes=notes)
    assert len(res) == 6 and len(notes) == 2
    for lab in "ab":
        blocks = sorted((s for s in res if s.label == lab), key=lambda s: s.offset)
        assert [b.split for b in blocks] == ["train", "validation", "test"]
        assert blocks[0].offset == 0
        assert all(x.offset + x.length == y.offset for x, y in zip(blocks, blocks[1:]))
        assert sum(b.length for b in blocks) in (1000, 999)
    assert group_leaks(res) == {}   # time blocks are the allowed exception


def test_one_group_many_samples_split_by_order():
    res = assign_splits([sample(i, "a", "alice") for i in range(10)], [], 0.1, 0.1)
    assert [s.split for s in res] == ["train"] * 8 + ["validation", "test"]


def test_time_blocks_skip_empty_fraction():
    frac = {"train": 0.9, "validation": 0.0, "test": 0.1}
    assert [b.split for b in time_blocks(sample(0, "a", "r", 10), frac)] == ["train", "test"]


def test_by_sample_ignores_groups():
    res = assign_splits([sample(i, "a", "same") for i in range(50)] + [sample(99, "b", "x")],
                        [], 0.2, 0.2, by="sample")
    assert len({s.split for s in res if s.group == "same"}) == 3


def test_balance_and_weights():
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 5
    u = balance(labels, "undersample", seed=0)
    assert Counter(labels[i] for i in u) == {"a": 5, "b": 5, "c": 5}
    assert len(set(u.tolist())) == 15
    o = balance(labels, "oversample", seed=0)
    assert Counter(labels[i] for i in o) == {"a": 50, "b": 50, "c": 50}
    assert np.array_equal(o, balance(labels, "oversample", seed=0))
    assert not np.array_equal(o, balance(labels, "oversample", seed=1))
    w = class_weights(labels)
    assert sum(w[lab] for lab in labels) == pytest.approx(len(labels))
    assert w["c"] == pytest.approx(10 * w["a"])
    assert np.array_equal(balance(labels, "none"), np.arange(len(labels)))


def test_short_single_clip_is_not_cut():
    one = [sample(0, "yes", "spk1", length=100)]          # 1 s at 100 Hz
    res = assign_splits(one, [], 0.1, 0.1, window_ms=1000)
    assert len(res) == 1 and res[0].length == 100
    long = [sample(0, "hum", "rec", length=100 * 600)]    # 10 min: blocks hold windows
    assert len(assign_splits(long, [], 0.1, 0.1, window_ms=1000)) == 3
