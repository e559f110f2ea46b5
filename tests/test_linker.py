"""The multivariant linker and runtime, through real builds and real wasmtime runs: dispatchers
on every call (function pointers and entry points included), policies, tracing, skips, manifest."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import llvmlite.binding as llvm
import pytest

import mewe
from conftest import EXAMPLES, mewe as cli, sink_variants
from mewe.types import MultivariantOptions, Policy, Rerandomize
from mewe.wasm import DISPATCH_SECTION, custom_section, parse_wasm

INTERP_INPUT = b"let x = 3*(4+5)\nprint x - 2\nprint fib(8)\nprint gcd(84, 36) % 5\n"
INTERP_OUTPUT = b"25\n21\n2\n"


def build_mv(tmp: Path, source: Path, name: str, count: int = 3, **options) -> mewe.BuildResult:
    mv = MultivariantOptions(variants=count, **{"max_cost": 0, **options})  # sink variants all cost a little more
    return mewe.build([source], tmp / f"{name}.wasm", multivariant=mv, variants=sink_variants([source], count))


def run(module: Path, tmp: Path, stdin: bytes = b"", args=(), **kw) -> tuple[int, bytes]:
    (tmp / "in").write_bytes(stdin)
    status = mewe.run(module, list(args), stdin=tmp / "in", stdout=tmp / "out", **kw)
    return status, (tmp / "out").read_bytes()


@pytest.fixture(scope="module")
def interp_traced(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("interp")
    return build_mv(tmp, EXAMPLES / "interp.c", "interp", trace=True).output


def test_random_traces_differ_and_output_is_right(interp_traced, tmp_path):
    traces = set()
    for _ in range(100):
        trace: list = []
        assert run(interp_traced, tmp_path, INTERP_INPUT, trace=trace) == (0, INTERP_OUTPUT)
        traces.add(tuple(trace))
    assert len(traces) >= 95


def test_seeded_policy_repeats_its_trace(interp_traced, tmp_path):
    def trace_of(policy):
        trace: list = []
        assert run(interp_traced, tmp_path, INTERP_INPUT, policy=policy, trace=trace) == (0, INTERP_OUTPUT)
        return trace

    first = trace_of("seeded:7")
    assert first == trace_of("seeded:7") == trace_of(Policy("seeded", 7))
    assert first != trace_of("seeded:8")


def test_trace_digest_hashes_the_same_dispatches(interp_traced, tmp_path):
    """`mewe serve`'s TraceDigest: the SHA-256 of the (dispatcher id, variant) pairs the list
    trace decodes, and their number."""
    import hashlib
    import struct

    from mewe.runtime.host import TraceDigest

    pairs: list = []
    digest = TraceDigest()
    for trace in (pairs, digest):
        assert run(interp_traced, tmp_path, INTERP_INPUT, policy="seeded:7", trace=trace) == (0, INTERP_OUTPUT)
    ids = {name: fid for name, _, fid in json.loads(custom_section(interp_traced.read_bytes(), DISPATCH_SECTION))}
    raw = b"".join(struct.pack("<II", ids[fn], k) for fn, k in pairs)
    assert digest.length == len(pairs) > 50
    assert digest.hexdigest() == hashlib.sha256(raw).hexdigest()


def test_pinned_runs_every_variant_of_every_function(interp_traced, tmp_path):
    manifest = json.loads((interp_traced.with_name("interp.manifest.json")).read_text())
    dispatched = {f["name"]: f["variants"] for f in manifest["functions"] if f["status"] == "dispatched"}
    seen = set()
    for k in range(max(dispatched.values())):
        trace: list = []
        assert run(interp_traced, tmp_path, INTERP_INPUT, policy=f"pinned:{k}", trace=trace) == (0, INTERP_OUTPUT)
        assert all(variant == k % dispatched[fn] for fn, variant in trace)
        seen |= set(trace)
    called = {fn for fn, _ in seen}
    assert {(fn, k) for fn in called for k in range(dispatched[fn])} == seen
    # Reached only through the ops[] function-pointer table, the builtin table, and from libc's _start.
    assert {"op_add", "op_sub", "op_mul", "op_mod", "bi_fib", "bi_gcd"} <= called
    assert "__main_void" in called or "main" in called or "__original_main" in called


def test_callbacks_from_libc_are_dispatched(tmp_path):
    module = build_mv(tmp_path, EXAMPLES / "sort.c", "sort", trace=True).output
    trace: list = []
    assert run(module, tmp_path, b"pear\napple\nfig\n", trace=trace) == (0, b"apple\nfig\npear\n")
    called = {fn for fn, _ in trace}
    assert any(fn.startswith("cmp") for fn in called), called  # comparators called by libc's qsort


def test_trace_cli_writes_jsonl(interp_traced, tmp_path):
    res = cli("run", "--seed", "3", "--trace", tmp_path / "t.jsonl", interp_traced, stdin=INTERP_INPUT)
    assert (res.returncode, res.stdout) == (0, INTERP_OUTPUT)
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert records and set(records[0]) == {"function", "variant"}
    again = cli("run", "--policy", "seeded:3", "--trace", tmp_path / "u.jsonl", interp_traced, stdin=INTERP_INPUT)
    assert again.returncode == 0 and (tmp_path / "u.jsonl").read_text() == (tmp_path / "t.jsonl").read_text()


def test_manifest_and_dispatch_table(interp_traced):
    data = interp_traced.read_bytes()
    manifest = json.loads(interp_traced.with_name("interp.manifest.json").read_text())
    table = json.loads(custom_section(data, DISPATCH_SECTION))
    dispatched = [f for f in manifest["functions"] if f["status"] == "dispatched"]
    assert [[f["name"], f["variants"], i] for i, f in enumerate(dispatched)] == table
    assert [f["dispatch_id"] for f in dispatched] == list(range(len(dispatched)))
    assert manifest["totals"]["dispatched"] == len(dispatched) == len(manifest["functions"]) >= 12
    code = parse_wasm(data).code_by_name()
    for f in dispatched:
        assert f["variants"] == 4 and len(f["code_sizes"]) == 4 and all(size > 0 for size in f["code_sizes"])
        assert [f"mewe.{k}.{f['name']}" in code for k in range(4)] == [True] * 4


def test_identical_variants_are_dropped(tmp_path):
    source = EXAMPLES / "hash.c"
    variants = sink_variants([source], 2)
    def commented(v):  # the same body with a comment and a blank line: still a duplicate
        header, *body = v.ir.split("\n")
        return dataclasses.replace(v, ir="\n".join([header, "; only a comment", "", *body]))

    variants = {name: vs + [vs[0], commented(vs[1])] for name, vs in variants.items()}
    result = mewe.build([source], tmp_path / "h.wasm", multivariant=MultivariantOptions(variants=4), variants=variants)
    assert result.manifest.dispatched
    for f in result.manifest.dispatched:
        assert (f.variants, f.dropped) == (3, 2)


@pytest.mark.parametrize("dispatch,tail_calls", [("switch", False), ("table", True), ("table", False)])
def test_dispatch_forms(tmp_path, dispatch, tail_calls):
    module = build_mv(tmp_path, EXAMPLES / "interp.c", "i", dispatch=dispatch, tail_calls=tail_calls).output
    for k in range(4):
        assert run(module, tmp_path, INTERP_INPUT, policy=f"pinned:{k}") == (0, INTERP_OUTPUT)


def _padded_leb(n: int) -> bytes:
    """A function index as wasm-ld leaves it in code: a 5-byte LEB128."""
    return bytes([(n >> (7 * i)) & 0x7F | (0x80 if i < 4 else 0) for i in range(5)])


def test_tail_calls_use_return_call(tmp_path):
    """Dispatchers not inlined into their callers forward with return_call."""
    on = parse_wasm(build_mv(tmp_path, EXAMPLES / "interp.c", "on", inline_dispatch=0).output.read_bytes())
    off = parse_wasm(build_mv(tmp_path, EXAMPLES / "interp.c", "off", tail_calls=False,
                              inline_dispatch=0).output.read_bytes())
    for module, opcode_expected in ((on, True), (off, False)):
        index = {name: i for i, name in module.function_names.items()}
        body = module.code_by_name()["fib_rec"]
        return_call = b"\x12" + _padded_leb(index["mewe.0.fib_rec"])
        assert (return_call in body) is opcode_expected


EXPORTED_C = r"""
#include <stdio.h>
__attribute__((export_name("twice"), noinline)) int twice(int x) {
    int s = 0;
    for (int i = 0; i < x; i++) s += i * 3 ^ x;
    return s + x * 2;
}
int main(int argc, char **argv) { printf("%d\n", twice(argc + 40)); return 0; }
"""


def test_an_exported_function_is_exported_by_its_dispatcher(tmp_path):
    """A stale slot's call goes to the function's cold re-drawing dispatcher (`f.mewe.redraw`),
    a copy that must not take the export: the export stays the dispatcher's."""
    (tmp_path / "e.c").write_text(EXPORTED_C)
    result = mewe.build([tmp_path / "e.c"], tmp_path / "e.wasm", multivariant=MultivariantOptions(variants=3))
    assert "twice" in {f.name for f in result.manifest.dispatched}
    module = parse_wasm(result.output.read_bytes())
    exported = [index for name, kind, index in module.exports if name == "twice"]
    assert len(exported) == 1 and module.function_names[exported[0]] == "twice"
    assert "twice.mewe.redraw" in module.function_names.values()
    for policy in ("random", "pinned:0", "pinned:1", "pinned:2"):
        assert run(result.output, tmp_path, b"", policy=policy) == (0, b"2583\n")


