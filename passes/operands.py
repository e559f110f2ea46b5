"""Operand-order passes: `swap-commutative` and `invert-compare`.

Both keep every value and only change how it is written: swapped operands (with the mirrored
predicate for ordered compares), or the inverse compare with branch targets / select arms swapped.
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import COMMUTATIVE, Function, take_type

SWAPPED = {"eq": "eq", "ne": "ne", "slt": "sgt", "sgt": "slt", "sle": "sge", "sge": "sle",
           "ult": "ugt", "ugt": "ult", "ule": "uge", "uge": "ule"}  # a P b == b SWAPPED[P] a
INVERSE = {"eq": "ne", "ne": "eq", "slt": "sge", "sge": "slt", "sgt": "sle", "sle": "sgt",
           "ult": "uge", "uge": "ult", "ugt": "ule", "ule": "ugt"}  # a INVERSE[P] b == !(a P b)


def _pick(rng: random.Random, items: list) -> list:
    """A random non-empty subset of `items`, each kept with probability 1/2."""
    return [i for i in items if rng.random() < 0.5] or [rng.choice(items)]


def _drop_meta(meta: str, kind: str) -> str:
    """`meta` without its `!kind` attachment (branch weights no longer fit swapped targets)."""
    return "".join(f", {m}" for m in meta.split(", ")[1:] if not m.startswith(f"!{kind} "))


@register
class SwapCommutative(Pass):
    name = "swap-commutative"
    description = "swaps the operands of commutative operations and compares (mirroring the predicate)"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        sites = [i for i in fn.instructions() if i.text is None and (i.op in COMMUTATIVE or i.op == "icmp")
                 and i.args[0] != i.args[1]]
        if not sites:
            return False
        for ins in _pick(rng, sites):
            ins.args.reverse()
            if ins.op == "icmp":
                ins.pred = SWAPPED[ins.pred]
        return True


@register
class InvertCompare(Pass):
    name = "invert-compare"
    description = "inverts compares used only by a branch or select, swapping its targets or arms"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        uses = fn.use_counts()
        compares = {i.result: i for i in fn.instructions() if i.op == "icmp" and i.text is None and uses.get(i.result) == 1}
        sites = [(compares[c], user) for user in fn.instructions() if user.text is None and user.op in ("br", "select")
                 and len(user.args) == 3 and (c := take_type(user.args[0])[1]) in compares]
        if not sites:
            return False
        for cmp, user in _pick(rng, sites):
            cmp.pred = INVERSE[cmp.pred]
            user.args[1], user.args[2] = user.args[2], user.args[1]
            user.meta = _drop_meta(user.meta, "prof")
        return True
