"""`mewe check-pass`: a correct pass passes, a miscompiling one is caught by a differential
run, one that never applies is called out, and every built-in pass passes."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, mewe, write_pass_plugin
from mewe.passes import registry

MIX = r"""
#include <stdio.h>
#include <stdint.h>
__attribute__((noinline)) static uint32_t mix(uint32_t a, uint32_t b) { return (a + b) * 2654435761u + (a >> 3); }
int main(void) {
    uint32_t h = 1;
    for (uint32_t i = 0; i < 16; i++) h = mix(h, i * 7);
    printf("%u\n", h);
    return 0;
}
"""

ADD_TO_SUB = '''
import random
from mewe.passes import Pass


class AddToSub(Pass):
    name = "add-to-sub"
    description = "a miscompile on purpose: a function's first add becomes a sub"

    def apply(self, fn, rng: random.Random) -> bool:
        for ins in fn.instructions():
            if ins.text is None and ins.op == "add":
                ins.op = "sub"
                return True
        return False
'''

NEVER = '''
import random
from mewe.passes import Pass


class Never(Pass):
    name = "never"
    description = "applies to nothing"

    def apply(self, fn, rng: random.Random) -> bool:
        return False
'''


@pytest.fixture
def mix(tmp_path):
    source = tmp_path / "mix.c"
    source.write_text(MIX)
    return source


def plugin(tmp_path, monkeypatch, module: str, source: str, name: str, cls: str) -> None:
    """Install a pass plugin for the mewe processes these tests start (monkeypatch undoes it)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(write_pass_plugin(plugins, module, source, name, cls)))


def test_a_correct_pass_passes():
    res = mewe("check-pass", "substitute", EXAMPLES / "hash.c", "--csmith", "0")
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr
    assert out.startswith("source") and "\nhash.c " in out and " ok\n" in out
    assert "pass 'substitute' passed the check" in out


def test_a_miscompiling_plugin_is_caught(tmp_path, monkeypatch, mix):
    plugin(tmp_path, monkeypatch, "mewe_add_to_sub", ADD_TO_SUB, "add-to-sub", "AddToSub")
    res = mewe("check-pass", "add-to-sub", mix, "--csmith", "0", "--seeds", "0")
    out = res.stdout.decode()
    assert res.returncode == 1, out + res.stderr
    failures = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert any("mix.c" in line and "policy pinned:1" in line for line in failures), out
    assert not any("pinned:0" in line for line in failures)  # the original body is never wrong
    assert "pass 'add-to-sub' failed the check" in out


def test_a_pass_that_never_applies_fails(tmp_path, monkeypatch, mix):
    plugin(tmp_path, monkeypatch, "mewe_never", NEVER, "never", "Never")
    res = mewe("check-pass", "never", mix, "--csmith", "0", "--seeds", "0")
    out = res.stdout.decode()
    assert res.returncode == 1, out + res.stderr
    assert "pass 'never' never applied: " in out.splitlines()[-1]


def test_an_unknown_pass_is_one_error_line(mix):
    res = mewe("check-pass", "no-such-pass", mix, "--csmith", "0")
    assert res.returncode == 1 and res.stdout == b""
    assert res.stderr.splitlines() == ["mewe: error: unknown pass 'no-such-pass' (`mewe passes` lists them)"]


BUILTIN = [name for name, cls in registry.items() if cls.__module__.startswith("mewe.passes.")]


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_pass_passes(name):
    res = mewe("check-pass", name, EXAMPLES / "interp.c", "--csmith", "1")
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr
    assert "csmith:1" in out or "csmith is not installed" in out
