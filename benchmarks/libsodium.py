"""libsodium, built the drop-in way and checked with its own test suite.

Downloads libsodium's source by package name (it ships inside PyNaCl's sdist; cached under
~/.cache/mewe/libsodium, never in the repository), then for each build -- plain (mewe-cc
with -mewe-variants=0: the same frontend and codegen, no diversification) and multivariant --
runs `./configure --host=wasm32-wasi CC=mewe-cc`, `make`, and builds the test programs of
test/default. Each test compares its output with its .exp file itself; it is run in-process
under wasmtime once per policy: `seeded:S` for S in 1..SEEDS and `pinned:K` for every K below
the largest variant count, so every variant of every function runs the whole suite.

    python benchmarks/libsodium.py                 # full run: 100 seeds, every pinned K
    python benchmarks/libsodium.py --seeds 3       # what CI runs (tests/test_libsodium.py)

Prints a summary and writes JSON (--json). Test programs libsodium itself skips on WASI-like
platforms (exit 77) count as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PYNACL = "pynacl==1.6.2"
SDIST = "pynacl-1.6.2.tar.gz"
SOURCE_DIR = "pynacl-1.6.2/src/libsodium"
BIN = Path(sys.executable).parent
CONFIGURE = ["--host=wasm32-wasi", "--disable-pie", "--disable-ssp", "--disable-shared", "--without-pthreads"]
SKIP = 77


def cache_root() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mewe.fsutil import cache_dir

    return cache_dir("libsodium")


def fetch() -> Path:
    """libsodium's source tree, downloaded once (pip, by package name) and unpacked in the cache."""
    root = cache_root()
    tree = root / "libsodium-1.0.20"
    if (tree / "configure").is_file():
        return tree
    sdist = root / SDIST
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        PYNACL, "-d", str(root)], check=True)
    staging = root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(SOURCE_DIR + "/")]
        tar.extractall(staging, members=members, filter="tar")
    os.replace(staging / SOURCE_DIR, tree)
    shutil.rmtree(staging, ignore_errors=True)
    return tree


def _sh(argv: list[str], cwd: Path, env: dict, log: Path) -> None:
    with open(log, "a") as out:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        raise RuntimeError(f"{' '.join(argv[:2])} failed in {cwd} (log {log}):\n" + "\n".join(tail))


def build(source: Path, dest: Path, settings: dict[str, str], jobs: int, cflags: str = "-O2") -> dict:
    """Configure and make libsodium and its test programs in `dest`; timings in seconds."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, symlinks=True)
    env = {**os.environ, **settings}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    log = dest / "mewe-build.log"
    times = {}
    start = time.perf_counter()
    _sh(["./configure", *CONFIGURE, "CC=mewe-cc", "AR=mewe-ar", "RANLIB=mewe-ranlib", f"CFLAGS={cflags}",
         "CPPFLAGS=-DED25519_NONDETERMINISTIC=1"], dest, env, log)
    times["configure"] = time.perf_counter() - start
    start = time.perf_counter()
    _sh(["make", f"-j{jobs}"], dest, env, log)
    times["make"] = time.perf_counter() - start
    start = time.perf_counter()
    _sh(["make", f"-j{jobs}", "check", "TESTS="], dest / "test" / "default", env, log)  # build, run none
    times["tests"] = time.perf_counter() - start
    return times


def test_programs(dest: Path) -> list[Path]:
    testdir = dest / "test" / "default"
    return sorted(testdir / exp.stem for exp in testdir.glob("*.exp") if (testdir / exp.stem).is_file())


def _run_test(program: str, policies: list[str | None]) -> list[tuple[str, str | None, int, float]]:
    """Run one test under each policy, in this process (the module is compiled once)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mewe import MeweError, run
    from mewe.runtime.host import _engine, load_module

    path = Path(program)
    load_module(_engine(), path)  # compile once, outside the timings
    results = []
    for policy in policies:
        start = time.perf_counter()
        try:
            status = run(path, [], dirs=[f"{path.parent}::."], stdin=os.devnull, stdout=os.devnull,
                         stderr=os.devnull, policy=policy)
        except MeweError as err:
            status = err.exit_code
        results.append((path.name, policy, status, time.perf_counter() - start))
    return results