RECURSIVE_C = r"""
#include <stdio.h>
__attribute__((noinline)) static unsigned depth(unsigned n) { return n ? (depth(n - 1) * 31u) ^ n : 7u; }
static unsigned (*volatile via)(unsigned) = depth;
int main(void) { printf("%u %u\n", depth(40), via(20)); return 0; }
"""


def test_self_calls_stay_on_the_calling_body(tmp_path):
    """--self-calls stay: a body's calls to its own function go to that body, so only calls from
    elsewhere (direct or through a pointer) are dispatched; the output is the plain build's
    under every body."""
    (tmp_path / "r.c").write_text(RECURSIVE_C)
    plain = mewe.build([tmp_path / "r.c"], tmp_path / "plain.wasm").output
    expected = run(plain, tmp_path)
    assert expected[0] == 0
    dispatches = {}
    for self_calls in ("dispatch", "stay"):
        mv = MultivariantOptions(variants=3, seed=1, trace=True, self_calls=self_calls)
        result = mewe.build([tmp_path / "r.c"], tmp_path / f"{self_calls}.wasm", multivariant=mv, keep_temps=True)
        bodies = next(f.variants for f in result.manifest.dispatched if f.name == "depth")
        assert bodies >= 2
        for policy in ("random", *(f"pinned:{k}" for k in range(bodies))):
            trace: list = []
            assert run(result.output, tmp_path, policy=policy, trace=trace) == expected
            dispatches[self_calls, policy] = sum(1 for name, _ in trace if name == "depth")
        module = llvm.parse_bitcode((tmp_path / f"{self_calls}.bc").read_bytes())
        for k in range(bodies):
            callees = {list(i.operands)[-1].name for b in module.get_function(f"mewe.{k}.depth").blocks
                       for i in b.instructions if i.opcode == "call"}
            elsewhere = {"depth", "depth.mewe.redraw", *(f"mewe.{j}.depth" for j in range(bodies) if j != k)}
            assert f"mewe.{k}.depth" in callees
            assert bool(callees & elsewhere) == (self_calls == "dispatch")  # staying, a body reaches only itself
    assert {n for (sc, _), n in dispatches.items() if sc == "dispatch"} == {41 + 21}
    assert {n for (sc, _), n in dispatches.items() if sc == "stay"} == {2}  # main's call and the call through `via`


