"""C frontend: clang (ziglang's or a system one) compiles a C file to wasm32-wasi bitcode."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mewe.toolchain import Toolchain
from mewe.types import CompileOptions


def cflags(options: CompileOptions) -> list[str]:
    """The clang flags for `options` (debug info off: variants are compared by code, not DWARF)."""
    flags = [f"-O{options.opt_level}", "-g0"]
    flags += [f"-I{d}" for d in options.include_dirs]
    flags += [f"-D{d}" for d in options.defines]
    flags += [f"-U{u}" for u in options.undefines]
    flags += list(options.extra_flags)
    return flags


def compile_c(source: Path, options: CompileOptions, toolchain: Toolchain, *, verbose: bool = False) -> bytes:
    """Compile `source` to LLVM bitcode; raises MeweError with clang's diagnostics on failure."""
    with tempfile.TemporaryDirectory(prefix="mewe-cc-") as tmp:
        out = Path(tmp) / (source.stem + ".bc")
        # A .i file (C already preprocessed) goes through the preprocessor again as C: it only has
        # line markers left, and clang then treats it exactly like a .c file.
        language = ["-x", "c"] if source.suffix.lower() == ".i" else []
        argv = toolchain.command(*toolchain.cflags, *cflags(options), "-c", "-emit-llvm", *language, str(source),
                                 "-o", str(out))
        proc = toolchain.run(argv, what=f"{source}: compilation", verbose=verbose)
        if proc.stderr:  # warnings: show them as a compiler would
            sys.stderr.write(proc.stderr)
        if options.dependency_flags:
            # zig cc loses its -emit-llvm output when asked for a dependency file; the
            # preprocessor writes the same file on its own.
            pre = toolchain.command(*toolchain.cflags, *cflags(options), *options.dependency_flags, "-E", str(source),
                                    "-o", str(Path(tmp) / "preprocessed.i"))
            toolchain.run(pre, what=f"{source}: dependency file", verbose=verbose)
        return out.read_bytes()
