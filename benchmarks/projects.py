"""Real projects, built unmodified by their own build systems with mewe-cc, checked against
plain builds of themselves.

Each project's source comes from a Python package's sdist, downloaded by package name (pip) into
the cache (~/.cache/mewe/projects), never into the repository. Each is built twice the way its
own documentation says, with mewe-cc as the C compiler: plain (MEWE_VARIANTS=0: mewe's
frontend and codegen, no diversification) and multivariant (MEWE_VARIANTS, default 4). Flags a
project needs on WASI are the documented, flag-level workarounds listed per project below;
no source file is edited. Then every check (the project's own test suite where it runs on WASI,
and workloads of its own programs) runs on the plain build twice (a check whose output differs
between two plain runs is compared by exit status only) and on the multivariant build under
`random`, `seeded:S` and every `pinned:K`; exit status and output must equal the plain build's.

    python benchmarks/projects.py                       # every project
    python benchmarks/projects.py --projects lua --seeds 1 --json out.json

The libsodium suite (autotools, its own test programs) has its own script, libsodium.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Check:
    """One program run: the module, its arguments, stdin file, working directory (preopened as .,
    and the whole tree at its own path)."""

    label: str
    program: Path
    args: tuple[str, ...]
    cwd: Path
    stdin: Path | None = None
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Project:
    name: str
    package: str  # pip requirement whose sdist holds the source
    sdist: str  # its file name
    root: str  # the project's directory inside the sdist (or a tarball in it: see `inner`)
    system: str  # make, CMake or autotools
    workarounds: str  # what WASI needed, as flags
    build: Callable[[Path, dict], None]  # (source tree copy, environment) -> builds in place
    checks: Callable[[Path], list[Check]]  # the built tree -> what to run
    program: Callable[[Path], Path]  # the built tree -> its main program (for the manifest)
    inner: str = ""  # the project's directory inside the tarball `root` names


def _sh(argv: list[str], cwd: Path, env: dict, log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed in {cwd} (log {log}):\n" + "\n".join(tail))


# --- Lua 5.4 (make; an interpreter with its own test suite, the `testes` directory) ----------

LUA_CFLAGS = ("-std=c99 -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS "
              "'-Dl_system(c)=-1' -DLUA_TMPNAMBUFSIZE=32 '-Dlua_tmpnam(b,e)=e=1' -include {compat}")
LUA_LIBS = "-lwasi-emulated-signal -lwasi-emulated-process-clocks"
# WASI has no tmpfile(): io.tmpfile() then fails as on a system out of temporary files.
COMPAT_H = """#include <errno.h>
#include <stdio.h>
static inline FILE *mewe_no_tmpfile(void) { errno = ENOTSUP; return NULL; }
#define tmpfile mewe_no_tmpfile
"""


def build_lua(tree: Path, env: dict) -> None:
    compat = tree / "wasi-compat.h"  # a header given by -include: the sources stay as they are
    compat.write_text(COMPAT_H)
    _sh(["make", "-j2", "CC=mewe-cc", f"MYCFLAGS={LUA_CFLAGS.format(compat=compat)}", "MYLDFLAGS=",
         f"MYLIBS={LUA_LIBS}", "AR=mewe-ar rc", "RANLIB=mewe-ranlib"], tree, env, tree / "mewe-build.log")


def lua_checks(tree: Path) -> list[Check]:
    testes = tree / "testes"
    # _port and _soft: the suite's own switches for portable, lighter runs. A fixed random seed,
    # as math.random is seeded from the clock (tests that reseed it are compared by status).
    return [Check(f"testes/{t.name}", tree / "lua", ("-e", "_port=true; _soft=true; math.randomseed(42)", t.name), testes)
            for t in sorted(testes.glob("*.lua")) if t.name not in ("all.lua", "heavy.lua")]


# --- zlib-ng (CMake; its ctest tests, and minigzip/minideflate round trips) -------------------

def build_zlib_ng(tree: Path, env: dict) -> None:
    log = tree / "mewe-build.log"
    cmake = str(BIN / "cmake") if (BIN / "cmake").exists() else "cmake"
    _sh([cmake, "-S", ".", "-B", "build", f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/mewe-toolchain.cmake",
         f"-DMEWE_BIN_DIR={BIN}", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DWITH_GTEST=OFF"],
        tree, env, log)
    _sh([cmake, "--build", "build", "-j2"], tree, env, log)


def zlib_ng_checks(tree: Path) -> list[Check]:
    build, data = tree / "build", tree / "test" / "data"
    checks = [Check("ctest example", build / "example.wasm", (), build),
              Check("ctest infcover", build / "infcover.wasm", (), build)]
    for name in ("lcet10.txt", "paper-100k.pdf", "fireworks.jpg"):  # compressed bytes compared
        for flags in (("-1",), ("-6",), ("-9",), ("-6", "-h"), ("-6", "-R"), ("-6", "-F")):
            checks.append(Check(f"minigzip {' '.join(flags)} {name}", build / "minigzip.wasm", flags, build, data / name))
        checks.append(Check(f"minideflate raw, sync flush {name}", build / "minideflate.wasm",
                            ("-c", "-k", "-9", "-s", "2", "-w", "-15", str(data / name)), build))
    return checks


# --- jq (autotools; a JSON query language: parser, compiler, interpreter; oniguruma inside) -----

def build_jq(tree: Path, env: dict) -> None:
    log = tree / "mewe-build.log"
    _sh(["./configure", "--host=wasm32-wasi", "--disable-shared", "--disable-docs", "--disable-maintainer-mode",
         "--with-oniguruma=builtin", "CC=mewe-cc", "AR=mewe-ar", "RANLIB=mewe-ranlib",
         "CFLAGS=-O2 -D_WASI_EMULATED_SIGNAL", "LIBS=-lwasi-emulated-signal"], tree, env, log)
    _sh(["make", "-j2"], tree, env, log)


DEEP = ("range(9999)", "range(10000)", "range(10001)")


def jq_checks(tree: Path) -> list[Check]:
    """jq's own test files, run as its tests/*test scripts do (`jq -L tests/modules --run-tests`).
    From jq.test, the cases that nest 10,000 levels deep are left out: they need a deeper
    native stack than wasmtime gives wasm (512 KiB), and overflow it in the plain build too."""
    tests = tree / "tests"
    blocks = (tests / "jq.test").read_text().split("\n\n")
    (tests / "jq-wasm.test").write_text("\n\n".join(b for b in blocks if not any(d in b for d in DEEP)))
    pager = (("PAGER", "less"),)  # as tests/mantest sets it: a man page example reads $ENV.PAGER
    return [Check(f"tests/{name}", tree / "jq", ("-L", "tests/modules", "--run-tests", f"tests/{name}"), tree,
                  env=pager if name.startswith("man") else ())
            for name in ("jq-wasm.test", "man.test", "manonig.test", "onig.test", "base64.test", "uri.test",
                         "optional.test")]


PROJECTS = {
    "lua": Project("lua", "lupa==2.8", "lupa-2.8.tar.gz", "lupa-2.8/third-party/lua54", "make",
                   "-D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS with -lwasi-emulated-signal "
                   "-lwasi-emulated-process-clocks (wasi-libc's own emulations); Lua's configuration macros "
                   "l_system, lua_tmpnam and LUA_TMPNAMBUFSIZE (WASI has no system() or tmpnam()); -include of "
                   "a header making tmpfile() fail (WASI has none)",
                   build_lua, lua_checks, lambda tree: tree / "lua"),
    "zlib-ng": Project("zlib-ng", "zlib-ng==1.1.0", "zlib_ng-1.1.0.tar.gz", "zlib_ng-1.1.0/src/zlib_ng/zlib-ng", "CMake",
                       "-DBUILD_SHARED_LIBS=OFF (WASI has no shared libraries; zlib-ng asks for one explicitly) "
                       "-DWITH_GTEST=OFF (its gtest suite is C++, and downloads googletest)",
                       build_zlib_ng, zlib_ng_checks, lambda tree: tree / "build" / "minigzip.wasm"),
    "jq": Project("jq", "jq==1.13.0", "jq-1.13.0.tar.gz", "jq-1.13.0/deps/jq-1.8.2.tar.gz", "autotools",
                  "-D_WASI_EMULATED_SIGNAL with -lwasi-emulated-signal (wasi-libc's emulation)",
                  build_jq, jq_checks, lambda tree: tree / "jq", inner="jq-1.8.2"),
}


def cache_root() -> Path:
    from mewe.fsutil import cache_dir

    return cache_dir("projects")


def fetch(project: Project) -> Path:
    """The project's source tree, unpacked once from its sdist (downloaded by pip, by name)."""
    root = cache_root()
    tree = root / "src" / project.name
    if tree.is_dir():
        return tree
    sdist = root / project.sdist
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        project.package, "-d", str(root)], check=True)
    staging = root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(staging, members=[m for m in tar.getmembers()
                                         if m.name == project.root or m.name.startswith(project.root + "/")],
                       filter="tar")
    top = staging / project.root
    if project.inner:  # a release tarball the sdist carries
        with tarfile.open(top) as tar:
            tar.extractall(staging / "inner", members=[m for m in tar.getmembers()
                                                       if m.name.startswith(project.inner + "/")], filter="tar")
        top = staging / "inner" / project.inner
    tree.parent.mkdir(parents=True, exist_ok=True)
    os.replace(top, tree)
    shutil.rmtree(staging, ignore_errors=True)
    return tree


