"""The top-level CMakeLists.txt builds the examples with mewe and ctest runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _tool(name: str) -> str:
    # pip's cmake (a test dependency) installs next to this interpreter.
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]')"
    return found


def test_cmake_builds_and_ctest_runs_examples(tmp_path):
    mewe = Path(sys.executable).parent / "mewe"
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # noqa: E731
    res = run(_tool("cmake"), "-S", str(ROOT), "-B", str(build), f"-DMEWE={mewe}")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(_tool("cmake"), "--build", str(build), "-j2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in build.glob("*.wasm")) == ["base64.wasm", "hash.wasm", "interp.wasm", "sort.wasm"]
    res = run(_tool("ctest"), "--test-dir", str(build), "--output-on-failure")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "100% tests passed" in res.stdout and "out of 4" in res.stdout