def run_suite(programs: list[Path], policies: list[str | None], jobs: int) -> list[tuple[str, str | None, int, float]]:
    """Every test under every policy; tests are spread over threads (wasmtime runs wasm without
    the GIL; threads, not forked processes, so callers with threads of their own are safe).
    Each test writes NAME.res, so one test's runs stay in one thread."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_test, str(p), policies) for p in programs]
        return [r for f in futures for r in f.result()]


def suite_time(programs: list[Path], jobs: int) -> tuple[float, list]:
    """Time of one run of the suite, summed over tests (wasmtime's compilation excluded)."""
    results = run_suite(programs, [None], jobs)
    return sum(r[3] for r in results), results


def paired_suite_times(plain: list[Path], multivariant: list[Path], rounds: int, jobs: int) -> tuple[float, float]:
    """The suite's time in both builds, side by side: each test runs plain then multivariant,
    `rounds` times, so drift on a shared machine hits both; medians per test, summed."""
    by_name = {p.name: p for p in plain}
    pairs = [(by_name[m.name], m) for m in multivariant if m.name in by_name]

    def one(pair: tuple[Path, Path]) -> tuple[float, float]:
        times: tuple[list, list] = ([], [])
        for _ in range(rounds):
            for k, program in enumerate(pair):
                times[k].append(_run_test(str(program), [None])[0][3])
        return statistics.median(times[0]), statistics.median(times[1])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        medians = list(pool.map(one, pairs))
    return sum(m[0] for m in medians), sum(m[1] for m in medians)


def unit_reports(dest: Path) -> list[dict]:
    """The function reports of every multivariant object of the library (separate compilation)."""
    from mewe.separate import UNITS_SECTION
    from mewe.wasm import custom_section

    reports = []
    for obj in sorted((dest / "src" / "libsodium").rglob("*.o")):
        data = obj.read_bytes()
        payload = custom_section(data, UNITS_SECTION) if data[:4] == b"\0asm" else None
        for line in (payload or b"").decode().splitlines():
            reports += json.loads(line)["functions"]
    return reports


def lto_reports(programs: list[Path]) -> list[dict]:
    """Whole-program mode: each test program is one unit; its dispatch table names what it diversified.
    Functions are counted once over all programs (skipped ones are not in the tables)."""
    from mewe.wasm import DISPATCH_SECTION, custom_section

    seen: dict[str, dict] = {}
    for program in programs:
        for name, count, _ in json.loads(custom_section(program.read_bytes(), DISPATCH_SECTION) or b"[]"):
            seen.setdefault(name, {"name": name, "status": "dispatched", "variants": count})
    return list(seen.values())


def summarize(results: list[tuple[str, str | None, int, float]]) -> dict[str, dict]:
    by_policy: dict[str, dict] = {}
    for name, policy, status, _ in results:
        entry = by_policy.setdefault(str(policy), {"pass": 0, "skip": 0, "fail": []})
        if status == 0:
            entry["pass"] += 1
        elif status == SKIP:
            entry["skip"] += 1
        else:
            entry["fail"].append(f"{name} ({status})")
    return by_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeded:S policies to run the suite under (default 100)")
    parser.add_argument("--variants", type=int, default=4, help="-mewe-variants for the multivariant build")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=None, help="build directory (default: in the cache)")
    parser.add_argument("--reuse", action="store_true", help="reuse builds already in --work")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain build and the ratios")
    parser.add_argument("--lto", action="store_true",
                        help="whole-program mode: CFLAGS=-flto, each test program diversified at its link")
    parser.add_argument("--rounds", type=int, default=3, help="side-by-side suite runs for the ratio (default 3)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    source = fetch()
    work = args.work or cache_root() / "work"
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"variants": args.variants, "seeds": args.seeds}
    # MEWE_CACHE=0: every variant made anew, so the build time is a cold build's.
    builds = {"multivariant": {"MEWE_VARIANTS": str(args.variants), "MEWE_CACHE": "0"}}
    if not args.no_plain:
        builds = {"plain": {"MEWE_VARIANTS": "0"}, **builds}
    for kind, settings in builds.items():
        dest = work / kind
        if not (args.reuse and test_programs(dest)):
            cflags = "-O2 -flto" if args.lto and kind == "multivariant" else "-O2"
            out[f"{kind}_build_s"] = build(source, dest, settings, args.jobs, cflags)
            print(f"{kind}: built in {sum(out[kind + '_build_s'].values()):.0f} s {out[kind + '_build_s']}", flush=True)
        out[f"{kind}_library_bytes"] = (dest / "src" / "libsodium" / ".libs" / "libsodium.a").stat().st_size
        programs = test_programs(dest)
        out[f"{kind}_tests"] = len(programs)
        out[f"{kind}_test_bytes"] = sum(p.stat().st_size for p in programs)
        out[f"{kind}_suite_s"], once = suite_time(programs, args.jobs)
        out[f"{kind}_once"] = summarize(once)
    dest = work / "multivariant"
    reports = unit_reports(dest) if not args.lto else lto_reports(test_programs(dest))
    dispatched = [r for r in reports if r["status"] == "dispatched"]
    widest = max((r["variants"] for r in dispatched), default=1)
    out.update(functions=len(reports), dispatched=len(dispatched), bodies=sum(r["variants"] for r in dispatched),
               widest=widest)
    policies = [f"seeded:{s}" for s in range(1, args.seeds + 1)] + [f"pinned:{k}" for k in range(widest)]
    start = time.perf_counter()
    out["policies"] = summarize(run_suite(test_programs(dest), policies, args.jobs))
    out["policy_runs_s"] = time.perf_counter() - start
    if not args.no_plain:
        if "plain_build_s" in out and "multivariant_build_s" in out:
            out["build_ratio"] = sum(out["multivariant_build_s"].values()) / sum(out["plain_build_s"].values())
        plain_s, multi_s = paired_suite_times(test_programs(work / "plain"), test_programs(dest), args.rounds, args.jobs)
        out.update(plain_paired_suite_s=plain_s, multivariant_paired_suite_s=multi_s, suite_ratio=multi_s / plain_s)
        out["size_ratio"] = out["multivariant_test_bytes"] / out["plain_test_bytes"]
    passes = {p: v["pass"] for p, v in out["policies"].items()}
    failures = {p: v["fail"] for p, v in out["policies"].items() if v["fail"]}
    print(f"functions diversified: {len(dispatched)}/{len(reports)}, bodies {out['bodies']}, widest {widest}")
    print(f"suite under {len(policies)} policies: passes per policy min {min(passes.values())} max {max(passes.values())}")
    if failures:
        print("failures:", json.dumps(failures, indent=1))
    for key in ("build_ratio", "suite_ratio", "size_ratio"):
        if out.get(key) is not None:
            print(f"{key}: {out[key]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
