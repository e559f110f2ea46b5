"""setjmp/longjmp end to end: wasm exception handling from the frontend through codegen and the
link to wasmtime, in plain and multivariant builds, whole-program and through mewe-cc units."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mewe
from mewe.types import MultivariantOptions

BIN = Path(sys.executable).parent

# An interpreter-style error path: errors raised deep in recursive, dispatched functions
# longjmp back to a loop in main, which calls setjmp once per input; a nested handler in
# `guarded` catches some and re-raises others; longjmp(env, 0) must arrive as 1.
SJLJ_C = r"""
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf top;
static int depth, handled;

__attribute__((noinline)) static int digit(const char *s) {
    if (*s == '!') longjmp(top, 0);
    if (*s < '0' || *s > '9') longjmp(top, 100 + depth);
    return *s - '0';
}

__attribute__((noinline)) static int expr(const char *s) {
    depth++;
    int v = *s == '(' ? 2 * expr(s + 1) + 1 : digit(s);
    depth--;
    return v;
}

__attribute__((noinline)) static int guarded(const char *s) {
    jmp_buf saved;
    __builtin_memcpy(saved, top, sizeof top);
    int code = setjmp(top);
    if (code == 0) {
        int v = expr(s);
        __builtin_memcpy(top, saved, sizeof top);
        return v;
    }
    __builtin_memcpy(top, saved, sizeof top);
    handled++;
    if (code > 102) longjmp(top, code);  /* too deep: to main's handler */
    return -code;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        depth = 0;
        volatile int tries = 0;
        int code = setjmp(top);
        tries++;
        if (code) { printf("%s: error %d after %d\n", argv[i], code, tries); continue; }
        printf("%s: %d\n", argv[i], guarded(argv[i]));
    }
    printf("handled %d\n", handled);
    return 0;
}
"""
ARGS = ["(((7", "((x", "(((((y", "3", "(!", "x"]
EXPECTED = (b"(((7: 63\n((x: error 103 after 2\n(((((y: error 106 after 2\n3: 3\n(!: -1\nx: -101\n"
            b"handled 4\n")


def _run(module: Path, tmp: Path, **kw) -> tuple[int, bytes]:
    out = tmp / "out"
    status = mewe.run(module, ARGS, stdout=out, **kw)
    return status, out.read_bytes()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sjlj") / "sjlj.c"
    path.write_text(SJLJ_C)
    return path


def test_plain_build_longjmps(source, tmp_path):
    module = mewe.build([source], tmp_path / "plain.wasm").output
    assert _run(module, tmp_path) == (0, EXPECTED)


def test_multivariant_build_longjmps_across_dispatched_functions_under_every_variant(source, tmp_path):
    mv = MultivariantOptions(variants=3, max_cost=0)
    result = mewe.build([source], tmp_path / "mv.wasm", multivariant=mv)
    by_name = {f.name: f for f in result.manifest.functions}
    assert {"digit", "expr"} <= {n for n, f in by_name.items() if f.status == "dispatched" and f.variants > 1}
    for caller in ("guarded", "__main_argc_argv"):  # they call setjmp: one body, and the manifest says why
        assert (by_name[caller].status, by_name[caller].reason) == ("skipped", "calls a returns_twice function (setjmp)")
    bodies = max(f.variants for f in result.manifest.functions)
    for k in range(bodies):
        assert _run(result.output, tmp_path, policy=f"pinned:{k}") == (0, EXPECTED), k
    for seed in range(3):
        assert _run(result.output, tmp_path, policy=f"seeded:{seed}") == (0, EXPECTED)
    (tmp_path / "again").mkdir()
    again = mewe.build([source], tmp_path / "again" / "mv.wasm", multivariant=mv)
    assert again.output.read_bytes() == result.output.read_bytes()  # same seed, same bytes


def test_units_through_mewe_cc_longjmp_across_files(tmp_path):
    """setjmp in one translation unit, longjmp in another, both diversified by mewe-cc -c."""
    (tmp_path / "err.h").write_text("#include <setjmp.h>\nextern jmp_buf on_error;\nint parse(const char *s);\n")
    (tmp_path / "parse.c").write_text(
        '#include "err.h"\n'
        "static int depth;\n"
        "static int digit(char c) { if (c < '0' || c > '9') longjmp(on_error, 100 + depth); return c - '0'; }\n"
        "int parse(const char *s) { depth++; int v = *s == '(' ? parse(s + 1) : digit(*s); depth--; return v + 1; }\n")
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "err.h"\njmp_buf on_error;\n'
        "int main(int argc, char **argv) {\n"
        "    for (int i = 1; i < argc; i++) {\n"
        "        int code = setjmp(on_error);\n"
        '        if (code) { printf("%s: error %d\\n", argv[i], code); continue; }\n'
        '        printf("%s: %d\\n", argv[i], parse(argv[i]));\n'
        "    }\n    return 0;\n}\n")
    env = {**os.environ, "MEWE_SERVER": "0"}
    for args in (["-c", "parse.c", "main.c", "-mewe-variants=3", "-mewe-max-cost=0"], ["parse.o", "main.o", "-o", "app"]):
        proc = subprocess.run([str(BIN / "mewe-cc"), "-O2", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    for k in range(4):
        out = tmp_path / "out"
        assert mewe.run(tmp_path / "app", ["(((7", "((x", "3"], stdout=out, policy=f"pinned:{k}") == 0
        assert out.read_bytes() == b"(((7: 11\n((x: error 103\n3: 4\n"


def test_preprocessing_sees_setjmp_h(tmp_path):
    """Configure scripts check headers with -E: setjmp.h must not #error there."""
    (tmp_path / "t.c").write_text("#include <setjmp.h>\njmp_buf b;\n")
    proc = subprocess.run([str(BIN / "mewe-cc"), "-E", "t.c"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "MEWE_SERVER": "0"})
    assert proc.returncode == 0, proc.stderr
    assert "jmp_buf b;" in proc.stdout
