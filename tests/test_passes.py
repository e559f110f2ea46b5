"""The passes: each makes variants that differ, verify, and compute the same results when built
with mewe and run under wasmtime; diversify is deterministic, selective and takes plugins."""

from __future__ import annotations

import hashlib
import random
import re
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mewe
from conftest import write_pass_plugin
from mewe.errors import MeweError
from mewe.frontends import compile_c
from mewe.llvmir import parse_module
from mewe.passes import Pass, describe, diversify, registry, verify_variants
from mewe.passes.framework import _plugins
from mewe.llvmir import definitions
from mewe.passes.ir import Function, name_values
from mewe.toolchain import find_toolchain
from mewe.types import IRModule, Variant

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = ["substitute", "swap-commutative", "invert-compare", "constant-blinding", "shuffle-blocks", "split-blocks"]

# Small functions covering what the passes rewrite: arithmetic and logic at every width, multiplication
# by constants, signed and unsigned compares feeding branches and selects, loops with phis, a switch.
PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))
NOINLINE int32_t mix(int32_t a, int32_t b) { return (a + b) ^ (a - b) ^ ((a & b) | (a >> 3)) ^ (b << 5); }
NOINLINE uint32_t mulc(uint32_t x) { return x * 10u; }
NOINLINE uint32_t mulc2(uint32_t x, uint32_t y) { return x * 3u + y * 1000u - x * 0x12345u; }
NOINLINE int64_t wide(int64_t a, int64_t b) { return a * 7 - (b | 0x55) + ((a ^ b) >> 2) + (int64_t)((uint64_t)a >> 5); }
NOINLINE uint8_t bytes(uint8_t a, uint8_t b) { return (uint8_t)((a ^ 0x5a) + (b & 0x0f) - (a | b)); }
NOINLINE int16_t halves(int16_t a, int16_t b) { return (int16_t)(a * 5 + (b ^ 0x1234) - (a & b)); }
NOINLINE int cmp(int a, int b) { return a < b ? -1 : (unsigned)a > (unsigned)b ? 2 : a == b ? 0 : 1; }
NOINLINE int collatz(uint32_t n) { int s = 0; while (n > 1 && s < 1000) { n = (n & 1) ? 3 * n + 1 : n / 2; s++; } return s; }
NOINLINE int classify(int c) {
    switch (c & 15) { case 0: return 7; case 1: case 2: return c * 3; case 5: return c - 9; case 9: return c ^ 0x70; default: return -c; }
}
NOINLINE int64_t sum(const int32_t *v, int n) { int64_t s = 0; for (int i = 0; i < n; i++) s += v[i] > 0 ? v[i] : -(int64_t)v[i] * 2; return s; }

int main(void) {
    int32_t v[256]; int n = 0; long long x;
    while (n < 256 && scanf("%lld", &x) == 1) v[n++] = (int32_t)x;
    for (int i = 0; i < n; i++) {
        int32_t a = v[i], b = v[(i + 1) % n];
        printf("%d %u %u %lld %u %d %d %d %d\n", mix(a, b), mulc(a), mulc2(a, b), (long long)wide(a, (int64_t)b * 65537), bytes(a, b),
               halves(a, b), cmp(a, b), collatz(a), classify(a));
    }
    printf("%lld\n", (long long)sum(v, n));
    return 0;
}
"""

EDGES = [0, 1, -1, 2, 7, 100, -100, 255, 256, 65535, 2**31 - 1, -2**31, 12345678, -987654, 27, 97]


@pytest.fixture(scope="session")
def toolchain():
    return find_toolchain()


def _compile(path: Path, toolchain) -> IRModule:
    return IRModule(path.name, compile_c(path, mewe.CompileOptions(), toolchain))


@pytest.fixture(scope="session")
def program(tmp_path_factory, toolchain) -> IRModule:
    src = tmp_path_factory.mktemp("prog") / "prog.c"
    src.write_text(PROGRAM)
    return _compile(src, toolchain)


def module_text(module: IRModule) -> str:
    return str(parse_module(module.bitcode))


def named_functions(module: IRModule) -> dict[str, str]:
    """Each defined function's text as the passes see it (values named, parsed and printed)."""
    mod = parse_module(module.bitcode)
    name_values(mod)
    text = str(mod)
    return {n: str(Function.parse(text[a:b], n)) for n, a, b in definitions(mod, text)}


