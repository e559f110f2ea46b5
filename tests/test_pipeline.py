"""The build pipeline's options and inputs: several sources, .ll/.bc inputs, -I/-D/-O, temps,
determinism, and the Python API."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import mewe
from conftest import EXAMPLES, mewe as cli, sink_variants

MAIN_C = """
#include <stdio.h>
#include "answer.h"
int twice(int);
int main(void) { printf("%d %s\\n", twice(ANSWER), GREETING); return 0; }
"""
LIB_C = "int twice(int x) { return 2 * x; }\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "answer.h").write_text("#define ANSWER 21\n")
    (tmp_path / "main.c").write_text(MAIN_C)
    (tmp_path / "lib.c").write_text(LIB_C)
    return tmp_path


def test_two_sources_with_include_and_define(project):
    res = cli("build", "main.c", "lib.c", "-Iinc", "-DGREETING=\"hi\"", "-o", "app.wasm", cwd=project)
    assert res.returncode == 0, res.stderr
    run = cli("run", "app.wasm", cwd=project)
    assert (run.returncode, run.stdout) == (0, b"42 hi\n")


def test_undefine_and_opt_levels(project):
    for level in ("0", "1", "3", "s", "z"):
        res = cli("build", "main.c", "lib.c", "-I", "inc", "-DGREETING=\"x\"", f"-O{level}", "-o", f"o{level}.wasm", cwd=project)
        assert res.returncode == 0, res.stderr
        assert cli("run", f"o{level}.wasm", cwd=project).stdout == b"42 x\n"
    res = cli("build", "main.c", "lib.c", "-Iinc", "-DGREETING=\"x\"", "-UGREETING", "-o", "u.wasm", cwd=project)
    assert res.returncode != 0 and "GREETING" in res.stderr


def test_keep_temps_and_ir_inputs(project):
    res = cli("build", "main.c", "lib.c", "-Iinc", "-DGREETING=\"bc\"", "--keep-temps", "-o", "app.wasm", cwd=project)
    assert res.returncode == 0, res.stderr
    assert (project / "app.bc").read_bytes()[:2] == b"BC"
    assert (project / "app.o").read_bytes()[:4] == b"\0asm"
    # The kept bitcode is a valid input on its own.
    assert cli("build", "app.bc", "-o", "from_bc.wasm", cwd=project).returncode == 0
    assert cli("run", "from_bc.wasm", cwd=project).stdout == b"42 bc\n"
    # Textual IR links with C.
    (project / "lib.ll").write_text(_lib_ll(project))
    res = cli("build", "main.c", "lib.ll", "-Iinc", "-DGREETING=\"ll\"", "-o", "mixed.wasm", cwd=project)
    assert res.returncode == 0, res.stderr
    assert cli("run", "mixed.wasm", cwd=project).stdout == b"42 ll\n"


def _lib_ll(project: Path) -> str:
    """lib.c lowered to textual IR by the real frontend."""
    import llvmlite.binding as llvm

    from mewe.frontends import compile_c
    from mewe.toolchain import find_toolchain

    bitcode = compile_c(project / "lib.c", mewe.CompileOptions(), find_toolchain())
    return str(llvm.parse_bitcode(bitcode))


def test_same_inputs_give_identical_output(tmp_path):
    a, b = tmp_path / "a" / "h.wasm", tmp_path / "b" / "h.wasm"
    for out in (a, b):
        out.parent.mkdir()
        assert cli("build", EXAMPLES / "hash.c", "-o", out).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_default_output_name(tmp_path):
    assert cli("build", EXAMPLES / "hash.c", cwd=tmp_path).returncode == 0
    assert (tmp_path / "hash.wasm").is_file()


def test_python_api(tmp_path, capfd):
    result = mewe.build([EXAMPLES / "hash.c"], tmp_path / "h.wasm", options=mewe.CompileOptions(opt_level="1"))
    assert result.output == tmp_path / "h.wasm" and result.size == result.output.stat().st_size
    stdout = tmp_path / "out.txt"
    assert mewe.run(result.output, ["abc"], stdout=stdout) == 0
    assert stdout.read_text().startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_verbose_prints_commands(tmp_path):
    res = cli("build", "-v", EXAMPLES / "hash.c", "-o", tmp_path / "h.wasm")
    assert res.returncode == 0
    assert "-emit-llvm" in res.stderr and "wrote" in res.stderr


def test_modules_and_contexts_collected_together_do_not_crash():
    """A module and its fresh context freed in one garbage cycle, in either order."""
    import gc

    from mewe.llvmir import new_context, parse_module

    for _ in range(200):  # with llvmlite's own contexts this segfaults
        context = new_context()
        mod = parse_module("define i32 @f(i32 %x) {\n  %y = add i32 %x, 1\n  ret i32 %y\n}\n", context=context)
        holder = {"module": mod, "context": context}
        holder["self"] = mod._cycle = context._cycle = holder
        del mod, context, holder
    gc.collect()


def test_candidates_over_the_cost_bound_skip_codegen_but_for_the_cheapest_spares():
    from mewe import pipeline
    from mewe.types import MultivariantOptions, Variant

    mv = MultivariantOptions(variants=2, max_cost=1.25)  # original cost 10: the bound is 14.5
    def made(*costs):
        return [Variant("f", f"v{k}", ("p",), cost=c, original_cost=10) for k, c in enumerate(costs)]

    assert pipeline.SPARES == 3
    many = made(30, 11, 12, 40, 13, 14, 20, 50, 25, 60)  # 4 within; the 3 cheapest over it stay as spares
    kept, cut = pipeline._affordable({"f": many}, mv)
    assert [v.cost for v in kept["f"]] == [30, 11, 12, 13, 14, 20, 25] and cut == {"f": 3}
    few = made(30, 11, 40, 50, 60, 15)  # if the one within folds, `_choose` keeps the cheapest distinct one over
    kept, cut = pipeline._affordable({"f": few}, mv)
    assert [v.cost for v in kept["f"]] == [30, 11, 40, 15] and cut == {"f": 2}
    invalid = [dataclasses.replace(v, error="bad") for v in made(90, 91)]  # reported as drops: kept
    assert pipeline._affordable({"f": few[:4] + invalid}, mv)[0]["f"][-2:] == invalid
    unknown = [Variant("f", "v", ("p",))] * 8  # costs not known: nothing is cut
    assert pipeline._affordable({"f": unknown}, mv)[1] == {}
    kept, cut = pipeline._affordable({"f": many}, MultivariantOptions(variants=2, max_cost=0))  # no bound: the first ones
    assert kept["f"] == many[:5] and cut == {"f": 5}


FOLDS_C = """
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int step(int x) { return x * 3 + 1; }
int main(int argc, char **argv) { printf("%d\\n", step(argc > 1 ? atoi(argv[1]) : 4)); return 0; }
"""


def test_when_the_candidates_compiled_first_fold_the_rest_are_tried(tmp_path):
    """`_affordable` compiles the first variants + SPARES candidates; if those all fold (here:
    dead instructions codegen drops), the candidates it held back are compared on their own
    and the distinct ones kept."""
    from mewe import pipeline
    from mewe.types import MultivariantOptions, Variant

    source = tmp_path / "folds.c"
    source.write_text(FOLDS_C)
    sinks = sink_variants([source], 2, only={"step"})["step"]
    header, *body = sinks[0].ir.replace("  %mewe.sink = alloca i32, align 4\n  store volatile i32 1, ptr %mewe.sink, align 4\n", "").split("\n")
    dead = [Variant("step", "\n".join([header, body[0], f"  %mewe.dead = add i32 0, {k}", *body[1:]]), ("dead",))
            for k in range(2 + pipeline.SPARES)]
    mv = MultivariantOptions(variants=2, max_cost=0)
    result = mewe.build([source], tmp_path / "folds.wasm", multivariant=mv, variants={"step": dead + sinks})
    step = next(f for f in result.manifest.functions if f.name == "step")
    assert step.status == "dispatched" and step.variants == 3 and step.passes[1:] == [["sink"], ["sink"]]
    assert step.folded == len(dead)
    for k in range(3):
        status = mewe.run(result.output, ["5"], stdout=tmp_path / "out", policy=f"pinned:{k}")
        assert status == 0 and (tmp_path / "out").read_text() == "16\n"


def test_bodies_the_final_module_folds_are_dropped_too(tmp_path, monkeypatch):
    """Candidates are compared with dispatch out of line; the final module (dispatch inline) is
    checked again, and a body whose wasm equals an earlier one's is dropped. Here the
    comparison round is made to see every candidate as distinct, so only that check can find
    the dead-code ones."""
    from mewe import pipeline
    from mewe.types import MultivariantOptions, Variant
    from mewe.wasm import parse_wasm

    source = tmp_path / "folds.c"
    source.write_text(FOLDS_C)
    sinks = sink_variants([source], 2, only={"step"})["step"]
    header, *body = sinks[0].ir.replace("  %mewe.sink = alloca i32, align 4\n  store volatile i32 1, ptr %mewe.sink, align 4\n", "").split("\n")
    dead = [Variant("step", "\n".join([header, body[0], f"  %mewe.dead = add i32 0, {k}", *body[1:]]), ("dead",))
            for k in range(5)]
    monkeypatch.setattr(pipeline, "_code_levels", lambda obj, wasm: [])  # no level: every candidate differs
    mv = MultivariantOptions(variants=4, max_cost=0)
    result = mewe.build([source], tmp_path / "folds.wasm", multivariant=mv, variants={"step": sinks + dead})
    step = next(f for f in result.manifest.functions if f.name == "step")
    assert step.status == "dispatched" and step.variants == 3 and step.passes[1:] == [["sink"], ["sink"]]
    assert step.folded == len(dead)  # 3 surplus, 2 folded in the final module
    code = parse_wasm(result.output.read_bytes()).code_by_name()
    assert len({code[f"mewe.{k}.step"] for k in range(3)}) == 3
    for k in range(3):
        status = mewe.run(result.output, ["5"], stdout=tmp_path / "out", policy=f"pinned:{k}")
        assert status == 0 and (tmp_path / "out").read_text() == "16\n"


def test_a_dispatcher_that_fails_to_verify_is_reported_with_the_reason(tmp_path, monkeypatch):
    """A function whose rewritten form does not verify keeps its one body, and the manifest says
    why, also after the second link (when other functions lost folded variants)."""
    from mewe.linker import multivariant

    real = multivariant._dispatcher

    def broken(plan, mt, options, **kw):  # an undefined value in the dispatcher of `sha256_final` only
        lines, extra = real(plan, mt, options, **kw)
        if plan.definition.header.name == "sha256_final":
            lines.insert(2, "  %mewe.bad = add i32 %mewe.undefined, 1")
        return lines, extra

    monkeypatch.setattr(multivariant, "_dispatcher", broken)
    result = mewe.build([EXAMPLES / "hash.c"], tmp_path / "h.wasm", multivariant=mewe.MultivariantOptions(variants=3))
    reports = {f.name: f for f in result.manifest.functions}
    assert reports["sha256_final"].status == "skipped"
    assert reports["sha256_final"].reason.startswith("rewrite failed:") and "mewe.undefined" in reports["sha256_final"].reason
    assert sum(f.status == "dispatched" for f in reports.values()) >= 2
    stdout = tmp_path / "out.txt"
    assert mewe.run(result.output, ["abc"], stdout=stdout) == 0
    assert stdout.read_text().startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
