"""`bogus-branch`: bogus control flow behind opaque predicates.

A block is cut in two and the halves are joined by a branch on a predicate that always holds
(each in OPAQUE, proven at every width by tests/test_passes_more.py) but that codegen cannot
fold. The never-taken side computes a perturbed copy of a value the second half reads and
re-enters it through a phi, so the junk stays live. The predicate's input is frozen: branching
on poison would be undefined.
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import Block, Function, Instr, int_width
from .rules import emit, literal, parse_expr
from .values import at_random_points, rename_uses, split_block

# Always 1 for every x at every width in WIDTHS.
OPAQUE_TEXT = """
eq (and (mul x (add x 1)) 1) 0
eq (and (mul x (sub x 1)) 1) 0
ult (and (mul x x) 3) 2
ne (and (mul x x) 3) 2
eq (and (mul (or x 1) (or x 1)) 7) 1
eq (and (and x (sub 0 x)) (sub (and x (sub 0 x)) 1)) 0
"""
OPAQUE = [parse_expr(line) for line in OPAQUE_TEXT.strip().splitlines()]
JUNK_OPS = ("add", "sub", "xor", "mul", "or", "and")


@register
class BogusBranch(Pass):
    name = "bogus-branch"
    description = "adds never-taken paths behind opaque predicates, joined back through phis"
    parameters = {"sites": "most never-taken paths added"}
    sites = 2

    def apply(self, fn: Function, rng: random.Random) -> bool:
        def insert(b: int, p: int, inputs, guards) -> bool:  # needs an integer to build the predicate from
            if guards:
                self._insert(fn, rng, b, p, inputs, guards)
            return bool(guards)

        return at_random_points(fn, rng, self.sites, insert)

    @staticmethod
    def _insert(fn: Function, rng: random.Random, index: int, point: int, inputs, guards) -> None:
        split_block(fn, index, point)
        head, tail = fn.blocks[index], fn.blocks[index + 1]
        bogus = Block(fn.fresh("bogus")[1:])
        x, width = rng.choice(guards)
        ty = f"i{width}"
        frozen = fn.fresh("opq")
        code = [Instr("freeze", frozen, text=f"freeze {ty} {x}")]
        emit(rng.choice(OPAQUE), {"x": frozen}, width, ty, lambda: fn.fresh("opq"), code, root=True)
        code[-1].result = fn.fresh("opq")
        head.instrs[-1:] = code + [Instr("br", args=[f"i1 {code[-1].result}", f"label %{tail.label}", f"label %{bogus.label}"])]
        if inputs:  # a perturbed copy of a value the tail reads, merged back in by a phi
            value, vty = rng.choice(inputs)
            vwidth, junk = int_width(vty), value
            for _ in range(rng.randint(1, 3)):
                new = fn.fresh("junk")
                other = x if int_width(ty) == vwidth and rng.random() < 0.3 else literal(rng.getrandbits(vwidth), vwidth)
                bogus.instrs.append(Instr(rng.choice(JUNK_OPS), new, ty=vty, args=[junk, other]))
                junk = new
            merged = fn.fresh("merge")
            for ins in tail.instrs:
                rename_uses(ins, value, merged)
            tail.instrs.insert(0, Instr("phi", merged, ty=vty, args=[value, f"%{head.label}", junk, f"%{bogus.label}"]))
        bogus.instrs.append(Instr("br", args=[f"label %{tail.label}"]))
        fn.blocks.insert(rng.randint(index + 1, len(fn.blocks)), bogus)
