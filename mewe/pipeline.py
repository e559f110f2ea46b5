"""The build pipeline: frontends -> (passes) -> linker, one function per stage call.

`build` is what `mewe build` runs; researchers call it directly.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from mewe import frontends, linker
from mewe.errors import MeweError
from mewe.fsutil import write_atomic
from mewe.toolchain import Toolchain, find_toolchain
from mewe.types import BuildResult, CompileOptions, IRModule


def _lower_all(sources: list[Path], options: CompileOptions, toolchain: Toolchain, verbose: bool) -> list[IRModule]:
    """Lower every source; clang runs in parallel (subprocesses), llvmlite parsing stays serial."""
    c_files = [s for s in sources if s.suffix.lower() in frontends.C_SUFFIXES]
    with ThreadPoolExecutor(max_workers=max(1, min(len(c_files), os.cpu_count() or 1))) as pool:
        compiled = {s: pool.submit(frontends.compile_c, s, options, toolchain, verbose=verbose) for s in c_files}
    modules = []
    for src in sources:  # errors surface in source order: the first bad file is reported
        if src in compiled:
            modules.append(frontends.load_ir(src.name, compiled[src].result(), origin=str(src)))
        else:
            modules.append(frontends.load_source(src, options, toolchain, verbose=verbose))
    return modules


def build(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    options: CompileOptions = CompileOptions(),
    cc: str | None = None,
    keep_temps: bool = False,
    verbose: bool = False,
) -> BuildResult:
    """Compile `sources` (.c, .ll, .bc) into the WASI command module `output`.

    The output is written atomically: on any error nothing is left at `output`.
    With `keep_temps`, the linked bitcode and object are kept beside the output.
    """
    if not sources:
        raise MeweError("no input files")
    paths = [Path(s) for s in sources]
    for p in paths:  # report missing inputs before running any tool
        if not p.exists():
            raise MeweError(f"{p}: no such file")
        if p.is_dir():
            raise MeweError(f"{p}: is a directory, not a source file")
    toolchain = find_toolchain(cc)
    modules = _lower_all(paths, options, toolchain, verbose)
    out = Path(output)
    program = linker.link_modules(modules)
    obj = linker.emit_object(program, options.opt_level)

    temps: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="mewe-build-") as tmp:
        obj_path = Path(tmp) / "program.o"  # a fixed name: it is recorded in the output
        obj_path.write_bytes(obj)
        write_atomic(out, linker.wasm_ld([obj_path], out.name, toolchain, verbose=verbose), 0o755)
        if keep_temps:
            for suffix, data in ((".bc", program.bitcode), (".o", obj)):
                keep = out.with_suffix(suffix)
                write_atomic(keep, data)
                temps.append(keep)
    return BuildResult(out, out.stat().st_size, tuple(temps))
