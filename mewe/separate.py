"""Separate compilation, what `mewe-cc` runs: one translation unit at a time, then a link.

`compile_unit` diversifies one source into a wasm object: its functions become dispatchers
over variants, and the discriminator's fast path is inlined into them. The object carries a
`mewe.units` custom section (one JSON line: the unit's function reports); wasm-ld concatenates
these, so `link` finds every linked unit's report in its output. `link` adds the runtime
archive (the discriminator's state and slow path, and tracing; members are pulled in only by
units that need them), turns the unit reports into the dispatch table and a manifest, and
writes the module atomically.

Bitcode objects on the link line (`mewe-cc -c -flto`) are whole-program input: `link` merges
them, diversifies the result as one unit and links that object in their place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import llvmlite.binding as llvm

from mewe import frontends, linker, runtime
from mewe.component import check_emit, componentize
from mewe.errors import MeweError
from mewe.fsutil import atomic_output, cache_dir, write_atomic, write_outputs
from mewe.llvmir import parse_module
from mewe.pipeline import add_dispatch_table, check_options, link_multivariant, manifest_path
from mewe.toolchain import Toolchain, archiver, find_toolchain
from mewe.types import BuildResult, CompileOptions, FunctionReport, IRModule, Manifest, MultivariantOptions
from mewe.wasm import add_custom_section, custom_section, parse_wasm, strip_custom_sections

UNITS_SECTION = "mewe.units"
EMIT_KINDS = ("object", "assembly", "bitcode", "ir")
BITCODE_MAGIC = b"BC\xc0\xde"
RUNTIME_ARCHIVE = "libmewe_rt.a"


def _with_unit_report(obj: bytes, unit: str, mv: MultivariantOptions, reports: list[FunctionReport]) -> bytes:
    """The unit's object with its report as a `mewe.units` section: one JSON line, so that the
    sections wasm-ld concatenates stay one report per line."""
    record = {"unit": unit, "variants": mv.variants, "seed": mv.seed, "dispatch": mv.dispatch,
              "rerandomize": str(mv.rerandomize), "tail_calls": mv.tail_calls, "trace": mv.trace, "functions": [asdict(r) for r in reports]}
    return add_custom_section(obj, UNITS_SECTION, json.dumps(record, separators=(",", ":")).encode() + b"\n")


def _emit(module: IRModule, emit: str, options: CompileOptions, tail_calls: bool, toolchain: Toolchain) -> bytes:
    if emit == "bitcode":
        return module.bitcode
    if emit == "ir":
        return str(parse_module(module.bitcode)).encode()
    if emit == "assembly":
        return linker.emit_assembly(module, options.opt_level, tail_calls=tail_calls, toolchain=toolchain).encode()
    return linker.emit_object(module, options.opt_level, tail_calls=tail_calls, toolchain=toolchain)


def compile_unit(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    options: CompileOptions = CompileOptions(),
    multivariant: MultivariantOptions = MultivariantOptions(variants=4),
    emit: str = "object",
    unit: str | None = None,
    cc: str | None = None,
    verbose: bool = False,
) -> list[FunctionReport]:
    """Compile one source (.c, .ll, .bc) into `output`: a multivariant wasm object by default.

    `emit` is "object", "assembly" (wasm text assembly), "bitcode" or "ir" (LLVM IR text, of
    the unit after diversification). With `multivariant.variants == 0` the unit is compiled
    as it is: with `emit="bitcode"` that is what `link` takes as whole-program input. `unit`
    names the unit in reports and trace ids (default: `source` as given). Returns the unit's
    function reports (empty for a plain unit).
    """
    if emit not in EMIT_KINDS:
        raise MeweError(f"invalid output kind '{emit}' (use {', '.join(EMIT_KINDS)})")
    check_options(multivariant)
    toolchain = find_toolchain(cc)
    program = frontends.load_source(source, options, toolchain, verbose=verbose)
    unit = unit if unit is not None else str(source)
    reports: list[FunctionReport] = []
    if multivariant.variants == 0:
        data = _emit(program, emit, options, False, toolchain)
    else:
        module, obj, _, reports = link_multivariant(program, options, multivariant, None, Path(output).name, toolchain,
                                                    verbose, unit=unit)
        if emit == "object":
            data = _with_unit_report(obj, unit, multivariant, reports)
        else:
            data = _emit(module, emit, options, multivariant.tail_calls, toolchain)
    write_atomic(output, data)
    return reports


def runtime_archive(mv: MultivariantOptions, toolchain: Toolchain, *, verbose: bool = False) -> Path:
    """The runtime archive a link of multivariant units needs: the discriminator (with `mv`'s
    policy and re-seed period) and the trace buffer, as separate members. Built once per
    configuration and kept in the cache."""
    sources = (runtime.DISCRIMINATOR, runtime.DISCRIMINATOR.with_name("trace.c"))
    defines = tuple(d for d in runtime.discriminator_defines(mv) if d != "MEWE_TRACE") + ("MEWE_RUNTIME_OBJECT",)
    key = hashlib.sha256(repr((defines, toolchain.driver, toolchain.llvm_major,
                               [s.read_bytes() for s in sources])).encode()).hexdigest()[:24]
    archive = cache_dir("runtime", key) / RUNTIME_ARCHIVE
    if archive.is_file():
        return archive
    with tempfile.TemporaryDirectory(prefix="mewe-rt-") as tmp:
        members = []
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            flags = [f"-D{d}" for d in defines]
            toolchain.run(toolchain.command(*toolchain.cflags, "-O2", "-g0", *flags, "-c", str(src), "-o", str(obj)),
                          what=f"{src.name}: compilation", verbose=verbose)
            members.append(obj.name)
        toolchain.run([*archiver(toolchain), "rcs", RUNTIME_ARCHIVE, *members], what="archiving the runtime",
                      verbose=verbose, cwd=tmp)
        with atomic_output(archive) as out:  # concurrent links may build it at once; one rename wins
            out.write_bytes((Path(tmp) / RUNTIME_ARCHIVE).read_bytes())
    return archive


def is_bitcode(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == BITCODE_MAGIC
    except OSError:
        return False


def archive_members(path: Path) -> list[tuple[str, bytes]]:
    """The members of a (GNU or BSD) ar archive, in order, without its symbol and name tables."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        return []
    members, names, pos = [], b"", 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name, size = header[:16].decode().strip(), int(header[48:58].decode().strip() or 0)
        body = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name == "//":
            names = body
        elif name in ("/", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED"):
            continue
        elif name.startswith("#1/"):  # BSD: the name leads the body
            length = int(name[3:])
            members.append((body[:length].rstrip(b"\0").decode(), body[length:]))
        elif name.startswith("/") and name[1:].isdigit():  # GNU: an offset into the long-name table
            start = int(name[1:])
            members.append((names[start:names.index(b"/\n", start)].decode(), body))
        else:
            members.append((name.rstrip("/"), body))
    return members


def _symbols(bitcode: bytes) -> tuple[set[str], set[str]]:
    """The global symbols a bitcode module defines and those it needs."""
    mod = parse_module(bitcode)
    defined, undefined = set(), set()
    for value in [*mod.functions, *mod.global_variables]:
        if value.name.startswith("llvm.") or value.linkage in (llvm.Linkage.internal, llvm.Linkage.private):
            continue
        (undefined if value.is_declaration else defined).add(value.name)
    return defined, undefined


def resolve_libraries(items: list[str]) -> list[str]:
    """The link line with each `-lNAME` that names a `libNAME.a` in a `-L` directory (searched
    in order, wherever the -L stands, as clang does) replaced by that archive's path. zig's
    driver would drop `-l` names that are also parts of libc (util, m, rt, dl, pthread, c),
    losing a project's own `libutil.a`; names not found stay for the linker's own search."""
    flat: list[str] = []
    k = 0
    while k < len(items):  # `-L DIR` and `-l NAME` as one item each
        if items[k] in ("-L", "-l") and k + 1 < len(items):
            flat.append(items[k] + items[k + 1])
            k += 2
        else:
            flat.append(items[k])
            k += 1
    dirs = [Path(i[2:]) for i in flat if i.startswith("-L") and len(i) > 2]
    out = []
    for item in flat:
        if item.startswith("-l") and len(item) > 2:
            found = next((d / f"lib{item[2:]}.a" for d in dirs if (d / f"lib{item[2:]}.a").is_file()), None)
            out.append(str(found) if found else item)
        else:
            out.append(item)
    return out


def _archive_paths(items: list[str]) -> list[Path]:
    """The archives on a link line (after `resolve_libraries`)."""
    return [Path(i) for i in items if not i.startswith("-") and Path(i).suffix == ".a"]


def _needed_members(bitcode: list[bytes], archives: list[Path]) -> list[tuple[str, bytes]]:
    """Bitcode archive members the bitcode inputs need, transitively: what a linker would pull in."""
    defined: set[str] = set()
    undefined: set[str] = {"main", "__main_argc_argv"}
    for code in bitcode:
        d, u = _symbols(code)
        defined |= d
        undefined |= u
    undefined -= defined
    candidates = []
    for archive in archives:
        for name, body in archive_members(archive):
            if body.startswith(BITCODE_MAGIC):
                candidates.append((f"{archive.name}({name})", body, *_symbols(body)))
    chosen: list[int] = []
    progress = True
    while progress:
        progress = False
        for k, (_, _, d, u) in enumerate(candidates):
            if k not in chosen and d & undefined:
                chosen.append(k)
                defined |= d
                undefined = (undefined | u) - defined
                progress = True
    return [candidates[k][:2] for k in chosen]


def _whole_program(bitcode: list[Path], archives: list[Path], tmp: Path, output: Path, options: CompileOptions,
                   mv: MultivariantOptions, toolchain: Toolchain, verbose: bool) -> Path:
    """Merge the bitcode inputs and the bitcode archive members they need, diversify them as one
    unit, and return its object. (The archives stay on the link line: what was merged here
    is defined already, so the linker takes only what native objects still need.)"""
    inputs = [(str(p), p.read_bytes()) for p in bitcode]
    inputs += _needed_members([code for _, code in inputs], archives)
    modules = [frontends.load_ir(Path(label).name, code, origin=label) for label, code in inputs]
    program = linker.link_modules(modules)
    obj_path = tmp / "whole-program.o"
    if mv.variants == 0:
        obj_path.write_bytes(linker.emit_object(program, options.opt_level, toolchain=toolchain))
        return obj_path
    _, obj, _, reports = link_multivariant(program, options, mv, None, output.name, toolchain, verbose, unit=output.name)
    obj_path.write_bytes(_with_unit_report(obj, output.name, mv, reports))
    return obj_path


def _unit_manifest(output: Path, payload: bytes, mv: MultivariantOptions, present: set[str]) -> Manifest:
    """The manifest of a separately compiled module, from its units' concatenated reports: the
    functions still in the module (`present`: wasm-ld drops what nothing reaches)."""
    units = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
    functions = [FunctionReport.from_dict(f) for u in units for f in u["functions"]
                 if f["name"] in present or linker.body_name(f["name"], 0) in present]
    owners: dict[int, FunctionReport] = {}
    for f in functions:
        if f.status != "dispatched":
            continue
        other = owners.setdefault(f.dispatch_id, f)
        if other is not f and (other.unit, other.name) != (f.unit, f.name):
            raise MeweError(f"dispatcher ids of {other.name} ({other.unit}) and {f.name} ({f.unit}) collide; "
                            f"rename one of them")
    first = units[0]
    return Manifest(output.name, first["variants"], first["seed"], str(mv.policy), first["dispatch"],
                    first.get("rerandomize", ""), first["tail_calls"], any(u["trace"] for u in units), functions)


def link(
    args: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    options: CompileOptions = CompileOptions(),
    multivariant: MultivariantOptions = MultivariantOptions(variants=4),
    write_manifest: bool = False,
    cc: str | None = None,
    verbose: bool = False,
    emit: str = "module",
) -> BuildResult:
    """Link objects, archives and linker flags (`args`, in command-line order: `-lfoo`, `-L`,
    `-Wl,...` pass to the linker) into the WASI command module `output`.

    Multivariant objects from `compile_unit` get the runtime archive and a dispatch table;
    bitcode objects are merged and diversified here as one whole program (with `options` for
    code generation and `multivariant` for the passes). The policy, re-seed period and hold
    come from `multivariant`. With `write_manifest`, the manifest goes beside the output. With
    `emit="component"` or `"http"` the output is a WASI 0.2 component (mewe.component).
    """
    check_options(multivariant)
    check_emit(emit)
    toolchain = find_toolchain(cc)
    out = Path(output)
    items = resolve_libraries([str(a) for a in args])
    for item in items:
        if not item.startswith("-") and not Path(item).exists():
            raise MeweError(f"{item}: no such file")
    with tempfile.TemporaryDirectory(prefix="mewe-link-") as tmp:
        bitcode = [Path(i) for i in items if not i.startswith("-") and is_bitcode(Path(i))]
        if bitcode:
            whole = str(_whole_program(bitcode, _archive_paths(items), Path(tmp), out, options, multivariant, toolchain,
                                       verbose))
            first = items.index(str(bitcode[0]))
            items = [whole if k == first else i for k, i in enumerate(items) if k == first or Path(i) not in bitcode]
        archive = runtime_archive(multivariant, toolchain, verbose=verbose)
        data = linker.wasm_ld([*items, str(archive)], out.name, toolchain, verbose=verbose)
    manifest = None
    payload = custom_section(data, UNITS_SECTION)
    if payload:
        present = set(parse_wasm(data).function_names.values())
        manifest = _unit_manifest(out, payload, multivariant, present)
        data = add_dispatch_table(strip_custom_sections(data, lambda name: name == UNITS_SECTION), manifest)
    if emit != "module":
        data = componentize(data, out.name, emit)
    written = None
    if manifest is not None and write_manifest and not (out.exists() and not out.is_file()):  # not beside /dev/null
        written = manifest_path(out)
    write_outputs([(out, data, 0o755)] + ([(written, manifest.to_json().encode(), 0o644)] if written else []))
    return BuildResult(out, len(data), (), manifest, written)


__all__ = ["compile_unit", "link", "runtime_archive", "UNITS_SECTION", "EMIT_KINDS"]
