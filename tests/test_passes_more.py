"""Families 7-13 (bogus-branch, junk-code, stack-layout, schedule, opt-pipeline, synthesize,
rare-branch): each
makes distinct variants that all verify (none dropped) and compute the same results, built with
mewe and run under wasmtime, on the test program and on every example; opaque predicates and
synthesized expressions are proven with z3."""

from __future__ import annotations

import hashlib
import random
import re
import textwrap
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mewe.passes import diversify, driver, registry
from mewe.passes import synthesize as synth
from mewe.passes.bogus import OPAQUE
from mewe.passes.rare import FORMS as RARE_FORMS
from mewe.passes.ir import Function
from mewe.passes.pipeline import optimize
from mewe.passes.rules import fold, parse_expr
from mewe.passes.schedule import pure
from test_passes import (EDGES, INTERP, build, examples, module_text, named_functions, numbers,  # noqa: F401 (fixtures)
                         parses_and_verifies, program, program_output, run, substituted, toolchain)

z3 = pytest.importorskip("z3")

NEW = ["bogus-branch", "junk-code", "stack-layout", "schedule", "opt-pipeline", "synthesize", "rare-branch"]
TRIPLE = 'target triple = "wasm32-unknown-wasip1"\n'


@contextmanager
def nothing_dropped():
    """Fail if diversify has to drop a variant that does not verify."""
    original, failed = driver.verify_variants, []

    def checked(text, variants):
        oks = original(text, variants)
        failed.extend(v.ir for v, ok in zip(variants, oks) if not ok)
        return oks

    driver.verify_variants = checked
    try:
        yield
    finally:
        driver.verify_variants = original
    assert not failed, f"{len(failed)} variant(s) did not verify, e.g.\n{failed[0]}"


def strict_diversify(module, **kw):
    with nothing_dropped():
        return diversify(module, **kw)


def assert_distinct(variants, originals, name):
    assert variants, f"{name} changed nothing"
    for fn, vs in variants.items():
        texts = [v.ir for v in vs]
        assert len(set(texts)) == len(texts) and originals[fn] not in texts
        assert all(v.passes == (name,) for v in vs)


# --- each pass on the test program and on the examples -------------------------------------

def test_the_new_passes_are_registered():
    assert set(NEW) <= set(registry) and all(registry[n].description.count("\n") == 0 for n in NEW)


@pytest.mark.parametrize("name", NEW)
def test_pass_on_the_test_program(name, program, program_output, tmp_path):
    variants = strict_diversify(program, variants=3, seed=21, passes=[name])
    assert_distinct(variants, named_functions(program), name)
    text = module_text(program)
    for k in range(2):
        bodies = {fn: vs[k].ir for fn, vs in variants.items() if len(vs) > k}
        wasm = build(substituted(text, bodies), tmp_path, f"{name}-{k}")
        values = EDGES + [random.Random(k).randrange(-2**31, 2**31) for _ in range(30)]
        assert run(wasm, [], numbers(values), tmp_path) == program_output(values)


def check_example(name: str, wasm, tmp) -> None:
    """The example's known answers (as in tests/test_examples.py)."""
    if name == "hash":
        data = bytes(range(256)) * 5
        assert run(wasm, ["abc"], b"", tmp) == (0, hashlib.sha256(b"abc").hexdigest().encode() + b"  abc\n")
        assert run(wasm, [], data, tmp) == (0, hashlib.sha256(data).hexdigest().encode() + b"  -\n")
    elif name == "interp":
        for source, expected in INTERP + [(b"print 1\nprint 1/0\n", b"1\n")]:
            assert run(wasm, [], source, tmp)[1] == expected
    elif name == "base64":
        data = bytes(range(256)) * 3
        status, encoded = run(wasm, [], data, tmp)
        assert status == 0 and run(wasm, ["-d"], encoded, tmp) == (0, data)
        assert run(wasm, [], b"hello", tmp) == (0, b"aGVsbG8=\n") and run(wasm, ["-d"], b"ab=c", tmp)[0] == 1
    else:
        assert run(wasm, ["-n", "-r"], b"2 b\n10 a\n2 a\n", tmp) == (0, b"10 a\n2 b\n2 a\n")
        assert run(wasm, [], b"pear\napple\nfig\n", tmp) == (0, b"apple\nfig\npear\n")
        assert run(wasm, ["-n"], b"10\n9\n-3\n100\n", tmp) == (0, b"-3\n9\n10\n100\n")


