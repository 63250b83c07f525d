"""Activation memory planner: one arena, offsets from lifetimes, aliasing and in-place execution.

Vocabulary
- *buffer*: the bytes of one activation tensor, or of several tensors that alias (RESHAPE output
  and input share one buffer). A buffer lives from the step that writes it to the last step
  that reads it (graph inputs from step -1, graph outputs to the end).
- *block*: buffers placed at fixed offsets relative to each other. In-place execution of node
  ``n`` puts its output buffer into the block of an input buffer that dies at ``n``, at an
  offset ``delta`` the op guarantees safe (``OpDef.inplace_delta``): the output may then
  overlap the input it consumes. Within a block, buffers that are live at the same time and
  are not such a pair never overlap.
- Blocks are placed greedily (largest extent first, lowest offset that fits), comparing the
  member rectangles (bytes x lifetime), not the block's bounding box.

Which nodes run in place is chosen by search: an in-place chain can drift (each overlap with a
negative delta shifts later tensors down), so in place everywhere is not always best. Nodes
are ranked by the plain live size at their step and the planner tries "in place at the k
busiest steps" for every k, keeping the smallest arena.

The report gives the arena size next to the op-level lower bound of plain planning (largest sum
of live buffers at any step), which in-place execution can beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiloml.ir.graph import Graph
from kiloml.ir.ops import REGISTRY

ALIGN = 4


def _align_up(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN


def _align_down(x: int) -> int:
    return x // ALIGN * ALIGN


@dataclass
class Buffer:
    tensors: list[int]
    size: int
    first: int
    last: int


@dataclass
class Plan:
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    arena_bytes: int
    lower_bound_bytes: int
    inplace: list[tuple[int, int, int]] = field(default_factory=list)  # (node, in tensor, delta)
    scratch: dict[int, int] = field(default_factory=dict)  # node -> offset of its scratch buffer


class _Rects:
    """Placed rectangles: (offset, size, first, last)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, int]] = []

    def conflicts(self, off: int, size: int, first: int, last: int) -> list[tuple[int, int, int, int]]:
        return [r for r in self.items if r[2] <= last and first <= r[3]
                and r[0] < off + size and off < r[0] + r[1]]


def _buffers(g: Graph) -> tuple[list[Buffer], dict[int, int]]:
    """Alias sets of activation tensors with their lifetimes; tensor -> buffer index."""
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for node in g.nodes:
        if REGISTRY[node.op].is_alias():
            parent[find(node.outputs[0])] = find(node.inputs[0])
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in g.inputs:
        first[t] = -1
        last[t] = -1
    for n, node in enumerate(g.nodes):
        for t in node.inputs:
            if t >= 0 and not g.tensors[t].is_const:
                last[t] = max(last.get(t, n), n)
        for t in node.outputs:
            first.setdefault(t, n)
            last.setdefault(t, n)
    end = len(g.nodes)
    for t in g.outputs:
        last[t] = end
    groups: dict[int, list[int]] = {}
    for t in first:
        groups.setdefault(find(t), []).append(t)
    buffers, owner = [], {}
    for root, ts in groups.items():
        b = Buffer(sorted(ts), _align_up(max(g.tensors[t].nbytes for t in ts)),
                   min(first[t] for t in ts), max(last[t] for t in ts))
        for t in ts:
            owner[t] = len(buffers)
        buffers.append(b)
    return buffers, owner


def lower_bound(buffers: list[Buffer], steps: int) -> tuple[int, list[int]]:
    live = [sum(b.size for b in buffers if b.first <= s <= b.last) for s in range(-1, steps + 1)]
    return max(live), live[1:steps + 1]


