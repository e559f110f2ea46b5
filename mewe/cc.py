"""`mewe-cc`: a drop-in for clang/gcc in make, CMake and autotools builds (and `mewe-ar`,
`mewe-ranlib`). A thin layer over `mewe.separate`.

    make CC=mewe-cc AR=mewe-ar RANLIB=mewe-ranlib
    ./configure --host=wasm32-wasi CC=mewe-cc AR=mewe-ar RANLIB=mewe-ranlib

`-c` diversifies each translation unit into a wasm object (so `make -j` and incremental
builds work as before); a link adds the runtime. `-c -flto` keeps units as bitcode and the
link diversifies the whole program. Preprocessing, `--version`, `-dumpmachine`, `-print-*`
and assembly sources go to the underlying clang unchanged.

mewe's own settings ride along in CFLAGS or the environment: `-mewe-variants=N`,
`-mewe-seed=S`, `-mewe-passes=A,B`, `-mewe-policy=P`, ... or MEWE_VARIANTS, MEWE_SEED, ...
(flags win over the environment, which wins over mewe.toml).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mewe.config import KEYS, apply_settings, find_settings
from mewe.errors import MeweError, run_reporting
from mewe.types import C_SUFFIXES, IR_SUFFIXES, OPT_LEVELS, CompileOptions, MultivariantOptions

PROG = "mewe-cc"
DEFAULT_VARIANTS = 4
# Driver-only settings besides MultivariantOptions' (see config.KEYS).
DRIVER_KEYS = ("manifest", "verbose", "emit")
ASM_SUFFIXES = (".s", ".S")
# Flags whose value is the next argument (or joined to them).
COMPILE_WITH_ARG = ("-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-iprefix",
                    "-iwithprefix", "-isysroot", "-Xclang")
DEP_WITH_ARG = ("-MF", "-MT", "-MQ")
LINK_WITH_ARG = ("-L", "-l", "-Xlinker", "-z", "-u", "-e")
INFO_FLAGS = ("--version", "-dumpmachine", "-dumpversion", "-dumpfullversion", "--help", "-help")
# Accepted and ignored, as other wasm toolchains do: position-independent code, debug info
# (variants are compared by code), stripping (mewe keeps only the name section anyway).
IGNORED = ("-fPIC", "-fpic", "-fPIE", "-fpie", "-fno-PIC", "-fno-pic", "-fno-PIE", "-fno-pie", "-pie", "-no-pie",
           "-rdynamic", "-s", "-pipe",
           "-march=native", "-mtune=native", "-mcpu=native")  # the build host's CPU: nothing to wasm32
UNSUPPORTED = {
    "-pthread": "threads are not supported on wasm32-wasi",
    "-pthreads": "threads are not supported on wasm32-wasi",
    "-shared": "shared libraries are not supported on wasm32-wasi; build a static library",
    "-fopenmp": "OpenMP is not supported on wasm32-wasi",
}


@dataclass
class Command:
    """One parsed compiler command line."""

    mode: str = "link"  # link, compile (-c), assemble (-S), preprocess (-E/-M/-MM), info
    output: str | None = None
    sources: list[str] = field(default_factory=list)  # inputs to compile, with their language
    languages: dict[str, str] = field(default_factory=dict)  # source -> "c", "ir" or "asm"
    link_items: list[str] = field(default_factory=list)  # objects, archives, -l/-L/-Wl in order
    compile_flags: list[str] = field(default_factory=list)  # for clang when it compiles a source
    dep_flags: list[str] = field(default_factory=list)  # -MD, -MF f, ...
    passthrough: list[str] = field(default_factory=list)  # the whole line, for modes clang handles
    opt_level: str = "2"
    emit_llvm: bool = False
    lto: bool = False
    verbose: bool = False
    settings: dict[str, str] = field(default_factory=dict)  # -mewe-KEY=VALUE


def expand_response_files(argv: Sequence[str], depth: int = 0) -> list[str]:
    """`@file` arguments replaced by the (shell-quoted) arguments in the file."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("@") and len(arg) > 1:
            path = Path(arg[1:])
            if depth > 16:
                raise MeweError(f"response file {path}: nested too deeply")
            try:
                text = path.read_text()
            except OSError as exc:
                raise MeweError(f"response file {path}: {exc.strerror or exc}") from None
            out += expand_response_files(shlex.split(text), depth + 1)
        else:
            out.append(arg)
    return out


