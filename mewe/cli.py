"""The `mewe` command line: a thin layer that parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import NoReturn, Sequence

from mewe import __version__
from mewe.errors import MeweError, run_reporting
from mewe.types import FALLBACK, MAX_VARIANTS, SELF_CALLS, OPT_LEVELS, CompileOptions, MultivariantOptions, Policy, Rerandomize


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return key, value


def _policy(text: str) -> Policy:
    try:
        return Policy.parse(text)
    except MeweError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _rerandomize(text: str) -> Rerandomize:
    try:
        return Rerandomize.parse(text)
    except MeweError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_in(low: int, high: int | None = None):
    """An argparse type: an int from `low` (to `high`), so that a value out of range is a usage
    error like any other (one line, exit 2), not a build error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {'at least 1' if low == 1 else f'{low} or more'}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value
    return parse


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: '{text}'") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (any) or a positive ratio, got {text}")
    return value


def _executor(text: str) -> str:
    from mewe.executors import parse

    try:
        parse(text)
    except MeweError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _pipeline(text: str) -> tuple[str, ...]:
    from mewe.passes.framework import instantiate, split_pipeline

    try:
        specs = tuple(split_pipeline(text))
        for spec in specs:  # unknown passes and bad parameters are usage errors too
            instantiate(spec)
    except MeweError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return specs


def _fallback(text: str) -> str:
    return "" if text == "none" else text  # "" (not None): given, and off


def _multivariant(args: argparse.Namespace) -> MultivariantOptions:
    """mewe.toml (or [tool.mewe]) settings, overridden by the flags given."""
    from mewe.config import apply_settings, find_settings

    origin, settings = find_settings()
    multivariant = apply_settings(MultivariantOptions(), settings, origin) if settings else MultivariantOptions()
    flags = {"variants": args.variants, "seed": args.seed, "passes": args.passes, "stack": args.stack,
             "include": tuple(args.only) or None, "exclude": tuple(args.skip) or None, "policy": args.policy,
             "dispatch": args.dispatch, "tail_calls": args.tail_calls, "trace": args.trace, "reseed": args.reseed,
             "rerandomize": args.rerandomize, "max_size": args.max_size, "max_cost": args.max_cost, "merge_bodies": args.merge_bodies,
             "self_calls": args.self_calls, "jobs": args.jobs, "executor": args.executor, "cache": args.cache,
             "verify_each": args.verify_each, "fallback": args.fallback}
    if args.profile is not None:
        from mewe.profile import hot_functions

        flags["hot"] = hot_functions(args.profile)
    if flags["fallback"] == "":
        flags["fallback"], multivariant = None, dataclasses.replace(multivariant, fallback=None)
    return dataclasses.replace(multivariant, **{k: v for k, v in flags.items() if v is not None})


class _TerminalProgress:
    """A build's progress (stage, functions done, elapsed time) on one line of stderr that is
    rewritten in place; used only when stderr is a terminal. (No refresh thread: a second
    thread would keep code generation from forking.)"""

    UNITS = {"compiling": "sources", "making variants": "functions"}

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.stage, self.shown = "", False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self.stage and done < total and now - self.last < 0.1:
            return
        self.stage, self.last, self.shown = stage, now, True
        count = f" {done:,}/{total:,} {self.UNITS.get(stage, '')}".rstrip() if total else ""
        sys.stderr.write(f"\r\033[Kmewe: {stage}{count} ({now - self.start:.0f} s)")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _report_build(result, verbose: bool) -> None:
    for warning in result.warnings:
        print(f"mewe: warning: {warning}", file=sys.stderr)
    if result.manifest:
        for line in result.manifest.drop_summary(verbose):
            print(f"mewe: {line}", file=sys.stderr)
    size = f"{result.size / 1024:,.0f} KB"
    if result.manifest:
        totals = result.manifest.totals()
        bodies = totals["bodies"]
        print(f"mewe: wrote {result.output} ({totals['dispatched']:,} of {totals['functions']:,} functions dispatched, "
              f"{bodies:,} {'body' if bodies == 1 else 'bodies'}, {size})", file=sys.stderr)
    else:
        print(f"mewe: wrote {result.output} ({size})", file=sys.stderr)
    if not verbose:
        return
    if result.manifest_path:
        print(f"mewe: manifest {result.manifest_path}", file=sys.stderr)
    for temp in result.temps:
        print(f"mewe: kept {temp}", file=sys.stderr)


