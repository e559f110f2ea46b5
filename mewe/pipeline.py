"""The build pipeline: frontends -> passes -> linker, one call per stage.

`build` is what `mewe build` runs; researchers call it directly.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mewe import executors, frontends, linker, runtime
from mewe.component import check_emit, componentize
from mewe.errors import MeweError
from mewe.fsutil import write_atomic, write_outputs
from mewe.toolchain import Toolchain, find_toolchain
from mewe.types import MAX_VARIANTS, SELF_CALLS, BuildResult, CompileOptions, FunctionReport, IRModule, Manifest, MultivariantOptions, Variant
from mewe.wasm import DISPATCH_SECTION, add_custom_section, parse_wasm

OVERGENERATE = 2
assert OVERGENERATE * MAX_VARIANTS < linker.MAX_BODIES  # every candidate has a body number
# How a build reports progress: progress(stage, done, total), total 0 for a stage not counted.
Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    pass


CALL_COST = 8  # what a call costs besides its body, in IR instructions: a tiny body may grow a little
NO_MAIN = b"undefined_weak:main"  # wasm-ld's name for the stub of a weak main nobody defined
# Candidates over the cost bound that still reach codegen: the cheapest, in case all within it
# fold (if those fold too, the rest are compared in a codegen of their own). Most of a function's candidates are over
# the bound (a stack of passes costs), so this halves what the first codegen compiles.
SPARES = 3


def _lower_all(sources: list[Path], options: CompileOptions, toolchain: Toolchain, verbose: bool) -> list[IRModule]:
    """Lower every source; clang runs in parallel (subprocesses), llvmlite parsing stays serial."""
    c_files = [s for s in sources if s.suffix.lower() in frontends.C_SUFFIXES]
    with ThreadPoolExecutor(max_workers=max(1, min(len(c_files), os.cpu_count() or 1))) as pool:
        compiled = {s: pool.submit(frontends.compile_c, s, options, toolchain, verbose=verbose) for s in c_files}
    modules = []
    for src in sources:  # errors surface in source order: the first bad file is reported
        if src in compiled:
            modules.append(frontends.load_ir(src.name, compiled[src].result(), origin=str(src)))
        else:
            modules.append(frontends.load_source(src, options, toolchain, verbose=verbose))
    return modules


def manifest_path(output: Path) -> Path:
    """Where a build's manifest goes: `service.wasm` -> `service.manifest.json`."""
    return output.with_name(output.stem + ".manifest.json")


def _codegen(program: IRModule, options: CompileOptions, tail_calls: bool, name: str, toolchain: Toolchain,
             verbose: bool, jobs: int = 1) -> tuple[bytes | None, bytes]:
    """The wasm32 object for `program` and the linked module. A big module is code-generated in
    parts, `jobs` at a time (then there is no one object: None)."""
    with tempfile.TemporaryDirectory(prefix="mewe-build-") as tmp:
        try:
            parts = linker.split_module(program)
            if parts:
                paths = []
                for k, obj in enumerate(linker.emit_objects(parts, options.opt_level, tail_calls=tail_calls, jobs=jobs,
                                                                   toolchain=toolchain)):
                    paths.append(Path(tmp) / f"program.{k + 1}.o")  # fixed names: they are recorded in the output
                    paths[-1].write_bytes(obj)
                return None, linker.wasm_ld(paths, name, toolchain, verbose=verbose)
        except (MeweError, RuntimeError):
            pass  # a crash, or a name a part made global clashing with libc's: in one piece, below
        obj = linker.emit_object(program, options.opt_level, tail_calls=tail_calls, toolchain=toolchain)
        obj_path = Path(tmp) / "program.o"  # a fixed name: it is recorded in the output
        obj_path.write_bytes(obj)
        return obj, linker.wasm_ld([obj_path], name, toolchain, verbose=verbose)