def _opt_level(flag: str) -> str:
    level = flag[2:] or "1"
    level = {"g": "1", "fast": "3", "4": "3"}.get(level, level)
    if level not in OPT_LEVELS:
        raise MeweError(f"invalid optimization level '{flag}'")
    return level


def parse_args(argv: Sequence[str]) -> Command:
    """Classify a clang/gcc command line; raises MeweError for flags WASI cannot honour."""
    cmd = Command()
    args = expand_response_files(argv)
    cmd.passthrough = [a for a in args if not a.startswith("-mewe-")]
    language = None  # from -x
    i = 0

    def value(flag: str) -> str:
        nonlocal i
        if i + 1 >= len(args):
            raise MeweError(f"argument to '{flag}' is missing (expected 1 value)")
        i += 1
        return args[i]

    while i < len(args):
        a = args[i]
        if a.startswith("-mewe-"):
            key, sep, val = a[len("-mewe-"):].partition("=")
            cmd.settings[key] = val if sep else "1"
        elif a in UNSUPPORTED:
            raise MeweError(f"{a}: {UNSUPPORTED[a]}")
        elif a in IGNORED or a.startswith(("-g", "-fdebug-", "-gdwarf")) and a not in ("-gz",):
            pass
        elif a == "-c":
            cmd.mode = "compile" if cmd.mode in ("link", "compile") else cmd.mode
        elif a == "-S":
            cmd.mode = "assemble" if cmd.mode != "preprocess" else cmd.mode
        elif a in ("-E", "-M", "-MM"):
            cmd.mode = "preprocess"
        elif a in INFO_FLAGS or a.startswith(("-print-", "--print-")):
            cmd.mode = "info"
        elif a == "-o":
            cmd.output = value(a)
        elif a.startswith("-o"):
            cmd.output = a[2:]
        elif a == "-v":
            cmd.verbose = True
        elif a.startswith("-O"):
            cmd.opt_level = _opt_level(a)
        elif a == "-emit-llvm":
            cmd.emit_llvm = True
        elif a in ("-flto", "-flto=full", "-flto=thin"):
            cmd.lto = True
        elif a == "-fno-lto":
            cmd.lto = False
        elif a in ("--target", "-target") or a.startswith("--target="):
            target = a.partition("=")[2] if "=" in a else value(a)
            if not target.startswith("wasm32-wasi") and not target.startswith("wasm32-unknown-wasi"):
                raise MeweError(f"unsupported target '{target}': mewe-cc builds for wasm32-wasi")
        elif a == "-x":
            language = value(a)
            cmd.compile_flags += ["-x", language]
            if language == "none":
                language = None
        elif a in ("-MD", "-MMD", "-MP", "-MG"):
            cmd.dep_flags.append(a)
        elif a in DEP_WITH_ARG:
            cmd.dep_flags += [a, value(a)]
        elif a.startswith(DEP_WITH_ARG):
            cmd.dep_flags += [a[:3], a[3:]]
        elif a in COMPILE_WITH_ARG:
            cmd.compile_flags += [a, value(a)]
        elif a in LINK_WITH_ARG:
            cmd.link_items += [a, value(a)]
        elif a.startswith(("-l", "-L", "-Wl,", "-z")) or a in ("-nostdlib", "-nostartfiles", "-nodefaultlibs", "-static"):
            cmd.link_items.append(a)
        elif a.startswith("-mexec-model="):
            cmd.link_items.append(a)
            cmd.compile_flags.append(a)
        elif a.startswith("-") and a != "-":  # "-" is stdin, an input
            cmd.compile_flags.append(a)  # -W, -f, -m, -std=, -D/-I joined, ...: clang judges them
        else:
            suffix = Path(a).suffix
            lang = {"c": "c", "c-header": "c", "cpp-output": "c", "ir": "ir", "assembler": "asm",
                    "assembler-with-cpp": "asm"}.get(language or "", None)
            if lang is None and language is None:
                lang = ("c" if suffix in C_SUFFIXES else "ir" if suffix in IR_SUFFIXES
                        else "asm" if suffix in ASM_SUFFIXES else None)
            elif lang is None:
                raise MeweError(f"{a}: language '{language}' is not supported (C only)")
            if lang is None:
                cmd.link_items.append(a)
            else:
                cmd.sources.append(a)
                cmd.languages[a] = lang
                cmd.link_items.append(a)  # replaced by its object at link time
        i += 1
    if cmd.mode != "info" and not cmd.sources and not any(x == "-" or not x.startswith("-") for x in cmd.link_items):
        if cmd.verbose:
            cmd.mode = "info"  # `cc -v`: the compiler's version and configuration
        else:
            raise MeweError("no input files")
    if cmd.mode in ("compile", "assemble") and cmd.output and len(cmd.sources) > 1:
        raise MeweError("cannot specify -o when generating multiple output files")
    return cmd


