"""`constant-blinding`: integer constant operands become instructions that compute them.

c becomes `xor (c^k) k`, `add a (c-a)` or `sub a (a-c)` for random k and a, so the constant
never appears in the code. The rules are proven with the substitution rules (tests/test_rules.py).
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import WIDTHS, Function, Instr, int_width, take_type
from .rules import Rule, const_value

RULES_TEXT = """
C => xor D K        where K = rand, D = xor C K
C => add A B        where A = rand, B = sub C A
C => sub A B        where A = rand, B = sub A C
"""

RULES = [Rule.parse(line) for line in RULES_TEXT.splitlines() if line.strip()]
P_BLIND = 0.5


def _constant_operands(ins: Instr) -> list[tuple[int, str, int]]:
    """(operand index, type, width) of `ins`'s integer constant operands that may become values."""
    if ins.text is not None:
        return []
    found = []
    if ins.op == "select":
        for i in (1, 2):
            ty, value = take_type(ins.args[i])
            width = int_width(ty)
            if width in WIDTHS and const_value(value, width) is not None:
                found.append((i, ty, width))
    elif ins.op not in ("br", "phi"):
        width = int_width(ins.ty)
        if width in WIDTHS:
            found += [(i, ins.ty, width) for i, a in enumerate(ins.args) if const_value(a, width) is not None]
    return found


@register
class ConstantBlinding(Pass):
    name = "constant-blinding"
    description = "replaces integer constants with instructions computing them from random constants"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        sites = [(ins, i, ty, w) for ins in fn.instructions() for i, ty, w in _constant_operands(ins)]
        if not sites:
            return False
        chosen = [s for s in sites if rng.random() < P_BLIND] or [rng.choice(sites)]
        before: dict[int, list[Instr]] = {}
        for ins, i, ty, width in chosen:
            typed = ins.op == "select"
            value = const_value(take_type(ins.args[i])[1] if typed else ins.args[i], width)
            new = rng.choice(RULES).instantiate({"C": value}, width, ty, rng, fn.fresh)
            new[-1].result = fn.fresh("k")
            before.setdefault(id(ins), []).extend(new)
            ins.args[i] = f"{ty} {new[-1].result}" if typed else new[-1].result
        for block in fn.blocks:
            block.instrs = [n for ins in block.instrs for n in (*before.get(id(ins), ()), ins)]
        return True