def _code_levels(obj: bytes, wasm: bytes | None) -> list[dict]:
    """Function name -> code, at each level variants are compared: the linked module's wasm and
    Cranelift's machine code, or for a translation unit (no `wasm`) its object's wasm code."""
    if wasm is None:
        return [parse_wasm(obj).code_by_name()]
    from mewe.inspect import native_code

    bodies = native_code(wasm, wanted=lambda name: name.startswith("mewe."))  # the dispatched bodies only
    return [level for level in (parse_wasm(wasm).code_by_name(), bodies) if level]


def _choose(levels: list[dict], reports: list[FunctionReport], used: dict[str, list[Variant]],
            mv: MultivariantOptions) -> dict[str, list[Variant]]:
    """Per function, the variants to keep: those whose code differs from the original's and
    every earlier survivor's at every level, and whose cost estimate (the linker's, in
    `reports`) is within `mv.max_cost` times the original's, counting CALL_COST for the call
    itself (if none is, the cheapest distinct one); the `mv.variants` cheapest of those, kept in
    candidate order. Without a bound, or for a function a profile found cold (not in `mv.hot`),
    the first `mv.variants` distinct ones."""
    chosen = {}
    body_costs = {r.name: r.costs for r in reports}
    for name, variants in used.items():
        seen = [{level.get(linker.body_name(name, 0))} for level in levels]
        distinct = []
        for k, variant in enumerate(variants, 1):
            codes = [level.get(linker.body_name(name, k)) for level in levels]
            if all(code not in s for code, s in zip(codes, seen)):
                for code, s in zip(codes, seen):
                    s.add(code)
                distinct.append((k, variant))
        cost = {k: body_costs[name][k] for k in [0, *(k for k, _ in distinct)]}
        if _bounded(name, mv):
            bound = _bound(cost[0], mv)
            by_cost = sorted(distinct, key=lambda kv: (cost[kv[0]], kv[0]))
            kept = sorted([(k, v) for k, v in by_cost if cost[k] <= bound][:mv.variants] or by_cost[:1])
        else:
            kept = distinct[:mv.variants]
        chosen[name] = [v for _, v in kept]
    return chosen


def _twins(code: Mapping[str, bytes], survivors: Mapping[str, Sequence[Variant]]) -> dict[str, set[int]]:
    """Per function, the numbers of the bodies whose `code` equals an earlier body's."""
    out = {}
    for f, kept in survivors.items():
        seen, twins = {code.get(linker.body_name(f, 0))}, set()
        for k in range(1, len(kept) + 1):
            body = code.get(linker.body_name(f, k))
            if body is not None and body in seen:
                twins.add(k)
            seen.add(body)
        if twins:
            out[f] = twins
    return out


def _bounded(name: str, mv: MultivariantOptions) -> bool:
    return bool(mv.max_cost) and (mv.hot is None or name in mv.hot)


def _bound(original_cost: int, mv: MultivariantOptions) -> float:
    return (original_cost + CALL_COST) * mv.max_cost - CALL_COST


def _affordable(variants: Mapping[str, Sequence[Variant]],
                mv: MultivariantOptions) -> tuple[dict[str, list[Variant]], dict[str, int]]:
    """`variants` without the candidates `_choose` is least likely to keep, so that codegen need
    not compile them; also how many each function lost. Under a cost bound: those over it but
    for the SPARES cheapest (`_choose` keeps one over the bound only when every candidate within
    it folds, and then the cheapest distinct one; the spares stand in for it). Without one: all
    but the first `mv.variants + SPARES` (`_choose` keeps the first distinct ones). Costs come
    with the variants (see Variant.cost); a bounded function without them keeps all. Should
    too many of those compiled fold, the rest are compared in a codegen of their own."""
    out, cut = {}, {}
    for name, vs in variants.items():
        valid = [k for k, v in enumerate(vs) if not v.error]  # invalid ones stay: the linker reports them
        if not _bounded(name, mv):
            dropped = set(valid[mv.variants + SPARES:])
        elif valid and all(vs[k].cost is not None and vs[k].original_cost is not None for k in valid):
            bound = _bound(vs[valid[0]].original_cost, mv)
            over = sorted((vs[k].cost, k) for k in valid if vs[k].cost > bound)
            dropped = {k for _, k in over[SPARES:]}
        else:
            dropped = set()
        out[name] = [v for k, v in enumerate(vs) if k not in dropped]
        if dropped:
            cut[name] = len(dropped)
    return out, cut


