"""libsodium (downloaded by package name, cached outside the repository), configured and built by
its own autotools with mewe-cc, passes its own test suite under several seeds and under every
pinned variant. benchmarks/libsodium.py is the full run (100 seeds) and the benchmark."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "libsodium.py"
SEEDS = 3
EXPECTED_TESTS = 80  # test/default of libsodium 1.0.20


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_libsodium_suite_passes_on_multivariant_build(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--seeds", str(SEEDS), "--no-plain", "--work", str(tmp_path),
                           "--json", str(out)], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["multivariant_tests"] == EXPECTED_TESTS
    assert results["dispatched"] >= 0.95 * results["functions"] > 700  # nearly every function diversified
    assert results["widest"] == 5  # the original and 4 variants
    policies = results["policies"]
    assert len(policies) == SEEDS + results["widest"]
    for policy, outcome in policies.items():
        # 78 is the reference's count; sodium_utils2/3 also pass under wasmtime here.
        assert outcome["fail"] == [] and outcome["pass"] >= 78, (policy, outcome)