@pytest.mark.parametrize("name", NEW)
def test_pass_on_the_examples(name, examples, tmp_path):
    for example, module in examples.items():
        variants = strict_diversify(module, variants=3, seed=5, passes=[name])
        assert_distinct(variants, named_functions(module), name)
        k = {"hash": 0, "interp": 1, "base64": 2, "sort": 1}[example]
        bodies = {fn: vs[k % len(vs)].ir for fn, vs in variants.items()}
        check_example(example, build(substituted(module_text(module), bodies), tmp_path, f"{example}-{name}"), tmp_path)


def test_all_new_passes_stacked(program, program_output, examples, tmp_path):
    variants = strict_diversify(program, variants=2, seed=8, passes=NEW)
    wasm = build(substituted(module_text(program), {f: vs[-1].ir for f, vs in variants.items()}), tmp_path, "stacked")
    assert run(wasm, [], numbers(EDGES), tmp_path) == program_output(EDGES)
    for example in ("hash", "interp"):
        module = examples[example]
        variants = strict_diversify(module, variants=1, seed=8, passes=NEW)
        bodies = {f: vs[0].ir for f, vs in variants.items()}
        check_example(example, build(substituted(module_text(module), bodies), tmp_path, f"{example}-stacked"), tmp_path)


def test_new_passes_are_deterministic(program):
    first = diversify(program, variants=2, seed=4, passes=NEW[:4] + ["synthesize"])
    synth._cache.clear()  # proofs are cached, and the cache must not change the outcome
    assert first == diversify(program, variants=2, seed=4, passes=NEW[:4] + ["synthesize"])
    assert first == diversify(program, variants=2, seed=4, passes=NEW[:4] + ["synthesize"])
    assert diversify(program, variants=2, seed=4, passes=["opt-pipeline"]) == \
        diversify(program, variants=2, seed=4, passes=["opt-pipeline"])


# --- bogus-branch ----------------------------------------------------------------------------

@pytest.mark.parametrize("expr", OPAQUE, ids=[str(e) for e in OPAQUE])
def test_opaque_predicates_always_hold(expr):
    from mewe.passes.rules import _z3

    for width in (8, 16, 32, 64):
        x = z3.BitVec("x", width)
        value, poison = _z3(expr, {"x": x}, width)
        solver = z3.Solver()
        solver.add(z3.Or(poison, value != 1))
        assert solver.check() == z3.unsat, f"{expr} fails at i{width}: {solver.model()}"


LOOP = textwrap.dedent("""\
    define i32 @f(i32 %n, ptr %p) {
    bb:
      br label %loop

    loop:
      %i = phi i32 [ 0, %bb ], [ %j, %loop ]
      %s = phi i32 [ 7, %bb ], [ %t, %loop ]
      %j = add i32 %i, 1
      %t = mul i32 %s, %j
      store i32 %t, ptr %p, align 4
      %c = icmp ult i32 %j, %n
      br i1 %c, label %loop, label %out

    out:
      %r = phi i32 [ %t, %loop ]
      ret i32 %r
    }""")


def test_bogus_branch_keeps_phis_and_verifies():
    for seed in range(30):
        fn = Function.parse(LOOP)
        assert registry["bogus-branch"]().apply(fn, random.Random(seed))
        out = str(fn)
        parses_and_verifies(TRIPLE + out)
        assert "freeze" in out and re.search(r"br i1 %opq\.\d+, label %\S+, label %bogus", out)


# --- rare-branch -----------------------------------------------------------------------------

@pytest.mark.parametrize("form", RARE_FORMS, ids=["-".join(f) for f in RARE_FORMS])
def test_rare_branch_recomputes_the_same_value(form):
    """On the side path x == K, so z (x - K or x ^ K) is 0 and `v op (z mix R)` is v, for any v
    and R, at every width: z3 finds no counterexample (nothing here can be poison: x is frozen,
    the operations carry no flags and shift amounts are below the width)."""
    op, mix = form
    for width in (8, 16, 32, 64):
        x, k, v, r = (z3.BitVec(n, width) for n in "xkvr")
        ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "xor": lambda a, b: a ^ b,
               "or": lambda a, b: a | b, "and": lambda a, b: a & b, "mul": lambda a, b: a * b,
               "shl": lambda a, b: a << b}
        for z in (x - k, x ^ k):
            solver = z3.Solver()
            solver.add(x == k, z3.ULT(r, width) if mix == "shl" else True, ops[op](v, ops[mix](z, r)) != v)
            assert solver.check() == z3.unsat, (form, width)


