"""Bad input: one clear error line, a nonzero exit, and never a partial output file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conftest import EXAMPLES, mewe


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mewe")]


def test_missing_source(tmp_path):
    res = mewe("build", tmp_path / "nope.c", "-o", tmp_path / "x.wasm")
    assert res.returncode == 1
    assert error_lines(res.stderr) == [f"mewe: error: {tmp_path / 'nope.c'}: no such file"]
    assert not (tmp_path / "x.wasm").exists()


def test_c_that_does_not_compile_shows_diagnostics(tmp_path):
    (tmp_path / "bad.c").write_text("int main(void) { return undeclared_thing; }\n")
    res = mewe("build", "bad.c", "-o", "bad.wasm", cwd=tmp_path)
    assert res.returncode == 1
    assert "undeclared_thing" in res.stderr and "error:" in res.stderr  # clang's diagnostic
    assert res.stderr.rstrip().splitlines()[-1] == "mewe: error: bad.c: compilation failed"
    assert os.listdir(tmp_path) == ["bad.c"]  # no output, no temp file


def test_failed_build_keeps_previous_output(tmp_path):
    (tmp_path / "bad.c").write_text("int main(void) { syntax error }\n")
    (tmp_path / "out.wasm").write_bytes(b"previous")
    assert mewe("build", "bad.c", "-o", "out.wasm", cwd=tmp_path).returncode == 1
    assert (tmp_path / "out.wasm").read_bytes() == b"previous"


def test_link_error_leaves_nothing(tmp_path):
    (tmp_path / "m.c").write_text("int missing(void); int main(void) { return missing(); }\n")
    res = mewe("build", "m.c", "-o", "m.wasm", cwd=tmp_path)
    assert res.returncode == 1 and "missing" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == "mewe: error: linking failed"
    assert sorted(os.listdir(tmp_path)) == ["m.c"]


def test_a_link_error_is_reported_once_however_many_variants_call_the_missing_function(tmp_path):
    (tmp_path / "m.c").write_text("int missing(void); int main(void) { return missing(); }\n")
    for variants in ("0", "8"):
        res = mewe("build", "m.c", "--variants", variants, "--max-cost", "0", "-o", "m.wasm", cwd=tmp_path)
        assert res.returncode == 1
        assert res.stderr.count("undefined symbol: missing") == 1, res.stderr


def test_unknown_option(tmp_path):
    res = mewe("build", "--frobnicate", EXAMPLES / "hash.c")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "--frobnicate" in res.stderr


def test_unknown_input_type(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    res = mewe("build", "x.txt", cwd=tmp_path)
    assert res.returncode == 1
    assert error_lines(res.stderr) == ["mewe: error: x.txt: unsupported input type '.txt' (expected .c, .i, .rs, .ll or .bc)"]


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("")
    for target in (tmp_path / "no" / "such" / "dir" / "x.wasm", tmp_path / "file" / "x.wasm", tmp_path):
        res = mewe("build", EXAMPLES / "hash.c", "-o", target)
        assert res.returncode == 1, target
        [line] = error_lines(res.stderr)
        assert line.startswith(f"mewe: error: cannot write output '{target}'")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_invalid_ir(tmp_path):
    (tmp_path / "bad.ll").write_text("define i32 @f( {\n")
    res = mewe("build", "bad.ll", cwd=tmp_path)
    assert res.returncode == 1
    [line] = error_lines(res.stderr)
    assert line.startswith("mewe: error: bad.ll: invalid LLVM IR:")
    (tmp_path / "garbage.bc").write_bytes(b"BC\xc0\xde" + b"\x00" * 40)
    res = mewe("build", "garbage.bc", cwd=tmp_path)
    assert res.returncode == 1 and "garbage.bc: invalid LLVM IR" in res.stderr


def test_ir_for_another_target(tmp_path):
    (tmp_path / "x86.ll").write_text('target triple = "x86_64-unknown-linux-gnu"\ndefine i32 @main() {\n  ret i32 0\n}\n')
    res = mewe("build", "x86.ll", cwd=tmp_path)
    assert res.returncode == 1
    assert "target triple 'x86_64-unknown-linux-gnu' is not wasm32" in res.stderr


def test_missing_compiler(tmp_path):
    res = mewe("build", EXAMPLES / "hash.c", "-o", tmp_path / "x.wasm", "--cc", "no-such-clang-99")
    assert res.returncode == 1
    assert "C compiler 'no-such-clang-99' not found" in res.stderr


def test_compiler_newer_than_llvmlite(tmp_path):
    fake = tmp_path / "clang-99"
    fake.write_text("#!/bin/sh\necho 'clang version 99.0.0'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "MEWE_CC": str(fake)}
    res = mewe("build", EXAMPLES / "hash.c", "-o", tmp_path / "x.wasm", env=env)
    assert res.returncode == 1
    [line] = error_lines(res.stderr)
    assert "uses LLVM 99, newer than llvmlite's LLVM 22: install clang-22 and lld-22" in line


def test_run_missing_and_invalid_module(tmp_path):
    res = mewe("run", tmp_path / "none.wasm")
    assert res.returncode == 1 and error_lines(res.stderr) == [f"mewe: error: {tmp_path / 'none.wasm'}: no such file"]
    (tmp_path / "junk.wasm").write_bytes(b"not wasm at all")
    res = mewe("run", tmp_path / "junk.wasm")
    assert res.returncode == 1
    [line] = error_lines(res.stderr)
    assert line.endswith("junk.wasm: not a wasm module")


def test_unsupported_constructs(tmp_path):
    # Inline assembly that is not empty: llvmlite's LLVM cannot assemble it, so it is refused
    # up front instead of aborting codegen. An empty asm (a compiler barrier) builds and runs.
    (tmp_path / "asm.c").write_text(
        "int main(int c, char **v) { int y; __asm__(\"local.get %1\\n local.set %0\" : \"=r\"(y) : \"r\"(c)); return y; }\n")
    res = mewe("build", "asm.c", "--variants", "2", "-o", "asm.wasm", cwd=tmp_path)
    assert res.returncode == 1 and not (tmp_path / "asm.wasm").exists()
    assert error_lines(res.stderr) == [
        "mewe: error: asm.c: inline assembly is not supported (llvmlite's LLVM has no WebAssembly assembler): "
        "'local.get $1;  local.set $0'"]
    (tmp_path / "barrier.c").write_text(
        "int main(int c, char **v) { __asm__ volatile(\"\" ::: \"memory\"); return c + 4; }\n")
    assert mewe("build", "barrier.c", "--variants", "2", "-o", "barrier.wasm", cwd=tmp_path).returncode == 0
    assert mewe("run", tmp_path / "barrier.wasm").returncode == 5
    # setjmp builds (on wasm exception handling, see test_sjlj.py)
    (tmp_path / "sj.c").write_text("#include <setjmp.h>\njmp_buf b;\nint main(void) { return setjmp(b); }\n")
    assert mewe("build", "sj.c", "-o", "sj.wasm", cwd=tmp_path).returncode == 0
    assert mewe("run", tmp_path / "sj.wasm").returncode == 0


WASM32_IR = ('target datalayout = "e-m:e-p:32:32-p10:8:8-p20:8:8-i64:64-i128:128-n32:64-S128-ni:1:10:20"\n'
             'target triple = "wasm32-unknown-wasi"\n')


def test_functions_that_cannot_be_dispatched_keep_one_body_with_the_reason(tmp_path):
    # A dispatcher must keep a musttail call in tail position, and exception handling has no
    # unwinder in wasi-libc to test variants with: each such function is a recorded skip, and
    # the program around it is still diversified and still right.
    (tmp_path / "mt.ll").write_text(WASM32_IR + """
