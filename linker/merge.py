"""Merge several IR modules into one with LLVM's module linker."""

from __future__ import annotations

from mewe.errors import MeweError
from mewe.llvmir import llvm_error, new_context, parse_module
from mewe.types import IRModule


def link_modules(modules: list[IRModule], name: str = "program") -> IRModule:
    """Link `modules` into one IRModule; clashing definitions are one error line."""
    if not modules:
        raise MeweError("no input modules to link")
    if len(modules) == 1:
        return modules[0]
    first, *rest = modules
    context = new_context()
    merged = parse_module(first.bitcode, context=context)
    for other in rest:
        # link_in consumes the module it links, so each is parsed fresh (into the same context).
        try:
            merged.link_in(parse_module(other.bitcode, context=context))
        except RuntimeError as exc:
            raise MeweError(f"linking {other.name}: {llvm_error(exc)}") from None
    merged.verify()
    return IRModule(name, merged.as_bitcode())
