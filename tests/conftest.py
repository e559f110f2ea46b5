"""Shared fixtures: run the real `mewe` CLI and build the examples once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# mewe-cc's compile servers that the tests start leave soon after the last test.
os.environ.setdefault("MEWE_SERVER_IDLE", "60")


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str


def mewe(*args: str, stdin: bytes = b"", cwd: Path | None = None, env: dict | None = None) -> Result:
    """Run `python -m mewe ARGS` as a user would, capturing everything."""
    proc = subprocess.run([sys.executable, "-m", "mewe", *map(str, args)], input=stdin,
                          capture_output=True, cwd=cwd, env=env, timeout=300)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="session")
def example_wasm(tmp_path_factory):
    """Build examples/<name>.c once per session; returns its .wasm path."""
    out_dir = tmp_path_factory.mktemp("examples")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            out = out_dir / f"{name}.wasm"
            res = mewe("build", EXAMPLES / f"{name}.c", "-o", out)
            assert res.returncode == 0, res.stderr
            built[name] = out
        return built[name]

    return get


def write_plugin(directory: Path, module: str, source: str, group: str, name: str, obj: str) -> Path:
    """An installed-looking plugin in `directory`: `module`.py and a dist-info whose entry
    point `name` in `group` is `module:obj`. Put `directory` on the path."""
    (directory / f"{module}.py").write_text(source)
    dist = directory / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = {module}:{obj}\n")
    return directory


def write_pass_plugin(directory: Path, module: str, source: str, name: str, cls: str) -> Path:
    """A pass plugin: `cls` registered as pass `name` (the `mewe.passes` group)."""
    return write_plugin(directory, module, source, "mewe.passes", name, cls)


def sink_variants(sources: list[Path], count: int, only: set[str] | None = None) -> dict:
    """Variants for tests: exact clones of each function whose entry block also makes a
    volatile store of its variant number to a stack slot -- the same results, different code."""
    from mewe import frontends, linker
    from mewe.linker.irtext import ModuleText
    from mewe.llvmir import parse_module
    from mewe.toolchain import find_toolchain
    from mewe.types import CompileOptions, Variant

    toolchain = find_toolchain()
    modules = [frontends.load_source(s, CompileOptions(), toolchain) for s in sources]
    text = ModuleText.parse(str(parse_module(linker.link_modules(modules).bitcode)))
    variants = {}
    for name in text.definitions:
        if only is not None and name not in only:
            continue
        header, *body = text.function_text(name).split("\n")
        at = 1 if body[0].endswith(":") else 0
        variants[name] = [
            Variant(name, "\n".join([header, *body[:at], "  %mewe.sink = alloca i32, align 4",
                                     f"  store volatile i32 {k}, ptr %mewe.sink, align 4", *body[at:]]), ("sink",))
            for k in range(1, count + 1)
        ]
    return variants


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (its functions drive builds the tests share)."""
    import importlib.util

    key = f"bench_{name}"
    if key not in sys.modules:  # registered, so worker processes (forked) can unpickle its functions
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="session")
def libsodium(tmp_path_factory) -> Path:
    """libsodium (downloaded by package name, cached outside the repository) configured and built
    by its own autotools with mewe-cc: multivariant, traced, cold. Returns the build tree.
    MEWE_TEST_LIBSODIUM names a tree built so before, to skip the build when iterating."""
    return _libsodium(tmp_path_factory, "multivariant", {"MEWE_VARIANTS": "4", "MEWE_TRACE": "1", "MEWE_CACHE": "0"},
                      "MEWE_TEST_LIBSODIUM")


@pytest.fixture(scope="session")
def libsodium_plain(tmp_path_factory) -> Path:
    """libsodium built the same way without variants (MEWE_TEST_LIBSODIUM_PLAIN: one built before)."""
    return _libsodium(tmp_path_factory, "plain", {"MEWE_VARIANTS": "0"}, "MEWE_TEST_LIBSODIUM_PLAIN")


def _libsodium(tmp_path_factory, kind: str, settings: dict[str, str], reuse: str) -> Path:
    import os

    if os.environ.get(reuse):
        return Path(os.environ[reuse])
    if subprocess.run(["sh", "-c", "command -v make"], capture_output=True).returncode != 0:
        pytest.fail("libsodium's build needs make (apt install make)")
    bench = load_benchmark("libsodium")
    dest = tmp_path_factory.mktemp("libsodium") / kind
    bench.build(bench.fetch(), dest, settings, jobs=os.cpu_count() or 1)
    return dest


def write_rule_plugin(directory: Path, module: str, source: str, name: str, obj: str) -> Path:
    """A rule plugin: entry point `name` of the `mewe.rules` group is `module:obj` (rule text,
    or a callable returning it)."""
    return write_plugin(directory, module, source, "mewe.rules", name, obj)


def child_pids(pid: int) -> list[int]:
    """Process ids of `pid`'s child processes (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(found)
