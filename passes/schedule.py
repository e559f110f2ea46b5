"""`schedule`: reorder independent instructions within a block.

Only pure instructions move, and only among each other: a block is cut at every instruction
that may have a side effect (calls, memory accesses, phis, terminators...), and each run of pure
instructions between two cuts is emitted in a random order that respects its data dependencies.
"""

from __future__ import annotations

import random
import re

from .framework import Pass, register
from .ir import BINOPS, Function, Instr
from .values import CASTS, uses

PURE = BINOPS | CASTS | frozenset(
    "icmp fcmp select getelementptr fneg fadd fsub fmul fdiv frem freeze extractvalue insertvalue "
    "extractelement insertelement shufflevector".split())
# Calls to intrinsics that only compute a value.
_PURE_CALL_RE = re.compile(
    r"(?:tail )?call \S+ @llvm\.(?:umin|umax|smin|smax|abs|fshl|fshr|ctpop|ctlz|cttz|bswap|bitreverse)\.[\w.]+\(")


def pure(ins: Instr) -> bool:
    if ins.result is None:
        return False
    if ins.op in PURE:
        return True
    return ins.op in ("call", "tail") and ins.text is not None and bool(_PURE_CALL_RE.match(ins.text)) and "#dbg" not in ins.text


def _reorder(run: list[Instr], rng: random.Random) -> list[Instr]:
    """A random topological order of `run` (its instructions' data dependencies kept)."""
    defined = {ins.result: k for k, ins in enumerate(run)}
    deps = [{defined[u] for u in uses(ins) if defined.get(u, k) < k} for k, ins in enumerate(run)]
    done: set[int] = set()
    out = []
    while len(out) < len(run):
        ready = [k for k in range(len(run)) if k not in done and deps[k] <= done]
        k = rng.choice(ready)
        done.add(k)
        out.append(run[k])
    return out


@register
class Schedule(Pass):
    name = "schedule"
    description = "reorders independent pure instructions within each block"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        changed = False
        for block in fn.blocks:
            out: list[Instr] = []
            run: list[Instr] = []
            for ins in block.instrs + [None]:
                if ins is not None and pure(ins):
                    run.append(ins)
                    continue
                if len(run) > 1:
                    new = _reorder(run, rng)
                    changed |= any(a is not b for a, b in zip(new, run))
                    run = new
                out += run
                run = []
                if ins is not None:
                    out.append(ins)
            block.instrs = out
        return changed
