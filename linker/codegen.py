"""wasm32 code generation (llvmlite's target machine) and the final wasm-ld link."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.toolchain import Toolchain
from mewe.types import IRModule
from mewe.wasm import strip_debug

CODEGEN_OPT = {"0": 0, "1": 1, "2": 2, "3": 3, "s": 2, "z": 2}


def target_machine(triple: str, opt_level: str = "2", features: str = "") -> llvm.TargetMachine:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as exc:
        raise MeweError(f"no LLVM target for '{triple}': {exc}") from None
    return target.create_target_machine(opt=CODEGEN_OPT[opt_level], reloc="static", codemodel="default", features=features)


# The code generator runs in a child process (llvmlite only: about 0.1 s to start). An LLVM bug
# that a variant triggers aborts the process that hit it (an assertion, a fatal error); in a
# child it becomes a CodegenCrash, which the build can answer by dropping those variants.
_CHILD = """
import sys
import llvmlite.binding as llvm
llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()
opt, features = int(sys.argv[1]), sys.argv[2]
mod = llvm.parse_bitcode(sys.stdin.buffer.read())
target = llvm.Target.from_triple(mod.triple)
tm = target.create_target_machine(opt=opt, reloc="static", codemodel="default", features=features)
sys.stdout.buffer.write(tm.emit_object(mod))
"""


class CodegenCrash(MeweError):
    """LLVM's code generator crashed (aborted) on a module."""


def emit_object(module: IRModule, opt_level: str = "2", *, tail_calls: bool = False) -> bytes:
    """Generate a wasm32 object file for `module`; `tail_calls` enables wasm's return_call.
    Raises CodegenCrash, naming LLVM's message, when the code generator aborts."""
    features = "+tail-call" if tail_calls else ""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(CODEGEN_OPT[opt_level]), features],
                          input=module.bitcode, capture_output=True)
    if proc.returncode != 0:
        text = proc.stderr.decode("utf-8", "replace")
        found = re.search(r"Assertion `(.*)' failed", text) or re.search(r"LLVM ERROR: (.*)", text)
        what = (f"assertion '{found[1]}' failed" if found and found[0].startswith("Assertion") else
                found[1] if found else (text.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])
        raise CodegenCrash(f"{module.name}: LLVM's code generator crashed: {what}")
    return proc.stdout


def wasm_ld(objects: list[Path], name: str, toolchain: Toolchain, *, extra: tuple[str, ...] = (), verbose: bool = False) -> bytes:
    """Link wasm objects with wasi-libc into a WASI command module called `name`; return its bytes.

    -O2 selects zig's release wasi-libc. libc's debug info is dropped; the name section stays.
    The link happens in a private directory so the module name recorded is `name`, not a temp file's.
    """
    with tempfile.TemporaryDirectory(prefix="mewe-ld-") as tmp:
        output = Path(tmp) / name
        argv = toolchain.command("-O2", *map(str, objects), *extra, "-o", str(output))
        toolchain.run(argv, what="linking", verbose=verbose)
        return strip_debug(output.read_bytes())