def _setting_value(key: str, text: str, spelled: str) -> Any:
    """A -mewe-KEY=VALUE or MEWE_KEY value, typed like its mewe.toml spelling."""
    default = getattr(MultivariantOptions(), KEYS[key])
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise MeweError(f"{spelled}={text}: expected 1 or 0")
    if isinstance(default, (int, float)):
        try:
            return type(default)(text)
        except ValueError:
            raise MeweError(f"{spelled}={text}: expected {'an integer' if isinstance(default, int) else 'a number'}") from None
    return text


def multivariant_options(settings: dict[str, str], environ: dict[str, str] | None = None) -> tuple[MultivariantOptions, dict[str, str]]:
    """mewe.toml, then MEWE_* variables, then -mewe-* flags; and the driver-only settings."""
    environ = os.environ if environ is None else environ
    options = MultivariantOptions(variants=DEFAULT_VARIANTS, jobs=1, executor="serial")
    origin, file_settings = find_settings()
    if file_settings:
        options = apply_settings(options, file_settings, origin)
    driver: dict[str, str] = {}
    for source, items in (("environment", {k[5:].lower().replace("_", "-"): v for k, v in environ.items()
                                            if k.startswith("MEWE_") and k != "MEWE_CC"}),
                          ("flags", settings)):
        typed = {}
        for key, text in items.items():
            if key in DRIVER_KEYS:
                driver[key] = text
            elif key in KEYS:
                spelled = f"-mewe-{key}" if source == "flags" else "MEWE_" + key.upper().replace("-", "_")
                typed[key] = _setting_value(key, text, spelled)
            elif source == "flags":
                known = ", ".join(sorted([*KEYS, *DRIVER_KEYS]))
                raise MeweError(f"unknown option '-mewe-{key}' (known: -mewe-{{{known}}})")
        if typed:
            options = apply_settings(options, typed, source)
    if options.jobs > 1 and options.executor == "serial":  # -mewe-jobs=N asks for processes
        options = dataclasses.replace(options, executor=None)
    return options, driver


def _clang(args: list[str], verbose: bool, *, cflags: bool = False) -> int:
    """Run the underlying clang (for wasm32-wasi) with `args`, streams inherited; with `cflags`,
    the compile flags mewe's own compiles use too (so that preprocessing sees the same headers)."""
    from mewe.toolchain import find_toolchain

    toolchain = find_toolchain()
    argv = toolchain.command(*(toolchain.cflags if cflags else ()), *args)
    if verbose:
        print("+ " + shlex.join(argv), file=sys.stderr)
    try:
        return subprocess.run(argv, env={**os.environ, **toolchain.env}).returncode
    except OSError as exc:
        raise MeweError(f"cannot run '{argv[0]}': {exc.strerror or exc}") from None


def _object_name(source: str, suffix: str) -> str:
    return Path(source).with_suffix(suffix).name


def _dep_flags(cmd: Command, output: str) -> list[str]:
    """Dependency-file flags for a clang that writes to a temporary file: name the real target."""
    flags = list(cmd.dep_flags)
    if not flags:
        return flags
    if any(f in ("-MD", "-MMD") for f in flags) and "-MF" not in flags:
        flags += ["-MF", str(Path(output).with_suffix(".d"))]
    if "-MT" not in flags and "-MQ" not in flags:
        flags += ["-MT", output]
    return flags


def _compile(cmd: Command, source: str, output: str, emit: str, mv: MultivariantOptions) -> None:
    from mewe.separate import compile_unit

    if output == "-":  # `-o -`: the output on stdout, as clang writes it
        with tempfile.TemporaryDirectory(prefix="mewe-cc-") as tmp:
            out = Path(tmp) / _object_name(source if source != "-" else "stdin", ".out")
            _compile(cmd, source, str(out), emit, mv)
            sys.stdout.buffer.write(out.read_bytes())
            sys.stdout.buffer.flush()
        return
    options = CompileOptions(opt_level=cmd.opt_level, extra_flags=tuple(cmd.compile_flags),
                             dependency_flags=tuple(_dep_flags(cmd, output)))
    if cmd.languages[source] == "c" and Path(source).suffix not in C_SUFFIXES:
        # -x c on a file named otherwise, or `-` (stdin): a copy named .c for the frontend
        try:
            text = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise MeweError(f"{source}: {exc.strerror or exc}") from None
        with tempfile.TemporaryDirectory(prefix="mewe-cc-") as tmp:
            copy = Path(tmp) / (("stdin" if source == "-" else Path(source).name) + ".c")
            copy.write_bytes(text)
            compile_unit(copy, output, options=options, multivariant=mv, emit=emit, unit=source, verbose=cmd.verbose)
        return
    compile_unit(source, output, options=options, multivariant=mv, emit=emit, unit=source, verbose=cmd.verbose)


