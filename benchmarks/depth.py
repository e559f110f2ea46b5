"""What a variant change costs at each recursion depth: one recursive function, side by side.

benchmarks/programs/recursion.c makes about CALLS calls of one small recursive function, as
descents DEPTH frames deep. One multivariant build (default options, `--rerandomize every:N`)
runs under the random policy and under `pinned:K` for each of the function's bodies, alternated
with the plain module in one process. Pinned, the re-draws happen as often but never change the
body; the mean over K costs what the random policy's mix of bodies costs. So the random
policy's excess over that mean, divided by the re-draws (CALLS / N), is the cost of a re-draw,
and (bodies - 1) / bodies of re-draws change the body.

    python benchmarks/depth.py [--depths 16,64,256,1024,4096] [--calls 4000000] [--every 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mewe
from mewe.types import MultivariantOptions, Rerandomize

SOURCE = Path(__file__).resolve().parent / "programs" / "recursion.c"


def cpu_time(module: Path, argv: list[str], stdin: Path, policy: str | None) -> float:
    start = time.process_time()
    if mewe.run(module, argv, stdin=stdin, stdout=os.devnull, policy=policy) != 0:
        raise SystemExit(f"{module.name} failed")
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=lambda t: [int(d) for d in t.split(",")], default=[16, 64, 256, 1024, 4096])
    parser.add_argument("--calls", type=int, default=4_000_000)
    parser.add_argument("--every", type=int, default=1000, metavar="N")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mewe-depth-") as tmp_name:
        tmp = Path(tmp_name)
        stdin = tmp / "empty"
        stdin.write_bytes(b"")
        plain = mewe.build([SOURCE], tmp / "plain.wasm").output
        mv = MultivariantOptions(variants=args.variants, seed=1, rerandomize=Rerandomize.parse(f"every:{args.every}"))
        multi = mewe.build([SOURCE], tmp / "multi.wasm", multivariant=mv)
        bodies = next(f.variants for f in multi.manifest.dispatched if f.name == "down")
        runs = [(plain, None), (multi.output, None), *((multi.output, f"pinned:{k}") for k in range(bodies))]
        redraws = args.calls / args.every
        print(f"`down` has {bodies} bodies; about {redraws:.0f} re-draws per run", file=sys.stderr)
        print("| depth | plain ms | random | pinned, mean over bodies | ns per re-draw | ns per change |")
        print("|---|---|---|---|---|---|")
        for depth in args.depths:
            argv = [str(depth), str(args.calls)]
            for module, policy in runs:
                cpu_time(module, argv, stdin, policy)
            times = [[] for _ in runs]
            for _ in range(args.runs):
                for t, (module, policy) in zip(times, runs):
                    t.append(cpu_time(module, argv, stdin, policy))
            plain_s, random_s, *pinned_s = (statistics.median(t) for t in times)
            mix_s = statistics.fmean(pinned_s)
            per_redraw = (random_s - mix_s) / redraws * 1e9
            per_change = per_redraw * bodies / (bodies - 1) if bodies > 1 else float("nan")
            print(f"| {depth} | {plain_s * 1e3:.1f} | {random_s / plain_s:.2f}x | {mix_s / plain_s:.2f}x | "
                  f"{per_redraw:.0f} | {per_change:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
