"""Run a WASI command module in wasmtime, the way a shell runs a program.

stdin/stdout/stderr, argv, environment and preopened directories are the caller's; the
module's exit status becomes the return value; a trap raises one clear MeweError. For
multivariant modules the host can override the discriminator's policy, supplies `mewe.rand`
to modules built with the host policy, and collects the dispatch trace of traced builds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import struct
from pathlib import Path
from typing import Iterable, Mapping

import wasmtime

from mewe.errors import MeweError
from mewe.types import Policy
from mewe.wasm import COMPONENT_MAGIC, dispatch_table, not_a_module

# What a shell reports for an aborted process; wasmtime's own CLI uses it for traps too.
TRAP_EXIT_CODE = 134


def engine_config(*, cache: bool = False) -> wasmtime.Config:
    """wasmtime settings for mewe's modules: wasm exceptions on (setjmp/longjmp use them). With
    `cache`, compiled modules are kept on disk (wasmtime's own cache, under mewe's variant cache:
    `mewe cache` manages it; MEWE_CACHE=0 turns it off), so running a module again skips
    Cranelift: a multivariant module holds several times the code of its plain build."""
    config = wasmtime.Config()
    config.wasm_exceptions = True
    if cache and os.environ.get("MEWE_CACHE", "1") != "0":
        _enable_cache(config)
    return config


CACHE_LIMIT = "1Gi"  # wasmtime evicts the least recently used compiled modules past this


def _enable_cache(config: wasmtime.Config) -> None:
    from mewe.fsutil import atomic_output, cache_dir

    directory = cache_dir("variants", "wasmtime")
    # A JSON string is a TOML basic string too (the same escapes).
    settings = f'[cache]\ndirectory = {json.dumps(str(directory))}\nfiles-total-size-soft-limit = "{CACHE_LIMIT}"\n'
    path = directory / "config.toml"
    try:
        if not path.is_file() or path.read_text() != settings:
            with atomic_output(path) as out:
                out.write_text(settings)
        config.cache = str(path)
    except (OSError, MeweError, wasmtime.WasmtimeError):
        pass  # no cache (unwritable, or a path TOML cannot hold): modules are compiled as before


@functools.lru_cache(maxsize=1)
def _engine() -> wasmtime.Engine:
    return wasmtime.Engine(engine_config(cache=True))


@functools.lru_cache(maxsize=32)
def _compile(engine: wasmtime.Engine, path: str, mtime_ns: int, size: int) -> tuple[wasmtime.Module, list]:
    """A compiled module and its dispatcher table; cached so repeated runs compile once."""
    data = Path(path).read_bytes()
    if data[:4] != b"\0asm":  # wasmtime would read anything else as WAT text, and say why not in its words
        raise MeweError(f"{path}: not a wasm module")
    if data[:8] == COMPONENT_MAGIC:
        raise MeweError(f"{path}: {not_a_module(data)}")
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise MeweError(f"{path}: not a valid wasm module: {first}") from None
    table = dispatch_table(data) or []
    return module, {d.id: (d.name, d.variants) for d in table}


def _is_component(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == COMPONENT_MAGIC


def load_module(engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Module, dict[int, tuple[str, int]]]:
    """The compiled module at `path` and its dispatchers: dispatcher id -> (function, variants)."""
    if path.is_dir():
        raise MeweError(f"{path}: is a directory, not a wasm module")
    if not path.is_file():
        raise MeweError(f"{path}: no such file")
    st = path.stat()
    return _compile(engine, str(path), st.st_mtime_ns, st.st_size)


class TraceDigest:
    """A dispatch trace kept only as its SHA-256 and length, for hosts that compare paths
    (`mewe serve`): the module's batches are hashed as they arrive, no Python work per
    dispatch. The hash is over the (dispatcher id, variant) pairs as little-endian u32s."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.length = 0

    def update(self, pairs: bytes) -> None:
        self._sha.update(pairs)
        self.length += len(pairs) // 8

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


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
    policy: Policy | str | None = None,
    trace: list[tuple[str, int]] | TraceDigest | None = None,
) -> int:
    """Run the WASI command `module` with `args`; return its exit status.

    `dirs` are preopens, `HOST` or `HOST::GUEST`. `stdin`/`stdout`/`stderr` name files to use
    instead of the caller's streams. A trap raises MeweError (exit code TRAP_EXIT_CODE).
    `policy` overrides the discriminator's build-time policy (multivariant modules only).
    `trace`, for modules built with tracing, receives one (function, variant) per dispatch
    (or, a TraceDigest, only their hash and count).
    """
    path = Path(module)
    if path.is_file() and _is_component(path):
        if policy is not None or trace is not None:
            raise MeweError(f"{path}: a component's policy and tracing are fixed when it is built "
                            "(--policy and --trace here apply to modules)")
        from mewe.component import run_component

        return run_component(path, wasi_config(path, args, env, dirs, stdin, stdout, stderr))
    engine = _engine()
    wasm, dispatchers = load_module(engine, path)
    config = wasi_config(path, args, env, dirs, stdin, stdout, stderr)
    return execute(engine, wasm, dispatchers, config, path, policy=policy, trace=trace)


