"""wasm32 code generation (llvmlite's target machine) and the final wasm-ld link."""

from __future__ import annotations

import faulthandler
import inspect
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
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


# The code generator runs in a child process: an LLVM bug that a variant triggers aborts the
# process that hit it (an assertion, a fatal error); in a child it becomes a CodegenCrash, which
# the build can answer by dropping those variants. The child is a fork of this process where
# that is safe (a few ms), else a fresh interpreter (llvmlite only: about 0.1 s to start).
_CHILD_IMPORTS = "import sys\nimport llvmlite.binding as llvm\n"
_CHILD = """
llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()
opt, features = int(sys.argv[1]), sys.argv[2]
sys.stdout.buffer.write(_emit(llvm.parse_bitcode(sys.stdin.buffer.read()), opt, features))
"""


def _emit(mod: llvm.ModuleRef, opt: int, features: str) -> bytes:
    target = llvm.Target.from_triple(mod.triple)
    return target.create_target_machine(opt=opt, reloc="static", codemodel="default", features=features).emit_object(mod)


class CodegenCrash(MeweError):
    """LLVM's code generator crashed (aborted) on a module."""


def emit_object(module: IRModule, opt_level: str = "2", *, tail_calls: bool = False) -> bytes:
    """Generate a wasm32 object file for `module`; `tail_calls` enables wasm's return_call.
    Raises CodegenCrash, naming LLVM's message, when the code generator aborts."""
    features = "+tail-call" if tail_calls else ""
    opt = CODEGEN_OPT[opt_level]
    if hasattr(os, "fork") and threading.active_count() == 1:  # forking a threaded process may deadlock
        status, obj, errors = _forked(module.bitcode, opt, features)
    else:
        source = _CHILD_IMPORTS + inspect.getsource(_emit) + _CHILD
        proc = subprocess.run([sys.executable, "-c", source, str(opt), features], input=module.bitcode,
                              capture_output=True)
        status, obj, errors = proc.returncode, proc.stdout, proc.stderr
    if status != 0:
        text = errors.decode("utf-8", "replace")
        found = re.search(r"Assertion `(.*)' failed", text) or re.search(r"LLVM ERROR: (.*)", text)
        what = (f"assertion '{found[1]}' failed" if found and found[0].startswith("Assertion") else
                found[1] if found else (text.strip().splitlines() or [f"exit status {status}"])[-1])
        raise CodegenCrash(f"{module.name}: LLVM's code generator crashed: {what}")
    return obj


def _forked(bitcode: bytes, opt: int, features: str) -> tuple[int, bytes, bytes]:
    """Run `_emit` in a fork: (exit status, object, what it wrote to stderr)."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: no Python-level cleanup, whatever happens
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C stops it at once
                faulthandler.disable()  # an abort is reported by the parent, from LLVM's message
                os.dup2(err.fileno(), 2)
                out.write(_emit(llvm.parse_bitcode(bitcode), opt, features))
                out.flush()
                status = 0
            except BaseException as exc:
                os.write(2, f"LLVM ERROR: {exc}\n".encode())
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(wait_status), out.read(), err.read()


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
