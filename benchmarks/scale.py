"""How each stage's time grows with the number of functions in a module.

Generates C programs of N small functions (a chain of calls through a table, loops, branches),
lowers each to one IR module, then times, per N: making the candidates (`passes.diversify`,
serial, no cache), linking them (`linker.link_variants`, every candidate), code generation of
the linked module (LLVM's wasm backend) and the whole `mewe.build`. A stage that is linear
takes about the same time per function at every N; the last columns give the growth of each
stage's time per function from the smallest N to the largest.

    python benchmarks/scale.py --sizes 1000,2000,4000,10000 [--variants 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import mewe  # noqa: E402
from mewe import frontends, linker  # noqa: E402
from mewe.passes import diversify  # noqa: E402
from mewe.pipeline import discriminator  # noqa: E402
from mewe.toolchain import find_toolchain  # noqa: E402


def program(n: int) -> str:
    """N functions f0..f{N-1}: each mixes its argument and calls the next one's successor
    through a table, so none is dead; main runs the chain."""
    out = ["#include <stdio.h>", "typedef unsigned (*fn)(unsigned);", f"extern const fn table[{n}];"]
    for i in range(n):
        body = {0: "x = x * 2654435761u + {i}u; return x ^ (x >> 13);",
                1: "for (unsigned k = 0; k < (x & 7u); k++) x += k * {i}u; return x;",
                2: "return x > {i}u ? x - {i}u : x + 3u * {i}u;",
                3: "unsigned y = x; y ^= y << 7; y ^= y >> 9; return y + {i}u;"}[i % 4].format(i=i)
        out.append(f"__attribute__((noinline)) unsigned f{i}(unsigned x) {{ {body} }}")
    out.append(f"const fn table[{n}] = {{{', '.join(f'f{i}' for i in range(n))}}};")
    out.append("int main(void) { unsigned s = 1; for (unsigned i = 0; i < %du; i++) s = table[i](s);"
               ' printf("%%u\\n", s); return 0; }' % n)
    return "\n".join(out) + "\n"


def _forget() -> None:
    """Empty the in-process caches of proofs and optimized bodies, so each size starts as cold
    as the first (the disk cache is off throughout)."""
    from mewe.passes import pipeline, synthesize

    synthesize._cache.clear()
    pipeline._results.clear()
    pipeline._context.cache_clear()


def measure(n: int, variants: int, tmp: Path) -> dict:
    _forget()
    source = tmp / f"scale{n}.c"
    source.write_text(program(n))
    toolchain = find_toolchain()
    mv = mewe.MultivariantOptions(variants=variants, cache=False, executor="serial", max_cost=0)
    row: dict = {"functions": n}
    start = time.perf_counter()
    module = linker.link_modules([frontends.load_source(source, mewe.CompileOptions(), toolchain)])
    row["lower_s"] = time.perf_counter() - start
    start = time.perf_counter()
    made = diversify(module, variants=2 * variants, seed=0, cache=False, executor="serial")
    row["diversify_s"] = time.perf_counter() - start
    row["candidates"] = sum(len(v) for v in made.values())
    rt = discriminator(mv, toolchain)
    start = time.perf_counter()
    linked, reports, _ = linker.link_variants(module, made, rt, mv)
    row["link_s"] = time.perf_counter() - start
    row["dispatched"] = sum(r.status == "dispatched" for r in reports)
    start = time.perf_counter()
    linker.emit_object(linked, "2", tail_calls=True)
    row["codegen_s"] = time.perf_counter() - start
    start = time.perf_counter()
    plain = mewe.build([source], tmp / f"scale{n}.wasm")
    row["plain_build_s"] = time.perf_counter() - start
    _forget()
    start = time.perf_counter()
    result = mewe.build([source], tmp / f"scale{n}.mv.wasm", multivariant=mv)
    row["build_s"] = time.perf_counter() - start
    assert mewe.run(result.output, [], stdout=tmp / "mv.out") == 0 and mewe.run(plain.output, [], stdout=tmp / "p.out") == 0
    assert (tmp / "mv.out").read_bytes() == (tmp / "p.out").read_bytes()
    return row


STAGES = ("lower_s", "diversify_s", "link_s", "codegen_s", "plain_build_s", "build_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,4000,10000", help="numbers of functions (comma-separated)")
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mewe-scale-") as tmp:
        measure(10, args.variants, Path(tmp))  # one-time costs (imports, toolchain checks) out of the first size
        for n in sizes:
            rows.append(measure(n, args.variants, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print("| functions | " + " | ".join(s.removesuffix("_s") + " (s)" for s in STAGES) + " | dispatched |")
    print("|---" * (len(STAGES) + 2) + "|")
    for r in rows:
        print(f"| {r['functions']:,} | " + " | ".join(f"{r[s]:.1f}" for s in STAGES) + f" | {r['dispatched']:,} |")
    first, last = rows[0], rows[-1]
    growth = {s: (last[s] / last["functions"]) / (first[s] / first["functions"]) for s in STAGES}
    print(f"time per function, {last['functions']:,} against {first['functions']:,} functions: "
          + ", ".join(f"{s.removesuffix('_s')} {g:.2f}x" for s, g in growth.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "growth_per_function": growth}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