def test_plain_build_has_no_dispatchers(tmp_path):
    result = mewe.build([EXAMPLES / "interp.c"], tmp_path / "plain.wasm")
    module = parse_wasm(result.output.read_bytes())
    assert result.manifest is None and not (tmp_path / "plain.manifest.json").exists()
    assert not any(n.startswith("mewe.") and n[5:6].isdigit() for n in module.function_names.values())
    assert "mewe_configure" not in {e[0] for e in module.exports}
    assert custom_section(result.output.read_bytes(), DISPATCH_SECTION) is None
    with pytest.raises(mewe.MeweError, match="has no dispatchers"):
        mewe.run(result.output, policy="pinned:1")


def test_imports_by_policy_and_tracing(tmp_path, interp_traced):
    plain_mv = build_mv(tmp_path, EXAMPLES / "hash.c", "h")
    assert {i[0] for i in parse_wasm(plain_mv.output.read_bytes()).imports} == {"wasi_snapshot_preview1"}
    assert ("wasi_snapshot_preview1", "random_get", 0) in parse_wasm(plain_mv.output.read_bytes()).imports
    assert ("mewe", "trace", 0) in parse_wasm(interp_traced.read_bytes()).imports
    host = build_mv(tmp_path, EXAMPLES / "hash.c", "hh", policy=Policy("host"))
    assert ("mewe", "rand", 0) in parse_wasm(host.output.read_bytes()).imports
    status, out = run(host.output, tmp_path, args=["abc"])
    assert status == 0 and out.startswith(b"ba7816bf")
    with pytest.raises(mewe.MeweError, match="needs a module built with --policy host"):
        run(plain_mv.output, tmp_path, args=["abc"], policy="host")
    with pytest.raises(mewe.MeweError, match="built without tracing"):
        run(plain_mv.output, tmp_path, args=["abc"], trace=[])


UNSUPPORTED_C = r"""
#include <stdio.h>
int pick(int n) { static void *to[] = {&&even, &&odd}; goto *to[n & 1]; even: return n + 1; odd: return n * 3; }
__attribute__((noinline)) int twice(int x) { return 2 * x; }
int main(void) { printf("%d %d\n", pick(3), twice(21)); return 0; }
"""

VARARGS_C = r"""
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
struct big { long long a, b, c; };
static int total;
static void note(const char *tag, ...) {
    va_list ap; va_start(ap, tag); int v; while ((v = va_arg(ap, int)) != 0) total += v * (int)strlen(tag); va_end(ap);
}
static struct big make(int n, ...) {
    struct big r = {0, 0, 0}; va_list ap; va_start(ap, n);
    for (int i = 0; i < n; i++) { long long x = va_arg(ap, long long); r.a += x; r.b ^= x << i; r.c = r.c * 3 + x; }
    va_end(ap); return r;
}
static double twice(int n, ...) {
    va_list ap, aq; va_start(ap, n); va_copy(aq, ap); double s = 0;
    for (int i = 0; i < n; i++) s += va_arg(ap, double);
    for (int i = 0; i < n; i++) s += 0.5 * va_arg(aq, double);
    va_end(aq); va_end(ap);
    va_start(ap, n); s += va_arg(ap, double); va_end(ap); return s;
}
static int say(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); char buf[128]; int r = vsnprintf(buf, sizeof buf, fmt, ap); va_end(ap);
    fputs(buf, stdout); return r;
}
static int ignore(int n, ...) { return n * 3; }
int main(int argc, char **argv) {
    note("abc", 1, 2, 3, 0); note("z", argc, 0);
    struct big b = make(4, 10LL, -3LL, 1LL << 40, 7LL);
    double t = twice(3, 1.5, 2.25, -4.0);
    int r = say("%s %d %lld %lld %lld %.3f %d\n", "out", total, b.a, b.b, b.c, t, ignore(argc, 1, 2));
    say("%d chars\n", r);
    return 0;
}
"""


def test_variadic_functions_are_dispatched(tmp_path):
    """A variadic function's dispatcher starts a va_list and hands it to the body, whose
    va_starts become va_copies of it: void and struct (sret) results, va_copy, va_start twice,
    a va_list passed on to vsnprintf, varargs ignored; under both dispatch forms and every
    re-randomization mode, each path prints what the plain build prints."""
    (tmp_path / "va.c").write_text(VARARGS_C)
    plain = tmp_path / "plain.wasm"
    assert cli("build", tmp_path / "va.c", "-O1", "-o", plain).returncode == 0
    expected = cli("run", plain).stdout
    assert expected == b"out 19 1099511627790 -4398046511160 3298534883578 1.125 3\n58 chars\n"
    for flags in ([], ["--dispatch", "table"], ["--rerandomize", "call"], ["--rerandomize", "every:3", "--trace"]):
        out = tmp_path / "mv.wasm"
        assert cli("build", tmp_path / "va.c", "-O1", "--variants", "3", *flags, "-o", out).returncode == 0
        functions = json.loads(out.with_suffix(".manifest.json").read_text())["functions"]
        assert all(f["status"] == "dispatched" for f in functions), functions
        for policy in ("random", "pinned:1", "pinned:2"):
            assert cli("run", "--policy", policy, out).stdout == expected, (flags, policy)

MUSTTAIL_LL = """
target datalayout = "e-m:e-p:32:32-p10:8:8-p20:8:8-i64:64-i128:128-n32:64-S128-ni:1:10:20"
target triple = "wasm32-unknown-wasi"
define hidden i32 @leaf(i32 %x) {
  %y = add i32 %x, 1
  ret i32 %y
}
define hidden i32 @forwarder(i32 %x) {
  %r = musttail call i32 @leaf(i32 %x)
  ret i32 %r
}
define hidden i32 @__main_argc_argv(i32 %argc, ptr %argv) {
  %r = call i32 @forwarder(i32 41)
  ret i32 %r
}
"""


