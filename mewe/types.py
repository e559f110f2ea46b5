"""Data that crosses stages: small typed dataclasses every stage may import.

frontends/ produce `IRModule`s, passes/ turn functions into variants, linker/ consumes both
and writes a wasm module. IR travels as LLVM bitcode bytes so it can cross process
boundaries (llvmlite's global context is not thread-safe; parallelism uses processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

OPT_LEVELS = ("0", "1", "2", "3", "s", "z")
# What the frontends compile, by suffix (one table for mewe build and mewe-cc).
C_SUFFIXES = (".c", ".i")  # .i: C already preprocessed
IR_SUFFIXES = (".ll", ".bc")


@dataclass(frozen=True)
class CompileOptions:
    """How a frontend compiles one source file: the clang flags a user would give."""

    include_dirs: tuple[str, ...] = ()
    defines: tuple[str, ...] = ()  # "NAME" or "NAME=VALUE"
    undefines: tuple[str, ...] = ()
    opt_level: str = "2"
    extra_flags: tuple[str, ...] = ()  # passed verbatim to the C compiler
    dependency_flags: tuple[str, ...] = ()  # -MD -MF FILE -MT TARGET ...: a make dependency file to write

    def __post_init__(self) -> None:
        if self.opt_level not in OPT_LEVELS:
            from .errors import MeweError

            raise MeweError(f"invalid optimization level '-O{self.opt_level}' (use one of -O{', -O'.join(OPT_LEVELS)})")


@dataclass(frozen=True)
class IRModule:
    """One LLVM IR module for wasm32-wasi, as bitcode, named after where it came from."""

    name: str
    bitcode: bytes = field(repr=False)




@dataclass(frozen=True)
class Variant:
    """One semantically equivalent body of a function, produced by passes.

    `ir` is a complete `define ... { ... }` of the function in LLVM IR text, still under the
    original function's name and valid in the original module's context (it may refer to the
    module's globals, functions, types and metadata). The linker renames it.
    """

    function: str
    ir: str = field(repr=False)
    passes: tuple[str, ...] = ()  # the passes that made it, in the order applied
    error: str = ""  # why it cannot be used (LLVM's verifier message), if it cannot
    # Static cost estimates (`mewe.llvmir.cfg_cost`) of this body and of the original it was made
    # from, computed where it was made; None: the linker computes them from the parsed module.
    cost: int | None = None
    original_cost: int | None = None


class Status(str, Enum):
    """What became of a function: dispatched over its variants, or skipped (see its reason).
    A str, so it compares equal to, and is written to JSON as, its value."""

    DISPATCHED = "dispatched"
    SKIPPED = "skipped"


class Dispatcher(NamedTuple):
    """An entry of a module's dispatch table (the `mewe.dispatchers` section hosts read)."""

    name: str
    variants: int
    id: int


@dataclass
class FunctionReport:
    """The manifest's entry for one defined function."""

    name: str
    status: Status  # dispatched, or skipped (see reason)
    reason: str = ""
    variants: int = 0  # bodies behind the dispatcher, the original included
    dropped: int = 0  # variants dropped as identical IR to an earlier body
    folded: int = 0  # candidates dropped after codegen: code identical to an earlier body's, over --max-cost, or beyond the count
    drops: list[str] = field(default_factory=list)  # candidates that were invalid IR: "passes: LLVM's message" each
    passes: list[list[str]] = field(default_factory=list)  # per body: the passes that made it
    code_sizes: list[int] = field(default_factory=list)  # per body: wasm code bytes in the output
    costs: list[int] = field(default_factory=list)  # per body: the cost estimate variants were chosen by
    dispatch_id: int = -1  # the dispatcher's id in traces (dispatched functions only)
    merged: bool = False  # the bodies are inlined into the dispatch (no call to a body at run time)
    unit: str = ""  # the translation unit, under separate compilation (mewe-cc -c)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @classmethod
    def from_dict(cls, data: dict) -> "FunctionReport":
        """A report from its JSON form (keys this version does not know are ignored)."""
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Manifest:
    """What a multivariant build did, written as JSON beside its output."""

    output: str
    variants_requested: int
    seed: int
    policy: str
    dispatch: str  # "switch" or "table"
    rerandomize: str  # "call", "every:N" or "request"
    tail_calls: bool
    trace: bool
    functions: list[FunctionReport] = field(default_factory=list)

    @property
    def dispatched(self) -> list[FunctionReport]:
        return [f for f in self.functions if f.status == Status.DISPATCHED]

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        """A manifest as `to_json` wrote it (totals are recomputed, not read)."""
        import dataclasses
        import json

        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)} - {"functions"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   functions=[FunctionReport.from_dict(f) for f in data.get("functions", [])])

    def to_json(self) -> str:
        import dataclasses
        import json

        data = dataclasses.asdict(self)
        data["totals"] = self.totals()
        return json.dumps(data, indent=1) + "\n"

    def totals(self) -> dict[str, int]:
        return {
            "functions": len(self.functions),
            "dispatched": len(self.dispatched),
            "skipped": len(self.functions) - len(self.dispatched),
            "bodies": sum(f.variants for f in self.dispatched),
            "dropped": sum(f.dropped for f in self.functions),
            "folded": sum(f.folded for f in self.functions),
            "invalid": sum(len(f.drops) for f in self.functions),
        }

    def drop_summary(self, verbose: bool = False) -> list[str]:
        """Lines for stderr about candidates that were invalid IR (none when there were none)."""
        dropped = [f for f in self.functions if f.drops]
        if not dropped:
            return []
        n = sum(len(f.drops) for f in dropped)
        lines = [f"{n} variant{'s' if n != 1 else ''} of {len(dropped)} function{'s' if len(dropped) != 1 else ''} "
                 f"dropped as invalid IR; see the manifest{'' if verbose else ' (or -v)'}"]
        if verbose:
            lines += [f"  {f.name}: {d}" for f in dropped for d in f.drops]
        return lines


