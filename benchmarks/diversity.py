"""How much diversity each re-randomization mode keeps: what dispatch.py's programs do, traced.

For each mode and program, builds a traced multivariant module (the same options as
dispatch.py otherwise) and runs it: 100 runs hashed (unique traces per 100 runs, as an edge
host sees requests) and one run whose every dispatch is examined:

- functions dispatched / defined (the manifest), and how many ran;
- variant changes per 1,000 dispatches: how often the observable path changes;
- per function, the runs of consecutive calls that keep one variant: the longest over all
  functions, and the mean span between changes in dispatches of the whole module;
- bits drawn per run: sum over draws of log2(bodies), with each function's draws estimated
  as 1 + changes * n / (n - 1) (a draw repeats the last variant 1 time in n).

    python benchmarks/diversity.py [--modes call,every:1000,request] [--variants 4] [--self-calls stay] [--json out.json]

Under `--self-calls stay` a function's calls to itself are not dispatches, so they are not in
the trace: runs and spans then count the entries of a recursion, not its calls.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import struct
import sys
import tempfile
from pathlib import Path

import mewe
from mewe.runtime import TraceDigest
from mewe.types import SELF_CALLS, MultivariantOptions, Rerandomize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import workloads  # noqa: E402


class TraceStats(TraceDigest):
    """A trace examined as its batches arrive: per-function variant runs and module spans."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[int, int] = {}  # dispatcher id -> its variant at its last call
        self.run: dict[int, int] = {}  # ... calls since that variant began
        self.since: dict[int, int] = {}  # ... module dispatch count when it began
        self.changes: dict[int, int] = {}
        self.longest = 0
        self.spans: list[int] = []

    def update(self, pairs: bytes) -> None:
        start = self.length
        super().update(pairs)
        last, run, since, changes = self.last, self.run, self.since, self.changes
        for i, (fid, k) in enumerate(struct.iter_unpack("<II", pairs), start):
            if last.get(fid) == k:
                run[fid] += 1
                continue
            if fid in last:
                changes[fid] = changes.get(fid, 0) + 1
                self.longest = max(self.longest, run[fid])
                self.spans.append(i - since[fid])
            last[fid], run[fid], since[fid] = k, 1, i

    def finish(self) -> None:
        self.longest = max([self.longest, *self.run.values()])


def measure(mode: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    rows = []
    for label, source, argv, stdin in workloads(tmp):
        mv = MultivariantOptions(variants=args.variants, seed=args.seed, trace=True,
                                 rerandomize=Rerandomize.parse(mode), self_calls=args.self_calls)
        built = mewe.build([source], tmp / f"{source.stem}.div.wasm", multivariant=mv)
        bodies = {r.dispatch_id: r.variants for r in built.manifest.dispatched}
        digests = set()
        for _ in range(args.runs):
            digest = TraceDigest()
            assert mewe.run(built.output, argv, stdin=stdin, stdout=tmp / "out", trace=digest) == 0
            digests.add(digest.hexdigest())
        stats = TraceStats()
        assert mewe.run(built.output, argv, stdin=stdin, stdout=tmp / "out", trace=stats) == 0
        stats.finish()
        bits = sum(math.log2(bodies[f]) * (1 + stats.changes.get(f, 0) * bodies[f] / (bodies[f] - 1))
                   for f in stats.last)
        totals = built.manifest.totals()
        rows.append({
            "mode": mode, "program": label, "dispatched": totals["dispatched"], "functions": totals["functions"],
            "bodies_per_function": totals["bodies"] / max(1, totals["dispatched"]),
            "called": len(stats.last), "dispatches": stats.length,
            "unique_traces": len(digests), "runs": args.runs,
            "changes_per_1000": 1000 * sum(stats.changes.values()) / max(1, stats.length),
            "longest_run_calls": stats.longest,
            "mean_span_dispatches": statistics.fmean(stats.spans) if stats.spans else None,
            "bits_per_run": bits,
        })
        r = rows[-1]
        span = "-" if r["mean_span_dispatches"] is None else f"{r['mean_span_dispatches']:.0f}"
        print(f"{mode:11} {label:14} {r['unique_traces']}/{args.runs} unique  {r['changes_per_1000']:7.1f} changes/1000  "
              f"longest run {r['longest_run_calls']}  mean span {span}  {r['bits_per_run']:.0f} bits", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="call,every:1000,request")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--self-calls", choices=SELF_CALLS, default=MultivariantOptions().self_calls)
    parser.add_argument("--runs", type=int, default=100, help="runs hashed per program (default 100)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mewe-div-") as tmp:
        for mode in args.modes.split(","):
            rows += measure(mode, args, Path(tmp))
    print("| mode | program | dispatched / functions (ran) | bodies per function | unique traces | changes / 1,000 dispatches | "
          "longest run (calls) | mean span (dispatches) | bits drawn per run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        span = "—" if r["mean_span_dispatches"] is None else f"{r['mean_span_dispatches']:,.0f}"
        print(f"| {r['mode']} | {r['program']} | {r['dispatched']} / {r['functions']} ({r['called']}) | "
              f"{r['bodies_per_function']:.1f} | "
              f"{r['unique_traces']} / {r['runs']} | {r['changes_per_1000']:.1f} | {r['longest_run_calls']:,} | "
              f"{span} | {r['bits_per_run']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