def _wanting(survivors: Mapping[str, Sequence[Variant]], mv: MultivariantOptions) -> list[str]:
    """Functions that would keep more variants if more candidates were compiled: under a cost
    bound those left with none, without one those left with fewer than `mv.variants`."""
    return [f for f, kept in survivors.items() if not kept or (not _bounded(f, mv) and len(kept) < mv.variants)]


def discriminator(mv: MultivariantOptions, toolchain: Toolchain, *, fast_path_only: bool = False,
                  verbose: bool = False) -> IRModule:
    """The runtime's discriminator as IR: all of it, or only the fast path a translation unit inlines."""
    from mewe.passes import cache

    defines = runtime.discriminator_defines(mv) + (("MEWE_FAST_PATH_ONLY",) if fast_path_only else ())
    sources = tuple(p.read_text() for p in sorted(runtime.DISCRIMINATOR.parent.glob("*.c")))
    key = cache.digest("discriminator", sources, defines, toolchain.fingerprint())
    stored = cache.load("discriminator", key, root="runtime")  # a build per mewe-cc call: remembered, it costs no clang run
    if isinstance(stored, str):
        bitcode = base64.b64decode(stored)
    else:
        bitcode = frontends.compile_c(runtime.DISCRIMINATOR, CompileOptions(defines=defines), toolchain, verbose=verbose)
        cache.store("discriminator", key, base64.b64encode(bitcode).decode(), root="runtime")
    return frontends.load_ir("discriminator", bitcode, origin=str(runtime.DISCRIMINATOR))


def make_variants(program: IRModule, mv: MultivariantOptions, progress: Progress | None = None) -> dict[str, list[Variant]]:
    """Candidate variants of every function of `program` the linker can dispatch (see
    `linker.unsupported`): twice as many as wanted, since codegen folds some back into earlier
    bodies."""
    from mewe import passes

    skip = linker.unsupported(program, mv)
    return passes.diversify(program, variants=OVERGENERATE * mv.variants, seed=mv.seed, passes=mv.passes,
                            stack=mv.stack, include=mv.include, exclude=mv.exclude, jobs=mv.jobs,
                            executor=mv.executor, cache=mv.cache, max_size=mv.max_size, invalid=True,
                            skip=frozenset(skip), verify_each=mv.verify_each, fallback=mv.fallback,
                            progress=progress)


