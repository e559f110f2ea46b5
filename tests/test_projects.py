"""Real projects built unmodified with their own build systems through mewe-cc
(benchmarks/projects.py): Lua 5.4 with make, running its own test suite; zlib-ng with CMake,
running its ctest tests and compression round trips; jq with autotools, running its own test
files. Every multivariant run, under random,
seeded and every pinned policy, must match the plain build's exit status and output.
(libsodium, with autotools, is tests/test_libsodium.py.)"""

from __future__ import annotations

import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.slow  # downloads three sdists and builds each project twice (about 8 min)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    bench = load_benchmark("projects")
    work = tmp_path_factory.mktemp("projects")
    return {name: bench.evaluate(bench.PROJECTS[name], work, variants=4, seeds=1, rounds=1, reuse=False)
            for name in ("lua", "zlib-ng", "jq")}


def test_lua_builds_with_make_and_passes_its_test_suite_under_every_variant(results):
    lua = results["lua"]
    assert lua["mismatches"] == []
    assert lua["runs"] == lua["checks"] * lua["policies"] and lua["policies"] == 2 + lua["widest"]
    assert lua["checks"] >= 30 and lua["plain_passing"] >= lua["checks"] - 3
    # What fails on WASI in the plain build too: io.popen/os.getenv("PATH") (files), a locale
    # musl accepts without switching the decimal point (literals), long search paths (attrib).
    assert set(lua["plain_failing"]) <= {"testes/files.lua", "testes/literals.lua", "testes/attrib.lua"}
    assert lua["dispatched"] >= 0.95 * lua["functions"] > 500


def test_zlib_ng_builds_with_cmake_and_compresses_identically_under_every_variant(results):
    zlib = results["zlib-ng"]
    assert zlib["mismatches"] == []
    assert zlib["plain_passing"] == zlib["checks"] >= 20 and zlib["nondeterministic"] == []
    assert zlib["dispatched"] >= 0.95 * zlib["functions"] > 80


def test_jq_builds_with_autotools_and_passes_its_test_files_under_every_variant(results):
    jq = results["jq"]
    assert jq["mismatches"] == []
    assert jq["plain_passing"] == jq["checks"] == 7 and jq["nondeterministic"] == []
    assert jq["lines_of_c"] > 100_000  # with the oniguruma and decNumber it vendors
    assert jq["dispatched"] >= 0.95 * jq["functions"] > 600
