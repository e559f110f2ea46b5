"""Rust frontend: rustc or cargo to one wasm32-wasi LLVM bitcode module per program.

A Rust program becomes one module holding the crate, its dependencies and std: fat LTO merges
them, `--emit=llvm-bc` writes the merged module, `panic=abort` keeps unwinding out of wasm.
`load_ir` then drops the debug info std carries and gives rustc's `main` the name wasi-libc's
start code calls.

Toolchains are tried in this order; each must have a wasm32 std (or, for rustc-web, std's
sources with their vendored dependencies to build one):
1. rustup's `rustc` with the wasm32-wasip1 (or older wasm32-wasi) target installed;
2. Debian's `rustc-web`/`cargo-web`, building std with `-Zbuild-std` from `rust-web-src`;
3. Debian's `rustc` 1.63 with `libstd-rust-dev-wasm32` (LLVM 14 bitcode, which llvmlite reads).
With Debian's toolchains, crates come from Debian's registry directory (`librust-*-dev`
packages) in place of crates.io, which `MEWE_CARGO_REGISTRY` (a directory, or `crates-io`)
overrides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mewe.errors import MeweError
from mewe.types import CompileOptions

RUST_SUFFIXES = (".rs",)
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
WASM_TARGETS = ("wasm32-wasip1", "wasm32-wasi")
INSTALL_HINT = (
    "no Rust toolchain with a wasm32-wasi standard library: install one with "
    "'rustup target add wasm32-wasip1', or on Debian 'apt-get install rustc cargo libstd-rust-dev-wasm32'")

# The cargo profile every mewe build uses: one module, std included, no unwinding, no DWARF.
PROFILE = {"LTO": "fat", "CODEGEN_UNITS": "1", "PANIC": "abort", "DEBUG": "0", "INCREMENTAL": "false"}


@dataclass(frozen=True)
class RustToolchain:
    """A rustc (and cargo) able to produce wasm32-wasi bitcode."""

    kind: str  # "rustup", "rustc-web" or "debian"
    rustc: str
    cargo: str | None
    target: str
    version: str
    llvm_major: int
    build_std: bool = False  # std is compiled from source by cargo (-Zbuild-std)
    std_sources: Path | None = None  # with build_std: the source root (library/, vendor/)
    registry: Path | None = None  # directory source standing in for crates.io
    skipped: tuple[str, ...] = field(default=(), compare=False)  # why earlier candidates were passed over

    def env(self) -> dict[str, str]:
        env = dict(os.environ, RUSTC=self.rustc)
        if self.build_std:
            env["RUSTC_BOOTSTRAP"] = "1"
            env["__CARGO_TESTS_ONLY_SRC_ROOT"] = str(self.std_sources)  # where -Zbuild-std finds library/
        return env

    def describe(self) -> str:
        return f"{self.kind} rustc {self.version} (LLVM {self.llvm_major}), target {self.target}"


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def _probe(rustc: str) -> tuple[str, int, Path] | None:
    """(version, LLVM major, sysroot) of `rustc`, or None if it does not run."""
    try:
        info = _run([rustc, "-vV"], timeout=60)
        root = _run([rustc, "--print", "sysroot"], timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if info.returncode or root.returncode:
        return None
    version = re.search(r"^release: (\S+)", info.stdout, re.M)
    llvm = re.search(r"^LLVM version: (\d+)", info.stdout, re.M)
    if not version:
        return None
    return version.group(1), int(llvm.group(1)) if llvm else 0, Path(root.stdout.strip())


def _wasm_std(sysroot: Path) -> str | None:
    """The wasm32 WASI target whose std is installed in `sysroot`, if any."""
    for target in WASM_TARGETS:
        if any((sysroot / "lib" / "rustlib" / target / "lib").glob("libstd-*.rlib")):
            return target
    return None


def _cargo_beside(rustc: str) -> str | None:
    sibling = Path(rustc).with_name("cargo")
    return str(sibling) if sibling.exists() else shutil.which("cargo")


def _std_sources(sysroot: Path, version: str) -> Path | None:
    """std's sources for -Zbuild-std, with the vendored crates std depends on."""
    for root in (sysroot / "lib" / "rustlib" / "src" / "rust", Path(f"/usr/src/rustc-{version}")):
        if (root / "library" / "std").is_dir() and (root / "vendor").is_dir():
            return root
    return None