def test_rare_branch_guards_with_an_uncommon_constant_and_verifies():
    for seed in range(30):
        fn = Function.parse(LOOP)
        assert registry["rare-branch"]().apply(fn, random.Random(seed))
        out = str(fn)
        parses_and_verifies(TRIPLE + out)
        k = int(re.search(r"icmp eq i32 %rare\.x\.\d+, (-?\d+)", out).group(1))
        assert abs(k) >= 1 << 16 and "freeze" in out and re.search(r"phi i32 \[ %\S+, %\S+ \], \[ %rare\.v", out)


# --- junk-code and stack-layout ----------------------------------------------------------------

def test_junk_code_is_volatile_and_stack_layout_only_raises_alignment():
    text = textwrap.dedent("""\
        define i32 @g(i32 %a) {
        bb:
          %x = alloca [8 x i32], align 4
          %y = alloca i64, align 8
          store volatile i64 1, ptr %y, align 8
          %z = alloca i16, align 2
          store i32 %a, ptr %x, align 4
          %v = load i32, ptr %x, align 4
          ret i32 %v
        }""")
    for seed in range(20):
        fn = Function.parse(text)
        assert registry["junk-code"]().apply(fn, random.Random(seed))
        assert registry["stack-layout"]().apply(fn, random.Random(seed))
        out = str(fn)
        parses_and_verifies(TRIPLE + out)
        assert "load volatile" in out and "%pad." in out
        entry = out.split("\n\n")[0].splitlines()[2:]
        first_other = next(k for k, line in enumerate(entry) if " alloca " not in line)
        assert all(" alloca " not in line for line in entry[first_other:])  # every slot at the top
        for slot, align in (("%x", 4), ("%y", 8), ("%z", 2)):
            assert int(re.search(rf"{slot} = alloca .*align (\d+)", out).group(1)) >= align


# --- schedule --------------------------------------------------------------------------------

def test_schedule_moves_only_pure_instructions_and_keeps_dependencies():
    text = textwrap.dedent("""\
        define i32 @h(i32 %a, i32 %b, ptr %p) {
        bb:
          %x1 = add i32 %a, 1
          %x2 = mul i32 %b, 3
          %x3 = xor i32 %x1, %x2
          store i32 %x3, ptr %p, align 4
          %x4 = sub i32 %a, %b
          %x5 = shl i32 %x4, 2
          %x6 = zext i32 %x5 to i64
          %x7 = trunc i64 %x6 to i32
          %x11 = add i32 %b, 7
          %x8 = call i32 @ext(i32 %x7)
          %x9 = or i32 %x8, %x11
          %x10 = and i32 %x9, %x3
          ret i32 %x10
        }

        declare i32 @ext(i32)""")
    fn0 = Function.parse(text.split("\n\ndeclare")[0])
    orders = set()
    for seed in range(40):
        fn = fn0.copy()
        registry["schedule"]().apply(fn, random.Random(seed))
        parses_and_verifies(TRIPLE + str(fn) + "\ndeclare i32 @ext(i32)\n")
        instrs = fn.blocks[0].instrs
        orders.add(tuple(i.result for i in instrs))
        barriers = [str(i) for i in instrs if not pure(i)]
        assert barriers == [str(i) for i in fn0.blocks[0].instrs if not pure(i)]
        position = {i.result: k for k, i in enumerate(instrs) if i.result}
        for k, ins in enumerate(instrs):  # each run of pure instructions stays between its barriers
            original = next(j for j, o in enumerate(fn0.blocks[0].instrs) if str(o) == str(ins))
            before = sum(not pure(o) for o in fn0.blocks[0].instrs[:original])
            assert sum(not pure(o) for o in instrs[:k]) == before
            for use in re.findall(r"%x\d+", str(ins).split(" = ", 1)[-1]):
                assert position[use] < k
    assert len(orders) >= 6  # of the 2 * 5 possible


# --- opt-pipeline ----------------------------------------------------------------------------

def test_opt_pipeline_results_fit_the_original_module(examples):
    module = examples["interp"]
    text = module_text(module)
    from mewe.llvmir import definitions, parse_module
    from mewe.passes.ir import name_values

    mod = parse_module(module.bitcode)
    name_values(mod)
    named = str(mod)
    changed = 0
    for name, a, b in definitions(mod, named):
        fn = Function.parse(named[a:b])
        fn.context = named
        for passes in (["register_to_memory", "sroa"], ["loop_rotate", "instruction_combine"], ["lower_switch", "sinking"]):
            new = optimize(fn, passes)
            if new is not None and str(new) != str(fn):
                parses_and_verifies(substituted(text, {name: str(new)}))
                changed += 1
    assert changed >= 10
    assert not registry["opt-pipeline"]().apply(Function.parse(named[a:b]), random.Random(1))  # no module: no-op


