"""Run-time cost of multivariant execution: original vs multivariant builds, side by side.

For each program, builds the plain module and a multivariant one (every eligible function
behind a dispatcher, N variants each, made by the passes; --rerandomize, --max-cost,
--inline-dispatch, --merge-bodies and --self-calls as the build options), then times both in alternation in
one process (wasmtime, module compiled once, a fresh instance per run, output discarded) and
reports the median time ratio and the geometric mean over programs.

    python benchmarks/dispatch.py [--variants 4] [--runs 7] [--rerandomize MODE] [--max-cost R] [--fallback PASS] [--self-calls stay]
                                  [--clock wall|cpu] [--policies pinned:0,pinned:1] [--programs calls,sort]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mewe
from mewe.types import SELF_CALLS, MultivariantOptions, Rerandomize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def workloads(tmp: Path) -> list[tuple[str, Path, list[str], Path]]:
    """(label, source, args, stdin file) for each program, with inputs made here, deterministically."""
    rng = random.Random(1)
    blob = tmp / "blob.bin"
    blob.write_bytes(bytes(rng.randrange(256) for _ in range(1 << 20)))
    script = tmp / "interp.txt"
    script.write_bytes(b"print fib(24)\n" + b"".join(b"let v%d = %d*(3+%d)/7 - gcd(%d, 36)\n" % (i % 20, i, i, i) for i in range(20000)))
    lines = tmp / "lines.txt"
    lines.write_bytes(b"".join(b"%d item\n" % rng.randrange(10**6) for _ in range(50000)))
    empty = tmp / "empty"
    empty.write_bytes(b"")
    ex = ROOT / "examples"
    return [
        ("calls (micro)", HERE / "programs" / "calls.c", ["27"], empty),
        ("interp", ex / "interp.c", [], script),
        ("sort -n", ex / "sort.c", ["-n"], lines),
        ("hash", ex / "hash.c", [], blob),
        ("base64", ex / "base64.c", [], blob),
    ]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def time_run(module: Path, args: list[str], stdin: Path, policy: str | None = None) -> float:
    start = clock()
    status = mewe.run(module, args, stdin=stdin, stdout=os.devnull, policy=policy)
    elapsed = clock() - start
    if status != 0:
        raise SystemExit(f"{module.name} exited with {status}")
    return elapsed


def measure(args: argparse.Namespace) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="mewe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for label, source, argv, stdin in workloads(tmp):
            if args.programs and label.split()[0] not in args.programs:
                continue
            plain = mewe.build([source], tmp / f"{source.stem}.wasm").output
            mv_opts = MultivariantOptions(variants=args.variants, seed=args.seed, tail_calls=not args.no_tail_calls,
                                          dispatch=args.dispatch, rerandomize=Rerandomize.parse(args.rerandomize),
                                          max_cost=args.max_cost, inline_dispatch=args.inline_dispatch,
                                          merge_bodies=args.merge_bodies, self_calls=args.self_calls,
                                          fallback=None if args.fallback == "none" else args.fallback)
            multi = mewe.build([source], tmp / f"{source.stem}.mv.wasm", multivariant=mv_opts)
            totals = multi.manifest.totals()
            for module in (plain, multi.output):  # warm: compile once, page in
                time_run(module, argv, stdin)
            times = {"plain": [], "multi": [], **{pol: [] for pol in args.policies}}
            for _ in range(args.runs):  # alternate, so drift on a shared machine hits both
                times["plain"].append(time_run(plain, argv, stdin))
                times["multi"].append(time_run(multi.output, argv, stdin))
                for pol in args.policies:
                    times[pol].append(time_run(multi.output, argv, stdin, pol))
            p, m = statistics.median(times["plain"]), statistics.median(times["multi"])
            by_policy = {pol: statistics.median(times[pol]) / p for pol in args.policies}
            results.append({"program": label, "plain_ms": p * 1e3, "multivariant_ms": m * 1e3, "ratio": m / p,
                            "dispatched": totals["dispatched"], "functions": totals["functions"],
                            "bodies": totals["bodies"], "policies": by_policy})
            print(f"{label:14} plain {p * 1e3:8.1f} ms  multivariant {m * 1e3:8.1f} ms  {m / p:5.2f}x  "
                  f"({totals['dispatched']}/{totals['functions']} functions dispatched)"
                  + "".join(f"  {pol} {r:.2f}x" for pol, r in by_policy.items()), file=sys.stderr)
    geomean = math.exp(statistics.fmean(math.log(r["ratio"]) for r in results))
    return {"variants": args.variants, "rerandomize": args.rerandomize, "max_cost": args.max_cost,
            "inline_dispatch": args.inline_dispatch, "merge_bodies": args.merge_bodies, "self_calls": args.self_calls, "fallback": args.fallback, "clock": args.clock, "dispatch": args.dispatch, "tail_calls": not args.no_tail_calls,
            "runs": args.runs, "programs": results, "geomean_ratio": geomean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dispatch", choices=("switch", "table"), default="switch")
    parser.add_argument("--no-tail-calls", action="store_true")
    parser.add_argument("--rerandomize", default=str(MultivariantOptions().rerandomize), metavar="MODE")
    parser.add_argument("--max-cost", type=float, default=MultivariantOptions().max_cost, metavar="RATIO")
    parser.add_argument("--inline-dispatch", type=int, default=MultivariantOptions().inline_dispatch, metavar="N")
    parser.add_argument("--merge-bodies", type=int, default=MultivariantOptions().merge_bodies, metavar="N")
    parser.add_argument("--self-calls", choices=SELF_CALLS, default=MultivariantOptions().self_calls)
    parser.add_argument("--fallback", default=MultivariantOptions().fallback, metavar="PASS")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: this process's CPU time, which other jobs on a shared machine disturb less")
    parser.add_argument("--policies", type=lambda t: [p for p in t.split(",") if p], default=[], metavar="P,Q",
                        help="also time the multivariant module under these policies (e.g. pinned:0,pinned:1)")
    parser.add_argument("--programs", type=lambda t: [p for p in t.split(",") if p], default=[], metavar="A,B",
                        help="only these programs (calls, interp, sort, hash, base64); the geomean is theirs")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if unknown := set(args.programs) - {"calls", "interp", "sort", "hash", "base64"}:
        parser.error(f"no program named {', '.join(sorted(unknown))}")
    global clock
    clock = CLOCKS[args.clock]
    report = measure(args)
    print(f"geometric mean ratio: {report['geomean_ratio']:.2f}x", file=sys.stderr)
    print("| program | plain ms | multivariant ms | ratio | dispatched / functions |")
    print("|---|---|---|---|---|")
    for r in report["programs"]:
        print(f"| {r['program']} | {r['plain_ms']:.1f} | {r['multivariant_ms']:.1f} | {r['ratio']:.2f}x | "
              f"{r['dispatched']} / {r['functions']} |")
    print(f"| **geometric mean** | | | **{report['geomean_ratio']:.2f}x** | |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