def link_multivariant(program: IRModule, options: CompileOptions, mv: MultivariantOptions,
                  variants: Mapping[str, Sequence[Variant]] | None, name: str, toolchain: Toolchain,
                  verbose: bool, unit: str | None = None,
                  progress: Progress = _quiet) -> tuple[IRModule, bytes, bytes | None, list[FunctionReport]]:
    """Variants, dispatchers and the discriminator linked in. Candidates are code-generated in a
    module made to compare them (see `linker.link_variants`); those that codegen (LLVM's, or
    Cranelift's) folded into an earlier body are dropped, and the survivors linked into the
    final module. Its wasm is checked again, and a body it folds is dropped too.

    For a translation unit (`unit`), the result is an object only (no linked module, so `None`)
    and variants are compared by their code in the object."""
    if variants is None:
        variants = make_variants(program, mv, progress)
    candidates = variants
    variants, unaffordable = _affordable(candidates, mv)
    rt = discriminator(mv, toolchain, fast_path_only=unit is not None, verbose=verbose)
    progress("linking and generating code", 0, 0)

    # Rounds that only compare candidates build a module made for it: every body as in the
    # final module, but each dispatcher a stub (see `linker.link_variants`); the survivors are
    # linked into the final module after. (A module with dispatch out of line, cheaper still,
    # compared bodies in another form: codegen undid `schedule`'s changes there, not beside an
    # inlined switch, and check-pass found none of its variants kept.)
    def generate(chosen: Mapping[str, Sequence[Variant]], compare: bool = True):
        module, reports, used = linker.link_variants(program, chosen, rt, mv, unit=unit, compare=compare)
        if unit is not None:
            obj = linker.emit_object(module, options.opt_level, tail_calls=mv.tail_calls, toolchain=toolchain)
            return module, obj, None, reports, used
        return (module, *_codegen(module, options, mv.tail_calls, name, toolchain, verbose, mv.jobs), reports, used)

    crashed: dict[str, str] = {}
    try:
        module, obj, wasm, reports, used = generate(variants)
    except linker.CodegenCrash as exc:
        variants, crashed = _without_codegen_crashes(program, variants, rt, mv, options, unit, str(exc), toolchain)
        module, obj, wasm, reports, used = generate(variants)
    progress("comparing variants' machine code", 0, 0)
    survivors = _choose(_code_levels(obj, wasm), reports, used, mv)
    folded = {f: len(used[f]) - len(survivors[f]) for f in used}  # folded, or surplus
    wanting = [f for f in _wanting(survivors, mv) if unaffordable.get(f)]
    if wanting:  # their survivors and the candidates held back, compared the same way (the rest plain)
        progress("comparing the candidates held back", 0, 0)
        more = {f: [*survivors[f], *(v for v in candidates[f] if not v.error and v not in variants[f])] for f in wanting}
        try:
            _, more_obj, more_wasm, more_reports, more_used = generate(more)
            topped = _choose(_code_levels(more_obj, more_wasm), more_reports, more_used, mv)
        except MeweError:  # a crash among them: they keep what they had
            topped = {}
        for f, kept in topped.items():
            if kept:
                folded[f] += sum(v not in kept for v in survivors[f])  # folded in this codegen after all
                unaffordable[f] -= sum(v not in survivors[f] for v in kept)
                survivors[f] = kept
    first = reports
    code = None
    while code is None:
        progress("linking the variants kept", 0, 0)
        try:
            module, obj, wasm, second, _ = generate(survivors, compare=False)
        except linker.CodegenCrash as exc:  # the final form crashes where the compared one did not
            kept, lost = _without_codegen_crashes(program, survivors, rt, mv, options, unit, str(exc), toolchain,
                                                  compare=False)
            crashed.update(lost)
            survivors = {f: list(kept.get(f, [])) for f in survivors}
            module, obj, wasm, second, _ = generate(survivors, compare=False)
        by_name = {r.name: r for r in second}
        for r in first:  # keep the first link's counts of IR duplicates, add the folded ones
            by_name[r.name].drops = r.drops
            if r.status == "skipped":  # and its reasons: a dispatcher that failed to verify, ...
                by_name[r.name].reason = r.reason
            elif r.name in folded:
                by_name[r.name].dropped, by_name[r.name].folded = r.dropped, folded[r.name]
                if by_name[r.name].status == "skipped":
                    by_name[r.name].reason = "no variant survived codegen"
        reports = second
        code = parse_wasm(wasm if wasm is not None else obj).code_by_name()
        # The final module's wasm, checked too (a body compared in another form can fold in it).
        for f, twins in _twins(code, survivors).items():
            survivors[f] = [v for k, v in enumerate(survivors[f], 1) if k not in twins]
            folded[f] += len(twins)
            code = None
    for r in reports:
        r.folded += unaffordable.get(r.name, 0)  # surplus too, dropped before codegen
        if r.name in crashed:
            r.reason = crashed[r.name]
        r.unit = unit or ""
        if r.status == "dispatched":
            r.code_sizes = [len(code.get(linker.body_name(r.name, k), b"")) for k in range(r.variants)]
    return module, obj, wasm, reports