@lru_cache(maxsize=4)
def find_rust_toolchain(rustc: str | None = None) -> RustToolchain:
    """The first usable toolchain (see the module docstring); `rustc` or `$MEWE_RUSTC` forces one."""
    forced = rustc or os.environ.get("MEWE_RUSTC")
    candidates = [forced] if forced else [c for c in (shutil.which("rustc"), "/usr/bin/rustc") if c]
    skipped, seen = [], set()
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real in seen or not os.path.exists(candidate):
            continue
        seen.add(real)
        probe = _probe(candidate)
        if probe is None:
            skipped.append(f"{candidate}: does not run")
            continue
        version, llvm_major, sysroot = probe
        kind = "rustup" if ".rustup" in str(sysroot) or ".cargo" in candidate else "debian"
        target = _wasm_std(sysroot)
        registry = DEBIAN_REGISTRY if kind == "debian" and DEBIAN_REGISTRY.is_dir() else None
        if target:
            return RustToolchain(kind, candidate, _cargo_beside(candidate), target, version, llvm_major,
                                 registry=registry, skipped=tuple(skipped))
        sources = _std_sources(sysroot, version) if kind == "debian" else None
        if sources:  # std's own dependencies resolve from its vendored crates
            return RustToolchain("rustc-web", candidate, _cargo_beside(candidate), "wasm32-wasip1", version,
                                 llvm_major, build_std=True, std_sources=sources, registry=sources / "vendor",
                                 skipped=tuple(skipped))
        skipped.append(f"{candidate} ({version}): no wasm32 std, and no std sources with vendored crates")
    detail = f" (tried: {'; '.join(skipped)})" if skipped else ""
    raise MeweError(INSTALL_HINT + detail)


def rustc_flags(options: CompileOptions, toolchain: RustToolchain) -> list[str]:
    """Flags for one crate compiled to a whole-program bitcode module."""
    return ["--target", toolchain.target, "-C", f"opt-level={options.opt_level}", "-C", "panic=abort",
            "-C", "lto=fat", "-C", "codegen-units=1", "-C", "debuginfo=0"]


def compile_rust(source: Path, options: CompileOptions, *, verbose: bool = False) -> bytes:
    """A single-file Rust program (a binary crate) as wasm32-wasi bitcode with std linked in."""
    toolchain = find_rust_toolchain()
    if toolchain.build_std:
        raise MeweError(f"{source}: {toolchain.describe()} builds std through cargo; use 'mewe cargo build'")
    with tempfile.TemporaryDirectory(prefix="mewe-rustc-") as tmp:
        out = Path(tmp) / (source.stem + ".bc")
        argv = [toolchain.rustc, *rustc_flags(options, toolchain), "--edition", "2021", "--crate-type", "bin",
                "--emit", f"llvm-bc={out}", str(source.resolve())]
        _checked(argv, f"{source}: compilation", toolchain.env(), verbose, cwd=tmp)
        return out.read_bytes()


def _checked(argv: list[str], what: str, env: dict, verbose: bool, cwd: str | None = None) -> str:
    if verbose:
        print(" ".join(argv), file=sys.stderr)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    except OSError as exc:
        raise MeweError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        lines = [l for l in proc.stderr.splitlines() if l.startswith("error")] or proc.stderr.strip().splitlines()
        raise MeweError(f"{what} failed: {lines[0] if lines else f'exit status {proc.returncode}'}")
    if verbose and proc.stderr:
        sys.stderr.write(proc.stderr)
    return proc.stdout


# --- cargo -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CargoBinary:
    """One binary target of a cargo build: its merged bitcode and rustc's own (plain) wasm."""

    package: str
    name: str
    bitcode: Path
    plain: Path
    mewe_dir: Path  # <target-dir>/mewe, where multivariant outputs go


# cargo options that take a value, so the value is not mistaken for something else
_VALUED = {"--features", "-F", "--target-dir", "-j", "--jobs", "--config", "-Z", "--color", "--message-format"}


