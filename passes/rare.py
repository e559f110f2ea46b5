"""`rare-branch`: a side path taken only when a live value equals a random constant.

A block is cut in two. The head compares a frozen live integer x with a random constant K and
branches to a new block when they are equal, which real inputs about never are, but codegen
cannot know it. That block recomputes an integer v the tail reads as `v op (z mix R)`, where
z (x - K or x ^ K) is zero on that path, so the result equals v; a phi joins the two paths.
The machine code differs, as with bogus-branch, but the common path pays only a compare and a
branch the CPU predicts (an opaque predicate costs a multiply and more; junk-code's stack slot
can cost a frame), which suits small and hot functions.
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import Block, Function, Instr, int_width
from .rules import literal
from .values import at_random_points, rename_uses, split_block

# v op (z mix R) == v whenever z == 0, for any v and R (proven in tests/test_passes_more.py).
FORMS = (("add", "mul"), ("xor", "and"), ("or", "and"), ("sub", "shl"))


def rare_constant(rng: random.Random, width: int) -> int:
    """A constant the guard compares with: one no small or common value equals."""
    while True:
        k = rng.getrandbits(width)
        low = min(k, (1 << width) - k)  # small positive or negative numbers are common inputs
        if low >= 1 << (width // 2) and k & (k - 1) and (k + 1) & k:  # nor a power of two or a low mask
            return k


@register
class RareBranch(Pass):
    name = "rare-branch"
    description = "adds a side path taken only when a live value equals a random constant; it recomputes a value"
    parameters = {"sites": "most side paths added"}
    sites = 1

    def apply(self, fn: Function, rng: random.Random) -> bool:
        def insert(b: int, p: int, inputs, guards) -> bool:  # a value the tail reads, and a guard to compare
            if inputs and guards:
                self._insert(fn, rng, b, p, rng.choice(inputs), rng.choice(guards))
            return bool(inputs and guards)

        return at_random_points(fn, rng, self.sites, insert)

    @staticmethod
    def _insert(fn: Function, rng: random.Random, index: int, point: int, value: tuple[str, str],
                guard: tuple[str, int]) -> None:
        split_block(fn, index, point)
        head, tail = fn.blocks[index], fn.blocks[index + 1]
        rare = Block(fn.fresh("rare")[1:])
        x, xwidth = guard
        xty = f"i{xwidth}"
        k = literal(rare_constant(rng, xwidth), xwidth)
        frozen, hit = fn.fresh("rare.x"), fn.fresh("rare.hit")
        head.instrs[-1:] = [Instr("freeze", frozen, text=f"freeze {xty} {x}"),
                            Instr("icmp", hit, pred="eq", ty=xty, args=[frozen, k]),
                            Instr("br", args=[f"i1 {hit}", f"label %{rare.label}", f"label %{tail.label}"])]
        v, vty = value
        vwidth = int_width(vty)
        op, mix = rng.choice(FORMS)
        z = fn.fresh("rare.z")
        rare.instrs.append(Instr(rng.choice(("sub", "xor")), z, ty=xty, args=[frozen, k]))
        if xwidth != vwidth:  # zero stays zero through either cast
            cast, z = ("zext" if xwidth < vwidth else "trunc"), fn.fresh("rare.z")
            rare.instrs.append(Instr(cast, z, text=f"{cast} {xty} {rare.instrs[-1].result} to {vty}"))
        r = rng.randrange(vwidth) if mix == "shl" else rng.getrandbits(vwidth) | 1
        mixed, junk = fn.fresh("rare.m"), fn.fresh("rare.v")
        rare.instrs += [Instr(mix, mixed, ty=vty, args=[z, literal(r, vwidth)]),
                        Instr(op, junk, ty=vty, args=[v, mixed]),
                        Instr("br", args=[f"label %{tail.label}"])]
        merged = fn.fresh("rare.join")
        for ins in tail.instrs:
            rename_uses(ins, v, merged)
        tail.instrs.insert(0, Instr("phi", merged, ty=vty, args=[v, f"%{head.label}", junk, f"%{rare.label}"]))
        fn.blocks.insert(rng.randint(index + 2, len(fn.blocks)), rare)