def _cmd_build(args: argparse.Namespace) -> int:
    from mewe.pipeline import build

    options = CompileOptions(
        include_dirs=tuple(args.include), defines=tuple(args.define), undefines=tuple(args.undefine),
        opt_level=args.opt, extra_flags=tuple(getattr(args, "cflags", ())),
    )
    output = args.output or Path(args.sources[0]).with_suffix(".wasm").name
    progress = _TerminalProgress() if sys.stderr.isatty() and not args.verbose else None
    try:
        result = build(args.sources, output, options=options, multivariant=_multivariant(args), cc=args.cc,
                       keep_temps=args.keep_temps, verbose=args.verbose, progress=progress, emit=args.emit)
    finally:
        if progress:
            progress.close()
    _report_build(result, args.verbose)
    return 0


def _cmd_cargo(args: argparse.Namespace) -> int:
    from mewe.pipeline import cargo_build

    results = cargo_build(args.cargo_args, args.output, options=CompileOptions(opt_level=args.opt),
                          multivariant=_multivariant(args), cc=args.cc, keep_temps=args.keep_temps,
                          verbose=args.verbose, emit=args.emit)
    for result in results:
        print(f"mewe: {result.output}", file=sys.stderr)
        _report_build(result, args.verbose)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from mewe.fsutil import atomic_output
    from mewe.runtime import run

    env = dict(pair for pair in args.env)
    policy = Policy("seeded", args.seed) if args.seed is not None else args.policy
    if args.trace is None:
        return run(args.module, args.args, env=env, dirs=args.dir, policy=policy)
    trace: list[tuple[str, int]] = []
    with atomic_output(args.trace) as tmp:
        try:
            status = run(args.module, args.args, env=env, dirs=args.dir, policy=policy, trace=trace)
        finally:  # a trap still leaves the trace up to it
            with open(tmp, "w") as fh:
                for name, variant in trace:
                    fh.write(json.dumps({"function": name, "variant": variant}) + "\n")
    return status


def _cmd_serve(args: argparse.Namespace) -> int:
    from mewe.runtime.serve import Limits, serve, service_names

    routes = service_names(args.modules)

    def ready(host: str, port: int) -> None:
        paths = ", ".join(f"/{name}" for name in routes) + (" and /" if len(routes) == 1 else "; / lists them")
        print(f"mewe serve: http://{host}:{port} ({args.nodes} node{'s' if args.nodes > 1 else ''}; {paths})",
              file=sys.stderr, flush=True)

    limits = Limits(wall_ms=args.timeout_ms, memory_mb=args.memory_mb, body_bytes=args.max_body)
    serve(args.modules, host=args.host, port=args.port, nodes=args.nodes, limits=limits, ready=ready,
          request_log=args.log)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mewe.report import write_report

    out = write_report(args.results, args.output)
    print(f"mewe: wrote {out}", file=sys.stderr)
    return 0


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(text: str) -> int:
    """`500M`, `2G`, `64k` or a number of bytes."""
    number, unit = text.strip().lower().rstrip("b"), ""
    if number and number[-1] in "kmg":
        number, unit = number[:-1], number[-1]
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size '{text}' (use bytes, or K, M, G)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid size '{text}': negative")
    return int(value * _UNITS[unit])


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _cmd_cache(args: argparse.Namespace) -> int:
    from mewe.passes import cache

    if args.action == "info":
        root, entries, size = cache.info()
        print(f"{root}: {entries} entries, {_human(size)}")
    elif args.action == "clear":
        print(f"mewe: freed {_human(cache.clear())}", file=sys.stderr)
    else:
        if args.max_size is None:
            raise MeweError("mewe cache prune needs --max-size SIZE")
        print(f"mewe: freed {_human(cache.prune(args.max_size))}", file=sys.stderr)
    return 0