def _without_codegen_crashes(program: IRModule, variants: Mapping[str, Sequence[Variant]], rt: IRModule,
                             mv: MultivariantOptions, options: CompileOptions, unit: str | None,
                             first: str, toolchain: Toolchain,
                             compare: bool = True) -> tuple[dict[str, Sequence[Variant]], dict[str, str]]:
    """`variants` without those of functions whose variants make LLVM's code generator crash
    (found by bisection), and why each such function lost them. Crashes without variants are
    the build's error."""
    chosen = {f: vs for f, vs in variants.items() if vs}
    crashed: dict[str, str] = {}

    def crash(subset: Mapping[str, Sequence[Variant]]) -> str | None:
        module, _, _ = linker.link_variants(program, subset, rt, mv, unit=unit, compare=compare)
        try:
            linker.emit_object(module, options.opt_level, tail_calls=mv.tail_calls, toolchain=toolchain)
        except linker.CodegenCrash as exc:
            return str(exc).rsplit("crashed: ", 1)[-1]
        return None

    message: str | None = first.rsplit("crashed: ", 1)[-1]  # the crash that brought us here
    while chosen and message:
        suspects = sorted(chosen)
        while len(suspects) > 1:  # halve towards one function whose variants crash on their own
            half = suspects[: len(suspects) // 2]
            if crash({f: chosen[f] for f in half}):
                suspects = half
            elif crash({f: chosen[f] for f in suspects[len(suspects) // 2:]}):
                suspects = suspects[len(suspects) // 2:]
            else:
                break  # only together: drop them all
        for f in suspects:
            del chosen[f]
            crashed[f] = f"its variants crash LLVM's code generator: {message}"
        message = crash(chosen) if chosen else None
    return chosen, crashed


def check_options(multivariant: MultivariantOptions) -> None:
    """Raise MeweError for multivariant settings no build can follow."""
    if multivariant.variants < 0:
        raise MeweError("--variants must be 0 or more")
    if multivariant.dispatch not in ("switch", "table"):
        raise MeweError(f"invalid dispatch form '{multivariant.dispatch}' (use switch or table)")
    if multivariant.reseed < 1:
        raise MeweError("--reseed must be at least 1")
    if multivariant.variants > MAX_VARIANTS:
        raise MeweError(f"--variants must be at most {MAX_VARIANTS}")
    if not 0 <= multivariant.max_cost < float("inf"):
        raise MeweError("--max-cost must be 0 (any) or a positive ratio")
    if multivariant.merge_bodies < 0:
        raise MeweError("--merge-bodies must be 0 or more")
    if multivariant.self_calls not in SELF_CALLS:
        raise MeweError(f"invalid --self-calls '{multivariant.self_calls}' (use dispatch or stay)")
    if multivariant.max_size < 1:
        raise MeweError("--max-size must be at least 1")
    if multivariant.jobs < 1:
        raise MeweError("--jobs must be at least 1")
    executors.parse(multivariant.executor)


def add_dispatch_table(wasm: bytes, manifest: Manifest) -> bytes:
    """`wasm` with the section hosts read to name trace entries: [function, variants, id] per dispatcher."""
    table = [[r.name, r.variants, r.dispatch_id] for r in manifest.dispatched]
    return add_custom_section(wasm, DISPATCH_SECTION, json.dumps(table, separators=(",", ":")).encode())


def build(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    options: CompileOptions = CompileOptions(),
    multivariant: MultivariantOptions = MultivariantOptions(),
    variants: Mapping[str, Sequence[Variant]] | None = None,
    cc: str | None = None,
    keep_temps: bool = False,
    verbose: bool = False,
    progress: Progress | None = None,
    emit: str = "module",
) -> BuildResult:
    """Compile `sources` (.c, .ll, .bc) into the WASI command module `output` (with
    `emit="component"`, a WASI 0.2 `wasi:cli/command` component; with `emit="http"`, a
    `wasi:http/proxy` component; see mewe.component).

    With `multivariant.variants > 0`, passes make that many variants of each function, the
    linker puts a dispatcher in front of them and links the discriminator in, and a manifest
    is written beside the output (`manifest_path`). `variants` (function name -> Variants)
    replaces the passes with variants made elsewhere. Outputs are written atomically: on any
    error nothing is left at `output`. With `keep_temps`, the final bitcode and object are
    kept beside the output. `progress(stage, done, total)` hears the build's stages as they
    start, and the functions diversified (done of total; total 0 for stages not counted).
    """
    progress = progress or _quiet
    if not sources:
        raise MeweError("no input files")
    check_options(multivariant)
    check_emit(emit)
    paths = [Path(s) for s in sources]
    for p in paths:  # report missing inputs before running any tool
        if not p.exists():
            raise MeweError(f"{p}: no such file")
        if p.is_dir():
            raise MeweError(f"{p}: is a directory, not a source file")
    toolchain = find_toolchain(cc)
    progress("compiling", 0, len(paths))
    modules = _lower_all(paths, options, toolchain, verbose)
    out = Path(output)
    program = linker.link_modules(modules)
    manifest = None
    if multivariant.variants == 0:
        progress("generating code", 0, 0)
        obj, wasm = _codegen(program, options, False, out.name, toolchain, verbose, multivariant.jobs)
    else:
        program, obj, wasm, reports = link_multivariant(program, options, multivariant, variants, out.name, toolchain,
                                                        verbose, progress=progress)
        manifest = Manifest(out.name, multivariant.variants, multivariant.seed, str(multivariant.policy),
                            multivariant.dispatch, str(multivariant.rerandomize), multivariant.tail_calls, multivariant.trace, reports)
        wasm = add_dispatch_table(wasm, manifest)
    warnings = []
    if emit != "http" and NO_MAIN in wasm:  # wasi-libc's _start calls main; the name section names the stub
        warnings.append("the program defines no main function, so running it traps at once "
                        "(a library is compiled with mewe-cc -c and archived with mewe-ar)")
    if emit != "module":
        progress("making a component", 0, 0)
        wasm = componentize(wasm, out.name, emit)
    write_outputs([(out, wasm, 0o755)] + ([(manifest_path(out), manifest.to_json().encode(), 0o644)] if manifest else []))

    temps: list[Path] = []
    if keep_temps:
        if obj is None:  # generated in parts: the one object a user can inspect, made for them
            obj = linker.emit_object(program, options.opt_level, tail_calls=multivariant.variants > 0 and multivariant.tail_calls,
                                     toolchain=toolchain)
        for suffix, data in ((".bc", program.bitcode), (".o", obj)):
            keep = out.with_suffix(suffix)
            write_atomic(keep, data)
            temps.append(keep)
    return BuildResult(out, len(wasm), tuple(temps), manifest, manifest_path(out) if manifest else None, tuple(warnings))


def cargo_build(
    cargo_args: Sequence[str] = (),
    output: str | os.PathLike | None = None,
    *,
    options: CompileOptions = CompileOptions(),
    multivariant: MultivariantOptions = MultivariantOptions(),
    cc: str | None = None,
    keep_temps: bool = False,
    verbose: bool = False,
    emit: str = "module",
) -> list[BuildResult]:
    """Build the binary targets of a cargo project as WASI command modules, one `build` each.

    `cargo_args` are cargo's own (`--manifest-path`, `-p`, `--bin`, `--features`, ...); cargo
    runs with the release profile set for one whole-program module (fat LTO, one codegen unit,
    panic=abort) at `options.opt_level`. Each binary NAME goes to `<target-dir>/mewe/NAME.wasm`,
    or to `output` when exactly one is selected; rustc's own build stays where cargo puts it.
    """
    check_options(multivariant)
    check_emit(emit)
    binaries = frontends.rust.cargo_bitcode(list(cargo_args), opt_level=options.opt_level, single=output is not None,
                                            verbose=verbose)
    return [build([b.bitcode], output if output is not None else b.mewe_dir / f"{b.name}.wasm", options=options,
                  multivariant=multivariant, cc=cc, keep_temps=keep_temps, verbose=verbose, emit=emit) for b in binaries]
