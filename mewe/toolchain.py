"""Find the C frontend and wasm linker: pip's ziglang by default, or a system clang with a WASI sysroot.

The frontend's LLVM must not be newer than llvmlite's, or llvmlite could not read its bitcode.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite.binding as llvm

from .errors import MeweError
from .fsutil import cache_dir

TARGET = "wasm32-wasi"
# wasm's exception handling, for setjmp/longjmp: wasi-libc's setjmp.h requires it, and code
# generation (linker.codegen) lowers setjmp calls onto it. Code that uses neither is unchanged.
EH_FLAGS = ("-mexception-handling",)
WASI_SYSROOTS = ("/usr/share/wasi-sysroot", "/usr/lib/wasi-sysroot", "/opt/wasi-sdk/share/wasi-sysroot")


def llvmlite_major() -> int:
    return llvm.llvm_version_info[0]


@dataclass(frozen=True)
class Toolchain:
    """A clang-compatible driver that compiles C for wasm32-wasi and links with wasm-ld + wasi-libc."""

    kind: str  # "zig" or "clang"
    driver: tuple[str, ...]  # command prefix, e.g. (".../zig", "cc") or ("clang-22",)
    llvm_major: int
    target_flags: tuple[str, ...]
    cflags: tuple[str, ...] = ()  # compile-only flags the driver needs
    env: dict[str, str] = field(default_factory=dict, compare=False)

    def command(self, *args: str) -> list[str]:
        return [*self.driver, *self.target_flags, *args]

    def fingerprint(self) -> tuple:
        """What output depends on: the driver, its flags and environment, and its binary's size
        and modification time (an upgraded compiler makes a new fingerprint)."""
        return (self.kind, self.driver, self.llvm_major, self.target_flags, self.cflags,
                tuple(sorted(self.env.items())), _binary_stamp(self.driver[0]))

    def run(self, argv: list[str], *, what: str, verbose: bool = False, cwd: str | None = None) -> subprocess.CompletedProcess:
        """Run a driver command; on failure raise MeweError with its diagnostics as details."""
        if verbose:
            print("+ " + shlex.join(argv), file=sys.stderr)
        env = {**os.environ, **self.env}
        try:
            proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as exc:
            raise MeweError(f"cannot run the C toolchain '{argv[0]}': {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise MeweError(f"{what} failed", details=(proc.stderr + proc.stdout).rstrip())
        return proc


def _zig_toolchain() -> Toolchain:
    try:
        import ziglang
    except ImportError:
        raise MeweError("no C frontend: install the 'ziglang' package (pip install ziglang==0.17.0) or set MEWE_CC to a clang with a WASI sysroot") from None
    zig = Path(ziglang.__file__).parent / "zig"
    cache = cache_dir("zig")
    env = {"ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)}
    # zig cc turns UBSan on below -O2, but its runtime is not linked for wasm.
    return Toolchain("zig", (str(zig), "cc"), 0, ("-target", TARGET), ("-fno-sanitize=undefined", *EH_FLAGS), env)


def _clang_toolchain(spec: str) -> Toolchain:
    driver = tuple(shlex.split(spec))
    if not driver or shutil.which(driver[0]) is None:
        raise MeweError(f"C compiler '{spec}' not found (MEWE_CC/--cc); install clang and lld with a WASI sysroot, or unset it to use ziglang")
    flags = [f"--target={TARGET}"]
    sysroot = os.environ.get("MEWE_WASI_SYSROOT") or next((s for s in WASI_SYSROOTS if os.path.isdir(s)), None)
    if sysroot:
        flags.append(f"--sysroot={sysroot}")
    return Toolchain("clang", driver, 0, tuple(flags), EH_FLAGS)


def archiver(toolchain: Toolchain, *, ranlib: bool = False) -> list[str]:
    """llvm-ar (or llvm-ranlib) for this toolchain: zig's, or the system one of clang's version.
    GNU ar cannot index wasm objects, and wasm-ld needs the index."""
    tool = "ranlib" if ranlib else "ar"
    if toolchain.kind == "zig":
        return [toolchain.driver[0], tool]
    for name in (f"llvm-{tool}-{toolchain.llvm_major}", f"llvm-{tool}"):
        if found := shutil.which(name):
            return [found]
    raise MeweError(f"no llvm-{tool} for clang {toolchain.llvm_major}: install llvm-{toolchain.llvm_major}")


@functools.lru_cache(maxsize=None)
def _version_major(driver: tuple[str, ...], env_items: tuple[tuple[str, str], ...]) -> int:
    """The driver's clang major version, remembered on disk per driver binary: asking it costs
    a process (about 30 ms), and mewe-cc is run hundreds of times by a configure script."""
    from mewe.passes import cache

    stamp = _binary_stamp(driver[0])
    key = cache.digest("clang-version", driver, stamp, env_items)
    major = cache.load("clang-version", key, root="toolchain") if stamp else None
    if not isinstance(major, int):
        major = _ask_version_major(driver, env_items)
        if stamp:
            cache.store("clang-version", key, major, root="toolchain")
    return major


def _binary_stamp(program: str) -> tuple | None:
    """(path, size, mtime) of the executable `program` names, or None if there is none."""
    found = shutil.which(program)
    try:
        st = os.stat(found) if found else None
    except OSError:
        return None
    return st and (os.path.realpath(found), st.st_size, st.st_mtime_ns)


def _ask_version_major(driver: tuple[str, ...], env_items: tuple[tuple[str, str], ...]) -> int:
    try:
        out = subprocess.run([*driver, "--version"], env={**os.environ, **dict(env_items)},
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise MeweError(f"cannot run the C compiler '{driver[0]}': {exc.strerror or exc}") from None
    match = re.search(r"clang version (\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise MeweError(f"'{shlex.join(driver)}' is not a clang driver (its --version names no clang version)")
    return int(match.group(1))


def find_toolchain(cc: str | None = None) -> Toolchain:
    """The C toolchain: `cc` (or $MEWE_CC) if given, else ziglang's clang.

    Raises MeweError when it is missing or its LLVM is newer than llvmlite's.
    """
    spec = cc or os.environ.get("MEWE_CC")
    base = _clang_toolchain(spec) if spec else _zig_toolchain()
    major = _version_major(base.driver, tuple(sorted(base.env.items())))
    limit = llvmlite_major()
    if major > limit:
        raise MeweError(
            f"C frontend '{shlex.join(base.driver)}' uses LLVM {major}, newer than llvmlite's LLVM {limit}: "
            f"install clang-{limit} and lld-{limit} (or use the default ziglang frontend)"
        )
    return dataclasses.replace(base, llvm_major=major)