def _cmd_server(args: argparse.Namespace) -> int:
    import signal

    from mewe import server

    found = server.servers()
    for path, pid in found:
        if args.action == "status":
            print(f"{path}: " + (f"running, pid {pid}" if pid else "not running"))
        elif pid:
            os.kill(pid, signal.SIGTERM)  # it finishes the requests it has, then exits
    if args.action == "status" and not found:
        print(f"no mewe-cc compile server under {server._cache_dir()}")
    elif args.action == "stop":
        print(f"mewe: stopped {sum(1 for _, pid in found if pid)} compile server(s)", file=sys.stderr)
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from mewe.passes import describe

    rows = describe()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from mewe.inspect import preservation

    report = preservation(args.module, args.manifest, native=not args.wasm_only)
    if args.json:
        sys.stdout.write(report.to_json())
        return 0
    functions, variants = len(report.functions), len(report.variants())
    print(f"{report.module}: {_plural(functions, 'dispatched function')}, {_plural(variants, 'variant')} "
          f"(passes are stacked: a variant counts under each pass that made it)")
    print(report.markdown() if args.markdown else report.table())
    return 0


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1, got '{text}'") from None


def _cmd_check_pass(args: argparse.Namespace) -> int:
    from mewe.checkpass import check_pass

    result = check_pass(args.name, args.sources or None, variants=args.variants, seeds=args.seeds, csmith=args.csmith,
                        jobs=args.jobs, timeout=args.timeout, progress=lambda line: print(f"mewe: {line}", file=sys.stderr))
    print(result.table())
    print("\n".join(result.summary()))
    return 0 if result.ok else 1


