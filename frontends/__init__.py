"""Frontends: sources to LLVM IR modules for wasm32-wasi.

`load_source` accepts C (`.c`, compiled by the toolchain's clang), Rust (`.rs`, a single-file
program compiled by rustc with std merged in; cargo projects go through `rust.cargo_bitcode`),
textual IR (`.ll`) and bitcode (`.bc`), and returns an `IRModule` the passes and the linker take.
"""

from __future__ import annotations

from pathlib import Path

from mewe.errors import MeweError
from mewe.toolchain import Toolchain
from mewe.types import C_SUFFIXES, IR_SUFFIXES, CompileOptions, IRModule

from .c import compile_c
from .ir import load_ir
from .rust import RUST_SUFFIXES, compile_rust



def load_source(path: str | Path, options: CompileOptions, toolchain: Toolchain, *, verbose: bool = False) -> IRModule:
    """Lower one source file to an IRModule; raises MeweError for missing, unknown or broken input."""
    path = Path(path)
    if not path.exists():
        raise MeweError(f"{path}: no such file")
    if path.is_dir():
        raise MeweError(f"{path}: is a directory, not a source file")
    suffix = path.suffix.lower()
    if suffix in C_SUFFIXES:
        return load_ir(path.name, compile_c(path, options, toolchain, verbose=verbose), origin=str(path))
    if suffix in RUST_SUFFIXES:
        return load_ir(path.name, compile_rust(path, options, verbose=verbose), origin=str(path))
    if suffix in IR_SUFFIXES:
        return load_ir(path.name, path.read_bytes(), origin=str(path))
    raise MeweError(f"{path}: unsupported input type '{path.suffix or '(none)'}' (expected .c, .i, .rs, .ll or .bc)")


__all__ = ["load_source", "compile_c", "compile_rust", "load_ir"]
