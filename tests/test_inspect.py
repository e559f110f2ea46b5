"""Preservation: `mewe inspect` at the wasm and Cranelift levels, and the build dropping
variants that codegen folded back into an earlier body."""

from __future__ import annotations

import dataclasses
import json
import platform

import pytest

import mewe
from conftest import EXAMPLES, mewe as cli, sink_variants
from mewe.inspect import preservation
from mewe.types import MultivariantOptions, Variant
from mewe.wasm import parse_wasm


@pytest.fixture(scope="module")
def interp_mv(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "interp.wasm"
    res = cli("build", EXAMPLES / "interp.c", "--variants", "4", "--seed", "2", "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def test_inspect_reports_both_levels(interp_mv):
    res = cli("inspect", "--json", interp_mv)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    manifest = json.loads(interp_mv.with_name("interp.manifest.json").read_text())
    variants = sum(f["variants"] - 1 for f in manifest["functions"] if f["status"] == "dispatched")
    assert data["rates"]["overall"]["variants"] == variants > 0
    # The build dropped what LLVM's codegen or Cranelift folded into an earlier body.
    assert data["preservation"] == 1.0
    assert data["native_preservation"] == (1.0 if platform.machine() in ("x86_64", "AMD64") else None)
    assert set(data["rates"]) - {"overall"} <= {name for f in manifest["functions"] for p in f["passes"] for name in p}
    overall = data["rates"]["overall"]
    table = cli("inspect", interp_mv)  # aligned text for a terminal: columns line up, no Markdown
    lines = table.stdout.decode().splitlines()
    assert table.returncode == 0 and "dispatched functions" in lines[0] and "|" not in table.stdout.decode()
    rows = lines[1:]
    assert rows[0].split()[:2] == ["pass", "variants"] and set(rows[1]) <= {"-", " "}
    last = rows[-1].split()
    assert last[0] == "overall" and last[1] == str(overall["variants"]) and last[2] == str(overall["wasm_distinct"])
    header_end = rows[0].index("variants") + len("variants")
    assert all(row[header_end - 1] != " " for row in rows[2:] if not set(row) <= {"-", " "})  # right-aligned counts
    markdown = cli("inspect", "--markdown", interp_mv).stdout.decode()
    assert f"| **overall** | {overall['variants']} |" in markdown


def test_inspect_sees_identical_code(tmp_path):
    """Bodies that differ only in IR the backend erases are caught at both levels."""
    source = EXAMPLES / "hash.c"
    sinks = sink_variants([source], 1)
    dead = {}
    for name, (v,) in sinks.items():  # dead arithmetic: distinct IR, identical code
        header, *body = v.ir.split("\n")
        body = [line for line in body if "mewe.sink" not in line]
        at = 1 if body[0].endswith(":") else 0
        dead[name] = [Variant(name, "\n".join([header, *body[:at], "  %mewe.dead = add i32 0, 1", *body[at:]])), v]
    opts = MultivariantOptions(variants=2)
    result = mewe.build([source], tmp_path / "h.wasm", multivariant=opts, variants=dead)
    # The dead-code clone is folded at build time; the volatile-store one stays and is distinct.
    for f in result.manifest.dispatched:
        assert (f.variants, f.folded) == (2, 1)
    report = preservation(result.output)
    assert all(b.wasm_distinct and b.native_distinct for b in report.variants())


def test_preservation_flags_duplicates_in_a_module(tmp_path):
    """Measured on a module whose variants were not filtered: duplicates count as not preserved."""
    from mewe.inspect import _distinct_flags

    assert _distinct_flags([b"a", b"b", b"a", b"c", b"b"]) == [True, True, False, True, False]


def test_inspect_rejects_plain_modules(tmp_path):
    plain = mewe.build([EXAMPLES / "hash.c"], tmp_path / "p.wasm").output
    res = cli("inspect", plain)
    assert res.returncode == 1 and "not a multivariant module" in res.stderr


def test_inspect_names_a_file_that_is_not_wasm(tmp_path):
    (tmp_path / "notwasm.json").write_text("{}\n")
    res = cli("inspect", tmp_path / "notwasm.json")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"mewe: error: {tmp_path / 'notwasm.json'}: not a wasm module (bad magic or version)"]


SWITCH_FIRST_WAT = """
(module
  (func $%s (export "%s") (param i32) (result i32)
    (block $out
      (block $c5 (block $c4 (block $c3 (block $c2 (block $c1 (block $c0
        (br_table $c0 $c1 $c2 $c3 $c4 $c5 $out (local.get 0)))
        (return (i32.const 11)))
        (return (i32.const 22)))
        (return (i32.const 33)))
        (return (i32.const 44)))
        (return (i32.const 55)))
        (return (i32.const 66)))
    (i32.add (i32.mul (local.get 0) (i32.const %d)) (i32.const %d))))
"""


def test_machine_code_is_decoded_past_a_jump_table():
    """Cranelift puts a br_table's jump table among the instructions: two functions that share
    a switch and differ after it (like bodies behind an inlined dispatch) must not look alike."""
    import wasmtime

    from mewe.inspect import native_code

    codes = [native_code(wasmtime.wat2wasm(SWITCH_FIRST_WAT % ("f", "f", m, c)))["f"] for m, c in ((3, 1), (5, 7))]
    assert codes[0] != codes[1]
    assert all(any("0x42" in line for line in code) for code in codes)  # the last case (66) comes after the table


def test_disassembly_goes_on_past_bytes_that_are_no_instruction():
    from mewe.inspect import disassemble

    lines = disassemble(bytes([0x90, 0x9A, 0x90, 0xC3]), 0x1000, hex)  # 0x9a is invalid in 64-bit mode
    assert lines == ("nop ", ".byte 0x9a", "nop ", "ret ")