def _add_multivariant_options(b: argparse.ArgumentParser) -> None:
    mv = b.add_argument_group("multivariant", "defaults come from mewe.toml or [tool.mewe] in pyproject.toml, if present")
    mv.add_argument("--variants", type=_int_in(0, MAX_VARIANTS), metavar="N",
                    help="variants per function besides the original (default 0: a plain module)")
    mv.add_argument("--seed", type=int, metavar="S", help="seed for the passes (default 0); same seed, same binary")
    mv.add_argument("--passes", type=_pipeline, metavar="A,B",
                    help="pass pipeline per variant, each pass optionally with parameters: 'substitute(p=0.3),junk-code' "
                         "(default: random stacks; see 'mewe passes')")
    mv.add_argument("--fallback", type=_fallback, metavar="PASS",
                    help="random stacks: the pass the surplus half of the candidates also gets, so that small "
                         f"functions still get variants codegen keeps (default {FALLBACK}; 'none' for none)")
    mv.add_argument("--stack", type=_int_in(1), metavar="K", help="passes stacked per variant in random mode (default 2)")
    mv.add_argument("--only", action="append", default=[], metavar="PATTERN", help="diversify only functions matching (fnmatch)")
    mv.add_argument("--skip", action="append", default=[], metavar="PATTERN", help="do not diversify functions matching")
    mv.add_argument("--policy", type=_policy, metavar="POLICY",
                    help="discriminator: random (default), seeded:S, pinned:K or host")
    mv.add_argument("--dispatch", choices=("switch", "table"),
                    help="dispatcher form: switch (br_table, default) or table (call_indirect)")
    mv.add_argument("--no-tail-calls", dest="tail_calls", action="store_false", default=None,
                    help="forward with call instead of wasm return_call")
    mv.add_argument("--trace", action="store_true", default=None, help="record every dispatch (see 'mewe run --trace')")
    mv.add_argument("--rerandomize", type=_rerandomize, metavar="MODE",
                    help="when a variant is drawn anew: call (every call), every:N (each function's variant re-drawn "
                         "after about N of its calls, and about every N dispatches of the module; default "
                         "every:1000) or request (once per instance)")
    mv.add_argument("--reseed", type=_int_in(1), metavar="N", help="draws between re-seeds from WASI random_get")
    mv.add_argument("--max-cost", dest="max_cost", type=_ratio, metavar="RATIO",
                    help="keep only variants whose estimated cost (loop-weighted IR instructions) is at most RATIO "
                         "times the original's; a function with none keeps its cheapest (default 1.25; 0: any)")
    mv.add_argument("--merge-bodies", dest="merge_bodies", type=_int_in(0), metavar="N",
                    help="inline the bodies of leaf functions of at most N instructions (and no stack slots) where "
                         "they are dispatched, so no call reaches them (default 16; 0: never)")
    mv.add_argument("--self-calls", dest="self_calls", choices=SELF_CALLS,
                    help="a function's direct calls to itself: dispatch (default; re-drawn like any call) or stay "
                         "(on the body making them: a recursion runs one body, so it costs no variant change, "
                         "and its variant changes only when it is entered again from elsewhere)")
    mv.add_argument("--profile", metavar="TRACE",
                    help="a 'mewe run --trace' file: --max-cost bounds only the functions that took at least "
                         "0.1%% of its dispatches; cold ones keep any variant")
    mv.add_argument("--max-size", dest="max_size", type=_int_in(1), metavar="N",
                    help="leave functions of more than N instructions undiversified (default 20000)")
    mv.add_argument("--jobs", type=_int_in(1), metavar="N",
                    help="processes making variants and generating code (default: one per CPU)")
    mv.add_argument("--executor", type=_executor, metavar="URL",
                    help="where variants are made: local (processes, default), serial, or dask://HOST:PORT (a Dask scheduler)")
    mv.add_argument("--verify-each", dest="verify_each", action="store_true", default=None,
                    help="verify each variant after every pass, so an invalid one names the pass that broke it "
                         "(slower; bypasses the variant cache)")
    mv.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                    help="make every variant anew (default: reuse those in the cache)")


