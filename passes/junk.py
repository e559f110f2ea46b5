"""`junk-code`: dead computations that codegen must keep.

A fresh stack slot (an alloca in the entry block) is read and written with volatile accesses,
which no optimizer may remove; between them, a live value of the function or a constant is
mixed in. Nothing reads the slot otherwise, so the function computes what it did.
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import Function, Instr
from .rules import literal
from .values import insertion_points, int_values

OPS = ("add", "sub", "xor", "mul", "or", "and")


@register
class JunkCode(Pass):
    name = "junk-code"
    description = "adds junk computations kept alive by volatile accesses to a fresh stack slot"
    parameters = {"sites": "most places junk is added at"}
    sites = 3

    def apply(self, fn: Function, rng: random.Random) -> bool:
        points = insertion_points(fn)
        if not points:
            return False
        width = rng.choice((32, 64))
        ty, slot = f"i{width}", fn.fresh("junk.slot")
        chosen = sorted(rng.sample(points, min(len(points), rng.randint(1, max(1, self.sites)))), reverse=True)
        for b, p in chosen:  # from the last point back, so earlier indices stay valid
            acc = fn.fresh("junk")
            code = [Instr("load", acc, text=f"load volatile {ty}, ptr {slot}, align {width // 8}")]
            for _ in range(rng.randint(1, 2)):
                values = int_values(fn, b, p)
                operand = literal(rng.getrandbits(width), width)
                if values and rng.random() < 0.6:
                    value, w = rng.choice(values)
                    operand = value
                    if w != width:
                        operand = fn.fresh("junk")
                        cast = "zext" if w < width else "trunc"
                        code.append(Instr(cast, operand, text=f"{cast} i{w} {value} to {ty}"))
                result = fn.fresh("junk")
                code.append(Instr(rng.choice(OPS), result, ty=ty, args=[acc, operand]))
                acc = result
            code.append(Instr("store", text=f"store volatile {ty} {acc}, ptr {slot}, align {width // 8}"))
            fn.blocks[b].instrs[p:p] = code
        entry = fn.blocks[0].instrs
        entry[0:0] = [Instr("alloca", slot, text=f"alloca {ty}, align {width // 8}"),
                      Instr("store", text=f"store volatile {ty} {literal(rng.getrandbits(width), width)}, ptr {slot}, align {width // 8}")]
        return True
