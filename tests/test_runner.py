"""`mewe run`: WASI stdio, argv, environment, preopened directories, exit codes and traps."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, mewe

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) int divide(int a, int b) { return a / b; }
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "args")) { for (int i = 1; i < argc; i++) printf("[%s]", argv[i]); puts(""); return 0; }
    if (argc > 1 && !strcmp(argv[1], "env")) { const char *v = getenv("GREETING"); puts(v ? v : "(unset)"); return 0; }
    if (argc > 1 && !strcmp(argv[1], "exit")) return atoi(argv[2]);
    if (argc > 1 && !strcmp(argv[1], "trap")) return divide(argc * 7, argc - 2);
    if (argc > 1 && !strcmp(argv[1], "cat")) {
        FILE *f = fopen(argv[2], "r"); if (!f) { perror(argv[2]); return 1; }
        int c; while ((c = fgetc(f)) != EOF) putchar(c); fclose(f); return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "stderr")) { fputs("to stderr\n", stderr); return 0; }
    int c; while ((c = getchar()) != EOF) putchar(c >= 'a' && c <= 'z' ? c - 32 : c);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runner")
    (d / "prog.c").write_text(PROGRAM)
    res = mewe("build", d / "prog.c", "-o", d / "prog.wasm", "-O1")
    assert res.returncode == 0, res.stderr
    return d / "prog.wasm"


def test_stdin_to_stdout(prog):
    assert mewe("run", prog, stdin=b"edge node\n").stdout == b"EDGE NODE\n"


def test_argv_after_module_goes_to_the_module(prog):
    res = mewe("run", prog, "args", "--env", "-x", "two words")
    assert res.stdout == b"[args][--env][-x][two words]\n"


def test_env(prog):
    assert mewe("run", prog, "env").stdout == b"(unset)\n"
    assert mewe("run", "--env", "GREETING=hello=world", prog, "env").stdout == b"hello=world\n"


@pytest.mark.parametrize("code", ["0", "3", "42"])
def test_exit_code_is_propagated(prog, code):
    assert mewe("run", prog, "exit", code).returncode == int(code)


def test_trap_is_one_clear_line(prog):
    res = mewe("run", prog, "trap")
    assert res.returncode == 134
    lines = res.stderr.strip().splitlines()
    assert lines == ["mewe: error: prog.wasm: wasm trap: integer division by zero in function 'divide'"]


def test_preopened_dir(prog, tmp_path):
    (tmp_path / "note.txt").write_text("from the host\n")
    assert mewe("run", "--dir", f"{tmp_path}::/data", prog, "cat", "/data/note.txt").stdout == b"from the host\n"
    denied = mewe("run", prog, "cat", "/data/note.txt")
    assert denied.returncode == 1 and denied.stdout == b""
    bad = mewe("run", "--dir", str(tmp_path / "missing"), prog)
    assert bad.returncode == 1 and "is not a directory" in bad.stderr


def test_stderr_is_passed_through(prog):
    res = mewe("run", prog, "stderr")
    assert res.returncode == 0 and res.stderr == "to stderr\n"


def test_what_is_not_a_module_is_one_line(tmp_path):
    (tmp_path / "notwasm.json").write_text('{"a": 1}\n')
    for target, message in ((tmp_path / "notwasm.json", "not a wasm module"),
                            (tmp_path, "is a directory, not a wasm module"),
                            (tmp_path / "absent.wasm", "no such file")):
        res = mewe("run", target)
        assert res.returncode == 1 and res.stderr == f"mewe: error: {target}: {message}\n"


def test_a_closed_pipe_ends_output_quietly(tmp_path):
    import subprocess
    import sys

    from conftest import EXAMPLES

    wasm = tmp_path / "mv.wasm"
    assert mewe("build", EXAMPLES / "interp.c", "--variants", "2", "-o", wasm).returncode == 0
    proc = subprocess.run(f'"{sys.executable}" -m mewe inspect "{wasm}" | head -1', shell=True, capture_output=True, text=True)
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


def test_compiled_modules_are_cached_and_a_damaged_entry_is_compiled_again(prog, tmp_path):
    import os

    env = {**os.environ, "MEWE_CACHE_DIR": str(tmp_path / "cache")}
    compiled = tmp_path / "cache" / "variants" / "wasmtime" / "modules"

    def entries():
        return [p for p in compiled.rglob("*") if p.is_file() and p.suffix != ".stats"] if compiled.is_dir() else []

    assert mewe("run", prog, stdin=b"abc", env={**env, "MEWE_CACHE": "0"}).stdout == b"ABC"
    assert entries() == []  # the cache off: nothing kept
    assert mewe("run", prog, stdin=b"abc", env=env).stdout == b"ABC"
    assert len(entries()) == 1  # Cranelift's code for prog.wasm, which the next run loads
    for damage in (os.urandom(64), b""):
        entries()[0].write_bytes(damage)
        res = mewe("run", prog, stdin=b"abc", env=env)
        assert (res.returncode, res.stdout, res.stderr) == (0, b"ABC", "")


def test_a_program_without_main_builds_with_one_warning(tmp_path):
    (tmp_path / "lib.c").write_text("int add(int a, int b) { return a + b; }\n")
    res = mewe("build", tmp_path / "lib.c", "-o", tmp_path / "lib.wasm")
    assert res.returncode == 0
    assert [line for line in res.stderr.splitlines() if "warning" in line] == [
        "mewe: warning: the program defines no main function, so running it traps at once "
        "(a library is compiled with mewe-cc -c and archived with mewe-ar)"]
    assert mewe("run", tmp_path / "lib.wasm").returncode == 134  # what the warning said
    assert "warning" not in mewe("build", EXAMPLES / "hash.c", "-o", tmp_path / "hash.wasm").stderr
