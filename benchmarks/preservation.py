"""Preservation per pass: of the variants a build emits, how many differ in the final wasm and
after Cranelift, for each example built with each pass alone and with random stacks.

    python benchmarks/preservation.py [--variants 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import mewe
from mewe.inspect import preservation
from mewe.passes import describe
from mewe.types import MultivariantOptions

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ["base64", "hash", "interp", "sort"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-cost", type=float, default=MultivariantOptions().max_cost, metavar="RATIO",
                        help="the builds' cost bound (0: any cost; the table in README.md was measured so)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    pipelines = [(name,) for name, _ in describe()] + [None]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mewe-pres-") as tmp:
        for pipeline in pipelines:
            totals = {"variants": 0, "wasm": 0, "native": 0, "requested": 0, "folded": 0}
            for program in PROGRAMS:
                out = Path(tmp) / f"{program}.wasm"
                mv = MultivariantOptions(variants=args.variants, seed=args.seed, passes=pipeline,
                                         max_cost=args.max_cost)
                result = mewe.build([ROOT / "examples" / f"{program}.c"], out, multivariant=mv)
                overall = preservation(out).rates()["overall"]
                totals["variants"] += overall["variants"]
                totals["wasm"] += overall["wasm_distinct"]
                totals["native"] += overall["native_distinct"] or 0
                totals["requested"] += args.variants * len(result.manifest.functions)
                totals["folded"] += result.manifest.totals()["folded"]
            label = "random stacks of 2" if pipeline is None else pipeline[0]
            rows.append({"pipeline": label, **totals})
            print(f"{label:20} {totals}", file=sys.stderr)
    print("| pipeline | variants kept / requested | distinct in wasm | distinct after Cranelift |")
    print("|---|---|---|---|")
    for r in rows:
        n = r["variants"] or 1
        print(f"| {r['pipeline']} | {r['variants']} / {r['requested']} | {r['wasm'] / n:.1%} | {r['native'] / n:.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
