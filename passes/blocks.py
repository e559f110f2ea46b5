"""Control-flow layout passes: `shuffle-blocks` and `split-blocks`.

Block order in LLVM IR carries no meaning except that the entry comes first, and a block may be
cut anywhere after its phis with an unconditional branch (phis of its successors then name the
second half as their predecessor).
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import Function
from .values import split_block, split_points



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


@register
class SplitBlocks(Pass):
    name = "split-blocks"
    description = "splits basic blocks in two, joined by an unconditional branch"
    parameters = {"splits": "most blocks split"}
    splits = 3

    def apply(self, fn: Function, rng: random.Random) -> bool:
        if any(i.op == "phi" and i.text is not None for i in fn.instructions()):
            return False  # a phi the model cannot rename
        changed = False
        for _ in range(rng.randint(1, max(1, self.splits))):
            sites = [(b, p) for b in range(len(fn.blocks)) for p in split_points(fn, b)]
            if not sites:
                break
            index, point = rng.choice(sites)
            split_block(fn, index, point)
            changed = True
        return changed
