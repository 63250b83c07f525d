"""Group-aware train/validation/test splits, their balance check, and class balancing.

Rules (why: a speaker, person or recording on both sides of a split makes accuracy a lie)

* Every group (speaker, person, recording) goes wholly to one split. A sample without a group
  is its own group.
* Assignment is sticky: a group already in the index keeps its split, so importing more data
  never moves old samples.
* What is balanced is what the model sees: the windows a sample yields (window_ms, stride_ms,
  pad), not the sample count. A continuous 90 s recording that yields 177 windows (2 s every
  0.5 s) weighs as much as 177 one-window gestures; counting it as one sample is how four
  long negative recordings once ended up holding 81 % of magic_wand's negative windows in the
  test split. Without windowing parameters a sample weighs its duration.
* New groups are assigned so that every label's weight per split is as close as whole groups
  allow to the target fractions: least squares of the per-label shares (each label relative
  to its own size, so small classes count as much as big ones). A greedy pass (largest group
  first, ties in an order fixed by ``seed``: SHA-1 of the group) is refined by moving single
  groups and swapping pairs of groups between splits while that lowers the error. Deterministic
  for a seed.
* A label whose samples all come from one group (one long recording per class, as in CWRU, or
  one person) cannot be split by group. Its time line is cut instead: a single recording into
  contiguous blocks [train | validation | test], several samples by their order in time (cut
  by weight, too). Windows are later taken inside a block, so no window crosses a split
  boundary.

The balance check (:func:`share_tolerance`, :func:`share_warnings`): a label's share of windows
in a split is far from its target fraction ``f`` when it is off by more than
``max(f / 2, g)``, where ``g`` is the share of that label's windows held by its largest group.
Groups are indivisible, so one group's share is the granularity a split can be filled to;
half the target keeps labels of many small groups to a useful bound (10 % +- 5 %).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

from kiloml.data.index import SPLITS, Sample
from kiloml.data.windowing import sample_windows
from kiloml.errors import DataError


def split_key(s: Sample) -> str:
    """The unit a split keeps together: the group, or the sample itself when it has none (a
    recording cut into time blocks is cut on purpose: each block is its own unit)."""
    if "time_block" in s.reader_options():
        return f"sample:{s.id}"
    return s.group if s.group else f"sample:{s.id}"


def _order(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def targets(validation: float, test: float) -> dict[str, float]:
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DataError(f"split fractions validation={validation}, test={test} must be in [0, 1) "
                        "and sum to < 1")
    return {"train": 1.0 - validation - test, "validation": validation, "test": test}


def sample_weight(s: Sample, window_ms: float | None = None, stride_ms: float | None = None,
                  pad: str = "zero") -> float:
    """What a sample counts for in the split balance: the number of windows it yields, or,
    without windowing parameters, its duration in seconds."""
    if window_ms is None or stride_ms is None:
        return s.duration_s
    return float(len(sample_windows(s, window_ms, stride_ms, pad)))


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


def _time_order_splits(weights: Sequence[float], frac: dict[str, float]) -> list[str]:
    """Splits of consecutive samples cut at the target fractions of their total weight (a
    sample goes where the middle of its weight falls; equal weights when all are 0)."""
    w = np.asarray(weights, np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    mid = (np.cumsum(w) - w / 2) / w.sum()
    b1, b2 = frac["train"], frac["train"] + frac["validation"]
    return ["train" if m < b1 else "validation" if m < b2 else "test" for m in mid]


def assign_splits(new: Sequence[Sample], existing: Sequence[Sample], validation: float,
                  test: float, seed: int = 0, by: str = "auto",
                  notes: list[str] | None = None, window_ms: float | None = None,
                  stride_ms: float | None = None, pad: str = "zero") -> list[Sample]:
    """Give each new sample a split (see the module doc); returns the new samples (time-split
    labels come back cut into blocks). ``by``: auto | group | time | sample. With
    ``window_ms`` and ``stride_ms`` samples weigh the windows they yield, else their duration.
    With ``window_ms``, ``auto`` cuts a single recording in time only if its smallest block
    holds a whole window (a one-second keyword clip is never cut)."""
    frac = targets(validation, test)
    notes = notes if notes is not None else []
    if by not in ("auto", "group", "time", "sample"):
        raise DataError(f"unknown split method {by!r} (auto, group, time or sample)")
    new = list(new)
    out: list[Sample] = []
    noise = [s.with_(split="train") for s in new if s.role == "noise"]
    cand = [s for s in new if s.role != "noise"]

    def weight(s: Sample) -> float:
        return sample_weight(s, window_ms, stride_ms, pad)

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
            splits = _time_order_splits([weight(s) for s in members], frac)
            out += [s.with_(split=sp) for s, sp in zip(members, splits)]
            notes.append(f"label {lab!r}: one group only: split by time order, not by group")
    rest = [s for s in cand if s.label not in time_labels]

    # Units (groups, or samples with by="sample"); sticky ones keep their split.
    known: dict[str, str] = {}
    if by != "sample":
        for s in existing:
            if s.role == "sample" and s.group and "time_block" not in s.reader_options():
                known.setdefault(s.group, s.split)
    units: dict[str, list[Sample]] = defaultdict(list)
    for s in rest:
        units[f"sample:{s.id}" if by == "sample" else split_key(s)].append(s)
    labels = sorted({s.label for s in list(existing) + cand if s.role == "sample"})
    col = {lab: i for i, lab in enumerate(labels)}
    fixed = np.zeros((len(labels), len(SPLITS)))           # label x split weight
    for s in list(existing) + out:
        if s.role == "sample":
            fixed[col[s.label], SPLITS.index(s.split)] += weight(s)
    pending = []
    for key, members in units.items():
        if key in known:
            for s in members:
                fixed[col[s.label], SPLITS.index(known[key])] += weight(s)
        else:
            pending.append(key)
    w = np.zeros((len(pending), len(labels)))              # unit x label weight
    for u, key in enumerate(pending):
        for s in units[key]:
            w[u, col[s.label]] += weight(s)
    total = fixed.sum(axis=1) + w.sum(axis=0)
    order = sorted(range(len(pending)), key=lambda u: (-w[u].sum(), _order(pending[u], seed)))
    pending = [pending[u] for u in order]
    where = _balance_units(w[order], fixed, total, np.array([frac[sp] for sp in SPLITS]))
    assigned = dict(known)
    assigned.update({key: SPLITS[k] for key, k in zip(pending, where)})
    for key, members in units.items():
        out += [s.with_(split=assigned[key]) for s in members]
    position = {s.id: i for i, s in enumerate(new)}
    out.sort(key=lambda s: (position.get(s.id.split("@")[0], len(position)), s.offset))
    return out + noise


MAX_SWAP_UNITS = 1000   # pairwise swaps cost O(units^2) per step; beyond this, moves only


def _balance_units(w: np.ndarray, fixed: np.ndarray, total: np.ndarray,
                   frac: np.ndarray, max_steps: int = 100_000) -> list[int]:
    """Split index per unit minimising the sum over labels and splits of ((weight - target) /
    label total)^2, where target = fraction x label total. ``w``: (units, labels) weights, in
    greedy order; ``fixed``: (labels, splits) weight already placed.

    Greedy placement, then steepest descent over single moves and (up to MAX_SWAP_UNITS units)
    pairwise swaps. With e = placed - target and n_l = 1 / total_l^2, moving unit u from split
    a to b changes the error by sum_l n_l (2 w_ul^2 + 2 w_ul (e_lb - e_la)); swapping u (in a)
    with v (in b) by the same expression with w_u - w_v in place of w_u."""
    if len(w) == 0:
        return []
    n = 1.0 / np.where(total > 0, total, 1.0) ** 2
    err = fixed - total[:, None] * frac[None, :]           # (labels, splits)
    g = w * n                                              # (units, labels)
    where = np.zeros(len(w), dtype=np.int64)
    for u in range(len(w)):                                # argmin_b sum_l n w (w + 2 e_b)
        b = int(np.argmin(g[u] @ err))
        where[u] = b
        err[:, b] += w[u]
    q = np.sum(g * w, axis=1)                              # sum_l n w_u^2
    swaps = len(w) <= MAX_SWAP_UNITS
    m = g @ w.T if swaps else None                         # sum_l n w_u w_v
    rows = np.arange(len(w))
    for _ in range(max_steps):
        p = g @ err                                        # p[u, s] = sum_l n w_u e_ls
        own = p[rows, where]
        move = 2 * q[:, None] + 2 * (p - own[:, None])
        move[rows, where] = np.inf
        u, b = np.unravel_index(int(np.argmin(move)), move.shape)
        best, pair = float(move[u, b]), None
        if swaps:
            pv = p[:, where]                               # pv[u, v] = p[u, split of v]
            swap = 2 * (q[:, None] + q[None, :] - 2 * m) + 2 * (pv + pv.T - own[:, None]
                                                               - own[None, :])
            swap[where[:, None] == where[None, :]] = np.inf
            su, sv = np.unravel_index(int(np.argmin(swap)), swap.shape)
            if swap[su, sv] < best:
                best, pair = float(swap[su, sv]), (su, sv)
        if best >= -1e-12:
            break
        if pair is None:
            err[:, where[u]] -= w[u]
            err[:, b] += w[u]
            where[u] = b
        else:
            u, v = pair
            a, c = where[u], where[v]
            err[:, a] += w[v] - w[u]
            err[:, c] += w[u] - w[v]
            where[u], where[v] = c, a
    return [int(x) for x in where]


def group_leaks(samples: Iterable[Sample]) -> dict[str, list[str]]:
    """Groups found in more than one split, except recordings cut into time blocks."""
    where: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.role != "sample" or not s.group or "time_block" in s.reader_options():
            continue
        where[s.group].add(s.split)
    return {g: sorted(sp) for g, sp in where.items() if len(sp) > 1}


def share_tolerance(target: float, largest_group: float) -> float:
    """How far a label's share of a split may be from its target fraction (module doc)."""
    return max(0.5 * target, largest_group)


