"""mewe-cc as a drop-in C compiler: real make builds, the command-line conventions build
systems rely on, separate and whole-program compilation, every variant run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mewe

from mewe.wasm import DISPATCH_SECTION, custom_section

BIN = Path(sys.executable).parent
ZIG_CC = [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2"]

MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "shapes.h"
static long checksum(const long *v, int n) { long s = 7; for (int i = 0; i < n; i++) s = s * 31 + v[i]; return s; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20;
    long v[64];
    for (int i = 0; i < n && i < 64; i++) v[i] = area(i, i + 3) - perimeter(i, 2 * i) + fib(i % 25);
    printf("%ld\n", checksum(v, n < 64 ? n : 64));
    return 0;
}
"""
SHAPES_H = "long area(long w, long h);\nlong perimeter(long w, long h);\nlong fib(int n);\n"
SHAPES_C = '#include "shapes.h"\nlong area(long w, long h) { return w * h; }\nlong perimeter(long w, long h) { return 2 * (w + h); }\n'
FIB_C = '#include "shapes.h"\nlong fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }\n'
MAKEFILE = """\
CC ?= cc
AR ?= ar
CFLAGS ?= -O2
OBJS = main.o
app: main.o libshapes.a
\t$(CC) $(CFLAGS) -o $@ main.o -L. -lshapes
libshapes.a: shapes.o fib.o
\t$(AR) rcs $@ shapes.o fib.o
%.o: %.c
\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
-include main.d shapes.d fib.d
"""