def test_unsupported_functions_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "u.c").write_text(UNSUPPORTED_C)
    result = build_mv(tmp_path, tmp_path / "u.c", "u")
    reports = {f.name: f for f in result.manifest.functions}
    assert (reports["pick"].status, reports["pick"].reason) == ("skipped", "its block addresses are taken")
    assert reports["twice"].status == "dispatched"
    assert run(result.output, tmp_path) == (0, b"9 42\n")

    (tmp_path / "m.ll").write_text(MUSTTAIL_LL)
    result = build_mv(tmp_path, tmp_path / "m.ll", "m")
    reports = {f.name: f for f in result.manifest.functions}
    assert (reports["forwarder"].status, reports["forwarder"].reason) == ("skipped", "contains a musttail call")
    assert reports["leaf"].status == "dispatched"
    assert run(result.output, tmp_path) == (42, b"")


def test_functions_the_linker_skips_get_no_variants(tmp_path):
    """The plan is made before passes run: no variants are made for a function that cannot be
    dispatched."""
    from mewe import frontends, linker
    from mewe.pipeline import make_variants
    from mewe.toolchain import find_toolchain

    (tmp_path / "u.c").write_text(UNSUPPORTED_C)
    program = linker.link_modules([frontends.load_source(tmp_path / "u.c", mewe.CompileOptions(), find_toolchain())])
    mv = MultivariantOptions(variants=2, max_size=2, cache=False)
    skips = linker.unsupported(program, mv)
    assert skips.keys() == {"pick", "main"} and skips["pick"] == "its block addresses are taken"
    assert skips["main"].startswith("larger than --max-size (") and skips["main"].endswith(" > 2 instructions)")
    made = make_variants(program, mv)
    assert "pick" not in made and "main" not in made and made["twice"]


ODD_NAMES_C = r"""
#include <stdio.h>
int f1(int x) __asm__("p(q)");
int f2(int x) __asm__("q\"x");
int f3(int x) __asm__("7.seven");
int f4(int x) __asm__("sp ace\\b");
int f5(int x) __asm__("_ZN60_$LT$alloc..string..String$u20$as$u20$core..fmt..Display$GT$3fmt17h14fa51b49b958a5cE");
__attribute__((noinline)) int f1(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * 3 + (x ^ i); return s; }
__attribute__((noinline)) int f2(int x) { int s = 1; for (int i = 0; i < x; i++) s = s * 7 + i; return s; }
__attribute__((noinline)) int f3(int x) { return x > 3 ? f1(x) - f2(x) : x * 5; }
__attribute__((noinline)) int f4(int x) { return f3(x) + f1(x / 2); }
__attribute__((noinline)) int f5(int x) { return f4(x) ^ (x << 3); }
int main(void) { int t = 0; for (int i = 0; i < 20; i++) t += f5(i) ^ f3(i); printf("%d\n", t); return 0; }
"""


def test_names_are_spelled_as_llvm_prints_them():
    from mewe.llvmir import definitions, parse_module, quote_name, unquote_name

    names = ["main", "p(q)", 'q"x', "7.seven", "sp ace\\b", "é", "a$b", "_ZN3foo3barE", "-dash", "x.y_z"]
    text = "".join(f"define void {quote_name(n)}() {{\n  ret void\n}}\n" for n in names)
    mod = parse_module(text)
    assert [f.name for f in mod.functions] == names
    printed = str(mod)
    assert [n for n, _, _ in definitions(mod, printed)] == names  # each where LLVM prints it, spelled as it does
    assert all(unquote_name(quote_name(n)) == n for n in names)


def test_functions_with_names_that_need_quoting_are_dispatched(tmp_path):
    """Symbols from asm labels (and mangled names) are spelled quoted and escaped in IR text;
    passes, linker and runtime must agree on them, or the functions lose their variants."""
    (tmp_path / "names.c").write_text(ODD_NAMES_C)
    plain = mewe.build([tmp_path / "names.c"], tmp_path / "plain.wasm").output
    result = mewe.build([tmp_path / "names.c"], tmp_path / "names.wasm", multivariant=MultivariantOptions(variants=3))
    status = {f.name: f.status for f in result.manifest.functions}
    odd = ["p(q)", 'q"x', "7.seven", "sp ace\\b", "_ZN60_$LT$alloc..string..String$u20$as$u20$core..fmt..Display$GT$3fmt17h14fa51b49b958a5cE"]
    assert all(status[n] == "dispatched" for n in odd), status
    expected = run(plain, tmp_path)
    assert expected[0] == 0
    bodies = max(f.variants for f in result.manifest.functions)
    for policy in [None] + [f"pinned:{k}" for k in range(bodies)]:
        assert run(result.output, tmp_path, policy=policy) == expected, policy


def test_functions_over_the_size_limit_keep_one_body(tmp_path):
    result = build_mv(tmp_path, EXAMPLES / "interp.c", "small", max_size=30)
    reports = {f.name: f for f in result.manifest.functions}
    assert reports["main"].status == "skipped"
    assert reports["main"].reason.startswith("larger than --max-size (") and reports["main"].reason.endswith(" > 30 instructions)")
    assert reports["fib_rec"].status == "dispatched"
    assert run(result.output, tmp_path, b"print fib(10)\n") == (0, b"55\n")
    with pytest.raises(mewe.MeweError, match="--max-size must be at least 1"):
        build_mv(tmp_path, EXAMPLES / "interp.c", "none", max_size=0)


def test_discriminator_is_uniform(tmp_path):
    """Chi-square over the variants picked for many calls of functions with 4 bodies, a fresh
    draw per call."""
    module = build_mv(tmp_path, EXAMPLES / "interp.c", "u", trace=True, rerandomize=Rerandomize("call")).output
    trace: list = []
    assert run(module, tmp_path, b"print fib(18)\n", trace=trace) == (0, b"2584\n")
    counts = Counter(k for fn, k in trace if fn == "fib_rec")
    total = sum(counts.values())
    assert total > 4000
    chi2 = sum((counts[k] - total / 4) ** 2 / (total / 4) for k in range(4))
    assert chi2 < 25.90  # p = 1e-5 for 3 degrees of freedom (a false alarm once in 100,000 runs)