def substituted(text: str, bodies: dict[str, str]) -> str:
    """`text` with the definitions of the functions in `bodies` replaced (the linker's contract)."""
    spans = sorted(((a, b, bodies[n]) for n, a, b in definitions(parse_module(text, verify=False), text) if n in bodies),
                   reverse=True)
    for a, b, ir in spans:
        text = text[:a] + ir + "\n" + text[b:]
    return text


def parses_and_verifies(text: str) -> None:
    parse_module(text)


def build(text: str, tmp: Path, name: str) -> Path:
    ll = tmp / f"{name}.ll"
    ll.write_text(text)
    return mewe.build([ll], tmp / f"{name}.wasm").output


def run(wasm: Path, args: list[str], stdin: bytes, tmp: Path) -> tuple[int, bytes]:
    (tmp / "in").write_bytes(stdin)
    status = mewe.run(wasm, args, stdin=tmp / "in", stdout=tmp / "out")
    return status, (tmp / "out").read_bytes()


def numbers(values) -> bytes:
    return " ".join(map(str, values)).encode() + b"\n"


@pytest.fixture(scope="session")
def program_output(program, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orig")
    wasm = build(module_text(program), tmp, "orig")
    return lambda values: run(wasm, [], numbers(values), tmp)


# --- each pass -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_pass_makes_distinct_verified_equivalent_variants(name, program, program_output, tmp_path):
    variants = diversify(program, variants=3, seed=11, passes=[name])
    originals = named_functions(program)
    assert variants, f"{name} changed nothing"
    for fn, vs in variants.items():
        texts = [v.ir for v in vs]
        assert len(set(texts)) == len(texts) and originals[fn] not in texts  # deduplicated
        assert all(v.passes == (name,) and v.function == fn for v in vs)
    text = module_text(program)
    for k in range(2):  # every function's k-th variant at once, built and run
        bodies = {fn: vs[k].ir for fn, vs in variants.items() if len(vs) > k}
        if not bodies:
            continue
        variant_text = substituted(text, bodies)
        parses_and_verifies(variant_text)
        wasm = build(variant_text, tmp_path, f"{name}-{k}")
        rng = random.Random(k)
        values = EDGES + [rng.randrange(-2**31, 2**31) for _ in range(40)]
        assert run(wasm, [], numbers(values), tmp_path) == program_output(values)


def test_every_pass_applies_to_the_test_program(program):
    variants = diversify(program, variants=2, seed=3, passes=None, stack=1)
    used = {p for vs in variants.values() for v in vs for p in v.passes}
    assert set(BUILTIN) <= used <= set(registry)  # later families (tests/test_passes_more.py) may be picked too


def test_substitute_unfolds_multiplication_by_constants(program):
    variants = diversify(program, variants=8, seed=5, passes=["substitute"], include=["mulc"])
    bodies = [v.ir for v in variants["mulc"]]
    assert any(" shl " in b for b in bodies) and any(" mul " not in b for b in bodies)  # x*10 = (x<<3) + (x<<1)


def test_invert_compare_only_touches_single_use_compares():
    text = textwrap.dedent("""\
        define i32 @f(i32 %a, i32 %b) {
        bb:
          %c = icmp slt i32 %a, %b
          %d = icmp eq i32 %a, 0
          %s = select i1 %d, i32 %a, i32 %b
          br i1 %c, label %t, label %e, !prof !0

        t:
          %z = zext i1 %d to i32
          ret i32 %z

        e:
          ret i32 %s
        }""")
    fn = Function.parse(text)
    assert registry["invert-compare"]().apply(fn, random.Random(0))
    out = str(fn)
    assert "icmp sge i32 %a, %b" in out and "br i1 %c, label %e, label %t\n" in out  # branch weights dropped
    assert "icmp eq i32 %a, 0" in out and "select i1 %d, i32 %a, i32 %b" in out  # %d has two uses


def test_split_blocks_renames_phi_predecessors():
    text = textwrap.dedent("""\
        define i32 @f(i32 %n) {
        bb:
          br label %loop

        loop:
          %i = phi i32 [ 0, %bb ], [ %j, %loop ]
          %j = add i32 %i, 1
          %k = mul i32 %j, 3
          %c = icmp ult i32 %k, %n
          br i1 %c, label %loop, label %out

        out:
          %r = phi i32 [ %k, %loop ]
          ret i32 %r
        }""")
    for seed in range(20):
        fn = Function.parse(text)
        assert registry["split-blocks"]().apply(fn, random.Random(seed))
        module = f'target triple = "wasm32-unknown-wasip1"\n{fn}\n'
        parses_and_verifies(module)
        assert fn.blocks[0].label == "bb"


# --- examples, end to end --------------------------------------------------------------------

@pytest.fixture(scope="session")
def examples(toolchain):
    return {n: _compile(ROOT / "examples" / f"{n}.c", toolchain) for n in ("hash", "interp", "base64", "sort")}


def _all_variants_build(module: IRModule, variants: dict[str, list[Variant]], k: int, tmp: Path) -> Path:
    bodies = {fn: vs[k % len(vs)].ir for fn, vs in variants.items()}
    return build(substituted(module_text(module), bodies), tmp, f"{module.name}-{k}")


def test_hash_variants_still_compute_sha256(examples, tmp_path):
    variants = diversify(examples["hash"], variants=3, seed=2024, stack=3)
    assert set(variants) == {"__main_argc_argv", "sha256_compress", "sha256_final"}
    data = bytes(range(256)) * 5
    for k in range(3):
        wasm = _all_variants_build(examples["hash"], variants, k, tmp_path)
        assert run(wasm, ["abc"], b"", tmp_path) == (0, hashlib.sha256(b"abc").hexdigest().encode() + b"  abc\n")
        assert run(wasm, [], data, tmp_path) == (0, hashlib.sha256(data).hexdigest().encode() + b"  -\n")


INTERP = [
    (b"let x = 3*(4+5)\nprint x - 2\n", b"25\n"),
    (b"print fib(20)\nprint gcd(84, 36)\nprint abs(-7)\n", b"6765\n12\n7\n"),
    (b"let a = -7\nprint a / 2\nprint a % 3\n", b"-3\n-1\n"),
]


def test_interp_variants_still_interpret(examples, tmp_path):
    variants = diversify(examples["interp"], variants=2, seed=99)
    assert len(variants) >= 10
    for k in range(2):
        wasm = _all_variants_build(examples["interp"], variants, k, tmp_path)
        for program, expected in INTERP:
            assert run(wasm, [], program, tmp_path) == (0, expected)


def test_base64_and_sort_variants(examples, tmp_path):
    b64 = _all_variants_build(examples["base64"], diversify(examples["base64"], variants=1, seed=4, stack=4), 0, tmp_path)
    data = bytes(range(256)) * 3
    status, encoded = run(b64, [], data, tmp_path)
    assert status == 0 and run(b64, ["-d"], encoded, tmp_path) == (0, data)
    srt = _all_variants_build(examples["sort"], diversify(examples["sort"], variants=1, seed=4, stack=4), 0, tmp_path)
    assert run(srt, ["-n", "-r"], b"2 b\n10 a\n2 a\n", tmp_path) == (0, b"10 a\n2 b\n2 a\n")


@pytest.fixture(scope="module")
def stacked_program(program, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacked")
    variants = diversify(program, variants=1, seed=77, stack=4)
    return build(substituted(module_text(program), {f: vs[0].ir for f, vs in variants.items()}), tmp, "stacked"), tmp


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=30))
def test_stacked_variants_agree_on_any_input(stacked_program, program_output, values):
    wasm, tmp = stacked_program
    assert run(wasm, [], numbers(values), tmp) == program_output(values)


