"""Every rewrite rule is proven with z3 at every width it is applied at, honouring poison; and
the code a rule emits computes what the proof says (an interpreter cross-checks instantiation).
Rules from `mewe.rules` plugins are proven when loaded (wrong ones refused), cached, and applied."""

from __future__ import annotations

import random
import sys
from pathlib import Path

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


# --- rules from plugins (the `mewe.rules` entry-point group) --------------------------------

NEGATE_TWICE = "mul x y => sub 0 (mul x (sub 0 y))"
GOOD_PLUGIN = f'''
RULES = """
# a product through two negations (the table has no rule for a product of two variables)
{NEGATE_TWICE}  # x * y = -(x * -y)
"""


def rules():
    return RULES
'''
WRONG_SDIV = "sdiv x C => ashr x (log2 C)"  # wrong: sdiv rounds toward zero, ashr toward -infinity
WRONG_PLUGIN = f'RULES = "{WRONG_SDIV}\\n"\n'

PRODUCTS = r"""
#include <stdint.h>
#include <stdio.h>

#define NOINLINE __attribute__((noinline))
NOINLINE int32_t area(int32_t w, int32_t h) { return w * h; }
NOINLINE int64_t cube(int64_t x) { return x * x * x; }
NOINLINE uint16_t mix16(uint16_t a, uint16_t b) { return (uint16_t)(a * b) ^ a; }

int main(void) {
    long long a, b;
    while (scanf("%lld %lld", &a, &b) == 2)
        printf("%d %lld %u\n", area((int32_t)a, (int32_t)b), (long long)cube(a), mix16((uint16_t)a, (uint16_t)b));
    return 0;
}
"""
PAIRS = b"0 0\n1 -1\n-1 -1\n7 6\n2147483647 2\n-2147483648 -1\n65535 65535\n123456 -98765\n2097151 3\n"


@pytest.fixture
def rule_plugin(tmp_path, monkeypatch):
    """Install rule plugins (fake distributions on sys.path) for one test; forget them after."""
    from conftest import write_rule_plugin
    from mewe.passes import rules

    made = []

    def install(module: str, source: str, name: str, obj: str) -> Path:
        directory = tmp_path / f"site-{module}"
        directory.mkdir()
        monkeypatch.syspath_prepend(str(write_rule_plugin(directory, module, source, name, obj)))
        made.append(module)
        return directory

    yield install
    for key in [k for k in rules._rule_plugins if any(f"= {m}:" in k for m in made)]:
        del rules._rule_plugins[key]
    for module in made:
        sys.modules.pop(module, None)


def test_a_plugin_rule_is_proven_and_applied_in_a_build(rule_plugin, tmp_path, monkeypatch):
    import mewe
    from mewe.passes import diversify, rules
    from mewe.passes.framework import load_plugins

    rule_plugin("mewe_rules_negate", GOOD_PLUGIN, "negate-twice", "rules")
    before = rules.plugin_rules_digest()
    load_plugins()
    assert [r.text for r in rules.plugin_rules()] == [NEGATE_TWICE]
    assert substitute.rules_for("mul")[-1].text == NEGATE_TWICE and substitute.RULES_BY_OP["mul"][-1].text != NEGATE_TWICE
    assert rules.plugin_rules_digest() != before  # variant cache keys change with the plugin rules

    applied = []
    instantiate = Rule.instantiate
    monkeypatch.setattr(Rule, "instantiate", lambda self, *a: applied.append(self.text) or instantiate(self, *a))
    src = tmp_path / "products.c"
    src.write_text(PRODUCTS)
    plain = mewe.build([src], tmp_path / "plain.wasm").output
    options = mewe.MultivariantOptions(variants=4, seed=3, passes=("substitute",), executor="serial", cache=False,
                                       max_cost=0)  # keep every variant, however long
    multi = mewe.build([src], tmp_path / "multi.wasm", multivariant=options).output
    assert NEGATE_TWICE in applied  # the build's substitute pass used the plugin's rule

    (tmp_path / "in").write_bytes(PAIRS)

    def output(wasm: Path, policy: str | None = None) -> bytes:
        assert mewe.run(wasm, [], stdin=tmp_path / "in", stdout=tmp_path / "out", policy=policy) == 0
        return (tmp_path / "out").read_bytes()

    expected = output(plain)
    assert expected.count(b"\n") == PAIRS.count(b"\n")
    for k in range(5):
        assert output(multi, f"pinned:{k}") == expected

    # Worker processes load the plugin themselves and make the same variants.
    from mewe.frontends import load_source
    from mewe.toolchain import find_toolchain

    module = load_source(src, mewe.CompileOptions(), find_toolchain())
    serial = diversify(module, variants=3, seed=3, passes=["substitute"], executor="serial", cache=False)
    local = diversify(module, variants=3, seed=3, passes=["substitute"], executor="local", jobs=2, cache=False)
    assert {f: [v.ir for v in vs] for f, vs in local.items()} == {f: [v.ir for v in vs] for f, vs in serial.items()}
    assert any(" = sub i32 0, %" in v.ir and "mul" in v.ir for v in serial["area"])


