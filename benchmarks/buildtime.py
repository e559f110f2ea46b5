"""Build time, plain against multivariant, cold, side by side.

For each program, alternating in one process: the plain `mewe.build` (or `mewe.cargo_build`)
and the default multivariant build (`--variants 4`, every default but the variant cache, which
is off: a user's first build is cold). Programs: the four examples, a generated program of
2,000 small functions (`scale.py`'s), and with --rust the QR service's qr_str binary. Each
time is the median of --rounds builds.

    python benchmarks/buildtime.py [--rounds 3] [--variants 4] [--rust] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import mewe  # noqa: E402
from scale import program  # noqa: E402


def c_programs(tmp: Path) -> list[tuple[str, Path]]:
    generated = tmp / "scale2000.c"
    generated.write_text(program(2000))
    return [(name, ROOT / "examples" / f"{name}.c") for name in ("interp", "sort", "hash", "base64")] + \
        [("2,000 functions", generated)]


def timed(build) -> float:
    start = time.perf_counter()
    build()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> list[dict]:
    mv = mewe.MultivariantOptions(variants=args.variants, cache=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mewe-buildtime-") as tmp_name:
        tmp = Path(tmp_name)
        mewe.build([ROOT / "examples" / "hash.c"], tmp / "warm.wasm", multivariant=mv)  # one-time costs out
        jobs = [(label, lambda s=src, o=tmp / f"{src.stem}.wasm": mewe.build([s], o),
                 lambda s=src, o=tmp / f"{src.stem}.mv.wasm": mewe.build([s], o, multivariant=mv))
                for label, src in c_programs(tmp)]
        if args.rust:
            project = tmp / "qr"
            shutil.copytree(ROOT / "services" / "qr", project, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
            cargo = ["--manifest-path", str(project / "Cargo.toml"), "--bin", "qr_str"]
            jobs.append(("qr_str (Rust)", lambda: mewe.cargo_build(cargo, tmp / "qr_str.wasm"),
                         lambda: mewe.cargo_build(cargo, tmp / "qr_str.mv.wasm", multivariant=mv)))
        for label, plain, multi in jobs:
            times: dict[str, list[float]] = {"plain": [], "multivariant": []}
            for _ in range(args.rounds):
                times["plain"].append(timed(plain))
                times["multivariant"].append(timed(multi))
            p, m = statistics.median(times["plain"]), statistics.median(times["multivariant"])
            rows.append({"program": label, "plain_s": p, "multivariant_s": m, "ratio": m / p})
            print(f"{label:16} plain {p:7.2f} s  multivariant {m:7.2f} s  {m / p:5.1f}x", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--rust", action="store_true", help="also build the Rust QR service (cargo, a few minutes)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rows = measure(args)
    print("| program | plain (s) | multivariant, cold (s) | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['program']} | {r['plain_s']:.2f} | {r['multivariant_s']:.2f} | {r['ratio']:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"variants": args.variants, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