def _add_output_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("--emit", choices=("module", "component", "http"), default="module",
                   help="module: a WASI preview1 command module (default); component: a WASI 0.2 "
                        "wasi:cli/command component; http: a wasi:http/proxy component (request body "
                        "as stdin, ?arg= as arguments, stdout as the response)")
    b.add_argument("--keep-temps", action="store_true", help="keep the linked bitcode (.bc) and object (.o) beside the output")
    b.add_argument("-v", "--verbose", action="store_true", help="print the commands run")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mewe", description="Multivariant WebAssembly for C and Rust services.")
    parser.add_argument("--version", action="version", version=f"mewe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    b = sub.add_parser("build", help="compile C, Rust or LLVM IR sources into a WASI module",
                       description="Compile .c, .rs (a single-file Rust program), .ll and .bc sources into one "
                                   "wasm32-wasi command module.")
    b.add_argument("sources", nargs="+", metavar="SOURCE", help=".c, .rs, .ll or .bc input")
    b.add_argument("-o", dest="output", metavar="FILE", help="output module (default: first source's name with .wasm)")
    b.add_argument("-I", dest="include", action="append", default=[], metavar="DIR", help="add an include directory")
    b.add_argument("-D", dest="define", action="append", default=[], metavar="NAME[=VALUE]", help="define a macro")
    b.add_argument("-U", dest="undefine", action="append", default=[], metavar="NAME", help="undefine a macro")
    b.add_argument("-O", dest="opt", default="2", choices=OPT_LEVELS, metavar="LEVEL",
                   help="optimization level: 0 1 2 3 s z (default 2)")
    _add_multivariant_options(b)
    b.add_argument("--cc", metavar="CLANG", help="C compiler: a clang with a WASI sysroot (default: $MEWE_CC, else ziglang)")
    _add_output_options(b)
    b.set_defaults(func=_cmd_build)

    c = sub.add_parser("cargo", help="build a cargo project's binaries into multivariant WASI modules",
                       description="Run cargo so that each binary, its dependencies and std come out as one "
                                   "wasm32-wasi bitcode module (fat LTO, panic=abort), then diversify and link it "
                                   "like 'mewe build'. mewe's options go before 'build', cargo's after it. Each "
                                   "binary NAME is written to <target-dir>/mewe/NAME.wasm.",
                       usage="mewe cargo [options] build [cargo options]")
    c.add_argument("action", choices=("build",), help="the cargo command (only build)")
    c.add_argument("cargo_args", nargs=argparse.REMAINDER, metavar="CARGO_ARGS",
                   help="cargo's own options: --manifest-path, -p, --bin, --features, --target-dir, ...")
    c.add_argument("-o", dest="output", metavar="FILE", help="output module, when one binary is selected")
    c.add_argument("-O", dest="opt", default="2", choices=OPT_LEVELS, metavar="LEVEL",
                   help="optimization level for rustc and codegen: 0 1 2 3 s z (default 2)")
    _add_multivariant_options(c)
    c.add_argument("--cc", metavar="CLANG", help="C toolchain for the link (default: $MEWE_CC, else ziglang)")
    _add_output_options(c)
    c.set_defaults(func=_cmd_cargo)

    p = sub.add_parser("passes", help="list the diversification passes",
                       description="List every registered pass (built-in and from plugins) with its description.")
    p.set_defaults(func=_cmd_passes)

    ca = sub.add_parser("cache", help="show, prune or clear the variant cache",
                        description="The variant cache ($MEWE_CACHE_DIR/variants, default ~/.cache/mewe/variants) "
                                    "keeps each function's variants (and proofs of plugin rules) so rebuilds remake "
                                    "only what changed, and the machine code of modules 'run' and 'serve' ran. 'info' shows its size, 'prune --max-size SIZE' removes the "
                                    "least recently used entries until it fits, 'clear' empties it.")
    ca.add_argument("action", choices=("info", "prune", "clear"))
    ca.add_argument("--max-size", type=_size, metavar="SIZE", help="for prune: the size to keep, e.g. 500M or 2G")
    ca.set_defaults(func=_cmd_cache)

    sv = sub.add_parser("server", help="show or stop mewe-cc's compile servers",
                        description="mewe-cc hands each compile to a per-user server that keeps the toolchain "
                                    "loaded (started on first use, under $MEWE_CACHE_DIR/server; it exits after "
                                    "$MEWE_SERVER_IDLE seconds idle, default 600). MEWE_SERVER=0 compiles "
                                    "in-process instead; the outputs are the same bytes either way.")
    sv.add_argument("action", choices=("status", "stop"))
    sv.set_defaults(func=_cmd_server)

    i = sub.add_parser("inspect", help="measure which variants survive codegen (wasm and Cranelift)",
                       description="For each dispatched function of a multivariant module, check that every variant's "
                                   "code differs from the original's and from every earlier variant's, in the wasm "
                                   "and in wasmtime's Cranelift machine code; report per pass and overall.")
    i.add_argument("module", help="a multivariant .wasm built by mewe")
    i.add_argument("--manifest", metavar="FILE", help="its build manifest (default: NAME.manifest.json beside it)")
    form = i.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON, with the overall rate as 'preservation'")
    form.add_argument("--markdown", action="store_true", help="print the table as Markdown (default: aligned text)")
    i.add_argument("--wasm-only", action="store_true", help="skip the Cranelift level")
    i.set_defaults(func=_cmd_inspect)

    r = sub.add_parser("run", help="run a WASI module under wasmtime",
                       description="Run a WASI command module; its exit status becomes mewe's. A trap exits with 134.")
    r.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="set an environment variable")
    r.add_argument("--dir", action="append", default=[], metavar="HOST[::GUEST]", help="preopen a host directory")
    r.add_argument("--policy", type=_policy, metavar="POLICY",
                   help="override the discriminator: random, seeded:S, pinned:K or host")
    r.add_argument("--seed", type=int, metavar="S", help="same as --policy seeded:S")
    r.add_argument("--trace", metavar="FILE", help="write the dispatch trace as JSON lines (module built with --trace)")
    r.add_argument("module", help="the .wasm module")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the module")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("serve", help="serve WASI modules over HTTP like edge nodes",
                       description="An edge-node emulator: each module answers at /NAME (a lone one at / too; "
                                   "with several, GET / lists them); "
                                   "the request body is its stdin, ?arg=A&arg=B its arguments, its stdout the "
                                   "response. A fresh instance per request; NODES worker processes.")
    v.add_argument("modules", nargs="+", metavar="MODULE", help="a WASI command module (.wasm)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    v.add_argument("--port", type=_int_in(0, 65535), default=8080, help="port (default 8080; 0 picks a free one)")
    v.add_argument("--nodes", type=_int_in(1), default=1, help="worker processes, each an edge node (default 1)")
    v.add_argument("--timeout-ms", type=_int_in(1), default=10_000, help="wall-time limit per request (default 10000)")
    v.add_argument("--memory-mb", type=_int_in(1), default=256, help="linear-memory limit per request (default 256)")
    v.add_argument("--max-body", type=_int_in(0), default=16 << 20, help="largest request body in bytes (default 16 MiB)")
    v.add_argument("--log", metavar="FILE", help="append a line per request to FILE ('-': stderr): time, node, client, "
                                                 "request, status, bytes, milliseconds")
    v.set_defaults(func=_cmd_serve)

    k = sub.add_parser("check-pass", help="check a pass: determinism, coverage, and differential runs",
                       description="Build each source plain and multivariant with only pass NAME (twice per seed, "
                                   "variant cache off), and compare the multivariant module's runs, under random "
                                   "dispatch and with each body pinned, with the plain module's. Exit 1 on a "
                                   "miscompile, a nondeterministic build, or a pass that never applied.")
    k.add_argument("name", metavar="NAME", help="a pass, built in or from a plugin (see 'mewe passes')")
    k.add_argument("sources", nargs="*", metavar="SOURCE", help="C sources to check on (default: the examples)")
    k.add_argument("--variants", type=_int_in(1, MAX_VARIANTS), default=4, metavar="K", help="variants per function (default 4)")
    k.add_argument("--seeds", type=_seeds, default=(0, 1),
                   metavar="S,S", help="build seeds, each checked (default 0,1)")
    k.add_argument("--csmith", type=_int_in(0), default=3, metavar="N", help="Csmith programs to check on too (default 3)")
    k.add_argument("--jobs", type=_int_in(1), metavar="N", help="processes making variants (default: one per CPU)")
    k.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="longest run (default 10)")
    k.set_defaults(func=_cmd_check_pass)

    rp = sub.add_parser("report", help="render evaluation results as one HTML page",
                        description="Render the JSON that benchmarks/edge.py writes (--json) as an HTML page with "
                                    "tables and charts, each figure beside the reference's.")
    rp.add_argument("results", help="evaluation results (JSON)")
    rp.add_argument("-o", dest="output", default="report.html", help="output page (default report.html)")
    rp.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args, unknown = parser.parse_known_args(argv)
    # `mewe build` takes the compiler flags users type (-Wall, -std=gnu11, -g, -fno-strict-aliasing,
    # ...) and passes what it does not own to clang; a misspelt --option is still an error.
    if unknown and getattr(args, "func", None) is _cmd_build and all(a.startswith("-") and not a.startswith("--")
                                                                    for a in unknown):
        args.cflags = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return run_reporting("mewe", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