DRAWS_C = """#include <stdio.h>
#include "discriminator.c"
int main(void) {
    static const unsigned sizes[] = {2, 3, 5, 7, 10, 16};
    for (int s = 0; s < 6; s++) {
        unsigned counts[16] = {0};
        for (int i = 0; i < 480000; i++)
            counts[__mewe_choose(sizes[s])]++;
        for (unsigned k = 0; k < sizes[s]; k++)
            printf("%u%c", counts[k], k + 1 < sizes[s] ? ' ' : '\\n');
    }
    return 0;
}
"""
# Critical values at p = 1e-6, df = n - 1: twelve tests a run, so a false alarm about once in
# 80,000 runs; with 480,000 draws a 1% bias still exceeds them (48 against 23.93 for n = 2).
CHI2_CRITICAL = {2: 23.93, 3: 27.63, 5: 33.38, 7: 38.26, 10: 44.81, 16: 56.49}


def test_discriminator_draws_are_uniform_and_seeded_per_run(tmp_path):
    """The discriminator itself, 480,000 draws for each of several n, under the default (random)
    policy: chi-square at p = 1e-6 per n, and a fresh WASI random_get seed on every run."""
    from mewe.runtime import DISCRIMINATOR

    (tmp_path / "draws.c").write_text(DRAWS_C)
    module = mewe.build([tmp_path / "draws.c"], tmp_path / "draws.wasm",
                        options=mewe.CompileOptions(include_dirs=(str(DISCRIMINATOR.parent),))).output
    outputs = [run(module, tmp_path) for _ in range(2)]
    for status, out in outputs:
        assert status == 0
        for line in out.decode().splitlines():
            counts = [int(c) for c in line.split()]
            n, total = len(counts), sum(counts)
            chi2 = sum((c - total / n) ** 2 / (total / n) for c in counts)
            assert total == 480000 and chi2 < CHI2_CRITICAL[n], (n, counts)
    assert outputs[0][1] != outputs[1][1]  # no fixed default seed


def _fib_picks(module: Path, tmp: Path, **kw) -> list[int]:
    trace: list = []
    assert run(module, tmp, b"print fib(22)\n", trace=trace, **kw) == (0, b"17711\n")
    return [k for fn, k in trace if fn == "fib_rec"]


def _changes(picks: list[int]) -> int:
    return sum(a != b for a, b in zip(picks, picks[1:]))


@pytest.mark.parametrize("period", [64, 1000])
def test_every_n_keeps_a_variant_for_random_runs_of_about_n_dispatches(tmp_path, period):
    module = build_mv(tmp_path, EXAMPLES / "interp.c", "every", trace=True,
                      rerandomize=Rerandomize("every", period)).output
    picks = _fib_picks(module, tmp_path)  # nearly every dispatch of this run is fib_rec's
    runs, length = [], 1
    for a, b in zip(picks, picks[1:]):
        if a != b:
            runs.append(length)
            length = 0
        length += 1
    # A new variant (3 times in 4) about every `period` dispatches: the mean run between changes
    # is about 4/3 period; never a fresh draw per call, never one variant for the whole run.
    assert len(picks) > 28000 and len(set(picks)) == 4
    mean = sum(runs) / len(runs)
    assert 0.6 * period <= mean <= 2.5 * period and max(runs) < 20 * period, (mean, max(runs))
    assert len(set(runs)) > len(runs) // 4  # random lengths, not a fixed count an observer could follow
    assert sorted(_fib_picks(module, tmp_path, policy="pinned:2")) == [2] * len(picks)
    assert _fib_picks(module, tmp_path, policy="seeded:5") == _fib_picks(module, tmp_path, policy="seeded:5")


RARE_C = r"""
#include <stdio.h>
__attribute__((noinline)) unsigned hot(unsigned x) { return x * 2654435761u + 1; }
__attribute__((noinline)) unsigned rare(unsigned x) { return x ^ (x >> 7); }
int main(void) {
    unsigned s = 1;
    for (int i = 0; i < 400; i++) {
        for (int j = 0; j < 500; j++) s = hot(s);
        s = rare(s);
    }
    printf("%u\n", s);
    return 0;
}
"""


def test_every_n_redraws_a_rarely_called_function_as_the_module_runs(tmp_path):
    """rare() is called 400 times, once per 500 dispatches of hot(): its own life (about 64 of
    its calls) would outlast most of the run, but the module's epochs end about every 64
    dispatches, and each one makes rare()'s slot stale."""
    (tmp_path / "rare.c").write_text(RARE_C)
    module = build_mv(tmp_path, tmp_path / "rare.c", "rare", trace=True, rerandomize=Rerandomize("every", 64)).output
    trace: list = []
    status, out = run(module, tmp_path, trace=trace)
    picks = [k for fn, k in trace if fn == "rare"]
    assert status == 0 and len(picks) == 400
    # A fresh draw on nearly every call: a new variant 3 times in 4, against about 6 changes in
    # the run if only rare()'s own calls counted.
    assert _changes(picks) > 200, _changes(picks)
    assert run(module, tmp_path, policy="pinned:1") == (0, out)


def test_request_mode_draws_once_per_instance_and_call_mode_every_call(tmp_path):
    request = build_mv(tmp_path, EXAMPLES / "interp.c", "request", trace=True, rerandomize=Rerandomize("request")).output
    firsts = set()
    for _ in range(12):
        picks = _fib_picks(request, tmp_path)
        assert len(set(picks)) == 1
        firsts.add(picks[0])
    assert len(firsts) > 1  # a fresh draw at every instance start
    call = build_mv(tmp_path, EXAMPLES / "interp.c", "call", trace=True, rerandomize=Rerandomize("call")).output
    picks = _fib_picks(call, tmp_path)
    assert _changes(picks) > len(picks) / 2  # 3 times in 4 for a fresh draw per call


def test_small_functions_are_dispatched_at_their_call_sites(tmp_path):
    """Dispatchers of small functions are inlined into their callers (no dispatcher frame); the
    function itself stays for calls through pointers. Outputs are the same either way."""
    source = tmp_path / "ptr.c"
    source.write_text(FNPTR_C)
    for inline in (0, 10_000):
        module = build_mv(tmp_path, source, f"ptr{inline}", inline_dispatch=inline).output
        for k in range(4):
            assert run(module, tmp_path, policy=f"pinned:{k}") == (0, FNPTR_OUT)
        names = set(parse_wasm(module.read_bytes()).function_names.values())
        assert ("twice" in names) == (inline == 0)  # called directly only: gone once inlined
        assert "apply" in names  # its address is taken