def wasi_config(path: Path, args: Iterable[str], env: Mapping[str, str] | None, dirs: Iterable[str],
                stdin, stdout, stderr) -> wasmtime.WasiConfig:
    """WASI settings as a shell gives a program: argv[0] the file's name, the environment and
    preopens asked for, the caller's streams unless files are named."""
    config = wasmtime.WasiConfig()
    config.argv = [path.name, *args]
    config.env = [[k, v] for k, v in (env or {}).items()]
    for spec in dirs:
        host, guest = _parse_dir(spec)
        config.preopen_dir(host, guest)
    for stream, name in ((stdin, "stdin"), (stdout, "stdout"), (stderr, "stderr")):
        if stream is None:
            getattr(config, f"inherit_{name}")()
        else:
            setattr(config, f"{name}_file", str(stream))
    return config


class Trapped(MeweError):
    """A wasm trap: one line, exit code TRAP_EXIT_CODE; `interrupted` when an epoch deadline hit."""

    def __init__(self, message: str, interrupted: bool):
        super().__init__(message, exit_code=TRAP_EXIT_CODE)
        self.interrupted = interrupted


def execute(engine: wasmtime.Engine, wasm: wasmtime.Module, dispatchers: dict[int, tuple[str, int]],
            config: wasmtime.WasiConfig, path: Path, *, policy: Policy | str | None = None,
            trace: list[tuple[str, int]] | TraceDigest | None = None, store: wasmtime.Store | None = None) -> int:
    """Instantiate a compiled WASI command in a fresh store (or `store`, prepared with limits)
    and run it; returns its exit status, raises Trapped for a trap. `trace` receives the
    dispatches of a traced build: (function, variant) pairs in a list, or a TraceDigest."""
    store = store or wasmtime.Store(engine)
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    _define_mewe_imports(linker, wasm, dispatchers, trace, path)
    try:
        instance = linker.instantiate(store, wasm)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MeweError(f"{path}: cannot instantiate: {first}") from None
    exports = instance.exports(store)
    start = exports.get("_start")
    if not isinstance(start, wasmtime.Func):
        raise MeweError(f"{path}: not a WASI command (no '_start' export)")
    if policy is not None:
        _configure(store, exports, Policy.parse(policy) if isinstance(policy, str) else policy, path)
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except wasmtime.Trap as trap:
        raise Trapped(f"{path.name}: wasm trap: {describe_trap(trap)}",
                      trap.trap_code == wasmtime.TrapCode.INTERRUPT) from None
    finally:
        flush = exports.get("mewe_trace_flush")
        if trace is not None and isinstance(flush, wasmtime.Func):
            try:
                flush(store)  # hand over what the module buffered since its last batch
            except wasmtime.Trap:
                pass  # an interrupted store cannot run again; that batch is lost
    return 0


def _define_mewe_imports(linker: wasmtime.Linker, wasm: wasmtime.Module, dispatchers: dict[int, tuple[str, int]],
                         trace: list[tuple[str, int]] | TraceDigest | None, path: Path) -> None:
    wanted = {(imp.module, imp.name) for imp in wasm.imports}
    i32 = wasmtime.ValType.i32()
    if ("mewe", "rand") in wanted:
        linker.define_func("mewe", "rand", wasmtime.FuncType([], [i32]), lambda: secrets.randbits(32) - (1 << 31))
    if ("mewe", "trace") in wanted:
        def record(caller: wasmtime.Caller, ptr: int, count: int) -> None:
            if trace is None:
                return
            memory = caller.get("memory")
            raw = bytes(memory.read(caller, ptr & 0xFFFFFFFF, (ptr & 0xFFFFFFFF) + 8 * count))
            if isinstance(trace, TraceDigest):
                trace.update(raw)
                return
            for fid, k in struct.iter_unpack("<II", raw):
                trace.append((dispatchers[fid][0] if fid in dispatchers else f"#{fid}", k))

        linker.define_func("mewe", "trace", wasmtime.FuncType([i32, i32], []), record, access_caller=True)
    elif trace is not None:
        raise MeweError(f"{path}: built without tracing (build it with --trace)")


def _configure(store: wasmtime.Store, exports, policy: Policy, path: Path) -> None:
    configure = exports.get("mewe_configure")
    if not isinstance(configure, wasmtime.Func):
        raise MeweError(f"{path}: has no dispatchers, so no policy to set (build it with --variants N)")
    lo, hi = policy.arg & 0xFFFFFFFF, policy.arg >> 32
    as_i32 = lambda v: v - (1 << 32) if v >= 1 << 31 else v  # noqa: E731
    if configure(store, policy.code, as_i32(lo), as_i32(hi)) != 0:
        raise MeweError(f"{path}: policy '{policy}' needs a module built with --policy {policy.kind}")
