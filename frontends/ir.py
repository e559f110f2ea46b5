"""LLVM IR inputs (.ll text or .bc bitcode): parsed and verified with llvmlite, kept as bitcode.

Two normalizations make modules from other producers fit the linker:
- debug info is dropped: variants are compared by code, and a dispatcher's forwarding call
  has no source location, which the verifier rejects inside a function that has debug info;
- rustc's entry point `i32 @main()` is renamed `__main_void`, the name wasi-libc's `_start`
  calls for a main without arguments (Rust's std reads its arguments through WASI itself).
"""

from __future__ import annotations

import re

from mewe.errors import MeweError
from mewe.llvmir import parse_checked
from mewe.types import IRModule

_DBG_ATTACHMENT = re.compile(r",? !dbg !\d+")
_DBG_LINE = re.compile(r"\s*(#dbg_\w+\(|call void @llvm\.dbg\.|declare void @llvm\.dbg\.|!llvm\.dbg\.cu = )")
_RUST_MAIN = re.compile(r"^define ((?:\w+ )*)i32 @main\(\)", re.M)
# Inline assembly with instructions in it (an empty string, the usual compiler barrier, is fine):
# llvmlite's LLVM has no WebAssembly assembler, and codegen would abort the process.
_INLINE_ASM = re.compile(r'\basm (?:(?:sideeffect|alignstack|inteldialect|unwind) )*"([^"]*[^"\s][^"]*)"|^module asm "(.*\S.*)"$',
                         re.M)


def strip_debug_info(text: str) -> str:
    """IR text without debug locations, debug records, the compile-unit list and the "Debug Info
    Version" flag (with it, LLVM's parser aborts the process on a broken module instead of
    reporting an error, and variants are checked by parsing)."""
    version = re.search(r'^(![0-9]+) = !\{i32 [0-9]+, !"Debug Info Version", i32 [0-9]+\}$', text, re.M)
    lines = [line for line in text.splitlines() if not _DBG_LINE.match(line)]
    if version:
        flag = version.group(1)
        lines = [line for line in lines if not line.startswith(f"{flag} = ")]
        lines = [re.sub(rf"{flag}(?![0-9])(, )?", "", line).replace(", }", "}") if line.startswith("!llvm.module.flags")
                 else line for line in lines]
    return _DBG_ATTACHMENT.sub("", "\n".join(lines)) + "\n"


def is_rustc_module(text: str) -> bool:
    return '!"rustc version ' in text


def normalize(text: str) -> str | None:
    """`text` rewritten as described in the module docstring, or None when nothing changes."""
    changed = text
    if "!llvm.dbg.cu" in changed or '!"Debug Info Version"' in changed:
        changed = strip_debug_info(changed)
    if is_rustc_module(changed) and "@__main_void(" not in changed:
        renamed, count = _RUST_MAIN.subn(r"define \1i32 @__main_void()", changed, count=1)
        if count:
            changed = renamed.replace("@main(", "@__main_void(")
    return None if changed is text else changed


def load_ir(name: str, data: bytes, *, origin: str) -> IRModule:
    """An IRModule from IR text or bitcode; the module must target wasm32."""
    mod = parse_checked(data, origin)
    if not mod.triple.startswith("wasm32"):
        raise MeweError(f"{origin}: target triple '{mod.triple or '(none)'}' is not wasm32; compile with --target=wasm32-wasi")
    text = str(mod)
    asm = _INLINE_ASM.search(text)
    if asm:
        snippet = (asm.group(1) or asm.group(2)).replace("\\0A", "; ")[:60]
        raise MeweError(f"{origin}: inline assembly is not supported (llvmlite's LLVM has no WebAssembly assembler): "
                        f"'{snippet}'")
    normalized = normalize(text)
    if normalized is not None:
        mod = parse_checked(normalized, origin)
    return IRModule(name, mod.as_bitcode())
