"""Every rewrite rule is proven with z3 at every width it is applied at, honouring poison; and
the code a rule emits computes what the proof says (an interpreter cross-checks instantiation)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mewe.passes import blinding, substitute
from mewe.passes.ir import PREDICATES, Instr
from mewe.passes.rules import NotApplicable, Rule, const_value, flag_sets, fold, literal, prove

z3 = pytest.importorskip("z3")

TABLES = [(rule, substitute.WIDTHS) for rule in substitute.RULES] + [(rule, blinding.WIDTHS) for rule in blinding.RULES]


@pytest.mark.parametrize("rule,widths", TABLES, ids=[r.text.split(" where")[0].strip() for r, _ in TABLES])
def test_rule_is_proven_at_every_width_and_flag_set(rule, widths):
    for width in widths:
        for flags in flag_sets(rule):
            assert prove(rule, width, flags) is None, f"{rule.text} fails at i{width} {flags}"


@pytest.mark.parametrize("text", [
    "sub x y => sub y x",  # wrong value
    "xor x y => xor x (or y (shl y W))",  # right value, but the target is poison (shift by the width)
    "mul x C => add (shl x K) (mul x C) where K = bit C",  # wrong constant arithmetic
    "add x y => sub x (sub 0 (add y R)) where R = rand",
])
def test_prover_rejects_wrong_rules(text):
    assert any(prove(Rule.parse(text), w) is not None for w in (8, 32))


def test_flags_make_the_source_less_defined():
    rule = Rule.parse("add x y => add y x")
    assert flag_sets(rule) == [(), ("nsw",), ("nuw",), ("nsw", "nuw")]
    assert prove(rule, 8, ("nsw", "nuw")) is None


@pytest.mark.parametrize("text", ["add x => x", "add x y => add x Z", "add (add x y) z => x", "add x y => eq (eq x y) 0",
                                  "add x y => sub x (", "x => add x 1"])
def test_malformed_rules_are_refused(text):
    with pytest.raises(ValueError):
        Rule.parse(text)


def _run(instrs: list[Instr], env: dict, width: int) -> int:
    """Interpret emitted instructions (binops, icmp) on unsigned values."""
    for ins in instrs:
        vals = [env[a] if a.startswith("%") else const_value(a, width) for a in ins.args]
        env[ins.result] = fold(ins.pred if ins.op == "icmp" else ins.op, *vals, width)
    return env[instrs[-1].result]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TABLES), st.sampled_from((8, 16, 32, 64)), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**32))
def test_instantiated_rules_compute_the_source(table_rule, width, a, b, seed):
    rule, _ = table_rule
    a, b = a % (1 << width), b % (1 << width)
    rng, counter = random.Random(seed), iter(range(10**6))
    if rule.op == "const":
        bindings, expected = {"C": a}, a
    else:
        args = [literal(a, width) if isinstance(p, int) or p.isupper() else f"%{p}" for p in rule.source[1:]]
        for i, p in enumerate(rule.source[1:]):  # pattern constants must hold their value
            if isinstance(p, int):
                args[i] = literal(p, width)
        ins = Instr("icmp" if rule.op in PREDICATES else rule.op, "%r", ty=f"i{width}", args=args)
        if ins.op == "icmp":
            ins.pred = rule.op
        bindings = rule.match(ins, width)
        assert bindings is not None
        env = {"%x": a, "%y": b}
        values = [env.get(x, None) if x.startswith("%") else const_value(x, width) for x in args]
        try:
            expected = fold(rule.op, *values, width)
        except NotApplicable:
            return  # source undefined: any target is fine
    try:
        new = rule.instantiate(bindings, width, f"i{width}", rng, lambda: f"%t{next(counter)}")
    except NotApplicable:
        return
    new[-1].result = "%out"
    assert _run(new, {"%x": a, "%y": b}, width) == expected, [str(i) for i in new]