FNPTR_C = r"""
#include <stdio.h>
__attribute__((noinline)) static int twice(int x) { return 2 * x + 1; }
__attribute__((noinline)) int apply(int (*f)(int), int x) { return f(x) + twice(x); }
static int add3(int x) { return x + 3; }
int main(void) {
    int (*volatile g)(int (*)(int), int) = apply;
    printf("%d %d\n", g(add3, 4), apply(add3, 5));
    return 0;
}
"""
FNPTR_OUT = b"16 19\n"


BYVAL_C = r"""
#include <stdio.h>
struct quad { int a, b, c, d; };
/* Passed by value: wasm32 passes the struct as a byval copy in the caller's stack frame. */
__attribute__((noinline)) int weigh(struct quad q) {
    volatile char scratch[4096]; /* a frame big enough to overwrite a copy left in a popped one */
    for (int i = 0; i < 4096; i++) scratch[i] = (char)i;
    return q.a + 2 * q.b + 3 * q.c + 4 * q.d + scratch[100];
}
__attribute__((noinline)) int relay(struct quad q) { return weigh(q); }
int main(void) { struct quad q = {1, 2, 3, 4}; printf("%d\n", relay(q)); return 0; }
"""


def test_byval_arguments_survive_tail_calls(tmp_path):
    """Regression (libsodium's argon2): a `tail call` passing a byval copy became a return_call
    whose copy was in the frame it popped. Dispatchers and bodies must call such functions plainly."""
    source = tmp_path / "byval.c"
    source.write_text(BYVAL_C)
    module = mewe.build([source], tmp_path / "byval.wasm", multivariant=MultivariantOptions(variants=2)).output
    for k in range(3):
        assert run(module, tmp_path, b"", policy=f"pinned:{k}") == (0, b"130\n")


CRASH_LL = """target triple = "wasm32-unknown-wasi"

declare void @llvm.trap()
declare i32 @printf(ptr, ...)

@fmt = private constant [4 x i8] c"%d\\0A\\00"

define void @die(i32 %arg) noinline {
bb:
  tail call void @llvm.trap()
  unreachable
}

define i32 @add(i32 %a, i32 %b) noinline {
bb:
  %s = add i32 %a, %b
  ret i32 %s
}

define i32 @__main_argc_argv(i32 %argc, ptr %argv) {
bb:
  %big = icmp sgt i32 %argc, 5
  br i1 %big, label %fail, label %ok

fail:
  call void @die(i32 %argc)
  unreachable

ok:
  %v = call i32 @add(i32 %argc, i32 40)
  %r = call i32 (ptr, ...) @printf(ptr @fmt, i32 %v)
  ret i32 0
}
"""
# Valid IR on which LLVM's wasm backend asserts ("Register use before def!"): a value defined
# after a trap and used in a later block. The passes no longer write this; the build must
# still survive variants that crash the code generator.
DIE_CRASHING = """define void @die(i32 %arg) noinline {
bb:
  %slot = alloca i32, align 4
  store volatile i32 1, ptr %slot, align 4
  br label %bb.1

bb.1:
  tail call void @llvm.trap()
  %x = load volatile i32, ptr %slot, align 4
  %y = mul i32 %x, 3
  br label %bb.2

bb.2:
  %z = or i32 %y, 5
  store volatile i32 %z, ptr %slot, align 4
  unreachable
}"""
ADD_VARIANT = """define i32 @add(i32 %a, i32 %b) noinline {
bb:
  %slot = alloca i32, align 4
  store volatile i32 7, ptr %slot, align 4
  %s = add i32 %b, %a
  ret i32 %s
}"""


def test_variants_that_crash_codegen_are_dropped(tmp_path):
    from mewe.types import Variant

    (tmp_path / "t.ll").write_text(CRASH_LL)
    variants = {"die": [Variant("die", DIE_CRASHING, ("handmade",))], "add": [Variant("add", ADD_VARIANT, ("handmade",))]}
    result = mewe.build([tmp_path / "t.ll"], tmp_path / "t.wasm", multivariant=MultivariantOptions(variants=1),
                        variants=variants)
    reports = {f.name: f for f in result.manifest.functions}
    assert reports["die"].status == "skipped"
    assert reports["die"].reason.startswith("its variants crash LLVM's code generator: assertion")
    assert reports["add"].status == "dispatched" and reports["add"].variants == 2
    for policy in ("pinned:0", "pinned:1"):
        assert run(result.output, tmp_path, policy=policy) == (0, b"41\n")
    with pytest.raises(mewe.MeweError, match="unreachable in function 'die'"):  # die still traps
        run(result.output, tmp_path, args=["1", "2", "3", "4", "5"])

    # the same body as a plain module: the build's error, in one line, and no output
    (tmp_path / "crash.ll").write_text(CRASH_LL.replace(CRASH_LL[CRASH_LL.index("define void @die"):
                                                                 CRASH_LL.index("define i32 @add")], DIE_CRASHING + "\n\n"))
    res = cli("build", tmp_path / "crash.ll", "-o", tmp_path / "crash.wasm")
    assert res.returncode == 1 and not (tmp_path / "crash.wasm").exists()
    assert res.stderr.splitlines() == [
        "mewe: error: crash.ll: LLVM's code generator crashed: assertion 'MRI->getVRegDef(Reg) && \"Register use before def!\"' failed"]


