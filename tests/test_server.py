"""mewe-cc's compile server: the same bytes, messages and exit statuses as compiling in-process,
one server reused across calls, `mewe server status|stop`, and Ctrl-C reaching the request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, child_pids

BIN = Path(sys.executable).parent
SOURCE = "static int sq(int x) { return x * x; }\nint f(int a, int b) { return sq(a) + b; }\n"


def cc(*args: str, cwd: Path, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mewe-cc"), *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=300)


def mewe_server(action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mewe", "server", action], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "MEWE_CACHE_DIR": str(tmp_path / "cache"), "MEWE_SERVER": "1"}
    yield env
    mewe_server("stop", env)


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_server_gives_the_bytes_messages_and_statuses_of_an_in_process_compile(tmp_path, env):
    (tmp_path / "x.c").write_text(SOURCE)
    (tmp_path / "bad.c").write_text("int f(void) { return 1 }\n")
    local = {**env, "MEWE_SERVER": "0"}
    for run_env, tag in ((env, "a"), (env, "b"), (local, "c")):
        res = cc("-O2", "-c", "x.c", "-o", f"{tag}.o", cwd=tmp_path, env=run_env)
        assert res.returncode == 0 and res.stdout == res.stderr == "", res.stderr
    assert (tmp_path / "a.o").read_bytes() == (tmp_path / "b.o").read_bytes() == (tmp_path / "c.o").read_bytes()

    served, here = (cc("-c", "bad.c", "-o", "bad.o", cwd=tmp_path, env=e) for e in (env, local))
    assert served.returncode == here.returncode == 1
    assert served.stderr == here.stderr and served.stderr.splitlines()[-1].startswith("mewe-cc: error: ")
    assert not (tmp_path / "bad.o").exists()
    # stdin and stdout are the client's own: a preprocessor run from a pipe
    served, here = (cc("-E", "-P", "-DW=42", "-", cwd=tmp_path, env=e, stdin="int w = W;\n") for e in (env, local))
    assert served.returncode == here.returncode == 0 and "int w = 42;" in served.stdout and served.stdout == here.stdout

    status = mewe_server("status", env).stdout.splitlines()
    assert len(status) == 1 and ": running, pid " in status[0], status  # one server, reused
    pid = int(status[0].rsplit(" ", 1)[1])
    assert mewe_server("stop", env).returncode == 0
    assert _gone(pid)
    assert not list((tmp_path / "cache" / "server").glob("*.sock"))
    assert "no mewe-cc compile server" in mewe_server("status", env).stdout or \
        "not running" in mewe_server("status", env).stdout


# LLVM's wasm backend cannot select this x86 intrinsic: code generation ends the process.
CODEGEN_FAILS = """target triple = "wasm32-unknown-wasi"
declare void @llvm.x86.sse2.pause()
define void @f() {
  call void @llvm.x86.sse2.pause()
  ret void
}
"""


def test_a_request_whose_code_generation_aborts_is_compiled_again_in_process(tmp_path, env):
    """A server's request generates code without a child of its own: when LLVM ends it, the
    client compiles in-process, so the user sees what an in-process compile says, once, and
    the server goes on."""
    (tmp_path / "crash.ll").write_text(CODEGEN_FAILS)
    (tmp_path / "x.c").write_text(SOURCE)
    assert cc("-c", "x.c", "-o", "x.o", cwd=tmp_path, env=env).returncode == 0  # the server is up
    pid = int(mewe_server("status", env).stdout.split()[-1])
    served, here = (cc("-c", "crash.ll", "-o", "crash.o", cwd=tmp_path, env=e) for e in (env, {**env, "MEWE_SERVER": "0"}))
    assert served.returncode == here.returncode == 1
    assert served.stderr == here.stderr == \
        "mewe-cc: error: crash.ll: LLVM's code generator crashed: Cannot select: intrinsic %llvm.x86.sse2.pause\n"
    assert not (tmp_path / "crash.o").exists()
    assert cc("-c", "x.c", "-o", "y.o", cwd=tmp_path, env=env).returncode == 0
    assert int(mewe_server("status", env).stdout.split()[-1]) == pid  # the same server answered
    assert (tmp_path / "x.o").read_bytes() == (tmp_path / "y.o").read_bytes()


def test_without_a_usable_socket_path_mewe_cc_compiles_in_process(tmp_path):
    deep = tmp_path / ("d" * 90) / "cache"  # longer than a Unix socket's path may be
    env = {**os.environ, "MEWE_CACHE_DIR": str(deep), "MEWE_SERVER": "1"}
    (tmp_path / "x.c").write_text(SOURCE)
    res = cc("-c", "x.c", "-o", "x.o", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "x.o").read_bytes().startswith(b"\0asm") and not (deep / "server").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the server's children")
def test_ctrl_c_on_a_client_interrupts_its_request_on_the_server(tmp_path, env):
    (tmp_path / "x.c").write_text(SOURCE)
    assert cc("-c", "x.c", "-o", "x.o", cwd=tmp_path, env=env).returncode == 0  # the server is up
    pid = int(mewe_server("status", env).stdout.split()[-1])
    slow = subprocess.Popen([str(BIN / "mewe-cc"), "-O2", "-c", str(EXAMPLES / "interp.c"), "-o", "interp.o",
                             "-mewe-variants=60"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a suite started in the background inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not child_pids(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child_pids(pid), "the request never reached the server"
    time.sleep(0.5)
    slow.send_signal(signal.SIGINT)
    assert slow.wait(timeout=30) == 130
    deadline = time.monotonic() + 15
    while child_pids(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not child_pids(pid), "the interrupted request kept running on the server"
    assert not (tmp_path / "interp.o").exists()