def run(argv: Sequence[str]) -> int:
    """What `mewe-cc ARGS` does; returns the exit status."""
    cmd = parse_args(argv)
    if cmd.mode in ("info", "preprocess"):
        return _clang([a for a in cmd.passthrough if a not in IGNORED], cmd.verbose, cflags=cmd.mode == "preprocess")
    mv, driver = multivariant_options(cmd.settings)
    if driver.get("verbose") in ("1", "true"):
        cmd.verbose = True
    plain = dataclasses.replace(mv, variants=0)  # bitcode units: -flto diversifies them at link time, whole
    if cmd.mode in ("compile", "assemble"):
        for source in cmd.sources:
            if cmd.languages[source] == "asm":
                flag = "-c" if cmd.mode == "compile" else "-S"
                out = cmd.output or _object_name(source, ".o" if cmd.mode == "compile" else ".s")
                status = _clang([*cmd.compile_flags, flag, source, "-o", out], cmd.verbose)
                if status:
                    return status
                continue
            if cmd.mode == "compile" and (cmd.emit_llvm or cmd.lto):
                _compile(cmd, source, cmd.output or _object_name(source, ".o"), "bitcode", plain)
            elif cmd.mode == "compile":
                _compile(cmd, source, cmd.output or _object_name(source, ".o"), "object", mv)
            else:  # -S: the unit after diversification, as wasm assembly or LLVM IR
                emit = "ir" if cmd.emit_llvm else "assembly"
                _compile(cmd, source, cmd.output or _object_name(source, ".ll" if cmd.emit_llvm else ".s"), emit, mv)
        return 0
    return _link(cmd, mv, plain, driver)


def _link(cmd: Command, mv: MultivariantOptions, plain: MultivariantOptions, driver: dict[str, str]) -> int:
    from mewe.separate import link

    output = cmd.output or "a.out"
    with tempfile.TemporaryDirectory(prefix="mewe-cc-") as tmp:
        items = []
        for k, item in enumerate(cmd.link_items):
            if item in cmd.languages:
                obj = str(Path(tmp) / f"{k}-{_object_name(item, '.o')}")
                if cmd.languages[item] == "asm":
                    status = _clang([*cmd.compile_flags, "-c", item, "-o", obj], cmd.verbose)
                    if status:
                        return status
                elif cmd.lto:
                    _compile(cmd, item, obj, "bitcode", plain)
                else:
                    _compile(cmd, item, obj, "object", mv)
                items.append(obj)
            else:
                items.append(item)
        options = CompileOptions(opt_level=cmd.opt_level)
        link(items, output, options=options, multivariant=mv, write_manifest=driver.get("manifest") in ("1", "true"),
             verbose=cmd.verbose, emit=driver.get("emit", "module"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting(PROG, lambda: run(sys.argv[1:] if argv is None else argv))


def _tool(name: str, argv: Sequence[str] | None, *, ranlib: bool) -> int:
    from mewe.toolchain import archiver
    from mewe.toolchain import find_toolchain

    def invoke() -> int:
        toolchain = find_toolchain()
        tool = archiver(toolchain, ranlib=ranlib)
        args = expand_response_files(sys.argv[1:] if argv is None else argv)
        return subprocess.run([*tool, *args], env={**os.environ, **toolchain.env}).returncode

    return run_reporting(name, invoke)


def ar_main(argv: Sequence[str] | None = None) -> int:
    """`mewe-ar`: llvm-ar, which indexes the symbols of wasm objects (GNU ar cannot)."""
    return _tool("mewe-ar", argv, ranlib=False)


def ranlib_main(argv: Sequence[str] | None = None) -> int:
    """`mewe-ranlib`: llvm-ranlib, for the same reason."""
    return _tool("mewe-ranlib", argv, ranlib=True)


if __name__ == "__main__":
    sys.exit(main())
