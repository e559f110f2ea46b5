"""wasm32 code generation (llvmlite's target machine) and the final wasm-ld link."""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import inspect
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.llvmir import GLOBAL_NAME, definitions, quote_name, unquote_name
from mewe.toolchain import EH_FLAGS, Toolchain, find_toolchain
from mewe.types import IRModule
from mewe.wasm import strip_debug

from .irtext import LINKAGES, Header, Unsupported, parse_header

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


# A process that may die with an LLVM abort generates code itself, without a child: a compile
# server's request is such a process (a fork serving one client, who compiles in-process when
# the request dies). Saves a fork per code generation: 10-20 ms of a tiny unit's 100.
DISPOSABLE = False


def _emit(mod: llvm.ModuleRef, opt: int, features: str) -> bytes:
    target = llvm.Target.from_triple(mod.triple)
    return target.create_target_machine(opt=opt, reloc="static", codemodel="default", features=features).emit_object(mod)


class CodegenCrash(MeweError):
    """LLVM's code generator crashed (aborted) on a module."""


def emit_object(module: IRModule, opt_level: str = "2", *, tail_calls: bool = False,
                toolchain: Toolchain | None = None) -> bytes:
    """Generate a wasm32 object file for `module`; `tail_calls` enables wasm's return_call.
    Raises CodegenCrash, naming LLVM's message, when the code generator aborts. A module that
    calls setjmp or longjmp is compiled by the C `toolchain`'s clang (see SJLJ_FLAGS)."""
    return emit_objects([module], opt_level, tail_calls=tail_calls, toolchain=toolchain)[0]


# setjmp/longjmp calls become wasm exception handling (the standard try_table/exnref form that
# wasmtime runs, with wasi-libc's setjmp runtime). llvmlite's target machine cannot make that
# (its exception model is fixed at none), so clang generates such modules' code, from the
# bitcode as it is (no optimization passes: variants must reach codegen unchanged).
SJLJ_FUNCTIONS = frozenset({"setjmp", "_setjmp", "sigsetjmp", "longjmp", "_longjmp", "siglongjmp"})
SJLJ_FLAGS = ("-mexception-handling", "-mllvm", "-wasm-enable-sjlj", "-mllvm", "-wasm-use-legacy-eh=false")


def uses_sjlj(module: IRModule | Part) -> bool:
    """Whether `module` calls setjmp or longjmp (by name: they are libc's)."""
    data = module.text.encode() if isinstance(module, Part) else module.bitcode
    if b"setjmp" not in data and b"longjmp" not in data:  # most modules: no parse
        return False
    return any(f.name in SJLJ_FUNCTIONS for f in _load(module).functions)


def _clang_emit(module: IRModule | Part, opt_level: str, tail_calls: bool, toolchain: Toolchain, *,
                assembly: bool = False) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mewe-sjlj-") as tmp:
        source, output = Path(tmp) / "module.bc", Path(tmp) / "module.o"
        source.write_bytes(_load(module).as_bitcode() if isinstance(module, Part) else module.bitcode)
        argv = toolchain.command("-S" if assembly else "-c", f"-O{opt_level}", "-Xclang", "-disable-llvm-passes",
                                 *SJLJ_FLAGS, *(["-mtail-call"] if tail_calls else []), str(source), "-o", str(output))
        try:
            toolchain.run(argv, what="code generation")
        except MeweError as exc:
            lines = (exc.details or str(exc)).strip().splitlines()
            raise CodegenCrash(f"{module.name}: LLVM's code generator crashed: {lines[-1] if lines else exc}") from None
        return output.read_bytes()


def emit_assembly(module: IRModule, opt_level: str = "2", *, tail_calls: bool = False,
                  toolchain: Toolchain | None = None) -> str:
    """The wasm assembly of `module`, as `emit_object` would generate its code."""
    if uses_sjlj(module):
        return _clang_emit(module, opt_level, tail_calls, toolchain or find_toolchain(), assembly=True).decode()
    mod = _load(module)
    return target_machine(mod.triple, opt_level, "+tail-call" if tail_calls else "").emit_assembly(mod)


