"""mewe: multivariant WebAssembly for C and Rust services.

Every function of a service is cloned into semantically equivalent variants; one wasm32-wasi
module holds them all and a dispatcher picks a variant at random (at instance start, and
again every so many dispatches: `MultivariantOptions.rerandomize`). The stages
are importable: `mewe.frontends` (sources -> LLVM IR), `mewe.passes` (variants),
`mewe.linker` (dispatchers, wasm codegen), `mewe.runtime` (the RNG and the host).

    import mewe
    mewe.build(["service.c"], "service.wasm", multivariant=mewe.MultivariantOptions(variants=8))
    mewe.cargo_build(["--manifest-path", "svc/Cargo.toml"], multivariant=mewe.MultivariantOptions(variants=4))
    mewe.run("service.wasm", ["arg"], policy="seeded:1")
    mewe.build(["service.c"], "service.wasm", emit="component")   # a WASI 0.2 command component
    mewe.preservation("service.wasm").rates()
"""

__version__ = "0.1.0"

# Everything loads on first use (PEP 562), so a tool that needs little (mewe-cc's client,
# `mewe --help`) does not pay for LLVM, wasmtime or even dataclasses and typing at start-up.
_LAZY = {"MeweError": "mewe.errors", "build": "mewe.pipeline", "cargo_build": "mewe.pipeline", "run": "mewe.runtime",
         "TraceDigest": "mewe.runtime", "preservation": "mewe.inspect", "componentize": "mewe.component",
         **{name: "mewe.types" for name in ("BuildResult", "CompileOptions", "IRModule", "Manifest",
                                            "MultivariantOptions", "Policy", "Rerandomize", "Variant")}}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mewe' has no attribute '{name}'")


__all__ = ["build", "cargo_build", "run", "TraceDigest", "preservation", "componentize", "MeweError", "BuildResult", "CompileOptions", "IRModule",
           "Manifest", "MultivariantOptions", "Policy", "Rerandomize", "Variant", "__version__"]