def test_every_example_function_round_trips_through_the_editable_ir(examples):
    for module in examples.values():
        mod = parse_module(module.bitcode)
        name_values(mod)
        text = str(mod)
        for _, a, b in definitions(mod, text):
            source = [line.split(";")[0].rstrip() if not line.startswith(" ") else line
                      for line in text[a:b].splitlines() if line.strip()]
            assert [line for line in str(Function.parse(text[a:b])).splitlines() if line] == source


EH_FUNCTION = """define i32 @f(i32 %x) personality ptr @__gxx_personality_v0 {
entry:
  %a = add i32 %x, 1
  invoke void @may_throw(i32 %a)
          to label %ok unwind label %lpad

ok:
  ret i32 %a

lpad:
  %lp = landingpad { ptr, i32 }
          cleanup
          catch ptr null
  ret i32 0
}"""


def test_instructions_printed_over_several_lines_stay_whole():
    """`invoke` continues on a `to label` line and a landingpad on its clauses: one instruction
    each, printed back as they were, so no pass can put code between their lines."""
    fn = Function.parse(EH_FUNCTION)
    assert [[i.op for i in b.instrs] for b in fn.blocks] == [["add", "invoke"], ["ret"], ["landingpad", "ret"]]
    assert str(fn) == EH_FUNCTION
    decls = "declare i32 @__gxx_personality_v0(...)\ndeclare void @may_throw(i32)\n"
    parse_module(decls + str(fn))


