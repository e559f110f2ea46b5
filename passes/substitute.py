"""`substitute`: rewrite integer arithmetic, logic and compares with equivalent expressions.

The rules are the table below (notation in rules.py); tests/test_rules.py proves every one with
z3 at every width in WIDTHS. Rules from `mewe.rules` plugins, proven when loaded, apply too
(`rules_for`). Rewritten code may be rewritten again, up to `depth` times, so multiplications by
constants unfold into chains of shifts and adds.
"""

from __future__ import annotations

import random

from .framework import Pass, register
from .ir import WIDTHS, Function, Instr, int_width
from .rules import NotApplicable, Rule, const_value, plugin_rules

RULES_TEXT = """
# addition and subtraction
add x y => sub x (sub 0 y)
add x y => add (xor x y) (shl (and x y) 1)
add x y => add (or x y) (and x y)
add x y => sub (shl (or x y) 1) (xor x y)
add x y => xor (sub (xor x -1) y) -1
add x y => add (add x R) (sub y R)                    where R = rand
add x C => sub x D                                    where D = sub 0 C
sub x y => add x (sub 0 y)
sub x y => add x (add (xor y -1) 1)
sub x y => sub (xor x y) (shl (and (xor x -1) y) 1)
sub x y => sub (and x (xor y -1)) (and (xor x -1) y)
sub x y => xor (add (xor x -1) y) -1
sub x C => add x D                                    where D = sub 0 C
sub 0 x => add (xor x -1) 1
# logic
xor x y => sub (or x y) (and x y)
xor x y => or (and x (xor y -1)) (and (xor x -1) y)
xor x y => add (sub x y) (shl (and (xor x -1) y) 1)
xor x y => xor (xor x R) (xor y R)                    where R = rand
xor x -1 => sub -1 x
or x y => add (xor x y) (and x y)
or x y => add (and x (xor y -1)) y
or x y => xor (xor x y) (and x y)
or x C => xor (and x D) C                             where D = xor C -1
and x y => sub (or x y) (xor x y)
and x y => sub (add x y) (or x y)
and x y => xor (or x y) (xor x y)
and x C => xor (or x D) D                             where D = xor C -1
# multiplication and shifts: strength reduction and expansion
mul x C => shl x K                                    where K = log2 C
mul x C => add (shl x K) (mul x D)                    where K = bit C, D = sub C (shl 1 K), ne D 0
mul x C => sub (mul x D) (shl x K)                    where R = rand, K = urem R W, D = add C (shl 1 K)
mul x C => sub 0 (mul x D)                            where D = sub 0 C
shl x C => mul x D                                    where D = shl 1 C
# comparisons
eq x y => eq (xor x y) 0
eq x y => eq (sub x y) 0
ne x y => ne (xor x y) 0
ne x y => ne (sub x y) 0
slt x y => ult (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
sle x y => ule (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
sgt x y => ugt (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
sge x y => uge (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
ult x y => slt (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
ule x y => sle (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
ugt x y => sgt (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
uge x y => sge (xor x S) (xor y S)                    where S = shl 1 (sub W 1)
"""

RULES = [Rule.parse(line) for line in RULES_TEXT.splitlines() if line.strip() and not line.startswith("#")]
RULES_BY_OP = {op: [r for r in RULES if r.op == op] for op in dict.fromkeys(r.op for r in RULES)}
UNFOLD = [r for r in RULES if r.op == "mul" and ("log2 C" in r.text or "bit C" in r.text)]  # x*C as shifts and adds
MAX_UNFOLD_BITS = 4  # multiplications by constants with at most this many set bits may unfold completely


def rules_for(op: str) -> list[Rule]:
    """The rules whose source has operator `op`: the table's, then the loaded plugins'."""
    return RULES_BY_OP.get(op, []) + plugin_rules(op)


def rewrite(fn: Function, ins: Instr, rng: random.Random, rules: list[Rule] | None = None) -> list[Instr] | None:
    """Instructions that replace `ins` by a random applicable rule (the last keeps its name), or None."""
    width = int_width(ins.ty) if ins.text is None else None
    if width not in WIDTHS or all(const_value(a, width) is not None for a in ins.args):
        return None  # not integer code, or constant arithmetic (left for codegen to fold)
    if rules is None:
        rules = rules_for(ins.pred if ins.op == "icmp" else ins.op)
    options = [(rule, found) for rule in rules if (found := rule.match(ins, width)) is not None]
    rng.shuffle(options)
    for rule, found in options:
        try:
            new = rule.instantiate(found, width, ins.ty, rng, fn.fresh)
        except NotApplicable:
            continue
        new[-1].result = ins.result
        return new
    return None


@register
class Substitute(Pass):
    name = "substitute"
    description = "rewrites integer arithmetic, logic and compares as equivalent (mixed boolean-arithmetic) expressions"
    parameters = {"p": "chance that an eligible instruction is rewritten",
                  "depth": "how many times code a rule produced may itself be rewritten"}
    p = 0.5
    depth = 2

    def apply(self, fn: Function, rng: random.Random) -> bool:
        eligible = [(b, i) for b in fn.blocks for i in b.instrs
                    if i.text is None and i.op not in ("br", "phi", "select") and int_width(i.ty) in WIDTHS]
        if not eligible:
            return False
        chosen = {id(i) for _, i in eligible if rng.random() < self.p} or {id(rng.choice(eligible)[1])}
        changed = False
        for block in fn.blocks:
            out: list[Instr] = []
            for ins in block.instrs:
                new = self._expand(fn, ins, rng, 0) if id(ins) in chosen else None
                out.extend(new or [ins])
                changed |= new is not None
            block.instrs = out
        return changed

    def _expand(self, fn: Function, ins: Instr, rng: random.Random, depth: int) -> list[Instr] | None:
        if _small_mul(ins) and rng.random() < 0.5:
            return _unfold(fn, ins, rng)
        new = rewrite(fn, ins, rng)
        if new is None or depth + 1 >= self.depth:
            return new
        out = []
        for n in new:
            again = self._expand(fn, n, rng, depth + 1) if rng.random() < self.p else None
            out.extend(again or [n])
        return out


def _small_mul(ins: Instr) -> bool:
    """A multiplication by a constant with few set bits."""
    width = int_width(ins.ty)
    if ins.op != "mul" or ins.text is not None or width is None:
        return False
    consts = [c for a in ins.args if (c := const_value(a, width)) is not None]
    return len(consts) == 1 and bin(consts[0]).count("1") <= MAX_UNFOLD_BITS


def _unfold(fn: Function, ins: Instr, rng: random.Random) -> list[Instr] | None:
    """x*C entirely as shifts and adds, one set bit of C at a time."""
    new = rewrite(fn, ins, rng, UNFOLD)
    if new is None:
        return None
    return [m for n in new for m in ((_unfold(fn, n, rng) or [n]) if _small_mul(n) else [n])]