UNNAMED_TYPES = """target triple = "wasm32-unknown-wasi"

%0 = type { i32, i32 }
%1 = type { i8, [3 x i8], i64 }

define i32 @other(ptr %arg) {
bb:
  %i = getelementptr inbounds %0, ptr %arg, i32 0, i32 1
  %i1 = load i32, ptr %i, align 4
  ret i32 %i1
}

define i64 @f(ptr %arg, i1 %arg1) {
bb:
  %i = getelementptr inbounds %1, ptr %arg, i32 0, i32 2
  br i1 %arg1, label %bb2, label %bb3

bb2:
  %i4 = load i64, ptr %i, align 8
  ret i64 %i4

bb3:
  ret i64 0
}
"""


def test_opt_pipeline_variants_parse_when_passes_grow_names(tmp_path, toolchain):
    """Passes that split blocks append to a block's name each time (`loopexitsplitsplit...`):
    a loop with 250 exits to one label grew names past the 1,024 characters LLVM's reader
    takes, and those variants were dropped as invalid IR. Long names are dropped instead."""
    import mewe
    from mewe.frontends import compile_c
    from mewe.types import IRModule

    cases = "".join(f"    case {k}: if (p[{k % 7}] == {k}) goto out; p++; break;\n" for k in range(250))
    src = tmp_path / "exits.c"
    src.write_text("int scan(const unsigned char *p, int n) {\n  int k = 0;\n  while (k < n) {\n"
                   f"    switch (*p) {{\n{cases}    default: return -1;\n    }}\n    k++;\n  }}\n  return k;\n"
                   "out:\n  return k * 2;\n}\n")
    module = IRModule("exits", compile_c(src, mewe.CompileOptions(opt_level="2"), toolchain))
    variants = diversify(module, variants=16, seed=0, passes=["opt-pipeline"], invalid=True, cache=False)
    assert len(variants["scan"]) >= 8 and not [v.error for v in variants["scan"] if v.error]


def test_opt_pipeline_maps_unnamed_types_back():
    # In the copy the passes run on, @other's body is a stub, so %0 is unused and the printer
    # calls @f's type %0. Left as is, the variant would index { i32, i32 }: a silent miscompile
    # (found by running the QR service's variants, pinned, against rustc's build).
    from mewe.passes.pipeline import type_shapes

    a, b = re.search(r"^define i64 @f.*?^}", UNNAMED_TYPES, re.S | re.M).span()
    fn = Function.parse(UNNAMED_TYPES[a:b])
    fn.context = UNNAMED_TYPES
    new = optimize(fn, ["break_critical_edges", "sinking"])
    assert new is not None and str(new) != str(fn)  # the GEP sinks into the block that loads
    assert "getelementptr inbounds %1, ptr %arg, i32 0, i32 2" in str(new) and "%0" not in str(new)
    assert type_shapes("%0 = type { i8 }\n%1 = type { %0, i32 }\n") == {"%0": "{ i8 }", "%1": "{ { i8 }, i32 }"}


NORETURN = """define internal void @panic() {
bb:
  %a = add i32 1, 2
  tail call void @llvm.trap()
  unreachable
}"""


def test_nothing_is_placed_after_a_call_that_does_not_return():
    # LLVM's wasm backend hits "Register use before def" on values defined after a trap and used
    # in a later block; junk-code then split-blocks made exactly that in Rust's rust_panic.
    for seed in range(40):
        fn = Function.parse(NORETURN)
        rng = random.Random(seed)
        for name in ("junk-code", "split-blocks", "bogus-branch", "junk-code"):
            registry[name]().apply(fn, rng)
        text = str(fn)
        assert text.split("tail call void @llvm.trap()", 1)[1].split("\n")[1].strip() == "unreachable", text


# --- synthesize ------------------------------------------------------------------------------

SHAPES = ["xor (add x0 x1) x2", "add (shl x0 3) x0", "sub (xor x0 x1) (and x0 x1)", "xor (or x0 x1) (and x0 x1)",
          "add (mul x0 5) x1", "and (add x0 x1) 1", "add (xor x0 -1) x1", "or (shl x0 8) (lshr x1 24)"]


def _nvars(text: str) -> int:
    return len(set(re.findall(r"x\d", text)))