def test_a_wrong_plugin_rule_is_refused_with_its_counterexample(rule_plugin):
    from mewe.errors import MeweError
    from mewe.passes import rules

    rule_plugin("mewe_rules_wrong", WRONG_PLUGIN, "bad", "RULES")
    with pytest.raises(MeweError) as err:
        rules.load_rule_plugins()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"rule plugin 'bad = mewe_rules_wrong:RULES': '{WRONG_SDIV}' is wrong at i8: x = ")
    assert ", C = " in message
    assert not rules.plugin_rules()


def test_a_wrong_plugin_rule_stops_a_build_with_one_line(rule_plugin, tmp_path):
    import os

    from conftest import mewe as run_mewe

    site = rule_plugin("mewe_rules_wrong_cli", WRONG_PLUGIN, "bad", "RULES")
    (tmp_path / "x.c").write_text("int half(int x) { return x / 2; }\n"
                                  "int main(int argc, char **argv) { return half(argc); }\n")
    res = run_mewe("build", "--variants", "2", "x.c", "-o", "x.wasm", cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(site)})
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("mewe: error: rule plugin 'bad = mewe_rules_wrong_cli:RULES': ")
    assert f"'{WRONG_SDIV}' is wrong at i8: x = " in lines[0]
    assert not (tmp_path / "x.wasm").exists()


def test_malformed_plugin_rule_is_one_line_naming_the_entry_point_and_rule(rule_plugin):
    from mewe.errors import MeweError
    from mewe.passes import rules

    rule_plugin("mewe_rules_malformed", 'RULES = "add x y => add x (\\n"\n', "broken", "RULES")
    expected = r"^rule plugin 'broken = mewe_rules_malformed:RULES': bad rule 'add x y => add x \(': unexpected end$"
    with pytest.raises(MeweError, match=expected):
        rules.load_rule_plugins()


def test_plugin_rule_proofs_are_cached_on_disk(rule_plugin, tmp_path, monkeypatch):
    from mewe.passes import rules

    monkeypatch.setenv("MEWE_CACHE_DIR", str(tmp_path / "cache"))
    rule_plugin("mewe_rules_cached", GOOD_PLUGIN, "negate-twice", "rules")
    calls = []
    prove_for_real = rules.prove
    monkeypatch.setattr(rules, "prove", lambda *a: calls.append(a) or prove_for_real(*a))
    assert [r.text for r in rules.load_rule_plugins()] == [NEGATE_TWICE]
    assert len(calls) == len(substitute.WIDTHS) * 4  # mul: no flags, nsw, nuw, both
    rules.load_rule_plugins()  # idempotent
    assert len(calls) == len(substitute.WIDTHS) * 4

    def refuse(*args):
        raise AssertionError("proved again")

    rules._rule_plugins.clear()  # as a new process would start
    monkeypatch.setattr(rules, "prove", refuse)
    monkeypatch.setitem(sys.modules, "z3", None)  # and not even import z3
    assert [r.text for r in rules.load_rule_plugins()] == [NEGATE_TWICE]


def test_without_z3_plugin_rules_are_one_clear_line(rule_plugin, tmp_path, monkeypatch):
    from mewe.errors import MeweError
    from mewe.passes import rules

    monkeypatch.setenv("MEWE_CACHE_DIR", str(tmp_path / "cache"))  # nothing proved yet
    monkeypatch.setitem(sys.modules, "z3", None)  # `import z3` fails
    rule_plugin("mewe_rules_noz3", GOOD_PLUGIN, "negate-twice", "rules")
    with pytest.raises(MeweError, match=r"^rule plugin 'negate-twice = mewe_rules_noz3:rules': proving its rules needs z3 "):
        rules.load_rule_plugins()


def test_helpers_inside_expressions_read_as_bindings():
    rule = Rule.parse(WRONG_SDIV)
    assert rule.target == ("ashr", "x", "(log2 C)") and rule.where == (("bind", "(log2 C)", ("log2", "C")),)
    assert prove(Rule.parse("udiv x C => lshr x (log2 C)"), 8) is None
    assert prove(rule, 8) is not None