# --- the driver ------------------------------------------------------------------------------

def test_same_seed_same_variants_other_seed_others(program):
    first = diversify(program, variants=4, seed=1)
    assert first == diversify(program, variants=4, seed=1)
    assert first != diversify(program, variants=4, seed=2)


def test_variant_count_and_names(program):
    variants = diversify(program, variants=5, seed=8)
    assert "main" in variants and all(1 <= len(vs) <= 5 for vs in variants.values())
    assert all(v.ir.startswith("define ") and f"@{fn}(" in v.ir.split("\n")[0] for fn, vs in variants.items() for v in vs)


def test_include_and_exclude(program):
    only = diversify(program, variants=1, seed=1, include=["mi*", "cmp"], exclude=["main"])
    assert set(only) == {"mix", "cmp"}


def test_unknown_pass_is_an_error(program):
    with pytest.raises(MeweError, match="unknown pass 'nope'"):
        diversify(program, variants=1, seed=1, passes=["nope"])


def test_describe_lists_the_builtin_passes():
    described = dict(describe())
    assert set(BUILTIN) <= set(described) and all(described.values())


def test_broken_variants_are_dropped(program):
    good = diversify(program, variants=1, seed=1, passes=["shuffle-blocks"], include=["collatz"])["collatz"][0]
    bad = Variant("collatz", good.ir.replace("ret i32", "ret i64", 1), ("broken",))
    assert verify_variants(module_text(program), [good, bad, good]) == [True, False, True]


PLUGIN = '''
import random
from mewe.passes import Pass
from mewe.passes.ir import Instr


class NopPad(Pass):
    name = "nop-pad"
    description = "adds an unused instruction to the entry block"

    def apply(self, fn, rng: random.Random) -> bool:
        entry = fn.blocks[0]
        at = entry.phi_count
        entry.instrs.insert(at, Instr("add", fn.fresh("pad"), ty="i32", args=[str(rng.randrange(100)), "0"]))
        return True
'''


def test_plugin_pass_from_an_entry_point(program, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_pass_plugin(tmp_path, "mewe_nop_pad", PLUGIN, "nop-pad", "NopPad")))
    try:
        variants = diversify(program, variants=2, seed=1, passes=["nop-pad"], include=["mix"])
        assert [v.passes for v in variants["mix"]] == [("nop-pad",), ("nop-pad",)]
        assert "%pad.1 = add i32" in variants["mix"][0].ir
        assert ("nop-pad", "adds an unused instruction to the entry block") in describe()
    finally:
        registry.pop("nop-pad", None)
        _plugins.pop("nop-pad", None)
        sys.modules.pop("mewe_nop_pad", None)


