"""Data that crosses stages: small typed dataclasses every stage may import.

frontends/ produce `IRModule`s, passes/ turn functions into variants, linker/ consumes both
and writes a wasm module. IR travels as LLVM bitcode bytes so it can cross process
boundaries (llvmlite's global context is not thread-safe; parallelism uses processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

OPT_LEVELS = ("0", "1", "2", "3", "s", "z")


@dataclass(frozen=True)
class CompileOptions:
    """How a frontend compiles one source file: the clang flags a user would give."""

    include_dirs: tuple[str, ...] = ()
    defines: tuple[str, ...] = ()  # "NAME" or "NAME=VALUE"
    undefines: tuple[str, ...] = ()
    opt_level: str = "2"
    extra_flags: tuple[str, ...] = ()  # passed verbatim to the C compiler

    def __post_init__(self) -> None:
        if self.opt_level not in OPT_LEVELS:
            from .errors import MeweError

            raise MeweError(f"invalid optimization level '-O{self.opt_level}' (use one of -O{', -O'.join(OPT_LEVELS)})")


@dataclass(frozen=True)
class IRModule:
    """One LLVM IR module for wasm32-wasi, as bitcode, named after where it came from."""

    name: str
    bitcode: bytes = field(repr=False)


@dataclass(frozen=True)
class BuildResult:
    """What `mewe.build` produced."""

    output: Path
    size: int
    temps: tuple[Path, ...] = ()  # intermediate files kept with keep_temps
