"""libsodium, configured and built by its own autotools with mewe-cc (the `libsodium` fixture),
passes its own test suite under several seeds and under every pinned variant.
`benchmarks/libsodium.py --seeds 100` is the full run and the benchmark."""

from __future__ import annotations

import pytest

import os

from conftest import load_benchmark

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

SEEDS = 3
EXPECTED_TESTS = 80  # test/default of libsodium 1.0.20


def test_libsodium_suite_passes_on_multivariant_build(libsodium):
    bench = load_benchmark("libsodium")
    programs = bench.test_programs(libsodium)
    assert len(programs) == EXPECTED_TESTS
    reports = bench.unit_reports(libsodium)
    dispatched = [r for r in reports if r["status"] == "dispatched"]
    assert len(dispatched) >= 0.95 * len(reports) > 700  # nearly every function diversified
    widest = max(r["variants"] for r in dispatched)
    assert widest == 5  # the original and 4 variants
    policies = [f"seeded:{s}" for s in range(1, SEEDS + 1)] + [f"pinned:{k}" for k in range(widest)]
    outcome = bench.summarize(bench.run_suite(programs, policies, os.cpu_count() or 1))
    assert set(outcome) == set(policies)
    for policy, result in outcome.items():
        # 78 is the reference's count; sodium_utils2/3 also pass under wasmtime here.
        assert result["fail"] == [] and result["pass"] >= 78, (policy, result)