def test_variants_are_kept_within_the_cost_bound(tmp_path):
    """Each body's cost estimate is in the manifest; a variant over --max-cost is kept only as a
    function's one variant when no candidate is within it (the cheapest then)."""
    from mewe.pipeline import CALL_COST

    def build(max_cost):
        mv = MultivariantOptions(variants=4, seed=3, max_cost=max_cost)
        return mewe.build([EXAMPLES / "interp.c"], tmp_path / f"c{max_cost}.wasm", multivariant=mv).manifest

    bounded, unbounded = build(1.1), build(0)
    over = lambda r, c: c + CALL_COST > 1.1 * (r.costs[0] + CALL_COST)  # noqa: E731
    for r in bounded.dispatched:
        assert len(r.costs) == r.variants >= 2 and all(c > 0 for c in r.costs)
        assert not any(over(r, c) for c in r.costs[1:]) or r.variants == 2, (r.name, r.costs)
    assert any(over(r, c) for r in unbounded.dispatched for c in r.costs[1:])  # the bound did something
    assert bounded.totals()["dispatched"] == unbounded.totals()["dispatched"]


COST_LL = """
define i32 @straight(i32 %n) {
  %a = add i32 %n, 1
  ret i32 %a
}

define i32 @nested(i32 %n) {
entry:
  %slot = alloca i32, align 4
  br label %outer
outer:
  %i = phi i32 [ 0, %entry ], [ %i1, %outer.latch ]
  br label %inner
inner:
  %j = phi i32 [ 0, %outer ], [ %j1, %inner ]
  %j1 = add i32 %j, 1
  %more = icmp slt i32 %j1, %n
  br i1 %more, label %inner, label %outer.latch
outer.latch:
  %i1 = add i32 %i, 1
  %again = icmp slt i32 %i1, %n
  br i1 %again, label %outer, label %exit
exit:
  ret i32 %i1
}
"""


def test_cost_estimate_weights_loops_and_frames():
    from mewe.llvmir import FRAME_COST, LOOP_WEIGHT, function_cost, parse_module

    mod = parse_module(COST_LL)
    assert function_cost(mod.get_function("straight")) == 2
    # entry 2 and exit 1 outside loops; outer 2 and latch 3 in one loop; inner 4 in two
    expected = FRAME_COST + 3 + 5 * LOOP_WEIGHT + 4 * LOOP_WEIGHT ** 2
    assert function_cost(mod.get_function("nested")) == expected

    from mewe.passes.analysis import body_cost
    from mewe.passes.ir import Function, name_values

    name_values(mod)
    for name in ("straight", "nested"):  # the passes' model finds the same numbers
        body = str(mod.get_function(name))
        assert body_cost(Function.parse(body[body.index("define"):], name)) == function_cost(mod.get_function(name))


@pytest.mark.parametrize("source", [EXAMPLES / "interp.c", EXAMPLES / "sort.c",
                                    EXAMPLES.parent / "benchmarks" / "programs" / "calls.c"], ids=lambda p: p.stem)
def test_costs_made_with_the_variants_equal_the_linkers_own(source):
    """Variants carry the cost estimates computed where they were made; the linker computes the
    same numbers from the parsed module when they do not."""
    from mewe import frontends, linker, passes, pipeline
    from mewe.toolchain import find_toolchain
    from mewe.types import CompileOptions

    toolchain = find_toolchain()
    program = linker.link_modules([frontends.load_source(source, CompileOptions(), toolchain)])
    mv = MultivariantOptions(variants=4, cache=False, jobs=1, inline_dispatch=0, merge_bodies=0)
    made = passes.diversify(program, variants=8, seed=3, jobs=1, executor="serial", cache=False)
    assert all(v.cost is not None and v.original_cost is not None for vs in made.values() for v in vs)
    bare = {f: [dataclasses.replace(v, cost=None, original_cost=None) for v in vs] for f, vs in made.items()}
    rt = pipeline.discriminator(mv, toolchain)
    _, with_costs, _ = linker.link_variants(program, made, rt, mv)
    _, computed, _ = linker.link_variants(program, bare, rt, mv)
    dispatched = [r for r in computed if r.status == "dispatched"]
    assert len(dispatched) >= 2
    assert [(r.name, r.costs) for r in with_costs] == [(r.name, r.costs) for r in computed]


CODEGEN_FAILS = """target triple = "wasm32-unknown-wasi"
declare void @llvm.x86.sse2.pause()
define void @f() {
  call void @llvm.x86.sse2.pause()
  ret void
}
"""
CODEGEN_WORKS = """target triple = "wasm32-unknown-wasi"
define i32 @g(i32 %x) {
  %y = mul i32 %x, 3
  ret i32 %y
}
"""


@pytest.mark.parametrize("threaded", [False, True], ids=["forked", "fresh-interpreter"])
def test_an_llvm_codegen_abort_is_a_codegen_crash_naming_llvms_message(threaded, monkeypatch):
    from mewe.linker import codegen
    from mewe.llvmir import parse_module
    from mewe.types import IRModule

    if threaded:  # a process with threads must not fork: codegen then runs in a new interpreter
        monkeypatch.setattr(codegen.threading, "active_count", lambda: 2)
    with pytest.raises(codegen.CodegenCrash, match=r"^m: LLVM's code generator crashed: Cannot select: intrinsic %llvm.x86.sse2.pause$"):
        codegen.emit_object(IRModule("m", parse_module(CODEGEN_FAILS).as_bitcode()))
    good = IRModule("g", parse_module(CODEGEN_WORKS).as_bitcode())
    objects = {codegen.emit_object(good)}
    monkeypatch.setattr(codegen.threading, "active_count", lambda: 1 if threaded else 2)
    objects.add(codegen.emit_object(good))
    assert len(objects) == 1 and next(iter(objects)).startswith(b"\0asm")  # both ways, the same object


def _many_functions(n: int) -> str:
    """A C program of `n` small functions, static and not, reached through a table, with data."""
    out = ["#include <stdio.h>", "typedef unsigned (*fn)(unsigned);", f"static const char *names[{n}];"]
    for i in range(n):
        storage = "static " if i % 3 else ""
        out.append(f"{storage}unsigned f{i}(unsigned x) {{ static unsigned seen; seen += x; "
                   f"return x * {i + 3}u + (x >> {i % 7 + 1}) + seen; }}")
    out.append(f"static const fn table[{n}] = {{" + ", ".join(f"f{i}" for i in range(n)) + "};")
    out.append("int main(void) { unsigned s = 1; for (int r = 0; r < 3; r++) for (int i = 0; i < %d; i++) "
               "s = table[i](s); printf(\"%%u %%s\\n\", s, names[0] ? names[0] : \"none\"); return 0; }" % n)
    return "\n".join(out) + "\n"


