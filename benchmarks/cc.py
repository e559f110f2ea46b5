"""Per-invocation cost of mewe-cc against the clang it wraps (zig cc), side by side.

Each round compiles each translation unit once with every tool, in alternation: zig cc,
mewe-cc through its compile server, mewe-cc in-process (MEWE_SERVER=0). Every compile sees a
unit no tool has seen before (a unique line is appended), and mewe-cc runs with its variant
cache off (MEWE_CACHE=0), so nothing is cached: the cost of a configure probe or a first build.
With --configure, libsodium's configure script also runs once per tool (`libsodium.py`'s
download; a few minutes).

    python benchmarks/cc.py [--rounds 7] [--configure] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
UNITS = {
    "trivial": "int add(int a, int b) { return a + b; }\n",
    "typical (interp.c)": (ROOT / "examples" / "interp.c").read_text(),
}


def tools() -> dict[str, tuple[list[str], dict]]:
    from mewe.toolchain import find_toolchain

    zig = find_toolchain()
    env = {**os.environ, "MEWE_CACHE": "0"}
    return {
        "zig cc": (zig.command(*zig.cflags), {**os.environ, **zig.env}),
        "mewe-cc (server)": ([str(BIN / "mewe-cc")], {**env, "MEWE_SERVER": "1"}),
        "mewe-cc (in-process)": ([str(BIN / "mewe-cc")], {**env, "MEWE_SERVER": "0"}),
    }


def per_invocation(rounds: int) -> list[dict]:
    commands = tools()
    subprocess.run([*commands["mewe-cc (server)"][0], "--version"], env=commands["mewe-cc (server)"][1],
                   capture_output=True, check=True)  # the server is up before timing starts
    results = []
    with tempfile.TemporaryDirectory(prefix="mewe-bench-cc-") as tmp:
        for label, text in UNITS.items():
            times: dict[str, list[float]] = {t: [] for t in commands}
            for k in range(rounds + 1):
                for tool, (argv, env) in commands.items():
                    src = Path(tmp, f"u{k}{len(times[tool])}{abs(hash(tool))}.c")
                    src.write_text(text + f"int mewe_bench_unit_{k}_{abs(hash(tool))} = {k};\n")
                    start = time.perf_counter()
                    subprocess.run([*argv, "-O2", "-c", str(src), "-o", str(src.with_suffix(".o"))], env=env,
                                   check=True, capture_output=True)
                    if k:  # round 0 warms the file cache
                        times[tool].append(time.perf_counter() - start)
            base = statistics.median(times["zig cc"])
            for tool, ts in times.items():
                m = statistics.median(ts)
                results.append({"unit": label, "tool": tool, "ms": m * 1e3, "ratio": m / base})
                print(f"{label:20} {tool:22} {m * 1e3:8.1f} ms  {m / base:5.2f}x", file=sys.stderr)
    return results


def configure_times() -> list[dict]:
    sys.path.insert(0, str(HERE))
    from libsodium import CONFIGURE, fetch  # noqa: E402

    source = fetch()
    out = []
    commands = tools()
    with tempfile.TemporaryDirectory(prefix="mewe-bench-configure-") as tmp:
        for tool in ("zig cc", "mewe-cc (server)", "mewe-cc (in-process)"):
            argv, env = commands[tool]
            tree = Path(tmp, tool.split()[0] + str(len(out)))
            shutil.copytree(source, tree, symlinks=True)
            cc = " ".join(argv)
            ar = f"{argv[0]} ar" if tool == "zig cc" else str(BIN / "mewe-ar")
            start = time.perf_counter()
            subprocess.run(["./configure", *CONFIGURE, f"CC={cc}", f"AR={ar}", "CFLAGS=-O2"], cwd=tree, env=env,
                           check=True, capture_output=True)
            elapsed = time.perf_counter() - start
            out.append({"tool": tool, "configure_s": elapsed})
            print(f"libsodium configure  {tool:22} {elapsed:7.1f} s", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--configure", action="store_true", help="also time libsodium's configure per tool")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report = {"per_invocation": per_invocation(args.rounds)}
    if args.configure:
        report["configure"] = configure_times()
    print("| unit | tool | median ms per call | vs zig cc |")
    print("|---|---|---|---|")
    for r in report["per_invocation"]:
        print(f"| {r['unit']} | {r['tool']} | {r['ms']:.0f} | {r['ratio']:.2f}x |")
    if args.configure:
        base = report["configure"][0]["configure_s"]
        print("\n| libsodium configure | s | vs zig cc |\n|---|---|---|")
        for r in report["configure"]:
            print(f"| {r['tool']} | {r['configure_s']:.0f} | {r['configure_s'] / base:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