def _plan_with(g: Graph, buffers: list[Buffer], owner: dict[int, int], deltas: dict[int, dict[int, int]],
               inplace_nodes: set[int]) -> tuple[dict[int, int], int, list[tuple[int, int, int]]]:
    # blocks: block id -> list of (buffer, rel offset)
    block_of = list(range(len(buffers)))
    members: dict[int, list[tuple[int, int]]] = {i: [(i, 0)] for i in range(len(buffers))}
    rel = [0] * len(buffers)
    pairs: set[tuple[int, int]] = set()
    used: list[tuple[int, int, int]] = []
    for n in sorted(inplace_nodes):
        node = g.nodes[n]
        bo = owner[node.outputs[0]]
        if buffers[bo].first != n or len(members[block_of[bo]]) != 1:
            continue
        for slot, delta in sorted(deltas[n].items()):
            t = node.inputs[slot]
            if t < 0 or g.tensors[t].is_const:
                continue
            bi = owner[t]
            if buffers[bi].last != n:
                continue
            # another operand in the same bytes (x + x, conv(x) + x, aliases) must be one the
            # op also declared safe to overwrite at this offset
            shared = [j for j, u in enumerate(node.inputs)
                      if j != slot and u >= 0 and not g.tensors[u].is_const and owner[u] == bi]
            if any(deltas[n].get(j, -1) < min(delta, 0) for j in shared):
                continue
            blk = block_of[bi]
            cand = rel[bi] + _align_down(min(delta, 0))
            ob = buffers[bo]
            clash = any(buffers[m].first <= ob.last and ob.first <= buffers[m].last
                        and r < cand + ob.size and cand < r + buffers[m].size and m != bi
                        for m, r in members[blk])
            if clash:
                continue
            members[blk].append((bo, cand))
            del members[bo]
            block_of[bo] = blk
            rel[bo] = cand
            pairs.add((bi, bo))
            used.append((n, t, cand - rel[bi]))
            break

    def extent(blk: int) -> int:
        ms = members[blk]
        return max(r + buffers[m].size for m, r in ms) - min(r for m, r in ms)

    rects = _Rects()
    base: dict[int, int] = {}
    for blk in sorted(members, key=lambda b: (-extent(b), b)):
        ms = members[blk]
        lo = -min(r for _, r in ms)
        cands, tried = {lo}, set()
        while True:
            b = min(c for c in cands if c not in tried)
            tried.add(b)
            hits = [(c, r) for m, r in ms
                    for c in rects.conflicts(b + r, buffers[m].size, buffers[m].first, buffers[m].last)]
            if not hits:
                placed = b
                break
            cands.update(max(_align_up(c[0] + c[1] - r), b + ALIGN) for c, r in hits)
        base[blk] = placed
        for m, r in ms:
            rects.items.append((placed + r, buffers[m].size, buffers[m].first, buffers[m].last))
    buf_offsets = [base[block_of[b]] + rel[b] for b in range(len(buffers))]
    arena = max((o + s for o, s, _, _ in rects.items), default=0)
    return buf_offsets, arena, used


def plan_memory(g: Graph, inplace: bool = True, scratch: dict[int, int] | None = None) -> Plan:
    """Place every activation tensor in one arena; see the module docstring.

    ``scratch`` maps node index -> bytes of temporary memory the node's kernel needs while it
    runs (live at that step only, never overlapping the node's operands).
    """
    buffers, owner = _buffers(g)
    scratch_buf: dict[int, int] = {}
    for n, nbytes in sorted((scratch or {}).items()):
        if nbytes > 0:
            scratch_buf[n] = len(buffers)
            buffers.append(Buffer([], _align_up(nbytes), n, n))
    lb, live = lower_bound(buffers, len(g.nodes))
    deltas = {n: REGISTRY[node.op].inplace_delta(g, node) if inplace else {}
              for n, node in enumerate(g.nodes)}
    best = _plan_with(g, buffers, owner, deltas, set())
    if inplace:
        ranked = sorted(range(len(g.nodes)), key=lambda n: (-live[n], n))
        candidates = [n for n in ranked if deltas[n]]
        for k in range(1, len(candidates) + 1):
            trial = _plan_with(g, buffers, owner, deltas, set(candidates[:k]))
            if trial[1] < best[1]:
                best = trial
    buf_offsets, arena, used = best
    offsets = {t: buf_offsets[b] for t, b in owner.items()}
    return Plan(offsets, arena, lb, used, {n: buf_offsets[b] for n, b in scratch_buf.items()})