def cc(*args, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "mewe-cc"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def project(tmp_path):
    for name, text in (("main.c", MAIN_C), ("shapes.h", SHAPES_H), ("shapes.c", SHAPES_C), ("fib.c", FIB_C),
                       ("Makefile", MAKEFILE)):
        (tmp_path / name).write_text(text)
    return tmp_path


def expected_output(project: Path, *args: str) -> bytes:
    """The program built by plain clang for wasm32-wasi, run under mewe run."""
    out = project / "plain.wasm"
    subprocess.run([*ZIG_CC, "main.c", "shapes.c", "fib.c", "-o", str(out)], cwd=project, check=True,
                   capture_output=True)
    res = mewe("run", out, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def make(project: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", f"CC={BIN / 'mewe-cc'}", f"AR={BIN / 'mewe-ar'}", *args], cwd=project,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_builds_multivariant_program_and_rebuilds_incrementally(project):
    make(project, "-j2")
    app = project / "app"
    assert json.loads(custom_section(app.read_bytes(), DISPATCH_SECTION))  # dispatchers from every unit
    want = expected_output(project, "30")
    for seed in range(5):
        res = mewe("run", "--seed", seed, app, "30")
        assert (res.returncode, res.stdout) == (0, want), res.stderr
    assert "/mewe-cc" not in (project / "main.d").read_text() and "shapes.h" in (project / "main.d").read_text()

    assert "mewe-cc" not in make(project).stdout  # up to date: nothing runs
    os.utime(project / "shapes.h", None)  # a header change recompiles its dependents, through the .d files
    rebuilt = make(project).stdout
    assert "-c main.c" in rebuilt and "-c shapes.c" in rebuilt and "-c fib.c" in rebuilt
    os.utime(project / "fib.c", None)
    rebuilt = make(project).stdout
    assert "-c fib.c" in rebuilt and "-c main.c" not in rebuilt and "-c shapes.c" not in rebuilt
    assert mewe("run", app, "30").stdout == want


def test_every_variant_runs_correctly_under_pinned_policy(project):
    cc("-c", "shapes.c", "fib.c", "-mewe-variants=3", cwd=project)
    assert (project / "shapes.o").is_file() and (project / "fib.o").is_file()  # several -c inputs, no -o
    cc("main.c", "shapes.o", "fib.o", "-o", "app", "-mewe-variants=3", "-mewe-manifest", cwd=project)
    manifest = json.loads((project / "app.manifest.json").read_text())
    units = {f["unit"] for f in manifest["functions"]}
    assert units == {"main.c", "shapes.c", "fib.c"}
    widest = max(f["variants"] for f in manifest["functions"])
    assert widest == 4
    want = expected_output(project, "25")
    for k in range(widest):
        res = mewe("run", "--policy", f"pinned:{k}", project / "app", "25")
        assert (res.returncode, res.stdout) == (0, want), (k, res.stderr)


def test_trace_names_functions_of_every_unit(project):
    cc("-c", "main.c", "shapes.c", "fib.c", "-mewe-trace=1", cwd=project)
    cc("-o", "app", "main.o", "shapes.o", "fib.o", cwd=project)
    res = mewe("run", "--trace", project / "t.jsonl", project / "app", "5")
    assert res.returncode == 0, res.stderr
    names = {json.loads(line)["function"] for line in (project / "t.jsonl").read_text().splitlines()}
    assert {"area", "perimeter", "fib", "__main_argc_argv"} <= names
    table = json.loads(custom_section((project / "app").read_bytes(), DISPATCH_SECTION))
    assert len({fid for _, _, fid in table}) == len(table)


def test_whole_program_mode_with_flto(project):
    cc("-flto", "-c", "main.c", "shapes.c", "fib.c", cwd=project)
    assert (project / "fib.o").read_bytes()[:4] == b"BC\xc0\xde"  # bitcode until the link
    cc("-flto", "-o", "app", "main.o", "shapes.o", "fib.o", "-mewe-manifest", cwd=project)
    manifest = json.loads((project / "app.manifest.json").read_text())
    assert {f["unit"] for f in manifest["functions"]} == {"app"}  # one unit: the whole program
    assert manifest["totals"]["dispatched"] >= 3
    want = expected_output(project, "22")
    for seed in range(3):
        assert mewe("run", "--seed", seed, project / "app", "22").stdout == want


def test_whole_program_mode_pulls_bitcode_from_archives(project):
    cc("-flto", "-c", "main.c", "shapes.c", "fib.c", cwd=project)
    subprocess.run([str(BIN / "mewe-ar"), "rcs", "libshapes.a", "shapes.o", "fib.o"], cwd=project, check=True)
    cc("-flto", "-o", "app", "main.o", "-L.", "-lshapes", "-mewe-manifest", cwd=project)
    manifest = json.loads((project / "app.manifest.json").read_text())
    dispatched = {f["name"] for f in manifest["functions"] if f["status"] == "dispatched"}
    assert {"area", "perimeter", "fib"} <= dispatched  # the members main needs, diversified with it
    want = expected_output(project, "21")
    for seed in range(3):
        assert mewe("run", "--seed", seed, project / "app", "21").stdout == want


def test_settings_from_environment_and_flags(project):
    cc("-c", "fib.c", "-o", "plain.o", env={"MEWE_VARIANTS": "0"}, cwd=project)
    cc("-c", "fib.c", "-o", "flag.o", "-mewe-variants=2", "-mewe-max-cost=0", env={"MEWE_VARIANTS": "0"}, cwd=project)
    cc("-c", "fib.c", "-o", "seed1.o", "-mewe-seed=1", cwd=project)
    cc("-c", "fib.c", "-o", "seed1b.o", env={"MEWE_SEED": "1"}, cwd=project)
    assert b"mewe.units" not in (project / "plain.o").read_bytes()
    assert b"mewe.2.fib" in (project / "flag.o").read_bytes()
    assert (project / "seed1.o").read_bytes() == (project / "seed1b.o").read_bytes()
    bad = cc("-c", "fib.c", "-mewe-colour=red", cwd=project, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("mewe-cc: error: unknown option '-mewe-colour'")
    bad = cc("-c", "fib.c", "-mewe-variants=many", cwd=project, check=False)
    assert bad.returncode == 1 and "expected an integer" in bad.stderr


def test_probes_build_systems_make(project):
    assert cc("-dumpmachine", cwd=project).stdout.strip().startswith("wasm32")
    assert "clang version" in cc("--version", cwd=project).stdout
    pre = subprocess.run(  # preprocessing stdin, as configure's CPP checks do
        [str(BIN / "mewe-cc"), "-E", "-DWIDTH=42", "-"], input="int w = WIDTH;\n", cwd=project,
                         capture_output=True, text=True)
    assert pre.returncode == 0 and "int w = 42;" in pre.stdout
    # The autoconf probe: compile, link and run a conftest program.
    (project / "conftest.c").write_text("int main(void) { return 0; }\n")
    cc("-o", "conftest", "conftest.c", cwd=project)
    assert mewe("run", project / "conftest").returncode == 0
    cc("-c", "conftest.c", cwd=project)
    assert (project / "conftest.o").is_file()


def test_unsupported_and_bad_input_give_one_error_line(project):
    for args, message in ((["-pthread", "-c", "fib.c"], "-pthread: threads are not supported on wasm32-wasi"),
                          (["-shared", "-o", "lib.so", "fib.c"], "shared libraries are not supported"),
                          (["--target=x86_64-linux-gnu", "-c", "fib.c"], "unsupported target"),
                          (["-c", "missing.c"], "missing.c: no such file"),
                          (["-c", "shapes.c", "fib.c", "-o", "both.o"], "cannot specify -o when generating multiple output files"),
                          ([], "no input files")):
        res = cc(*args, cwd=project, check=False)
        last = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 1 and last.startswith("mewe-cc: error: ") and message in last, (args, res.stderr)
    (project / "broken.c").write_text("int f(void) { return undeclared; }\n")
    res = cc("-c", "broken.c", "-o", "broken.o", cwd=project, check=False)
    assert res.returncode == 1 and "undeclared" in res.stderr and not (project / "broken.o").exists()
    assert res.stderr.strip().splitlines()[-1].startswith("mewe-cc: error: ")


def test_response_files_assembly_and_ir_output(project):
    (project / "args.rsp").write_text('-O2 "-DLABEL=\\"x y\\"" -c fib.c -o fib_rsp.o\n')
    cc("@args.rsp", cwd=project)
    assert b"mewe.1.fib" in (project / "fib_rsp.o").read_bytes()
    cc("-S", "fib.c", "-o", "fib.s", cwd=project)
    assert "mewe.1.fib" in (project / "fib.s").read_text()  # the diversified unit, as wasm assembly
    cc("-S", "-emit-llvm", "fib.c", cwd=project)
    text = (project / "fib.ll").read_text()
    assert re.search(r"^define internal .*@mewe\.1\.fib\(", text, re.M) and re.search(r"^define .*@fib\(", text, re.M)


def test_archiver_indexes_wasm_objects(project):
    cc("-c", "shapes.c", cwd=project)
    subprocess.run([str(BIN / "mewe-ar"), "rc", "libs.a", "shapes.o"], cwd=project, check=True)
    subprocess.run([str(BIN / "mewe-ranlib"), "libs.a"], cwd=project, check=True)
    listing = subprocess.run([str(BIN / "mewe-ar"), "t", "libs.a"], cwd=project, capture_output=True, text=True)
    assert listing.stdout.split() == ["shapes.o"]


def test_output_to_dev_null_leaves_the_device_alone(project):
    before = os.stat("/dev/null")
    cc("-c", "fib.c", "-o", "/dev/null", cwd=project)
    cc("main.c", "shapes.c", "fib.c", "-o", "/dev/null", "-mewe-manifest", cwd=project)
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)
    assert not Path("/dev/null.manifest.json").exists()


def test_same_inputs_and_seed_give_identical_objects_and_programs(project):
    for name in ("one", "two"):
        (project / name).mkdir()
        cc("-c", "../main.c", "-I..", "-o", "main.o", "-mewe-seed=5", cwd=project / name)
        cc("-c", "../fib.c", "-o", "fib.o", "-mewe-seed=5", "-mewe-jobs=2", cwd=project / name)
        cc("main.o", "fib.o", "../shapes.c", "-o", "app", "-mewe-seed=5", cwd=project / name)
    for built in ("main.o", "fib.o", "app"):
        assert (project / "one" / built).read_bytes() == (project / "two" / built).read_bytes(), built
    cc("-c", "fib.c", "-o", "other.o", "-mewe-seed=6", cwd=project)
    assert (project / "other.o").read_bytes() != (project / "one" / "fib.o").read_bytes()


def test_preprocessed_c_compiles_like_c(tmp_path):
    """`-E` output (a .i file) compiles with mewe-cc as it does with clang, without warnings."""
    (tmp_path / "app.c").write_text('#include <stdio.h>\n#define ANSWER (6 * 7)\nint main(void) { printf("%d\\n", ANSWER); return 0; }\n')
    cc("-E", "app.c", "-o", "app.i", cwd=tmp_path)
    compiled = cc("-O2", "-c", "app.i", "-o", "app.o", cwd=tmp_path)
    assert compiled.stderr == ""
    cc("app.o", "-o", "app.wasm", cwd=tmp_path)
    assert mewe("run", tmp_path / "app.wasm").stdout == b"42\n"


@pytest.mark.parametrize("server", ["1", "0"])
def test_stdin_source_and_stdout_output_as_clang_takes_them(tmp_path, server):
    """`-x c -` compiles stdin (through the server too: it reads the client's stdin), `-o -`
    writes the output to stdout, and a missing `-x c` input is one error line."""
    env = {**os.environ, "MEWE_SERVER": server}
    program = '#include <stdio.h>\nint twice(int x) { return 2 * x; }\nint main(void) { printf("%d\\n", twice(21)); return 0; }\n'
    run_cc = lambda *a: subprocess.run([str(BIN / "mewe-cc"), *a], input=program.encode(), cwd=tmp_path,  # noqa: E731
                                       capture_output=True, env=env, timeout=300)
    linked = run_cc("-x", "c", "-", "-o", "app")
    assert linked.returncode == 0, linked.stderr
    assert mewe("run", tmp_path / "app").stdout == b"42\n"
    unit = run_cc("-x", "c", "-c", "-", "-o", "unit.o")
    assert unit.returncode == 0 and (tmp_path / "unit.o").read_bytes()[:4] == b"\0asm", unit.stderr
    ir = run_cc("-x", "c", "-S", "-emit-llvm", "-", "-o", "-")
    assert ir.returncode == 0 and b"define" in ir.stdout and b"mewe.slot" in ir.stdout and not (tmp_path / "-").exists()
    missing = subprocess.run([str(BIN / "mewe-cc"), "-x", "c", "-c", "nofile"], cwd=tmp_path, capture_output=True, text=True,
                             env=env, timeout=300)
    assert missing.returncode == 1 and missing.stderr == "mewe-cc: error: nofile: No such file or directory\n"


def test_a_project_library_named_like_a_libc_part_is_linked(tmp_path):
    """`-L. -lutil` must link the project's own libutil.a, as clang does; zig's driver alone
    drops -l names that are also parts of libc (util, m, rt, dl, pthread, c)."""
    (tmp_path / "util.c").write_text("int util_twice(int x) { return 2 * x; }\n")
    (tmp_path / "main.c").write_text('#include <stdio.h>\nint util_twice(int x);\n'
                                     'int main(void) { printf("%d\\n", util_twice(21)); return 0; }\n')
    (tmp_path / "Makefile").write_text("app: main.o libutil.a\n\t$(CC) main.o -L. -lutil -lm -o app\n"
                                       "libutil.a: util.o\n\t$(AR) rcs $@ $^\n")
    subprocess.run(["make", f"CC={BIN / 'mewe-cc'}", f"AR={BIN / 'mewe-ar'}"], cwd=tmp_path, check=True, capture_output=True)
    assert mewe("run", tmp_path / "app").stdout == b"42\n"
    cc("main.o", "-L", ".", "-l", "util", "-o", "app2", cwd=tmp_path)  # the two-argument spelling
    assert mewe("run", tmp_path / "app2").stdout == b"42\n"
