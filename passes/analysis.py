"""Analyses of an editable Function for passes: the CFG, the dominator tree, natural loops and a
static block-frequency estimate.

`analyze(fn)` computes them from the function as it is now, in time linear in its size (the
dominator tree by Cooper, Harvey and Kennedy's iterative algorithm over reverse postorder), and
keeps the result on the function until its control flow changes: a pass may call it as often as
it likes, and after its own edits it gets a fresh one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mewe.llvmir import cfg_cost

from .ir import Function

_LABEL_RE = re.compile(r'\blabel (%(?:[-a-zA-Z$._0-9]+|"[^"]*"))')
LOOP_WEIGHT = 8  # a loop runs its body this many times per entry, in the frequency estimate


@dataclass
class Analysis:
    """Facts about one shape of a function's control flow; blocks are indices into fn.blocks."""

    successors: list[list[int]]
    predecessors: list[list[int]]
    idom: list[int | None]  # immediate dominator; None for the entry and unreachable blocks
    reachable: list[bool]
    loop_depth: list[int]  # natural loops around each block

    def dominates(self, a: int, b: int) -> bool:
        """Whether block `a` dominates block `b` (every block dominates itself)."""
        if not self.reachable[b]:
            return False
        while b != a and self.idom[b] is not None:
            b = self.idom[b]
        return b == a

    def dominators(self, b: int) -> list[int]:
        """The blocks that strictly dominate `b`, nearest first."""
        out = []
        while self.reachable[b] and self.idom[b] is not None:
            b = self.idom[b]
            out.append(b)
        return out

    def frequency(self, b: int) -> int:
        """A static estimate of how often block `b` runs per call: LOOP_WEIGHT per enclosing loop."""
        return LOOP_WEIGHT ** min(3, self.loop_depth[b])


def successors(fn: Function) -> list[list[int]]:
    """Each block's successors, from the labels its terminator names."""
    index = {f"%{b.label}": i for i, b in enumerate(fn.blocks)}
    index.update({f'%"{b.label}"': i for i, b in enumerate(fn.blocks)})
    out = []
    for block in fn.blocks:
        last = block.instrs[-1] if block.instrs else None
        labels = _LABEL_RE.findall(str(last)) if last is not None and last.is_terminator else []
        out.append(list(dict.fromkeys(index[name] for name in labels if name in index)))
    return out


def body_cost(fn: Function) -> int:
    """The linker's static cost estimate of `fn` (`mewe.llvmir.cfg_cost`), from this model: the
    same number `mewe.llvmir.function_cost` finds in the parsed body, without the parse."""
    sizes = [sum(1 for ins in b.instrs if not ins.op.startswith("#dbg_")) for b in fn.blocks]
    return cfg_cost(sizes, successors(fn), any(ins.op == "alloca" for ins in fn.instructions()))


def analyze(fn: Function) -> Analysis:
    """The analyses of `fn`'s current control flow (cached while it stays the same)."""
    shape = tuple((b.label, str(b.instrs[-1]) if b.instrs else "") for b in fn.blocks)
    cached = getattr(fn, "_analysis", None)
    if cached is not None and cached[0] == shape:
        return cached[1]
    result = _analyze(successors(fn))
    fn._analysis = (shape, result)
    return result


def _analyze(succs: list[list[int]]) -> Analysis:
    n = len(succs)
    preds: list[list[int]] = [[] for _ in range(n)]
    for u, vs in enumerate(succs):
        for v in vs:
            preds[v].append(u)
    order: list[int] = []  # postorder of the blocks reachable from the entry
    seen = [False] * n
    if n:
        seen[0] = True
        stack = [(0, iter(succs[0]))]
        while stack:
            u, it = stack[-1]
            v = next(it, None)
            if v is None:
                order.append(u)
                stack.pop()
            elif not seen[v]:
                seen[v] = True
                stack.append((v, iter(succs[v])))
    rank = {b: i for i, b in enumerate(order)}  # postorder number
    idom: list[int | None] = [None] * n
    if n:
        idom[0] = 0
    changed = True
    while changed:
        changed = False
        for b in reversed(order):
            if b == 0:
                continue
            done = [p for p in preds[b] if idom[p] is not None]
            new = done[0]
            for p in done[1:]:
                new = _intersect(p, new, idom, rank)
            if idom[b] != new:
                idom[b], changed = new, True
    if n:
        idom[0] = None
    analysis = Analysis(succs, preds, idom, seen, [0] * n)
    latches: dict[int, list[int]] = {}  # a back edge u -> h (h dominates u) closes a loop headed by h
    for u in order:
        for h in succs[u]:
            if analysis.dominates(h, u):
                latches.setdefault(h, []).append(u)
    for h, ends in latches.items():  # one loop per header, whatever its number of back edges
        body, work = {h}, list(ends)
        while work:
            w = work.pop()
            if w not in body:
                body.add(w)
                work += [p for p in preds[w] if seen[p]]
        for w in body:
            analysis.loop_depth[w] += 1
    return analysis


def _intersect(a: int, b: int, idom: list[int | None], rank: dict[int, int]) -> int:
    while a != b:
        while rank[a] < rank[b]:
            a = idom[a]  # type: ignore[assignment]
        while rank[b] < rank[a]:
            b = idom[b]  # type: ignore[assignment]
    return a