POLICIES = ("random", "seeded", "pinned", "host")


@dataclass(frozen=True)
class Policy:
    """How dispatchers draw a variant: `random` (default), `seeded:S`, `pinned:K`, `host`."""

    kind: str = "random"
    arg: int = 0

    @classmethod
    def parse(cls, text: str) -> "Policy":
        from .errors import MeweError

        kind, sep, arg = text.partition(":")
        needs_arg = kind in ("seeded", "pinned")
        if kind not in POLICIES or needs_arg != bool(sep) or (needs_arg and not arg.isdigit()):
            raise MeweError(f"invalid policy '{text}' (use random, seeded:SEED, pinned:K or host)")
        value = int(arg) if needs_arg else 0
        if value >= 2**64:
            raise MeweError(f"invalid policy '{text}': the number must be below 2**64")
        return cls(kind, value)

    @property
    def code(self) -> int:
        """The number the runtime's discriminator uses for this policy."""
        return POLICIES.index(self.kind)

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}" if self.kind in ("seeded", "pinned") else self.kind


MODES = ("call", "every", "request")


@dataclass(frozen=True)
class Rerandomize:
    """When dispatchers draw a fresh variant: `call` (on every call), `every:N` (each function's
    variant is kept in a slot and re-drawn after a random run of about N of its calls, mean N,
    or sooner when the module's epoch moves on, about every N dispatches of the module) or
    `request` (drawn once per instance). Every mode draws at instance start."""

    kind: str = "every"
    period: int = 1000  # every:N only

    @classmethod
    def parse(cls, text: str) -> "Rerandomize":
        from .errors import MeweError

        kind, sep, arg = text.partition(":")
        if kind not in MODES or (kind == "every") != bool(sep) or (sep and not arg.isdigit()):
            raise MeweError(f"invalid re-randomization mode '{text}' (use call, every:N or request)")
        period = int(arg) if sep else 0
        if kind == "every" and not 1 <= period <= 1 << 24:
            raise MeweError(f"invalid re-randomization mode '{text}': N must be between 1 and 2**24")
        return cls(kind, period)

    def __str__(self) -> str:
        return f"every:{self.period}" if self.kind == "every" else self.kind


MAX_VARIANTS = 127  # a slot holds a body's number in 8 bits, and twice as many candidates are made


# The pass the surplus half of random stacks also gets, so small functions still get variants codegen
# keeps: its side path costs the common path a compare and a branch (junk-code's slot can cost a frame).
FALLBACK = "rare-branch"
# What a function's direct calls to itself do (MultivariantOptions.self_calls).
SELF_CALLS = ("dispatch", "stay")


@dataclass(frozen=True)
class MultivariantOptions:
    """What makes a build multivariant. `variants=0` builds the plain module."""

    variants: int = 0  # variants per function besides the original
    seed: int = 0  # seeds the passes; the same seed gives the same binary
    passes: tuple[str, ...] | None = None  # pipeline; None picks and stacks passes at random per variant
    stack: int = 2  # passes stacked per variant when picking at random
    fallback: str | None = FALLBACK  # random stacks: the pass the surplus half also gets (None: none)
    include: tuple[str, ...] = ()  # function-name patterns to diversify (default: all)
    exclude: tuple[str, ...] = ()
    policy: Policy = Policy()  # the discriminator's default; the host may override it
    dispatch: str = "switch"  # "switch" (br_table) or "table" (call_indirect)
    tail_calls: bool = True  # dispatchers forward with wasm return_call
    trace: bool = False  # record (function, variant) for every dispatch
    rerandomize: Rerandomize = Rerandomize()  # when a function's variant is drawn anew
    max_cost: float = 1.25  # keep variants costing at most this times the original (0: any)
    hot: frozenset[str] | None = None  # functions the bound applies to (None: all); see mewe.profile
    inline_dispatch: int = 64  # call sites of functions up to this many instructions branch on the slot themselves
    merge_bodies: int = 16  # leaf bodies without stack slots, up to this many instructions, are inlined where dispatched (0: never)
    self_calls: str = "dispatch"  # a function's direct calls to itself: "dispatch" (re-drawn like any call) or "stay" (on the calling body)
    reseed: int = 65536  # draws between re-seeds from WASI random_get
    max_size: int = 20_000  # instructions; larger functions keep one body (bounds time and memory)
    # Where variants are made (none of these changes the output):
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # worker processes
    executor: str | None = None  # None: local processes if worth it; "local", "serial", "dask://HOST:PORT"
    cache: bool = True  # reuse variants made before (under mewe.fsutil.cache_dir("variants"))
    verify_each: bool = False  # verify after every pass, to name the pass that made invalid IR (no cache)


@dataclass(frozen=True)
class BuildResult:
    """What `mewe.build` produced."""

    output: Path
    size: int
    temps: tuple[Path, ...] = ()  # intermediate files kept with keep_temps
    manifest: Manifest | None = None  # multivariant builds only
    manifest_path: Path | None = None
    warnings: tuple[str, ...] = ()  # what the user should know that does not stop the build