def test_pass_base_class_contract():
    assert all(issubclass(registry[n], Pass) and registry[n].name == n for n in BUILTIN)


def test_optnone_functions_at_O0_are_diversified_too(program_output, toolchain, tmp_path):
    # instnamer skips optnone functions; the editable IR names their numbered values itself
    src = tmp_path / "prog0.c"
    src.write_text(PROGRAM)
    module = IRModule(src.name, compile_c(src, mewe.CompileOptions(opt_level="0"), toolchain))
    variants = diversify(module, variants=1, seed=6, stack=3)
    assert {"mix", "collatz", "classify", "main"} <= set(variants)
    wasm = build(substituted(module_text(module), {f: vs[0].ir for f, vs in variants.items()}), tmp_path, "O0")
    assert run(wasm, [], numbers(EDGES), tmp_path) == program_output(EDGES)


def test_pass_parameters_in_a_textual_pipeline(program):
    from mewe.passes.framework import instantiate, parse_spec, split_pipeline

    assert split_pipeline("substitute(p=0.9, depth=1),junk-code , shuffle-blocks") == \
        ["substitute(p=0.9, depth=1)", "junk-code", "shuffle-blocks"]
    assert parse_spec("substitute(p=0.9, depth=1)") == ("substitute", {"p": "0.9", "depth": "1"})
    one = instantiate("junk-code(sites=1)")
    assert one.sites == 1 and registry["junk-code"]().sites == 3  # the class default is untouched
    # one junk site per variant: one volatile load, against up to three by default
    few = diversify(program, variants=4, seed=2, passes=["junk-code(sites=1)"], include=["collatz"])["collatz"]
    many = diversify(program, variants=4, seed=2, passes=["junk-code(sites=9)"], include=["collatz"])["collatz"]
    assert all(v.ir.count("load volatile") == 1 for v in few)
    assert max(v.ir.count("load volatile") for v in many) > 1
    assert [v.passes for v in few] == [("junk-code(sites=1)",)] * 4
    for bad, message in (("junk-code(spots=1)", "has no parameter 'spots'"), ("junk-code(sites=x)", "must be an integer"),
                         ("junk-code(sites)", "use key=value"), ("nope(a=1)", "unknown pass 'nope'")):
        with pytest.raises(MeweError, match=re.escape(message)):
            diversify(program, variants=1, seed=1, passes=[bad])


def test_the_fallback_pass_is_a_setting(program):
    stacked = diversify(program, variants=4, seed=3, stack=1)
    assert any(len(v.passes) == 2 and v.passes[1] == "rare-branch" for vs in stacked.values() for v in vs)
    alone = diversify(program, variants=4, seed=3, stack=1, fallback=None)
    assert all(len(v.passes) == 1 for vs in alone.values() for v in vs)


def test_a_tiny_forwarder_gets_its_surplus_candidates_where_the_fallback_cannot_apply(tmp_path):
    """A tiny body's surplus candidates get the fallback alone; a forwarder gives rare-branch no
    value to test, so they take a random stack instead of not being made (Rust's forwarders
    lost every variant to codegen folding when only one candidate was made)."""
    from mewe import frontends, linker, passes
    from mewe.toolchain import find_toolchain
    from mewe.types import CompileOptions

    (tmp_path / "fwd.c").write_text("extern void g(void);\n__attribute__((noinline)) void f(void) { g(); }\n")
    program = linker.link_modules([frontends.load_source(tmp_path / "fwd.c", CompileOptions(), find_toolchain())])
    made = passes.diversify(program, variants=2, seed=1, jobs=1, executor="serial", cache=False)
    assert len(made["f"]) == 2
    assert all(v.passes and "rare-branch" not in v.passes for v in made["f"])
