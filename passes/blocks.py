"""Control-flow layout passes: `shuffle-blocks` and `split-blocks`.

Block order in LLVM IR carries no meaning except that the entry comes first, and a block may be
cut anywhere after its phis with an unconditional branch (phis of its successors then name the
second half as their predecessor).
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import Block, Function, Instr

EH_PADS = frozenset("landingpad catchpad cleanuppad catchswitch".split())
MAX_SPLITS = 3


@register
class ShuffleBlocks(Pass):
    name = "shuffle-blocks"
    description = "reorders the basic blocks (the entry block stays first)"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        rest = fn.blocks[1:]
        if len(rest) < 2:
            return False
        order = rest[:]
        while order == rest:
            rng.shuffle(order)
        fn.blocks[1:] = order
        return True


def _split_points(fn: Function, index: int) -> list[int]:
    """Where block `index` may be cut: after phis, EH pads and the entry's leading allocas; never
    between a musttail call and its ret, nor after a call the block ends unreachable behind."""
    instrs = fn.blocks[index].instrs
    start = fn.blocks[index].phi_count
    if start < len(instrs) and instrs[start].op in EH_PADS:
        start += 1
    if index == 0:  # allocas stay in the entry block, static
        while start < len(instrs) and instrs[start].op == "alloca":
            start += 1
    end = len(instrs)
    if instrs and instrs[-1].op == "unreachable":
        # nothing after a call that does not return (`call @abort(); unreachable`): LLVM's wasm
        # backend crashes on values defined after a trap and used in a later block
        calls = [i for i, ins in enumerate(instrs) if ins.op in ("call", "invoke", "callbr", "tail", "musttail", "notail")]
        end = calls[-1] + 1 if calls else end
    return [i for i in range(start, end) if i == 0 or not (instrs[i - 1].text or "").startswith("musttail ")]


@register
class SplitBlocks(Pass):
    name = "split-blocks"
    description = "splits basic blocks in two, joined by an unconditional branch"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        if any(i.op == "phi" and i.text is not None for i in fn.instructions()):
            return False  # a phi the model cannot rename
        changed = False
        for _ in range(rng.randint(1, MAX_SPLITS)):
            sites = [(b, p) for b in range(len(fn.blocks)) for p in _split_points(fn, b)]
            if not sites:
                break
            index, point = rng.choice(sites)
            self._split(fn, index, point)
            changed = True
        return changed

    @staticmethod
    def _split(fn: Function, index: int, point: int) -> None:
        head = fn.blocks[index]
        label = fn.fresh(head.label)
        tail = Block(label[1:], head.instrs[point:])
        head.instrs = head.instrs[:point] + [Instr("br", args=[f"label {label}"])]
        fn.blocks.insert(index + 1, tail)
        old = f"%{head.label}"
        for ins in fn.instructions():  # predecessors named in phis: the terminator moved to `tail`
            if ins.op == "phi" and ins.text is None:
                ins.args[1::2] = [label if b == old else b for b in ins.args[1::2]]
