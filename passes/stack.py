"""`stack-layout`: a different stack frame for the same function.

The entry block's static allocas are moved to its top in a random order, some get a larger
alignment, and padding slots go between them (each touched by a volatile store so codegen keeps
it). Only out-of-bounds accesses, which are undefined, could tell the difference.
"""

from __future__ import annotations

import random
import re

from .framework import Pass, register
from .ir import Function, Instr, split_top

_ALIGN_RE = re.compile(r"align (\d+)")
PAD_SIZES = (4, 8, 16, 24, 32, 64)
MAX_ALIGN = 16


def _static(ins: Instr) -> bool:
    """An alloca with a constant size and nothing unusual about it."""
    if ins.op != "alloca" or ins.text is None or not ins.result:
        return False
    items = split_top(ins.text[len("alloca ") :])
    if items[0].split(" ")[0] in ("inalloca", "swifterror"):
        return False
    rest = [i for i in items[1:] if not i.startswith(("align ", "!", "addrspace("))]
    return all("%" not in i for i in rest)


@register
class StackLayout(Pass):
    name = "stack-layout"
    description = "reorders the entry block's stack slots, raises their alignment and pads between them"
    parameters = {"pads": "most padding slots added"}
    pads = 3

    def apply(self, fn: Function, rng: random.Random) -> bool:
        entry = fn.blocks[0].instrs
        slots = [i for i in entry if _static(i)]
        if not slots:
            return False
        rest = [i for i in entry if not _static(i)]
        order = slots[:]
        rng.shuffle(order)
        for ins in order:
            m = _ALIGN_RE.search(ins.text)
            if m and rng.random() < 0.3 and int(m.group(1)) < MAX_ALIGN:
                align = min(MAX_ALIGN, int(m.group(1)) * 2 ** rng.randint(1, 2))
                ins.text = ins.text[: m.start()] + f"align {align}" + ins.text[m.end() :]
        touches = []
        for _ in range(rng.randint(1, max(1, self.pads))):
            pad = fn.fresh("pad")
            order.insert(rng.randint(0, len(order)), Instr("alloca", pad, text=f"alloca [{rng.choice(PAD_SIZES)} x i8], align {2 ** rng.randint(0, 4)}"))
            touches.append(Instr("store", text=f"store volatile i8 {rng.randrange(256) - 128}, ptr {pad}, align 1"))
        fn.blocks[0].instrs = order + touches + rest
        return True