def emit_objects(modules: list[IRModule | Part], opt_level: str = "2", *, tail_calls: bool = False,
                 jobs: int = 1, toolchain: Toolchain | None = None) -> list[bytes]:
    """`emit_object` for each of `modules` (or parts of one), up to `jobs` at a time."""
    sjlj = {i for i, m in enumerate(modules) if uses_sjlj(m)}
    if sjlj:
        toolchain = toolchain or find_toolchain()
        rest = emit_objects([m for i, m in enumerate(modules) if i not in sjlj], opt_level, tail_calls=tail_calls,
                            jobs=jobs) if len(sjlj) < len(modules) else []
        done = iter(rest)
        return [_clang_emit(m, opt_level, tail_calls, toolchain) if i in sjlj else next(done)
                for i, m in enumerate(modules)]
    features = "+tail-call" if tail_calls else ""
    opt = CODEGEN_OPT[opt_level]
    if DISPOSABLE and (len(modules) == 1 or jobs == 1):
        results = [_in_process(m, opt, features) for m in modules]
    elif hasattr(os, "fork") and threading.active_count() == 1:  # forking a threaded process may deadlock
        results = _forked(modules, opt, features, jobs)
    else:
        source = _CHILD_IMPORTS + inspect.getsource(_emit) + _CHILD

        def run(bitcode: bytes) -> tuple[int, bytes, bytes]:
            proc = subprocess.run([sys.executable, "-c", source, str(opt), features], input=bitcode,
                                  capture_output=True)
            return proc.returncode, proc.stdout, proc.stderr

        bitcodes = [_load(m).as_bitcode() if isinstance(m, Part) else m.bitcode for m in modules]
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            results = list(pool.map(run, bitcodes))
    for module, (status, _, errors) in zip(modules, results):
        if status != 0:
            text = errors.decode("utf-8", "replace")
            found = re.search(r"Assertion `(.*)' failed", text) or re.search(r"LLVM ERROR: (.*)", text)
            what = (f"assertion '{found[1]}' failed" if found and found[0].startswith("Assertion") else
                    found[1] if found else (text.strip().splitlines() or [f"exit status {status}"])[-1])
            raise CodegenCrash(f"{module.name}: LLVM's code generator crashed: {what}")
    return [obj for _, obj, _ in results]


def _in_process(module, opt: int, features: str) -> tuple[int, bytes, bytes]:
    """`_emit` here, as `_forked` reports it. What LLVM writes to stderr goes to a file, not
    to the user: should it abort, the request is compiled again in-process, and reported there."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    with tempfile.TemporaryFile() as err:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            return 0, _emit(_load(module), opt, features), b""
        except RuntimeError as exc:
            return 1, b"", f"LLVM ERROR: {exc}\n".encode()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _forked(modules: list, opt: int, features: str, jobs: int) -> list[tuple[int, bytes, bytes]]:
    """Run `_emit` on each module in a fork, up to `jobs` at once: (exit status, object,
    what it wrote to stderr) for each."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    results: list[tuple[int, bytes, bytes]] = [(1, b"", b"")] * len(modules)
    with contextlib.ExitStack() as stack:
        files = [(stack.enter_context(tempfile.TemporaryFile()), stack.enter_context(tempfile.TemporaryFile()))
                 for _ in modules]
        running: dict[int, int] = {}  # pid -> index
        for i, module in enumerate(modules):
            while len(running) >= max(1, jobs):
                _reap(running, files, results)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: no Python-level cleanup, whatever happens
                status = 1
                try:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C stops it at once
                    faulthandler.disable()  # an abort is reported by the parent, from LLVM's message
                    out, err = files[i]
                    os.dup2(err.fileno(), 2)
                    out.write(_emit(_load(module), opt, features))
                    out.flush()
                    status = 0
                except BaseException as exc:
                    os.write(2, f"LLVM ERROR: {exc}\n".encode())
                finally:
                    os._exit(status)
            running[pid] = i
        while running:
            _reap(running, files, results)
    return results


def _reap(running: dict[int, int], files: list, results: list) -> None:
    """Wait until one of the `running` children (pid -> index) ends; record its result."""
    while True:
        for pid, i in running.items():  # only our own children: a pool's workers are not ours to reap
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                del running[pid]
                out, err = files[i]
                out.seek(0)
                err.seek(0)
                results[i] = (os.waitstatus_to_exitcode(wait_status), out.read(), err.read())
                return
        _wait_for_any(list(running))


def _wait_for_any(pids: list[int]) -> None:
    """Block until one of `pids` (children of ours) may have ended: on their pidfds where the
    system has them (a small module's code takes a few ms, so polling's sleeps would show),
    else a short sleep."""
    fds = []
    try:
        fds = [os.pidfd_open(pid) for pid in pids]
        select.select(fds, [], [], 1.0)
    except (AttributeError, OSError):
        time.sleep(0.005)
    finally:
        for fd in fds:
            os.close(fd)


