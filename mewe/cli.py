"""The `mewe` command line: a thin layer that parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from mewe import __version__
from mewe.errors import MeweError
from mewe.types import OPT_LEVELS, CompileOptions


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return key, value


def _cmd_build(args: argparse.Namespace) -> int:
    from mewe.pipeline import build

    options = CompileOptions(
        include_dirs=tuple(args.include), defines=tuple(args.define), undefines=tuple(args.undefine),
        opt_level=args.opt,
    )
    output = args.output or Path(args.sources[0]).with_suffix(".wasm").name
    result = build(args.sources, output, options=options, cc=args.cc, keep_temps=args.keep_temps, verbose=args.verbose)
    if args.verbose:
        print(f"mewe: wrote {result.output} ({result.size} bytes)", file=sys.stderr)
        for temp in result.temps:
            print(f"mewe: kept {temp}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mewe.runtime import run

    env = dict(pair for pair in args.env)
    return run(args.module, args.args, env=env, dirs=args.dir)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mewe", description="Multivariant WebAssembly for C services.")
    parser.add_argument("--version", action="version", version=f"mewe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    b = sub.add_parser("build", help="compile C/LLVM IR sources into a WASI module",
                       description="Compile .c, .ll and .bc sources into one wasm32-wasi command module.")
    b.add_argument("sources", nargs="+", metavar="SOURCE", help=".c, .ll or .bc input")
    b.add_argument("-o", dest="output", metavar="FILE", help="output module (default: first source's name with .wasm)")
    b.add_argument("-I", dest="include", action="append", default=[], metavar="DIR", help="add an include directory")
    b.add_argument("-D", dest="define", action="append", default=[], metavar="NAME[=VALUE]", help="define a macro")
    b.add_argument("-U", dest="undefine", action="append", default=[], metavar="NAME", help="undefine a macro")
    b.add_argument("-O", dest="opt", default="2", choices=OPT_LEVELS, metavar="LEVEL",
                   help="optimization level: 0 1 2 3 s z (default 2)")
    b.add_argument("--cc", metavar="CLANG", help="C compiler: a clang with a WASI sysroot (default: $MEWE_CC, else ziglang)")
    b.add_argument("--keep-temps", action="store_true", help="keep the linked bitcode (.bc) and object (.o) beside the output")
    b.add_argument("-v", "--verbose", action="store_true", help="print the commands run")
    b.set_defaults(func=_cmd_build)

    r = sub.add_parser("run", help="run a WASI module under wasmtime",
                       description="Run a WASI command module; its exit status becomes mewe's. A trap exits with 134.")
    r.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="set an environment variable")
    r.add_argument("--dir", action="append", default=[], metavar="HOST[::GUEST]", help="preopen a host directory")
    r.add_argument("module", help="the .wasm module")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the module")
    r.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except MeweError as err:
        if err.details:
            print(err.details, file=sys.stderr)
        print(f"mewe: error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mewe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
