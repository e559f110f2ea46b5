"""Merge several IR modules into one with LLVM's module linker."""

from __future__ import annotations

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.types import IRModule


def link_modules(modules: list[IRModule], name: str = "program") -> IRModule:
    """Link `modules` into one IRModule; clashing definitions are one error line."""
    if not modules:
        raise MeweError("no input modules to link")
    if len(modules) == 1:
        return modules[0]
    first, *rest = modules
    merged = llvm.parse_bitcode(first.bitcode)
    for other in rest:
        # link_in consumes the module it links, so each is parsed fresh here.
        try:
            merged.link_in(llvm.parse_bitcode(other.bitcode))
        except RuntimeError as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else "link error"
            raise MeweError(f"linking {other.name}: {msg}") from None
    merged.verify()
    return IRModule(name, merged.as_bitcode())
