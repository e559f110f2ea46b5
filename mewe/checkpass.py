"""`mewe check-pass`: what a pass author runs before trusting a pass.

For each source, the pass alone makes every variant of a multivariant build, with no cost
bound (`max_cost=0`), so every variant that survives codegen is kept and run. The check then
asks: is the build deterministic (the same build twice, variant cache off, gives the same
bytes)? How many variants did the pass make, and how many were dropped, and why? Does the
module print what the plain build prints and exit the same way, under random dispatch and
with each body pinned? To how many functions did the pass apply?

    from mewe.checkpass import check_pass
    result = check_pass("substitute", ["examples/sort.c"], csmith=0)
    print(result.table())
    print("\\n".join(result.summary()))
    assert result.ok
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mewe.errors import MeweError
from mewe.types import CompileOptions, Manifest, MultivariantOptions

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CSMITH_INCLUDE = Path("/usr/include/csmith")
CSMITH_OPTIONS = ("--max-funcs", "8", "--max-block-depth", "3", "--no-packed-struct")  # as benchmarks/csmith.py
TIMED_OUT = -1  # the status of a run that hit the deadline
TICK = 0.05  # seconds per wasmtime epoch


@dataclass(frozen=True)
class Case:
    """One run of a program: its arguments and its stdin."""

    args: tuple[str, ...] = ()
    stdin: bytes = b""

    def show(self, program: str) -> str:
        return "`" + " ".join([program, *self.args]) + "`" + (f" < {len(self.stdin)} bytes" if self.stdin else "")


_TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 3
_LINES = b"".join(b"%d item %d\n" % ((i * 7919) % 1000 - 500, i) for i in range(40)) + b"\n0\nzz\n-7 x\n"

# Small fixed inputs that take each example down its main paths, errors included.
EXAMPLE_CASES: dict[str, list[Case]] = {
    "base64": [Case((), _TEXT), Case(("-d",), b"VGhlIHF1aWNr\nIGJyb3duIGZveA==\n"), Case(("-d",), b"not base64!"),
               Case(("-x",))],
    "hash": [Case(("abc", "", "multivariant")), Case((), _TEXT * 3)],
    "interp": [Case((), b"let x = 3*(4+5)\nprint x - 2\n# comment\n\nprint fib(15) % 7 + gcd(84, 36) * abs(-3) / 2\n"
                        b"let y = -x * -(x - 1) - 100 % 7\nprint y\nprint gcd(y, x) - abs(x - y)\n"),
               Case((), b"let y = 1\nprint y / (y - 1)\n"), Case((), b"print 1 +\n"), Case((), b"print z\n")],
    "sort": [Case((), _LINES), Case(("-n",), _LINES), Case(("-nr",), _LINES), Case(("-r",), _LINES), Case(("-q",))],
}


@dataclass
class SourceCheck:
    """What the check found for one source, over all seeds."""

    source: str  # as shown: a file name, or csmith:SEED
    functions: int = 0
    applied: set[str] = field(default_factory=set)  # functions the pass made a variant of (any seed)
    dispatched: set[str] = field(default_factory=set)  # functions with a variant that survived codegen (any seed)
    made: int = 0  # variants the pass made, summed over seeds
    kept: int = 0  # of those, behind a dispatcher in the module
    duplicates: int = 0  # dropped: IR identical to an earlier body's
    folded: int = 0  # dropped after codegen: code identical to an earlier body's, or beyond the count asked for
    invalid: Counter = field(default_factory=Counter)  # dropped as invalid IR (a bug in the pass): LLVM's message -> count
    runs: int = 0  # multivariant runs compared with the plain build
    miscompiles: list[str] = field(default_factory=list)
    nondeterministic: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # multivariant builds that failed where the plain one did not
    note: str = ""  # why it was not compared (a Csmith program that does not build or finish)

    @property
    def failures(self) -> list[str]:
        return self.errors + self.nondeterministic + self.miscompiles

    def result(self) -> str:
        if self.note:
            return f"skipped: {self.note}"
        parts = [f"{len(self.miscompiles)} miscompiled" if self.miscompiles else "",
                 "nondeterministic" if self.nondeterministic else "",
                 f"{len(self.errors)} build failed" if self.errors else ""]
        return ", ".join(p for p in parts if p) or "ok"


@dataclass
class PassCheck:
    """The result of `check_pass`: one SourceCheck per source, and notes on what was left out."""

    name: str
    variants: int
    seeds: tuple[int, ...]
    sources: list[SourceCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return [f for s in self.sources for f in s.failures]

    @property
    def applied(self) -> int:
        return sum(len(s.applied) for s in self.sources)

    @property
    def dispatched(self) -> int:
        return sum(len(s.dispatched) for s in self.sources)

    @property
    def ok(self) -> bool:
        """No failure, and some variant of the pass's made it into a module and was run."""
        return not self.failures and self.dispatched > 0

    def table(self) -> str:
        head = ("source", "functions", "applied", "dispatched", "made", "kept", "dropped", "invalid", "runs", "result")
        rows = [head] + [(s.source, s.functions, len(s.applied), len(s.dispatched), s.made, s.kept,
                          s.duplicates + s.folded, s.invalid.total(), s.runs, s.result()) for s in self.sources]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head) - 1)]
        return "\n".join("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         + "  " + str(r[-1]) for r in rows)

    def summary(self) -> list[str]:
        """The lines after the table: totals, the failures, the verdict last."""
        checked = [s for s in self.sources if not s.note]
        functions = sum(s.functions for s in checked)
        made, kept = sum(s.made for s in checked), sum(s.kept for s in checked)
        lines = [*self.notes,
                 f"pass '{self.name}': {len(checked)} source(s) compared, seeds {','.join(map(str, self.seeds))}, "
                 f"{self.variants} variants per function",
                 f"coverage: applied to {self.applied} of {functions} functions, "
                 f"{self.dispatched} dispatched",
                 f"variants: {made} made, {kept} kept; dropped {sum(s.folded for s in checked)} folded by codegen or "
                 f"beyond the count, {sum(s.duplicates for s in checked)} as identical IR, "
                 f"{sum(s.invalid.total() for s in checked)} as invalid IR",
                 f"runs: {sum(s.runs for s in checked)} compared with the plain build's, "
                 f"{sum(len(s.miscompiles) for s in checked)} differed"]
        invalid = sum((s.invalid for s in checked), Counter())
        if invalid:  # the build drops them, so no miscompile, but the pass has a bug
            lines.append(f"WARNING: {invalid.total()} variants were invalid IR (LLVM's verifier): "
                         + "; ".join(f"{n} x {why}" for why, n in invalid.most_common(5)))
        failures = self.failures
        lines += [f"FAIL {f}" for f in failures[:20]]
        if len(failures) > 20:
            lines.append(f"... and {len(failures) - 20} more")
        if failures:
            lines.append(f"pass '{self.name}' failed the check: {len(failures)} problem(s)")
        elif not checked:
            lines.append(f"pass '{self.name}' was not checked: no source could be compared")
        elif not made:
            lines.append(f"pass '{self.name}' never applied: it made no variant of any of the {functions} functions "
                         f"of {len(checked)} source(s)")
        elif not kept:
            lines.append(f"pass '{self.name}' never applied: none of the {made} variants it made survived (invalid IR, "
                         f"or code identical to the original's)")
        else:
            lines.append(f"pass '{self.name}' passed the check ({self.seconds:.0f} s)")
        return lines


class _Runner:
    """Runs modules in one wasmtime engine with a deadline per run: a miscompiled loop must
    fail the check, not hang it."""

    def __init__(self, timeout: float):
        import wasmtime

        from mewe.runtime.host import engine_config

        config = engine_config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.timeout = timeout
        self._stop = threading.Event()
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()

    def run(self, module: Path, program: str, case: Case, policy: str | None, work: Path) -> tuple[int, bytes, str]:
        """(exit status, stdout, what went wrong) of one run; a trap is status 134."""
        import wasmtime

        from mewe.runtime.host import Trapped, execute, load_module

        stdin, stdout, stderr = (work / n for n in ("stdin", "stdout", "stderr"))
        stdin.write_bytes(case.stdin)
        config = wasmtime.WasiConfig()
        config.argv = [program, *case.args]  # the same argv[0] for both builds
        config.stdin_file, config.stdout_file, config.stderr_file = str(stdin), str(stdout), str(stderr)
        store = wasmtime.Store(self.engine)
        store.set_epoch_deadline(max(1, round(self.timeout / TICK)))
        wasm, dispatchers = load_module(self.engine, module)
        try:
            return execute(self.engine, wasm, dispatchers, config, module, policy=policy, store=store), \
                stdout.read_bytes(), ""
        except Trapped as trap:
            if trap.interrupted:
                return TIMED_OUT, stdout.read_bytes(), f"no exit within {self.timeout:g} s"
            return trap.exit_code, stdout.read_bytes(), trap.message


def _outcome(status: int, out: bytes, detail: str) -> str:
    text = out if len(out) <= 40 else out[:37] + b"..."
    return (detail or f"exit {status}") + f", stdout {text!r} ({len(out)} bytes)"


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= 120 else line[:117] + "..."


def _count(check: SourceCheck, manifest: Manifest) -> None:
    """Add one build's manifest to `check`'s coverage and drop counts."""
    check.functions = len(manifest.functions)
    for f in manifest.functions:
        kept = f.variants - 1 if f.status == "dispatched" else 0
        made = kept + f.dropped + f.folded + len(f.drops)
        if made:
            check.applied.add(f.name)
        if kept:
            check.dispatched.add(f.name)
        check.made += made
        check.kept += kept
        check.duplicates += f.dropped
        check.folded += f.folded
        check.invalid.update(_first_line(d.split(": ", 1)[-1]) for d in f.drops)  # "passes: message"


def _check_source(check: SourceCheck, source: Path, cases: list[Case], options: CompileOptions,
                  mv: MultivariantOptions, seeds: Sequence[int], runner: _Runner, work: Path) -> None:
    from mewe.pipeline import build

    program = source.stem
    for sub in ("plain", *(f"s{seed}{copy}" for seed in seeds for copy in "ab")):
        (work / sub).mkdir()
    try:
        plain = build([source], work / "plain" / f"{program}.wasm", options=options).output
    except MeweError as err:
        if check.source.startswith("csmith:"):  # Csmith's program, not the pass, is at fault
            check.note = f"plain build failed: {err.message}"
            return
        raise
    expected = {case: runner.run(plain, program, case, None, work) for case in cases}
    if any(status == TIMED_OUT for status, _, _ in expected.values()):
        check.note = f"the plain build runs longer than {runner.timeout:g} s"
        return
    for seed in seeds:
        opts = dataclasses.replace(mv, seed=seed)
        try:  # the same build twice: same name, other directory, so only nondeterminism differs
            first = build([source], work / f"s{seed}a" / f"{program}.wasm", options=options, multivariant=opts)
            second = build([source], work / f"s{seed}b" / f"{program}.wasm", options=options, multivariant=opts)
        except MeweError as err:
            check.errors.append(f"{check.source} seed {seed}: the multivariant build failed: {err.message}")
            continue
        if first.output.read_bytes() != second.output.read_bytes() or first.manifest.to_json() != second.manifest.to_json():
            check.nondeterministic.append(f"{check.source} seed {seed}: nondeterministic: two builds with the same "
                                          f"seed and the variant cache off differ")
        _count(check, first.manifest)
        bodies = max((f.variants for f in first.manifest.dispatched), default=0)
        for policy in [None, *(f"pinned:{k}" for k in range(bodies))]:
            for case in cases:
                got = runner.run(first.output, program, case, policy, work)
                check.runs += 1
                if got[:2] != expected[case][:2]:
                    check.miscompiles.append(
                        f"{check.source} seed {seed}: miscompile under policy {policy or 'random'}, run "
                        f"{case.show(program)}: {_outcome(*got)}; plain: {_outcome(*expected[case])}")


def _csmith_programs(count: int, work: Path, notes: list[str]) -> list[tuple[int, Path]]:
    """(Csmith seed, program) for seeds 1..count, or none with a note why."""
    if count <= 0:
        return []
    if not shutil.which("csmith") or not CSMITH_INCLUDE.is_dir():
        notes.append(f"csmith is not installed (apt install csmith libcsmith-dev): {count} Csmith program(s) not checked")
        return []
    programs = []
    for seed in range(1, count + 1):
        path = work / f"csmith{seed}" / f"csmith{seed}.c"
        path.parent.mkdir()
        try:
            subprocess.run(["csmith", "--seed", str(seed), *CSMITH_OPTIONS, "-o", str(path)], check=True,
                           capture_output=True, timeout=120)
        except (subprocess.SubprocessError, OSError) as exc:
            notes.append(f"csmith --seed {seed} failed ({exc}): not checked")
            continue
        programs.append((seed, path))
    return programs


def check_pass(name: str, sources: Sequence[str | Path] | None = None, *, variants: int = 4,
               seeds: Sequence[int] = (0, 1), csmith: int = 3, jobs: int | None = None, timeout: float = 10.0,
               options: CompileOptions = CompileOptions(),
               progress: Callable[[str], None] | None = None) -> PassCheck:
    """Check pass `name` on `sources` (default: the C programs in examples/) and on `csmith`
    Csmith programs: for each seed, build plain and multivariant with only that pass (`variants`
    per function, no cost bound, variant cache off) twice, and compare the runs of the
    multivariant module under random dispatch and each body pinned with the plain module's.
    Examples run on fixed inputs (EXAMPLE_CASES); other sources once, without arguments or
    stdin. Each run may take `timeout` seconds. An unknown pass raises MeweError."""
    from mewe.passes import load_plugins, registry

    if variants < 1:
        raise MeweError("--variants must be at least 1")
    load_plugins()
    if name not in registry:
        raise MeweError(f"unknown pass '{name}' (`mewe passes` lists them)")
    if sources is None:
        if not EXAMPLES.is_dir():
            raise MeweError("no sources given, and no examples/ directory beside mewe to take them from")
        sources = sorted(EXAMPLES.glob("*.c"))
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.is_file():
            raise MeweError(f"{p}: no such file")
    mv = MultivariantOptions(variants=variants, passes=(name,), max_cost=0, cache=False)
    if jobs is not None:
        mv = dataclasses.replace(mv, jobs=jobs)
    seeds = tuple(dict.fromkeys(seeds))  # each seed once: its builds share a directory
    result = PassCheck(name, variants, seeds)
    started = time.perf_counter()
    runner = _Runner(timeout)
    try:
        with tempfile.TemporaryDirectory(prefix="mewe-check-pass-") as tmp:
            work = Path(tmp)
            todo = [(p, p.name, EXAMPLE_CASES.get(p.stem, [Case()]) if p.resolve().parent == EXAMPLES else [Case()],
                     options) for p in paths]
            csmith_options = dataclasses.replace(options, include_dirs=(str(CSMITH_INCLUDE),), opt_level="0",
                                                 extra_flags=("-w",))  # -O0 keeps Csmith's many small helpers
            todo += [(p, f"csmith:{seed}", [Case()], csmith_options)
                     for seed, p in _csmith_programs(csmith, work, result.notes)]
            for i, (path, label, cases, opts) in enumerate(todo):
                if progress:
                    progress(f"checking {label} ({i + 1}/{len(todo)})")
                check = SourceCheck(label)
                result.sources.append(check)
                where = work / f"src{i}"
                where.mkdir()
                _check_source(check, path, cases, opts, mv, seeds, runner, where)
    finally:
        runner.close()
    result.seconds = time.perf_counter() - started
    return result