def share_warnings(samples: Iterable[Sample], validation: float, test: float,
                   window_ms: float | None = None, stride_ms: float | None = None,
                   pad: str = "zero") -> list[str]:
    """One line per (label, split) whose share of the label's windows (or duration, without
    windowing parameters) is off its target fraction by more than :func:`share_tolerance`."""
    frac = targets(validation, test)
    per: dict[str, Counter] = defaultdict(Counter)         # label -> split -> weight
    units: dict[str, Counter] = defaultdict(Counter)       # label -> unit -> weight
    for s in samples:
        if s.role != "sample":
            continue
        wt = sample_weight(s, window_ms, stride_ms, pad)
        per[s.label][s.split] += wt
        units[s.label][split_key(s)] += wt
    out = []
    what = "windows" if window_ms is not None and stride_ms is not None else "duration"
    for lab in sorted(per):
        total = sum(per[lab].values())
        if total <= 0:
            continue
        largest = max(units[lab].values()) / total
        for sp in SPLITS:
            share = per[lab][sp] / total
            tol = share_tolerance(frac[sp], largest)
            if abs(share - frac[sp]) > tol + 1e-9:
                out.append(f"label {lab!r}: {sp} holds {share:.0%} of its {what}, target "
                           f"{frac[sp]:.0%} +- {tol:.0%} (half the target or its largest "
                           f"group's share, {largest:.0%})")
    return out


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
