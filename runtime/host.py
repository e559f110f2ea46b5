"""Run a WASI command module in wasmtime, the way a shell runs a program.

stdin/stdout/stderr, argv, environment and preopened directories are the caller's; the
module's exit status becomes the return value; a trap raises one clear MeweError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import wasmtime

from mewe.errors import MeweError

# What a shell reports for an aborted process; wasmtime's own CLI uses it for traps too.
TRAP_EXIT_CODE = 134


def _engine() -> wasmtime.Engine:
    return wasmtime.Engine(wasmtime.Config())


def load_module(engine: wasmtime.Engine, path: Path) -> wasmtime.Module:
    if not path.is_file():
        raise MeweError(f"{path}: no such file")
    try:
        return wasmtime.Module.from_file(engine, str(path))
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise MeweError(f"{path}: not a valid wasm module: {first}") from None


def _parse_dir(spec: str) -> tuple[str, str]:
    host, sep, guest = spec.partition("::")
    if not os.path.isdir(host):
        raise MeweError(f"--dir {spec}: '{host}' is not a directory")
    return host, guest if sep else host


def describe_trap(trap: wasmtime.Trap) -> str:
    """One line: the trap's reason and the innermost named wasm function."""
    reason = str(trap.trap_code.name).lower().replace("_", " ") if trap.trap_code is not None else ""
    if not reason:
        lines = [l.strip() for l in trap.message.splitlines() if l.strip()]
        reason = lines[-1] if lines else "trap"
    where = next((f.func_name for f in trap.frames if f.func_name), None)
    return f"{reason} in function '{where}'" if where else reason


def run(
    module: str | os.PathLike,
    args: Iterable[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    dirs: Iterable[str] = (),
    stdin: str | os.PathLike | None = None,
    stdout: str | os.PathLike | None = None,
    stderr: str | os.PathLike | None = None,
) -> int:
    """Run the WASI command `module` with `args`; return its exit status.

    `dirs` are preopens, `HOST` or `HOST::GUEST`. `stdin`/`stdout`/`stderr` name files to use
    instead of the caller's streams. A trap raises MeweError (exit code TRAP_EXIT_CODE).
    """
    path = Path(module)
    engine = _engine()
    wasm = load_module(engine, path)
    config = wasmtime.WasiConfig()
    config.argv = [path.name, *args]
    config.env = [[k, v] for k, v in (env or {}).items()]
    for spec in dirs:
        host, guest = _parse_dir(spec)
        config.preopen_dir(host, guest)
    if stdin is None:
        config.inherit_stdin()
    else:
        config.stdin_file = str(stdin)
    if stdout is None:
        config.inherit_stdout()
    else:
        config.stdout_file = str(stdout)
    if stderr is None:
        config.inherit_stderr()
    else:
        config.stderr_file = str(stderr)

    store = wasmtime.Store(engine)
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    try:
        instance = linker.instantiate(store, wasm)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MeweError(f"{path}: cannot instantiate: {first}") from None
    start = instance.exports(store).get("_start")
    if not isinstance(start, wasmtime.Func):
        raise MeweError(f"{path}: not a WASI command (no '_start' export)")
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except wasmtime.Trap as trap:
        raise MeweError(f"{path.name}: wasm trap: {describe_trap(trap)}", exit_code=TRAP_EXIT_CODE) from None
    return 0
