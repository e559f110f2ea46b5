"""The top-level CMakeLists.txt builds the examples through cmake/mewe-toolchain.cmake (mewe-cc as
the C compiler) and ctest runs them under `mewe run`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from mewe.wasm import DISPATCH_SECTION, custom_section


def _tool(name: str) -> str:
    # pip's cmake (a test dependency) installs next to this interpreter.
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]')"
    return found


def test_cmake_builds_and_ctest_runs_examples(tmp_path):
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # noqa: E731
    res = run(_tool("cmake"), "-S", str(ROOT), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/mewe-toolchain.cmake",
              f"-DMEWE_BIN_DIR={Path(sys.executable).parent}")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(_tool("cmake"), "--build", str(build), "-j2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in build.glob("*.wasm")) == ["base64.wasm", "hash.wasm", "interp.wasm", "sort.wasm"]
    res = run(_tool("ctest"), "--test-dir", str(build), "--output-on-failure")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "100% tests passed" in res.stdout and "out of 4" in res.stdout
    for module in build.glob("*.wasm"):  # multivariant, through the drop-in compiler
        assert custom_section(module.read_bytes(), DISPATCH_SECTION), module.name
    compiler = next(build.glob("CMakeFiles/*/CMakeCCompiler.cmake")).read_text()
    assert "/mewe-cc" in compiler


def test_projects_defaulting_to_shared_libraries_build_static_ones(tmp_path):
    """BUILD_SHARED_LIBS ON (a common default) gives static libraries: wasm32-wasi has no
    shared ones, and CMake's generic settings would otherwise ask mewe-cc for -shared."""
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(shared C)\n"
        'option(BUILD_SHARED_LIBS "" ON)\n'
        "add_library(foo foo.c)\nadd_executable(app main.c)\ntarget_link_libraries(app foo)\n")
    (tmp_path / "foo.c").write_text("int foo(int x) { return x + 1; }\n")
    (tmp_path / "main.c").write_text('#include <stdio.h>\nint foo(int);\nint main(void) { printf("%d\\n", foo(41)); return 0; }\n')
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # noqa: E731
    res = run(_tool("cmake"), "-S", str(tmp_path), "-B", str(build),
              f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/mewe-toolchain.cmake", f"-DMEWE_BIN_DIR={Path(sys.executable).parent}")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(_tool("cmake"), "--build", str(build))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (build / "libfoo.a").is_file() and not list(build.glob("libfoo.so*"))
    res = run(sys.executable, "-m", "mewe", "run", str(build / "app.wasm"))
    assert (res.returncode, res.stdout) == (0, "42\n")
