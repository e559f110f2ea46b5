"""LLVM IR inputs (.ll text or .bc bitcode): parsed and verified with llvmlite, kept as bitcode."""

from __future__ import annotations

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.types import IRModule


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse(data: bytes, origin: str) -> llvm.ModuleRef:
    """Parse IR text or bitcode (told apart by the bitcode magic) and verify it."""
    try:
        if data[:4] == b"BC\xc0\xde" or data[:4] == b"\xde\xc0\x17\x0b":
            mod = llvm.parse_bitcode(data)
        else:
            mod = llvm.parse_assembly(data.decode("utf-8"))
        mod.verify()
    except (RuntimeError, UnicodeDecodeError) as exc:
        raise MeweError(f"{origin}: invalid LLVM IR: {_first_line(exc)}") from None
    return mod


def load_ir(name: str, data: bytes, *, origin: str) -> IRModule:
    """An IRModule from IR text or bitcode; the module must target wasm32."""
    mod = parse(data, origin)
    if not mod.triple.startswith("wasm32"):
        raise MeweError(f"{origin}: target triple '{mod.triple or '(none)'}' is not wasm32; compile with --target=wasm32-wasi")
    return IRModule(name, mod.as_bitcode())
