"""Linker: merge IR modules and variants, inject a dispatcher per diversified function, generate
wasm32 code with llvmlite, link with wasm-ld and wasi-libc.

The output is a WASI command module that keeps its function names (name section) and
imports only `wasi_snapshot_preview1`.
"""

from .codegen import CodegenCrash, emit_assembly, emit_object, emit_objects, split_module, wasm_ld
from .merge import link_modules
from .multivariant import MAX_BODIES, body_name, link_variants, unsupported

__all__ = ["link_modules", "link_variants", "unsupported", "body_name", "MAX_BODIES", "emit_assembly", "emit_object", "emit_objects", "split_module", "wasm_ld", "CodegenCrash"]