define i32 @g(i32 %x) {
  %a = mul i32 %x, 3
  %b = add i32 %a, 1
  ret i32 %b
}
define i32 @f(i32 %x) {
  %y = add i32 %x, 1
  %r = musttail call i32 @g(i32 %y)
  ret i32 %r
}
define i32 @__main_argc_argv(i32 %argc, ptr %argv) {
  %r = call i32 @f(i32 %argc)
  ret i32 %r
}
""")
    (tmp_path / "eh.ll").write_text(WASM32_IR + """
declare i32 @__gxx_wasm_personality_v0(...)
define i32 @f(i32 %x) personality ptr @__gxx_wasm_personality_v0 {
entry:
  invoke void @may_throw(i32 %x) to label %ok unwind label %lp
ok:
  %r = add i32 %x, 4
  ret i32 %r
lp:
  %cs = catchswitch within none [label %catch] unwind to caller
catch:
  %c = catchpad within %cs [ptr null]
  catchret from %c to label %done
done:
  ret i32 0
}
define void @may_throw(i32 %x) {
  ret void
}
define i32 @__main_argc_argv(i32 %argc, ptr %argv) {
  %r = call i32 @f(i32 %argc)
  ret i32 %r
}
""")
    cases = {"mt.ll": ("f", "contains a musttail call", 7, b""),
             "eh.ll": ("f", "uses exception handling (invoke or EH pads)", 5, b"")}
    for source, (skipped, reason, code, stdout) in cases.items():
        stem = Path(source).stem
        res = mewe("build", source, "--variants", "3", "-o", f"{stem}.wasm", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        functions = {f["name"]: f for f in json.loads((tmp_path / f"{stem}.manifest.json").read_text())["functions"]}
        assert (functions[skipped]["status"], functions[skipped]["reason"]) == ("skipped", reason)
        assert all(f["status"] == "dispatched" for name, f in functions.items() if name != skipped), functions
        for policy in ("random", "pinned:1", "pinned:2"):
            run = mewe("run", "--policy", policy, tmp_path / f"{stem}.wasm")
            assert (run.returncode, run.stdout) == (code, stdout), (source, policy)


def test_ctrl_c_mid_build_leaves_nothing_and_a_consistent_cache(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "cache"
    cache.mkdir()
    from mewe.fsutil import cache_dir

    (cache / "zig").symlink_to(cache_dir("zig"), target_is_directory=True)  # zig's wasi-libc build stays shared
    env = dict(os.environ, MEWE_CACHE_DIR=str(cache))
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "mewe", "build", str(EXAMPLES / "interp.c"), "--variants", "16", "--seed", "3",
            "-o", str(out / "interp.wasm")]
    # SIGINT back to its default in the child, as in a terminal: a shell starts background jobs
    # (`cmd &`, as CI scripts do) with SIGINT ignored, and that is inherited across exec.
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(2.5)  # into the passes: the whole build takes about 10 s on 2 cores
    # What a terminal's Ctrl-C does: SIGINT to the whole process group, once. (Python swallows a
    # KeyboardInterrupt raised in a finalizer such as llvmlite's ObjectRef.__del__; mewe's own
    # handler remembers the press so that one is always enough.)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().rstrip().splitlines()[-1] == "mewe: interrupted"
    assert os.listdir(out) == []  # no output, no temp file
    # the cache holds only whole entries: a build through it equals one without it
    assert subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True).returncode == 0
    first = (out / "interp.wasm").read_bytes()
    assert subprocess.run([*argv, "--no-cache"], env=env, cwd=tmp_path, capture_output=True).returncode == 0
    assert (out / "interp.wasm").read_bytes() == first


def _mount_small_fs(path: Path, options: str) -> bool:
    """A tmpfs at `path` (root only, where the machine allows mounts); whether it is mounted."""
    import subprocess

    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return res.returncode == 0


def _unmount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", str(path)], capture_output=True)


def _cache_env(tmp_path: Path) -> dict:
    from mewe.fsutil import cache_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "zig").symlink_to(cache_dir("zig"), target_is_directory=True)  # zig's wasi-libc build stays shared
    return dict(os.environ, MEWE_CACHE_DIR=str(cache))


def test_a_full_or_read_only_output_file_system_is_one_line_and_leaves_nothing(tmp_path):
    import pytest

    full, readonly = tmp_path / "full", tmp_path / "readonly"
    if not _mount_small_fs(full, "size=8k"):
        pytest.skip("cannot mount a small file system here (not root?); the injected error is tested below")
    try:
        assert _mount_small_fs(readonly, "size=64k,ro")
        env = _cache_env(tmp_path)
        argv = ("build", EXAMPLES / "sort.c", "--variants", "2", "--seed", "4")
        for target, why in ((full / "sort.wasm", "No space left on device"),
                            (readonly / "sort.wasm", "Read-only file system")):
            res = mewe(*argv, "-o", target, env=env)
            assert res.returncode == 1, res.stderr
            [line] = error_lines(res.stderr)  # the module, or its manifest if the module fitted
            assert line.startswith(f"mewe: error: cannot write output '{target.parent}{os.sep}sort.") and \
                line.endswith(f"': {why}"), res.stderr
            assert os.listdir(target.parent) == []  # no module, no manifest, no temp file
        # the variant cache the failed build filled is whole: building through it equals building without it
        ok = tmp_path / "ok" / "sort.wasm"
        ok.parent.mkdir()
        assert mewe(*argv, "-o", ok, env=env).returncode == 0
        cached = ok.read_bytes()
        assert mewe(*argv, "--no-cache", "-o", ok, env=env).returncode == 0
        assert ok.read_bytes() == cached
    finally:
        _unmount(full)
        _unmount(readonly)


def test_a_write_error_on_the_manifest_leaves_no_module_either(tmp_path, monkeypatch, capsys):
    """The module and its manifest appear together or not at all (the error injected in-process)."""
    import errno

    from mewe.cli import main

    real_write = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(".sort.manifest.json."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sort.wasm").write_bytes(b"previous")
    status = main(["build", str(EXAMPLES / "sort.c"), "--variants", "1", "-o", str(out / "sort.wasm")])
    assert status == 1
    assert error_lines(capsys.readouterr().err) == [
        f"mewe: error: cannot write output '{out / 'sort.manifest.json'}': No space left on device"]
    assert os.listdir(out) == ["sort.wasm"] and (out / "sort.wasm").read_bytes() == b"previous"