# Big modules are code-generated in parts, in parallel (as LLVM's parallel LTO code generation
# does): each part defines a contiguous run of the functions and declares the rest. The number
# of parts depends on the module only, never on --jobs, so the output is the same on any machine.
SPLIT_FUNCTIONS = 400  # definitions per part, at least
SPLIT_BYTES = 64 << 10  # or bitcode per part: LLVM takes ~0.15 s to generate 64 KB's code, a part ~0.05 s more
MAX_PARTS = 4
# Linkages a part cannot take apart: constructors lists (appending) would run twice, and
# linkonce/common definitions may sit in comdat groups.
UNSPLITTABLE = {llvm.Linkage.appending, llvm.Linkage.linkonce_any, llvm.Linkage.linkonce_odr, llvm.Linkage.common}
MARKERS = {"llvm.used", "llvm.compiler.used"}  # emit nothing: every part keeps its copy
ALIAS_LINE = re.compile(r"^@.* alias .*$\n?", re.M)
MARKER_LINE = re.compile(r"^@llvm\.(?:compiler\.)?used = .*\n", re.M)
ALIAS_TARGET = re.compile(rf" alias [^@]*, ptr ({GLOBAL_NAME})\s*$")
LOCAL = {"internal", "private"}


def split_module(module: IRModule) -> list["Part"] | None:
    """`module` as parts whose objects, linked together, make the module's program; None if
    it is too small to be worth it or holds what a part cannot take apart.

    Each part keeps the bodies of its own functions (local ones made hidden, so that other
    parts can call them) and declares every other function; global variables and aliases are
    defined in the first part and available_externally (not emitted) in the others."""
    mod = llvm.parse_bitcode(module.bitcode)
    functions = [(f.name, f.is_declaration, f.linkage) for f in mod.functions]  # one walk: each step is a foreign call
    defined = [name for name, declared, _ in functions if not declared]
    parts = min(MAX_PARTS, max(len(defined) // SPLIT_FUNCTIONS, len(module.bitcode) // SPLIT_BYTES), len(defined))
    if parts < 2 or any(linkage in UNSPLITTABLE and name not in MARKERS for name, _, linkage in functions) or \
            any(g.linkage in UNSPLITTABLE and g.name not in MARKERS for g in mod.global_variables):
        return None
    text = str(mod)
    try:
        spans = definitions(mod, text, defined)
        headers = {name: parse_header(text[start:text.index("\n", start)]) for name, start, _ in spans}
    except (ValueError, Unsupported):
        return None
    # Aliases (llvmlite lists none; C's `__main_void` is one) stay with their targets in part 1.
    aliases = ALIAS_LINE.findall(text)
    targets = {unquote_name(t.group(1)) for a in aliases if (t := ALIAS_TARGET.search(a))}
    if len(targets) < len(aliases):
        return None  # an alias of a constant expression: left whole
    total = sum(end - start for _, start, end in spans)
    owner, done = {}, 0
    for name, start, end in spans:  # contiguous runs of about equal size
        owner[name] = 0 if name in targets else min(parts - 1, done * parts // total)
        done += end - start
    markers = MARKER_LINE.findall(text[:spans[0][1]] if spans else text)
    out = []
    declarations: dict[str, str] = {}  # every part but one declares a function: write each line once
    for part in range(parts):
        pieces, at = [], 0
        for name, start, end in spans:
            header = headers[name]
            pieces.append(text[at:start])
            if owner[name] == part:
                body = text[text.index("\n", start):end]
                pieces.append(header.render(prefix=_visible(header.prefix)) + body)
            else:
                if name not in declarations:
                    declarations[name] = _declaration(header) + "\n"
                pieces.append(declarations[name])
            at = end
        pieces.append(text[at:])
        if part:  # the aliases are the first part's (they sit outside the definitions)
            pieces[0], pieces[-1] = ALIAS_LINE.sub("", pieces[0]), ALIAS_LINE.sub("", pieces[-1])
        # Marker lists go last: LLVM's parser resolves a reference to a function not yet seen
        # slowly, and a list of kept bodies names thousands (a part parsed 4x slower).
        pieces[0] = MARKER_LINE.sub("", pieces[0])
        pieces += markers
        out.append(Part(f"{module.name} (part {part + 1} of {parts})", "".join(pieces), part))
    return out


@dataclass(frozen=True)
class Part:
    """One part of a split module, as IR text (parsed where its code is generated, in parallel)."""

    name: str
    text: str
    index: int  # the first part defines the global variables

    def load(self) -> llvm.ModuleRef:
        m = llvm.parse_assembly(self.text)
        for g in m.global_variables:
            if g.name in MARKERS or g.is_declaration:
                continue
            if self.index == 0 and g.linkage in (llvm.Linkage.internal, llvm.Linkage.private):
                g.linkage = llvm.Linkage.external
                g.visibility = llvm.Visibility.hidden
            elif self.index:
                g.linkage = llvm.Linkage.available_externally
                g.visibility = llvm.Visibility.default
        m.verify()
        return m


def _load(module: IRModule | Part) -> llvm.ModuleRef:
    return module.load() if isinstance(module, Part) else llvm.parse_bitcode(module.bitcode)


def _visible(prefix: list[str]) -> list[str]:
    """A definition's prefix with local linkage made hidden: other parts call it."""
    if not LOCAL & set(prefix):
        return prefix
    return ["hidden", *(t for t in prefix if t not in LOCAL and t not in ("default", "dso_local"))]


def _declaration(header: Header) -> str:
    """The `declare` line of a function another part defines."""
    prefix = [t for t in _visible(header.prefix) if t not in LINKAGES]
    params = [" ".join([p.type, *p.attrs]) for p in header.params] + (["..."] if header.varargs else [])
    kept, tokens_ = [], iter(header.suffix)
    for tok in tokens_:
        if tok in ("unnamed_addr", "local_unnamed_addr") or re.fullmatch(r"#\d+|addrspace\(\d+\)", tok):
            kept.append(tok)
        elif tok == "align":
            kept += [tok, next(tokens_, "")]
    return " ".join(["declare", *prefix, header.ret, f"{quote_name(header.name)}({', '.join(params)})", *kept])


def wasm_ld(objects: list[Path], name: str, toolchain: Toolchain, *, extra: tuple[str, ...] = (), verbose: bool = False) -> bytes:
    """Link wasm objects with wasi-libc into a WASI command module called `name`; return its bytes.

    -O2 selects zig's release wasi-libc. libc's debug info is dropped; the name section stays.
    The link happens in a private directory so the module name recorded is `name`, not a temp file's.
    """
    with tempfile.TemporaryDirectory(prefix="mewe-ld-") as tmp:
        output = Path(tmp) / name
        # EH_FLAGS: zig then links a wasi-libc with its setjmp runtime (__wasm_setjmp, ...)
        argv = toolchain.command("-O2", *EH_FLAGS, *map(str, objects), *extra, str(longjmp_tag(toolchain, verbose)),
                                 "-o", str(output))
        try:
            toolchain.run(argv, what="linking", verbose=verbose)
        except MeweError as exc:  # every body that calls a missing function reports it: say it once
            exc.details = "\n".join(dict.fromkeys(exc.details.splitlines()))
            raise
        return strip_debug(output.read_bytes())


LONGJMP_TAG = Path(__file__).resolve().parent.parent / "runtime" / "longjmp_tag.s"  # mewe.runtime's, not imported: it loads wasmtime


def longjmp_tag(toolchain: Toolchain, verbose: bool = False) -> Path:
    """An archive defining the tag longjmp throws (runtime/longjmp_tag.s), built once per
    toolchain and cached. On every link: a link pulls it in only if setjmp/longjmp are used."""
    from mewe.fsutil import atomic_output, cache_dir
    from mewe.toolchain import archiver

    key = hashlib.sha256(repr((toolchain.fingerprint(), LONGJMP_TAG.read_bytes())).encode()).hexdigest()[:24]
    archive = cache_dir("runtime", key) / "libmewe_sjlj.a"
    if archive.is_file():
        return archive
    with tempfile.TemporaryDirectory(prefix="mewe-sjlj-") as tmp:
        toolchain.run(toolchain.command(*toolchain.cflags, "-c", str(LONGJMP_TAG), "-o", "longjmp_tag.o"),
                      what="assembling the longjmp tag", verbose=verbose, cwd=tmp)
        toolchain.run([*archiver(toolchain), "rcs", "libmewe_sjlj.a", "longjmp_tag.o"], what="archiving the longjmp tag",
                      verbose=verbose, cwd=tmp)
        with atomic_output(archive) as out:  # concurrent links may build it at once; one rename wins
            out.write_bytes((Path(tmp) / "libmewe_sjlj.a").read_bytes())
    return archive