def test_synthesis_finds_proven_alternatives_once(monkeypatch, tmp_path):
    monkeypatch.setenv("MEWE_CACHE_DIR", str(tmp_path))  # no proofs on disk from earlier runs
    synth._cache.clear()
    proofs = []
    real = synth.prove_equal
    monkeypatch.setattr(synth, "prove_equal", lambda *a, **k: proofs.append(a) or real(*a, **k))
    found = {(w, s): synth.alternatives(parse_expr(s), w, _nvars(s)) for w in (8, 32, 64) for s in SHAPES}
    assert sum(map(bool, found.values())) >= 0.8 * len(found) and proofs
    assert ("xor", "x0", "x1") in found[(32, "xor (or x0 x1) (and x0 x1)")]  # a shorter equivalent
    proofs.clear()
    again = {(w, s): synth.alternatives(parse_expr(s), w, _nvars(s)) for w in (8, 32, 64) for s in SHAPES}
    assert again == found and not proofs  # repeated shapes need no proof
    synth._cache.clear()  # from the disk cache alone: the same answers, still no proof
    assert {(w, s): synth.alternatives(parse_expr(s), w, _nvars(s)) for w in (8, 32, 64) for s in SHAPES} == found
    assert not proofs
    synth._cache.clear()


def test_synthesis_prover_rejects_wrong_candidates():
    assert not synth.prove_equal(parse_expr("add x0 x1"), parse_expr("or x0 x1"), 32)
    assert not synth.prove_equal(parse_expr("shl x0 3"), parse_expr("mul x0 9"), 8)
    assert synth.prove_equal(parse_expr("shl x0 3"), parse_expr("mul x0 8"), 64)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([(w, s) for w in (8, 16, 32, 64) for s in SHAPES]), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_synthesized_alternatives_compute_the_source(shape, a, b, c):
    width, text = shape
    env = {"x0": a % (1 << width), "x1": b % (1 << width), "x2": c % (1 << width)}

    def value(e):
        if isinstance(e, int):
            return e % (1 << width)
        if isinstance(e, str):
            return env[e]
        return fold(e[0], value(e[1]), value(e[2]), width)

    source = parse_expr(text)
    for alt in synth.alternatives(source, width, _nvars(text)):
        assert value(alt) == value(source), alt


def test_synthesize_rewrites_a_dag_and_drops_flags():
    text = textwrap.dedent("""\
        define i32 @k(i32 %a, i32 %b, i32 %c) {
        bb:
          %s = add nsw i32 %a, %b
          %t = xor i32 %s, %c
          %u = shl nuw i32 %t, 3
          %v = add nsw i32 %u, %t
          ret i32 %v
        }""")
    outs = set()
    for seed in range(6):
        fn = Function.parse(text)
        assert registry["synthesize"]().apply(fn, random.Random(seed))
        parses_and_verifies(TRIPLE + str(fn))
        outs.add(str(fn))
        new_lines = set(str(fn).splitlines()) - set(text.splitlines())
        assert new_lines and not any(" nsw " in line or " nuw " in line for line in new_lines)
    assert len(outs) >= 3


LOOPS = """define i32 @f(i32 %n) {
entry:
  %a = add i32 %n, 1
  br label %outer
outer:
  %i = phi i32 [ 0, %entry ], [ %i1, %latch ]
  %b = mul i32 %i, 3
  br label %inner
inner:
  %j = phi i32 [ 0, %outer ], [ %j1, %inner ]
  %j1 = add i32 %j, 1
  %c = icmp ult i32 %j1, %n
  br i1 %c, label %inner, label %latch
latch:
  %i1 = add i32 %i, 1
  %d = icmp ult i32 %i1, %n
  br i1 %d, label %outer, label %exit
exit:
  ret i32 %a
}"""


def test_analyses_cfg_dominators_loops_and_values_in_scope():
    from mewe.passes.analysis import analyze
    from mewe.passes.ir import Function
    from mewe.passes.values import int_values

    fn = Function.parse(LOOPS)
    a = analyze(fn)
    assert a.successors == [[1], [2], [2, 3], [1, 4], []]
    assert a.idom == [None, 0, 1, 2, 3] and a.dominates(1, 3) and not a.dominates(3, 1)
    assert a.loop_depth == [0, 1, 2, 1, 0] and a.frequency(2) == 64
    assert analyze(fn) is a  # cached while the control flow stays the same
    # values of the dominating blocks are in scope at the top of `latch`; %i1 (defined there) is not
    assert [v for v, _ in int_values(fn, 3, 0)] == ["%n", "%a", "%i", "%b", "%j", "%j1"]
    fn.blocks[3].instrs[-1].args[1:] = ["label %exit", "label %outer"]  # an edit: a fresh analysis
    assert analyze(fn) is not a and analyze(fn).successors[3] == [4, 1]