def lines_of_c(tree: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in tree.rglob("*.c"))


def run_check(check: Check, tree: Path, policy: str | None) -> tuple[int, str, float]:
    """(exit status, digest of stdout, seconds) of one check, in this process."""
    from mewe import MeweError, run

    out = check.cwd / f".mewe-check-{os.getpid()}.out"
    start = time.perf_counter()
    try:
        status = run(check.program, list(check.args), env=dict(check.env), dirs=[f"{check.cwd}::.", f"{tree}::{tree}"],
                     stdin=check.stdin or os.devnull, stdout=out, stderr=os.devnull, policy=policy)
    except MeweError as err:
        status = err.exit_code
    elapsed = time.perf_counter() - start
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16] if out.exists() else ""
    out.unlink(missing_ok=True)
    return status, digest, elapsed


def build_tree(project: Project, source: Path, dest: Path, settings: dict) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, symlinks=True)
    env = {**os.environ, **settings, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    project.build(dest, env)
    return time.perf_counter() - start


def evaluate(project: Project, work: Path, variants: int, seeds: int, rounds: int, reuse: bool) -> dict:
    source = fetch(project)
    trees = {"plain": work / project.name / "plain", "multivariant": work / project.name / "multivariant"}
    # MEWE_CACHE=0: every variant made anew, so the build time is a cold build's.
    settings = {"plain": {"MEWE_VARIANTS": "0"},
                "multivariant": {"MEWE_VARIANTS": str(variants), "MEWE_CACHE": "0", "MEWE_MANIFEST": "1"}}
    out: dict = {"project": project.name, "system": project.system, "package": project.package,
                 "workarounds": project.workarounds, "lines_of_c": lines_of_c(source)}
    for kind, tree in trees.items():
        if not (reuse and project.program(tree).exists()):
            out[f"{kind}_build_s"] = build_tree(project, source, tree, settings[kind])
            print(f"{project.name}: {kind} build {out[f'{kind}_build_s']:.0f} s", flush=True)
    manifest = json.loads(project.program(trees["multivariant"]).with_name(
        project.program(trees["multivariant"]).stem + ".manifest.json").read_text())
    functions = manifest["functions"]
    dispatched = [f for f in functions if f["status"] == "dispatched"]
    widest = max((f["variants"] for f in dispatched), default=1)
    out.update(functions=len(functions), dispatched=len(dispatched), widest=widest)

    plain_checks, mv_checks = project.checks(trees["plain"]), project.checks(trees["multivariant"])
    expected = {c.label: run_check(c, trees["plain"], None) for c in plain_checks}
    policies = [None] + [f"seeded:{s}" for s in range(1, seeds + 1)] + [f"pinned:{k}" for k in range(widest)]
    got = {(c.label, p): run_check(c, trees["multivariant"], p) for c in mv_checks for p in policies}
    # The plain build again, seconds later: output that changed depends on the clock (Lua's
    # math.random seed, timings), not on the build; such checks are compared by exit status.
    deterministic = {c.label: run_check(c, trees["plain"], None)[:2] == expected[c.label][:2] for c in plain_checks}
    mismatches = []
    for (label, policy), result in got.items():
        want = expected[label]
        if result[:2] != want[:2] and (deterministic[label] or result[0] != want[0]):
            mismatches.append(f"{label} under {policy or 'random'}: {result[:2]} != {want[:2]}")
    out.update(checks=len(plain_checks), plain_passing=sum(r[0] == 0 for r in expected.values()),
               nondeterministic=[k for k, v in deterministic.items() if not v],
               plain_failing={k: r[0] for k, r in expected.items() if r[0] != 0},
               policies=len(policies), runs=len(got), mismatches=mismatches)
    # Run time, side by side: each check plain then multivariant, `rounds` times; medians summed.
    plain_s = multi_s = 0.0
    for p_check, m_check in zip(plain_checks, mv_checks):
        times: tuple[list, list] = ([], [])
        for _ in range(rounds):
            times[0].append(run_check(p_check, trees["plain"], None)[2])
            times[1].append(run_check(m_check, trees["multivariant"], None)[2])
        plain_s += statistics.median(times[0])
        multi_s += statistics.median(times[1])
    out.update(plain_run_s=plain_s, multivariant_run_s=multi_s, run_ratio=multi_s / plain_s)
    if "plain_build_s" in out and "multivariant_build_s" in out:
        out["build_ratio"] = out["multivariant_build_s"] / out["plain_build_s"]
    return out


def table(results: list[dict]) -> str:
    rows = ["| project | build system | lines of C | functions diversified | build plain → multivariant | "
            "checks passing (plain) | multivariant runs identical | run time ratio |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        build = (f"{r['plain_build_s']:.0f} s → {r['multivariant_build_s']:.0f} s ({r['build_ratio']:.1f}x)"
                 if "build_ratio" in r else "reused")
        identical = r["runs"] - len(r["mismatches"])
        rows.append(f"| {r['project']} ({r['package']}) | {r['system']} | {r['lines_of_c']:,} | "
                    f"{r['dispatched']} / {r['functions']} | {build} | {r['plain_passing']} / {r['checks']} | "
                    f"{identical} / {r['runs']} ({r['policies']} policies) | {r['run_ratio']:.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default=",".join(PROJECTS), help=f"comma-separated (default {','.join(PROJECTS)})")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="seeded:S policies besides random and every pinned:K")
    parser.add_argument("--rounds", type=int, default=3, help="side-by-side runs for the run-time ratio")
    parser.add_argument("--work", type=Path, default=None, help="build directory (default: in the cache)")
    parser.add_argument("--reuse", action="store_true", help="reuse builds already in --work")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.projects.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROJECTS]
    if unknown:
        parser.error(f"unknown project(s) {', '.join(unknown)} (known: {', '.join(PROJECTS)})")
    work = args.work or cache_root() / "work"
    results = [evaluate(PROJECTS[n], work, args.variants, args.seeds, args.rounds, args.reuse) for n in names]
    print(table(results))
    for r in results:
        print(f"{r['project']}: workarounds: {r['workarounds']}")
        if r["plain_failing"]:
            print(f"{r['project']}: failing in the plain build too (exit status): {r['plain_failing']}")
        if r["nondeterministic"]:
            print(f"{r['project']}: compared by exit status only (output differs between plain runs): {r['nondeterministic']}")
        for m in r["mismatches"]:
            print(f"{r['project']}: MISMATCH {m}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(r["mismatches"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