def _split_cargo_args(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Pick out the options mewe acts on; the rest go to cargo unchanged."""
    picked: dict[str, list[str]] = {k: [] for k in ("package", "bin", "manifest", "target", "profile")}
    rest: list[str] = []
    names = {"-p": "package", "--package": "package", "--bin": "bin", "--manifest-path": "manifest",
             "--target": "target", "--profile": "profile"}
    i = 0
    while i < len(args):
        a = args[i]
        key, value = (a.split("=", 1) + [None])[:2] if a.startswith("--") and "=" in a else (a, None)
        if key in names:
            if value is None:
                if i + 1 >= len(args):
                    raise MeweError(f"cargo option {key} needs a value")
                value, i = args[i + 1], i + 1
            picked[names[key]].append(value)
        elif a in ("--release", "-r"):
            pass  # mewe always builds the release profile
        elif a in ("--lib", "--bins", "--all-targets", "--examples", "--tests", "--benches", "--example", "--test",
                   "--bench", "--workspace", "--all", "--exclude"):
            raise MeweError(f"mewe cargo build: {a} is not supported (select binaries with -p and --bin)")
        else:
            rest.append(a)
            if key in _VALUED and value is None and i + 1 < len(args):
                rest.append(args[i + 1])
                i += 1
        i += 1
    return picked, rest


def _metadata(toolchain: RustToolchain, manifest: list[str], env: dict, verbose: bool) -> dict:
    argv = [toolchain.cargo, "metadata", "--format-version", "1", "--no-deps", *sum((["--manifest-path", m]
                                                                                     for m in manifest), [])]
    try:
        return json.loads(_checked(argv, "cargo metadata", env, verbose))
    except json.JSONDecodeError:
        raise MeweError("cargo metadata printed no JSON") from None


def cargo_config(toolchain: RustToolchain) -> list[str]:
    """--config options pointing crates.io at the registry directory, when there is one."""
    choice = os.environ.get("MEWE_CARGO_REGISTRY", "")
    registry = None if choice == "crates-io" else Path(choice) if choice else toolchain.registry
    if registry is None:
        return []
    if not registry.is_dir():
        raise MeweError(f"MEWE_CARGO_REGISTRY: {registry}: no such directory")
    return ["--config", 'source.crates-io.replace-with="mewe-local"',
            "--config", f'source.mewe-local.directory="{registry}"']


def cargo_bitcode(args: list[str], *, opt_level: str = "2", single: bool = False,
                  verbose: bool = False) -> list[CargoBinary]:
    """Run cargo on the binaries `args` select (cargo's -p, --bin, --manifest-path, features...)
    and return each one's merged wasm32-wasi bitcode, with rustc's plain wasm beside it.
    With `single`, selecting more than one binary is an error (raised before building)."""
    toolchain = find_rust_toolchain()
    if toolchain.cargo is None:
        raise MeweError(f"{toolchain.describe()} has no cargo beside it; install cargo")
    picked, rest = _split_cargo_args(list(args))
    if any(t not in WASM_TARGETS for t in picked["target"]):
        raise MeweError(f"mewe cargo build targets {toolchain.target}, not {picked['target'][0]}")
    if picked["profile"] and picked["profile"] != ["release"]:
        raise MeweError("mewe cargo build uses the release profile (with fat LTO); --profile is not supported")
    env = toolchain.env()
    env.update({f"CARGO_PROFILE_RELEASE_{k}": v for k, v in PROFILE.items()}, CARGO_PROFILE_RELEASE_OPT_LEVEL=opt_level)
    meta = _metadata(toolchain, picked["manifest"], env, verbose)
    members = set(meta.get("workspace_default_members") or meta["workspace_members"])
    packages = [p for p in meta["packages"] if (p["name"] in picked["package"]) or
                (not picked["package"] and p["id"] in members)]
    missing = set(picked["package"]) - {p["name"] for p in packages}
    if missing:
        raise MeweError(f"no package '{sorted(missing)[0]}' in this workspace")
    bins = [(p, t["name"]) for p in packages for t in p["targets"] if "bin" in t["kind"]
            and (not picked["bin"] or t["name"] in picked["bin"])]
    unknown = set(picked["bin"]) - {name for _, name in bins}
    if unknown:
        raise MeweError(f"no binary target '{sorted(unknown)[0]}' in the selected packages")
    if not bins:
        raise MeweError("no binary targets to build (mewe builds WASI commands: a crate with a main)")
    if single and len(bins) > 1:
        names = ", ".join(name for _, name in bins)
        raise MeweError(f"-o names one output but cargo selected {len(bins)} binaries ({names}); pick one with --bin")
    target_dir = Path(meta["target_directory"])
    for i, a in enumerate(rest):  # a --target-dir given to cargo wins over the manifest's
        if a == "--target-dir" and i + 1 < len(rest):
            target_dir = Path(rest[i + 1]).resolve()
        elif a.startswith("--target-dir="):
            target_dir = Path(a.split("=", 1)[1]).resolve()
    mewe_dir = target_dir / "mewe"
    mewe_dir.mkdir(parents=True, exist_ok=True)
    build_std = ["-Zbuild-std=std,panic_abort"] if toolchain.build_std else []
    out = []
    for package, name in bins:
        bitcode = mewe_dir / f"{name}.bc"
        argv = [toolchain.cargo, "rustc", *cargo_config(toolchain), *build_std, "--release", "--target",
                toolchain.target, "--manifest-path", package["manifest_path"], "-p", package["name"], "--bin", name, *rest, "--", "--emit", f"llvm-bc={bitcode},link"]
        _checked(argv, f"cargo build of {name}", env, verbose)
        if not bitcode.exists():
            # Fresh to cargo, but the bitcode was deleted since: a changed rustc argument is the
            # one way to make cargo rebuild this crate alone (the next plain run rebuilds it again).
            _checked([*argv, "--cfg", "mewe_rebuild"], f"cargo build of {name}", env, verbose)
        plain = target_dir / toolchain.target / "release" / f"{name}.wasm"
        if not bitcode.exists():
            raise MeweError(f"cargo build of {name} wrote no bitcode at {bitcode}")
        out.append(CargoBinary(package["name"], name, bitcode, plain, mewe_dir))
    return out

