"""wasm32 code generation (llvmlite's target machine) and the final wasm-ld link."""

from __future__ import annotations

import tempfile
from pathlib import Path

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.llvmir import parse_module
from mewe.toolchain import Toolchain
from mewe.types import IRModule
from mewe.wasm import strip_debug

CODEGEN_OPT = {"0": 0, "1": 1, "2": 2, "3": 3, "s": 2, "z": 2}


def target_machine(triple: str, opt_level: str = "2", features: str = "") -> llvm.TargetMachine:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as exc:
        raise MeweError(f"no LLVM target for '{triple}': {exc}") from None
    return target.create_target_machine(opt=CODEGEN_OPT[opt_level], reloc="static", codemodel="default", features=features)


def emit_object(module: IRModule, opt_level: str = "2", *, tail_calls: bool = False) -> bytes:
    """Generate a wasm32 object file for `module`; `tail_calls` enables wasm's return_call."""
    mod = parse_module(module.bitcode, verify=False)
    return target_machine(mod.triple, opt_level, "+tail-call" if tail_calls else "").emit_object(mod)


def wasm_ld(objects: list[Path], name: str, toolchain: Toolchain, *, extra: tuple[str, ...] = (), verbose: bool = False) -> bytes:
    """Link wasm objects with wasi-libc into a WASI command module called `name`; return its bytes.

    -O2 selects zig's release wasi-libc. libc's debug info is dropped; the name section stays.
    The link happens in a private directory so the module name recorded is `name`, not a temp file's.
    """
    with tempfile.TemporaryDirectory(prefix="mewe-ld-") as tmp:
        output = Path(tmp) / name
        argv = toolchain.command("-O2", *map(str, objects), *extra, "-o", str(output))
        toolchain.run(argv, what="linking", verbose=verbose)
        return strip_debug(output.read_bytes())
