"""Differential testing with random C programs: does a multivariant build compute what the plain one does?

Csmith (Debian's `csmith` and `libcsmith-dev`) writes programs that print a checksum of their
globals. Each program is built twice for wasm32 by mewe: plain, and multivariant with a stack of
1 to 4 passes on every variant, 1 to 3 variants and any -O level, all drawn from the program
number (as are the build seed and, from it, the re-randomization mode; no cost bound, so every
variant made is kept and run). Both run under wasmtime; the
multivariant one under random dispatch and with each variant pinned. A different checksum, a
trap, or a build that crashes where the plain one did not is a mismatch: the program and the
seed are kept, and with `--reduce` creduce shrinks the program to a regression test.

    python benchmarks/csmith.py --programs 1000 --jobs 2 --out csmith-results   # the long campaign
    python benchmarks/csmith.py --programs 20 --first 1                           # a quick look

Programs whose plain run does not finish in 30 s (Csmith can write very long loops) are
counted as skipped, not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

CSMITH_INCLUDE = Path("/usr/include/csmith")
CSMITH_OPTIONS = ["--max-funcs", "8", "--max-block-depth", "3", "--no-packed-struct"]
ALL_PASSES = ("constant-blinding,shuffle-blocks,split-blocks,bogus-branch,junk-code,swap-commutative,"
              "invert-compare,opt-pipeline,schedule,stack-layout,substitute,synthesize,rare-branch")
OPT_LEVELS = ("0", "1", "2", "3", "s", "z")
MAX_STACK = 4  # a program's passes: a random stack of 1 to this many, in random order
MAX_VARIANTS = 3
CHECKSUM = re.compile(rb"^checksum = ([0-9A-F]+)$", re.M)


@dataclass
class Outcome:
    program: int
    seed: int  # mewe's build seed
    opt: str
    status: str  # "match", "mismatch" or "skipped"
    detail: str = ""
    functions: int = 0
    dispatched: int = 0
    runs: list[str] = field(default_factory=list)  # policy=checksum, for a mismatch
    variants: int = 2  # what the multivariant build was asked for (logs before these were kept: 2,
    passes: str = ALL_PASSES  # and every pass stacked)


def mewe_cmd() -> list[str]:
    return [sys.executable, "-m", "mewe"]


def generate(program: int, path: Path) -> None:
    """The Csmith program numbered `program` (its Csmith seed), written to `path`."""
    subprocess.run(["csmith", "--seed", str(program), *CSMITH_OPTIONS, "-o", str(path)], check=True,
                   capture_output=True, timeout=120)


def _build(source: Path, out: Path, opt: str, extra: list[str], timeout: float) -> tuple[int, str]:
    argv = [*mewe_cmd(), "build", str(source), f"-I{CSMITH_INCLUDE}", f"-O{opt}", "--jobs", "1",
            "-o", str(out), *extra]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "build timed out"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode, lines[-1] if lines else ""


def _run(module: Path, policy: str | None, timeout: float) -> str:
    """The checksum a run prints, or what went wrong instead."""
    argv = [*mewe_cmd(), "run", *(["--policy", policy] if policy else []), str(module)]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    found = CHECKSUM.search(proc.stdout)
    if proc.returncode != 0 or not found:
        return f"exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[:200]}"
    return found.group(1).decode()


MODES = ("every:1000", "call", "request", "every:3")  # one per build, by its seed


def _multivariant(variants: int, seed: int, passes: str) -> list[str]:
    """The multivariant build's flags: every variant made by stacking all of `passes`, afresh,
    all of them kept whatever they cost, and a re-randomization mode that follows the seed."""
    return ["--variants", str(variants), "--seed", str(seed), "--passes", passes, "--no-cache", "--max-cost", "0",
            "--rerandomize", MODES[seed % len(MODES)]]


def policies(variants: int) -> list[str]:
    """Random dispatch, then every variant alone."""
    return ["random", *(f"pinned:{k}" for k in range(variants + 1))]


def check(program: int, work: Path, *, variants: int | None = None, opt: str | None = None, seed: int | None = None,
          passes: str | None = None, run_timeout: float = 30.0, build_timeout: float = 600.0) -> Outcome:
    """Generate program `program`, build it plain and multivariant, and compare their checksums.
    What is not given is drawn from the program number: the -O level (any), the build seed,
    the variants (1 to MAX_VARIANTS) and the passes (a random stack of 1 to MAX_STACK, every
    variant made by applying all of them in that order)."""
    rng = random.Random(program)
    opt = opt or rng.choice(OPT_LEVELS)
    seed = rng.randrange(1 << 30) if seed is None else seed
    variants = variants or rng.randint(1, MAX_VARIANTS)
    passes = passes or ",".join(rng.sample(ALL_PASSES.split(","), rng.randint(1, MAX_STACK)))
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"p{program}.c"
    generate(program, source)
    outcome = Outcome(program, seed, opt, "skipped", variants=variants, passes=passes)
    code, err = _build(source, work / f"p{program}.plain.wasm", opt, [], build_timeout)
    if code != 0:
        outcome.detail = f"plain build failed: {err}"
        return outcome
    expected = _run(work / f"p{program}.plain.wasm", None, run_timeout)
    if not re.fullmatch(r"[0-9A-F]+", expected):
        outcome.detail = f"plain run: {expected}"
        return outcome
    mv = work / f"p{program}.mv.wasm"
    code, err = _build(source, mv, opt, _multivariant(variants, seed, passes), build_timeout)
    if code != 0:
        outcome.status, outcome.detail = "mismatch", f"multivariant build failed ({code}): {err}"
        return outcome
    totals = json.loads((work / f"p{program}.mv.manifest.json").read_text())["totals"]
    outcome.functions, outcome.dispatched = totals["functions"], totals["dispatched"]
    results = {p: _run(mv, p, run_timeout * 4) for p in policies(variants)}
    wrong = {p: r for p, r in results.items() if r != expected}
    outcome.status = "mismatch" if wrong else "match"
    if wrong:
        outcome.detail = f"expected {expected}: " + ", ".join(f"{p} gave {r}" for p, r in wrong.items())
        outcome.runs = [f"{p}={r}" for p, r in results.items()]
    return outcome


INTERESTING = """#!/bin/sh
# creduce's test: the program still builds and runs plain, and the multivariant build differs.
{python} {script} --interesting p.c --seed {seed} --opt {opt} --variants {variants} --passes {passes}
"""


def reduce(source: Path, outcome: Outcome, variants: int, dest: Path, passes: str = ALL_PASSES) -> Path:
    """creduce `source` to a smaller program that still shows the mismatch; returns its path."""
    with tempfile.TemporaryDirectory(prefix="mewe-creduce-") as tmp:
        shutil.copy(source, Path(tmp) / "p.c")
        test = Path(tmp) / "interesting.sh"
        test.write_text(INTERESTING.format(python=sys.executable, script=Path(__file__).resolve(), seed=outcome.seed,
                                           opt=outcome.opt, variants=variants, passes=passes))
        test.chmod(0o755)
        subprocess.run(["creduce", "--n", "2", str(test), "p.c"], cwd=tmp, capture_output=True, check=True)
        reduced = dest / f"p{outcome.program}.reduced.c"
        shutil.copy(Path(tmp) / "p.c", reduced)
    return reduced


def interesting(source: Path, seed: int, opt: str, variants: int, passes: str = ALL_PASSES) -> bool:
    """creduce's predicate, in the current directory: plain builds and runs, multivariant differs.

    creduce happily trades a miscompile for undefined behaviour (an out-of-bounds read, an
    uninitialized variable), whose result any build may change. Csmith's programs have none, so
    a reduced program must keep one meaning: the same checksum plain at -O0 and at `opt`."""
    work = Path(tempfile.mkdtemp(prefix="mewe-interesting-"))
    try:
        checksums = set()
        for level in sorted({"0", opt}):
            if _build(source, work / f"plain{level}.wasm", level, [], 120)[0] != 0:
                return False
            checksums.add(_run(work / f"plain{level}.wasm", None, 5))
        expected = checksums.pop()
        if checksums or not re.fullmatch(r"[0-9A-F]+", expected):
            return False
        code, _ = _build(source, work / "mv.wasm", opt, _multivariant(variants, seed, passes), 300)
        if code != 0:
            return True  # a build that fails where the plain one did not is the mismatch
        return any(_run(work / "mv.wasm", p, 20) != expected for p in policies(variants))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def campaign(first: int, count: int, out: Path, jobs: int, variants: int | None, reduce_mismatches: bool,
             passes: str | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def one(program: int) -> Outcome:
        work = out / "work" / f"p{program}"
        outcome = check(program, work, variants=variants, passes=passes)
        if outcome.status == "mismatch":
            kept = out / "mismatches"
            kept.mkdir(exist_ok=True)
            shutil.copy(work / f"p{program}.c", kept / f"p{program}.c")
            (kept / f"p{program}.json").write_text(json.dumps(asdict(outcome), indent=1) + "\n")  # all it takes to reproduce
            if reduce_mismatches:
                reduce(work / f"p{program}.c", outcome, outcome.variants, kept, outcome.passes)
        shutil.rmtree(work, ignore_errors=True)
        return outcome

    outcomes = []
    with ThreadPoolExecutor(max_workers=jobs) as pool, open(out / "outcomes.jsonl", "a") as log:
        for outcome in pool.map(one, range(first, first + count)):
            outcomes.append(outcome)
            log.write(json.dumps(asdict(outcome)) + "\n")
            log.flush()
            if outcome.status != "match":
                print(f"program {outcome.program}: {outcome.status}: {outcome.detail}", flush=True)
    summary = tally(outcomes)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def tally(outcomes: list[Outcome]) -> dict:
    """Totals over `outcomes`: programs, compared, mismatches, skipped and why, per -O level."""
    compared = [o for o in outcomes if o.status != "skipped"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    return {
        "programs": len(outcomes),
        "first": min((o.program for o in outcomes), default=0),
        "last": max((o.program for o in outcomes), default=0),
        "compared": len(compared),
        "mismatches": sum(o.status == "mismatch" for o in outcomes),
        "multivariant_runs": sum(len(policies(o.variants)) for o in compared if o.status == "match"),
        "compared_by_opt": dict(sorted(Counter(f"-O{o.opt}" for o in compared).items())),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter("plain run timed out" if o.detail == "plain run: timeout"
                                          else "plain run failed" if o.detail.startswith("plain run")
                                          else "plain build failed" for o in skipped)),
        "functions": sum(o.functions for o in outcomes),
        "dispatched": sum(o.dispatched for o in outcomes),
    }


def load_outcomes(out: Path) -> list[Outcome]:
    """Every outcome logged in `out`, the last one per program (a rerun replaces a program's)."""
    by_program: dict[int, Outcome] = {}
    for line in (out / "outcomes.jsonl").read_text().splitlines():
        outcome = Outcome(**json.loads(line))
        by_program[outcome.program] = outcome
    return [by_program[p] for p in sorted(by_program)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=100, help="how many programs (default 100)")
    parser.add_argument("--first", type=int, default=1, help="the first program's Csmith seed (default 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="programs checked at once")
    parser.add_argument("--variants", type=int, help="variants per function (default: 1 to 3, drawn per program)")
    parser.add_argument("--out", type=Path, default=Path("csmith-results"), help="results and kept mismatches")
    parser.add_argument("--passes",
                        help="the passes stacked on every variant (default: 1 to 4 of the built-in ones, drawn "
                             "per program); a pass of your own, from an installed plugin, is tested the same way")
    parser.add_argument("--reduce", action="store_true", help="creduce each mismatch (slow)")
    parser.add_argument("--summary", action="store_true",
                        help="print the totals over every program logged in --out, and run nothing")
    parser.add_argument("--interesting", type=Path, help=argparse.SUPPRESS)  # creduce's predicate
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--opt", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.interesting:
        return 0 if interesting(args.interesting, args.seed, args.opt, args.variants or 2, args.passes or ALL_PASSES) else 1
    if args.summary:
        if not (args.out / "outcomes.jsonl").is_file():
            parser.error(f"no campaign logged in {args.out}")
        print(json.dumps(tally(load_outcomes(args.out)), indent=1))
        return 0
    for tool in ("csmith",) + (("creduce",) if args.reduce else ()):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install csmith libcsmith-dev creduce)")
    summary = campaign(args.first, args.programs, args.out, args.jobs, args.variants, args.reduce, args.passes)
    print(json.dumps(summary))
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