def test_a_big_module_is_code_generated_in_parts_and_behaves_as_when_generated_whole(tmp_path, monkeypatch):
    from mewe import frontends, linker
    from mewe.toolchain import find_toolchain

    src = tmp_path / "many.c"
    src.write_text(_many_functions(900))
    module = linker.link_modules([frontends.load_source(src, mewe.CompileOptions(), find_toolchain())])
    parts = linker.split_module(module)
    assert parts and len(parts) == 2  # 900 definitions: two parts
    assert all(p.text.count("\ndefine ") < 600 for p in parts)  # each defines its share, declares the rest

    def build(name: str, **mv) -> bytes:
        out = tmp_path / name / "many.wasm"
        out.parent.mkdir()
        mewe.build([src], out, multivariant=MultivariantOptions(**mv))
        return out.read_bytes()

    emitted = []
    emit_objects = linker.emit_objects
    monkeypatch.setattr(linker, "emit_objects", lambda modules, *a, **k: emitted.append(len(modules)) or emit_objects(modules, *a, **k))
    split_1, split_2 = build("jobs1", jobs=1), build("jobs2", jobs=2)
    assert emitted == [2, 2] and split_1 == split_2  # in parts, which depend on the module, not on --jobs
    monkeypatch.setattr(linker, "split_module", lambda module: None)
    whole = build("whole", jobs=1)
    assert emitted == [2, 2]  # in one piece
    runs = {}
    for name in ("jobs1", "whole"):
        out = tmp_path / name / "stdout"
        assert mewe.run(tmp_path / name / "many.wasm", stdout=out) == 0
        runs[name] = out.read_bytes()
    assert runs["jobs1"] == runs["whole"] and runs["jobs1"].endswith(b" none\n")
    assert whole == split_1  # contiguous parts keep the module's order: the same program, byte for byte


MERGE_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) static unsigned mix(unsigned a, unsigned b) { return (a ^ (b << 5)) + (b >> 3) + 0x9e3779b9u; }
__attribute__((noinline)) static unsigned step(unsigned a) { return (a + 7u) ^ 0x5bd1e995u; }
__attribute__((used)) static int kept(int x) { return x + 1; } /* already in @llvm.used */
static unsigned (*volatile through)(unsigned) = step;
int main(int argc, char **argv) {
    unsigned sum = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
    for (unsigned i = 0; i < 1000; i++)
        sum = mix(sum, through(i)) + step(sum);
    printf("%u\n", sum);
    return 0;
}
"""


def test_tiny_leaf_bodies_are_merged_into_their_dispatch(tmp_path):
    """Bodies of tiny leaf functions are inlined where they are dispatched: no call reaches a
    body (direct calls branch to inlined code; a call through a pointer runs the dispatcher,
    which has them inline), the bodies stay in the binary for inspection, and every variant
    computes what the plain build does."""
    from mewe.inspect import native_code

    source = tmp_path / "merge.c"
    source.write_text(MERGE_C)
    plain = mewe.build([source], tmp_path / "plain.wasm").output
    expected = run(plain, tmp_path, args=["5"])
    mv = MultivariantOptions(variants=3, passes=("substitute",), max_cost=0)
    for merge in (0, 40):
        result = mewe.build([source], tmp_path / f"m{merge}.wasm", multivariant=dataclasses.replace(mv, merge_bodies=merge))
        merged = {f.name for f in result.manifest.functions if f.merged}
        assert merged == ({"mix", "step", "kept"} if merge else set())
        assert all(f.variants > 1 for f in result.manifest.functions if f.name in ("mix", "step"))
        for k in range(4):
            assert run(result.output, tmp_path, args=["5"], policy=f"pinned:{k}") == expected
        code = native_code(result.output.read_bytes())
        body_calls = {ins.split()[-1].split("+")[0] for body in code.values() for ins in body
                      if ins.startswith("call") and "mewe." in ins}
        bodies = {f"mewe.{k}.{f}" for f in ("mix", "step") for k in range(2)}
        assert bodies <= set(code)  # kept for comparison and `mewe inspect`
        assert (body_calls & bodies) == (set() if merge else bodies)


def test_a_codegen_crash_only_in_the_final_form_drops_those_variants(tmp_path, monkeypatch):
    """Candidates are compared in a module whose dispatchers are stubs; should the final
    module's code generation crash on a function's variants, they are dropped there too."""
    from mewe import linker as mewe_linker
    from mewe.types import Variant

    final_forms: set[bytes] = set()
    real_link, real_emit = mewe_linker.link_variants, mewe_linker.emit_object

    def link(program, chosen, *args, compare=False, **kw):
        module, reports, used = real_link(program, chosen, *args, compare=compare, **kw)
        if not compare and chosen.get("add"):
            final_forms.add(module.bitcode)
        return module, reports, used

    def emit(module, *args, **kw):
        if module.bitcode in final_forms:
            raise mewe_linker.CodegenCrash(f"{module.name}: LLVM's code generator crashed: only in the final form")
        return real_emit(module, *args, **kw)

    monkeypatch.setattr(mewe_linker, "link_variants", link)
    monkeypatch.setattr(mewe_linker, "emit_object", emit)
    (tmp_path / "t.ll").write_text(CRASH_LL)
    variants = {"add": [Variant("add", ADD_VARIANT, ("handmade",))]}
    result = mewe.build([tmp_path / "t.ll"], tmp_path / "t.wasm", multivariant=MultivariantOptions(variants=1),
                        variants=variants)
    reports = {f.name: f for f in result.manifest.functions}
    assert reports["add"].status == "skipped"
    assert reports["add"].reason == "its variants crash LLVM's code generator: only in the final form"
    assert run(result.output, tmp_path) == (0, b"41\n")
