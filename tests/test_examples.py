"""End to end: each example service is compiled by mewe (real clang, llvmlite, wasm-ld) and run
under wasmtime through `mewe run`; outputs are checked against known answers."""

from __future__ import annotations

import hashlib

import pytest

from conftest import EXAMPLES, mewe
from mewe.types import Rerandomize
from mewe.wasm import parse_wasm

CASES = [
    ("base64", [], b"hello", b"aGVsbG8=\n", 0),
    ("base64", [], b"", b"\n", 0),
    ("base64", [], b"\x00\xff\xfe\x01", b"AP/+AQ==\n", 0),
    ("base64", ["-d"], b"aGVsbG8=\n", b"hello", 0),
    ("base64", ["-d"], b"ab=c", b"", 1),
    ("hash", ["abc"], b"", hashlib.sha256(b"abc").hexdigest().encode() + b"  abc\n", 0),
    ("hash", [], b"hello\n", hashlib.sha256(b"hello\n").hexdigest().encode() + b"  -\n", 0),
    ("interp", [], b"let x = 3*(4+5)\nprint x - 2\n", b"25\n", 0),
    ("interp", [], b"print fib(20)\nprint gcd(84, 36)\nprint abs(-7)\n", b"6765\n12\n7\n", 0),
    ("interp", [], b"let a = -7\nprint a / 2\nprint a % 3\n", b"-3\n-1\n", 0),
    ("interp", [], b"print 1\nprint 1/0\n", b"1\n", 1),
    ("sort", [], b"pear\napple\nfig\n", b"apple\nfig\npear\n", 0),
    ("sort", ["-n"], b"10\n9\n-3\n100\n", b"-3\n9\n10\n100\n", 0),
    ("sort", ["-n", "-r"], b"2 b\n10 a\n2 a\n", b"10 a\n2 b\n2 a\n", 0),
    ("sort", ["-x"], b"a\n", b"", 2),
]


@pytest.mark.parametrize("name,args,stdin,stdout,code", CASES)
def test_example_runs(example_wasm, name, args, stdin, stdout, code):
    res = mewe("run", example_wasm(name), *args, stdin=stdin)
    assert (res.returncode, res.stdout) == (code, stdout), res.stderr


def test_base64_round_trips_binary(example_wasm):
    data = bytes(range(256)) * 7
    enc = mewe("run", example_wasm("base64"), stdin=data)
    assert enc.returncode == 0
    dec = mewe("run", example_wasm("base64"), "-d", stdin=enc.stdout)
    assert dec.stdout == data


@pytest.mark.parametrize("name", ["base64", "hash", "interp", "sort"])
def test_module_is_plain_wasi_with_names(example_wasm, name):
    module = parse_wasm(example_wasm(name).read_bytes())
    assert {imp[0] for imp in module.imports} == {"wasi_snapshot_preview1"}
    assert "_start" in {exp[0] for exp in module.exports}
    defined = range(module.imported_functions, module.imported_functions + len(module.bodies))
    assert all(i in module.function_names for i in defined)  # the name section names every function
    assert not any(s.startswith(".debug") for s in module.custom_sections)


def test_interp_functions_keep_their_names(example_wasm):
    names = set(parse_wasm(example_wasm("interp").read_bytes()).code_by_name())
    assert {"fib_rec", "parse_expr"} <= names


MODES = ["every:64", "request", "call"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["base64", "hash", "interp", "sort"])
def test_every_variant_of_every_called_function_gives_the_same_answers(name, mode, tmp_path):
    """Built with real passes and traced, each example answers all its cases under `pinned:K` for
    every K, and together those runs execute every variant of every function the cases call; and
    under the random and seeded policies. In every re-randomization mode; no cost bound, so
    that every candidate the passes make is run."""
    import mewe

    mv = mewe.MultivariantOptions(variants=3, seed=11, trace=True, max_cost=0, rerandomize=Rerandomize.parse(mode))
    result = mewe.build([EXAMPLES / f"{name}.c"], tmp_path / f"{name}.wasm", multivariant=mv)
    widths = {r.name: r.variants for r in result.manifest.functions if r.status == "dispatched"}
    assert max(widths.values()) == 4  # the original and 3 variants
    seen: set = set()
    for k in range(4):
        for case, (_, args, stdin, stdout, code) in enumerate(c for c in CASES if c[0] == name):
            (tmp_path / "in").write_bytes(stdin)
            trace: list = []
            status = mewe.run(result.output, args, stdin=tmp_path / "in", stdout=tmp_path / "out",
                              policy=f"pinned:{k}", trace=trace)
            assert (status, (tmp_path / "out").read_bytes()) == (code, stdout), (k, case)
            assert all(variant == k % widths[fn] for fn, variant in trace)
            seen |= set(trace)
    called = {fn for fn, _ in seen}
    assert called  # at least main is dispatched (the rest may be inlined into it)
    assert seen == {(fn, k) for fn in called for k in range(widths[fn])}
    for policy in ("random", "seeded:3"):
        for _, args, stdin, stdout, code in (c for c in CASES if c[0] == name):
            (tmp_path / "in").write_bytes(stdin)
            status = mewe.run(result.output, args, stdin=tmp_path / "in", stdout=tmp_path / "out", policy=policy)
            assert (status, (tmp_path / "out").read_bytes()) == (code, stdout), policy


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_bytes_in_every_mode(mode, tmp_path):
    import mewe

    mv = mewe.MultivariantOptions(variants=3, seed=5, cache=False, rerandomize=Rerandomize.parse(mode))
    outputs = []
    for k in range(2):  # the same file name: the module records it
        (tmp_path / str(k)).mkdir()
        outputs.append(mewe.build([EXAMPLES / "interp.c"], tmp_path / str(k) / "interp.wasm",
                                  multivariant=mv).output.read_bytes())
    assert outputs[0] == outputs[1]
