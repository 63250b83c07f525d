"""Group-aware train/validation/test splits and class balancing.

Rules (why: a speaker, person or recording on both sides of a split makes accuracy a lie)

* Every group (speaker, person, recording) goes wholly to one split. A sample without a group
  is its own group.
* Assignment is sticky: a group already in the index keeps its split, so importing more data
  never moves old samples.
* New groups are assigned one by one, largest first (ties in an order fixed by ``seed``: SHA-1
  of the group), each to the split that brings every label's split counts closest to the
  target fractions (least squares, per label relative to its size). With few groups
  (magic_wand's ten people) this hits the fractions as closely as whole groups allow, which
  plain hashing does not, and it keeps the classes stratified.
* A label whose samples all come from one group (one long recording per class, as in CWRU, or
  one person) cannot be split by group. Its time line is cut instead: a single recording into
  contiguous blocks [train | validation | test], several samples by their order in time.
  Windows are later taken inside a block, so no window crosses a split boundary.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

from kiloml.data.index import SPLITS, Sample
from kiloml.errors import DataError


def split_key(s: Sample) -> str:
    return s.group if s.group else f"sample:{s.id}"


def _order(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def targets(validation: float, test: float) -> dict[str, float]:
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DataError(f"split fractions validation={validation}, test={test} must be in [0, 1) "
                        "and sum to < 1")
    return {"train": 1.0 - validation - test, "validation": validation, "test": test}


def time_blocks(s: Sample, frac: dict[str, float]) -> list[Sample]:
    """Cut one sample into contiguous [train | validation | test] blocks."""
    n = s.length
    b1 = int(round(n * frac["train"]))
    b2 = int(round(n * (frac["train"] + frac["validation"])))
    opts = json.loads(s.options) if s.options else {}
    out = []
    for split, lo, hi in (("train", 0, b1), ("validation", b1, b2), ("test", b2, n)):
        if hi > lo:
            o = dict(opts, time_block=split)
            out.append(s.with_(id=f"{s.id}@{split}", split=split, offset=s.offset + lo,
                               length=hi - lo, options=json.dumps(o, separators=(",", ":"))))
    return out


def assign_splits(new: Sequence[Sample], existing: Sequence[Sample], validation: float,
                  test: float, seed: int = 0, by: str = "auto",
                  notes: list[str] | None = None,
                  window_ms: float | None = None) -> list[Sample]:
    """Give each new sample a split (see the module doc); returns the new samples (time-split
    labels come back cut into blocks). ``by``: auto | group | time | sample. With
    ``window_ms``, ``auto`` cuts a single recording in time only if its smallest block holds
    a whole window (a one-second keyword clip is never cut)."""
    frac = targets(validation, test)
    notes = notes if notes is not None else []
    if by not in ("auto", "group", "time", "sample"):
        raise DataError(f"unknown split method {by!r} (auto, group, time or sample)")
    new = list(new)
    out: list[Sample] = []
    noise = [s.with_(split="train") for s in new if s.role == "noise"]
    cand = [s for s in new if s.role != "noise"]

    # Labels that can only be split in time.
    time_labels: set[str] = set()
    if by == "time":
        time_labels = {s.label for s in cand}
    elif by == "auto":
        by_label: dict[str, set[str]] = defaultdict(set)
        ungrouped: set[str] = set()
        for s in list(existing) + cand:
            if s.role != "sample":
                continue
            if s.group:
                by_label[s.label].add(s.group)
            else:
                ungrouped.add(s.label)
        old_labels = {s.label for s in existing if s.role == "sample"}
        for lab in {s.label for s in cand}:
            if lab not in old_labels and lab not in ungrouped and len(by_label[lab]) == 1:
                time_labels.add(lab)

    smallest = min((f for f in frac.values() if f > 0), default=1.0)

    def long_enough(s: Sample) -> bool:
        return window_ms is None or s.length / s.sample_rate * smallest >= window_ms / 1000.0

    if by == "auto":
        time_labels = {lab for lab in time_labels
                       if sum(s.label == lab for s in cand) > 1
                       or all(long_enough(s) for s in cand if s.label == lab)}
    for lab in sorted(time_labels):
        members = [s for s in cand if s.label == lab]
        if len(members) == 1:
            out += time_blocks(members[0], frac)
            notes.append(f"label {lab!r}: one recording: split into contiguous time blocks")
        else:
            n = len(members)
            b1 = int(round(n * frac["train"]))
            b2 = int(round(n * (frac["train"] + frac["validation"])))
            for i, s in enumerate(members):
                out.append(s.with_(split="train" if i < b1 else "validation" if i < b2
                                   else "test"))
            notes.append(f"label {lab!r}: one group only: split by time order, not by group")
    rest = [s for s in cand if s.label not in time_labels]

    # Sticky groups, then a greedy, label-stratified assignment of the new groups.
    known: dict[str, str] = {}
    if by != "sample":
        for s in existing:
            if s.role == "sample" and s.group and "time_block" not in s.reader_options():
                known.setdefault(s.group, s.split)
    count: dict[str, Counter] = defaultdict(Counter)      # label -> split -> samples
    for s in list(existing) + out:
        if s.role == "sample":
            count[s.label][s.split] += 1
    units: dict[str, list[Sample]] = defaultdict(list)
    for s in rest:
        key = f"sample:{s.id}" if by == "sample" else split_key(s)
        units[key].append(s)
    total: Counter = Counter()
    for lab, c in count.items():
        total[lab] += sum(c.values())
    for s in rest:
        total[s.label] += 1
    assigned: dict[str, str] = {}
    for key, members in units.items():
        if key in known:
            assigned[key] = known[key]
            for s in members:
                count[s.label][known[key]] += 1

    def cost_increase(per_label: Counter, sp: str) -> float:
        # Change of sum over labels of ((count - target) / total)^2 when the unit joins sp.
        d = 0.0
        for lab, n in per_label.items():
            t = frac[sp] * total[lab]
            c = count[lab][sp]
            d += ((c + n - t) ** 2 - (c - t) ** 2) / total[lab] ** 2
        return d

    pending = [k for k in units if k not in assigned]
    pending.sort(key=lambda k: (-len(units[k]), _order(k, seed)))
    for key in pending:
        per_label = Counter(s.label for s in units[key])
        best = min(SPLITS, key=lambda sp: (cost_increase(per_label, sp), SPLITS.index(sp)))
        assigned[key] = best
        for lab, n in per_label.items():
            count[lab][best] += n
    for key, members in units.items():
        out += [s.with_(split=assigned[key]) for s in members]
    order = {s.id: i for i, s in enumerate(new)}
    out.sort(key=lambda s: (order.get(s.id.split("@")[0], len(order)), s.offset))
    return out + noise


def group_leaks(samples: Iterable[Sample]) -> dict[str, list[str]]:
    """Groups found in more than one split, except recordings cut into time blocks."""
    where: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.role != "sample" or not s.group or "time_block" in s.reader_options():
            continue
        where[s.group].add(s.split)
    return {g: sorted(sp) for g, sp in where.items() if len(sp) > 1}


# ---------------------------------------------------------------- balancing


def class_weights(labels: Sequence[str]) -> dict[str, float]:
    """Inverse-frequency weights, normalised so the weighted sample count equals the count."""
    c = Counter(labels)
    n, k = len(labels), len(c)
    return {lab: n / (k * m) for lab, m in sorted(c.items())}


def balance(labels: Sequence[str], method: str = "undersample", seed: int = 0) -> np.ndarray:
    """Indices into ``labels`` giving equal counts per class: ``undersample`` keeps a seeded
    random subset of each class at the smallest class's size; ``oversample`` repeats seeded
    random members of the smaller classes up to the largest. ``none`` returns all indices."""
    idx = np.arange(len(labels))
    if method == "none" or not len(labels):
        return idx
    if method not in ("undersample", "oversample"):
        raise DataError(f"unknown balancing method {method!r} (none, undersample, oversample)")
    rng = np.random.default_rng(seed)
    arr = np.asarray(labels)
    classes = sorted(set(labels))
    members = {c: idx[arr == c] for c in classes}
    target = (min if method == "undersample" else max)(len(m) for m in members.values())
    out = []
    for c in classes:
        m = members[c]
        if len(m) >= target:
            out.append(np.sort(rng.choice(m, target, replace=False)))
        else:
            out.append(np.concatenate([m, np.sort(rng.choice(m, target - len(m), replace=True))]))
    return np.concatenate(out)
