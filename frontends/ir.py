"""LLVM IR inputs (.ll text or .bc bitcode): parsed and verified with llvmlite, kept as bitcode."""

from __future__ import annotations

from mewe.errors import MeweError
from mewe.llvmir import parse_checked
from mewe.types import IRModule


def load_ir(name: str, data: bytes, *, origin: str) -> IRModule:
    """An IRModule from IR text or bitcode; the module must target wasm32."""
    mod = parse_checked(data, origin)
    if not mod.triple.startswith("wasm32"):
        raise MeweError(f"{origin}: target triple '{mod.triple or '(none)'}' is not wasm32; compile with --target=wasm32-wasi")
    return IRModule(name, mod.as_bitcode())
