"""Differential testing with Csmith programs (benchmarks/csmith.py): a fixed small set here, the
long campaign as a documented script. Each program is built plain and multivariant with every
pass stacked, and must print the same checksum under random dispatch and each variant pinned."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark, write_pass_plugin

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

# (Csmith seed, optimization level): -O0 keeps every function (csmith's safe-math helpers too)
PROGRAMS = [(2, "0"), (5, "0"), (3, "1"), (1, "2")]


@pytest.fixture(scope="module")
def csmith():
    return load_benchmark("csmith")


@pytest.mark.parametrize("program, opt", PROGRAMS)
def test_multivariant_build_prints_the_same_checksum(csmith, program, opt, tmp_path):
    outcome = csmith.check(program, tmp_path, variants=2, opt=opt, passes=csmith.ALL_PASSES)
    assert outcome.status == "match", outcome
    assert outcome.dispatched >= 0.9 * outcome.functions and outcome.functions >= 2


def test_a_mismatch_is_kept_with_its_seed(csmith, tmp_path, monkeypatch):
    real_run = csmith._run

    def wrong_when_pinned(module, policy, timeout):  # a stand-in for a miscompiled variant
        result = real_run(module, policy, timeout)
        return "DEADBEEF" if policy == "pinned:1" else result

    monkeypatch.setattr(csmith, "_run", wrong_when_pinned)
    summary = csmith.campaign(3, 1, tmp_path / "out", jobs=1, variants=2, reduce_mismatches=False)
    assert summary["mismatches"] == 1 and summary["compared"] == 1
    kept = tmp_path / "out" / "mismatches"
    record = json.loads((kept / "p3.json").read_text())
    assert (kept / "p3.c").read_text().startswith("/*") and "pinned:1 gave DEADBEEF" in record["detail"]
    again = csmith.check(3, tmp_path / "again", variants=2, seed=record["seed"], opt=record["opt"])
    assert again.status == "mismatch" and again.detail == record["detail"]  # program + seed reproduce it
    # the logged outcomes tally the same way as the campaign's own summary
    logged = csmith.tally(csmith.load_outcomes(tmp_path / "out"))
    assert (logged["programs"], logged["mismatches"], logged["compared"]) == (1, 1, 1)


WRONG_XOR = '''
import random
from mewe.passes import Pass


class WrongXor(Pass):
    name = "wrong-xor"
    description = "a miscompile on purpose: a function's first xor becomes an or"

    def apply(self, fn, rng: random.Random) -> bool:
        for block in fn.blocks:
            for ins in block.instrs:
                if ins.text is None and ins.op == "xor":
                    ins.op = "or"
                    return True
        return False
'''


@pytest.fixture
def wrong_xor(tmp_path, monkeypatch):
    """A pass plugin that miscompiles, installed for the mewe processes the harness starts."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(write_pass_plugin(plugins, "mewe_wrong_xor", WRONG_XOR, "wrong-xor", "WrongXor")))
    return "wrong-xor"


def test_a_miscompiling_pass_is_caught(csmith, wrong_xor, tmp_path):
    # The harness end to end against a real miscompile, not a stand-in: Csmith's checksum code
    # is all xors, so the plugin's variants print another checksum, and the original does not.
    outcome = csmith.check(3, tmp_path, variants=1, opt="1", passes=wrong_xor)
    assert outcome.status == "mismatch", outcome
    runs = dict(r.split("=", 1) for r in outcome.runs)
    assert runs["pinned:1"] != runs["pinned:0"] and "pinned:0" not in outcome.detail


MIX = """#include <stdio.h>
#include <stdint.h>
__attribute__((noinline)) static uint32_t mix(uint32_t a, uint32_t b) { return (a ^ b) * 2654435761u; }
int main(void) {
    uint32_t h = 1, values[4] = {3, 1, 4, 1};
    for (int i = 0; i < 4; i++) h = mix(h, values[i]);
    printf("checksum = %X\\n", h);
    return 0;
}
"""


def test_creduce_predicate_wants_the_miscompile_and_no_undefined_behaviour(csmith, wrong_xor, tmp_path):
    (tmp_path / "mix.c").write_text(MIX)
    assert csmith.interesting(tmp_path / "mix.c", 5, "2", 1, wrong_xor)
    assert not csmith.interesting(tmp_path / "mix.c", 5, "2", 1, "junk-code")  # a correct pass
    # What creduce may turn it into: `values` uninitialized, a checksum that -O2 changes
    (tmp_path / "ub.c").write_text(MIX.replace(" = {3, 1, 4, 1}", ""))
    assert not csmith.interesting(tmp_path / "ub.c", 5, "2", 1, wrong_xor)
